//! The invocation handler: a batch of Kinesis records in, `batchItemFailures` out.
//!
//! Records are processed in order. A record that cannot be decoded, comes from a stream
//! that `sources.json` does not declare, or contains one line that does not classify, is
//! logged with its sequence number and reason, counted, and skipped: retrying it would
//! fail the same way. Only running out of time stops the batch. The response then names
//! the first record whose alerts were not all delivered, and Lambda retries the batch from
//! that record. Records before it yield the same alert ids again only if Lambda resends
//! them, and the dedup state keeps those quiet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use rules_core::dedup::Decision;
use rules_core::{Alert, Config, Source};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::notify::{NotifiedBy, Notifier, Outcome, required_descriptors};
use crate::records::{self, Line, Origin};
use crate::settings::Settings;

/// Maximum log lines per reason and invocation for lines of packed records that fail to
/// classify. The counters in the summary line count all of them.
const UNCLASSIFIED_LOGS_PER_REASON: u64 = 20;

/// The Lambda's response: the record to retry from, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// At most one entry: the first record that could not be processed.
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One failed record of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The record's sequence number.
    pub item_identifier: String,
}

/// A record that was skipped because it cannot be processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    /// The record's sequence number.
    pub sequence_number: String,
    /// Short stable reason, such as `unknown_format` or `invalid_json`.
    pub reason: &'static str,
    /// Description of the problem.
    pub message: String,
}

/// One alert as the audit log records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Sequence number of the record the alert came from.
    pub sequence_number: String,
    /// Index of the entry in a packed record.
    pub entry: Option<usize>,
    /// The alert.
    pub alert_id: String,
    /// Rule name.
    pub rule: String,
    /// Tier of the rule: `agent`, `central` or `both`.
    pub tier: rules_core::rule::Tier,
    /// Dedup decision: `notify`, `duplicate`, `suppressed` or `staged`.
    pub decision: &'static str,
    /// Tier that delivers the message.
    pub notified_by: NotifiedBy,
    /// For messages the Lambda sends: `sent`, `dropped` or `retry`.
    pub delivery: Option<&'static str>,
}

/// Result of one line of a record, kept only when [`Handler::keep_line_results`] is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineResult {
    /// Sequence number of the record.
    pub sequence_number: String,
    /// Index of the entry in a packed record.
    pub entry: Option<usize>,
    /// The log type, or the reason the line did not classify.
    pub classified: Result<String, &'static str>,
    /// Rule and alert id of every alert, in row order.
    pub alerts: Vec<(String, String)>,
}

/// Counters and outcomes of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Records in the batch.
    pub records: usize,
    /// Lines decoded from them.
    pub lines: u64,
    /// Lines classified as a log type.
    pub classified: u64,
    /// Rows evaluated.
    pub rows: u64,
    /// Every alert, in order.
    pub alerts: Vec<AuditEntry>,
    /// Records skipped as bad.
    pub bad_records: Vec<BadRecord>,
    /// Lines that did not classify, by reason.
    pub unclassified: BTreeMap<&'static str, u64>,
    /// Messages the Lambda sent.
    pub sent: u64,
    /// Messages that can never be delivered.
    pub dropped: u64,
    /// Per-line results, when kept.
    pub line_results: Vec<LineResult>,
    /// The response.
    pub response: BatchResponse,
}

/// Failure at cold start. Each variant is reported to the Runtime API's init error
/// endpoint with its [`InitError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// An environment variable is invalid.
    #[error("invalid Lambda settings: {0}")]
    Settings(String),
    /// The bundled configuration directory does not load.
    #[error("configuration {dir} is invalid:\n{errors}")]
    Config {
        /// The directory.
        dir: String,
        /// Every error, one per line with file and JSON path.
        errors: String,
    },
    /// The webhook secrets are missing or invalid.
    #[error("{0}")]
    Secrets(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl InitError {
    /// Returns the error type reported to the Runtime API.
    pub fn kind(&self) -> &'static str {
        match self {
            InitError::Settings(_) => "Edgealert.InvalidSettings",
            InitError::Config { .. } => "Edgealert.InvalidConfiguration",
            InitError::Secrets(_) => "Edgealert.InvalidWebhookSecret",
            InitError::Client(_) => "Edgealert.ClientError",
        }
    }
}

/// The state of a warm container: configuration, dedup state and Slack senders.
pub struct Handler {
    config: Arc<Config>,
    notifier: Mutex<Notifier>,
    /// Keep a [`LineResult`] per line in the report; for tests.
    pub keep_line_results: bool,
}

/// Everything one record gave, before the batch decides whether to go on.
enum RecordEnd {
    /// The record was processed, possibly as a bad record.
    Done,
    /// Time ran out while the record's alerts were delivered.
    OutOfTime,
}

