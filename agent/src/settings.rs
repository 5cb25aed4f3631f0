//! Agent settings: `agent.json` in the configuration directory.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use rules_core::{ConfigError, ConfigErrors, Source};

/// Settings of `edgealert run`, read from `DIR/agent.json`. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// Files to follow.
    pub files: Vec<PathBuf>,
    /// Source in `sources.json` whose log types the files may carry, as `service:resource`.
    pub source: String,
    /// State directory for checkpoints, status and local outputs. Default: systemd's
    /// `$STATE_DIRECTORY`, otherwise the platform data directory.
    pub state_dir: Option<PathBuf>,
    /// Start position in a file that has no checkpoint: `beginning` or `end`.
    pub start_at: StartAt,
    /// Maximum line length in bytes; longer lines are skipped and reported.
    pub max_line_bytes: u64,
    /// Bytes read but not yet accepted by every sink before reading pauses.
    pub max_unacked_bytes: u64,
    /// Interval of the safety-net check for file changes, in milliseconds. inotify wakes the
    /// agent sooner on every change.
    pub stat_interval_ms: u64,
    /// Interval between checkpoint writes, in milliseconds.
    pub checkpoint_interval_ms: u64,
    /// Time allowed to flush sinks on shutdown, in milliseconds.
    pub shutdown_timeout_ms: u64,
    /// Local alert output.
    pub alerts: AlertOutput,
    /// Optional local copy of every record (original bytes, one per line) and internal event.
    pub records_file: Option<PathBuf>,
    /// Path of the JSON-lines file of each `file:<descriptor>` output.
    pub file_outputs: std::collections::BTreeMap<String, PathBuf>,
    /// Slack delivery: webhook secrets, rate limit and retries.
    pub slack: crate::slack::SlackSettings,
    /// Forwarding of every record to a Kinesis Data Stream; absent means no forwarding.
    pub kinesis: Option<crate::kinesis::KinesisSettings>,
}

/// Start position in a file without a checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Read the existing content.
    #[default]
    Beginning,
    /// Skip the existing content.
    End,
}

/// Local alert output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AlertOutput {
    /// JSON-lines file of alerts; default `STATE_DIR/alerts.jsonl`.
    pub file: Option<PathBuf>,
    /// Also print alerts on standard output.
    pub stdout: bool,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            files: vec![
                PathBuf::from("/var/log/osquery/osqueryd.results.log"),
                PathBuf::from("/var/log/osquery/osqueryd.snapshots.log"),
            ],
            source: "file:osquery".to_owned(),
            state_dir: None,
            start_at: StartAt::Beginning,
            max_line_bytes: 16 << 20,
            max_unacked_bytes: 64 << 20,
            stat_interval_ms: 2_000,
            checkpoint_interval_ms: 250,
            shutdown_timeout_ms: 10_000,
            alerts: AlertOutput::default(),
            records_file: None,
            file_outputs: std::collections::BTreeMap::new(),
            slack: crate::slack::SlackSettings::default(),
            kinesis: None,
        }
    }
}

/// File name of the agent settings inside the configuration directory.
pub const FILE_NAME: &str = "agent.json";

