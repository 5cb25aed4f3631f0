//! Log schemas in StreamAlert's format and the classifier that matches records against them.
//!
//! A schema file maps log type names to entries:
//!
//! ```json
//! {"osquery:differential": {
//!     "parser": "json",
//!     "schema": {"name": "string", "unixTime": "integer", "columns": {}, "action": "string"},
//!     "configuration": {"optional_top_level_keys": ["decorations"], "priority": 1}}}
//! ```
//!
//! Field types are `"string"`, `"integer"`, `"float"`, `"boolean"`, `{}` (any object), `[]`
//! (any array) or a nested object schema. As in StreamAlert, `integer`, `float` and `boolean`
//! also accept their string spellings (`"1741943523"`, `"true"`), because osquery versions and
//! loggers differ in whether they write numbers or strings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::error::Diagnostics;
use crate::record::{json_type_name, scalar_text};

/// Strictness of the key comparison between a record and a schema.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClassifyMode {
    /// StreamAlert's semantics: a record must have exactly the schema's keys, apart from
    /// declared optional keys.
    Strict,
    /// The schema's keys must be present with their types. Extra keys are counted rather
    /// than rejected, because osquery adds fields across versions and decorations can sit at
    /// the top level.
    #[default]
    Lenient,
}

/// Type of one schema field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    /// Any scalar: a string, a number or a boolean.
    String,
    /// An integral number, or a string holding one.
    Integer,
    /// A number, or a string holding one.
    Float,
    /// `true`/`false`, or a string spelling one of them in any case.
    Boolean,
    /// Any JSON object (`{}` in the schema).
    AnyObject,
    /// Any JSON array (`[]` in the schema).
    List,
    /// An object with its own schema.
    Object(Vec<(String, FieldType)>),
}

/// One log type loaded from a schema file.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSchema {
    /// Log type name, such as `osquery:differential`.
    pub name: String,
    /// Required keys and their types (minus the optional ones).
    pub fields: Vec<(String, FieldType)>,
    /// Keys that may be absent (`optional_top_level_keys`).
    pub optional_keys: Vec<String>,
    /// Patterns that values must match (`log_patterns`), keyed by field path.
    pub log_patterns: Vec<(Vec<String>, Vec<String>)>,
    /// Lower values are tried first; schemas without a priority come last.
    pub priority: Option<i64>,
    /// File the schema was loaded from.
    pub file: PathBuf,
}

/// A log type that was read but cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledSchema {
    /// Log type name.
    pub name: String,
    /// Reason edgealert cannot classify it, such as an unsupported parser.
    pub reason: String,
}

const ENTRY_KEYS: &[&str] = &["parser", "schema", "configuration"];
const CONFIGURATION_KEYS: &[&str] = &[
    "optional_top_level_keys",
    "envelope_keys",
    "log_patterns",
    "priority",
    "json_path",
    "json_regex_key",
    "optional_envelope_keys",
];
const MAX_SCHEMA_DEPTH: usize = 16;

/// Parses one schema file's document into usable and disabled log types.
pub(crate) fn parse_schema_file(
    document: &Value,
    diagnostics: &mut Diagnostics<'_>,
) -> (Vec<LogSchema>, Vec<DisabledSchema>) {
    let mut schemas = Vec::new();
    let mut disabled = Vec::new();
    let Some(entries) = document.as_object() else {
        diagnostics.error(
            "$",
            format!(
                "expected an object of log types, found {}",
                json_type_name(document)
            ),
        );
        return (schemas, disabled);
    };
    for (name, entry) in entries {
        let path = format!("$[{}]", quote(name));
        if let Err(reason) = validate_log_type_name(name) {
            diagnostics.error(&path, reason);
            continue;
        }
        match parse_entry(name, entry, &path, diagnostics) {
            Some(Ok(schema)) => schemas.push(schema),
            Some(Err(reason)) => disabled.push(DisabledSchema {
                name: name.clone(),
                reason,
            }),
            None => {}
        }
    }
    (schemas, disabled)
}

