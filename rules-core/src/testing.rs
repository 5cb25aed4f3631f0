//! Rule test events in StreamAlert's format and the harness that runs them.
//!
//! A test file is a JSON array of events:
//!
//! ```json
//! [{"data": {"name": "pack_detection_listening_processes", "...": "..."},
//!   "description": "ncat listening on 4444 triggers the rule",
//!   "log": "osquery:differential", "service": "kinesis", "source": "edgealert",
//!   "trigger_rules": ["netcat_listener"]}]
//! ```
//!
//! `data` is the record (an object, or a string holding the raw line). `override_record`
//! replaces it with a record built from the schema's empty values, updated with the given
//! top-level keys. `classify_only` (older files: `validate_schema_only`) only checks the log
//! type. Otherwise the set of rules that fired on any row must equal `trigger_rules`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Config, Source, read_file};
use crate::error::{ConfigError, ConfigErrors};
use crate::rule::json_path;
use crate::schema::default_record;

/// Maximum directory depth searched for test files.
const MAX_TEST_DEPTH: usize = 8;

/// One test event as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    /// The record: a JSON object, or a string holding the raw log line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Top-level keys laid over a record of the schema's empty values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_record: Option<serde_json::Map<String, Value>>,
    /// Description of what the event tests.
    pub description: String,
    /// The log type the event must classify as.
    pub log: String,
    /// Service of the source, such as `kinesis`.
    pub service: String,
    /// Resource of the source, such as a stream name.
    pub source: String,
    /// Every rule the event must fire; no other rule may fire.
    #[serde(default)]
    pub trigger_rules: Vec<String>,
    /// Only check classification.
    #[serde(default)]
    pub classify_only: bool,
    /// Older name of `classify_only`.
    #[serde(default)]
    pub validate_schema_only: bool,
    /// Accepted for StreamAlert compatibility and ignored: edgealert tests records uncompressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// Accepted for StreamAlert compatibility and ignored: publishers do not exist here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_tests: Option<Value>,
    /// Accepted for StreamAlert compatibility and ignored: lookup-table fixtures do not exist here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fixtures: Option<Value>,
}

/// A test event with where it came from.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// File holding the event.
    pub file: PathBuf,
    /// The file's path relative to the test directory.
    pub relative: PathBuf,
    /// Position in the file's array.
    pub index: usize,
    /// The event.
    pub event: TestEvent,
}

impl TestCase {
    /// Returns `file[index]` relative to `base`, for reports.
    pub fn label(&self, base: &Path) -> String {
        let file = self.file.strip_prefix(base).unwrap_or(&self.file);
        format!("{}[{}]", file.display(), self.index)
    }

    fn classify_only(&self) -> bool {
        self.event.classify_only || self.event.validate_schema_only
    }

    /// Returns true when the file sits in a directory named after `rule`.
    pub fn in_rule_directory(&self, rule: &str) -> bool {
        self.file.parent().is_some_and(|parent| {
            parent
                .components()
                .any(|component| component.as_os_str() == rule)
        })
    }
}

/// Result of one test event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// Rules the event must fire.
    pub expected: BTreeSet<String>,
    /// Rules that fired.
    pub fired: BTreeSet<String>,
    /// Log type the event classified as.
    pub classified_as: Option<String>,
    /// Reason the event failed, when it did.
    pub failure: Option<String>,
}

impl TestOutcome {
    /// Returns true when the event passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// A rule without both a positive and a negative test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageGap {
    /// Rule name.
    pub rule: String,
    /// Events that must fire the rule.
    pub positives: usize,
    /// Events in the rule's test directory that must not fire it.
    pub negatives: usize,
}

