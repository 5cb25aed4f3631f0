//! Tests of the Kinesis test infrastructure in `common::kinesis`: kinesalite and the fault
//! proxy, driven by the real SDK client. `scripts/test` runs them with `--ignored`:
//!
//! ```text
//! EDGEALERT_KINESALITE_JS=... cargo test -p edgealert --test kinesis_infra -- --ignored
//! ```

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use common::kinesis::{
    self, Emulator, FaultProxy, Mode, StreamRecord, client, create_stream, failure_picks, read_all,
};

const STREAM: &str = "edgealert-test";

/// Returns `count` entries whose data contains the index and a few bytes that are not UTF-8,
/// spread over seven partition keys.
fn entries(count: usize) -> Vec<PutRecordsRequestEntry> {
    (0..count)
        .map(|index| {
            let mut data = format!("record-{index:04}").into_bytes();
            data.extend_from_slice(&[0x00, 0xff, index as u8]);
            PutRecordsRequestEntry::builder()
                .partition_key(format!("host-{}", index % 7))
                .data(Blob::new(data))
                .build()
                .unwrap()
        })
        .collect()
}

async fn put(
    client: &Client,
    entries: Vec<PutRecordsRequestEntry>,
) -> Result<PutRecordsOutput, SdkError<PutRecordsError>> {
    client
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries))
        .send()
        .await
}

/// Sends one PutRecords attempt with the given timeout, without the SDK's retries.
async fn put_once(
    client: &Client,
    entries: Vec<PutRecordsRequestEntry>,
    timeout: Duration,
) -> Result<PutRecordsOutput, SdkError<PutRecordsError>> {
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(timeout)
        .build();
    client
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries))
        .customize()
        .config_override(
            aws_sdk_kinesis::Config::builder()
                .retry_config(RetryConfig::disabled())
                .timeout_config(timeouts),
        )
        .send()
        .await
}

/// Starts kinesalite, a proxy in front of it, a client of the proxy, and the test stream.
async fn setup(shards: i32) -> (Emulator, FaultProxy, Client) {
    let emulator = Emulator::start();
    let proxy = FaultProxy::start(&emulator.endpoint());
    let client = client(&proxy.endpoint()).await;
    create_stream(&client, STREAM, shards).await;
    (emulator, proxy, client)
}

/// Returns the data of `records` per shard, in stream order.
fn data_by_shard(records: &[StreamRecord]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut shards: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for record in records {
        shards
            .entry(record.shard_id.clone())
            .or_default()
            .push(record.data.clone());
    }
    shards
}

/// Returns, per shard, the data of the accepted entries in the order they were put, with
/// the shard and sequence number the PutRecords response gave each.
fn accepted_by_shard(
    sent: &[PutRecordsRequestEntry],
    output: &PutRecordsOutput,
) -> BTreeMap<String, Vec<(Vec<u8>, String)>> {
    let mut shards: BTreeMap<String, Vec<(Vec<u8>, String)>> = BTreeMap::new();
    for (entry, result) in sent.iter().zip(output.records()) {
        if result.error_code().is_some() {
            continue;
        }
        shards
            .entry(result.shard_id().unwrap().to_owned())
            .or_default()
            .push((
                entry.data().as_ref().to_vec(),
                result.sequence_number().unwrap().to_owned(),
            ));
    }
    shards
}

fn sequence_numbers_by_shard(records: &[StreamRecord]) -> BTreeMap<String, Vec<String>> {
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records {
        shards
            .entry(record.shard_id.clone())
            .or_default()
            .push(record.sequence_number.clone());
    }
    shards
}

