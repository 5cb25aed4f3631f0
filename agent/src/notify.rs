//! From alerts to queued Slack messages: dedup, tier, rendering and the outbox.
//!
//! The pipeline thread calls [`Notifier::prepare`] and [`Notifier::commit`] with each batch's
//! alerts before the batch is acknowledged, so a message is in the outbox before its lines
//! can be checkpointed.
//! Dedup state is saved with each batch, so a restart that reads lines again, or an
//! osqueryd restart that re-emits every row, does not notify twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rules_core::dedup::{DedupState, Digest};
use rules_core::rule::Tier;
use rules_core::{Alert, Config};

use crate::slack::outbox::{Message, Outbox};
use crate::slack::secrets::{self, WebhookUrl};
use crate::slack::{self, Delivery, SlackSettings, WebhookStatus};

/// Alerts counted instead of queued while a webhook's outbox was full.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Burst {
    descriptor: String,
    rule: String,
    host: Option<String>,
    count: u64,
    first_seen: u64,
}

/// Queues Slack messages for alerts and digests.
pub struct Notifier {
    delivery: Arc<Delivery>,
    dedup: Mutex<DedupState>,
    dedup_path: PathBuf,
    /// Bursts by `descriptor|rule|host`, saved in `bursts_path` with the dedup state.
    bursts: Mutex<BTreeMap<String, Burst>>,
    bursts_path: PathBuf,
    max_backlog: usize,
    /// Descriptors with a loaded webhook URL.
    descriptors: BTreeSet<String>,
    /// True when `prepare` saw alerts whose dedup and burst changes are not saved yet.
    unsaved: std::sync::atomic::AtomicBool,
}

/// Slack delivery report shown by `edgealert status`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlackReport {
    /// Messages waiting in the outbox.
    pub outbox: usize,
    /// Messages in the dead letters.
    pub dead_letters: usize,
    /// Counters per webhook descriptor.
    pub webhooks: BTreeMap<String, WebhookStatus>,
}

/// Returns the Slack descriptors the agent notifies for: outputs of rules that are not
/// staged and run on the agent.
pub fn required_descriptors(config: &Config) -> BTreeSet<String> {
    config
        .rules
        .rules()
        .iter()
        .filter(|rule| !rule.spec.staged && rule.spec.tier != Tier::Central)
        .flat_map(|rule| rule.spec.outputs.iter())
        .filter_map(|output| output.strip_prefix("slack:"))
        .map(str::to_owned)
        .collect()
}

/// Loads the webhook URLs the configuration needs; errors name descriptors, never URLs.
pub async fn load_webhooks(
    config: &Config,
    settings: &SlackSettings,
) -> Result<BTreeMap<String, WebhookUrl>> {
    let descriptors: Vec<String> = required_descriptors(config).into_iter().collect();
    secrets::load_all(&descriptors, &settings.webhooks, &config.dir)
        .await
        .map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "missing or invalid Slack webhook secrets:\n  {}",
                lines.join("\n  ")
            )
        })
}

