//! From alerts to queued Slack messages: dedup, tier, rendering and the outbox.
//!
//! The pipeline thread calls [`Notifier::queue`] with each batch's alerts before the batch
//! is acknowledged, so a message is in the outbox before its lines can be checkpointed.
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

/// Queues Slack messages for alerts and digests.
pub struct Notifier {
    delivery: Arc<Delivery>,
    dedup: Mutex<DedupState>,
    dedup_path: PathBuf,
    /// Descriptors with a loaded webhook URL.
    descriptors: BTreeSet<String>,
}

/// What `edgealert status` shows about Slack delivery.
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
pub fn load_webhooks(
    config: &Config,
    settings: &SlackSettings,
) -> Result<BTreeMap<String, WebhookUrl>> {
    let descriptors: Vec<String> = required_descriptors(config).into_iter().collect();
    secrets::load_all(&descriptors, &settings.webhooks).map_err(|errors| {
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
        Ok(Notifier {
            delivery,
            dedup: Mutex::new(dedup),
            dedup_path,
            descriptors,
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

    /// Writes prepared messages to the outbox and saves the dedup state. Safe to retry: the
    /// outbox skips a message whose output and alert id are already queued.
    pub fn commit(&self, messages: &[Message]) -> Result<()> {
        self.put(messages)?;
        let dedup = self
            .dedup
            .lock()
            .map_err(|_| anyhow::anyhow!("dedup state lock poisoned"))?;
        save_dedup(&self.dedup_path, &dedup)
    }

    /// Queues the digests of dedup windows that ended by `now`.
    pub fn queue_digests(&self, config: &Config, now: u64) -> Result<()> {
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

fn slack_descriptors(outputs: &[String]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| output.strip_prefix("slack:"))
        .map(str::to_owned)
        .collect()
}

/// Builds a file-name-safe id for a digest message: the window's start and a hash of its key.
fn digest_id(digest: &Digest) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in digest.dedup_key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("digest{}x{hash:016x}", digest.first_seen)
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
    use std::io::Write;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(&serde_json::to_vec(state)?)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
