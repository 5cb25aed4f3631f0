//! The rule author's commands on the shipped configuration and the osquery fixtures.

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgealert");

use common::{copy_dir, repo};

/// (file, netcat_listener alerts) from the ground truth of tests/data/osquery/README.md.
const NETCAT_ALERTS: &[(&str, usize)] = &[
    ("results_event.log", 3),
    ("results_event_numerics.log", 2),
    ("results_batch.log", 3),
    ("snapshots_event.log", 2),
    ("snapshots.log", 0),
];

#[test]
fn replay_finds_ground_truth_netcat_rows() {
    for (file, expected) in NETCAT_ALERTS {
        let output = Command::new(BIN)
            .args(["replay", "--conf"])
            .arg(repo().join("conf"))
            .arg("--no-forward")
            .arg(repo().join("tests/data/osquery").join(file))
            .output()
            .unwrap();
        assert!(output.status.success(), "{file}");
        let alerts: Vec<serde_json::Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let netcat = alerts
            .iter()
            .filter(|alert| alert["rule"] == "netcat_listener")
            .count();
        assert_eq!(netcat, *expected, "{file}");
        let summary = String::from_utf8_lossy(&output.stderr);
        assert!(summary.contains(", 0 failures"), "{file}: {summary}");
    }
}

#[test]
fn test_command_passes_shipped_rules() {
    let output = Command::new(BIN)
        .args(["test", "--conf"])
        .arg(repo().join("conf"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
}

#[test]
fn test_command_fails_on_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    copy_dir(&repo().join("conf"), &conf);
    let rule = conf.join("rules/netcat_listener.json");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        text.replace(
            "{\"field\": \"action\", \"in\": [\"added\", \"snapshot\"]}",
            "{\"field\": \"action\", \"in\": [\"added\", \"snapshot\", \"removed\"]}",
        ),
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["test", "--conf"])
        .arg(&conf)
        .arg("netcat_listener")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  netcat_listener/"), "{stdout}");
}

#[test]
fn validate_no_tests_ignores_stale_test_events() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("conf"), dir.path());
    std::fs::remove_file(dir.path().join("rules/netcat_listener.json")).unwrap();

    let full = Command::new(BIN)
        .args(["validate", "--conf"])
        .arg(dir.path())
        .output()
        .unwrap();
    let start_check = Command::new(BIN)
        .args(["validate", "--no-tests", "--conf"])
        .arg(dir.path())
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&full.stderr);
    assert!(!full.status.success());
    assert!(
        stderr.contains("trigger_rules[0]: unknown rule \"netcat_listener\""),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&start_check.stdout);
    assert!(
        start_check.status.success(),
        "{}",
        String::from_utf8_lossy(&start_check.stderr)
    );
    assert!(
        stdout.contains("9 rules, test events not checked"),
        "{stdout}"
    );
}

#[test]
fn validate_classifies_every_fixture_line() {
    let mut command = Command::new(BIN);
    command
        .args(["validate", "--conf"])
        .arg(repo().join("conf"))
        .arg("--log");
    for (file, _) in NETCAT_ALERTS {
        command.arg(repo().join("tests/data/osquery").join(file));
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("\n0 lines not classified"), "{stdout}");
}

#[test]
fn replay_counts_hostile_lines() {
    let dir = tempfile::tempdir().unwrap();
    let netcat =
        std::fs::read_to_string(repo().join("tests/data/osquery/results_event.log")).unwrap();
    let netcat = netcat.lines().nth(10).unwrap();
    let mut log = Vec::new();
    log.extend_from_slice(format!("{netcat}\n").as_bytes());
    log.extend_from_slice(format!("{{\"name\":\"{}\"}}\n", "x".repeat(4096)).as_bytes());
    log.extend_from_slice(format!("{{\"name\":\"q\",\"colu{netcat}\n").as_bytes());
    log.extend_from_slice(b"not json\n");
    let (before, after) = netcat.split_once("mkovacs").unwrap();
    log.extend_from_slice(before.as_bytes());
    log.extend_from_slice(b"mk\xffovacs");
    log.extend_from_slice(after.as_bytes());
    log.extend_from_slice(format!("\n{netcat}{netcat}\n").as_bytes());
    log.extend_from_slice(b"{\"name\":\"unterminated");
    let path = dir.path().join("hostile.log");
    std::fs::write(&path, &log).unwrap();

    let output = Command::new(BIN)
        .args(["replay", "--conf"])
        .arg(repo().join("conf"))
        .args(["--no-forward", "--max-line-bytes", "2048"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success());
    let alerts = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        alerts
            .lines()
            .filter(|line| line.contains("\"rule\":\"netcat_listener\""))
            .count(),
        5
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "replayed 5 lines: 5 records, 5 rows, 5 alerts, 4 failures \
         (glued_fragment=1, invalid_json=1, line_too_long=1, unterminated_line=1)"
    );
}
