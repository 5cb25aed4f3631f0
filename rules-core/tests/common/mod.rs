//! Helpers shared by the integration tests of rules-core.

// Each test crate uses only some of the helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use rules_core::condition::Condition;
use rules_core::config::Config;
use serde_json::{Value, json};
use tempfile::TempDir;

/// Returns the shipped configuration directory.
pub fn shipped_conf() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf"))
}

/// Creates a configuration directory with the shipped osquery schemas and `sources`
/// as `sources.json`.
pub fn osquery_conf(sources: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    std::fs::copy(
        shipped_conf().join("schemas/osquery.json"),
        dir.path().join("schemas/osquery.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("sources.json"), sources).unwrap();
    dir
}

/// Compiles `condition` the way the agent does: by loading a directory with the osquery
/// schemas and one rule `r` that reads every osquery log type.
pub fn compile_condition(condition: &Value) -> Result<Condition, String> {
    let dir = osquery_conf(r#"{"file": {"osquery": {"logs": ["osquery"]}}}"#);
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let rule =
        json!({"name": "r", "description": "d", "logs": ["osquery"], "condition": condition});
    std::fs::write(dir.path().join("rules/r.json"), rule.to_string()).unwrap();
    match Config::load(dir.path()) {
        Ok(config) => Ok(config.rules.get("r").unwrap().condition.clone()),
        Err(errors) => Err(errors.to_string()),
    }
}
