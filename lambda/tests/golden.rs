//! The golden corpus of rules-core through the Lambda's path: Kinesis events of compat,
//! packed and zstd-packed records must give the log types, matches and alert ids that
//! `rules-core/tests/golden/corpus.jsonl` pins for the agent's path.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use edgealert_lambda::handler::{Handler, LineResult};
use edgealert_lambda::notify::Notifier;
use edgealert_lambda::settings::Delivery;
use rules_core::Config;
use rules_core::kinesis::Codec;
use serde_json::Value;
use tokio::time::Instant;

struct Expected {
    origin: String,
    line: Vec<u8>,
    classified: Result<String, String>,
    alerts: Vec<(String, String)>,
}

fn corpus() -> Vec<Expected> {
    let path = repo().join("rules-core/tests/golden/corpus.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            let bytes = match entry.get("line") {
                Some(text) => text.as_str().unwrap().as_bytes().to_vec(),
                None => hex(entry["line_hex"].as_str().unwrap()),
            };
            let classified = match entry.get("log_type") {
                Some(log_type) => Ok(log_type.as_str().unwrap().to_owned()),
                None => Err(entry["error"].as_str().unwrap().to_owned()),
            };
            let alerts = entry
                .get("alerts")
                .and_then(Value::as_array)
                .map(|alerts| {
                    alerts
                        .iter()
                        .map(|alert| {
                            (
                                alert["rule"].as_str().unwrap().to_owned(),
                                alert["alert_id"].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Expected {
                origin: entry["origin"].as_str().unwrap().to_owned(),
                line: bytes,
                classified,
                alerts,
            }
        })
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

/// A handler without webhooks: alerts are decided and audited, and sending fails fast.
fn handler() -> Handler {
    let config = Config::load(&repo().join("rules-core/tests/golden/conf")).unwrap();
    let notifier = Notifier::new(BTreeMap::new(), Delivery::default()).unwrap();
    let mut handler = Handler::new(Arc::new(config), notifier);
    handler.keep_line_results = true;
    handler
}

fn deadline() -> Instant {
    Instant::now() + std::time::Duration::from_secs(120)
}

fn check(expected: &Expected, actual: &LineResult, path: &str) {
    let classified = actual.classified.clone().map_err(str::to_owned);
    assert_eq!(
        classified, expected.classified,
        "{path}: classification of {}",
        expected.origin
    );
    assert_eq!(
        actual.alerts, expected.alerts,
        "{path}: alerts of {}",
        expected.origin
    );
}

#[tokio::test]
async fn golden_corpus_through_compat_records() {
    let corpus = corpus();
    let records = numbered(corpus.iter().map(|entry| entry.line.clone()).collect());
    let event = kinesis_event(STREAM_ARN, &records);

    let report = handler().handle(&event, deadline()).await;

    assert!(report.response.batch_item_failures.is_empty());
    let mut results = report.line_results.iter();
    for (expected, (sequence_number, data)) in corpus.iter().zip(&records) {
        let starts_as_object = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if !starts_as_object {
            // Such a record is not JSON to the decoder, so the Lambda skips it as a record
            // of unknown format before classifying it.
            assert!(expected.classified.is_err(), "{}", expected.origin);
            let bad = report
                .bad_records
                .iter()
                .find(|bad| &bad.sequence_number == sequence_number)
                .unwrap_or_else(|| panic!("{} is a bad record", expected.origin));
            assert_eq!(bad.reason, "unknown_format");
            continue;
        }
        let actual = results.next().unwrap();
        assert_eq!(&actual.sequence_number, sequence_number);
        check(expected, actual, "compat");
    }
    assert!(results.next().is_none());
}

#[tokio::test]
async fn golden_corpus_through_packed_records() {
    let corpus = corpus();
    for codec in [Codec::None, Codec::Zstd] {
        let lines: Vec<Vec<u8>> = corpus.iter().map(|entry| entry.line.clone()).collect();
        let event = kinesis_event(STREAM_ARN, &numbered(vec![packed(&lines, codec, false)]));

        let report = handler().handle(&event, deadline()).await;

        assert!(report.bad_records.is_empty(), "{:?}", report.bad_records);
        assert_eq!(report.line_results.len(), corpus.len());
        for (index, (expected, actual)) in corpus.iter().zip(&report.line_results).enumerate() {
            assert_eq!(actual.entry, Some(index));
            check(expected, actual, &format!("packed {codec:?}"));
        }
    }
}

#[tokio::test]
async fn golden_corpus_through_osquery_plugin_records() {
    let corpus: Vec<Expected> = corpus()
        .into_iter()
        .filter(|entry| {
            entry
                .classified
                .as_deref()
                .is_ok_and(|t| t.starts_with("osquery:"))
        })
        // The plugin re-serialises parsed JSON, so it never sends a line serde_json rejects
        // (invalid UTF-8, lone surrogates).
        .filter(|entry| serde_json::from_slice::<Value>(&entry.line).is_ok())
        .collect();
    assert!(corpus.len() > 30, "{}", corpus.len());
    let records = numbered(
        corpus
            .iter()
            .map(|entry| osquery_plugin_record(&entry.line))
            .collect(),
    );
    let event = kinesis_event(STREAM_ARN, &records);

    let report = handler().handle(&event, deadline()).await;

    assert!(report.bad_records.is_empty(), "{:?}", report.bad_records);
    for (expected, actual) in corpus.iter().zip(&report.line_results) {
        check(expected, actual, "osquery plugin");
    }
}
