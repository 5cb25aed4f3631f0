//! Loading and validation of a configuration directory.
//!
//! Layout, in the shapes StreamAlert users already have:
//!
//! | path | content |
//! |---|---|
//! | `logs.json` and/or `schemas/*.json` | log schemas |
//! | `sources.json` | service → resource → `{"logs": [...]}`, the log types a source may carry |
//! | `outputs.json` | output service → descriptors, such as `{"slack": ["security"]}` |
//! | `rules/*.json` | one rule per file |
//! | `rules/tests/**/*.json` | rule test events (see [`crate::testing`]) |
//! | `edgealert.json` | optional settings shared by agents and the Lambda |
//!
//! [`Config::load`] reads and validates everything and either returns a complete
//! configuration or every error it found; nothing half-loads.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ConfigError, ConfigErrors, Diagnostics};
use crate::record::{self, Event, ParseError, Record};
use crate::rule::{self, RuleContext, RuleSet};
use crate::schema::{self, ClassifyMode, DisabledSchema, LogSchema, Mismatch, quote};

/// Output services that edgealert delivers to: Slack incoming webhooks, and JSON-lines
/// files for local collectors.
pub const SUPPORTED_OUTPUT_SERVICES: &[&str] = &["file", "slack"];
/// Services allowed as keys of `sources.json`.
pub const SOURCE_SERVICES: &[&str] = &["file", "kinesis", "s3", "sns", "streamalert_app"];
/// Largest configuration file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Settings shared by agents and the Lambda (`edgealert.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Classifier settings.
    #[serde(default)]
    pub classifier: ClassifierSettings,
    /// Slack message settings.
    #[serde(default)]
    pub slack: SlackSettings,
}

/// Classifier settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSettings {
    /// `lenient` (default) counts unknown extra keys; `strict` rejects them as StreamAlert does.
    #[serde(default)]
    pub mode: ClassifyMode,
}

/// Settings of the Slack alert messages that agents and the Lambda post.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// Field paths of the matched record whose values are shown as `[redacted]`, such as
    /// `columns.cmdline` or `decorations.username`. `hostIdentifier` and `name` also hide the
    /// host and query fields. A path that a record lacks is ignored.
    #[serde(default)]
    pub redact: Vec<String>,
}

/// `sources.json`: service → resource → allowed log types.
pub type SourcesFile = BTreeMap<String, BTreeMap<String, SourceEntry>>;

/// One resource of `sources.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// Log types (`osquery:batch`) or families (`osquery`) the resource carries.
    pub logs: Vec<String>,
}

/// `outputs.json`: service → descriptors (a list, or StreamAlert's map of descriptor to
/// resource name for AWS outputs).
pub type OutputsFile = BTreeMap<String, OutputDescriptors>;

/// Descriptors of one output service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OutputDescriptors {
    /// `["security", "ops"]`
    List(Vec<String>),
    /// `{"descriptor": "resource-name"}`
    Map(BTreeMap<String, String>),
}

/// A source of records: a service and a resource in it, such as `file:osquery`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    /// Service, such as `kinesis` or `file`.
    pub service: String,
    /// Resource within the service, such as a stream name.
    pub resource: String,
}

impl Source {
    /// Creates a source.
    pub fn new(service: impl Into<String>, resource: impl Into<String>) -> Source {
        Source {
            service: service.into(),
            resource: resource.into(),
        }
    }

    /// Parses `service:resource`.
    pub fn parse(text: &str) -> Option<Source> {
        let (service, resource) = text.split_once(':')?;
        (!service.is_empty() && !resource.is_empty()).then(|| Source::new(service, resource))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.resource)
    }
}