fn validate_log_type_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid log type name {name:?}: use letters, digits, ':', '_', '-' and '.' (for example \"osquery:differential\")"
        ))
    }
}

/// Returns `None` after reporting errors, `Some(Err)` for a valid but unsupported entry.
fn parse_entry(
    name: &str,
    entry: &Value,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Result<LogSchema, String>> {
    let Some(object) = entry.as_object() else {
        diagnostics.error(
            path,
            format!(
                "expected an object with keys {ENTRY_KEYS:?}, found {}",
                json_type_name(entry)
            ),
        );
        return None;
    };
    let before = diagnostics.count();
    reject_unknown_keys(object, ENTRY_KEYS, path, diagnostics);

    let parser = match object.get("parser") {
        Some(Value::String(parser)) => parser.as_str(),
        Some(other) => {
            diagnostics.error(
                &format!("{path}.parser"),
                format!(
                    "expected a string such as \"json\", found {}",
                    json_type_name(other)
                ),
            );
            ""
        }
        None => {
            diagnostics.error(path, "missing key \"parser\": add \"parser\": \"json\"");
            ""
        }
    };
    let fields = match object.get("schema") {
        Some(schema) => parse_fields(schema, &format!("{path}.schema"), 0, diagnostics),
        None => {
            diagnostics.error(
                path,
                "missing key \"schema\": add an object of field names and types",
            );
            Vec::new()
        }
    };
    let empty = serde_json::Map::new();
    let configuration = match object.get("configuration") {
        None => &empty,
        Some(Value::Object(configuration)) => configuration,
        Some(other) => {
            diagnostics.error(
                &format!("{path}.configuration"),
                format!("expected an object, found {}", json_type_name(other)),
            );
            &empty
        }
    };
    let schema = parse_configuration(
        name,
        fields,
        configuration,
        &format!("{path}.configuration"),
        diagnostics,
    );
    if diagnostics.count() > before {
        return None;
    }
    if parser != "json" {
        return Some(Err(format!(
            "parser {parser:?} is not supported; edgealert supports \"json\""
        )));
    }
    for key in ["json_path", "json_regex_key"] {
        if configuration.contains_key(key) {
            return Some(Err(format!(
                "configuration option {key:?} is not supported"
            )));
        }
    }
    Some(Ok(schema))
}

fn parse_configuration(
    name: &str,
    mut fields: Vec<(String, FieldType)>,
    configuration: &serde_json::Map<String, Value>,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> LogSchema {
    reject_unknown_keys(configuration, CONFIGURATION_KEYS, path, diagnostics);
    let optional_keys = string_list(
        configuration.get("optional_top_level_keys"),
        &format!("{path}.optional_top_level_keys"),
        diagnostics,
    );
    for (index, key) in optional_keys.iter().enumerate() {
        if !fields.iter().any(|(field, _)| field == key) {
            diagnostics.error(
                &format!("{path}.optional_top_level_keys[{index}]"),
                format!("optional key {key:?} is not in the schema of {name:?}: add it to \"schema\" with its type"),
            );
        }
    }
    if let Some(envelope) = configuration.get("envelope_keys") {
        let envelope_fields =
            parse_fields(envelope, &format!("{path}.envelope_keys"), 0, diagnostics);
        for field in envelope_fields {
            if !fields.iter().any(|(existing, _)| *existing == field.0) {
                fields.push(field);
            }
        }
    }
    let mut log_patterns = Vec::new();
    if let Some(patterns) = configuration.get("log_patterns") {
        collect_patterns(
            patterns,
            &mut Vec::new(),
            &format!("{path}.log_patterns"),
            &mut log_patterns,
            diagnostics,
        );
    }
    let priority = match configuration.get("priority") {
        None => None,
        Some(value) => match value.as_i64() {
            Some(priority) => Some(priority),
            None => {
                diagnostics.error(
                    &format!("{path}.priority"),
                    format!("expected an integer, found {}", json_type_name(value)),
                );
                None
            }
        },
    };
    LogSchema {
        name: name.to_owned(),
        fields,
        optional_keys,
        log_patterns,
        priority,
        file: diagnostics.file().to_path_buf(),
    }
}

fn collect_patterns(
    value: &Value,
    prefix: &mut Vec<String>,
    path: &str,
    out: &mut Vec<(Vec<String>, Vec<String>)>,
    diagnostics: &mut Diagnostics<'_>,
) {
    let Some(object) = value.as_object() else {
        diagnostics.error(
            path,
            format!(
                "expected an object of field names to pattern lists, found {}",
                json_type_name(value)
            ),
        );
        return;
    };
    for (key, patterns) in object {
        let key_path = format!("{path}[{}]", quote(key));
        prefix.push(key.clone());
        if patterns.is_object() && prefix.len() < MAX_SCHEMA_DEPTH {
            collect_patterns(patterns, prefix, &key_path, out, diagnostics);
        } else {
            let list = string_list(Some(patterns), &key_path, diagnostics);
            out.push((prefix.clone(), list));
        }
        prefix.pop();
    }
}

fn parse_fields(
    value: &Value,
    path: &str,
    depth: usize,
    diagnostics: &mut Diagnostics<'_>,
) -> Vec<(String, FieldType)> {
    let Some(object) = value.as_object() else {
        diagnostics.error(
            path,
            format!(
                "expected an object of field names to types, found {}",
                json_type_name(value)
            ),
        );
        return Vec::new();
    };
    let mut fields = Vec::with_capacity(object.len());
    for (key, kind) in object {
        let field_path = format!("{path}[{}]", quote(key));
        if let Some(kind) = parse_type(kind, &field_path, depth, diagnostics) {
            fields.push((key.clone(), kind));
        }
    }
    fields
}

fn parse_type(
    value: &Value,
    path: &str,
    depth: usize,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<FieldType> {
    const ALLOWED: &str = "allowed: \"string\", \"integer\", \"float\", \"boolean\", {}, [] or a nested object schema";
    match value {
        Value::String(kind) => match kind.as_str() {
            "string" => Some(FieldType::String),
            "integer" => Some(FieldType::Integer),
            "float" => Some(FieldType::Float),
            "boolean" => Some(FieldType::Boolean),
            other => {
                diagnostics.error(path, format!("unknown field type {other:?}; {ALLOWED}"));
                None
            }
        },
        Value::Array(_) => Some(FieldType::List),
        Value::Object(object) if object.is_empty() => Some(FieldType::AnyObject),
        Value::Object(_) if depth >= MAX_SCHEMA_DEPTH => {
            diagnostics.error(
                path,
                format!("schema nested deeper than {MAX_SCHEMA_DEPTH} levels"),
            );
            None
        }
        Value::Object(_) => Some(FieldType::Object(parse_fields(
            value,
            path,
            depth + 1,
            diagnostics,
        ))),
        other => {
            diagnostics.error(
                path,
                format!("invalid field type {}; {ALLOWED}", json_type_name(other)),
            );
            None
        }
    }
}

pub(crate) fn reject_unknown_keys(
    object: &serde_json::Map<String, Value>,
    allowed: &[&str],
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            diagnostics.error(
                &format!("{path}[{}]", quote(key)),
                format!("unknown key {key:?}; allowed keys: {}", allowed.join(", ")),
            );
        }
    }
}

pub(crate) fn string_list(
    value: Option<&Value>,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Vec<String> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        diagnostics.error(
            path,
            format!(
                "expected an array of strings, found {}",
                json_type_name(value)
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(text) => out.push(text.to_owned()),
            None => diagnostics.error(
                &format!("{path}[{index}]"),
                format!("expected a string, found {}", json_type_name(item)),
            ),
        }
    }
    out
}

/// Quotes a key for a JSON path, such as `"osquery:batch"`.
pub(crate) fn quote(key: &str) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"))
}