impl AgentSettings {
    /// Loads `DIR/agent.json`; a missing file means all defaults.
    pub fn load(dir: &Path) -> Result<AgentSettings, ConfigErrors> {
        let path = dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AgentSettings::default());
            }
            Err(error) => return Err(single(&path, "$", format!("cannot read: {error}"))),
        };
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let settings: AgentSettings =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let text = error.path().to_string();
                let json_path = if text == "." {
                    "$".to_owned()
                } else {
                    format!("$.{text}")
                };
                single(&path, json_path, error.inner().to_string())
            })?;
        settings.validate(&path)?;
        Ok(settings)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut error = |key: &str, message: String| {
            errors.push(ConfigError::new(path, format!("$.{key}"), message))
        };
        if self.files.is_empty() {
            error(
                "files",
                "no files to follow: list at least one osquery log".to_owned(),
            );
        }
        for (index, file) in self.files.iter().enumerate() {
            if !file.is_absolute() {
                error(
                    &format!("files[{index}]"),
                    format!("path {} must be absolute", file.display()),
                );
            }
        }
        if let Some(kinesis) = &self.kinesis {
            for (key, message) in kinesis.problems() {
                error(&format!("kinesis.{key}"), message);
            }
        }
        for (descriptor, path) in &self.file_outputs {
            if !path.is_absolute() {
                error(
                    &format!("file_outputs.{descriptor}"),
                    format!("path {} must be absolute", path.display()),
                );
            }
        }
        if Source::parse(&self.source).is_none() {
            error(
                "source",
                format!(
                    "invalid source {:?}: expected service:resource, such as \"file:osquery\"",
                    self.source
                ),
            );
        }
        if self.max_line_bytes < 1024 {
            error(
                "max_line_bytes",
                format!("{} is below the minimum of 1024 bytes", self.max_line_bytes),
            );
        }
        if self.max_unacked_bytes < self.max_line_bytes {
            error(
                "max_unacked_bytes",
                "must be at least max_line_bytes".to_owned(),
            );
        }
        for (key, value) in [
            ("stat_interval_ms", self.stat_interval_ms),
            ("checkpoint_interval_ms", self.checkpoint_interval_ms),
            ("shutdown_timeout_ms", self.shutdown_timeout_ms),
        ] {
            if value == 0 {
                error(key, "must be at least 1 millisecond".to_owned());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Returns the source as parsed by [`Source::parse`]; validated at load.
    pub fn source(&self) -> Source {
        Source::parse(&self.source).unwrap_or_else(|| Source::new("file", "osquery"))
    }
}

/// Loads the configuration directory and `agent.json` together, and checks that the agent's
/// source is declared in `sources.json`, so a host never runs a pair that cannot classify.
pub fn load_all(dir: &Path) -> Result<(rules_core::Config, AgentSettings), ConfigErrors> {
    let config = rules_core::Config::load(dir)?;
    let settings = AgentSettings::load(dir)?;
    for descriptor in file_descriptors(&config) {
        if !settings.file_outputs.contains_key(&descriptor) {
            let message = format!(
                "rules write to file:{descriptor}, which has no path: add \"file_outputs\": {{\"{descriptor}\": \"/var/log/edgealert/{descriptor}.jsonl\"}}"
            );
            return Err(single(&dir.join(FILE_NAME), "$.file_outputs", message));
        }
    }
    if config.source(&settings.source()).is_none() {
        let message = format!(
            "source {} is not declared in sources.json; declare it there or pick a declared source",
            settings.source
        );
        return Err(single(&dir.join(FILE_NAME), "$.source", message));
    }
    Ok((config, settings))
}

/// Returns the descriptors of `file:` outputs that rules name.
pub fn file_descriptors(config: &rules_core::Config) -> std::collections::BTreeSet<String> {
    config
        .rules
        .rules()
        .iter()
        .flat_map(|rule| rule.spec.outputs.iter())
        .filter_map(|output| output.strip_prefix("file:"))
        .map(str::to_owned)
        .collect()
}

fn single(path: &Path, json_path: impl Into<String>, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError::new(path, json_path, message)])
}