/// A validated configuration directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory it was loaded from.
    pub dir: PathBuf,
    /// Shared settings.
    pub settings: Settings,
    /// Usable log schemas, in classification order.
    pub schemas: Vec<LogSchema>,
    /// Log types that were read but cannot be used, with the reason.
    pub disabled_schemas: Vec<DisabledSchema>,
    /// Sources with the indices (into `schemas`) of the log types they may carry.
    pub sources: BTreeMap<Source, Vec<usize>>,
    /// Declared outputs, service → descriptors.
    pub outputs: BTreeMap<String, Vec<String>>,
    /// Compiled rules.
    pub rules: RuleSet,
    /// Problems that do not stop loading, such as unsupported log types.
    pub warnings: Vec<ConfigError>,
    /// SHA-256 of every file loaded (paths and bytes), in hex; equal digests mean equal
    /// configurations.
    pub digest: String,
}

/// A line classified as one log type.
#[derive(Debug, Clone)]
pub struct Classified<'c> {
    /// The parsed record.
    pub record: Record,
    /// Its log schema.
    pub schema: &'c LogSchema,
    /// Number of keys the schema does not declare (always 0 in strict mode).
    pub extra_keys: usize,
}

impl Classified<'_> {
    /// Returns the log type name.
    pub fn log_type(&self) -> &str {
        &self.schema.name
    }

    /// Explodes the record into the events rules evaluate.
    pub fn events(&self) -> Vec<Event<'_>> {
        record::events(&self.schema.name, &self.record.value)
    }
}

/// Reason a line was not classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// The line is not a JSON object.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The source is not in `sources.json`.
    #[error("source {0} is not declared in sources.json")]
    UnknownSource(String),
    /// No allowed schema matched; the closest one is explained.
    #[error("{}", describe_no_match(.closest.as_deref(), .mismatch))]
    NoMatch {
        /// The allowed log type that came closest, if any was allowed.
        closest: Option<String>,
        /// Differences between the record and that log type.
        mismatch: Mismatch,
    },
}

impl ClassifyError {
    /// Returns a short stable name for counters, such as `no_matching_schema`.
    pub fn reason(&self) -> &'static str {
        match self {
            ClassifyError::Parse(error) => error.reason(),
            ClassifyError::UnknownSource(_) => "unknown_source",
            ClassifyError::NoMatch { .. } => "no_matching_schema",
        }
    }
}

fn describe_no_match(closest: Option<&str>, mismatch: &Mismatch) -> String {
    let Some(closest) = closest else {
        return "the source allows no log types".to_owned();
    };
    let mut parts = Vec::new();
    for (label, items) in [
        ("missing", &mismatch.missing),
        ("mistyped", &mismatch.mistyped),
        ("unexpected", &mismatch.unexpected),
        ("log_patterns not matched", &mismatch.pattern_mismatches),
    ] {
        if !items.is_empty() {
            parts.push(format!("{label}: {}", items.join(", ")));
        }
    }
    format!(
        "matched no log type; closest is {closest} ({})",
        parts.join("; ")
    )
}

impl Config {
    /// Loads and validates the configuration directory `dir`.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        let mut loader = Loader::new(dir);
        let config = loader.load();
        if let (true, Some(config)) = (loader.errors.is_empty(), config) {
            return Ok(config);
        }
        if loader.errors.is_empty() {
            loader.errors.push(ConfigError::new(
                dir,
                "$",
                "configuration could not be loaded",
            ));
        }
        Err(ConfigErrors(loader.errors))
    }

    /// Returns the allowed schema indices of `source`.
    pub fn source(&self, source: &Source) -> Option<&[usize]> {
        self.sources.get(source).map(Vec::as_slice)
    }

    /// Returns the schema named `log_type`.
    pub fn schema(&self, log_type: &str) -> Option<&LogSchema> {
        self.schemas.iter().find(|schema| schema.name == log_type)
    }

    /// Parses `line` and classifies it among the log types `source` may carry.
    pub fn classify(&self, source: &Source, line: &[u8]) -> Result<Classified<'_>, ClassifyError> {
        let allowed = self
            .source(source)
            .ok_or_else(|| ClassifyError::UnknownSource(source.to_string()))?;
        let record = record::parse_line(line)?;
        self.classify_record(allowed, record)
    }

    /// Classifies a parsed record among the schemas at `allowed` indices.
    pub fn classify_record(
        &self,
        allowed: &[usize],
        record: Record,
    ) -> Result<Classified<'_>, ClassifyError> {
        let mode = self.settings.classifier.mode;
        for &index in allowed {
            let schema = &self.schemas[index];
            if let Some(extra_keys) = schema.check(&record.value, mode) {
                return Ok(Classified {
                    record,
                    schema,
                    extra_keys,
                });
            }
        }
        Err(self.closest_mismatch(allowed, &record.value))
    }

    fn closest_mismatch(&self, allowed: &[usize], record: &Value) -> ClassifyError {
        let mode = self.settings.classifier.mode;
        let best = allowed
            .iter()
            .map(|&index| {
                (
                    &self.schemas[index],
                    self.schemas[index].explain(record, mode),
                )
            })
            .min_by_key(|(_, mismatch)| mismatch.score(mode));
        match best {
            Some((schema, mismatch)) => ClassifyError::NoMatch {
                closest: Some(schema.name.clone()),
                mismatch,
            },
            None => ClassifyError::NoMatch {
                closest: None,
                mismatch: Mismatch::default(),
            },
        }
    }
}