/// Differences between a record and one schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Required keys that are absent.
    pub missing: Vec<String>,
    /// Keys the schema does not declare (only counted against the schema in strict mode).
    pub unexpected: Vec<String>,
    /// Keys present with the wrong type, as `key (expected integer, found an object)`.
    pub mistyped: Vec<String>,
    /// Fields whose value matched none of the schema's `log_patterns`.
    pub pattern_mismatches: Vec<String>,
}

impl Mismatch {
    pub(crate) fn score(&self, mode: ClassifyMode) -> usize {
        let unexpected = if mode == ClassifyMode::Strict {
            self.unexpected.len()
        } else {
            0
        };
        self.missing.len() + self.mistyped.len() + self.pattern_mismatches.len() + unexpected
    }
}

impl LogSchema {
    /// Checks `record` against this schema; returns the number of extra keys on success.
    ///
    /// The fast path stops at the first difference; [`LogSchema::explain`] lists them all.
    pub fn check(&self, record: &Value, mode: ClassifyMode) -> Option<usize> {
        let object = record.as_object()?;
        let extra = check_object(&self.fields, &self.optional_keys, object, mode)?;
        self.patterns_match(record).then_some(extra)
    }

    /// Lists every difference between `record` and this schema.
    pub fn explain(&self, record: &Value, mode: ClassifyMode) -> Mismatch {
        let mut mismatch = Mismatch::default();
        if let Some(object) = record.as_object() {
            explain_object(
                &self.fields,
                &self.optional_keys,
                object,
                "",
                mode,
                &mut mismatch,
            );
        }
        for (path, patterns) in &self.log_patterns {
            if !pattern_matches(record, path, patterns) {
                mismatch.pattern_mismatches.push(path.join("."));
            }
        }
        mismatch
    }

