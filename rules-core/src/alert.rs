//! Alerts and their deterministic identifiers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::record::{Event, scalar_text};
use crate::rule::{Rule, Severity, Tier};

/// Envelope keys that identify one osquery result row, whatever the logger format.
///
/// `calendarTime`, `decorations`, `numerics` and `log_type` are left out: they repeat
/// `unixTime`, or differ between loggers for the same row.
const OSQUERY_IDENTITY_KEYS: &[&str] = &["name", "hostIdentifier", "unixTime", "epoch", "counter"];

/// One rule match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id: the same rule and record give the same id on every host and in the
    /// Lambda, across retries and duplicate deliveries.
    pub alert_id: String,
    /// Rule name.
    pub rule: String,
    /// Rule description.
    pub description: String,
    /// Severity of the rule.
    pub severity: Severity,
    /// Log type of the record.
    pub log_type: String,
    /// osquery host identifier, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// osquery query name, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Outputs to notify, such as `slack:security`.
    pub outputs: Vec<String>,
    /// True when the rule is staged: the alert is counted but never notified.
    pub staged: bool,
    /// Tier the rule notifies from.
    pub tier: Tier,
    /// Dedup key: the rule name and the values of its dedup key fields.
    pub dedup_key: String,
    /// The rule's free-form context (runbook, owner).
    pub context: BTreeMap<String, Value>,
    /// The event the rule matched: envelope, `columns` and `action` of one row.
    pub record: Value,
}

impl Alert {
    /// Builds the alert for `rule` matching `event`.
    pub fn new(rule: &Rule, event: &Event<'_>) -> Alert {
        Alert {
            alert_id: alert_id(rule.name(), event),
            rule: rule.name().to_owned(),
            description: rule.spec.description.clone(),
            severity: rule.spec.severity,
            log_type: event.log_type.to_owned(),
            host: event.host().map(str::to_owned),
            query: event.query_name().map(str::to_owned),
            outputs: rule.spec.outputs.clone(),
            staged: rule.spec.staged,
            tier: rule.spec.tier,
            dedup_key: dedup_key(rule, event),
            context: rule.spec.context.clone(),
            record: event.to_value(),
        }
    }
}

/// Computes the alert id of `rule_name` matching `event`: 32 hex digits of SHA-256 over the
/// rule name and a canonical form of the event.
///
/// For osquery records the canonical form contains the identity envelope keys, the action and
/// the row's columns, with keys sorted and every scalar written as text. So a row gives the
/// same id from an event, batch or snapshot line, with or without `--logger_numerics`, and
/// from osquery's own `aws_kinesis` logger, which turns every scalar into a string.
///
/// ```
/// # use rules_core::record::events;
/// let a: serde_json::Value = serde_json::from_str(
///     r#"{"name":"q","hostIdentifier":"h","unixTime":1,"epoch":0,"counter":1,"columns":{"port":4444},"action":"added"}"#).unwrap();
/// let b: serde_json::Value = serde_json::from_str(
///     r#"{"name":"q","hostIdentifier":"h","unixTime":"1","epoch":"0","counter":"1","diffResults":{"added":[{"port":"4444"}],"removed":""}}"#).unwrap();
/// let id_a = rules_core::alert::alert_id("r", &events("osquery:differential", &a)[0]);
/// let id_b = rules_core::alert::alert_id("r", &events("osquery:batch", &b)[0]);
/// assert_eq!(id_a, id_b);
/// ```
pub fn alert_id(rule_name: &str, event: &Event<'_>) -> String {
    let mut hasher = Sha256::new();
    write_text(&mut hasher, rule_name);
    match event.columns {
        Some(columns) => {
            for key in OSQUERY_IDENTITY_KEYS {
                write_text(&mut hasher, key);
                write_canonical(&mut hasher, event.record.get(*key).unwrap_or(&Value::Null));
            }
            write_text(&mut hasher, "action");
            write_canonical(&mut hasher, event.action.unwrap_or(&Value::Null));
            write_text(&mut hasher, "columns");
            write_canonical(&mut hasher, columns);
        }
        None => write_canonical(&mut hasher, event.record),
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

/// Builds the dedup key: the rule name and each key field's text (`-` when missing).
pub fn dedup_key(rule: &Rule, event: &Event<'_>) -> String {
    let mut key = rule.name().to_owned();
    for path in &rule.dedup_keys {
        key.push('|');
        match event.get(path).and_then(scalar_text) {
            Some(text) => key.push_str(&text),
            None => key.push('-'),
        }
    }
    key
}

fn write_text(hasher: &mut Sha256, text: &str) {
    hasher.update((text.len() as u64).to_be_bytes());
    hasher.update(text.as_bytes());
}

fn write_canonical(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Null => hasher.update([0u8]),
        Value::Object(map) => {
            hasher.update([b'{']);
            hasher.update((map.len() as u64).to_be_bytes());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                write_text(hasher, key);
                write_canonical(hasher, &map[key.as_str()]);
            }
        }
        Value::Array(items) => {
            hasher.update([b'[']);
            hasher.update((items.len() as u64).to_be_bytes());
            items.iter().for_each(|item| write_canonical(hasher, item));
        }
        scalar => {
            hasher.update([b's']);
            let text = scalar_text(scalar).unwrap_or_default();
            write_text(hasher, &text);
        }
    }
}
