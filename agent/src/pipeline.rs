//! Classification and evaluation of tailed lines, shared by `run` and its tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use rules_core::record::ParseError;
use rules_core::{Alert, ClassifyError, Config, Source};
use serde::Serialize;
use tailer::{Position, ProblemKind, Split, TailEvent};

/// Maximum length of the excerpt of a bad line copied into an internal event, in bytes.
const EXCERPT_BYTES: usize = 256;

/// Output of one batch of tail events.
#[derive(Debug, Default)]
pub struct Processed {
    /// Alerts of every rule that matched.
    pub alerts: Vec<Alert>,
    /// Records to forward: original lines and internal events, in order.
    pub records: Vec<OutRecord>,
    /// Positions to acknowledge once the sinks accepted the batch.
    pub acks: Vec<Position>,
}

/// A line or internal event to forward, with where it came from.
#[derive(Debug, Clone)]
pub struct OutRecord {
    /// The exact bytes: the line as read, or the internal event's JSON.
    pub bytes: Vec<u8>,
    /// True for an internal event the agent generated.
    pub internal: bool,
    /// Path the line was read from.
    pub path: std::path::PathBuf,
    /// Identity of the file on this host, `device:inode`.
    pub file_id: String,
    /// Byte offset of the line (or of the problem) in the file.
    pub offset: u64,
    /// Value of the partition key field, when the line has it as a scalar.
    pub key: Option<String>,
    /// True when the agent classified and evaluated the record with its rules.
    pub evaluated: bool,
}

impl OutRecord {
    fn new(position: &Position, bytes: Vec<u8>, internal: bool, evaluated: Evaluated) -> OutRecord {
        OutRecord {
            bytes,
            internal,
            path: position.path.clone(),
            file_id: format!("{}:{}", position.file.dev, position.file.inode),
            offset: position.start,
            key: evaluated.key,
            evaluated: evaluated.ok,
        }
    }
}

/// Outcome of evaluating one record, for its [`OutRecord`].
#[derive(Debug, Default)]
struct Evaluated {
    ok: bool,
    key: Option<String>,
}

/// Counters of the pipeline since start.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct Counters {
    /// Lines read.
    pub lines: u64,
    /// Lines classified as a log type.
    pub records: u64,
    /// Rows evaluated (batch and snapshot records hold many).
    pub rows: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Keys not declared by the matching schema (lenient mode).
    pub extra_keys: u64,
    /// Internal events by reason, such as `line_too_long` or `invalid_json`.
    pub internal_events: BTreeMap<String, u64>,
    /// Bytes that may have been lost to `copytruncate` rotation.
    pub possibly_lost_bytes: u64,
}

/// Classifies and evaluates lines with the active configuration.
pub struct Pipeline {
    config: Arc<Config>,
    source: Source,
    host: String,
    key_field: Option<String>,
    warnings: WarningLimiter,
    /// Counters since start.
    pub counters: Counters,
}

/// Logs at most [`WarningLimiter::PER_MINUTE`] warnings of one reason per minute; the
/// counters still count every occurrence.
#[derive(Debug, Default)]
struct WarningLimiter {
    window: BTreeMap<&'static str, (u64, u32)>,
}

impl WarningLimiter {
    const PER_MINUTE: u32 = 5;

    fn allow(&mut self, reason: &'static str) -> bool {
        let minute = unix_now() / 60;
        let entry = self.window.entry(reason).or_insert((minute, 0));
        if entry.0 != minute {
            if entry.1 > Self::PER_MINUTE {
                let suppressed = entry.1 - Self::PER_MINUTE;
                tracing::warn!(
                    reason,
                    suppressed,
                    "Suppressed repeated warnings in the last minute."
                );
            }
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= Self::PER_MINUTE
    }
}

/// An internal event: something the agent noticed about its input, forwarded and evaluated
/// like any record (log type `edgealert:internal`).
#[derive(Debug, Serialize)]
struct InternalEvent<'a> {
    edgealert: InternalMeta,
    #[serde(rename = "hostIdentifier")]
    host_identifier: &'a str,
    #[serde(rename = "unixTime")]
    unix_time: u64,
    reason: &'a str,
    file: String,
    offset: u64,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    excerpt: Option<String>,
}

#[derive(Debug, Serialize)]
struct InternalMeta {
    version: &'static str,
}