/// Resolves the state directory: the flag, then `agent.json`, then systemd's
/// `$STATE_DIRECTORY` (its first entry), then the platform data directory.
pub fn state_dir(flag: Option<&Path>, settings: &AgentSettings) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag.or(settings.state_dir.as_deref()) {
        return Ok(dir.to_path_buf());
    }
    if let Some(dirs) = std::env::var_os("STATE_DIRECTORY") {
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        if !first.is_empty() {
            return Ok(PathBuf::from(first));
        }
    }
    let project = directories::ProjectDirs::from("", "", "edgealert").ok_or_else(|| {
        anyhow::anyhow!("no home directory to derive a state directory from: pass --state-dir")
    })?;
    Ok(project.data_dir().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_schema_file_is_current() {
        let schema = schemars::schema_for!(AgentSettings).to_value();
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../json-schema/agent.schema.json");
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == text,
            "{} is out of date: run UPDATE_SCHEMAS=1 cargo test -p edgealert",
            path.display()
        );
    }

    #[test]
    fn load_rejects_unknown_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), r#"{"file": ["/var/log/x"]}"#).unwrap();
        let errors = AgentSettings::load(dir.path()).unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].path, "$.file");
        assert!(
            errors.0[0]
                .message
                .starts_with("unknown field `file`, expected one of `files`"),
            "{}",
            errors.0[0].message
        );
    }

    #[test]
    fn load_rejects_relative_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"files": ["osqueryd.results.log"]}"#,
        )
        .unwrap();
        let errors = AgentSettings::load(dir.path()).unwrap_err();
        assert_eq!(errors.0[0].path, "$.files[0]");
        assert_eq!(
            errors.0[0].message,
            "path osqueryd.results.log must be absolute"
        );
    }

    #[test]
    fn load_all_rejects_undeclared_source() {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        let dir = tempfile::tempdir().unwrap();
        for sub in ["schemas", "rules"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        for schema in ["osquery.json", "edgealert.json"] {
            let target = dir.path().join("schemas").join(schema);
            std::fs::copy(conf.join("schemas").join(schema), target).unwrap();
        }
        std::fs::copy(conf.join("sources.json"), dir.path().join("sources.json")).unwrap();
        std::fs::write(dir.path().join(FILE_NAME), r#"{"source": "kinesis:other"}"#).unwrap();
        let errors = load_all(dir.path()).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].file, dir.path().join(FILE_NAME));
        assert_eq!(errors.0[0].path, "$.source");
        assert_eq!(
            errors.0[0].message,
            "source kinesis:other is not declared in sources.json; declare it there or pick a declared source"
        );
    }

    #[test]
    fn load_reports_every_unusable_kinesis_setting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"kinesis": {"stream": " ", "packed_record_bytes": 2000000, "zstd_level": 0,
                "max_buffer_bytes": 1024, "request_timeout_ms": 0, "max_backoff_ms": 0,
                "spool_max_bytes": 0, "region": "", "dead_letter_dir": "dead",
                "partition_key": {"field": ""}, "endpoint": "localhost:4567"}}"#,
        )
        .unwrap();
        let errors = AgentSettings::load(dir.path()).unwrap_err();
        let found: Vec<(&str, &str)> = errors
            .0
            .iter()
            .map(|error| (error.path.as_str(), error.message.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "$.kinesis.stream",
                    "no stream: give the Kinesis stream name or ARN, or remove `kinesis` to forward nothing"
                ),
                (
                    "$.kinesis.packed_record_bytes",
                    "2000000 is outside 1024..=524288: records hold at most 1 MiB with their key"
                ),
                ("$.kinesis.zstd_level", "0 is outside 1..=19"),
                (
                    "$.kinesis.max_buffer_bytes",
                    "1024 is below one full request (5242880 bytes)"
                ),
                (
                    "$.kinesis.request_timeout_ms",
                    "0 is outside 100..=120000 milliseconds"
                ),
                (
                    "$.kinesis.max_backoff_ms",
                    "0 is outside 100..=600000 milliseconds"
                ),
                (
                    "$.kinesis.spool_max_bytes",
                    "0 is below the minimum of 1048576 bytes"
                ),
                (
                    "$.kinesis.region",
                    "the region is empty: give one such as eu-west-1, or remove the key to use the environment's"
                ),
                ("$.kinesis.dead_letter_dir", "path dead must be absolute"),
                ("$.kinesis.partition_key.field", "the field name is empty"),
                (
                    "$.kinesis.endpoint",
                    "\"localhost:4567\" is not a URL such as http://127.0.0.1:4567"
                ),
            ]
        );
    }

    #[test]
    fn load_rejects_unknown_partition_key_keyword() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"kinesis": {"stream": "s", "partition_key": "hostname"}}"#,
        )
        .unwrap();
        let errors = AgentSettings::load(dir.path()).unwrap_err();
        assert_eq!(errors.0[0].path, "$.kinesis.partition_key");
        assert_eq!(
            errors.0[0].message,
            r#"unknown partition key "hostname": expected "hostIdentifier", "random" or {"field": NAME} at line 1 column 56"#
        );
    }

    #[test]
    fn load_without_file_uses_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            AgentSettings::load(dir.path()).unwrap(),
            AgentSettings::default()
        );
    }
}
