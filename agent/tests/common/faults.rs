//! The agent's side of the fault matrix (`tests/faults.rs`): the system under test, with
//! the agent forwarding through a fault proxy to kinesalite, and helpers that read its state.
//! The generator, the accounting and the result rows are in `matrix.rs`, which the Lambda's
//! fault tests share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::agent::Agent;
use super::kinesis::{self, Emulator, FaultProxy};
pub use super::matrix::*;

/// Alerts the agent's webhook accepted, by the id of the line that raised them.
pub fn alert_deliveries(agent: &Agent) -> BTreeMap<u64, u32> {
    webhook_alerts(&agent.webhook)
}

/// Environment of an agent that must find fake credentials and never ask instance
/// metadata, which would leave loopback.
pub fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "AKIAEDGEALERTTEST"),
        ("AWS_SECRET_ACCESS_KEY", "edgealert-faults-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/edgealert-test"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/edgealert-test"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// The system under test: kinesalite, the fault proxy in front of it, and an agent that
/// forwards through the proxy and alerts to the local webhook.
pub struct World {
    pub runtime: tokio::runtime::Runtime,
    /// The agent's state directory, as `agent.json` sets it.
    pub state_dir: PathBuf,
    pub client: aws_sdk_kinesis::Client,
    pub proxy: FaultProxy,
    pub agent: Agent,
    _emulator: Emulator,
}

impl World {
    /// Starts kinesalite and the proxy, and configures an agent whose `kinesis` settings
    /// are merged with `kinesis_extra` and whose other settings `configure` may change.
    pub fn new(
        kinesis_extra: serde_json::Value,
        configure: impl FnOnce(&mut serde_json::Value),
    ) -> World {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let emulator = Emulator::start();
        let client = runtime.block_on(kinesis::client(&emulator.endpoint()));
        runtime.block_on(kinesis::create_stream(&client, STREAM, 1));
        let proxy = FaultProxy::start(&emulator.endpoint());
        let agent = Agent::new();
        agent.configure(|settings| {
            let mut forwarding = serde_json::json!({
                "stream": STREAM,
                "endpoint": proxy.endpoint(),
                "region": "us-east-1",
                "linger_ms": 50,
                "request_timeout_ms": 2000,
                "max_backoff_ms": 500,
            });
            for (key, value) in kinesis_extra.as_object().unwrap() {
                forwarding[key] = value.clone();
            }
            settings["kinesis"] = forwarding;
            settings["shutdown_timeout_ms"] = serde_json::json!(5000);
            // Every alert becomes its own message, so the webhook can count them.
            settings["slack"]["min_interval_ms"] = serde_json::json!(1);
            settings["slack"]["burst"] = serde_json::json!(1000);
            settings["slack"]["max_backlog"] = serde_json::json!(100_000);
            configure(settings);
        });
        let settings: serde_json::Value =
            serde_json::from_slice(&std::fs::read(agent.path("conf/agent.json")).unwrap()).unwrap();
        let state_dir = PathBuf::from(settings["state_dir"].as_str().unwrap());
        World {
            runtime,
            state_dir,
            client,
            proxy,
            agent,
            _emulator: emulator,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.agent.path("logs/osqueryd.results.log")
    }

    pub fn start(&mut self) {
        self.agent.start_with_env(&aws_env());
        self.agent.wait_started();
    }

    pub fn status(&self) -> serde_json::Value {
        status_of(&self.state_dir)
    }

    /// Reads the whole stream back.
    pub fn delivered(&self) -> Delivered {
        let records = self
            .runtime
            .block_on(kinesis::read_all(&self.client, STREAM));
        Delivered::from_records(&records)
    }

    /// Waits until every id in `ids` is in the stream, for at most `seconds`, and returns
    /// what the stream contains then.
    pub fn wait_delivered(&self, ids: &[u64], seconds: u64) -> Delivered {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let delivered = self.delivered();
            if ids.iter().all(|id| delivered.counts.contains_key(id)) || Instant::now() >= deadline
            {
                return delivered;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the status shows every followed byte acknowledged and nothing in memory
    /// or the spool, for at most `seconds`; returns whether it did.
    ///
    /// Only a status written after the call counts. The agent rewrites it every second
    /// while it changes and every 5 s otherwise, so this takes at least a second.
    pub fn wait_idle(&self, seconds: u64) -> bool {
        let since = unix_now();
        wait_until(seconds, || {
            let status = self.status();
            status["updated_at"].as_u64() > Some(since) && is_idle(&status)
        })
    }

    /// Waits until the agent wrote a status after this call, and returns it.
    pub fn fresh_status(&self) -> serde_json::Value {
        let since = unix_now();
        wait_until(10, || self.status()["updated_at"].as_u64() > Some(since));
        self.status()
    }

    /// Waits until the webhook accepted a message for each of `ids`, for at most
    /// `seconds`.
    pub fn wait_alerts(&self, ids: &[u64], seconds: u64) -> BTreeMap<u64, u32> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let delivered = alert_deliveries(&self.agent);
            if ids.iter().all(|id| delivered.contains_key(id)) || Instant::now() >= deadline {
                return delivered;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Reads `STATE_DIR/status.json`, or `null` when it is missing or being replaced.
pub fn status_of(state_dir: &Path) -> serde_json::Value {
    std::fs::read(state_dir.join("status.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// True when the status shows every followed byte acknowledged and Kinesis idle.
pub fn is_idle(status: &serde_json::Value) -> bool {
    let Some(files) = status["files"].as_array() else {
        return false;
    };
    let files_done = !files.is_empty()
        && files.iter().all(|file| {
            file["lag_bytes"] == 0
                && Some(file["acked_offset"].clone()) == file.get("size").cloned()
        });
    let kinesis = &status["kinesis"];
    files_done
        && kinesis["spool_records"] == 0
        && kinesis["buffered_records"] == 0
        && kinesis["paused"] == false
}

/// Polls `condition` every 50 ms for at most `seconds`; returns whether it held.
pub fn wait_until(seconds: u64, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// Returns the acknowledged offset of `path` in `STATE_DIR/checkpoints.json`, matched by
/// device and inode; 0 when the file has no checkpoint.
pub fn checkpoint_offset(state_dir: &Path, path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    let Ok(bytes) = std::fs::read(state_dir.join("checkpoints.json")) else {
        return 0;
    };
    let checkpoint: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    checkpoint["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|file| {
            let identity = file.get("identity").unwrap_or(file);
            identity["inode"] == meta.ino() && identity["dev"] == meta.dev()
        })
        .filter_map(|file| file["offset"].as_u64())
        .max()
        .unwrap_or(0)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Counts `needle` in `text`.
pub fn occurrences(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}
