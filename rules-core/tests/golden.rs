//! The golden corpus: rules × records → expected log types, matches and alert ids.
//!
//! `tests/golden/corpus.jsonl` pins what the engine decides for every fixture line and for
//! the hostile lines of `tests/golden/extra.log`, under the rules of `tests/golden/conf`.
//! The agent and the Lambda run the same corpus through their own paths and must agree.
//! After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test -p rules-core
//! --test golden` and review the diff.

use std::path::{Path, PathBuf};

use rules_core::{Config, Source};
use serde_json::{Value, json};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/osquery");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files.push(golden_dir().join("extra.log"));
    let mut lines = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&file).unwrap();
        for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if !line.is_empty() {
                lines.push((format!("{name}:{}", index + 1), line.to_vec()));
            }
        }
    }
    lines
}

fn decide(config: &Config, origin: &str, line: &[u8]) -> Value {
    let mut entry = json!({"origin": origin});
    match std::str::from_utf8(line) {
        Ok(text) => entry["line"] = json!(text),
        Err(_) => entry["line_hex"] = json!(hex(line)),
    }
    match config.classify(&Source::new("file", "osquery"), line) {
        Err(error) => entry["error"] = json!(error.reason()),
        Ok(classified) => {
            entry["log_type"] = json!(classified.log_type());
            let mut alerts = Vec::new();
            for (row, event) in classified.events().iter().enumerate() {
                for alert in config.rules.evaluate(event) {
                    alerts
                        .push(json!({"row": row, "rule": alert.rule, "alert_id": alert.alert_id}));
                }
            }
            entry["alerts"] = Value::Array(alerts);
        }
    }
    entry
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn golden_corpus_matches() {
    let config = Config::load(&golden_dir().join("conf")).expect("golden configuration loads");
    let actual: Vec<String> = inputs()
        .iter()
        .map(|(origin, line)| decide(&config, origin, line).to_string())
        .collect();
    let path = golden_dir().join("corpus.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual.join("\n") + "\n").unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .expect("corpus.jsonl exists; generate it with UPDATE_GOLDEN=1");
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(actual.len(), expected.len(), "number of corpus entries");
    for (actual, expected) in actual.iter().zip(expected) {
        assert_eq!(actual, expected);
    }
}
