//! Kinesis Data Streams for the integration tests: kinesalite, an in-memory emulator, on
//! 127.0.0.1, an SDK client for it, helpers to create and read streams, and [`FaultProxy`],
//! which injects the failures of the real service between a producer and the emulator.
//!
//! `scripts/test` installs kinesalite and passes the path of its wrapper script in
//! `EDGEALERT_KINESALITE_JS`. Tests that need it are marked `#[ignore]`, so a plain
//! `cargo test` skips them.
//!
//! NOTE: kinesalite 3.3.3 rejects more than 500 entries, data over 1 MiB and partition keys
//! over 256 characters with `ValidationException`, as the service does. It accepts a
//! `PutRecords` request over the service's 5 MiB and rejects only bodies over 7 MiB, with a
//! bare 413. It never throttles, has no per-shard throughput or `GetRecords` rate limits,
//! and never fails single entries. Use [`FaultProxy`] for those.

// Explicit paths, because the Lambda's tests load this file with #[path] too.
#[path = "kinesis/http.rs"]
mod http;
#[path = "kinesis/proxy.rs"]
mod proxy;

// A test crate that uses none of the proxy would otherwise warn about these.
#[allow(unused_imports)]
pub use proxy::{FaultProxy, Mode, ProxyStats, failure_picks};

use std::cmp::Ordering;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};

/// Maximum wait for kinesalite to print its port. It started in 0.2 to 0.3 s on the 2-core
/// development machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A kinesalite process listening on 127.0.0.1, killed on drop.
pub struct Emulator {
    child: Child,
    /// Held open because the wrapper exits when its standard input closes, which also ends
    /// it when the test process dies without running `Drop`.
    _stdin: ChildStdin,
    port: u16,
    startup: Duration,
}

impl Emulator {
    /// Starts kinesalite on a free port with the wrapper script named by
    /// `EDGEALERT_KINESALITE_JS`, and returns once it accepts connections.
    pub fn start() -> Emulator {
        let wrapper = std::env::var("EDGEALERT_KINESALITE_JS").unwrap_or_else(|_| {
            panic!(
                "EDGEALERT_KINESALITE_JS is not set: run scripts/test, or set it to the path \
                 that install_kinesalite from scripts/lib/kinesalite.sh prints"
            )
        });
        let started = Instant::now();
        let mut child = Command::new("node")
            .arg(&wrapper)
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("failed to run node {wrapper}: {error}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();

        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(STARTUP_TIMEOUT).unwrap_or_default();
        let port = line
            .trim()
            .strip_prefix("listening 127.0.0.1:")
            .and_then(|port| port.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kinesalite wrapper {wrapper} did not print `listening 127.0.0.1:<port>` within \
                 {STARTUP_TIMEOUT:?} (printed {line:?}); its error output is above"
            );
        };
        Emulator {
            child,
            _stdin: stdin,
            port,
            startup: started.elapsed(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns `http://127.0.0.1:<port>`, the endpoint URL to give the SDK.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns the time from spawning node until kinesalite accepted connections.
    pub fn startup(&self) -> Duration {
        self.startup
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds a Kinesis client for `endpoint` in us-east-1 with fixed fake credentials, plain
/// HTTP and the SDK's default retry and timeout settings.
pub async fn client(endpoint: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let credentials = Credentials::new(
        "AKIDEDGEALERTTEST",
        "edgealert-test-secret",
        None,
        None,
        "edgealert-tests",
    );
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .http_client(http)
        .build();
    Client::from_conf(config)
}

/// Creates stream `name` with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!("CreateStream {name} failed: {}", DisplayErrorContext(error))
        });

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "DescribeStreamSummary {name} failed: {}",
                    DisplayErrorContext(error)
                )
            });
        let status = output
            .stream_description_summary()
            .map(|summary| summary.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stream {name} is not ACTIVE after 30 s: status {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One record read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub shard_id: String,
    pub partition_key: String,
    pub sequence_number: String,
    pub data: Vec<u8>,
}

/// Reads every record of every shard of `stream` from TRIM_HORIZON. Returns them grouped by
/// shard, in shard id order, and ordered by sequence number within each shard.
pub async fn read_all(client: &Client, stream: &str) -> Vec<StreamRecord> {
    let mut records = Vec::new();
    for shard_id in shard_ids(client, stream).await {
        let mut shard_records = read_shard(client, stream, &shard_id).await;
        shard_records
            .sort_by(|a, b| compare_sequence_numbers(&a.sequence_number, &b.sequence_number));
        records.extend(shard_records);
    }
    records
}

/// Compares two sequence numbers, decimal integers of up to 128 digits.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

async fn shard_ids(client: &Client, stream: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // ListShards rejects StreamName together with NextToken.
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let output = request.send().await.unwrap_or_else(|error| {
            panic!("ListShards {stream} failed: {}", DisplayErrorContext(error))
        });
        ids.extend(
            output
                .shards()
                .iter()
                .map(|shard| shard.shard_id().to_owned()),
        );
        next_token = output.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    ids.sort();
    ids
}

async fn read_shard(client: &Client, stream: &str, shard_id: &str) -> Vec<StreamRecord> {
    let output = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "GetShardIterator {stream}/{shard_id} failed: {}",
                DisplayErrorContext(error)
            )
        });
    let mut iterator = output.shard_iterator().map(str::to_owned);

    let mut records = Vec::new();
    // Bounded so that a shard that never catches up fails the test instead of hanging it.
    for _ in 0..10_000 {
        let Some(current) = iterator else {
            // A closed shard that has been read to its end.
            return records;
        };
        let output = client
            .get_records()
            .shard_iterator(current)
            .send()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "GetRecords {stream}/{shard_id} failed: {}",
                    DisplayErrorContext(error)
                )
            });
        records.extend(output.records().iter().map(|record| {
            StreamRecord {
                shard_id: shard_id.to_owned(),
                partition_key: record
                    .partition_key()
                    .unwrap_or_else(|| {
                        panic!("GetRecords {stream}/{shard_id}: record without PartitionKey")
                    })
                    .to_owned(),
                sequence_number: record.sequence_number().to_owned(),
                data: record.data().as_ref().to_vec(),
            }
        }));
        // An empty read is not the end on the real service unless the reader has caught up.
        if output.records().is_empty() && output.millis_behind_latest() == Some(0) {
            return records;
        }
        iterator = output.next_shard_iterator().map(str::to_owned);
    }
    panic!("GetRecords {stream}/{shard_id} did not catch up after 10,000 reads");
}
