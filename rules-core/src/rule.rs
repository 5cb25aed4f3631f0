//! Rule files, their compilation and the indexed rule set.

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alert::Alert;
use crate::condition::{self, Condition};
use crate::error::Diagnostics;
use crate::glob;
use crate::record::Event;

/// A rule file as written in `conf/rules/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Unique rule name: letters, digits and `_`.
    pub name: String,
    /// What the rule detects and why it matters.
    pub description: String,
    /// Log types (`osquery:differential`) or families (`osquery`) the rule reads.
    pub logs: Vec<String>,
    /// Query names (`name` of osquery records) the rule reads; `*` and `?` are wildcards.
    /// Without it the rule reads every query of its log types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<Vec<String>>,
    /// The condition: `all`, `any`, `not` or a predicate.
    #[schemars(schema_with = "crate::jsonschema::condition_schema")]
    pub condition: Value,
    /// Outputs as `service:descriptor`, such as `slack:security`.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Severity shown in alerts.
    #[serde(default)]
    pub severity: Severity,
    /// Free-form context copied into alerts, such as `runbook` and `owner`.
    #[serde(default)]
    pub context: BTreeMap<String, Value>,
    /// Grouping of repeated alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupSettings>,
    /// Evaluate and count matches but never notify.
    #[serde(default)]
    pub staged: bool,
    /// Tier the rule notifies from.
    #[serde(default)]
    pub tier: Tier,
}

/// Alert severity.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium, the default.
    #[default]
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Returns the lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Tier a rule notifies from: the agent, the Lambda or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Only agents on hosts notify.
    Agent,
    /// Only the central Lambda notifies.
    Central,
    /// The agent notifies; the Lambda notifies only for records no agent evaluated.
    #[default]
    Both,
}

/// Grouping of repeated alerts of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupSettings {
    /// Field paths whose values identify "the same" alert, such as `hostIdentifier`.
    pub keys: Vec<String>,
    /// How long repeats of one key are grouped, in seconds.
    pub window_seconds: u64,
    /// How many alerts of one key notify individually within a window before the rest are
    /// summarised in a digest.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
}

fn default_threshold() -> u32 {
    1
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule as written.
    pub spec: RuleFile,
    /// Concrete log types the rule reads (families expanded).
    pub log_types: Vec<String>,
    /// The compiled condition.
    pub condition: Condition,
    /// Dedup key field paths, split into segments.
    pub dedup_keys: Vec<Vec<String>>,
}

impl Rule {
    /// Returns the rule name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Returns true when the rule reads this query name.
    pub fn reads_query(&self, query: Option<&str>) -> bool {
        match (&self.spec.queries, query) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(patterns), Some(query)) => {
                patterns.iter().any(|pattern| glob::matches(pattern, query))
            }
        }
    }
}

/// Context a rule file is compiled against.
pub(crate) struct RuleContext<'a> {
    pub log_types: &'a [String],
    pub families: &'a BTreeMap<&'a str, Vec<&'a str>>,
    pub outputs: &'a BTreeMap<String, Vec<String>>,
}

/// Compiles one rule document; returns `None` after reporting errors.
pub(crate) fn compile_rule(
    document: &[u8],
    context: &RuleContext<'_>,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Rule> {
    let mut deserializer = serde_json::Deserializer::from_slice(document);
    let spec: RuleFile = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(spec) => spec,
        Err(error) => {
            let path = json_path(error.path());
            diagnostics.error(&path, error.inner().to_string());
            return None;
        }
    };
    let before = diagnostics.count();
    check_name(&spec.name, diagnostics);
    let log_types = expand_logs(&spec.logs, context, diagnostics);
    check_outputs(&spec.outputs, context.outputs, diagnostics);
    check_queries(spec.queries.as_deref(), diagnostics);
    let dedup_keys = spec
        .dedup
        .as_ref()
        .map(|dedup| check_dedup(dedup, diagnostics))
        .unwrap_or_default();
    let condition = condition::compile(&spec.condition, "$.condition", diagnostics);
    if diagnostics.count() > before {
        return None;
    }
    Some(Rule {
        spec,
        log_types,
        condition: condition?,
        dedup_keys,
    })
}

/// Formats a serde_path_to_error path as a JSON path.
pub(crate) fn json_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." {
        "$".to_owned()
    } else if text.starts_with('[') {
        format!("${text}")
    } else {
        format!("$.{text}")
    }
}

fn check_name(name: &str, diagnostics: &mut Diagnostics<'_>) {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        diagnostics.error(
            "$.name",
            format!("invalid rule name {name:?}: use letters, digits and '_'"),
        );
    }
}

