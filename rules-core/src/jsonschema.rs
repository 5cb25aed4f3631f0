//! JSON Schemas of the configuration files, for editors that validate and complete them.
//!
//! The schemas are generated from the Rust types that load the files, so they cannot drift
//! from what the loader accepts. `json-schema/` in the repository contains the generated
//! files, and a test fails when they are out of date.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::Value;

use crate::config::{OutputsFile, Settings, SourcesFile};
use crate::rule::RuleFile;
use crate::testing::TestEvent;

/// Returns the schema of the rule condition language, registered as the `Condition`
/// definition so it can refer to itself.
pub fn condition_schema(generator: &mut SchemaGenerator) -> Schema {
    let reference = format!(
        "#{}/Condition",
        generator.settings().definitions_path.trim_end_matches('/')
    );
    let scalar = json_schema!({"type": ["string", "number", "boolean"]});
    let texts = json_schema!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
    let predicate = json_schema!({
        "type": "object",
        "description": "A test on one field; exactly one operator.",
        "required": ["field"],
        "additionalProperties": false,
        "minProperties": 2,
        "maxProperties": 3,
        "properties": {
            "field": {"type": "string", "description": "Field path, such as columns.name or decorations.hostname."},
            "ignore_case": {"type": "boolean"},
            "eq": scalar, "ne": scalar,
            "in": {"type": "array", "items": scalar},
            "contains": texts, "starts_with": texts, "ends_with": texts,
            "regex": {"type": "string", "description": "Rust regex syntax, unanchored unless anchored."},
            "cidr": texts,
            "gt": {"type": "number"}, "gte": {"type": "number"}, "lt": {"type": "number"}, "lte": {"type": "number"},
            "exists": {"type": "boolean"}
        }
    });
    let condition = json_schema!({
        "description": "A condition: all, any, not, or a predicate.",
        "oneOf": [
            {"type": "object", "required": ["all"], "additionalProperties": false,
             "properties": {"all": {"type": "array", "items": {"$ref": reference}}}},
            {"type": "object", "required": ["any"], "additionalProperties": false,
             "properties": {"any": {"type": "array", "items": {"$ref": reference}}}},
            {"type": "object", "required": ["not"], "additionalProperties": false,
             "properties": {"not": {"$ref": reference}}},
            predicate
        ]
    });
    generator
        .definitions_mut()
        .insert("Condition".to_owned(), condition.to_value());
    json_schema!({"$ref": reference})
}

fn schema_file_schema() -> Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Log schemas",
        "description": "Log type name to its schema, in StreamAlert's format.",
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "required": ["parser", "schema"],
            "additionalProperties": false,
            "properties": {
                "parser": {"const": "json"},
                "schema": {"$ref": "#/$defs/Fields"},
                "configuration": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "optional_top_level_keys": {"type": "array", "items": {"type": "string"}},
                        "envelope_keys": {"$ref": "#/$defs/Fields"},
                        "log_patterns": {"type": "object"},
                        "priority": {"type": "integer"},
                        "json_path": {"type": "string"},
                        "json_regex_key": {"type": "string"},
                        "optional_envelope_keys": {"type": "array", "items": {"type": "string"}}
                    }
                }
            }
        },
        "$defs": {
            "Fields": {
                "type": "object",
                "additionalProperties": {
                    "oneOf": [
                        {"enum": ["string", "integer", "float", "boolean"]},
                        {"type": "array", "maxItems": 0},
                        {"$ref": "#/$defs/Fields"}
                    ]
                }
            }
        }
    })
}

/// Returns every configuration file schema as `(file name, schema)`.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        (
            "rule.schema.json",
            schemars::schema_for!(RuleFile).to_value(),
        ),
        (
            "rule-tests.schema.json",
            schemars::schema_for!(Vec<TestEvent>).to_value(),
        ),
        (
            "sources.schema.json",
            schemars::schema_for!(SourcesFile).to_value(),
        ),
        (
            "outputs.schema.json",
            schemars::schema_for!(OutputsFile).to_value(),
        ),
        (
            "edgealert.schema.json",
            schemars::schema_for!(Settings).to_value(),
        ),
        ("logs.schema.json", schema_file_schema()),
    ]
}
