//! Regression tests of Kinesis forwarding defects found by hostile testing: shutdown with a
//! full spool or a hanging endpoint, lines between the packed size and the record limit,
//! invalid UTF-8 in large lines, damaged spool bytes, and calls whose every entry fails.
//!
//! They need kinesalite: `scripts/test` runs them with `EDGEALERT_KINESALITE_JS` set.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::{Agent, BIN};
use common::kinesis::{self, Emulator, FaultProxy, Mode};
use rules_core::kinesis::{Decoded, decode};

const STREAM: &str = "regression-records";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Fake credentials, no instance metadata and no profile files, so the SDK never contacts
/// an address outside loopback.
fn aws_env() -> [(&'static str, &'static str); 7] {
    [
        ("AWS_ACCESS_KEY_ID", "AKIAREGRESSIONTEST00"),
        ("AWS_SECRET_ACCESS_KEY", "regression-secret-never-logged"),
        ("AWS_SESSION_TOKEN", "regression-token-never-logged"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/regression"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/regression"),
    ]
}

fn agent_for(endpoint: &str, extra: serde_json::Value) -> Agent {
    let agent = Agent::new();
    agent.configure(|settings| {
        let mut kinesis = serde_json::json!({
            "stream": STREAM,
            "endpoint": endpoint,
            "region": "us-east-1",
            "linger_ms": 50,
            "request_timeout_ms": 2000,
            "max_backoff_ms": 500,
        });
        for (key, value) in extra.as_object().unwrap() {
            kinesis[key] = value.clone();
        }
        settings["kinesis"] = kinesis;
        settings["shutdown_timeout_ms"] = serde_json::json!(5000);
    });
    agent
}

/// Starts the binary on the agent's directory; the test owns the child to time its exit.
fn spawn(agent: &Agent) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(agent.path("agent.log"))
        .unwrap();
    Command::new(BIN)
        .args(["run", "--conf"])
        .arg(agent.path("conf"))
        .args(["--log-format", "text"])
        .envs(aws_env())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// Waits up to `limit` for the child to exit and returns the time it took.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn status(agent: &Agent) -> serde_json::Value {
    std::fs::read(agent.path("state/status.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn acked_offset(agent: &Agent) -> u64 {
    let bytes = std::fs::read(agent.path("state/checkpoints.json")).unwrap_or_default();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    value["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .filter_map(|file| file["offset"].as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn log_size(agent: &Agent) -> u64 {
    std::fs::metadata(agent.path("logs/osqueryd.results.log"))
        .map(|meta| meta.len())
        .unwrap_or(0)
}

fn wait_until(agent: &Agent, seconds: u64, what: &str, mut done: impl FnMut(&Agent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if done(agent) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "timed out waiting for {what}; status {}\nlog:\n{}",
        status(agent),
        agent.log()
    );
}

/// A differential event line of about 1 KiB whose `seq` column identifies it.
fn event(seq: usize) -> String {
    format!(
        "{{\"name\":\"pack_detection_processes\",\"hostIdentifier\":\"web-{}\",\"calendarTime\":\"Fri Mar 14 09:12:03 2025 UTC\",\"unixTime\":1741943523,\"epoch\":0,\"counter\":1,\"numerics\":false,\"columns\":{{\"name\":\"{}\",\"pid\":\"{}\",\"seq\":\"{seq}\"}},\"action\":\"added\"}}",
        seq % 3,
        "w".repeat(800),
        1000 + seq
    )
}

fn append_events(agent: &Agent, range: std::ops::Range<usize>) {
    let mut text = String::new();
    for seq in range {
        text.push_str(&event(seq));
        text.push('\n');
    }
    agent.append(&text);
}

/// Every osquery line, row and internal event in the stream, in both formats.
fn stream_payloads(rt: &tokio::runtime::Runtime, client: &aws_sdk_kinesis::Client) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for record in rt.block_on(kinesis::read_all(client, STREAM)) {
        match decode(&record.data).unwrap() {
            Decoded::Json(bytes) => out.push(bytes.to_vec()),
            Decoded::Packed(packed) => {
                out.extend(
                    packed
                        .entries
                        .into_iter()
                        .map(|entry| entry.data.into_owned()),
                );
            }
        }
    }
    out
}

/// How often each `seq` column value appears in the payloads.
fn seq_counts(payloads: &[Vec<u8>]) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for payload in payloads {
        let text = String::from_utf8_lossy(payload);
        if let Some(at) = text.find("\"seq\":\"") {
            let rest = &text[at + 7..];
            if let Ok(seq) = rest[..rest.find('"').unwrap()].parse::<usize>() {
                *counts.entry(seq).or_default() += 1;
            }
        }
    }
    counts
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[ignore = "needs kinesalite: scripts/test runs it"]
fn shutdown_with_full_spool_exits_within_timeout() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let agent = agent_for(
        &endpoint,
        serde_json::json!({
            "format": "compat",
            "spool_after_ms": 100,
            "spool_max_bytes": 1 << 20,
            "max_buffer_bytes": 5 * 1024 * 1024,
        }),
    );
    append_events(&agent, 0..12_000);
    let mut child = spawn(&agent);
    wait_until(&agent, 60, "reading to pause", |agent| {
        status(agent)["kinesis"]["paused"] == true
    });
    sigterm(&child);
    let took = wait_exit(&mut child, Duration::from_secs(30));
    assert!(
        took.is_some_and(|took| took < Duration::from_secs(8)),
        "the agent took {took:?} to exit after SIGTERM with shutdown_timeout_ms 5000; log:\n{}",
        agent.log()
    );
}