/// Checks that `records`, read back, are exactly the accepted entries of `sent`, in put
/// order per shard and with the sequence numbers of the PutRecords response.
fn assert_read_back(
    records: &[StreamRecord],
    sent: &[PutRecordsRequestEntry],
    output: &PutRecordsOutput,
) {
    let expected = accepted_by_shard(sent, output);
    let expected_data: BTreeMap<_, Vec<Vec<u8>>> = expected
        .iter()
        .map(|(shard, entries)| (shard.clone(), entries.iter().map(|e| e.0.clone()).collect()))
        .collect();
    let expected_sequence_numbers: BTreeMap<_, Vec<String>> = expected
        .iter()
        .map(|(shard, entries)| (shard.clone(), entries.iter().map(|e| e.1.clone()).collect()))
        .collect();
    assert_eq!(data_by_shard(records), expected_data);
    assert_eq!(
        sequence_numbers_by_shard(records),
        expected_sequence_numbers
    );
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn pass_mode_round_trip() {
    let (emulator, proxy, client) = setup(2).await;
    let sent = entries(100);

    let output = put(&client, sent.clone()).await.unwrap();

    assert_eq!(output.failed_record_count(), Some(0));
    assert_eq!(output.records().len(), 100);
    let records = read_all(&client, STREAM).await;
    assert_eq!(records.len(), 100);
    assert_read_back(&records, &sent, &output);
    let shards = data_by_shard(&records);
    assert_eq!(
        shards.len(),
        2,
        "seven partition keys should reach both shards"
    );
    for (record, index) in records.iter().zip(0..) {
        assert!(
            record.partition_key.starts_with("host-"),
            "record {index}: partition key {:?}",
            record.partition_key
        );
    }
    let stats = proxy.stats();
    assert_eq!(stats.requests("PutRecords"), 1);
    assert_eq!(stats.entries_forwarded, 100);
    assert_eq!(stats.entries_failed, 0);
    eprintln!("kinesalite started in {:?}", emulator.startup());
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn read_all_matches_direct_emulator_reads() {
    let (emulator, _proxy, client) = setup(3).await;
    put(&client, entries(30)).await.unwrap();

    let direct = kinesis::client(&emulator.endpoint()).await;

    assert_eq!(
        read_all(&direct, STREAM).await,
        read_all(&client, STREAM).await
    );
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn partial_failure_fails_seeded_entries() {
    let (_emulator, proxy, client) = setup(2).await;
    proxy.set_mode(Mode::PartialFailure {
        fraction: 0.3,
        seed: 42,
    });
    let sent = entries(100);

    let output = put(&client, sent.clone()).await.unwrap();

    let picks = failure_picks(100, 0.3, 42);
    assert_eq!(picks.len(), 30);
    assert_eq!(output.failed_record_count(), Some(30));
    let failed: Vec<usize> = output
        .records()
        .iter()
        .enumerate()
        .filter(|(_, result)| result.error_code().is_some())
        .map(|(index, _)| index)
        .collect();
    assert_eq!(failed, picks);
    for index in &picks {
        let result = &output.records()[*index];
        assert!(result.sequence_number().is_none(), "entry {index}");
        assert!(result.error_message().is_some(), "entry {index}");
    }
    let codes: Vec<&str> = picks
        .iter()
        .map(|index| output.records()[*index].error_code().unwrap())
        .collect();
    assert_eq!(codes[0], "ProvisionedThroughputExceededException");
    assert_eq!(codes[1], "InternalFailure");
    assert!(codes.iter().all(
        |code| *code == "ProvisionedThroughputExceededException" || *code == "InternalFailure"
    ));

    let records = read_all(&client, STREAM).await;
    assert_eq!(records.len(), 70);
    assert_read_back(&records, &sent, &output);

    let stats = proxy.stats();
    assert_eq!(stats.entries_forwarded, 70);
    assert_eq!(stats.entries_failed, 30);
    assert_eq!(stats.failed_indexes, vec![picks]);
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn partial_failure_of_all_entries_skips_emulator() {
    let (_emulator, proxy, client) = setup(1).await;
    proxy.set_mode(Mode::PartialFailure {
        fraction: 1.0,
        seed: 1,
    });

    let output = put(&client, entries(5)).await.unwrap();

    assert_eq!(output.failed_record_count(), Some(5));
    let codes: Vec<Option<&str>> = output.records().iter().map(|r| r.error_code()).collect();
    assert_eq!(
        codes,
        [
            Some("InternalFailure"),
            Some("ProvisionedThroughputExceededException"),
            Some("InternalFailure"),
            Some("ProvisionedThroughputExceededException"),
            Some("InternalFailure"),
        ]
    );
    assert!(read_all(&client, STREAM).await.is_empty());
    let stats = proxy.stats();
    assert_eq!(stats.entries_forwarded, 0);
    assert_eq!(stats.entries_failed, 5);
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn partial_failure_forwards_invalid_requests() {
    let (_emulator, proxy, client) = setup(1).await;
    proxy.set_mode(Mode::PartialFailure {
        fraction: 0.5,
        seed: 3,
    });
    let oversized = PutRecordsRequestEntry::builder()
        .partition_key("host-0")
        .data(Blob::new(vec![b'x'; (1 << 20) + 1]))
        .build()
        .unwrap();
    let mut with_oversized = entries(3);
    with_oversized.push(oversized);

    for (case, sent) in [
        ("501 entries", entries(501)),
        ("1 MiB + 1 byte", with_oversized),
    ] {
        let result = put_once(&client, sent, Duration::from_secs(10)).await;

        let error = match result {
            Ok(output) => panic!(
                "{case}: accepted, with {:?} failed entries",
                output.failed_record_count()
            ),
            Err(error) => error.into_service_error(),
        };
        assert_eq!(error.code(), Some("ValidationException"), "{case}");
    }
    assert!(read_all(&client, STREAM).await.is_empty());
    let stats = proxy.stats();
    assert_eq!(stats.entries_forwarded, 505);
    assert_eq!(stats.entries_failed, 0);
}

#[test]
fn failure_picks_are_deterministic() {
    assert_eq!(failure_picks(100, 0.3, 7), failure_picks(100, 0.3, 7));
    assert_ne!(failure_picks(100, 0.3, 7), failure_picks(100, 0.3, 8));
    assert_eq!(failure_picks(10, 0.0, 7), Vec::<usize>::new());
    assert_eq!(failure_picks(10, 1.0, 7), (0..10).collect::<Vec<_>>());
    assert_eq!(failure_picks(10, 0.25, 7).len(), 3, "2.5 rounds to 3");
    assert_eq!(failure_picks(0, 0.5, 7), Vec::<usize>::new());
    let picks = failure_picks(500, 0.5, 3);
    assert!(picks.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(picks.iter().all(|index| *index < 500));
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn throttle_surfaces_as_throughput_exceeded() {
    let (_emulator, proxy, client) = setup(1).await;
    proxy.set_mode(Mode::Throttle);

    let error = put_once(&client, entries(3), Duration::from_secs(5))
        .await
        .unwrap_err();

    assert_eq!(error.raw_response().unwrap().status().as_u16(), 400);
    let error = error.into_service_error();
    assert!(
        error.is_provisioned_throughput_exceeded_exception(),
        "unexpected error {error:?}"
    );
    assert_eq!(error.message(), Some("Rate exceeded"));
    assert!(read_all(&client, STREAM).await.is_empty());
    let stats = proxy.stats();
    assert_eq!(stats.requests("PutRecords"), 1);
    assert_eq!(stats.entries_forwarded, 0);
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn sdk_retries_scripted_throttle() {
    let (_emulator, proxy, client) = setup(1).await;
    proxy.script([(Mode::Throttle, 1)]);

    let output = put(&client, entries(3)).await.unwrap();

    assert_eq!(output.failed_record_count(), Some(0));
    assert_eq!(proxy.stats().requests("PutRecords"), 2);
    assert_eq!(read_all(&client, STREAM).await.len(), 3);
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn server_error_surfaces_as_internal_failure() {
    let (_emulator, proxy, client) = setup(1).await;

    for status in [500, 503] {
        proxy.set_mode(Mode::ServerError(status));

        let error = put_once(&client, entries(3), Duration::from_secs(5))
            .await
            .unwrap_err();

        assert_eq!(error.raw_response().unwrap().status().as_u16(), status);
        let error = error.into_service_error();
        assert_eq!(error.code(), Some("InternalFailure"), "status {status}");
        assert_eq!(
            error.message(),
            Some("Internal service failure."),
            "status {status}"
        );
    }
    // Reads are forwarded unchanged while writes fail.
    assert!(read_all(&client, STREAM).await.is_empty());
    assert_eq!(proxy.stats().entries_forwarded, 0);
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn refuse_then_resume_same_port() {
    let (_emulator, proxy, client) = setup(1).await;
    let port = proxy.port();
    put(&client, entries(1)).await.unwrap();

    proxy.refuse();

    let connect = TcpStream::connect(("127.0.0.1", port));
    assert_eq!(
        connect.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let error = put_once(&client, entries(1), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SdkError::DispatchFailure(_)),
        "unexpected error {error:?}"
    );

    proxy.resume();

    assert_eq!(proxy.port(), port);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    put(&client, entries(2)).await.unwrap();
    assert_eq!(read_all(&client, STREAM).await.len(), 3);
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn delay_triggers_attempt_timeout() {
    let (_emulator, proxy, client) = setup(1).await;
    proxy.set_mode(Mode::Delay(Duration::from_millis(1500)));

    let error = put_once(&client, entries(1), Duration::from_millis(300))
        .await
        .unwrap_err();

    assert!(
        matches!(error, SdkError::TimeoutError(_)),
        "unexpected error {error:?}"
    );
    // The delayed write still reaches the emulator, as it may on the real service.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set_mode(Mode::Pass);
    assert_eq!(read_all(&client, STREAM).await.len(), 1);
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn hang_triggers_attempt_timeout() {
    let (_emulator, proxy, client) = setup(1).await;
    proxy.set_mode(Mode::Hang);

    let error = put_once(&client, entries(1), Duration::from_millis(300))
        .await
        .unwrap_err();

    assert!(
        matches!(error, SdkError::TimeoutError(_)),
        "unexpected error {error:?}"
    );
    proxy.set_mode(Mode::Pass);
    assert!(read_all(&client, STREAM).await.is_empty());
    assert_eq!(proxy.stats().entries_forwarded, 0);
}

#[tokio::test]
#[ignore = "needs kinesalite: scripts/test runs it"]
async fn script_steps_then_default_mode() {
    let (_emulator, proxy, client) = setup(1).await;
    proxy.set_mode(Mode::PartialFailure {
        fraction: 0.5,
        seed: 0,
    });
    proxy.script([(Mode::Pass, 2), (Mode::ServerError(500), 1)]);

    let first = put_once(&client, entries(4), Duration::from_secs(5)).await;
    let second = put_once(&client, entries(4), Duration::from_secs(5)).await;
    let third = put_once(&client, entries(4), Duration::from_secs(5)).await;
    let fourth = put_once(&client, entries(4), Duration::from_secs(5)).await;

    assert_eq!(first.unwrap().failed_record_count(), Some(0));
    assert_eq!(second.unwrap().failed_record_count(), Some(0));
    assert_eq!(
        third.unwrap_err().raw_response().unwrap().status().as_u16(),
        500
    );
    assert_eq!(fourth.unwrap().failed_record_count(), Some(2));
    assert_eq!(read_all(&client, STREAM).await.len(), 10);
    let stats = proxy.stats();
    assert_eq!(stats.requests("PutRecords"), 4);
    assert_eq!(stats.requests("CreateStream"), 1);
    assert!(stats.requests("GetRecords") >= 1);
}
