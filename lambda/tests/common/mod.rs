//! Helpers shared by the Lambda's integration tests: Kinesis events built the way Lambda
//! delivers them, records in every format, and test configurations.

// Each test crate uses only some of the helpers.
#![allow(dead_code)]

pub mod agent;
// The agent's test helpers, shared rather than copied.
#[path = "../../../agent/tests/common/kinesis.rs"]
pub mod kinesis;
#[path = "../../../agent/tests/common/matrix.rs"]
pub mod matrix;
pub mod runtime_api;
#[path = "../../../agent/tests/common/webhook.rs"]
pub mod webhook;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use rules_core::kinesis::{Codec, Entry, EntryKind, FLAG_NOTIFIED, FileRef, PackedWriter};
use serde_json::{Value, json};

/// ARN of the stream that `sources.json` declares as `kinesis:edgealert`.
pub const STREAM_ARN: &str = "arn:aws:kinesis:eu-west-1:123456789012:stream/edgealert";

/// Returns the repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Returns line `number` (1-based) of `tests/data/osquery/<file>`.
pub fn fixture_line(file: &str, number: usize) -> Vec<u8> {
    let bytes = std::fs::read(repo().join("tests/data/osquery").join(file)).unwrap();
    bytes
        .split(|&byte| byte == b'\n')
        .nth(number - 1)
        .unwrap()
        .to_vec()
}

/// Returns a netcat listener row for which both `netcat_listener` and `netcat_command_execution`
/// fire with the shipped rules.
pub fn netcat_line() -> Vec<u8> {
    fixture_line("results_event.log", 15)
}

/// Returns a netcat process row for which only `netcat_command_execution` fires.
pub fn netcat_process_line() -> Vec<u8> {
    fixture_line("results_event.log", 19)
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Copies the shipped configuration into a temporary directory and sets the tier of each
/// named rule.
pub fn conf_with_tiers(tiers: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("conf"), dir.path());
    for (rule, tier) in tiers {
        let path = dir.path().join("rules").join(format!("{rule}.json"));
        let mut value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        value["tier"] = json!(tier);
        std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    }
    dir
}

/// Builds a packed record of `lines`, each entry with the notified flag when `notified`.
pub fn packed(lines: &[Vec<u8>], codec: Codec, notified: bool) -> Vec<u8> {
    let mut writer = PackedWriter::new("host-web-07", "0.1.0");
    let file = writer.file_index(&FileRef {
        path: "/var/log/osquery/osqueryd.results.log".into(),
        id: "2049:1312".into(),
    });
    let mut offset = 0u64;
    for line in lines {
        writer
            .push(&Entry {
                kind: EntryKind::Line,
                flags: if notified { FLAG_NOTIFIED } else { 0 },
                file,
                offset,
                row: 0,
                data: Cow::Borrowed(line),
            })
            .unwrap();
        offset += line.len() as u64 + 1;
    }
    writer.finish(codec, 3)
}

/// Rewrites an osquery line the way osquery's own `aws_kinesis` logger sends it: every
/// scalar a string, empty arrays as `""`, `/` escaped as `\/`, and `"log_type":"result"`
/// appended.
pub fn osquery_plugin_record(line: &[u8]) -> Vec<u8> {
    fn stringify(value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| (key, stringify(value)))
                    .collect(),
            ),
            Value::Array(items) if items.is_empty() => Value::String(String::new()),
            Value::Array(items) => Value::Array(items.into_iter().map(stringify).collect()),
            Value::Number(number) => Value::String(number.to_string()),
            Value::Bool(flag) => Value::String(flag.to_string()),
            other => other,
        }
    }
    let value: Value = serde_json::from_slice(line).unwrap();
    let text = serde_json::to_string(&stringify(value)).unwrap();
    let body = text.strip_suffix('}').unwrap().replace('/', "\\/");
    format!("{body},\"log_type\":\"result\"}}").into_bytes()
}

/// Builds a Kinesis event as Lambda delivers it: one record per `(sequence number, data)`.
pub fn kinesis_event(stream_arn: &str, records: &[(String, Vec<u8>)]) -> KinesisEvent {
    serde_json::from_value(kinesis_event_json(stream_arn, records)).unwrap()
}

/// Builds the JSON document of [`kinesis_event`].
pub fn kinesis_event_json(stream_arn: &str, records: &[(String, Vec<u8>)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(sequence_number, data)| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "web-07.corp.example",
                    "sequenceNumber": sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": 1741950734.25
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{sequence_number}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/edgealert-lambda",
                "awsRegion": "eu-west-1",
                "eventSourceARN": stream_arn
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Returns sequence numbers shaped like Kinesis ones, increasing from `first`.
pub fn sequence_number(index: usize) -> String {
    format!("49590338271490256608559692538361571095921575989136{index:06}")
}

/// Pairs each record with a sequence number.
pub fn numbered(records: Vec<Vec<u8>>) -> Vec<(String, Vec<u8>)> {
    records
        .into_iter()
        .enumerate()
        .map(|(index, data)| (sequence_number(index), data))
        .collect()
}