#[test]
#[ignore = "needs kinesalite: scripts/test runs it"]
fn shutdown_with_hanging_endpoint_spools_and_checkpoints() {
    let rt = runtime();
    let emulator = Emulator::start();
    let client = rt.block_on(kinesis::client(&emulator.endpoint()));
    rt.block_on(kinesis::create_stream(&client, STREAM, 1));
    let proxy = FaultProxy::start(&emulator.endpoint());
    proxy.set_mode(Mode::Hang);
    let agent = agent_for(
        &proxy.endpoint(),
        serde_json::json!({"format": "compat", "request_timeout_ms": 20_000}),
    );
    append_events(&agent, 0..2000);
    let mut child = spawn(&agent);
    std::thread::sleep(Duration::from_secs(3));
    sigterm(&child);
    let took = wait_exit(&mut child, Duration::from_secs(60)).expect("the agent exits");
    assert!(
        took < Duration::from_secs(8),
        "SIGTERM took {took:?} with shutdown_timeout_ms 5000"
    );
    assert_eq!(
        acked_offset(&agent),
        log_size(&agent),
        "the final checkpoint covers the spool"
    );

    proxy.set_mode(Mode::Pass);
    let mut child = spawn(&agent);
    wait_until(&agent, 60, "everything sent", |agent| {
        let report = status(agent);
        report["kinesis"]["spool_records"] == 0
            && report["kinesis"]["records_sent"].as_u64() > Some(0)
    });
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(30)).expect("the agent exits");

    let counts = seq_counts(&stream_payloads(&rt, &client));
    let duplicates: usize = counts.values().map(|count| count - 1).sum();
    assert_eq!(counts.len(), 2000, "every line delivered");
    assert_eq!(duplicates, 0, "the hanging call never reached the stream");
}

#[test]
#[ignore = "needs kinesalite: scripts/test runs it"]
fn packed_forwards_a_single_row_line_over_the_packed_size() {
    let rt = runtime();
    let emulator = Emulator::start();
    let client = rt.block_on(kinesis::client(&emulator.endpoint()));
    rt.block_on(kinesis::create_stream(&client, STREAM, 1));
    let agent = agent_for(
        &emulator.endpoint(),
        serde_json::json!({"format": "packed"}),
    );
    let big = event(7).replace(&"w".repeat(800), &"w".repeat(600 * 1024));
    agent.append(&format!("{}\n{big}\n{}\n", event(1), event(2)));
    let mut child = spawn(&agent);
    wait_until(&agent, 60, "every line acknowledged", |agent| {
        acked_offset(agent) == log_size(agent)
    });
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(30)).expect("the agent exits");
    let counts = seq_counts(&stream_payloads(&rt, &client));
    assert_eq!(counts, BTreeMap::from([(1, 1), (2, 1), (7, 1)]));
    assert_eq!(status(&agent)["kinesis"]["dead_lettered"], 0);
}

