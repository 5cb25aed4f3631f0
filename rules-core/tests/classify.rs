//! Classification of osquery log lines with the shipped configuration, in lenient and strict
//! mode, and stability of alert ids across the renderings osquery and its loggers produce
//! for one result row.

mod common;

use std::path::Path;

use rules_core::alert::alert_id;
use rules_core::config::{ClassifyError, Config, Source};
use rules_core::schema::ClassifyMode;

fn shipped() -> Config {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf"));
    Config::load(dir).expect("the shipped configuration loads")
}

fn strict() -> Config {
    let mut config = shipped();
    config.settings.classifier.mode = ClassifyMode::Strict;
    config
}

fn kinesis() -> Source {
    Source::new("kinesis", "edgealert")
}

/// Returns the log type of `line`, or the classification error's text.
fn log_type(config: &Config, line: &str) -> Result<String, String> {
    config
        .classify(&kinesis(), line.as_bytes())
        .map(|classified| classified.log_type().to_owned())
        .map_err(|error| error.to_string())
}

/// Returns the ids of `netcat_listener` alerts raised by `line`.
fn netcat_alert_ids(config: &Config, line: &[u8]) -> Vec<String> {
    let classified = config
        .classify(&kinesis(), line)
        .unwrap_or_else(|error| panic!("not classified: {error}"));
    classified
        .events()
        .iter()
        .flat_map(|event| config.rules.evaluate(event))
        .filter(|alert| alert.rule == "netcat_listener")
        .map(|alert| alert.alert_id)
        .collect()
}

/// Differential event (`--logger_event_type=true`), osquery 5 with string columns.
const EVENT: &str = r#"{"name":"pack_detection_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":1741943561,"epoch":0,"counter":1,"numerics":false,"decorations":{"hostname":"web-07"},"columns":{"address":"0.0.0.0","cmdline":"nc -lvnp 4444","family":"2","name":"nc","path":"/usr/bin/nc.openbsd","pid":"48213","port":"4444","protocol":"6","uid":"1000"},"action":"added"}"#;

/// The same row with `--logger_numerics=true`.
const EVENT_NUMERICS: &str = r#"{"name":"pack_detection_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":1741943561,"epoch":0,"counter":1,"numerics":true,"decorations":{"hostname":"web-07"},"columns":{"address":"0.0.0.0","cmdline":"nc -lvnp 4444","family":2,"name":"nc","path":"/usr/bin/nc.openbsd","pid":48213,"port":4444,"protocol":6,"uid":1000},"action":"added"}"#;

/// The same row in a differential batch (`--logger_event_type=false`).
const BATCH: &str = r#"{"diffResults":{"removed":[],"added":[{"address":"0.0.0.0","cmdline":"nc -lvnp 4444","family":"2","name":"nc","path":"/usr/bin/nc.openbsd","pid":"48213","port":"4444","protocol":"6","uid":"1000"}]},"name":"pack_detection_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":1741943561,"epoch":0,"counter":1,"numerics":false,"decorations":{"hostname":"web-07"}}"#;

/// The batch as osquery's aws_kinesis logger re-serialises it: every scalar a string, `/`
/// escaped, the empty `removed` array written as `""` and `log_type` appended.
const KINESIS_BATCH: &str = r#"{"diffResults":{"removed":"","added":[{"address":"0.0.0.0","cmdline":"nc -lvnp 4444","family":"2","name":"nc","path":"\/usr\/bin\/nc.openbsd","pid":"48213","port":"4444","protocol":"6","uid":"1000"}]},"name":"pack_detection_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":"1741943561","epoch":"0","counter":"1","numerics":"false","decorations":{"hostname":"web-07"},"log_type":"result"}"#;

/// The event as the aws_kinesis logger writes it.
const KINESIS_EVENT: &str = r#"{"name":"pack_detection_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":"1741943561","epoch":"0","counter":"1","numerics":"false","decorations":{"hostname":"web-07"},"columns":{"address":"0.0.0.0","cmdline":"nc -lvnp 4444","family":"2","name":"nc","path":"\/usr\/bin\/nc.openbsd","pid":"48213","port":"4444","protocol":"6","uid":"1000"},"action":"added","log_type":"result"}"#;