/// Reads a file with a size bound.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let metadata = std::fs::metadata(path).map_err(|error| format!("cannot read: {error}"))?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is {} bytes; the limit is {MAX_FILE_BYTES}",
            metadata.len()
        ));
    }
    std::fs::read(path).map_err(|error| format!("cannot read: {error}"))
}

/// Lists `*.json` files of `dir` in name order; a missing directory yields no files.
pub(crate) fn json_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(format!("cannot list directory: {error}")),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|error| format!("cannot list directory: {error}"))?
            .path();
        if path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

struct Loader<'a> {
    dir: &'a Path,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    hasher: Sha256,
}

impl<'a> Loader<'a> {
    fn new(dir: &'a Path) -> Self {
        Loader {
            dir,
            errors: Vec::new(),
            warnings: Vec::new(),
            hasher: Sha256::new(),
        }
    }

    fn load(&mut self) -> Option<Config> {
        if !self.dir.is_dir() {
            self.errors.push(ConfigError::new(
                self.dir,
                "$",
                "configuration directory not found: pass --conf DIR",
            ));
            return None;
        }
        let settings = self.load_settings();
        let (schemas, disabled_schemas) = self.load_schemas();
        let log_types: Vec<String> = schemas.iter().map(|schema| schema.name.clone()).collect();
        let families = schema::families(&schemas);
        let sources = self.load_sources(&schemas, &families, &disabled_schemas);
        let outputs = self.load_outputs();
        let context = RuleContext {
            log_types: &log_types,
            families: &families,
            outputs: &outputs,
        };
        let rules = self.load_rules(&context);
        let digest = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Some(Config {
            dir: self.dir.to_path_buf(),
            settings,
            schemas,
            disabled_schemas,
            sources,
            outputs,
            rules: RuleSet::new(rules),
            warnings: std::mem::take(&mut self.warnings),
            digest,
        })
    }

