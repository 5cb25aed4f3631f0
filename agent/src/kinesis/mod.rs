//! Forwarding of every record to an AWS Kinesis Data Stream.
//!
//! The pipeline thread hands each processed batch to the forwarder task with the tail
//! positions it covers. The [`packer`] turns lines into Kinesis records, the [`sender`]
//! puts them with PutRecords, retries only the entries that failed, and moves records to
//! the on-disk [`spool`] when Kinesis stays unreachable. A batch's positions are
//! acknowledged to the tailer, in order, once every record holding its lines was accepted
//! by Kinesis or written to the spool.

pub mod packer;
pub mod sender;
pub mod spool;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `kinesis` in `agent.json`: where and how records are forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KinesisSettings {
    /// Stream name, or its ARN.
    pub stream: String,
    /// AWS region; default from the environment or the shared profile.
    pub region: Option<String>,
    /// Endpoint URL overriding the AWS endpoint, for local emulators.
    pub endpoint: Option<String>,
    /// Partition key of each record.
    pub partition_key: PartitionKey,
    /// Record format: `packed` (many lines per record) or `compat` (one line per record).
    pub format: RecordFormat,
    /// Compression of packed records: `zstd` or `none`.
    pub compression: Compression,
    /// zstd level of packed records, 1 (fastest) to 19.
    pub zstd_level: i32,
    /// Uncompressed size at which a packed record is closed, in bytes.
    pub packed_record_bytes: u64,
    /// Maximum time a line waits for more lines to share its record, in milliseconds.
    pub linger_ms: u64,
    /// Bytes of records held in memory before they move to the spool.
    pub max_buffer_bytes: u64,
    /// Time after which records move to the spool while Kinesis keeps failing, in
    /// milliseconds.
    pub spool_after_ms: u64,
    /// Largest size of the on-disk spool in bytes; when it is full, reading pauses.
    pub spool_max_bytes: u64,
    /// Time allowed for one PutRecords call, in milliseconds.
    pub request_timeout_ms: u64,
    /// Maximum wait between two retries, in milliseconds.
    pub max_backoff_ms: u64,
    /// Directory for records too large for Kinesis; default `STATE_DIR/dead-letter`.
    pub dead_letter_dir: Option<PathBuf>,
    /// Largest size of the dead-letter directory in bytes; a line that would pass it is
    /// counted as lost.
    pub dead_letter_max_bytes: u64,
}

impl Default for KinesisSettings {
    fn default() -> Self {
        KinesisSettings {
            stream: String::new(),
            region: None,
            endpoint: None,
            partition_key: PartitionKey::default(),
            format: RecordFormat::Packed,
            compression: Compression::Zstd,
            zstd_level: 3,
            packed_record_bytes: 256 * 1024,
            linger_ms: 1_000,
            max_buffer_bytes: 8 << 20,
            spool_after_ms: 15_000,
            spool_max_bytes: 1 << 30,
            request_timeout_ms: 10_000,
            max_backoff_ms: 10_000,
            dead_letter_dir: None,
            dead_letter_max_bytes: 256 << 20,
        }
    }
}

/// Source of the partition key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PartitionKey {
    /// A keyword: `hostIdentifier` (the line's host, default) or `random` (a new key for
    /// each batch).
    Named(NamedKey),
    /// A top-level field of the line.
    Field {
        /// Name of the field.
        field: String,
    },
}

impl<'de> Deserialize<'de> for PartitionKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let expected = r#"expected "hostIdentifier", "random" or {"field": NAME}"#;
        match &value {
            serde_json::Value::String(name) => match name.as_str() {
                "hostIdentifier" => Ok(PartitionKey::Named(NamedKey::HostIdentifier)),
                "random" => Ok(PartitionKey::Named(NamedKey::Random)),
                other => Err(D::Error::custom(format!(
                    "unknown partition key {other:?}: {expected}"
                ))),
            },
            serde_json::Value::Object(map) if map.len() == 1 => match map.get("field") {
                Some(serde_json::Value::String(field)) => Ok(PartitionKey::Field {
                    field: field.clone(),
                }),
                _ => Err(D::Error::custom(format!(
                    "invalid partition key {value}: {expected}"
                ))),
            },
            _ => Err(D::Error::custom(format!(
                "invalid partition key {value}: {expected}"
            ))),
        }
    }
}

impl Default for PartitionKey {
    fn default() -> Self {
        PartitionKey::Named(NamedKey::HostIdentifier)
    }
}

/// Partition key keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NamedKey {
    /// The line's `hostIdentifier`.
    #[serde(rename = "hostIdentifier")]
    HostIdentifier,
    /// A new random key for each batch.
    #[serde(rename = "random")]
    Random,
}

impl PartitionKey {
    /// Field of the line whose value is the key, or `None` for random keys.
    pub fn field(&self) -> Option<String> {
        match self {
            PartitionKey::Named(NamedKey::HostIdentifier) => Some("hostIdentifier".to_owned()),
            PartitionKey::Named(NamedKey::Random) => None,
            PartitionKey::Field { field } => Some(field.clone()),
        }
    }
}

/// Record format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// Many lines per record with their origin; see `docs/kinesis-records.md`.
    #[default]
    Packed,
    /// One line per record, byte-identical to the log.
    Compat,
}