/// The event as osquery 2.x wrote it: every scalar a string, `/` escaped, no `numerics`.
const EVENT_2X: &str = r#"{"name":"pack_detection_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":"1741943561","epoch":"0","counter":"1","columns":{"address":"0.0.0.0","cmdline":"nc -lvnp 4444","family":"2","name":"nc","path":"\/usr\/bin\/nc.openbsd","pid":"48213","port":"4444","protocol":"6","uid":"1000"},"action":"added"}"#;

/// A snapshot record of the same row.
const SNAPSHOT: &str = r#"{"snapshot":[{"address":"0.0.0.0","cmdline":"nc -lvnp 4444","family":"2","name":"nc","path":"/usr/bin/nc.openbsd","pid":"48213","port":"4444","protocol":"6","uid":"1000"}],"action":"snapshot","name":"pack_snapshots_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":1741943561,"epoch":0,"counter":0,"numerics":false,"decorations":{"hostname":"web-07"}}"#;

/// The snapshot row with `--logger_snapshot_event_type=true`.
const SNAPSHOT_EVENT: &str = r#"{"name":"pack_snapshots_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":1741943561,"epoch":0,"counter":0,"numerics":false,"decorations":{"hostname":"web-07"},"columns":{"address":"0.0.0.0","cmdline":"nc -lvnp 4444","family":"2","name":"nc","path":"/usr/bin/nc.openbsd","pid":"48213","port":"4444","protocol":"6","uid":"1000"},"action":"snapshot"}"#;

/// The snapshot record as the aws_kinesis logger writes it.
const KINESIS_SNAPSHOT: &str = r#"{"snapshot":[{"address":"0.0.0.0","cmdline":"nc -lvnp 4444","family":"2","name":"nc","path":"\/usr\/bin\/nc.openbsd","pid":"48213","port":"4444","protocol":"6","uid":"1000"}],"action":"snapshot","name":"pack_snapshots_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":"1741943561","epoch":"0","counter":"0","numerics":"false","decorations":{"hostname":"web-07"},"log_type":"result"}"#;

/// A JSON status record, as the tls, aws and kafka loggers send them.
const STATUS: &str = r#"{"hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":1741943561,"severity":0,"filename":"scheduler.cpp","line":83,"message":"Executing scheduled query pack_detection_listening_processes","version":"5.12.1","decorations":{"hostname":"web-07"}}"#;

/// The status record from an osquery older than 5.10, with numbers as strings.
const KINESIS_STATUS: &str = r#"{"hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":"1741943561","severity":"0","filename":"scheduler.cpp","line":"83","message":"Executing scheduled query pack_detection_listening_processes","version":"5.9.1","log_type":"status"}"#;

/// The event with `--decorations_top_level=true`.
const EVENT_TOP_LEVEL_DECORATIONS: &str = r#"{"name":"pack_detection_listening_processes","hostIdentifier":"web-07","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":1741943561,"epoch":0,"counter":1,"numerics":false,"hostname":"web-07","host_uuid":"8F3A2C1E-5B7D-4E90-A1C3-6D2F0B9E4A17","columns":{"name":"nc","pid":"48213","port":"4444"},"action":"added"}"#;

#[test]
fn classify_renderings_of_one_row() {
    let config = shipped();
    let cases = [
        (EVENT, "osquery:differential"),
        (EVENT_NUMERICS, "osquery:differential"),
        (KINESIS_EVENT, "osquery:differential"),
        (EVENT_2X, "osquery:differential"),
        (BATCH, "osquery:batch"),
        (KINESIS_BATCH, "osquery:batch"),
        (SNAPSHOT, "osquery:snapshot"),
        (SNAPSHOT_EVENT, "osquery:differential"),
        (KINESIS_SNAPSHOT, "osquery:snapshot"),
    ];
    for (line, expected) in cases {
        assert_eq!(log_type(&config, line).as_deref(), Ok(expected), "{line}");
    }
}

#[test]
fn classify_strict_accepts_declared_keys() {
    let config = strict();
    let classified = config.classify(&kinesis(), EVENT.as_bytes()).unwrap();
    assert_eq!(classified.log_type(), "osquery:differential");
    assert_eq!(classified.extra_keys, 0);
    assert_eq!(
        log_type(&config, KINESIS_EVENT).as_deref(),
        Ok("osquery:differential")
    );
    assert_eq!(
        log_type(&config, EVENT_2X).as_deref(),
        Ok("osquery:differential")
    );
}

