//! The real `bootstrap` binary against a local Lambda Runtime API and webhook on 127.0.0.1.
//!
//! `EDGEALERT_LAMBDA_BOOTSTRAP` selects the binary (scripts/test sets it to the deployment
//! build); without it the tests run the binary cargo built.

mod common;

use std::time::Duration;

use common::runtime_api::{Bootstrap, Invocation, RuntimeApi};
use common::webhook::Webhook;
use common::*;
use rules_core::kinesis::Codec;

/// Path part of the test webhook URL; it stands for the secret and must never be printed.
const SECRET_PATH: &str = "/services/T0EDGE/B0ALERT/sEcReTtOkEn42";

fn start(api: &RuntimeApi, webhook: &Webhook, conf: &std::path::Path) -> Bootstrap {
    Bootstrap::start(
        api,
        &[
            ("EDGEALERT_CONF", conf.display().to_string()),
            ("EDGEALERT_SLACK_WEBHOOKS", webhook.url(SECRET_PATH)),
            ("EDGEALERT_SLACK_MIN_INTERVAL_MS", "10".to_owned()),
        ],
    )
}

fn event_bytes(records: Vec<Vec<u8>>) -> Vec<u8> {
    serde_json::to_vec(&kinesis_event_json(STREAM_ARN, &numbered(records))).unwrap()
}

#[test]
fn bootstrap_invocation_hides_secret() {
    let api = RuntimeApi::start();
    let webhook = Webhook::start();
    let bootstrap = start(&api, &webhook, &repo().join("conf"));

    let request_id = api.invoke(
        &event_bytes(vec![
            packed(&[netcat_line()], Codec::Zstd, false),
            b"not a record".to_vec(),
            packed(&[netcat_line()], Codec::None, true),
        ]),
        Duration::from_secs(30),
    );
    let result = api.result(&request_id, Duration::from_secs(30));

    let output = bootstrap.output();
    assert_eq!(
        result,
        Some(Invocation::Response(
            serde_json::json!({"batchItemFailures": []})
        )),
        "{output}"
    );
    let accepted = webhook.accepted();
    assert_eq!(accepted.len(), 2, "one message per rule: {output}");
    assert_eq!(accepted[0].path, SECRET_PATH);
    let logs = bootstrap.log_lines();
    let initialized = logs.iter().find(|line| line["message"] == "Initialized.");
    assert!(initialized.is_some(), "{output}");
    let audit: Vec<&serde_json::Value> = logs
        .iter()
        .filter(|line| line["message"] == "Alert.")
        .collect();
    assert_eq!(audit.len(), 4, "{output}");
    assert_eq!(audit[0]["notified_by"], "lambda");
    assert_eq!(audit[0]["delivery"], "sent");
    assert_eq!(audit[0]["tier"], "both");
    assert!(audit[0]["alert_id"].as_str().unwrap().len() == 32);
    let bad = logs
        .iter()
        .find(|line| line["reason"] == "unknown_format")
        .unwrap_or_else(|| panic!("the bad record is logged: {output}"));
    assert_eq!(bad["sequence_number"], sequence_number(1));
    let summary = logs
        .iter()
        .find(|line| line["message"] == "Processed a batch.")
        .unwrap();
    assert_eq!(summary["bad_records"], 1);
    assert!(!output.contains("sEcReTtOkEn42"), "{output}");
    assert!(!output.contains("B0ALERT"), "{output}");
}