impl Notifier {
    /// Opens the outbox and dedup state in `state_dir` and starts one sender per webhook.
    pub fn start(
        state_dir: &Path,
        urls: BTreeMap<String, WebhookUrl>,
        settings: &SlackSettings,
    ) -> Result<Notifier> {
        let outbox_dir = state_dir.join("outbox");
        let outbox = Outbox::open(&outbox_dir)
            .with_context(|| format!("cannot open the outbox {}", outbox_dir.display()))?;
        let delivery = Delivery::new(outbox);
        let descriptors = urls.keys().cloned().collect();
        slack::spawn_senders(&delivery, urls, settings)?;
        let dedup_path = state_dir.join("dedup.json");
        let dedup = load_dedup(&dedup_path);
        let bursts_path = state_dir.join("bursts.json");
        let bursts = load_json(&bursts_path).unwrap_or_default();
        Ok(Notifier {
            delivery,
            dedup: Mutex::new(dedup),
            dedup_path,
            bursts: Mutex::new(bursts),
            bursts_path,
            max_backlog: usize::try_from(settings.max_backlog.max(1)).unwrap_or(usize::MAX),
            descriptors,
            unsaved: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Returns the descriptors that have a webhook URL.
    pub fn descriptors(&self) -> &BTreeSet<String> {
        &self.descriptors
    }

    /// Decides which of `alerts` notify and renders their messages. The decisions are
    /// recorded in memory; [`Notifier::commit`] makes them durable.
    pub fn prepare(&self, config: &Config, alerts: &[Alert], now: u64) -> Vec<Message> {
        let mut messages = Vec::new();
        if alerts.is_empty() {
            return messages;
        }
        self.unsaved
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let Ok(mut dedup) = self.dedup.lock() else {
            return messages;
        };
        for alert in alerts {
            if alert.tier == Tier::Central
                || !alert
                    .outputs
                    .iter()
                    .any(|output| output.starts_with("slack:"))
            {
                continue;
            }
            let settings = config
                .rules
                .get(&alert.rule)
                .and_then(|rule| rule.spec.dedup.as_ref());
            if !dedup.observe(alert, settings, now).notifies() {
                continue;
            }
            let payload = rules_core::slack::render_alert(alert, &config.settings.slack);
            for descriptor in slack_descriptors(&alert.outputs) {
                let queued = messages
                    .iter()
                    .filter(|message: &&Message| message.descriptor == descriptor)
                    .count();
                if self.backlog(&descriptor) + queued >= self.max_backlog {
                    self.count_burst(&descriptor, alert, now);
                    continue;
                }
                messages.push(Message {
                    descriptor,
                    alert_id: alert.alert_id.clone(),
                    payload: payload.clone(),
                    created_at: now,
                });
            }
        }
        messages
    }

    fn backlog(&self, descriptor: &str) -> usize {
        self.delivery
            .outbox
            .lock()
            .map(|outbox| outbox.pending_for(descriptor))
            .unwrap_or(0)
    }

    fn count_burst(&self, descriptor: &str, alert: &Alert, now: u64) {
        let Ok(mut bursts) = self.bursts.lock() else {
            return;
        };
        let key = format!(
            "{descriptor}|{}|{}",
            alert.rule,
            alert.host.as_deref().unwrap_or("-")
        );
        let burst = bursts.entry(key).or_insert_with(|| Burst {
            descriptor: descriptor.to_owned(),
            rule: alert.rule.clone(),
            host: alert.host.clone(),
            count: 0,
            first_seen: now,
        });
        burst.count += 1;
    }

    /// Queues one digest per burst whose webhook has drained to half its backlog limit.
    fn burst_messages(
        &self,
        bursts: &BTreeMap<String, Burst>,
        config: &Config,
        now: u64,
    ) -> Vec<(String, Message)> {
        let mut messages = Vec::new();
        for (key, burst) in bursts.iter() {
            if self.backlog(&burst.descriptor) > self.max_backlog / 2 {
                continue;
            }
            let severity = config
                .rules
                .get(&burst.rule)
                .map(|rule| rule.spec.severity)
                .unwrap_or_default();
            let window = now.saturating_sub(burst.first_seen).max(1);
            let payload = rules_core::slack::render_digest(
                &burst.rule,
                burst.host.as_deref(),
                burst.count,
                window,
                severity,
            );
            let alert_id = format!("burst{}x{:016x}", burst.first_seen, fnv(key));
            messages.push((
                key.clone(),
                Message {
                    descriptor: burst.descriptor.clone(),
                    alert_id,
                    payload,
                    created_at: now,
                },
            ));
        }
        messages
    }

    /// Writes prepared messages to the outbox and saves the dedup state. Safe to retry: the
    /// outbox skips a message whose output and alert id are already queued.
    pub fn commit(&self, messages: &[Message]) -> Result<()> {
        self.put(messages)?;
        // A batch without alerts changed neither state, so nothing is written or synced.
        if !self.unsaved.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.save_bursts()?;
        let dedup = self
            .dedup
            .lock()
            .map_err(|_| anyhow::anyhow!("dedup state lock poisoned"))?;
        save_dedup(&self.dedup_path, &dedup)?;
        self.unsaved
            .store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Queues the digests of dedup windows that ended by `now`.
    pub fn queue_digests(&self, config: &Config, now: u64) -> Result<()> {
        // The burst lock is held from reading the counts to removing them, so an alert
        // counted meanwhile by the pipeline thread lands in the next digest.
        let mut pending = self
            .bursts
            .lock()
            .map_err(|_| anyhow::anyhow!("burst lock poisoned"))?;
        let bursts = self.burst_messages(&pending, config, now);
        if !bursts.is_empty() {
            let messages: Vec<Message> =
                bursts.iter().map(|(_, message)| message.clone()).collect();
            self.put(&messages)?;
            for (key, _) in &bursts {
                pending.remove(key);
            }
            save_json(&self.bursts_path, &*pending)?;
        }
        drop(pending);
        let mut dedup = self
            .dedup
            .lock()
            .map_err(|_| anyhow::anyhow!("dedup state lock poisoned"))?;
        dedup.prune(now);
        let digests = dedup.due_digests(now);
        if digests.is_empty() {
            return Ok(());
        }
        let mut messages = Vec::new();
        for digest in &digests {
            let Some(rule) = config.rules.get(&digest.rule) else {
                continue;
            };
            let payload = rules_core::slack::render_digest(
                &digest.rule,
                digest.host.as_deref(),
                digest.count,
                digest.window_seconds,
                rule.spec.severity,
            );
            for descriptor in slack_descriptors(&rule.spec.outputs) {
                messages.push(Message {
                    descriptor,
                    alert_id: digest_id(digest),
                    payload: payload.clone(),
                    created_at: now,
                });
            }
        }
        self.put(&messages)?;
        save_dedup(&self.dedup_path, &dedup)
    }

    fn put(&self, messages: &[Message]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut outbox = self
            .delivery
            .outbox
            .lock()
            .map_err(|_| anyhow::anyhow!("outbox lock poisoned"))?;
        for message in messages {
            if !self.descriptors.contains(&message.descriptor) {
                tracing::error!(webhook = %message.descriptor, alert_id = %message.alert_id, "No webhook URL is loaded for this Slack output; the alert stays in the local alerts file only.");
                continue;
            }
            outbox.put(message).context("cannot write to the outbox")?;
        }
        drop(outbox);
        self.delivery.wake();
        Ok(())
    }

    /// Returns the delivery report for the status file.
    pub fn report(&self) -> SlackReport {
        let (outbox, dead_letters) = self
            .delivery
            .outbox
            .lock()
            .map(|outbox| (outbox.len(), outbox.dead_letters()))
            .unwrap_or_default();
        let webhooks = self
            .delivery
            .status
            .lock()
            .map(|status| status.clone())
            .unwrap_or_default();
        SlackReport {
            outbox,
            dead_letters,
            webhooks,
        }
    }
}

impl Notifier {
    fn save_bursts(&self) -> Result<()> {
        let bursts = self
            .bursts
            .lock()
            .map_err(|_| anyhow::anyhow!("burst lock poisoned"))?;
        save_json(&self.bursts_path, &*bursts)
    }
}

fn fnv(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(path = %path.display(), error = %error, "State file is corrupt; starting without it.");
            None
        }
    }
}

fn slack_descriptors(outputs: &[String]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| output.strip_prefix("slack:"))
        .map(str::to_owned)
        .collect()
}

/// Builds a file-name-safe id for a digest message: the window's start and a hash of its key.
fn digest_id(digest: &Digest) -> String {
    format!(
        "digest{}x{:016x}",
        digest.first_seen,
        fnv(&digest.dedup_key)
    )
}

fn load_dedup(path: &Path) -> DedupState {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return DedupState::default(),
        Err(error) => {
            tracing::warn!(path = %path.display(), error = %error, "Cannot read the dedup state; starting without it, so repeats may notify again.");
            return DedupState::default();
        }
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|error| {
        tracing::warn!(path = %path.display(), error = %error, "Dedup state is corrupt; starting without it, so repeats may notify again.");
        DedupState::default()
    })
}

fn save_dedup(path: &Path, state: &DedupState) -> Result<()> {
    save_json(path, state)
}

/// Writes `value` as JSON atomically: a temporary file, fsync, rename.
fn save_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(&serde_json::to_vec(value)?)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
