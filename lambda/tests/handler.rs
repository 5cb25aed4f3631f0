//! The handler on Kinesis events in every record format, with a local webhook.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::webhook::{Reply, Webhook};
use common::*;
use edgealert_lambda::handler::{AuditEntry, Handler, Report};
use edgealert_lambda::notify::{NotifiedBy, Notifier};
use edgealert_lambda::secrets::check_url;
use edgealert_lambda::settings::Delivery;
use rules_core::Config;
use rules_core::kinesis::Codec;
use tokio::time::Instant;

/// Delivery settings that keep tests fast: no rate limit to speak of, short waits.
fn fast_delivery() -> Delivery {
    Delivery {
        min_interval: Duration::from_millis(10),
        burst: 100,
        max_attempts: 3,
        timeout: Duration::from_secs(5),
        max_retry_after_seconds: 5,
        deadline_margin: Duration::from_millis(100),
        min_request_time: Duration::from_millis(200),
    }
}

fn handler_for(conf: &Path, webhook: &Webhook, delivery: Delivery) -> Handler {
    let config = Config::load(conf).expect("test configuration loads");
    let url = check_url(&webhook.url("/services/T0/B0/SECRET")).unwrap();
    let urls = BTreeMap::from([("security".to_owned(), url)]);
    let mut handler = Handler::new(Arc::new(config), Notifier::new(urls, delivery).unwrap());
    handler.keep_line_results = true;
    handler
}

fn deadline_in(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

fn alerts_of<'a>(report: &'a Report, rule: &str) -> Vec<&'a AuditEntry> {
    report
        .alerts
        .iter()
        .filter(|alert| alert.rule == rule)
        .collect()
}

#[tokio::test]
async fn packed_records_in_both_codecs_notify_once() {
    let webhook = Webhook::start();
    let handler = handler_for(&repo().join("conf"), &webhook, fast_delivery());
    let lines = vec![netcat_line()];
    let event = kinesis_event(
        STREAM_ARN,
        &numbered(vec![
            packed(&lines, Codec::None, false),
            packed(&lines, Codec::Zstd, false),
        ]),
    );
    let zstd = packed(&[netcat_line(), netcat_line()], Codec::Zstd, false);
    assert_eq!(zstd[4], 1, "the second record is compressed");

    let report = handler.handle(&event, deadline_in(30)).await;

    assert!(report.bad_records.is_empty(), "{:?}", report.bad_records);
    assert!(report.response.batch_item_failures.is_empty());
    assert_eq!(report.lines, 2);
    assert_eq!(report.classified, 2);
    let listener = alerts_of(&report, "netcat_listener");
    assert_eq!(listener.len(), 2);
    assert_eq!(listener[0].alert_id, listener[1].alert_id);
    assert_eq!(listener[0].decision, "notify");
    assert_eq!(listener[0].notified_by, NotifiedBy::Lambda);
    assert_eq!(listener[0].delivery, Some("sent"));
    assert_eq!(listener[1].decision, "duplicate");
    assert_eq!(listener[1].notified_by, NotifiedBy::None);
    let accepted = webhook.accepted();
    assert_eq!(accepted.len(), 2, "one message per rule");
    assert_eq!(accepted[0].path, "/services/T0/B0/SECRET");
}

#[tokio::test]
async fn agent_flag_defers_both_tier() {
    let webhook = Webhook::start();
    let conf = conf_with_tiers(&[("netcat_command_execution", "central")]);
    let handler = handler_for(conf.path(), &webhook, fast_delivery());
    let event = kinesis_event(
        STREAM_ARN,
        &numbered(vec![packed(&[netcat_line()], Codec::Zstd, true)]),
    );

    let report = handler.handle(&event, deadline_in(30)).await;

    let both = alerts_of(&report, "netcat_listener");
    assert_eq!(both.len(), 1);
    assert_eq!(both[0].notified_by, NotifiedBy::Agent);
    assert_eq!(both[0].delivery, None);
    let central = alerts_of(&report, "netcat_command_execution");
    assert_eq!(central.len(), 1);
    assert_eq!(central[0].notified_by, NotifiedBy::Lambda);
    assert_eq!(central[0].delivery, Some("sent"));
    let accepted = webhook.accepted();
    assert_eq!(accepted.len(), 1, "only the central rule notifies");
    assert!(
        accepted[0].payload["text"]
            .as_str()
            .unwrap()
            .contains("netcat_command_execution"),
        "{}",
        accepted[0].payload
    );
}