impl Pipeline {
    /// Creates a pipeline for lines from `source`, naming `host` in internal events.
    pub fn new(config: Arc<Config>, source: Source, host: String) -> Pipeline {
        Pipeline {
            config,
            source,
            host,
            key_field: Some("hostIdentifier".to_owned()),
            warnings: WarningLimiter::default(),
            counters: Counters::default(),
        }
    }

    /// Replaces the configuration; later batches use the new one.
    pub fn set_config(&mut self, config: Arc<Config>) {
        self.config = config;
    }

    /// Sets the top-level field whose value becomes each record's partition key; `None`
    /// when keys do not come from the records.
    pub fn set_key_field(&mut self, field: Option<String>) {
        self.key_field = field;
    }

    /// Returns the active configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Counts an internal event that has no position to report, such as an unterminated
    /// last line at the end of a replayed file.
    pub fn count_internal(&mut self, reason: &str) {
        *self
            .counters
            .internal_events
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Processes a batch in order.
    pub fn process(&mut self, events: Vec<TailEvent>) -> Processed {
        let mut out = Processed::default();
        for event in events {
            match event {
                TailEvent::Line(line) => {
                    self.line(&line.position, line.bytes, &mut out);
                    out.acks.push(line.position);
                }
                TailEvent::Problem(problem) => {
                    self.problem(&problem.position, &problem.kind, &mut out);
                    out.acks.push(problem.position);
                }
            }
        }
        self.counters.alerts += out.alerts.len() as u64;
        out
    }

    fn line(&mut self, position: &Position, bytes: Vec<u8>, out: &mut Processed) {
        self.counters.lines += 1;
        let error = match self.evaluate_line(&bytes, out) {
            Ok(evaluated) => {
                out.records
                    .push(OutRecord::new(position, bytes, false, evaluated));
                return;
            }
            Err(error) => error,
        };
        // Glue recovery runs only for lines that failed to parse, so a normal line is
        // parsed once.
        let split = match &error {
            ClassifyError::Parse(ParseError::InvalidJson { .. }) => tailer::split_glued(&bytes),
            _ => None,
        };
        match split {
            Some(Split::Fragment { at }) => self.glued(position, bytes, at, out),
            Some(Split::TwoRecords { at }) => {
                let second = bytes[at..].to_vec();
                let mut first = bytes;
                first.truncate(at);
                self.recovered(&shifted(position, 0, at), first, out);
                self.recovered(&shifted(position, at, second.len()), second, out);
            }
            None => {
                let excerpt = lossy_excerpt(&bytes);
                self.internal(
                    error.reason(),
                    position,
                    error.to_string(),
                    Some(excerpt),
                    out,
                );
                out.records
                    .push(OutRecord::new(position, bytes, false, Evaluated::default()));
            }
        }
    }

    /// Handles a record glued to the fragment `bytes[..at]` of an interrupted write: the
    /// fragment becomes an internal event and the record is evaluated and forwarded alone.
    fn glued(&mut self, position: &Position, bytes: Vec<u8>, at: usize, out: &mut Processed) {
        let fragment = &bytes[..at];
        let message = format!(
            "Recovered a record glued to a {}-byte fragment of an interrupted write.",
            fragment.len()
        );
        if self.warnings.allow("glued_fragment") {
            tracing::warn!(file = %position.path.display(), offset = position.start, reason = "glued_fragment", "{message}");
        }
        let excerpt = lossy_excerpt(fragment);
        self.internal(
            "glued_fragment",
            &shifted(position, 0, at),
            message,
            Some(excerpt),
            out,
        );
        let record = bytes[at..].to_vec();
        self.recovered(&shifted(position, at, record.len()), record, out);
    }

    /// Evaluates and forwards a record recovered from a glued line.
    fn recovered(&mut self, position: &Position, bytes: Vec<u8>, out: &mut Processed) {
        let evaluated = match self.evaluate_line(&bytes, out) {
            Ok(evaluated) => evaluated,
            Err(error) => {
                let excerpt = lossy_excerpt(&bytes);
                self.internal(
                    error.reason(),
                    position,
                    error.to_string(),
                    Some(excerpt),
                    out,
                );
                Evaluated::default()
            }
        };
        out.records
            .push(OutRecord::new(position, bytes, false, evaluated));
    }

    /// Classifies one line and evaluates the rules on each of its rows.
    fn evaluate_line(
        &mut self,
        bytes: &[u8],
        out: &mut Processed,
    ) -> Result<Evaluated, ClassifyError> {
        let config = Arc::clone(&self.config);
        let classified = config.classify(&self.source, bytes)?;
        self.counters.records += 1;
        self.counters.extra_keys += classified.extra_keys as u64;
        for event in classified.events() {
            self.counters.rows += 1;
            out.alerts.extend(config.rules.evaluate(&event));
        }
        Ok(Evaluated {
            ok: true,
            key: self.key_of(&classified.record.value),
        })
    }

    fn key_of(&self, value: &serde_json::Value) -> Option<String> {
        match value.get(self.key_field.as_deref()?)? {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            serde_json::Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        }
    }

    fn problem(&mut self, position: &Position, kind: &ProblemKind, out: &mut Processed) {
        let (reason, message) = describe(kind);
        if let ProblemKind::Truncated {
            possibly_lost_bytes,
        } = kind
        {
            self.counters.possibly_lost_bytes += possibly_lost_bytes;
        }
        let excerpt = match kind {
            ProblemKind::GluedFragment { fragment } => Some(lossy_excerpt(fragment)),
            ProblemKind::UnterminatedLine { bytes } => Some(lossy_excerpt(bytes)),
            _ => None,
        };
        if self.warnings.allow(reason) {
            tracing::warn!(file = %position.path.display(), offset = position.start, reason, "{message}");
        }
        self.internal(reason, position, message, excerpt, out);
    }

    /// Builds an internal event, evaluates it and queues it for forwarding.
    fn internal(
        &mut self,
        reason: &str,
        position: &Position,
        message: String,
        excerpt: Option<String>,
        out: &mut Processed,
    ) {
        *self
            .counters
            .internal_events
            .entry(reason.to_owned())
            .or_default() += 1;
        let event = InternalEvent {
            edgealert: InternalMeta {
                version: env!("CARGO_PKG_VERSION"),
            },
            host_identifier: &self.host,
            unix_time: unix_now(),
            reason,
            file: position.path.display().to_string(),
            offset: position.start,
            message,
            excerpt,
        };
        let Ok(bytes) = serde_json::to_vec(&event) else {
            return;
        };
        let config = Arc::clone(&self.config);
        let mut evaluated = Evaluated {
            ok: false,
            key: Some(self.host.clone()),
        };
        if let Ok(classified) = config.classify(&self.source, &bytes) {
            for row in classified.events() {
                out.alerts.extend(config.rules.evaluate(&row));
            }
            evaluated.ok = true;
        }
        out.records
            .push(OutRecord::new(position, bytes, true, evaluated));
    }
}

/// Returns the host name for internal events, or `unknown`.
pub fn local_host() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Returns the position of `len` bytes at `offset` inside the line at `position`.
fn shifted(position: &Position, offset: usize, len: usize) -> Position {
    let start = position.start + offset as u64;
    Position {
        start,
        end: start + len as u64,
        ..position.clone()
    }
}

fn lossy_excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]).into_owned()
}