    /// Reads and parses a JSON file, recording it in the digest; `None` after an error.
    fn read_json(&mut self, path: &Path) -> Option<(Vec<u8>, Value)> {
        let bytes = match read_file(path) {
            Ok(bytes) => bytes,
            Err(message) => {
                self.errors.push(ConfigError::new(path, "$", message));
                return None;
            }
        };
        let relative = path.strip_prefix(self.dir).unwrap_or(path);
        self.hasher.update(relative.to_string_lossy().as_bytes());
        self.hasher.update([0u8]);
        self.hasher.update((bytes.len() as u64).to_be_bytes());
        self.hasher.update(&bytes);
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => Some((bytes, value)),
            Err(error) => {
                let message = format!(
                    "invalid JSON at line {} column {}: {error}",
                    error.line(),
                    error.column()
                );
                self.errors.push(ConfigError::new(path, "$", message));
                None
            }
        }
    }

    fn load_settings(&mut self) -> Settings {
        let path = self.dir.join("edgealert.json");
        if !path.exists() {
            return Settings::default();
        }
        let Some((bytes, _)) = self.read_json(&path) else {
            return Settings::default();
        };
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize::<_, Settings>(&mut deserializer) {
            Ok(settings) => {
                self.check_redact_paths(&path, &settings.slack.redact);
                settings
            }
            Err(error) => {
                let json_path = rule::json_path(error.path());
                self.errors.push(ConfigError::new(
                    &path,
                    json_path,
                    error.inner().to_string(),
                ));
                Settings::default()
            }
        }
    }

    fn check_redact_paths(&mut self, file: &Path, paths: &[String]) {
        for (index, path) in paths.iter().enumerate() {
            if path.split('.').any(str::is_empty) {
                self.errors.push(ConfigError::new(
                    file,
                    format!("$.slack.redact[{index}]"),
                    format!("invalid field path {path:?}: use keys separated by '.', such as \"columns.cmdline\""),
                ));
            }
        }
    }

    fn load_schemas(&mut self) -> (Vec<LogSchema>, Vec<DisabledSchema>) {
        let mut files = Vec::new();
        let logs = self.dir.join("logs.json");
        if logs.exists() {
            files.push(logs);
        }
        match json_files(&self.dir.join("schemas")) {
            Ok(found) => files.extend(found),
            Err(message) => {
                self.errors
                    .push(ConfigError::new(self.dir.join("schemas"), "$", message))
            }
        }
        if files.is_empty() {
            self.errors.push(ConfigError::new(
                self.dir.join("schemas"),
                "$",
                "no log schemas found: add logs.json or schemas/*.json",
            ));
        }
        let mut schemas: Vec<LogSchema> = Vec::new();
        let mut disabled = Vec::new();
        for file in files {
            let Some((_, document)) = self.read_json(&file) else {
                continue;
            };
            let mut diagnostics = Diagnostics::new(&file, &mut self.errors);
            let (found, found_disabled) = schema::parse_schema_file(&document, &mut diagnostics);
            for schema in found {
                if let Some(previous) = schemas.iter().find(|existing| existing.name == schema.name)
                {
                    let message = format!(
                        "log type {:?} is already defined in {}",
                        schema.name,
                        previous.file.display()
                    );
                    diagnostics.error(&format!("$[{}]", quote(&schema.name)), message);
                } else {
                    schemas.push(schema);
                }
            }
            for entry in found_disabled {
                let message = format!("log type {:?} is not loaded: {}", entry.name, entry.reason);
                self.warnings.push(ConfigError::new(
                    &file,
                    format!("$[{}]", quote(&entry.name)),
                    message,
                ));
                disabled.push(entry);
            }
        }
        schema::sort_by_priority(&mut schemas);
        (schemas, disabled)
    }

    fn load_sources(
        &mut self,
        schemas: &[LogSchema],
        families: &BTreeMap<&str, Vec<&str>>,
        disabled: &[DisabledSchema],
    ) -> BTreeMap<Source, Vec<usize>> {
        let path = self.dir.join("sources.json");
        let mut sources = BTreeMap::new();
        if !path.exists() {
            self.errors.push(ConfigError::new(&path, "$", "missing file: declare the sources and the log types each may carry, such as {\"file\": {\"osquery\": {\"logs\": [\"osquery\"]}}}"));
            return sources;
        }
        let Some((bytes, _)) = self.read_json(&path) else {
            return sources;
        };
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let file: SourcesFile = match serde_path_to_error::deserialize(&mut deserializer) {
            Ok(file) => file,
            Err(error) => {
                self.errors.push(ConfigError::new(
                    &path,
                    rule::json_path(error.path()),
                    error.inner().to_string(),
                ));
                return sources;
            }
        };
        let positions: HashMap<&str, usize> = schemas
            .iter()
            .enumerate()
            .map(|(index, schema)| (schema.name.as_str(), index))
            .collect();
        let mut diagnostics = Diagnostics::new(&path, &mut self.errors);
        for (service, resources) in &file {
            if !SOURCE_SERVICES.contains(&service.as_str()) {
                diagnostics.error(
                    &format!("$[{}]", quote(service)),
                    format!(
                        "unknown service {service:?}; allowed: {}",
                        SOURCE_SERVICES.join(", ")
                    ),
                );
                continue;
            }
            for (resource, entry) in resources {
                let entry_path = format!("$[{}][{}].logs", quote(service), quote(resource));
                let indices = resolve_logs(
                    &entry.logs,
                    &entry_path,
                    &positions,
                    families,
                    disabled,
                    &mut diagnostics,
                );
                sources.insert(Source::new(service, resource), indices);
            }
        }
        sources
    }

    fn load_outputs(&mut self) -> BTreeMap<String, Vec<String>> {
        let path = self.dir.join("outputs.json");
        let mut outputs = BTreeMap::new();
        if !path.exists() {
            return outputs;
        }
        let Some((bytes, _)) = self.read_json(&path) else {
            return outputs;
        };
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let file: OutputsFile = match serde_path_to_error::deserialize(&mut deserializer) {
            Ok(file) => file,
            Err(error) => {
                let message = format!(
                    "{}; expected a list of descriptors such as [\"security\"]",
                    error.inner()
                );
                self.errors.push(ConfigError::new(
                    &path,
                    rule::json_path(error.path()),
                    message,
                ));
                return outputs;
            }
        };
        for (service, descriptors) in file {
            let names = match descriptors {
                OutputDescriptors::List(names) => names,
                OutputDescriptors::Map(map) => map.into_keys().collect(),
            };
            outputs.insert(service, names);
        }
        outputs
    }

    fn load_rules(&mut self, context: &RuleContext<'_>) -> Vec<rule::Rule> {
        let files = match json_files(&self.dir.join("rules")) {
            Ok(files) => files,
            Err(message) => {
                self.errors
                    .push(ConfigError::new(self.dir.join("rules"), "$", message));
                return Vec::new();
            }
        };
        let mut rules: Vec<rule::Rule> = Vec::new();
        let mut origins: BTreeMap<String, PathBuf> = BTreeMap::new();
        for file in files {
            let Some((bytes, _)) = self.read_json(&file) else {
                continue;
            };
            let mut diagnostics = Diagnostics::new(&file, &mut self.errors);
            let Some(rule) = rule::compile_rule(&bytes, context, &mut diagnostics) else {
                continue;
            };
            if let Some(first) = origins.get(rule.name()) {
                let message = format!(
                    "duplicate rule name {:?}: also defined in {}",
                    rule.name(),
                    first.display()
                );
                diagnostics.error("$.name", message);
                continue;
            }
            origins.insert(rule.name().to_owned(), file.clone());
            rules.push(rule);
        }
        rules.sort_by(|a, b| a.name().cmp(b.name()));
        rules
    }
}