impl Handler {
    /// Loads and validates the configuration and the webhook secrets.
    pub async fn init(settings: &Settings) -> Result<Handler, InitError> {
        let config = Config::load(&settings.conf_dir).map_err(|errors| InitError::Config {
            dir: settings.conf_dir.display().to_string(),
            errors: errors.to_string(),
        })?;
        let required = required_descriptors(&config);
        let urls = crate::secrets::load(&settings.webhooks, &required)
            .await
            .map_err(InitError::Secrets)?;
        let notifier = Notifier::new(urls, settings.delivery.clone())
            .map_err(|error| InitError::Client(error.to_string()))?;
        Ok(Handler::new(Arc::new(config), notifier))
    }

    /// Wraps a loaded configuration and notifier.
    pub fn new(config: Arc<Config>, notifier: Notifier) -> Handler {
        Handler {
            config,
            notifier: Mutex::new(notifier),
            keep_line_results: false,
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Processes a batch. `deadline` is the invocation's deadline; the handler keeps the
    /// notifier's margin free before it.
    pub async fn handle(&self, event: &KinesisEvent, deadline: Instant) -> Report {
        let started = Instant::now();
        let mut notifier = self.notifier.lock().await;
        let deadline = deadline
            .checked_sub(notifier.deadline_margin())
            .unwrap_or(started);
        let now = unix_now();
        let mut report = Report {
            records: event.records.len(),
            ..Report::default()
        };
        let mut failed_from = None;
        for record in &event.records {
            let sequence_number = &record.kinesis.sequence_number;
            if Instant::now() >= deadline {
                failed_from = Some(sequence_number.clone());
                break;
            }
            let end = self
                .process_record(record, &mut notifier, now, deadline, &mut report)
                .await;
            if let RecordEnd::OutOfTime = end {
                failed_from = Some(sequence_number.clone());
                break;
            }
        }
        if failed_from.is_none() {
            notifier.send_digests(&self.config, now, deadline).await;
        }
        if let Some(sequence_number) = failed_from {
            tracing::warn!(sequence_number = %sequence_number, "Ran out of time; Lambda retries the batch from this record.");
            report.response.batch_item_failures.push(BatchItemFailure {
                item_identifier: sequence_number,
            });
        }
        log_summary(&report, started.elapsed());
        report
    }

    async fn process_record(
        &self,
        record: &KinesisEventRecord,
        notifier: &mut Notifier,
        now: u64,
        deadline: Instant,
        report: &mut Report,
    ) -> RecordEnd {
        let sequence_number = &record.kinesis.sequence_number;
        let source = match self.resolve_source(record.event_source_arn.as_deref()) {
            Ok(source) => source,
            Err(message) => {
                bad_record(report, sequence_number, "unknown_source", message);
                return RecordEnd::Done;
            }
        };
        let lines = match records::lines(&record.kinesis.data.0) {
            Ok(lines) => lines,
            Err(error) => {
                let reason = records::codec_reason(&error);
                bad_record(report, sequence_number, reason, error.to_string());
                return RecordEnd::Done;
            }
        };
        for line in &lines {
            report.lines += 1;
            let alerts = match self.evaluate(&source, line, sequence_number, report) {
                Some(alerts) => alerts,
                None => continue,
            };
            for alert in &alerts {
                let end = self
                    .notify(
                        alert,
                        line,
                        sequence_number,
                        notifier,
                        now,
                        deadline,
                        report,
                    )
                    .await;
                if let RecordEnd::OutOfTime = end {
                    return end;
                }
            }
        }
        RecordEnd::Done
    }

    fn resolve_source(&self, arn: Option<&str>) -> Result<Source, String> {
        let Some(source) = records::source_of(arn) else {
            return Err(format!(
                "event source ARN {:?} is not a Kinesis stream ARN",
                arn.unwrap_or("")
            ));
        };
        if self.config.source(&source).is_none() {
            return Err(format!(
                "stream {:?} is not declared under \"kinesis\" in sources.json",
                source.resource
            ));
        }
        Ok(source)
    }

    /// Classifies a line and evaluates the rules on its rows; `None` when it does not
    /// classify, after counting and logging it.
    fn evaluate(
        &self,
        source: &Source,
        line: &Line<'_>,
        sequence_number: &str,
        report: &mut Report,
    ) -> Option<Vec<Alert>> {
        let entry = entry_index(&line.origin);
        let classified = match self.config.classify(source, &line.data) {
            Ok(classified) => classified,
            Err(error) => {
                let reason = error.reason();
                if self.keep_line_results {
                    report.line_results.push(LineResult {
                        sequence_number: sequence_number.to_owned(),
                        entry,
                        classified: Err(reason),
                        alerts: Vec::new(),
                    });
                }
                match &line.origin {
                    Origin::Record => {
                        bad_record(report, sequence_number, reason, error.to_string());
                    }
                    Origin::Entry {
                        index,
                        agent,
                        file,
                        offset,
                        ..
                    } => {
                        let count = report.unclassified.entry(reason).or_default();
                        *count += 1;
                        if *count <= UNCLASSIFIED_LOGS_PER_REASON {
                            tracing::warn!(sequence_number, entry = index, agent = %agent, file = file.as_deref().unwrap_or("-"), offset, reason, error = %error, "Skipped a line of a packed record that did not classify.");
                        }
                    }
                }
                return None;
            }
        };
        report.classified += 1;
        let mut alerts = Vec::new();
        for event in classified.events() {
            report.rows += 1;
            alerts.extend(self.config.rules.evaluate(&event));
        }
        if self.keep_line_results {
            report.line_results.push(LineResult {
                sequence_number: sequence_number.to_owned(),
                entry,
                classified: Ok(classified.log_type().to_owned()),
                alerts: alerts
                    .iter()
                    .map(|alert| (alert.rule.clone(), alert.alert_id.clone()))
                    .collect(),
            });
        }
        Some(alerts)
    }

    /// Decides, delivers and audits one alert.
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        alert: &Alert,
        line: &Line<'_>,
        sequence_number: &str,
        notifier: &mut Notifier,
        now: u64,
        deadline: Instant,
        report: &mut Report,
    ) -> RecordEnd {
        let verdict = notifier.decide(&self.config, alert, line.agent_notified, now);
        let mut delivery = None;
        let mut end = RecordEnd::Done;
        if verdict.notified_by == NotifiedBy::Lambda {
            let messages = notifier.messages(&self.config, alert);
            delivery = Some(match notifier.deliver_alert(&messages, deadline).await {
                Outcome::Sent => {
                    report.sent += messages.len() as u64;
                    "sent"
                }
                Outcome::Dropped(_) => {
                    report.dropped += 1;
                    "dropped"
                }
                Outcome::OutOfTime => {
                    end = RecordEnd::OutOfTime;
                    "retry"
                }
            });
        }
        let entry = AuditEntry {
            sequence_number: sequence_number.to_owned(),
            entry: entry_index(&line.origin),
            alert_id: alert.alert_id.clone(),
            rule: alert.rule.clone(),
            tier: alert.tier,
            decision: decision_name(verdict.decision),
            notified_by: verdict.notified_by,
            delivery,
        };
        log_alert(alert, &entry);
        report.alerts.push(entry);
        end
    }
}

fn entry_index(origin: &Origin) -> Option<usize> {
    match origin {
        Origin::Record => None,
        Origin::Entry { index, .. } => Some(*index),
    }
}

fn bad_record(report: &mut Report, sequence_number: &str, reason: &'static str, message: String) {
    tracing::warn!(sequence_number, reason, error = %message, "Skipped a record that cannot be processed; it is not retried.");
    report.bad_records.push(BadRecord {
        sequence_number: sequence_number.to_owned(),
        reason,
        message,
    });
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Notify => "notify",
        Decision::Suppressed { .. } => "suppressed",
        Decision::Duplicate => "duplicate",
        Decision::Staged => "staged",
    }
}

