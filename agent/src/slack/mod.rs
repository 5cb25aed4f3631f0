//! Delivery of alerts to Slack incoming webhooks.
//!
//! Messages go through the persistent [`outbox::Outbox`]. One sender task per webhook sends
//! them in order, within a per-webhook rate limit (Slack accepts about one message per
//! second per webhook, with short bursts). HTTP 429 waits for `Retry-After`. 5xx responses,
//! timeouts and connection errors retry with exponential backoff and full jitter, up to a
//! maximum number of attempts. Any other response is permanent. A message that cannot be
//! delivered moves to the dead letters with one error log. The webhook URL never appears in
//! a log, an error or the status.

pub mod outbox;
pub mod secrets;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use webhook::{Attempt, Jitter, RateLimiter};

use outbox::{Entry, Outbox};
use secrets::{SecretSource, WebhookUrl};

/// Slack delivery settings in `agent.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSettings {
    /// Webhook URL source per descriptor. A descriptor without an entry reads the systemd
    /// credential `slack-<descriptor>`.
    pub webhooks: BTreeMap<String, SecretSource>,
    /// Minimum interval between messages to one webhook once the burst is used, in
    /// milliseconds.
    pub min_interval_ms: u64,
    /// Messages one webhook may receive back to back before the interval applies.
    pub burst: u32,
    /// Attempts per message for retryable failures (5xx, timeouts, connection errors)
    /// before it moves to the dead letters.
    pub max_attempts: u32,
    /// Timeout of one request, in milliseconds.
    pub timeout_ms: u64,
    /// Longest `Retry-After` honoured, in seconds; longer values are capped.
    pub max_retry_after_seconds: u64,
    /// Messages one webhook may have waiting in the outbox. Further alerts for it are counted
    /// per rule and host and sent as one digest each when the queue has drained to half.
    pub max_backlog: u32,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            webhooks: BTreeMap::new(),
            min_interval_ms: 1_000,
            burst: 3,
            max_attempts: 8,
            timeout_ms: 10_000,
            max_retry_after_seconds: 300,
            max_backlog: 20,
        }
    }
}

/// Delivery counters of one webhook, for `edgealert status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookStatus {
    /// Messages Slack accepted.
    pub sent: u64,
    /// HTTP 429 responses received.
    pub rate_limited: u64,
    /// Retries after 5xx responses, timeouts and connection errors.
    pub retries: u64,
    /// Messages moved to the dead letters.
    pub dead_lettered: u64,
    /// Last delivery error, without the URL.
    pub last_error: Option<String>,
}

/// State shared by the sender tasks and the pipeline.
pub struct Delivery {
    /// The outbox.
    pub outbox: Mutex<Outbox>,
    /// Incremented when a message was queued; senders wait for changes. A watch channel
    /// keeps a change that happened while a sender was busy, so no wake-up is lost.
    wake: watch::Sender<u64>,
    /// Counters per descriptor.
    pub status: Mutex<BTreeMap<String, WebhookStatus>>,
}

impl Delivery {
    /// Wraps an opened outbox.
    pub fn new(outbox: Outbox) -> Arc<Delivery> {
        Arc::new(Delivery {
            outbox: Mutex::new(outbox),
            wake: watch::Sender::new(0),
            status: Mutex::new(BTreeMap::new()),
        })
    }

    /// Wakes the senders after messages were queued.
    pub fn wake(&self) {
        self.wake
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    fn update(&self, descriptor: &str, change: impl FnOnce(&mut WebhookStatus)) {
        if let Ok(mut status) = self.status.lock() {
            change(status.entry(descriptor.to_owned()).or_default());
        }
    }
}

/// Starts one sender task per webhook.
pub fn spawn_senders(
    delivery: &Arc<Delivery>,
    urls: BTreeMap<String, WebhookUrl>,
    settings: &SlackSettings,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut tasks = Vec::new();
    for (descriptor, url) in urls {
        let sender = Sender {
            descriptor,
            url,
            client: client.clone(),
            delivery: Arc::clone(delivery),
            settings: settings.clone(),
            limiter: RateLimiter::new(
                settings.burst,
                Duration::from_millis(settings.min_interval_ms),
            ),
            wake: delivery.wake.subscribe(),
            jitter: Jitter::seeded(),
        };
        tasks.push(tokio::spawn(sender.run()));
    }
    Ok(tasks)
}

struct Sender {
    descriptor: String,
    url: WebhookUrl,
    client: reqwest::Client,
    delivery: Arc<Delivery>,
    settings: SlackSettings,
    limiter: RateLimiter,
    jitter: Jitter,
    wake: watch::Receiver<u64>,
}

impl Sender {
    async fn run(mut self) {
        loop {
            self.wake.mark_unchanged();
            let entries = self.pending();
            if entries.is_empty() {
                let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.changed()).await;
                continue;
            }
            for entry in entries {
                self.deliver(&entry).await;
            }
        }
    }