/// Returns the counter reason and a one-sentence message for a tailer problem.
pub fn describe(kind: &ProblemKind) -> (&'static str, String) {
    match kind {
        ProblemKind::LineTooLong { len } => (
            "line_too_long",
            format!("Skipped a line of {len} bytes, longer than max_line_bytes."),
        ),
        ProblemKind::GluedFragment { fragment } => (
            "glued_fragment",
            format!(
                "Recovered a record glued to a {}-byte fragment of an interrupted write.",
                fragment.len()
            ),
        ),
        ProblemKind::Truncated {
            possibly_lost_bytes,
        } => (
            "truncated",
            format!(
                "File was truncated in place; up to {possibly_lost_bytes} bytes may have been lost."
            ),
        ),
        ProblemKind::UnterminatedLine { bytes } => (
            "unterminated_line",
            format!(
                "File ended with {} bytes that no newline followed.",
                bytes.len()
            ),
        ),
        ProblemKind::ArchiveTooLarge { limit } => (
            "archive_too_large",
            format!(
                "Stopped reading a compressed archive at the limit of {limit} decompressed bytes."
            ),
        ),
        ProblemKind::ArchiveUnreadable { error } => (
            "archive_unreadable",
            format!("Compressed archive could not be read: {error}."),
        ),
        ProblemKind::FileVanished { acked_offset } => (
            "file_vanished",
            format!(
                "Checkpointed file was not found; bytes after offset {acked_offset} were not read."
            ),
        ),
        ProblemKind::ReadFailed { error } => {
            ("read_failed", format!("Reading the file failed: {error}."))
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_secs())
        .unwrap_or_default()
}
