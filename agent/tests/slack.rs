//! Slack delivery end to end: the real agent, a local webhook receiver on 127.0.0.1, and the
//! failures Slack and the network produce.

mod common;

use std::process::Command;
use std::time::Duration;

use common::agent::{Agent, BIN};
use common::webhook::Reply;

/// The netcat scenario of the osquery fixtures, one line per record.
fn fixture_lines() -> Vec<String> {
    let text = std::fs::read_to_string(common::repo().join("tests/data/osquery/results_event.log"))
        .unwrap();
    text.lines().map(|line| format!("{line}\n")).collect()
}

/// A netcat listener row for process `pid`, as osqueryd logs it.
fn netcat_line(pid: u32) -> String {
    let line = fixture_lines()[10].clone();
    line.replace("\"pid\":\"48213\"", &format!("\"pid\":\"{pid}\""))
}

fn texts(agent: &Agent) -> Vec<String> {
    agent
        .webhook
        .accepted()
        .iter()
        .map(|request| request.payload["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The fixture raises 7 alerts. The IPv6 listener of ncat shares its pid and port with the
/// IPv4 one, and the other ncat rows share pid and cmdline, so the rules' dedup keys leave
/// one message per process and rule.
#[test]
fn slack_receives_fixture_alerts_once() {
    let mut agent = Agent::new();
    agent.start();
    for line in fixture_lines() {
        agent.append(&line);
    }
    agent.wait_for("the fixture's messages", |agent| {
        agent.webhook.accepted().len() >= 3
    });
    std::thread::sleep(Duration::from_secs(2));
    agent.stop();

    let texts = texts(&agent);
    assert_eq!(
        texts,
        vec![
            "[HIGH] netcat_listener on web-07.corp.example: nc -lvnp 4444",
            "[CRITICAL] netcat_command_execution on web-07.corp.example: ncat -lvp 8443 --ssl -e /bin/bash",
            "[HIGH] netcat_listener on web-07.corp.example: ncat -lvp 8443 --ssl -e /bin/bash",
        ]
    );
    for request in agent.webhook.accepted() {
        assert_eq!(request.path, "/services/T0/B0/SECRETPATH");
        assert!(
            request.payload["blocks"]
                .as_array()
                .is_some_and(|blocks| !blocks.is_empty())
        );
    }
}

#[test]
fn slack_url_never_in_logs_or_status() {
    let mut agent = Agent::new();
    agent
        .webhook
        .script([Reply::status(500, "oops"), Reply::status(404, "no_service")]);
    agent.start();
    agent.append(&netcat_line(1));
    agent.append(&netcat_line(2));
    agent.wait_for("three requests", |agent| {
        agent.webhook.received().len() >= 3
    });
    let status = || {
        let output = Command::new(BIN)
            .args(["status", "--conf"])
            .arg(agent.path("conf"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    agent.wait_for("the dead letter in the status", |_| {
        status().contains("1 dead-lettered")
    });
    let status = status();
    agent.stop();

    for (name, text) in [
        ("agent log", agent.log()),
        ("status", status),
        (
            "status.json",
            std::fs::read_to_string(agent.path("state/status.json")).unwrap(),
        ),
        (
            "alerts",
            std::fs::read_to_string(agent.path("state/alerts.jsonl")).unwrap(),
        ),
    ] {
        assert!(
            !text.contains("SECRETPATH"),
            "{name} contains the webhook URL"
        );
        assert!(
            !text.contains(&format!("127.0.0.1:{}", agent.webhook.port)),
            "{name} contains the webhook address"
        );
    }
}

#[test]
fn slack_waits_for_retry_after() {
    let mut agent = Agent::new();
    agent
        .webhook
        .script([Reply::rate_limited(1), Reply::rate_limited(2)]);
    agent.start();
    agent.append(&netcat_line(7));
    agent.wait_for("the accepted message", |agent| {
        !agent.webhook.accepted().is_empty()
    });
    agent.stop();

    let received = agent.webhook.received();
    let statuses: Vec<u16> = received.iter().map(|request| request.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);
    assert!(received[1].at - received[0].at >= Duration::from_millis(950));
    assert!(received[2].at - received[1].at >= Duration::from_millis(1950));
    assert!(
        agent
            .log()
            .contains("Slack rate-limited the webhook; waiting for Retry-After.")
    );
}

#[test]
fn slack_retries_server_errors_then_delivers() {
    let mut agent = Agent::new();
    agent.webhook.script([
        Reply::status(500, "a"),
        Reply::status(503, "b"),
        Reply::status(502, "c"),
    ]);
    agent.start();
    agent.append(&netcat_line(8));
    agent.wait_for("the accepted message", |agent| {
        !agent.webhook.accepted().is_empty()
    });
    agent.stop();

    let statuses: Vec<u16> = agent
        .webhook
        .received()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, vec![500, 503, 502, 200]);
    assert_eq!(agent.outbox_files(), 0);
}

#[test]
fn slack_dead_letters_permanent_error() {
    let mut agent = Agent::new();
    agent.webhook.script([Reply::status(404, "no_service")]);
    agent.start();
    agent.append(&netcat_line(9));
    agent.wait_for("the dead letter", |agent| agent.dead_letters() == 1);
    std::thread::sleep(Duration::from_millis(500));
    agent.stop();

    assert_eq!(agent.webhook.received().len(), 1);
    let error = std::fs::read_dir(agent.path("state/outbox/dead-letter"))
        .unwrap()
        .flatten()
        .find(|entry| entry.path().extension().is_some_and(|ext| ext == "error"))
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
        .unwrap();
    assert_eq!(error, "HTTP 404: no_service\n");
    assert!(
        agent
            .log()
            .contains("Slack did not accept the message; moved it to the dead letters.")
    );
}

#[test]
fn slack_delivers_pending_alert_once_after_kill() {
    let mut agent = Agent::new();
    agent.webhook.script([
        Reply::status(500, "down"),
        Reply::status(500, "down"),
        Reply::status(500, "down"),
    ]);
    agent.start();
    agent.append(&netcat_line(10));
    agent.wait_for("a failed attempt", |agent| {
        !agent.webhook.received().is_empty()
    });
    agent.kill();
    assert_eq!(agent.outbox_files(), 1);

    agent.start();
    agent.wait_for("the accepted message", |agent| {
        !agent.webhook.accepted().is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    agent.stop();
    assert_eq!(agent.webhook.accepted().len(), 1);
    assert_eq!(agent.outbox_files(), 0);
}

#[test]
fn slack_does_not_repeat_after_restart_or_counter_zero_dump() {
    let mut agent = Agent::new();
    agent.start();
    agent.append(&netcat_line(11));
    agent.wait_for("the first message", |agent| {
        agent.webhook.accepted().len() == 1
    });
    agent.stop();

    // osqueryd restarted with a fresh database: the same row again, counter 0, a new time.
    let dump = netcat_line(11)
        .replace("\"counter\":1", "\"counter\":0")
        .replace("1741947131", "1741950000");
    agent.start();
    agent.append(&dump);
    agent.append(&netcat_line(11));
    agent.wait_for("the lines", |agent| agent.records().len() >= 3);
    std::thread::sleep(Duration::from_secs(2));
    agent.stop();
    assert_eq!(agent.webhook.accepted().len(), 1);
}

#[test]
fn slack_refuses_to_start_without_secret() {
    let agent = Agent::new();
    agent.configure(|settings| {
        settings["slack"]["webhooks"]["security"] =
            serde_json::json!({"env": "EDGEALERT_TEST_NO_SUCH_VARIABLE"})
    });
    let output = Command::new(BIN)
        .args(["run", "--conf"])
        .arg(agent.path("conf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("webhook secret of slack:security: environment variable EDGEALERT_TEST_NO_SUCH_VARIABLE is not set or not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn validate_secrets_names_descriptor_not_url() {
    let agent = Agent::new();
    let path = agent.path("slack-security.url");
    std::fs::write(&path, "ftp://hooks.example/SECRETPATH").unwrap();
    let output = Command::new(BIN)
        .args(["validate", "--secrets", "--conf"])
        .arg(agent.path("conf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("webhook secret of slack:security: the URL must use https (http is accepted only for a loopback address)"),
        "{stderr}"
    );
    assert!(!stderr.contains("SECRETPATH"));
}

#[test]
fn slack_burst_is_rate_limited_and_digested() {
    let mut agent = Agent::new();
    agent.configure(|settings| {
        settings["slack"]["min_interval_ms"] = serde_json::json!(100);
        settings["slack"]["burst"] = serde_json::json!(3);
        settings["slack"]["max_backlog"] = serde_json::json!(5);
    });
    agent.start();
    let lines: String = (0..1000)
        .map(|index| netcat_line(100_000 + index))
        .collect();
    agent.append(&lines);
    let alerts = agent.path("state/alerts.jsonl");
    agent.wait_for("1,000 alerts", |_| {
        std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .count()
            >= 1000
    });
    agent.wait_for("the digest", |agent| {
        texts(agent).iter().any(|text| text.contains("more alerts"))
    });
    std::thread::sleep(Duration::from_secs(1));
    agent.stop();

    let texts = texts(&agent);
    let individual = texts
        .iter()
        .filter(|text| !text.contains("more alerts"))
        .count();
    let digested: u64 = texts
        .iter()
        .filter_map(|text| {
            text.split("] ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(individual as u64 + digested, 1000, "{texts:?}");
    assert!(
        texts.len() <= 12,
        "a burst must not flood the channel: {} messages",
        texts.len()
    );
    let times: Vec<_> = agent
        .webhook
        .accepted()
        .iter()
        .map(|request| request.at)
        .collect();
    for pair in times.windows(2).skip(3) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(80),
            "rate limit exceeded"
        );
    }
}

#[test]
fn file_output_gets_every_match() {
    let mut agent = Agent::new();
    std::fs::write(
        agent.path("conf/outputs.json"),
        r#"{"slack": ["security"], "file": ["siem"]}"#,
    )
    .unwrap();
    let rule = agent.path("conf/rules/netcat_listener.json");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        text.replace(
            r#""outputs": ["slack:security"]"#,
            r#""outputs": ["slack:security", "file:siem"]"#,
        ),
    )
    .unwrap();
    let siem = agent.path("siem.jsonl");
    agent.configure(|settings| settings["file_outputs"] = serde_json::json!({"siem": siem}));
    agent.start();
    agent.append(&netcat_line(12));
    agent.append(&netcat_line(12).replace("1741947131", "1741947191"));
    agent.wait_for("two alerts in the file output", |_| {
        std::fs::read_to_string(&siem)
            .unwrap_or_default()
            .lines()
            .count()
            == 2
    });
    std::thread::sleep(Duration::from_secs(1));
    agent.stop();

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&siem)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|alert| alert["rule"] == "netcat_listener"));
    assert_eq!(
        agent.webhook.accepted().len(),
        1,
        "Slack gets the first match only, because of dedup"
    );
}

#[test]
fn file_output_without_path_fails_to_start() {
    let agent = Agent::new();
    std::fs::write(
        agent.path("conf/outputs.json"),
        r#"{"slack": ["security"], "file": ["siem"]}"#,
    )
    .unwrap();
    let rule = agent.path("conf/rules/netcat_listener.json");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        text.replace(
            r#""outputs": ["slack:security"]"#,
            r#""outputs": ["file:siem"]"#,
        ),
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["run", "--conf"])
        .arg(agent.path("conf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(r#"$.file_outputs: rules write to file:siem, which has no path: add "file_outputs": {"siem": "/var/log/edgealert/siem.jsonl"}"#),
        "{stderr}"
    );
}

#[test]
fn slack_retries_after_timeout() {
    let mut agent = Agent::new();
    agent.configure(|settings| settings["slack"]["timeout_ms"] = serde_json::json!(300));
    let slow = Reply {
        delay: Duration::from_secs(2),
        ..Reply::status(200, "ok")
    };
    agent.webhook.script([slow]);
    agent.start();
    agent.append(&netcat_line(13));
    agent.wait_for("the second request", |agent| {
        agent.webhook.received().len() >= 2
    });
    agent.wait_for("the retry counter", |agent| {
        agent.log().contains("Slack delivery failed; retrying.")
    });
    std::thread::sleep(Duration::from_millis(500));
    agent.stop();
    assert_eq!(
        agent.webhook.received().len(),
        2,
        "one timed-out request, one retry"
    );
    assert_eq!(agent.outbox_files(), 0);
}

#[test]
fn slack_not_resent_while_local_sink_fails() {
    let mut agent = Agent::new();
    agent.configure(|settings| {
        settings["records_file"] = serde_json::json!("/dev/full");
        settings["shutdown_timeout_ms"] = serde_json::json!(1000);
    });
    agent.start();
    agent.append(&netcat_line(14));
    agent.wait_for("the message", |agent| agent.webhook.accepted().len() == 1);
    agent.wait_for("the retries", |agent| {
        agent
            .log()
            .matches("holding the batch and retrying")
            .count()
            >= 4
    });
    agent.stop();
    assert_eq!(agent.webhook.accepted().len(), 1);
}