fn expand_logs(
    logs: &[String],
    context: &RuleContext<'_>,
    diagnostics: &mut Diagnostics<'_>,
) -> Vec<String> {
    if logs.is_empty() {
        diagnostics.error(
            "$.logs",
            "a rule needs at least one log type, such as \"osquery:differential\"",
        );
    }
    let mut out = Vec::new();
    for (index, log) in logs.iter().enumerate() {
        if context.log_types.contains(log) {
            out.push(log.clone());
        } else if let Some(members) = context.families.get(log.as_str()) {
            out.extend(members.iter().map(|member| (*member).to_owned()));
        } else {
            let known = context.log_types.join(", ");
            diagnostics.error(
                &format!("$.logs[{index}]"),
                format!("unknown log type {log:?}; defined log types: {known}"),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

fn check_outputs(
    outputs: &[String],
    declared: &BTreeMap<String, Vec<String>>,
    diagnostics: &mut Diagnostics<'_>,
) {
    for (index, output) in outputs.iter().enumerate() {
        let path = format!("$.outputs[{index}]");
        let Some((service, descriptor)) = output.split_once(':') else {
            diagnostics.error(&path, format!("invalid output {output:?}: expected \"service:descriptor\", such as \"slack:security\""));
            continue;
        };
        let known = declared
            .get(service)
            .is_some_and(|descriptors| descriptors.iter().any(|d| d == descriptor));
        if !known {
            let list: Vec<String> = declared
                .iter()
                .flat_map(|(service, descriptors)| {
                    descriptors.iter().map(move |d| format!("{service}:{d}"))
                })
                .collect();
            diagnostics.error(
                &path,
                format!(
                    "output {output:?} is not declared in outputs.json; declared outputs: {}",
                    list.join(", ")
                ),
            );
        } else if !crate::config::SUPPORTED_OUTPUT_SERVICES.contains(&service) {
            diagnostics.error(
                &path,
                format!(
                    "output service {service:?} is not supported; supported: {}",
                    crate::config::SUPPORTED_OUTPUT_SERVICES.join(", ")
                ),
            );
        }
    }
}

fn check_queries(queries: Option<&[String]>, diagnostics: &mut Diagnostics<'_>) {
    let Some(queries) = queries else {
        return;
    };
    if queries.is_empty() {
        diagnostics.error(
            "$.queries",
            "an empty query list matches nothing: remove \"queries\" to read every query",
        );
    }
    for (index, query) in queries.iter().enumerate() {
        if query.is_empty() {
            diagnostics.error(&format!("$.queries[{index}]"), "empty query name");
        }
    }
}

fn check_dedup(dedup: &DedupSettings, diagnostics: &mut Diagnostics<'_>) -> Vec<Vec<String>> {
    if dedup.window_seconds == 0 {
        diagnostics.error(
            "$.dedup.window_seconds",
            "must be at least 1 second: remove \"dedup\" to notify every match",
        );
    }
    if dedup.threshold == 0 {
        diagnostics.error("$.dedup.threshold", "must be at least 1");
    }
    let mut keys = Vec::with_capacity(dedup.keys.len());
    for (index, key) in dedup.keys.iter().enumerate() {
        let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            diagnostics.error(
                &format!("$.dedup.keys[{index}]"),
                format!("invalid field path {key:?}"),
            );
        }
        keys.push(segments);
    }
    keys
}

/// Rules indexed by log type and query name, so a record only visits rules that can match.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    index: HashMap<String, LogTypeIndex>,
}

#[derive(Debug, Clone, Default)]
struct LogTypeIndex {
    /// Rules with exact query names, by name.
    by_query: HashMap<String, Vec<usize>>,
    /// Rules with wildcard query patterns.
    patterned: Vec<usize>,
    /// Rules without a query filter.
    any_query: Vec<usize>,
}

impl RuleSet {
    /// Builds the index over compiled rules.
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let mut index: HashMap<String, LogTypeIndex> = HashMap::new();
        for (position, rule) in rules.iter().enumerate() {
            for log_type in &rule.log_types {
                let entry = index.entry(log_type.clone()).or_default();
                add_to_index(entry, position, rule);
            }
        }
        RuleSet { rules, index }
    }

    /// Returns all rules, in name order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Finds a rule by name.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.name() == name)
    }

    /// Evaluates every rule that can match `event` and returns those that matched, in rule
    /// order, without building alerts.
    pub fn matching<'r>(&'r self, event: &Event<'_>) -> Vec<&'r Rule> {
        let mut positions = Vec::new();
        let Some(entry) = self.index.get(event.log_type) else {
            return Vec::new();
        };
        let query = event.query_name();
        let exact = query.and_then(|query| entry.by_query.get(query));
        let patterned = entry
            .patterned
            .iter()
            .filter(|&&position| self.rules[position].reads_query(query));
        let candidates = entry
            .any_query
            .iter()
            .chain(exact.into_iter().flatten())
            .chain(patterned);
        for &position in candidates {
            if self.rules[position].condition.matches(event) {
                positions.push(position);
            }
        }
        if positions.len() > 1 {
            positions.sort_unstable();
            positions.dedup();
        }
        positions
            .into_iter()
            .map(|position| &self.rules[position])
            .collect()
    }

    /// Evaluates `event` and builds an alert for every matching rule.
    pub fn evaluate(&self, event: &Event<'_>) -> Vec<Alert> {
        self.matching(event)
            .into_iter()
            .map(|rule| Alert::new(rule, event))
            .collect()
    }
}

fn add_to_index(entry: &mut LogTypeIndex, position: usize, rule: &Rule) {
    let Some(queries) = &rule.spec.queries else {
        entry.any_query.push(position);
        return;
    };
    if queries.iter().any(|query| glob::is_pattern(query)) {
        entry.patterned.push(position);
        return;
    }
    for query in queries {
        entry
            .by_query
            .entry(query.clone())
            .or_default()
            .push(position);
    }
}