/// Compression of packed records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd, stored uncompressed when that is not smaller.
    #[default]
    Zstd,
    /// No compression.
    None,
}

impl KinesisSettings {
    /// Checks values that serde accepts but the forwarder cannot use; each problem is a
    /// `(key, message)` pair under `kinesis`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| problems.push((key.to_owned(), message));
        if self.stream.trim().is_empty() {
            problem(
                "stream",
                "no stream: give the Kinesis stream name or ARN, or remove `kinesis` to forward nothing".into(),
            );
        }
        let most = rules_core::kinesis::MAX_RECORD_BYTES as u64 / 2;
        if !(1024..=most).contains(&self.packed_record_bytes) {
            problem(
                "packed_record_bytes",
                format!(
                    "{} is outside 1024..={most}: records hold at most 1 MiB with their key",
                    self.packed_record_bytes
                ),
            );
        }
        if !(1..=19).contains(&self.zstd_level) {
            problem(
                "zstd_level",
                format!("{} is outside 1..=19", self.zstd_level),
            );
        }
        if self.max_buffer_bytes < rules_core::kinesis::MAX_REQUEST_BYTES as u64 {
            problem(
                "max_buffer_bytes",
                format!(
                    "{} is below one full request ({} bytes)",
                    self.max_buffer_bytes,
                    rules_core::kinesis::MAX_REQUEST_BYTES
                ),
            );
        }
        let mut range = |key: &str, value: u64, low: u64, high: u64, unit: &str| {
            if value < low && high == u64::MAX {
                problem(key, format!("{value} is below the minimum of {low} {unit}"));
            } else if !(low..=high).contains(&value) {
                problem(key, format!("{value} is outside {low}..={high} {unit}"));
            }
        };
        range(
            "request_timeout_ms",
            self.request_timeout_ms,
            100,
            120_000,
            "milliseconds",
        );
        range(
            "max_backoff_ms",
            self.max_backoff_ms,
            100,
            600_000,
            "milliseconds",
        );
        range("linger_ms", self.linger_ms, 0, 60_000, "milliseconds");
        range(
            "spool_max_bytes",
            self.spool_max_bytes,
            1 << 20,
            u64::MAX,
            "bytes",
        );
        if self
            .region
            .as_deref()
            .is_some_and(|region| region.trim().is_empty())
        {
            problem(
                "region",
                "the region is empty: give one such as eu-west-1, or remove the key to use the environment's".into(),
            );
        }
        if let Some(dir) = &self.dead_letter_dir
            && !dir.is_absolute()
        {
            problem(
                "dead_letter_dir",
                format!("path {} must be absolute", dir.display()),
            );
        }
        if let PartitionKey::Field { field } = &self.partition_key
            && field.is_empty()
        {
            problem("partition_key.field", "the field name is empty".into());
        }
        let usable = |endpoint: &str| {
            url::Url::parse(endpoint)
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        };
        if let Some(endpoint) = &self.endpoint
            && !usable(endpoint)
        {
            problem(
                "endpoint",
                format!("{endpoint:?} is not a URL such as http://127.0.0.1:4567"),
            );
        }
        problems
    }
}

/// Forwarding state for `edgealert status`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KinesisStatus {
    /// Stream name or ARN.
    pub stream: String,
    /// Record format.
    pub format: String,
    /// Kinesis records accepted.
    pub records_sent: u64,
    /// Lines and internal events inside accepted records.
    pub entries_sent: u64,
    /// Bytes of data and keys accepted.
    pub bytes_sent: u64,
    /// PUT payload units of accepted records: each record counts its size in 25 KiB
    /// units, rounded up, as Kinesis bills them.
    #[serde(default)]
    pub payload_units: u64,
    /// PutRecords calls made.
    pub requests: u64,
    /// Entries that failed inside successful responses and were retried.
    pub entries_retried: u64,
    /// Entries or calls refused for throughput.
    pub throttled: u64,
    /// Calls that failed as a whole (network, timeout, 5xx, credentials).
    pub request_errors: u64,
    /// Lines larger than a record that were split into rows.
    pub lines_split: u64,
    /// Rows or lines too large for any record, written to the dead-letter directory.
    pub dead_lettered: u64,
    /// Of those, rows or lines lost because the dead-letter directory could not take them.
    #[serde(default)]
    pub dead_letter_failures: u64,
    /// Records held in memory.
    pub buffered_records: u64,
    /// Bytes held in memory.
    pub buffered_bytes: u64,
    /// Records in the on-disk spool.
    pub spool_records: u64,
    /// Bytes of the on-disk spool files.
    pub spool_bytes: u64,
    /// Damaged spool frames skipped, such as a write cut by a crash.
    pub spool_torn_frames: u64,
    /// Bytes skipped inside spool segments because they were damaged; the records they
    /// held are lost.
    #[serde(default)]
    pub spool_damaged_bytes: u64,
    /// True while the spool is full and reading is paused.
    pub paused: bool,
    /// Unix time of the last accepted call, in milliseconds.
    pub last_success_unix_ms: Option<u64>,
    /// Last error, without secrets.
    pub last_error: Option<String>,
    /// True when the last error needs an administrator (stream not found, access denied).
    pub config_error: bool,
}
