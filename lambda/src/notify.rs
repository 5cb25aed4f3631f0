//! Which tier notifies for an alert, dedup, and Slack delivery within the invocation's time.
//!
//! One Slack message per event across both tiers:
//!
//! | rule tier | line notified by an agent | line without an agent |
//! |---|---|---|
//! | `agent` | the agent notified | nobody notifies |
//! | `both` | the agent notified | the Lambda notifies |
//! | `central` | the Lambda notifies | the Lambda notifies |
//!
//! Dedup state lives in memory for as long as the container stays warm. A cold container
//! starts empty, so a record delivered again to a new container can notify again. Lambda
//! runs one invocation at a time per shard, so the state of one shard is never raced.
//! Alert ids the agent notified are remembered too, so the same row arriving again in
//! another format (such as from osquery's own logger) does not notify from the Lambda.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rules_core::dedup::{Decision, DedupState, Digest};
use rules_core::rule::Tier;
use rules_core::{Alert, Config};
use tokio::time::Instant;
use webhook::{Attempt, Jitter, RateLimiter};

use crate::secrets::WebhookUrl;
use crate::settings::Delivery;

/// Most alert ids kept as waiting for a retry of their message.
const MAX_UNDELIVERED: usize = 10_000;

/// Tier that delivers an alert's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifiedBy {
    /// An agent notified before forwarding the line.
    Agent,
    /// The Lambda notifies.
    Lambda,
    /// Nobody notifies: a staged rule, a duplicate, a suppressed repeat, an agent-tier rule
    /// for a line no agent evaluated, or a rule without Slack outputs.
    None,
}

/// Decision of the Lambda for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The dedup decision.
    pub decision: Decision,
    /// Tier that delivers the message.
    pub notified_by: NotifiedBy,
}

/// Result of delivering one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The webhook accepted it.
    Sent,
    /// It can never be delivered: a permanent error, or the retries ran out. Logged.
    Dropped(String),
    /// The invocation ran out of time before it was delivered; a later invocation sends it.
    OutOfTime,
}

/// A Slack message to one webhook.
#[derive(Debug, Clone)]
pub struct Message {
    /// Slack descriptor, such as `security`.
    pub descriptor: String,
    /// Alert id, or digest id, for logs.
    pub alert_id: String,
    /// Incoming-webhook payload.
    pub payload: serde_json::Value,
}

struct Webhook {
    url: WebhookUrl,
    limiter: RateLimiter,
}

/// Dedup state and Slack senders of one warm container.
pub struct Notifier {
    dedup: DedupState,
    webhooks: BTreeMap<String, Webhook>,
    client: reqwest::Client,
    delivery: Delivery,
    jitter: Jitter,
    /// Alert ids whose messages ran out of time, with the Slack descriptors that already
    /// got theirs. The next delivery of such an alert notifies even though the dedup state
    /// has seen it, and sends only to the other descriptors.
    undelivered: HashMap<String, BTreeSet<String>>,
    /// Digest messages that ran out of time, sent first by the next invocation.
    waiting_digests: Vec<Message>,
    /// Dedup windows of alerts that agents notified for, kept so that the audit separates
    /// the alerts an agent sent from those its window suppressed. The digests of these windows
    /// are the agents' to send, so they are dropped.
    agent_windows: DedupState,
}

/// Returns the Slack descriptors the Lambda notifies for: outputs of rules that are not
/// staged and notify from the Lambda (tiers `central` and `both`).
pub fn required_descriptors(config: &Config) -> BTreeSet<String> {
    config
        .rules
        .rules()
        .iter()
        .filter(|rule| !rule.spec.staged && rule.spec.tier != Tier::Agent)
        .flat_map(|rule| slack_descriptors(&rule.spec.outputs))
        .collect()
}

fn slack_descriptors(outputs: &[String]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| output.strip_prefix("slack:"))
        .map(str::to_owned)
        .collect()
}

impl Notifier {
    /// Creates a notifier with one rate limiter per webhook.
    pub fn new(urls: BTreeMap<String, WebhookUrl>, delivery: Delivery) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(delivery.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let webhooks = urls
            .into_iter()
            .map(|(descriptor, url)| {
                let limiter = RateLimiter::new(delivery.burst, delivery.min_interval);
                (descriptor, Webhook { url, limiter })
            })
            .collect();
        Ok(Notifier {
            dedup: DedupState::default(),
            webhooks,
            client,
            delivery,
            jitter: Jitter::seeded(),
            undelivered: HashMap::new(),
            waiting_digests: Vec::new(),
            agent_windows: DedupState::default(),
        })
    }