#[test]
fn bootstrap_survives_unreadable_event() {
    let api = RuntimeApi::start();
    let webhook = Webhook::start();
    let _bootstrap = start(&api, &webhook, &repo().join("conf"));

    let broken = api.invoke(br#"{"Records": 5}"#, Duration::from_secs(30));
    let broken = api.result(&broken, Duration::from_secs(30));
    let good = api.invoke(
        &event_bytes(vec![netcat_process_line()]),
        Duration::from_secs(30),
    );
    let good = api.result(&good, Duration::from_secs(30));

    let Some(Invocation::Error { body, .. }) = broken else {
        panic!("expected an invocation error, got {broken:?}");
    };
    assert!(body["errorMessage"].is_string(), "{body}");
    assert_eq!(
        good,
        Some(Invocation::Response(
            serde_json::json!({"batchItemFailures": []})
        ))
    );
    assert_eq!(webhook.accepted().len(), 1);
}

#[test]
fn bootstrap_out_of_time_names_record() {
    let api = RuntimeApi::start();
    let webhook = Webhook::start();
    webhook.script([common::webhook::Reply::rate_limited(30)]);
    let _bootstrap = start(&api, &webhook, &repo().join("conf"));

    let request_id = api.invoke(
        &event_bytes(vec![netcat_process_line(), netcat_line()]),
        Duration::from_secs(4),
    );
    let result = api.result(&request_id, Duration::from_secs(30));

    assert_eq!(
        result,
        Some(Invocation::Response(serde_json::json!({
            "batchItemFailures": [{"itemIdentifier": sequence_number(0)}]
        })))
    );
}

#[test]
fn broken_configuration_fails_init() {
    let api = RuntimeApi::start();
    let webhook = Webhook::start();
    let conf = conf_with_tiers(&[]);
    std::fs::write(
        conf.path().join("rules/broken.json"),
        b"{\"name\": \"broken\"",
    )
    .unwrap();
    let mut bootstrap = start(&api, &webhook, conf.path());

    let init_error = api.init_error(Duration::from_secs(30));
    let code = bootstrap.wait_exit(Duration::from_secs(30));

    let output = bootstrap.output();
    let init_error = init_error.unwrap_or_else(|| panic!("no init error: {output}"));
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(
        init_error.error_type.as_deref(),
        Some("Edgealert.InvalidConfiguration")
    );
    assert_eq!(
        init_error.body["errorType"],
        "Edgealert.InvalidConfiguration"
    );
    let message = init_error.body["errorMessage"].as_str().unwrap();
    assert!(message.contains("broken.json"), "{message}");
    assert!(
        api.first_next(Duration::ZERO).is_none(),
        "no invocation was requested"
    );
}

#[test]
fn missing_webhook_secret_fails_init() {
    let api = RuntimeApi::start();
    let mut bootstrap = Bootstrap::start(
        &api,
        &[("EDGEALERT_CONF", repo().join("conf").display().to_string())],
    );

    let init_error = api.init_error(Duration::from_secs(30));
    let code = bootstrap.wait_exit(Duration::from_secs(30));

    let output = bootstrap.output();
    let init_error = init_error.unwrap_or_else(|| panic!("no init error: {output}"));
    assert_eq!(code, Some(1));
    assert_eq!(
        init_error.body["errorType"],
        "Edgealert.InvalidWebhookSecret"
    );
    let message = init_error.body["errorMessage"].as_str().unwrap();
    assert!(message.contains("slack:security"), "{message}");
}

#[test]
fn invalid_webhook_url_fails_init_without_echoing_it() {
    let api = RuntimeApi::start();
    let mut bootstrap = Bootstrap::start(
        &api,
        &[
            ("EDGEALERT_CONF", repo().join("conf").display().to_string()),
            (
                "EDGEALERT_SLACK_WEBHOOKS",
                "http://hooks.example/services/sEcReTtOkEn42".to_owned(),
            ),
        ],
    );

    let init_error = api.init_error(Duration::from_secs(30)).expect("init error");
    bootstrap.wait_exit(Duration::from_secs(30));

    let message = init_error.body["errorMessage"].as_str().unwrap();
    assert!(message.contains("https"), "{message}");
    assert!(!message.contains("sEcReTtOkEn42"), "{message}");
    assert!(!bootstrap.output().contains("sEcReTtOkEn42"));
}

/// Measures the cold start: from spawning the binary to its first request for an event,
/// with the shipped configuration. Run with `--ignored --nocapture`; prints the median of
/// `EDGEALERT_COLD_STARTS` runs (default 11).
#[test]
#[ignore = "measurement; run by hand for docs/BENCHMARKS.md"]
fn cold_start_init_time() {
    let runs: usize = std::env::var("EDGEALERT_COLD_STARTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(11);
    let webhook = Webhook::start();
    let mut samples = Vec::new();
    for _ in 0..runs {
        let api = RuntimeApi::start();
        let bootstrap = start(&api, &webhook, &repo().join("conf"));
        let first = api
            .first_next(Duration::from_secs(30))
            .expect("the binary asks for an event");
        samples.push(first.duration_since(bootstrap.spawned_at));
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "cold start to first /next: median {:.1} ms, min {:.1} ms, max {:.1} ms over {runs} runs of {}",
        median.as_secs_f64() * 1000.0,
        samples[0].as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0,
        common::runtime_api::bootstrap_path().display()
    );
}
