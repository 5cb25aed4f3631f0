//! Acceptance: every line of the osquery fixtures classifies, and the netcat rule matches
//! exactly the ground-truth rows listed in tests/data/osquery/README.md.

use std::path::{Path, PathBuf};

use rules_core::{Config, Source};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config() -> Config {
    Config::load(&repo().join("conf")).expect("the shipped configuration loads")
}

/// (file, [(line number, matching rows)]) for `netcat_listener`.
const GROUND_TRUTH: &[(&str, &[(usize, usize)])] = &[
    ("results_event.log", &[(11, 1), (15, 1), (16, 1)]),
    ("results_event_numerics.log", &[(4, 1), (5, 1)]),
    ("results_batch.log", &[(3, 1), (4, 2)]),
    ("snapshots_event.log", &[(2, 1), (3, 1)]),
    ("snapshots.log", &[]),
];

fn netcat_matches(config: &Config, file: &str) -> Vec<(usize, usize)> {
    let path = repo().join("tests/data/osquery").join(file);
    let text = std::fs::read(&path).expect("fixture is readable");
    let source = Source::new("file", "osquery");
    let mut matches = Vec::new();
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let classified = config
            .classify(&source, line)
            .unwrap_or_else(|error| panic!("{file}:{} does not classify: {error}", index + 1));
        let rows = classified
            .events()
            .iter()
            .flat_map(|event| config.rules.evaluate(event))
            .filter(|alert| alert.rule == "netcat_listener")
            .count();
        if rows > 0 {
            matches.push((index + 1, rows));
        }
    }
    matches
}

#[test]
fn netcat_listener_matches_ground_truth() {
    let config = config();
    for (file, expected) in GROUND_TRUTH {
        assert_eq!(netcat_matches(&config, file), expected.to_vec(), "{file}");
    }
}

#[test]
fn fixture_log_types_match_logger_format() {
    let config = config();
    let source = Source::new("file", "osquery");
    let expected = [
        ("results_event.log", "osquery:differential"),
        ("results_event_numerics.log", "osquery:differential"),
        ("results_batch.log", "osquery:batch"),
        ("snapshots.log", "osquery:snapshot"),
        ("snapshots_event.log", "osquery:differential"),
    ];
    for (file, log_type) in expected {
        let text = std::fs::read(repo().join("tests/data/osquery").join(file)).unwrap();
        for line in text.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
            let classified = config.classify(&source, line).unwrap();
            assert_eq!(classified.log_type(), log_type, "{file}");
            assert_eq!(classified.extra_keys, 0, "{file}");
        }
    }
}

#[test]
fn churn_pairs_share_dedup_key() {
    let config = config();
    let source = Source::new("file", "osquery");
    let text =
        std::fs::read_to_string(repo().join("tests/data/osquery/results_event.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (removed, added) in [(17, 18), (25, 26)] {
        let keys: Vec<String> = [removed, added]
            .iter()
            .map(|number| {
                let classified = config
                    .classify(&source, lines[number - 1].as_bytes())
                    .unwrap();
                let event = classified.events()[0];
                let rule = config.rules.get("netcat_listener").unwrap();
                rules_core::alert::dedup_key(rule, &event)
            })
            .collect();
        assert_eq!(keys[0], keys[1], "lines {removed}/{added}");
    }
}