    /// Returns the time kept free before the invocation deadline.
    pub fn deadline_margin(&self) -> Duration {
        self.delivery.deadline_margin
    }

    /// Decides whether `alert` notifies from the Lambda at `now` (seconds since the Unix
    /// epoch) and records it in the dedup state.
    pub fn decide(
        &mut self,
        config: &Config,
        alert: &Alert,
        agent_notified: bool,
        now: u64,
    ) -> Verdict {
        let lambda_notifies = match alert.tier {
            Tier::Central => true,
            Tier::Both => !agent_notified,
            Tier::Agent => false,
        };
        let settings = config
            .rules
            .get(&alert.rule)
            .and_then(|rule| rule.spec.dedup.as_ref());
        if !lambda_notifies {
            // Remembering the id keeps a second copy of this row, in any format, quiet.
            let mut decision = self.dedup.observe(alert, None, now);
            if agent_notified && decision == Decision::Notify {
                decision = self.agent_windows.observe(alert, settings, now);
            }
            let notified_by = if agent_notified && decision == Decision::Notify {
                NotifiedBy::Agent
            } else {
                NotifiedBy::None
            };
            return Verdict {
                decision,
                notified_by,
            };
        }
        let mut decision = self.dedup.observe(alert, settings, now);
        if decision == Decision::Duplicate && self.undelivered.contains_key(&alert.alert_id) {
            decision = Decision::Notify;
        }
        let has_slack = alert
            .outputs
            .iter()
            .any(|output| output.starts_with("slack:"));
        let notified_by = if decision == Decision::Notify && has_slack {
            NotifiedBy::Lambda
        } else {
            NotifiedBy::None
        };
        Verdict {
            decision,
            notified_by,
        }
    }

    /// Renders the messages of an alert the Lambda notifies for, one per Slack output.
    pub fn messages(&self, config: &Config, alert: &Alert) -> Vec<Message> {
        let payload = rules_core::slack::render_alert(alert, &config.settings.slack);
        slack_descriptors(&alert.outputs)
            .into_iter()
            .map(|descriptor| Message {
                descriptor,
                alert_id: alert.alert_id.clone(),
                payload: payload.clone(),
            })
            .collect()
    }

    /// Delivers `messages` of one alert in order until `deadline`, skipping descriptors
    /// that an earlier, unfinished delivery of the same alert already reached. Returns the
    /// outcome of the first message that was not sent, or [`Outcome::Sent`].
    ///
    /// The alert counts as undelivered until every message is sent or dropped, so a retry
    /// notifies again after an invocation that ran out of time, panicked or was cancelled
    /// midway.
    pub async fn deliver_alert(&mut self, messages: &[Message], deadline: Instant) -> Outcome {
        let Some(alert_id) = messages.first().map(|message| message.alert_id.clone()) else {
            return Outcome::Sent;
        };
        if !self.undelivered.contains_key(&alert_id) {
            self.remember_undelivered(alert_id.clone(), BTreeSet::new());
        }
        let mut result = Outcome::Sent;
        for message in messages {
            let reached = self
                .undelivered
                .get(&alert_id)
                .is_some_and(|reached| reached.contains(&message.descriptor));
            if reached {
                continue;
            }
            match self.send(message, deadline, Wait::UntilDeadline).await {
                Outcome::Sent => {
                    if let Some(reached) = self.undelivered.get_mut(&alert_id) {
                        reached.insert(message.descriptor.clone());
                    }
                }
                Outcome::OutOfTime => return Outcome::OutOfTime,
                dropped => result = dropped,
            }
        }
        self.undelivered.remove(&alert_id);
        result
    }

    fn remember_undelivered(&mut self, alert_id: String, reached: BTreeSet<String>) {
        if self.undelivered.len() >= MAX_UNDELIVERED {
            tracing::warn!(
                limit = MAX_UNDELIVERED,
                "Too many alerts wait for a retry of their Slack message; forgetting them, so their retries will count as duplicates."
            );
            self.undelivered.clear();
        }
        self.undelivered.insert(alert_id, reached);
    }

    /// Forgets expired alert ids and sends the digests of dedup windows that ended by
    /// `now`, with digests left over from earlier invocations, until `deadline`.
    pub async fn send_digests(&mut self, config: &Config, now: u64, deadline: Instant) {
        self.dedup.prune(now);
        self.agent_windows.prune(now);
        drop(self.agent_windows.due_digests(now));
        let mut messages = std::mem::take(&mut self.waiting_digests);
        for digest in self.dedup.due_digests(now) {
            messages.extend(digest_messages(config, &digest));
        }
        let mut pending = messages.into_iter();
        while let Some(message) = pending.next() {
            if self.send(&message, deadline, Wait::No).await == Outcome::OutOfTime {
                self.waiting_digests.push(message);
                self.waiting_digests.extend(pending);
                return;
            }
        }
    }