/// Writes the audit line of one alert: one JSON object per alert in CloudWatch Logs, with
/// `message` "Alert.".
fn log_alert(alert: &Alert, entry: &AuditEntry) {
    tracing::info!(
        target: "edgealert::audit",
        alert_id = %entry.alert_id,
        rule = %entry.rule,
        severity = alert.severity.as_str(),
        tier = tier_name(entry.tier),
        decision = entry.decision,
        notified_by = notified_by_name(entry.notified_by),
        delivery = entry.delivery.unwrap_or("-"),
        log_type = %alert.log_type,
        host = alert.host.as_deref().unwrap_or("-"),
        query = alert.query.as_deref().unwrap_or("-"),
        sequence_number = %entry.sequence_number,
        entry = entry.entry.map_or(-1, |index| i64::try_from(index).unwrap_or(-1)),
        "Alert."
    );
}

fn tier_name(tier: rules_core::rule::Tier) -> &'static str {
    match tier {
        rules_core::rule::Tier::Agent => "agent",
        rules_core::rule::Tier::Central => "central",
        rules_core::rule::Tier::Both => "both",
    }
}

fn notified_by_name(notified_by: NotifiedBy) -> &'static str {
    match notified_by {
        NotifiedBy::Agent => "agent",
        NotifiedBy::Lambda => "lambda",
        NotifiedBy::None => "none",
    }
}

fn log_summary(report: &Report, elapsed: Duration) {
    let unclassified: u64 = report.unclassified.values().sum();
    let reasons = report
        .unclassified
        .iter()
        .map(|(reason, count)| format!("{reason}={count}"))
        .collect::<Vec<_>>()
        .join(",");
    tracing::info!(
        records = report.records,
        lines = report.lines,
        classified = report.classified,
        rows = report.rows,
        alerts = report.alerts.len(),
        sent = report.sent,
        dropped = report.dropped,
        bad_records = report.bad_records.len(),
        unclassified_lines = unclassified,
        unclassified_reasons = %reasons,
        retry_from = report.response.batch_item_failures.first().map_or("-", |failure| failure.item_identifier.as_str()),
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "Processed a batch."
    );
}

/// Returns the seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_secs())
        .unwrap_or_default()
}