#[test]
fn classify_lenient_counts_top_level_decorations() {
    let config = shipped();
    let classified = config
        .classify(&kinesis(), EVENT_TOP_LEVEL_DECORATIONS.as_bytes())
        .unwrap();
    assert_eq!(classified.log_type(), "osquery:differential");
    assert_eq!(classified.extra_keys, 2);
}

#[test]
fn classify_strict_rejects_top_level_decorations() {
    let config = strict();
    let error = log_type(&config, EVENT_TOP_LEVEL_DECORATIONS).unwrap_err();
    assert_eq!(
        error,
        "matched no log type; closest is osquery:differential (unexpected: host_uuid, hostname)"
    );
}

#[test]
fn classify_lenient_counts_nested_extra_keys() {
    let config = shipped();
    let line = BATCH.replace(r#""removed":[]"#, r#""removed":[],"changed":[]"#);
    let classified = config.classify(&kinesis(), line.as_bytes()).unwrap();
    assert_eq!(classified.log_type(), "osquery:batch");
    assert_eq!(classified.extra_keys, 1);
}

#[test]
fn classify_strict_mode_from_settings_file() {
    let dir = common::osquery_conf(r#"{"kinesis": {"edgealert": {"logs": ["osquery"]}}}"#);
    std::fs::write(
        dir.path().join("edgealert.json"),
        r#"{"classifier": {"mode": "strict"}}"#,
    )
    .unwrap();
    let config = Config::load(dir.path()).unwrap();
    assert_eq!(config.settings.classifier.mode, ClassifyMode::Strict);
    assert!(log_type(&config, EVENT_TOP_LEVEL_DECORATIONS).is_err());
    assert!(log_type(&config, EVENT).is_ok());
}

#[test]
fn classify_unix_time_number_or_string() {
    let config = shipped();
    let as_string = EVENT.replace("1741943561", "\"1741943561\"");
    let as_whole_real = EVENT.replace("1741943561", "1741943561.0");
    let as_fraction = EVENT.replace("1741943561", "\"1741943561.5\"");
    let expected = Ok("osquery:differential");
    assert_eq!(log_type(&config, EVENT).as_deref(), expected);
    assert_eq!(log_type(&config, &as_string).as_deref(), expected);
    assert_eq!(log_type(&config, &as_whole_real).as_deref(), expected);
    assert!(log_type(&config, &as_fraction).is_err());
}

#[test]
fn classify_kinesis_batch_lenient_only() {
    assert_eq!(
        log_type(&shipped(), KINESIS_BATCH).as_deref(),
        Ok("osquery:batch")
    );
    assert_eq!(
        log_type(&strict(), KINESIS_BATCH).unwrap_err(),
        "matched no log type; closest is osquery:batch (mistyped: diffResults.removed (expected array, found a string))"
    );
}

#[test]
fn classify_status_records() {
    let config = shipped();
    assert_eq!(log_type(&config, STATUS).as_deref(), Ok("osquery:status"));
    assert_eq!(
        log_type(&config, KINESIS_STATUS).as_deref(),
        Ok("osquery:status")
    );
    assert_eq!(
        log_type(&strict(), KINESIS_STATUS).as_deref(),
        Ok("osquery:status")
    );
}

#[test]
fn classify_status_raises_no_alert() {
    let config = shipped();
    let classified = config.classify(&kinesis(), STATUS.as_bytes()).unwrap();
    let events = classified.events();
    assert_eq!(events.len(), 1);
    assert!(events[0].columns.is_none());
    assert!(config.rules.evaluate(&events[0]).is_empty());
}

#[test]
fn classify_error_names_closest_schema() {
    let config = shipped();
    let line = r#"{"name":"q","hostIdentifier":"h","calendarTime":"c","unixTime":"soon","epoch":0,"counter":1,"columns":{"pid":"1"}}"#;
    let error = config.classify(&kinesis(), line.as_bytes()).unwrap_err();
    assert_eq!(error.reason(), "no_matching_schema");
    assert_eq!(
        error.to_string(),
        "matched no log type; closest is osquery:differential (missing: action; mistyped: unixTime (expected integer, found a string))"
    );
    let ClassifyError::NoMatch { closest, mismatch } = error else {
        panic!("expected NoMatch");
    };
    assert_eq!(closest.as_deref(), Some("osquery:differential"));
    assert_eq!(mismatch.missing, ["action"]);
    assert_eq!(
        mismatch.mistyped,
        ["unixTime (expected integer, found a string)"]
    );
}

#[test]
fn classify_error_for_status_shape() {
    let config = shipped();
    let line = STATUS.replace(r#""line":83"#, r#""line":"eighty""#);
    let error = config.classify(&kinesis(), line.as_bytes()).unwrap_err();
    let ClassifyError::NoMatch { closest, mismatch } = error else {
        panic!("expected NoMatch");
    };
    assert_eq!(closest.as_deref(), Some("osquery:status"));
    assert_eq!(
        mismatch.mistyped,
        ["line (expected integer, found a string)"]
    );
    assert!(mismatch.missing.is_empty());
}

#[test]
fn classify_rejects_unknown_source_and_non_objects() {
    let config = shipped();
    let unknown = config
        .classify(&Source::new("file", "nope"), EVENT.as_bytes())
        .unwrap_err();
    assert_eq!(unknown.reason(), "unknown_source");
    assert_eq!(
        unknown.to_string(),
        "source file:nope is not declared in sources.json"
    );
    let array = config.classify(&kinesis(), b"[1,2]").unwrap_err();
    assert_eq!(
        array.to_string(),
        "JSON document is an array, expected an object"
    );
    let empty = config.classify(&kinesis(), b" \r\n").unwrap_err();
    assert_eq!(empty.reason(), "empty_line");
    let truncated = config
        .classify(&kinesis(), &EVENT.as_bytes()[..100])
        .unwrap_err();
    assert_eq!(truncated.reason(), "invalid_json");
}

#[test]
fn classify_both_shapes_prefers_priority() {
    let config = shipped();
    let line = EVENT.replace(r#""action":"added""#, r#""action":"added","snapshot":[]"#);
    assert_eq!(
        log_type(&config, &line).as_deref(),
        Ok("osquery:differential")
    );
}

/// Loads a directory whose schemas all accept `{"x": "..."}` and differ in priority.
fn priority_config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("schemas")).unwrap();
    let schemas = r#"{
        "t:low": {"parser": "json", "schema": {"x": "string"}, "configuration": {"priority": 5}},
        "t:high": {"parser": "json", "schema": {"x": "string"}, "configuration": {"priority": 2}},
        "t:negative": {"parser": "json", "schema": {"x": "string", "y": "string"}, "configuration": {"priority": -1}},
        "t:bbb": {"parser": "json", "schema": {"x": "string"}},
        "t:aaa": {"parser": "json", "schema": {"x": "string"}}
    }"#;
    std::fs::write(dir.path().join("schemas/t.json"), schemas).unwrap();
    let sources = r#"{
        "file": {"all": {"logs": ["t"]}, "listed": {"logs": ["t:low", "t:aaa", "t:high"]}},
        "sns": {"unprioritised": {"logs": ["t:bbb", "t:aaa"]}, "mixed": {"logs": ["t:aaa", "t:low"]}}
    }"#;
    std::fs::write(dir.path().join("sources.json"), sources).unwrap();
    let config = Config::load(dir.path()).unwrap();
    (dir, config)
}