    fn patterns_match(&self, record: &Value) -> bool {
        self.log_patterns
            .iter()
            .all(|(path, patterns)| pattern_matches(record, path, patterns))
    }
}

fn pattern_matches(record: &Value, path: &[String], patterns: &[String]) -> bool {
    let mut value = record;
    for segment in path {
        match value.get(segment.as_str()) {
            Some(next) => value = next,
            None => return false,
        }
    }
    let Some(text) = scalar_text(value) else {
        return false;
    };
    patterns
        .iter()
        .any(|pattern| crate::glob::matches(pattern, &text))
}

fn check_object(
    fields: &[(String, FieldType)],
    optional: &[String],
    object: &serde_json::Map<String, Value>,
    mode: ClassifyMode,
) -> Option<usize> {
    let mut matched = 0usize;
    let mut extra = 0usize;
    for (key, kind) in fields {
        match object.get(key.as_str()) {
            Some(value) => {
                extra += check_value(kind, value, mode)?;
                matched += 1;
            }
            None if optional.iter().any(|name| name == key) => {}
            None => return None,
        }
    }
    let unexpected = object.len() - matched;
    if mode == ClassifyMode::Strict && unexpected > 0 {
        return None;
    }
    Some(extra + unexpected)
}

fn check_value(kind: &FieldType, value: &Value, mode: ClassifyMode) -> Option<usize> {
    match kind {
        FieldType::Object(fields) => check_object(fields, &[], value.as_object()?, mode),
        _ => type_matches(kind, value, mode).then_some(0),
    }
}