/// Loads every test file under `dir` (recursively), validating it against `config`.
pub fn load_tests(dir: &Path, config: &Config) -> Result<Vec<TestCase>, ConfigErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect_files(dir, 0, &mut files, &mut errors);
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        load_file(dir, &file, config, &mut cases, &mut errors);
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn collect_files(
    dir: &Path,
    depth: usize,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<ConfigError>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => {
            errors.push(ConfigError::new(
                dir,
                "$",
                format!("cannot list directory: {error}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth < MAX_TEST_DEPTH {
            collect_files(&path, depth + 1, files, errors);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
}

fn load_file(
    dir: &Path,
    file: &Path,
    config: &Config,
    cases: &mut Vec<TestCase>,
    errors: &mut Vec<ConfigError>,
) {
    let bytes = match read_file(file) {
        Ok(bytes) => bytes,
        Err(message) => {
            errors.push(ConfigError::new(file, "$", message));
            return;
        }
    };
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let events: Vec<TestEvent> = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(events) => events,
        Err(error) => {
            errors.push(ConfigError::new(
                file,
                json_path(error.path()),
                error.inner().to_string(),
            ));
            return;
        }
    };
    let relative = file.strip_prefix(dir).unwrap_or(file).to_path_buf();
    for (index, event) in events.into_iter().enumerate() {
        check_event(&event, &format!("$[{index}]"), file, config, errors);
        cases.push(TestCase {
            file: file.to_path_buf(),
            relative: relative.clone(),
            index,
            event,
        });
    }
}

fn check_event(
    event: &TestEvent,
    path: &str,
    file: &Path,
    config: &Config,
    errors: &mut Vec<ConfigError>,
) {
    let mut error = |at: String, message: String| errors.push(ConfigError::new(file, at, message));
    match (&event.data, &event.override_record) {
        (Some(_), Some(_)) => error(
            path.to_owned(),
            "give either \"data\" or \"override_record\", not both".into(),
        ),
        (None, None) => error(
            path.to_owned(),
            "missing \"data\" or \"override_record\"".into(),
        ),
        _ => {}
    }
    if config.schema(&event.log).is_none() {
        let known: Vec<&str> = config
            .schemas
            .iter()
            .map(|schema| schema.name.as_str())
            .collect();
        error(
            format!("{path}.log"),
            format!(
                "unknown log type {:?}; defined log types: {}",
                event.log,
                known.join(", ")
            ),
        );
    }
    for (index, rule) in event.trigger_rules.iter().enumerate() {
        if config.rules.get(rule).is_none() {
            error(
                format!("{path}.trigger_rules[{index}]"),
                format!("unknown rule {rule:?}"),
            );
        }
    }
}

/// Builds the raw line a test event stands for.
pub fn event_line(config: &Config, event: &TestEvent) -> Result<Vec<u8>, String> {
    if let Some(Value::String(line)) = &event.data {
        return Ok(line.as_bytes().to_vec());
    }
    let record = match (&event.data, &event.override_record) {
        (Some(data), _) => data.clone(),
        (None, Some(overrides)) => {
            let schema = config
                .schema(&event.log)
                .ok_or_else(|| format!("unknown log type {:?}", event.log))?;
            let mut record = default_record(schema);
            if let Some(object) = record.as_object_mut() {
                object.extend(
                    overrides
                        .iter()
                        .map(|(key, value)| (key.clone(), value.clone())),
                );
            }
            record
        }
        (None, None) => return Err("missing \"data\" or \"override_record\"".to_owned()),
    };
    serde_json::to_vec(&record).map_err(|error| error.to_string())
}

/// Runs one test event through the real classifier and rule set.
pub fn run_case(config: &Config, case: &TestCase) -> TestOutcome {
    let event = &case.event;
    let expected: BTreeSet<String> = event.trigger_rules.iter().cloned().collect();
    let mut outcome = TestOutcome {
        expected,
        fired: BTreeSet::new(),
        classified_as: None,
        failure: None,
    };
    let line = match event_line(config, event) {
        Ok(line) => line,
        Err(message) => {
            outcome.failure = Some(message);
            return outcome;
        }
    };
    let source = Source::new(&event.service, &event.source);
    let classified = match config.classify(&source, &line) {
        Ok(classified) => classified,
        Err(error) => {
            outcome.failure = Some(format!("not classified: {error}"));
            return outcome;
        }
    };
    outcome.classified_as = Some(classified.log_type().to_owned());
    if classified.log_type() != event.log {
        outcome.failure = Some(format!(
            "classified as {}, expected {}",
            classified.log_type(),
            event.log
        ));
        return outcome;
    }
    if case.classify_only() {
        return outcome;
    }
    for row in classified.events() {
        for rule in config.rules.matching(&row) {
            outcome.fired.insert(rule.name().to_owned());
        }
    }
    if outcome.fired != outcome.expected {
        outcome.failure = Some("fired rules differ from trigger_rules".to_owned());
    }
    outcome
}

/// Lists rules (all, or those named in `selected`) lacking a positive or a negative test.
pub fn coverage_gaps(config: &Config, cases: &[TestCase], selected: &[String]) -> Vec<CoverageGap> {
    let mut gaps = Vec::new();
    for rule in config.rules.rules() {
        if !selected.is_empty() && !selected.iter().any(|name| name == rule.name()) {
            continue;
        }
        let evaluated = cases.iter().filter(|case| !case.classify_only());
        let (mut positives, mut negatives) = (0, 0);
        for case in evaluated {
            if case
                .event
                .trigger_rules
                .iter()
                .any(|name| name == rule.name())
            {
                positives += 1;
            } else if case.in_rule_directory(rule.name()) {
                negatives += 1;
            }
        }
        if positives == 0 || negatives == 0 {
            gaps.push(CoverageGap {
                rule: rule.name().to_owned(),
                positives,
                negatives,
            });
        }
    }
    gaps
}

/// Keeps the cases that test one of the `selected` rules: they name it in `trigger_rules`
/// or live in its test directory. An empty selection keeps every case.
pub fn select_cases<'c>(cases: &'c [TestCase], selected: &[String]) -> Vec<&'c TestCase> {
    cases
        .iter()
        .filter(|case| {
            selected.is_empty()
                || selected.iter().any(|rule| {
                    case.event.trigger_rules.contains(rule) || case.in_rule_directory(rule)
                })
        })
        .collect()
}
