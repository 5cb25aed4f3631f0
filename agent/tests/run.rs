//! End-to-end tests of `edgealert run`: the real binary follows files in a temporary
//! directory and writes every record to a local records file, which the tests compare with
//! what they wrote.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::agent::{Agent, BIN};

/// Builds an osquery differential line whose `seq` column identifies it.
fn line(seq: usize) -> String {
    format!(
        "{{\"name\":\"pack_detection_processes\",\"hostIdentifier\":\"web-07.corp.example\",\"calendarTime\":\"Fri Mar 14 09:12:03 2025 UTC\",\"unixTime\":1741943523,\"epoch\":0,\"counter\":1,\"numerics\":false,\"columns\":{{\"name\":\"worker\",\"pid\":\"{}\",\"seq\":\"{seq}\"}},\"action\":\"added\"}}\n",
        1000 + seq
    )
}

/// Sequence numbers found in the records, in order; a line torn by a kill may hold two.
fn sequences(records: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    for record in records {
        for part in record.split("\"seq\":\"").skip(1) {
            if let Some(number) = part.split('"').next().and_then(|text| text.parse().ok()) {
                out.push(number);
            }
        }
    }
    out
}

#[test]
fn run_delivers_lines_across_rename_rotation() {
    let mut agent = Agent::new();
    agent.start();
    for seq in 0..100 {
        agent.append(&line(seq));
    }
    agent.wait_for("the first 100 lines", |agent| {
        sequences(&agent.records()).len() >= 100
    });
    std::fs::rename(
        agent.path("logs/osqueryd.results.log"),
        agent.path("logs/osqueryd.results.log.1"),
    )
    .unwrap();
    for seq in 100..200 {
        agent.append(&line(seq));
    }
    agent.wait_for("200 lines", |agent| {
        sequences(&agent.records()).len() >= 200
    });
    agent.stop();
    assert_eq!(sequences(&agent.records()), (0..200).collect::<Vec<_>>());
}

#[test]
fn run_resumes_from_checkpoint_after_restart() {
    let mut agent = Agent::new();
    agent.start();
    for seq in 0..50 {
        agent.append(&line(seq));
    }
    agent.wait_for("50 lines", |agent| sequences(&agent.records()).len() >= 50);
    agent.stop();
    agent.append(&line(50));
    agent.append("{\"name\":\"pack_detection_proc");
    agent.start();
    agent.wait_for("51 lines", |agent| sequences(&agent.records()).len() >= 51);
    agent.append("esses\"}\n");
    agent.wait_for("the completed partial line", |agent| {
        agent.records().len() >= 52
    });
    agent.stop();
    assert_eq!(sequences(&agent.records()), (0..51).collect::<Vec<_>>());
    let records = agent.records();
    assert!(
        records.contains(&"{\"name\":\"pack_detection_processes\"}".to_owned()),
        "{records:?}"
    );
}

#[test]
fn run_keeps_old_config_when_reload_is_invalid() {
    let mut agent = Agent::new();
    agent.start();
    agent.append(&line(0));
    agent.wait_for("one line", |agent| !agent.records().is_empty());
    let rule = agent.path("conf/rules/netcat_listener.json");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(&rule, text.replace("(^|/)(nc|", "(^|/)(nc|(")).unwrap();
    agent.signal(nix::sys::signal::Signal::SIGHUP);
    agent.wait_for("the rejected reload", |agent| {
        agent.log().contains("Configuration reload rejected")
    });
    let log = agent.log();
    assert!(
        log.contains("netcat_listener.json: $.condition.all[1].any[1].regex: invalid regex"),
        "{log}"
    );

    let netcat = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/osquery/results_event.log"),
    )
    .unwrap();
    agent.append(&format!("{}\n", netcat.lines().nth(10).unwrap()));
    let alerts = agent.path("state/alerts.jsonl");
    agent.wait_for("the netcat alert", |_| {
        std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .contains("netcat_listener")
    });
    let status = || {
        Command::new(BIN)
            .args(["status", "--conf"])
            .arg(agent.path("conf"))
            .output()
            .unwrap()
    };
    agent.wait_for("the rejected reload in the status", |_| {
        String::from_utf8_lossy(&status().stdout).contains("last error: reload rejected")
    });
    assert!(status().status.success());

    std::fs::write(&rule, text).unwrap();
    agent.wait_for("the valid configuration", |agent| {
        agent
            .log()
            .contains("Configuration directory is valid again.")
    });
    agent.wait_for("the cleared error in the status", |_| {
        !String::from_utf8_lossy(&status().stdout).contains("last error: reload rejected")
    });
    agent.stop();
}