fn type_matches(kind: &FieldType, value: &Value, mode: ClassifyMode) -> bool {
    match (kind, value) {
        (FieldType::String, Value::String(_) | Value::Number(_) | Value::Bool(_)) => true,
        (FieldType::Integer, Value::Number(number)) => {
            number.is_i64() || number.is_u64() || number.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        (FieldType::Integer, Value::String(text)) => text.parse::<i128>().is_ok(),
        (FieldType::Float, Value::Number(_)) => true,
        (FieldType::Float, Value::String(text)) => text.parse::<f64>().is_ok_and(f64::is_finite),
        (FieldType::Boolean, Value::Bool(_)) => true,
        (FieldType::Boolean, Value::String(text)) => {
            text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false")
        }
        (FieldType::AnyObject, Value::Object(_)) => true,
        (FieldType::List, Value::Array(_)) => true,
        // osquery's aws_kinesis logger writes empty arrays as "".
        (FieldType::List, Value::String(text)) => mode == ClassifyMode::Lenient && text.is_empty(),
        _ => false,
    }
}

fn explain_object(
    fields: &[(String, FieldType)],
    optional: &[String],
    object: &serde_json::Map<String, Value>,
    prefix: &str,
    mode: ClassifyMode,
    mismatch: &mut Mismatch,
) {
    for (key, kind) in fields {
        let name = format!("{prefix}{key}");
        match (object.get(key.as_str()), kind) {
            (None, _) if optional.iter().any(|optional| optional == key) => {}
            (None, _) => mismatch.missing.push(name),
            (Some(Value::Object(inner)), FieldType::Object(nested)) => {
                explain_object(nested, &[], inner, &format!("{name}."), mode, mismatch);
            }
            (Some(value), _) if !type_matches_any(kind, value, mode) => {
                mismatch.mistyped.push(format!(
                    "{name} (expected {}, found {})",
                    type_label(kind),
                    json_type_name(value)
                ));
            }
            (Some(_), _) => {}
        }
    }
    for key in object.keys() {
        if !fields.iter().any(|(field, _)| field == key) {
            mismatch.unexpected.push(format!("{prefix}{key}"));
        }
    }
}

fn type_matches_any(kind: &FieldType, value: &Value, mode: ClassifyMode) -> bool {
    match kind {
        FieldType::Object(_) => value.is_object(),
        _ => type_matches(kind, value, mode),
    }
}

fn type_label(kind: &FieldType) -> &'static str {
    match kind {
        FieldType::String => "string",
        FieldType::Integer => "integer",
        FieldType::Float => "float",
        FieldType::Boolean => "boolean",
        FieldType::AnyObject | FieldType::Object(_) => "object",
        FieldType::List => "array",
    }
}

/// Returns a record holding every required key of `schema` with an empty value of its
/// type: `""`, `0`, `0.0`, `false`, `{}` or `[]`. Rule tests fill `override_record` with it.
pub fn default_record(schema: &LogSchema) -> Value {
    Value::Object(default_object(&schema.fields, &schema.optional_keys))
}

fn default_object(
    fields: &[(String, FieldType)],
    optional: &[String],
) -> serde_json::Map<String, Value> {
    let mut object = serde_json::Map::new();
    for (key, kind) in fields {
        if optional.contains(key) {
            continue;
        }
        let value = match kind {
            FieldType::String => Value::from(""),
            FieldType::Integer => Value::from(0),
            FieldType::Float => Value::from(0.0),
            FieldType::Boolean => Value::from(false),
            FieldType::AnyObject => Value::Object(serde_json::Map::new()),
            FieldType::List => Value::Array(Vec::new()),
            FieldType::Object(nested) => Value::Object(default_object(nested, &[])),
        };
        object.insert(key.clone(), value);
    }
    object
}

/// Orders schemas for classification: ascending priority, unprioritised last, then by name.
pub(crate) fn sort_by_priority(schemas: &mut [LogSchema]) {
    schemas.sort_by(|a, b| {
        let key = |schema: &LogSchema| (schema.priority.is_none(), schema.priority.unwrap_or(0));
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
}

/// Log type names grouped by family (`osquery` for `osquery:batch`).
pub(crate) fn families(schemas: &[LogSchema]) -> BTreeMap<&str, Vec<&str>> {
    let mut families: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for schema in schemas {
        let family = schema.name.split(':').next().unwrap_or(&schema.name);
        families.entry(family).or_default().push(&schema.name);
    }
    families
}