    /// Sends one message: rate limit, `Retry-After`, retries with backoff for retryable
    /// failures, none for permanent ones, all before `deadline`. `late` says whether to wait
    /// for the deadline when the message cannot be sent in time.
    async fn send(&mut self, message: &Message, deadline: Instant, late: Wait) -> Outcome {
        let Some(webhook) = self.webhooks.get_mut(&message.descriptor) else {
            let error = "no webhook URL is loaded for this Slack output".to_owned();
            tracing::error!(webhook = %message.descriptor, alert_id = %message.alert_id, "{error}; the alert is only in the audit log.");
            return Outcome::Dropped(error);
        };
        let mut failures = 0u32;
        loop {
            let wait = webhook.limiter.delay();
            if !fits(wait + self.delivery.min_request_time, deadline) {
                return out_of_time(deadline, late).await;
            }
            webhook.limiter.acquire().await;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let request = self
                .client
                .post(webhook.url.expose())
                .timeout(remaining.min(self.delivery.timeout))
                .json(&message.payload);
            let wait = match webhook::post(request, self.delivery.max_retry_after_seconds).await {
                Attempt::Delivered => return Outcome::Sent,
                Attempt::Permanent(error) => {
                    tracing::error!(webhook = %message.descriptor, alert_id = %message.alert_id, error = %error, "Slack did not accept the message; it is not retried.");
                    return Outcome::Dropped(error);
                }
                Attempt::RetryAfter(wait) => {
                    tracing::warn!(webhook = %message.descriptor, alert_id = %message.alert_id, retry_after_ms = millis(wait), "Slack rate-limited the webhook; waiting for Retry-After.");
                    // The hold outlives this invocation, so the next one in this container
                    // does not post before the wait ends either.
                    webhook.limiter.hold_until(later(wait));
                    wait
                }
                Attempt::Retry(error) => {
                    failures += 1;
                    if failures >= self.delivery.max_attempts {
                        let error = format!("gave up after {failures} attempts: {error}");
                        tracing::error!(webhook = %message.descriptor, alert_id = %message.alert_id, error = %error, "Slack delivery failed; the message is dropped.");
                        return Outcome::Dropped(error);
                    }
                    tracing::warn!(webhook = %message.descriptor, alert_id = %message.alert_id, attempt = failures, error = %error, "Slack delivery failed; retrying.");
                    self.jitter.backoff(failures)
                }
            };
            if !fits(wait + self.delivery.min_request_time, deadline) {
                return out_of_time(deadline, late).await;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// Returns the instant `wait` from now, or about 30 years from now when that overflows.
fn later(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// Returns true when `duration` from now ends no later than `deadline`.
fn fits(duration: Duration, deadline: Instant) -> bool {
    deadline.saturating_duration_since(Instant::now()) >= duration
}

/// What [`Notifier::send`] does when a message cannot be sent before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Waits until the deadline: the batch stops at this record and Lambda retries it.
    UntilDeadline,
    /// Returns at once: digests wait for the next invocation, and the batch is done.
    No,
}

/// Returns [`Outcome::OutOfTime`], after waiting until `deadline` when `wait` says so.
/// Ending the invocation early makes Lambda retry the batch at once, so a held or failing
/// webhook could use up the event source mapping's retries in seconds. Waiting makes each
/// retry cover one timeout.
async fn out_of_time(deadline: Instant, wait: Wait) -> Outcome {
    if wait == Wait::UntilDeadline {
        tokio::time::sleep_until(deadline).await;
    }
    Outcome::OutOfTime
}

fn digest_messages(config: &Config, digest: &Digest) -> Vec<Message> {
    let Some(rule) = config.rules.get(&digest.rule) else {
        return Vec::new();
    };
    let payload = rules_core::slack::render_digest(
        &digest.rule,
        digest.host.as_deref(),
        digest.count,
        digest.window_seconds,
        rule.spec.severity,
    );
    slack_descriptors(&rule.spec.outputs)
        .into_iter()
        .map(|descriptor| Message {
            descriptor,
            alert_id: digest_id(digest),
            payload: payload.clone(),
        })
        .collect()
}

/// Builds an id for a digest message from the window's start and an FNV-1a hash of its
/// dedup key, so logs do not repeat the key's field values.
fn digest_id(digest: &Digest) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in digest.dedup_key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("digest{}x{hash:016x}", digest.first_seen)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