    /// Lists this webhook's queued messages in order.
    fn pending(&self) -> Vec<Entry> {
        let Ok(outbox) = self.delivery.outbox.lock() else {
            return Vec::new();
        };
        outbox
            .entries()
            .unwrap_or_default()
            .into_iter()
            .filter(|entry| outbox::descriptor_of(&entry.path) == Some(self.descriptor.as_str()))
            .collect()
    }

    async fn deliver(&mut self, entry: &Entry) {
        let message = match self
            .delivery
            .outbox
            .lock()
            .map(|mut outbox| outbox.read(entry))
        {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => {
                tracing::error!(webhook = %self.descriptor, file = %entry.path.display(), "Moved an unreadable outbox message to the dead letters.");
                return;
            }
            _ => return,
        };
        let mut failures = 0u32;
        loop {
            self.limiter.acquire().await;
            match self.post(&message.payload).await {
                Attempt::Delivered => {
                    self.finish(entry, None);
                    return;
                }
                Attempt::RetryAfter(wait) => {
                    self.delivery
                        .update(&self.descriptor, |status| status.rate_limited += 1);
                    tracing::warn!(webhook = %self.descriptor, alert_id = %message.alert_id, retry_after_ms = wait.as_millis() as u64, "Slack rate-limited the webhook; waiting for Retry-After.");
                    tokio::time::sleep(wait).await;
                }
                Attempt::Retry(error) => {
                    failures += 1;
                    self.delivery.update(&self.descriptor, |status| {
                        status.retries += 1;
                        status.last_error = Some(error.clone());
                    });
                    if failures >= self.settings.max_attempts {
                        self.finish(
                            entry,
                            Some(format!("gave up after {failures} attempts: {error}")),
                        );
                        return;
                    }
                    let wait = self.jitter.backoff(failures);
                    tracing::warn!(webhook = %self.descriptor, alert_id = %message.alert_id, attempt = failures, error = %error, "Slack delivery failed; retrying.");
                    tokio::time::sleep(wait).await;
                }
                Attempt::Permanent(error) => {
                    self.finish(entry, Some(error));
                    return;
                }
            }
        }
    }

    async fn post(&self, payload: &serde_json::Value) -> Attempt {
        let request = self.client.post(self.url.expose()).json(payload);
        webhook::post(request, self.settings.max_retry_after_seconds).await
    }

    fn finish(&self, entry: &Entry, error: Option<String>) {
        let Ok(mut outbox) = self.delivery.outbox.lock() else {
            return;
        };
        match error {
            None => {
                if let Err(io) = outbox.remove(entry) {
                    tracing::error!(webhook = %self.descriptor, error = %io, "Removing a delivered message from the outbox failed; it may be sent again.");
                }
                self.delivery
                    .update(&self.descriptor, |status| status.sent += 1);
            }
            Some(error) => {
                tracing::error!(webhook = %self.descriptor, file = %entry.path.display(), error = %error, "Slack did not accept the message; moved it to the dead letters.");
                if let Err(io) = outbox.dead_letter(entry, &error) {
                    tracing::error!(webhook = %self.descriptor, error = %io, "Moving a message to the dead letters failed.");
                }
                self.delivery.update(&self.descriptor, |status| {
                    status.dead_lettered += 1;
                    status.last_error = Some(error);
                });
            }
        }
    }
}