/// Returns `(decision, notified_by)` with their counts over the report's alerts.
fn decisions(report: &Report) -> BTreeMap<(&'static str, NotifiedBy), usize> {
    let mut counts = BTreeMap::new();
    for alert in &report.alerts {
        *counts
            .entry((alert.decision, alert.notified_by))
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn agent_flag_audit_keeps_dedup_suppression() {
    let lines: Vec<Vec<u8>> = std::fs::read(repo().join("tests/data/osquery/results_event.log"))
        .unwrap()
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let flagged = Webhook::start();
    let unflagged = Webhook::start();
    let flagged_handler = handler_for(&repo().join("conf"), &flagged, fast_delivery());
    let unflagged_handler = handler_for(&repo().join("conf"), &unflagged, fast_delivery());

    let agent_sent = flagged_handler
        .handle(
            &kinesis_event(
                STREAM_ARN,
                &numbered(vec![packed(&lines, Codec::Zstd, true)]),
            ),
            deadline_in(30),
        )
        .await;
    let lambda_sent = unflagged_handler
        .handle(
            &kinesis_event(
                STREAM_ARN,
                &numbered(vec![packed(&lines, Codec::Zstd, false)]),
            ),
            deadline_in(30),
        )
        .await;

    let notified = decisions(&lambda_sent)[&("notify", NotifiedBy::Lambda)];
    let suppressed = decisions(&lambda_sent)[&("suppressed", NotifiedBy::None)];
    assert!(
        suppressed > 0,
        "the fixture repeats alerts within a dedup window"
    );
    assert_eq!(unflagged.accepted().len(), notified);
    assert_eq!(
        decisions(&agent_sent),
        BTreeMap::from([
            (("notify", NotifiedBy::Agent), notified),
            (("suppressed", NotifiedBy::None), suppressed),
        ])
    );
    assert!(flagged.received().is_empty());
}

#[tokio::test]
async fn agent_tier_rules_never_notify_from_the_lambda() {
    let webhook = Webhook::start();
    let conf = conf_with_tiers(&[("netcat_listener", "agent")]);
    let handler = handler_for(conf.path(), &webhook, fast_delivery());
    let event = kinesis_event(STREAM_ARN, &numbered(vec![netcat_line()]));

    let report = handler.handle(&event, deadline_in(30)).await;

    let agent = alerts_of(&report, "netcat_listener");
    assert_eq!(agent.len(), 1);
    assert_eq!(agent[0].notified_by, NotifiedBy::None);
    let both = alerts_of(&report, "netcat_command_execution");
    assert_eq!(both[0].notified_by, NotifiedBy::Lambda);
    assert_eq!(webhook.accepted().len(), 1);
}

#[tokio::test]
async fn plugin_records_match_compat_ids() {
    let webhook = Webhook::start();
    let handler = handler_for(&repo().join("conf"), &webhook, fast_delivery());
    let lines = [
        netcat_line(),
        fixture_line("results_batch.log", 4),
        fixture_line("snapshots_event.log", 3),
        fixture_line("results_event_numerics.log", 5),
    ];
    let mut records = Vec::new();
    for line in &lines {
        records.push(line.clone());
        records.push(osquery_plugin_record(line));
    }
    let plugin = String::from_utf8(records[1].clone()).unwrap();
    assert!(plugin.contains(r#""unixTime":"1741950733""#), "{plugin}");
    assert!(plugin.contains(r#"\/bin\/bash"#), "{plugin}");
    assert!(plugin.ends_with(r#","log_type":"result"}"#), "{plugin}");
    let event = kinesis_event(STREAM_ARN, &numbered(records));

    let report = handler.handle(&event, deadline_in(30)).await;

    assert!(report.bad_records.is_empty(), "{:?}", report.bad_records);
    assert_eq!(report.line_results.len(), 8);
    for pair in report.line_results.chunks(2) {
        assert_eq!(pair[0].classified, pair[1].classified);
        assert!(!pair[0].alerts.is_empty(), "{:?}", pair[0]);
        assert_eq!(pair[0].alerts, pair[1].alerts);
    }
    for alert in &report.alerts {
        assert_ne!(alert.notified_by, NotifiedBy::Agent);
    }
    let sent = report
        .alerts
        .iter()
        .filter(|alert| alert.delivery == Some("sent"))
        .count();
    assert_eq!(webhook.accepted().len(), sent);
    assert!(
        report
            .alerts
            .iter()
            .any(|alert| alert.decision == "duplicate"),
        "the plugin copy of each row is a duplicate"
    );
}

#[tokio::test]
async fn duplicate_batch_sends_nothing() {
    let webhook = Webhook::start();
    let handler = handler_for(&repo().join("conf"), &webhook, fast_delivery());
    let records = numbered(vec![
        packed(&[netcat_line(), netcat_process_line()], Codec::Zstd, false),
        netcat_line(),
    ]);
    let event = kinesis_event(STREAM_ARN, &records);

    let first = handler.handle(&event, deadline_in(30)).await;
    let messages = webhook.accepted().len();
    let second = handler.handle(&event, deadline_in(30)).await;

    assert!(messages > 0);
    assert_eq!(webhook.accepted().len(), messages, "no second message");
    let ids = |report: &Report| -> Vec<String> {
        report
            .alerts
            .iter()
            .map(|alert| alert.alert_id.clone())
            .collect()
    };
    assert_eq!(ids(&first), ids(&second));
    for alert in &second.alerts {
        assert_eq!(alert.decision, "duplicate", "{alert:?}");
    }
}

#[tokio::test]
async fn bad_records_are_counted_and_the_batch_continues() {
    let webhook = Webhook::start();
    let handler = handler_for(&repo().join("conf"), &webhook, fast_delivery());
    let truncated_gzip = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xabV".to_vec();
    let truncated_zstd = {
        let lines: Vec<Vec<u8>> = (0..50).map(|_| netcat_process_line()).collect();
        let record = packed(&lines, Codec::Zstd, false);
        assert_eq!(record[4], 1);
        record[..record.len() / 2].to_vec()
    };
    let records = numbered(vec![
        b"this is not JSON".to_vec(),
        truncated_gzip,
        b"EAP2\x00{}\n".to_vec(),
        b"EAP1\x07body".to_vec(),
        truncated_zstd,
        b"{\"name\":\"not an osquery record\"}".to_vec(),
        b"{\"name\": truncated".to_vec(),
        netcat_line(),
    ]);
    let mut event = kinesis_event(STREAM_ARN, &records);
    let other_stream = kinesis_event(
        "arn:aws:kinesis:eu-west-1:123456789012:stream/unknown-stream",
        &[(sequence_number(99), netcat_line())],
    );
    event.records.insert(3, other_stream.records[0].clone());

    let report = handler.handle(&event, deadline_in(30)).await;

    let reasons: Vec<(&str, &str)> = report
        .bad_records
        .iter()
        .map(|bad| (bad.sequence_number.as_str(), bad.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (records[0].0.as_str(), "unknown_format"),
            (records[1].0.as_str(), "unknown_format"),
            (records[2].0.as_str(), "unknown_format"),
            (sequence_number(99).as_str(), "unknown_source"),
            (records[3].0.as_str(), "unknown_codec"),
            (records[4].0.as_str(), "decompress_failed"),
            (records[5].0.as_str(), "no_matching_schema"),
            (records[6].0.as_str(), "invalid_json"),
        ]
    );
    assert!(report.bad_records[3].message.contains("unknown-stream"));
    assert!(
        report.response.batch_item_failures.is_empty(),
        "bad records are never retried"
    );
    assert_eq!(alerts_of(&report, "netcat_listener").len(), 1);
    assert_eq!(webhook.accepted().len(), 2);
}

#[tokio::test]
async fn unclassified_packed_entries_are_counted_per_reason() {
    let webhook = Webhook::start();
    let handler = handler_for(&repo().join("conf"), &webhook, fast_delivery());
    let lines = vec![
        b"{\"name\":\"q\"}".to_vec(),
        b"not json".to_vec(),
        b"not json either".to_vec(),
        netcat_line(),
    ];
    let event = kinesis_event(
        STREAM_ARN,
        &numbered(vec![packed(&lines, Codec::Zstd, false)]),
    );

    let report = handler.handle(&event, deadline_in(30)).await;

    assert!(report.bad_records.is_empty());
    assert_eq!(report.lines, 4);
    assert_eq!(report.classified, 1);
    assert_eq!(report.unclassified.get("invalid_json"), Some(&2));
    assert_eq!(report.unclassified.get("no_matching_schema"), Some(&1));
    assert_eq!(alerts_of(&report, "netcat_listener").len(), 1);
}

#[tokio::test]
async fn out_of_time_retries_from_record() {
    let webhook = Webhook::start();
    let handler = handler_for(&repo().join("conf"), &webhook, fast_delivery());
    let records = numbered(vec![
        netcat_process_line(),
        netcat_line(),
        fixture_line("results_event_numerics.log", 5),
    ]);
    let event = kinesis_event(STREAM_ARN, &records);
    // The first message goes through; the second gets a Retry-After longer than the time
    // left, so the second record is where Lambda must retry from.
    webhook.script([Reply::status(200, "ok"), Reply::rate_limited(5)]);

    let first = handler.handle(&event, deadline_in(3)).await;

    let failures: Vec<&str> = first
        .response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.as_str())
        .collect();
    assert_eq!(failures, vec![records[1].0.as_str()]);
    assert_eq!(first.alerts.last().unwrap().delivery, Some("retry"));
    assert!(
        first
            .alerts
            .iter()
            .all(|alert| alert.sequence_number != records[2].0),
        "records after the failure are left for the retry"
    );

    // Lambda retries from the failed record.
    let retry = kinesis_event(STREAM_ARN, &records[1..]);
    let second = handler.handle(&retry, deadline_in(30)).await;

    assert!(second.response.batch_item_failures.is_empty());
    let unsent = &first.alerts.last().unwrap().alert_id;
    let retried = second
        .alerts
        .iter()
        .find(|alert| &alert.alert_id == unsent)
        .expect("the retry evaluates the unsent alert again");
    assert_eq!(retried.decision, "notify");
    assert_eq!(retried.delivery, Some("sent"));
    let accepted = webhook.accepted();
    let ids: Vec<String> = accepted
        .iter()
        .map(|request| request.payload.to_string())
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no message was sent twice");
}

#[tokio::test]
async fn retry_after_holds_the_next_invocation() {
    let webhook = Webhook::start();
    let delivery = Delivery {
        max_retry_after_seconds: 30,
        ..fast_delivery()
    };
    let handler = handler_for(&repo().join("conf"), &webhook, delivery);
    let records = numbered(vec![netcat_process_line()]);
    let event = kinesis_event(STREAM_ARN, &records);
    webhook.script([Reply::rate_limited(30)]);

    let started = Instant::now();
    let first = handler.handle(&event, deadline_in(1)).await;
    let first_took = started.elapsed();
    let second = handler.handle(&event, deadline_in(1)).await;

    assert!(
        first_took >= Duration::from_millis(850),
        "the invocation waits until its deadline instead of returning at once: {first_took:?}"
    );

    for report in [&first, &second] {
        let failures: Vec<&str> = report
            .response
            .batch_item_failures
            .iter()
            .map(|failure| failure.item_identifier.as_str())
            .collect();
        assert_eq!(failures, vec![records[0].0.as_str()]);
    }
    assert_eq!(
        webhook.received().len(),
        1,
        "the second invocation waits for Retry-After instead of posting"
    );
}

#[tokio::test]
async fn retried_alert_skips_outputs_already_reached() {
    let conf = conf_with_tiers(&[]);
    std::fs::write(
        conf.path().join("outputs.json"),
        r#"{"slack": ["security", "ops"]}"#,
    )
    .unwrap();
    let rule_path = conf.path().join("rules/netcat_command_execution.json");
    let mut rule: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rule_path).unwrap()).unwrap();
    rule["outputs"] = serde_json::json!(["slack:security", "slack:ops"]);
    std::fs::write(&rule_path, rule.to_string()).unwrap();
    let security = Webhook::start();
    let ops = Webhook::start();
    ops.script([Reply::rate_limited(2)]);
    let urls = BTreeMap::from([
        (
            "security".to_owned(),
            check_url(&security.url("/services/T0/B0/SECURITY")).unwrap(),
        ),
        (
            "ops".to_owned(),
            check_url(&ops.url("/services/T0/B0/OPS")).unwrap(),
        ),
    ]);
    let config = Config::load(conf.path()).expect("test configuration loads");
    let handler = Handler::new(
        Arc::new(config),
        Notifier::new(urls, fast_delivery()).unwrap(),
    );
    let records = numbered(vec![netcat_process_line()]);
    let event = kinesis_event(STREAM_ARN, &records);

    let first = handler.handle(&event, deadline_in(1)).await;
    let second = handler.handle(&event, deadline_in(10)).await;

    assert_eq!(first.response.batch_item_failures.len(), 1);
    assert!(second.response.batch_item_failures.is_empty());
    assert_eq!(
        security.accepted().len(),
        1,
        "security got its message once"
    );
    assert_eq!(ops.accepted().len(), 1, "ops got its message on the retry");
}

#[tokio::test]
async fn cancelled_delivery_notifies_on_retry() {
    let webhook = Webhook::start();
    webhook.script([Reply {
        delay: Duration::from_secs(5),
        ..Reply::status(500, "slow")
    }]);
    let config = Config::load(&repo().join("conf")).unwrap();
    let url = check_url(&webhook.url("/services/T0/B0/SECRET")).unwrap();
    let mut notifier = Notifier::new(
        BTreeMap::from([("security".to_owned(), url)]),
        fast_delivery(),
    )
    .unwrap();
    let line = netcat_process_line();
    let classified = config
        .classify(&rules_core::Source::new("kinesis", "edgealert"), &line)
        .unwrap();
    let alert = config.rules.evaluate(&classified.events()[0]).remove(0);

    let first = notifier.decide(&config, &alert, false, 1_741_950_000);
    let messages = notifier.messages(&config, &alert);
    // Dropping the future mid-request stands for an invocation that panicked or was cut off.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        notifier.deliver_alert(&messages, deadline_in(30)),
    )
    .await;
    let retry = notifier.decide(&config, &alert, false, 1_741_950_001);

    assert_eq!(first.notified_by, NotifiedBy::Lambda);
    assert!(cancelled.is_err(), "the delivery was still waiting");
    assert_eq!(retry.notified_by, NotifiedBy::Lambda);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let webhook = Webhook::start();
    let handler = handler_for(&repo().join("conf"), &webhook, fast_delivery());
    webhook.script([Reply::status(404, "no_service")]);
    let event = kinesis_event(STREAM_ARN, &numbered(vec![netcat_process_line()]));

    let report = handler.handle(&event, deadline_in(30)).await;

    assert_eq!(report.alerts[0].delivery, Some("dropped"));
    assert_eq!(report.dropped, 1);
    assert!(report.response.batch_item_failures.is_empty());
    assert_eq!(webhook.received().len(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn retryable_errors_retry_then_honour_retry_after() {
    let webhook = Webhook::start();
    let handler = handler_for(&repo().join("conf"), &webhook, fast_delivery());
    webhook.script([Reply::status(503, "busy"), Reply::rate_limited(1)]);
    let event = kinesis_event(STREAM_ARN, &numbered(vec![netcat_process_line()]));

    let report = handler.handle(&event, deadline_in(30)).await;

    assert_eq!(report.alerts[0].delivery, Some("sent"));
    let received = webhook.received();
    let statuses: Vec<u16> = received.iter().map(|request| request.status).collect();
    assert_eq!(statuses, vec![503, 429, 200]);
    let waited = received[2].at.duration_since(received[1].at);
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
}

#[tokio::test]
async fn rate_limit_spaces_messages_after_the_burst() {
    let webhook = Webhook::start();
    let delivery = Delivery {
        min_interval: Duration::from_millis(300),
        burst: 2,
        ..fast_delivery()
    };
    let handler = handler_for(&repo().join("conf"), &webhook, delivery);
    // Four processes, so dedup keeps none of them quiet.
    let lines: Vec<Vec<u8>> = (0..4)
        .map(|index| {
            let mut row: serde_json::Value =
                serde_json::from_slice(&netcat_process_line()).unwrap();
            row["columns"]["pid"] = serde_json::json!(format!("{}", 5000 + index));
            serde_json::to_vec(&row).unwrap()
        })
        .collect();
    let event = kinesis_event(STREAM_ARN, &numbered(lines));

    handler.handle(&event, deadline_in(30)).await;

    let received = webhook.received();
    assert_eq!(received.len(), 4);
    let gap = received[2].at.duration_since(received[1].at);
    assert!(gap >= Duration::from_millis(250), "{gap:?}");
}

#[tokio::test]
async fn staged_rules_are_audited_but_never_notify() {
    let webhook = Webhook::start();
    let conf = conf_with_tiers(&[]);
    let path = conf.path().join("rules/netcat_listener.json");
    let mut rule: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    rule["staged"] = serde_json::json!(true);
    std::fs::write(&path, rule.to_string()).unwrap();
    let handler = handler_for(conf.path(), &webhook, fast_delivery());
    let event = kinesis_event(STREAM_ARN, &numbered(vec![netcat_line()]));

    let report = handler.handle(&event, deadline_in(30)).await;

    let staged = alerts_of(&report, "netcat_listener");
    assert_eq!(staged[0].decision, "staged");
    assert_eq!(staged[0].notified_by, NotifiedBy::None);
    assert_eq!(webhook.accepted().len(), 1);
}
