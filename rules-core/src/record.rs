//! Parsing of raw log lines and the per-row event view that rules read.
//!
//! osquery batch (`diffResults`) and snapshot (`snapshot` array) records hold many rows in one
//! line. [`events`] explodes them into one [`Event`] per row carrying `action` (`added`,
//! `removed` or `snapshot`), so one rule matches whatever logger format a host uses. The
//! original bytes of the line are never changed: forwarding uses them, not this view.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde_json::Value;

static ADDED: LazyLock<Value> = LazyLock::new(|| Value::from("added"));
static REMOVED: LazyLock<Value> = LazyLock::new(|| Value::from("removed"));
static SNAPSHOT: LazyLock<Value> = LazyLock::new(|| Value::from("snapshot"));

/// A log line parsed as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The parsed document.
    pub value: Value,
    /// True when the line held invalid UTF-8 and was decoded lossily (U+FFFD replaced the
    /// invalid bytes) before parsing.
    pub lossy: bool,
}

/// Reason a line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is not a JSON document.
    #[error("not valid JSON at column {column}: {message}")]
    InvalidJson {
        /// 1-based column (byte) of the error.
        column: usize,
        /// serde_json's description of the problem.
        message: String,
    },
    /// The line is JSON, but not an object.
    #[error("JSON document is {found}, expected an object")]
    NotAnObject {
        /// The JSON type found, such as `an array`.
        found: &'static str,
    },
    /// The line is empty or holds only whitespace.
    #[error("empty line")]
    Empty,
}

impl ParseError {
    /// Returns a short stable name for counters, such as `invalid_json`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::InvalidJson { .. } => "invalid_json",
            ParseError::NotAnObject { .. } => "not_an_object",
            ParseError::Empty => "empty_line",
        }
    }
}

/// Parses one log line (without its trailing newline) into a JSON object.
///
/// Invalid UTF-8 does not reject the line: osquery writes raw bytes from snapshot values,
/// host names and decorations, so such a line is decoded lossily and parsed again.
///
/// ```
/// let record = rules_core::record::parse_line(br#"{"name":"q","columns":{"pid":"1"}}"#).unwrap();
/// assert_eq!(record.value["columns"]["pid"], "1");
/// assert!(!record.lossy);
/// ```
pub fn parse_line(line: &[u8]) -> Result<Record, ParseError> {
    let line = trim_line(line);
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(value) => into_record(value, false),
        Err(error) if std::str::from_utf8(line).is_err() => {
            let text = String::from_utf8_lossy(line);
            match serde_json::from_str::<Value>(&text) {
                Ok(value) => into_record(value, true),
                Err(_) => Err(invalid_json(&error)),
            }
        }
        Err(error) => Err(invalid_json(&error)),
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.trim_ascii()
}

fn into_record(value: Value, lossy: bool) -> Result<Record, ParseError> {
    match value {
        Value::Object(_) => Ok(Record { value, lossy }),
        other => Err(ParseError::NotAnObject {
            found: json_type_name(&other),
        }),
    }
}

fn invalid_json(error: &serde_json::Error) -> ParseError {
    ParseError::InvalidJson {
        column: error.column(),
        message: error.to_string(),
    }
}

/// Returns the JSON type of `value` with an article, for error messages.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One row of a classified record, as rules see it.
///
/// For an osquery differential event the row is the record's `columns`; for a batch or
/// snapshot record it is one element of `diffResults.added`/`removed` or `snapshot`. Paths
/// starting with `columns.` read the row, `action` reads the row's action, and every other
/// path reads the record itself (`name`, `hostIdentifier`, `decorations.hostname`).
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The log type the record was classified as.
    pub log_type: &'a str,
    /// The whole record.
    pub record: &'a Value,
    /// The row, when the record is an osquery result.
    pub columns: Option<&'a Value>,
    /// The row's action, when the record is an osquery result.
    pub action: Option<&'a Value>,
}

impl<'a> Event<'a> {
    /// Looks up a field by its path segments; `None` when any segment is missing.
    pub fn get(&self, path: &[String]) -> Option<&'a Value> {
        let (first, rest) = path.split_first()?;
        match (first.as_str(), self.columns, self.action) {
            ("columns", Some(columns), _) => lookup(columns, rest),
            ("action", _, Some(action)) if rest.is_empty() => Some(action),
            _ => lookup(self.record, path),
        }
    }

    /// Returns the query name (`name`) of an osquery record.
    pub fn query_name(&self) -> Option<&'a str> {
        self.record.get("name").and_then(Value::as_str)
    }

    /// Returns the osquery host identifier (`hostIdentifier`), when present.
    pub fn host(&self) -> Option<&'a str> {
        self.record.get("hostIdentifier").and_then(Value::as_str)
    }

    /// Returns the row's action (`added`, `removed` or `snapshot`), when present.
    pub fn action_str(&self) -> Option<&'a str> {
        self.action.and_then(Value::as_str)
    }

    /// Builds a standalone JSON object of this event: the record's envelope without the
    /// batch or snapshot arrays, plus `columns` and `action` of this row.
    pub fn to_value(&self) -> Value {
        let Some(columns) = self.columns else {
            return self.record.clone();
        };
        let mut object = serde_json::Map::new();
        if let Some(record) = self.record.as_object() {
            for (key, value) in record {
                if key != "diffResults" && key != "snapshot" {
                    object.insert(key.clone(), value.clone());
                }
            }
        }
        object.insert("columns".to_owned(), columns.clone());
        if let Some(action) = self.action {
            object.insert("action".to_owned(), action.clone());
        }
        Value::Object(object)
    }
}

