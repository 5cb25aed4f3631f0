//! Rows per second through the Lambda's handler for a full batch of packed records.
//!
//! The batch is 100 zstd-packed records (the template's batch size), each closed at the
//! agent's default body size of 256 KiB: 25 MiB of lines, 0.6 MB once compressed. Rows are
//! differential process and socket rows from 40 hosts; 1 % are netcat listeners that fire
//! two rules. Every entry carries the agent's notified flag, as from a fleet of working
//! agents, so the Lambda audits the alerts and sends nothing. The measured time is
//! `Handler::handle` on an event whose base64 was already decoded by the event's
//! deserializer. Run with `cargo bench -p edgealert-lambda --bench handler`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edgealert_lambda::Handler;
use edgealert_lambda::notify::Notifier;
use edgealert_lambda::settings::Delivery;
use rules_core::Config;
use rules_core::kinesis::{Codec, Entry, EntryKind, FLAG_NOTIFIED, FileRef, PackedWriter};

const RECORDS: usize = 100;
const BODY_BYTES: usize = 256 * 1024;

/// Builds differential row `index`. Every hundredth row is a netcat listener.
fn line(index: usize) -> String {
    let host = format!("web-{:02}.corp.example", index % 40);
    let pid = 1000 + index;
    let (name, cmdline, port) = if index % 100 == 7 {
        ("nc", "nc -lvnp 4444".to_owned(), 4444)
    } else {
        ("nginx", format!("nginx: worker process {index}"), 8080)
    };
    format!(
        r#"{{"name":"pack_detection_listening_processes","hostIdentifier":"{host}","calendarTime":"Fri Mar 14 09:12:41 2025 UTC","unixTime":{},"epoch":0,"counter":{},"numerics":false,"decorations":{{"host_uuid":"8F3A2C1E-5B7D-4E90-A1C3-6D2F0B9E4A17","hostname":"{host}","username":"deploy"}},"columns":{{"name":"{name}","path":"/usr/bin/{name}","cmdline":"{cmdline}","pid":"{pid}","uid":"33","address":"0.0.0.0","port":"{port}","protocol":"6","family":"2"}},"action":"added"}}"#,
        1741943561 + index,
        1 + index % 50
    )
}

/// Builds the event and returns it with the number of rows it holds.
fn batch() -> (KinesisEvent, u64) {
    let mut records = Vec::new();
    let mut index = 0usize;
    let mut data_bytes = 0usize;
    for record in 0..RECORDS {
        let mut writer = PackedWriter::new(&format!("agent-{record}"), "0.1.0");
        let file = writer.file_index(&FileRef {
            path: "/var/log/osquery/osqueryd.results.log".into(),
            id: "2049:1312".into(),
        });
        let mut offset = 0u64;
        while writer.body_len() < BODY_BYTES {
            let text = line(index);
            writer
                .push(&Entry {
                    kind: EntryKind::Line,
                    flags: FLAG_NOTIFIED,
                    file,
                    offset,
                    row: 0,
                    data: Cow::Borrowed(text.as_bytes()),
                })
                .unwrap();
            offset += text.len() as u64 + 1;
            index += 1;
        }
        let data = writer.finish(Codec::Zstd, 3);
        data_bytes += data.len();
        records.push(serde_json::json!({
            "kinesis": {
                "partitionKey": format!("agent-{record}"),
                "sequenceNumber": format!("4959033827149025660855969253836157109592157598913{record:07}"),
                "data": base64::engine::general_purpose::STANDARD.encode(&data),
                "approximateArrivalTimestamp": 1741950734.25
            },
            "eventSource": "aws:kinesis",
            "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/edgealert"
        }));
    }
    let event = serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    eprintln!("batch: {RECORDS} records, {index} rows, {data_bytes} bytes of record data");
    (event, index as u64)
}

fn handler_throughput(c: &mut Criterion) {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let config = Arc::new(Config::load(&conf).unwrap());
    let notifier = Notifier::new(BTreeMap::new(), Delivery::default()).unwrap();
    let handler = Handler::new(config, notifier);
    let (event, rows) = batch();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("lambda_handler");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(rows));
    group.bench_function("full_batch_of_packed_records", |bench| {
        bench.iter(|| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
            let report = runtime.block_on(handler.handle(&event, deadline));
            assert_eq!(report.rows, rows);
        })
    });
    group.finish();
}

criterion_group!(benches, handler_throughput);
criterion_main!(benches);
