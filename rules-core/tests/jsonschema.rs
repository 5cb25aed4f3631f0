//! The JSON Schemas in `json-schema/` are generated from the loader's types and must be
//! current. Regenerate with `UPDATE_SCHEMAS=1 cargo test -p rules-core --test jsonschema`.

use std::path::Path;

#[test]
fn json_schema_files_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../json-schema");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, schema) in rules_core::jsonschema::all() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(name);
        if update {
            std::fs::write(&path, &text).unwrap();
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == text,
            "{} is out of date: run UPDATE_SCHEMAS=1 cargo test -p rules-core --test jsonschema",
            path.display()
        );
    }
}

#[test]
fn rule_schema_describes_condition() {
    let schemas = rules_core::jsonschema::all();
    let (_, rule) = schemas
        .iter()
        .find(|(name, _)| *name == "rule.schema.json")
        .unwrap();
    assert!(rule["$defs"]["Condition"]["oneOf"].is_array());
    assert_eq!(rule["properties"]["condition"]["$ref"], "#/$defs/Condition");
}