#[test]
fn run_without_webhook_source_suggests_valid_settings() {
    let agent = Agent::new();
    agent.configure(|settings| {
        settings["slack"] = serde_json::json!({});
    });

    let output = Command::new(BIN)
        .args(["run", "--conf"])
        .arg(agent.path("conf"))
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hint = stderr
        .split("add ")
        .nth(1)
        .and_then(|rest| rest.split(" to agent.json").next())
        .unwrap_or_else(|| panic!("no settings hint in: {stderr}"));
    let hint: serde_json::Value = serde_json::from_str(&format!("{{{hint}}}"))
        .unwrap_or_else(|error| panic!("the hint {hint} is not JSON: {error}"));
    let secret = agent.path("slack-security.url");
    agent.configure(|settings| {
        settings["slack"] = hint["slack"].clone();
        settings["slack"]["webhooks"]["security"]["file"] = serde_json::json!(secret);
    });
    let validate = Command::new(BIN)
        .args(["validate", "--conf"])
        .arg(agent.path("conf"))
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
}

#[test]
fn status_lists_missing_followed_file() {
    let mut agent = Agent::new();
    agent.start();
    let expected = format!(
        "file {}: not present; waiting for it",
        agent.path("logs/osqueryd.results.log").display()
    );
    agent.wait_for("the missing file in the status", |agent| {
        let output = Command::new(BIN)
            .args(["status", "--conf"])
            .arg(agent.path("conf"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).contains(&expected)
    });
    agent.stop();
}

#[test]
fn run_reports_hostile_lines_without_stopping() {
    let mut agent = Agent::new();
    let settings = agent.path("conf/agent.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&settings).unwrap()).unwrap();
    value["max_line_bytes"] = serde_json::json!(1 << 20);
    std::fs::write(&settings, value.to_string()).unwrap();
    agent.start();
    agent.append(&line(0));
    agent.append(&format!("{{\"name\":\"{}\"}}\n", "x".repeat(2 << 20)));
    agent.append("not json at all\n");
    agent.append("{\"name\":\"q\",\"colu");
    agent.append(&line(1));
    let mut invalid_utf8 = line(2).into_bytes();
    let value_at = line(2).find("worker").unwrap() + 3;
    invalid_utf8.splice(value_at..value_at, [0xff, 0xfe]);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(agent.path("logs/osqueryd.results.log"))
        .unwrap();
    file.write_all(&invalid_utf8).unwrap();
    agent.append(&line(3));
    agent.wait_for("line 3", |agent| sequences(&agent.records()).contains(&3));
    agent.stop();

    let records = agent.records();
    assert_eq!(sequences(&records), vec![0, 1, 2, 3]);
    let internal: Vec<&String> = records
        .iter()
        .filter(|record| record.starts_with("{\"edgealert\""))
        .collect();
    let reasons: Vec<String> = internal
        .iter()
        .map(|record| {
            serde_json::from_str::<serde_json::Value>(record).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        reasons,
        vec!["line_too_long", "invalid_json", "glued_fragment"]
    );
    let raw = std::fs::read(agent.path("records.jsonl")).unwrap();
    assert!(
        raw.windows(2).any(|window| window == [0xff, 0xfe]),
        "invalid UTF-8 is forwarded byte-exact"
    );
}

/// Acknowledged offset of the followed file in the checkpoint (0 without a checkpoint).
fn acked_offset(agent: &Agent) -> u64 {
    let Ok(bytes) = std::fs::read(agent.path("state/checkpoints.json")) else {
        return 0;
    };
    let checkpoint: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    checkpoint["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|file| file["offset"].as_u64())
        .max()
        .unwrap_or(0)
}

#[test]
fn run_kill_loop_loses_nothing() {
    let mut agent = Agent::new();
    let mut offsets: Vec<u64> = Vec::new();
    let mut size = 0u64;
    let mut allowed_duplicates = 0usize;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    for _ in 0..25 {
        agent.start();
        for _ in 0..(10 + random(60)) {
            let text = line(offsets.len());
            offsets.push(size);
            size += text.len() as u64;
            agent.append(&text);
        }
        std::thread::sleep(Duration::from_millis(random(120)));
        agent.kill();
        // Lines at or after the acknowledged offset may be delivered once more by the next run.
        let acked = acked_offset(&agent);
        let mut delivered = sequences(&agent.records());
        delivered.sort_unstable();
        delivered.dedup();
        allowed_duplicates += delivered
            .iter()
            .filter(|&&seq| offsets[seq] >= acked)
            .count();
    }
    agent.start();
    let written = offsets.len();
    agent.wait_for("every written line", |agent| {
        let mut delivered = sequences(&agent.records());
        delivered.sort_unstable();
        delivered.dedup();
        delivered.len() == written
    });
    agent.stop();

    let delivered = sequences(&agent.records());
    let mut unique = delivered.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique,
        (0..written).collect::<Vec<_>>(),
        "every line delivered"
    );
    let duplicates = delivered.len() - written;
    assert!(
        duplicates <= allowed_duplicates,
        "{duplicates} duplicates, at most {allowed_duplicates} were unacknowledged at the kills"
    );
}