#[test]
fn classify_priority_order() {
    let (_dir, config) = priority_config();
    let classify = |service: &str, resource: &str, line: &str| {
        config
            .classify(&Source::new(service, resource), line.as_bytes())
            .map(|classified| classified.log_type().to_owned())
            .unwrap()
    };
    assert_eq!(classify("file", "all", r#"{"x":"1"}"#), "t:high");
    assert_eq!(
        classify("file", "all", r#"{"x":"1","y":"2"}"#),
        "t:negative"
    );
    assert_eq!(classify("file", "listed", r#"{"x":"1"}"#), "t:high");
    assert_eq!(classify("sns", "unprioritised", r#"{"x":"1"}"#), "t:aaa");
    assert_eq!(classify("sns", "mixed", r#"{"x":"1"}"#), "t:low");
}

#[test]
fn classify_invalid_utf8_line() {
    let config = shipped();
    let line = EVENT
        .replace("web-07\",\"calendarTime", "caf\u{1}\",\"calendarTime")
        .replace("nc -lvnp 4444", "nc -lvnp 4444 \u{2}");
    let mut bytes = line.into_bytes();
    for byte in bytes.iter_mut() {
        match *byte {
            1 => *byte = 0xe9,
            2 => *byte = 0xff,
            _ => {}
        }
    }
    let classified = config.classify(&kinesis(), &bytes).unwrap();
    assert!(classified.record.lossy);
    assert_eq!(classified.log_type(), "osquery:differential");
    assert_eq!(classified.record.value["hostIdentifier"], "caf\u{fffd}");

    let first = netcat_alert_ids(&config, &bytes);
    let second = netcat_alert_ids(&config, &bytes);
    assert_eq!(first.len(), 1);
    assert_eq!(first, second);
    let decoded = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(netcat_alert_ids(&config, decoded.as_bytes()), first);
}

#[test]
fn alert_id_equal_across_result_renderings() {
    let config = shipped();
    let expected = netcat_alert_ids(&config, EVENT.as_bytes());
    assert_eq!(expected.len(), 1);
    assert_eq!(expected[0].len(), 32);
    for line in [
        EVENT_NUMERICS,
        BATCH,
        KINESIS_BATCH,
        KINESIS_EVENT,
        EVENT_2X,
    ] {
        assert_eq!(
            netcat_alert_ids(&config, line.as_bytes()),
            expected,
            "{line}"
        );
    }
    let decorated = netcat_alert_ids(&config, EVENT_TOP_LEVEL_DECORATIONS.as_bytes());
    assert_eq!(decorated.len(), 1);
}

#[test]
fn alert_id_equal_across_snapshot_renderings() {
    let config = shipped();
    let expected = netcat_alert_ids(&config, SNAPSHOT.as_bytes());
    assert_eq!(expected.len(), 1);
    for line in [SNAPSHOT_EVENT, KINESIS_SNAPSHOT] {
        assert_eq!(
            netcat_alert_ids(&config, line.as_bytes()),
            expected,
            "{line}"
        );
    }
    assert_ne!(expected, netcat_alert_ids(&config, EVENT.as_bytes()));
}

#[test]
fn alert_id_differs_for_rule_and_row() {
    let config = shipped();
    let classified = config.classify(&kinesis(), EVENT.as_bytes()).unwrap();
    let event = classified.events()[0];
    let base = alert_id("netcat_listener", &event);
    assert_ne!(base, alert_id("netcat_command_execution", &event));

    let other_pid = EVENT.replace("48213", "48214");
    let other_host = EVENT.replace(
        r#""hostIdentifier":"web-07""#,
        r#""hostIdentifier":"web-08""#,
    );
    let other_counter = EVENT.replace(r#""counter":1"#, r#""counter":2"#);
    for line in [other_pid, other_host, other_counter] {
        let ids = netcat_alert_ids(&config, line.as_bytes());
        assert_eq!(ids.len(), 1, "{line}");
        assert_ne!(ids[0], base, "{line}");
    }
}

#[test]
fn alert_id_differs_for_removed_and_added() {
    let config = shipped();
    let line = BATCH.replace(
        r#""removed":[]"#,
        &format!(
            r#""removed":[{}]"#,
            &BATCH[BATCH.find(r#"{"address""#).unwrap()..BATCH.find("]}").unwrap()]
        ),
    );
    let classified = config.classify(&kinesis(), line.as_bytes()).unwrap();
    let events = classified.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].columns, events[1].columns);
    assert_ne!(
        alert_id("netcat_listener", &events[0]),
        alert_id("netcat_listener", &events[1])
    );
}

#[test]
fn alert_id_ignores_calendar_time_and_decorations() {
    let config = shipped();
    let expected = netcat_alert_ids(&config, EVENT.as_bytes());
    let changed = EVENT
        .replace(
            "Fri Mar 14 09:12:41 2025 UTC",
            "Fri Mar 14 09:12:42 2025 UTC",
        )
        .replace(r#"{"hostname":"web-07"}"#, r#"{"hostname":"renamed"}"#);
    assert_eq!(netcat_alert_ids(&config, changed.as_bytes()), expected);
}