#[test]
#[ignore = "needs kinesalite: scripts/test runs it"]
fn split_keeps_rows_of_a_snapshot_with_invalid_utf8() {
    let rt = runtime();
    let emulator = Emulator::start();
    let client = rt.block_on(kinesis::client(&emulator.endpoint()));
    rt.block_on(kinesis::create_stream(&client, STREAM, 1));
    for format in ["compat", "packed"] {
        let agent = agent_for(&emulator.endpoint(), serde_json::json!({"format": format}));
        let rows: Vec<String> = (0..300)
            .map(|seq| {
                format!(
                    "{{\"name\":\"worker\",\"seq\":\"{seq}\",\"pad\":\"{}\"}}",
                    "r".repeat(10 * 1024)
                )
            })
            .collect();
        let mut line = format!(
            "{{\"snapshot\":[{}],\"action\":\"snapshot\",\"name\":\"pack_snapshots_processes\",\"hostIdentifier\":\"web-1\",\"calendarTime\":\"Fri Mar 14 09:12:03 2025 UTC\",\"unixTime\":1741943523,\"epoch\":0,\"counter\":0,\"numerics\":false}}",
            rows.join(",")
        )
        .into_bytes();
        // A raw 0xFF byte inside row 3, as osqueryd writes unescaped snapshot values.
        let at = line
            .windows(12)
            .position(|window| window == b"\"seq\":\"3\",\"p")
            .unwrap()
            - 3;
        line.insert(at, 0xFF);
        line.push(b'\n');
        std::fs::write(agent.path("logs/osqueryd.results.log"), &line).unwrap();

        let before = seq_counts(&stream_payloads(&rt, &client));
        let mut child = spawn(&agent);
        wait_until(&agent, 60, "the line acknowledged", |agent| {
            acked_offset(agent) == log_size(agent)
        });
        sigterm(&child);
        wait_exit(&mut child, Duration::from_secs(30)).expect("the agent exits");
        let after = seq_counts(&stream_payloads(&rt, &client));
        let added: usize = after.values().sum::<usize>() - before.values().sum::<usize>();
        assert_eq!(added, 300, "{format}: every row reached the stream");
        assert_eq!(status(&agent)["kinesis"]["lines_split"], 1, "{format}");
        assert_eq!(status(&agent)["kinesis"]["dead_lettered"], 0, "{format}");
    }
}

#[test]
#[ignore = "needs kinesalite: scripts/test runs it"]
fn spool_damage_in_a_segment_loses_only_that_frame() {
    let rt = runtime();
    let emulator = Emulator::start();
    let client = rt.block_on(kinesis::client(&emulator.endpoint()));
    rt.block_on(kinesis::create_stream(&client, STREAM, 1));
    let proxy = FaultProxy::start(&emulator.endpoint());
    proxy.set_mode(Mode::Refuse);
    let agent = agent_for(
        &proxy.endpoint(),
        serde_json::json!({"format": "compat", "spool_after_ms": 100}),
    );
    append_events(&agent, 0..3000);
    let mut child = spawn(&agent);
    wait_until(&agent, 60, "every line spooled and acknowledged", |agent| {
        acked_offset(agent) == log_size(agent)
    });
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(30)).expect("the agent exits");

    let segment = std::fs::read_dir(agent.path("state/spool"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .expect("a spool segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0xFF;
    std::fs::write(&segment, &bytes).unwrap();

    proxy.resume();
    let mut child = spawn(&agent);
    wait_until(&agent, 60, "the spool to drain", |agent| {
        let report = status(agent);
        report["kinesis"]["spool_records"] == 0
            && report["kinesis"]["records_sent"].as_u64() > Some(0)
    });
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(30)).expect("the agent exits");
    let counts = seq_counts(&stream_payloads(&rt, &client));
    assert_eq!(counts.len(), 2999, "one damaged frame costs one line");
    let report = status(&agent);
    assert_eq!(report["kinesis"]["spool_torn_frames"], 1);
    assert!(report["kinesis"]["spool_damaged_bytes"].as_u64() > Some(0));
    assert!(
        agent
            .log()
            .contains("Skipped damaged bytes inside a spool segment")
    );
}

#[test]
#[ignore = "needs kinesalite: scripts/test runs it"]
fn calls_whose_every_entry_fails_are_reported_and_spooled() {
    let rt = runtime();
    let emulator = Emulator::start();
    let client = rt.block_on(kinesis::client(&emulator.endpoint()));
    rt.block_on(kinesis::create_stream(&client, STREAM, 1));
    let proxy = FaultProxy::start(&emulator.endpoint());
    proxy.set_mode(Mode::PartialFailure {
        fraction: 1.0,
        seed: 1,
    });
    let agent = agent_for(
        &proxy.endpoint(),
        serde_json::json!({"format": "compat", "spool_after_ms": 1000}),
    );
    append_events(&agent, 0..300);
    let mut child = spawn(&agent);
    wait_until(
        &agent,
        30,
        "the failure in the status and the spool",
        |agent| {
            let report = status(agent);
            report["kinesis"]["last_error"]
                .as_str()
                .is_some_and(|error| error.starts_with("every entry of the call failed"))
                && report["kinesis"]["spool_records"].as_u64() > Some(0)
        },
    );
    proxy.set_mode(Mode::Pass);
    wait_until(&agent, 60, "the spool to drain", |agent| {
        let report = status(agent);
        report["kinesis"]["spool_records"] == 0 && report["kinesis"]["last_error"].is_null()
    });
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(30)).expect("the agent exits");
    let counts = seq_counts(&stream_payloads(&rt, &client));
    assert_eq!(counts.len(), 300);
    assert!(counts.values().all(|count| *count == 1));
}