fn resolve_logs(
    logs: &[String],
    path: &str,
    positions: &HashMap<&str, usize>,
    families: &BTreeMap<&str, Vec<&str>>,
    disabled: &[DisabledSchema],
    diagnostics: &mut Diagnostics<'_>,
) -> Vec<usize> {
    let mut indices = Vec::new();
    for (index, log) in logs.iter().enumerate() {
        if let Some(&position) = positions.get(log.as_str()) {
            indices.push(position);
        } else if let Some(members) = families.get(log.as_str()) {
            indices.extend(
                members
                    .iter()
                    .filter_map(|member| positions.get(member).copied()),
            );
        } else if let Some(entry) = disabled.iter().find(|entry| entry.name == *log) {
            diagnostics.error(
                &format!("{path}[{index}]"),
                format!("log type {log:?} cannot be used: {}", entry.reason),
            );
        } else {
            let known: Vec<&str> = positions.keys().copied().collect();
            diagnostics.error(
                &format!("{path}[{index}]"),
                format!(
                    "unknown log type {log:?}; defined log types: {}",
                    sorted(known)
                ),
            );
        }
    }
    indices.sort_unstable();
    indices.dedup();
    indices
}

fn sorted(mut names: Vec<&str>) -> String {
    names.sort_unstable();
    names.join(", ")
}