fn lookup<'a>(mut value: &'a Value, path: &[String]) -> Option<&'a Value> {
    for segment in path {
        value = match value {
            Value::Object(map) => map.get(segment.as_str())?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Explodes a classified record into the events that rules evaluate.
///
/// Records of the `osquery` log family are exploded by shape: `diffResults` gives one event
/// per removed row (action `removed`) followed by one per added row (`added`), `snapshot`
/// one per row (`snapshot`), and `columns` one event. An empty row list written as `""` (by
/// osquery's aws_kinesis logger) gives no events. Any other record is one event without a
/// row. Rows that are not JSON objects are skipped, because osquery never writes them.
pub fn events<'a>(log_type: &'a str, record: &'a Value) -> Vec<Event<'a>> {
    let whole = Event {
        log_type,
        record,
        columns: None,
        action: None,
    };
    if log_type.split(':').next() != Some("osquery") {
        return vec![whole];
    }
    if let Some(diff) = record.get("diffResults") {
        let mut out = Vec::new();
        push_rows(&mut out, whole, diff.get("removed"), &REMOVED);
        push_rows(&mut out, whole, diff.get("added"), &ADDED);
        return out;
    }
    // osquery's aws_kinesis logger writes an empty snapshot array as "".
    let is_rows = |value: &&Value| value.is_array() || value.as_str() == Some("");
    if let Some(snapshot) = record.get("snapshot").filter(is_rows) {
        let mut out = Vec::new();
        push_rows(&mut out, whole, Some(snapshot), &SNAPSHOT);
        return out;
    }
    if let Some(columns) = record.get("columns").filter(|value| value.is_object()) {
        return vec![Event {
            columns: Some(columns),
            action: record.get("action"),
            ..whole
        }];
    }
    vec![whole]
}

fn push_rows<'a>(
    out: &mut Vec<Event<'a>>,
    base: Event<'a>,
    rows: Option<&'a Value>,
    action: &'a Value,
) {
    let Some(Value::Array(rows)) = rows else {
        return;
    };
    for row in rows.iter().filter(|row| row.is_object()) {
        out.push(Event {
            columns: Some(row),
            action: Some(action),
            ..base
        });
    }
}

/// Returns the text of a scalar as rules compare it: strings as they are, numbers and
/// booleans in their JSON spelling, `None` for null, arrays and objects.
pub fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(text) => Some(Cow::Borrowed(text)),
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        Value::Bool(flag) => Some(Cow::Borrowed(if *flag { "true" } else { "false" })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_line_accepts_invalid_utf8() {
        let line = b"{\"name\":\"q\",\"host\":\"caf\xe9\"}";
        let record = parse_line(line).unwrap();
        assert!(record.lossy);
        assert_eq!(record.value["host"], "caf\u{fffd}");
    }

    #[test]
    fn parse_line_rejects_non_object() {
        assert_eq!(
            parse_line(b"[1,2]").unwrap_err(),
            ParseError::NotAnObject { found: "an array" }
        );
        assert_eq!(parse_line(b"  \r\n").unwrap_err(), ParseError::Empty);
    }

    #[test]
    fn parse_line_reports_column_of_invalid_json() {
        let error = parse_line(br#"{"name":"q","colu{"name":"r"}"#).unwrap_err();
        assert_eq!(error.reason(), "invalid_json");
    }

    #[test]
    fn events_explode_batch_removed_first() {
        let record: Value = serde_json::from_str(
            r#"{"name":"q","diffResults":{"added":[{"pid":"2"}],"removed":[{"pid":"1"}]}}"#,
        )
        .unwrap();
        let events = events("osquery:batch", &record);
        let seen: Vec<_> = events
            .iter()
            .map(|event| {
                let pid = event.get(&["columns".into(), "pid".into()]).unwrap();
                (event.action_str().unwrap(), pid.as_str().unwrap())
            })
            .collect();
        assert_eq!(seen, vec![("removed", "1"), ("added", "2")]);
    }

    #[test]
    fn events_explode_snapshot_rows() {
        let record: Value = serde_json::from_str(
            r#"{"name":"q","action":"snapshot","snapshot":[{"a":"1"},{"a":"2"}]}"#,
        )
        .unwrap();
        let events = events("osquery:snapshot", &record);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].action_str(), Some("snapshot"));
        let value = events[1].to_value();
        assert_eq!(value["columns"]["a"], "2");
        assert!(value.get("snapshot").is_none());
    }

    #[test]
    fn events_of_empty_kinesis_snapshot_are_none() {
        let record: Value = serde_json::from_str(
            r#"{"name":"q","snapshot":"","action":"snapshot","log_type":"result"}"#,
        )
        .unwrap();
        assert!(events("osquery:snapshot", &record).is_empty());
    }

    #[test]
    fn event_get_reads_record_outside_columns() {
        let record: Value = serde_json::from_str(
            r#"{"name":"q","decorations":{"hostname":"h"},"columns":{"x":"1"},"action":"added"}"#,
        )
        .unwrap();
        let events = events("osquery:differential", &record);
        let event = events[0];
        assert_eq!(
            event
                .get(&["decorations".into(), "hostname".into()])
                .unwrap(),
            "h"
        );
        assert_eq!(event.get(&["action".into()]).unwrap(), "added");
        assert!(event.get(&["columns".into(), "y".into()]).is_none());
    }
}
