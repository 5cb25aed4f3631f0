//! The handler on records that the real agent put into kinesalite, read back with
//! GetRecords, in the packed and compat formats.
//!
//! `scripts/test` runs these with `--ignored`, passing the kinesalite wrapper in
//! `EDGEALERT_KINESALITE_JS` and the agent binary (`target/debug/edgealert`, built by
//! `cargo test --workspace`) in `EDGEALERT_AGENT_BIN`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::agent::{Agent, STREAM};
use common::kinesis::{self, Emulator, StreamRecord};
use common::webhook::Webhook;
use common::*;
use edgealert_lambda::handler::{Handler, Report};
use edgealert_lambda::notify::{NotifiedBy, Notifier};
use edgealert_lambda::secrets::check_url;
use edgealert_lambda::settings::Delivery;
use rules_core::kinesis::Decoded;
use rules_core::{Config, Source};
use serde_json::json;

/// Every line of the osquery fixtures.
fn fixture_lines() -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/data/osquery"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|file| {
            std::fs::read(file)
                .unwrap()
                .split(|&byte| byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Counts the lines in `records`: entries of packed records, one per other record.
fn line_count(records: &[StreamRecord]) -> usize {
    records
        .iter()
        .map(|record| match rules_core::kinesis::decode(&record.data) {
            Ok(Decoded::Packed(packed)) => packed.entries.len(),
            _ => 1,
        })
        .sum()
}

/// Runs the agent over `lines` with `format` and returns what it put into the stream.
fn forward(conf: &Path, format: &str, lines: &[Vec<u8>]) -> Vec<StreamRecord> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emulator = Emulator::start();
    let client = runtime.block_on(kinesis::client(&emulator.endpoint()));
    runtime.block_on(kinesis::create_stream(&client, STREAM, 1));
    let webhook = Webhook::start();
    let agent = Agent::start(
        conf,
        &emulator,
        json!({"kinesis": {"format": format}}),
        &webhook,
    );
    agent.append(lines);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = runtime.block_on(kinesis::read_all(&client, STREAM));
        if line_count(&records) >= lines.len() {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "the agent forwarded {} of {} lines in 60 s; agent log:\n{}",
            line_count(&records),
            lines.len(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The alert ids the agent's own path gives for `lines`: classified as `file:osquery`.
fn expected_alerts(config: &Config, lines: &[Vec<u8>]) -> BTreeMap<(String, String), usize> {
    let mut alerts = BTreeMap::new();
    for line in lines {
        let Ok(classified) = config.classify(&Source::new("file", "osquery"), line) else {
            continue;
        };
        for event in classified.events() {
            for alert in config.rules.evaluate(&event) {
                *alerts.entry((alert.rule, alert.alert_id)).or_default() += 1;
            }
        }
    }
    alerts
}

fn handle(conf: &Path, records: &[StreamRecord], webhook: &Webhook) -> Report {
    let config = Config::load(conf).unwrap();
    let url = check_url(&webhook.url("/services/T0/B0/LAMBDASECRET")).unwrap();
    let delivery = Delivery {
        min_interval: Duration::from_millis(10),
        burst: 100,
        ..Delivery::default()
    };
    let notifier = Notifier::new(BTreeMap::from([("security".to_owned(), url)]), delivery);
    let handler = Handler::new(Arc::new(config), notifier.unwrap());
    let stream_arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}");
    let pairs: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|record| (record.sequence_number.clone(), record.data.clone()))
        .collect();
    let event = kinesis_event(&stream_arn, &pairs);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    runtime.block_on(handler.handle(&event, deadline))
}

fn alert_counts(report: &Report) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for alert in &report.alerts {
        *counts
            .entry((alert.rule.clone(), alert.alert_id.clone()))
            .or_default() += 1;
    }
    counts
}

#[test]
#[ignore = "needs kinesalite and the agent binary: scripts/test runs it"]
fn emulator_packed_records_defer_to_agent() {
    let conf = conf_with_tiers(&[("netcat_command_execution", "central")]);
    let lines = fixture_lines();
    let records = forward(conf.path(), "packed", &lines);
    assert!(
        records.len() < lines.len(),
        "lines are packed into fewer records"
    );
    let webhook = Webhook::start();

    let report = handle(conf.path(), &records, &webhook);

    assert!(report.bad_records.is_empty(), "{:?}", report.bad_records);
    assert!(report.response.batch_item_failures.is_empty());
    let config = Config::load(conf.path()).unwrap();
    assert_eq!(alert_counts(&report), expected_alerts(&config, &lines));
    for alert in &report.alerts {
        let first_time = alert.decision == "notify";
        match (alert.rule.as_str(), first_time) {
            ("netcat_command_execution", true) => {
                assert_eq!(alert.notified_by, NotifiedBy::Lambda, "{alert:?}")
            }
            (_, true) => assert_eq!(alert.notified_by, NotifiedBy::Agent, "{alert:?}"),
            (_, false) => assert_eq!(alert.notified_by, NotifiedBy::None, "{alert:?}"),
        }
    }
    let central_sent = report
        .alerts
        .iter()
        .filter(|alert| alert.notified_by == NotifiedBy::Lambda)
        .count();
    assert!(central_sent > 0);
    assert_eq!(webhook.accepted().len(), central_sent);
}

#[test]
#[ignore = "needs kinesalite and the agent binary: scripts/test runs it"]
fn emulator_compat_records_notify_from_lambda() {
    let conf = conf_with_tiers(&[]);
    let lines = fixture_lines();
    let records = forward(conf.path(), "compat", &lines);
    assert_eq!(records.len(), lines.len(), "one record per line");
    let webhook = Webhook::start();

    let report = handle(conf.path(), &records, &webhook);

    assert!(report.bad_records.is_empty(), "{:?}", report.bad_records);
    let config = Config::load(conf.path()).unwrap();
    assert_eq!(alert_counts(&report), expected_alerts(&config, &lines));
    let notified: Vec<_> = report
        .alerts
        .iter()
        .filter(|alert| alert.decision == "notify")
        .collect();
    assert!(!notified.is_empty());
    for alert in &notified {
        assert_eq!(alert.notified_by, NotifiedBy::Lambda, "{alert:?}");
    }
    assert_eq!(webhook.accepted().len(), notified.len());
}
