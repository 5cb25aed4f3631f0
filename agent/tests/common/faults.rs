//! Harness of the fault matrix (`tests/faults.rs`): a seeded generator of osquery lines that
//! each carry a unique id, the accounting of what reached the Kinesis stream and the webhook,
//! and the result row that `scripts/faults` turns into a table.
//!
//! Every generated line contains the marker `fault-line-<id>.` in a string value, so a line is
//! found again in any record format: a whole line, a row split from a large line, or the
//! excerpt of an internal event.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rules_core::kinesis::{Decoded, EntryKind, decode};

use super::agent::Agent;
use super::kinesis::{self, Emulator, FaultProxy, StreamRecord};

/// Stream that every scenario forwards to.
pub const STREAM: &str = "osquery-records";

/// Text before the id in every generated line.
pub const MARKER: &str = "fault-line-";

/// Hosts the generated lines come from, so records have several partition keys.
pub const HOSTS: [&str; 3] = ["web-1", "web-2", "db-1"];

/// How long a scenario runs: `short` for CI, `full` for the numbers of the reliability
/// report. Set by `EDGEALERT_FAULTS_SCALE`; `short` when unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Short,
    Full,
}

impl Scale {
    pub fn from_env() -> Scale {
        match std::env::var("EDGEALERT_FAULTS_SCALE").as_deref() {
            Ok("full") => Scale::Full,
            Ok("short") | Err(_) => Scale::Short,
            Ok(other) => panic!("invalid EDGEALERT_FAULTS_SCALE {other:?}: expected short or full"),
        }
    }

    /// Returns `short` or `full` as the scale requires.
    pub fn pick<T>(self, short: T, full: T) -> T {
        match self {
            Scale::Short => short,
            Scale::Full => full,
        }
    }
}

/// The SplitMix64 generator, written out so that a seed gives the same run with every
/// crate version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a number in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low).max(1)
    }
}

/// Returns the marker of line `id`.
pub fn marker(id: u64) -> String {
    format!("{MARKER}{id}.")
}

/// Returns every id whose marker occurs in `bytes`.
pub fn ids_in(bytes: &[u8]) -> Vec<u64> {
    let mut ids = Vec::new();
    let needle = MARKER.as_bytes();
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], needle) {
        let start = at + found + needle.len();
        let digits = bytes[start..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if digits > 0 && bytes.get(start + digits) == Some(&b'.') {
            let text = std::str::from_utf8(&bytes[start..start + digits]).unwrap();
            ids.push(text.parse().unwrap());
        }
        at = start;
    }
    ids
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Returns a differential event line of a worker process.
pub fn worker_line(id: u64) -> String {
    let host = HOSTS[(id % 3) as usize];
    format!(
        "{{\"name\":\"pack_detection_processes\",\"hostIdentifier\":\"{host}\",\"calendarTime\":\"Fri Mar 14 09:12:03 2025 UTC\",\"unixTime\":1741943523,\"epoch\":0,\"counter\":1,\"numerics\":false,\"columns\":{{\"name\":\"worker\",\"pid\":\"{}\",\"cmdline\":\"worker --id {}\"}},\"action\":\"added\"}}",
        1000 + id,
        marker(id)
    )
}

/// Returns a differential event line of a netcat listener with its own pid, which fires the
/// shipped `netcat_listener` rule once.
pub fn netcat_line(id: u64) -> String {
    let host = HOSTS[(id % 3) as usize];
    format!(
        "{{\"name\":\"pack_detection_listening_processes\",\"hostIdentifier\":\"{host}\",\"calendarTime\":\"Fri Mar 14 10:12:11 2025 UTC\",\"unixTime\":1741947131,\"epoch\":0,\"counter\":1,\"numerics\":false,\"columns\":{{\"address\":\"0.0.0.0\",\"cmdline\":\"nc -lvnp 4444 {}\",\"family\":\"2\",\"name\":\"nc\",\"path\":\"/usr/bin/nc.openbsd\",\"pid\":\"{}\",\"port\":\"4444\",\"protocol\":\"6\",\"uid\":\"1001\"}},\"action\":\"added\"}}",
        marker(id),
        100_000 + id
    )
}

/// A line as the generator wrote it.
#[derive(Debug, Clone)]
pub struct Written {
    pub id: u64,
    /// The file the write went to, as the writer opened it.
    pub path: PathBuf,
    /// Byte offset of the line in that file.
    pub offset: u64,
    /// Length including the newline.
    pub len: u64,
    /// True when the line fires `netcat_listener`.
    pub netcat: bool,
}

/// Appends generated lines to a log file as osqueryd does: open with `O_APPEND`, one
/// `write` per batch, close.
#[derive(Debug)]
pub struct Generator {
    pub path: PathBuf,
    rng: Rng,
    next_id: u64,
    /// One netcat line in `netcat_every`; 0 for none.
    netcat_every: u64,
    pub written: Vec<Written>,
}

impl Generator {
    pub fn new(path: PathBuf, seed: u64, netcat_every: u64) -> Generator {
        Generator {
            path,
            rng: Rng::new(seed),
            next_id: 0,
            netcat_every,
            written: Vec::new(),
        }
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Takes the next id, so that a scenario can write lines of its own.
    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Writes `count` generated lines in one write and returns their ids.
    pub fn write_batch(&mut self, count: usize) -> Vec<u64> {
        let mut lines = Vec::with_capacity(count);
        for _ in 0..count {
            let id = self.take_id();
            let netcat = self.netcat_every > 0 && self.rng.range(0, self.netcat_every) == 0;
            let text = if netcat {
                netcat_line(id)
            } else {
                worker_line(id)
            };
            lines.push((id, format!("{text}\n"), netcat));
        }
        self.append(lines)
    }

    /// Writes lines made elsewhere in one write; each is `(id, text with newline, netcat)`.
    pub fn append(&mut self, lines: Vec<(u64, String, bool)>) -> Vec<u64> {
        let mut buffer = Vec::new();
        for (_, text, _) in &lines {
            buffer.extend_from_slice(text.as_bytes());
        }
        let offset = append_bytes(&self.path, &buffer);
        let mut at = offset;
        let mut ids = Vec::with_capacity(lines.len());
        for (id, text, netcat) in lines {
            self.written.push(Written {
                id,
                path: self.path.clone(),
                offset: at,
                len: text.len() as u64,
                netcat,
            });
            at += text.len() as u64;
            ids.push(id);
        }
        ids
    }

    pub fn ids(&self) -> Vec<u64> {
        self.written.iter().map(|line| line.id).collect()
    }

    pub fn netcat_ids(&self) -> Vec<u64> {
        self.written
            .iter()
            .filter(|line| line.netcat)
            .map(|line| line.id)
            .collect()
    }
}

/// Appends `bytes` with one write call and returns the file's size before it.
pub fn append_bytes(path: &Path, bytes: &[u8]) -> u64 {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let offset = file.metadata().unwrap().len();
    file.write_all(bytes).unwrap();
    offset
}

/// A generator on its own thread that writes batches until it is stopped.
pub struct Background {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Generator>>,
    /// The generator's lines so far, shared with the thread.
    pub progress: Arc<Mutex<Vec<Written>>>,
}

impl Background {
    /// Writes batches of 1 to `max_batch` lines every `pause` until [`Background::stop`].
    pub fn start(mut generator: Generator, max_batch: u64, pause: Duration) -> Background {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(Vec::new()));
        let thread_stop = Arc::clone(&stop);
        let thread_progress = Arc::clone(&progress);
        let handle = std::thread::spawn(move || {
            while !thread_stop.load(std::sync::atomic::Ordering::SeqCst) {
                let count = generator.rng().range(1, max_batch + 1) as usize;
                generator.write_batch(count);
                *thread_progress.lock().unwrap() = generator.written.clone();
                std::thread::sleep(pause);
            }
            generator
        });
        Background {
            stop,
            handle: Some(handle),
            progress,
        }
    }

    /// Stops the thread and returns the generator with every line it wrote.
    pub fn stop(mut self) -> Generator {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// What the stream holds, decoded.
#[derive(Debug, Default)]
pub struct Delivered {
    /// How often each id arrived in a line or row entry.
    pub counts: BTreeMap<u64, u32>,
    /// Ids in stream order per partition key, first arrivals only.
    pub order: BTreeMap<String, Vec<u64>>,
    /// Internal events, parsed.
    pub internal: Vec<serde_json::Value>,
    /// Line and row entries without a marker.
    pub unmarked: usize,
    /// Packed records.
    pub records: usize,
    /// Line and row entries of at most 64 KiB, for byte-exact checks.
    small_entries: Vec<Vec<u8>>,
}

impl Delivered {
    pub fn from_records(records: &[StreamRecord]) -> Delivered {
        let mut delivered = Delivered {
            records: records.len(),
            ..Delivered::default()
        };
        for record in records {
            match decode(&record.data).expect("every record decodes") {
                Decoded::Json(bytes) => {
                    delivered.add(&record.partition_key, EntryKind::Line, bytes);
                }
                Decoded::Packed(packed) => {
                    for entry in &packed.entries {
                        delivered.add(&record.partition_key, entry.kind, &entry.data);
                    }
                }
            }
        }
        delivered
    }

    fn add(&mut self, key: &str, kind: EntryKind, bytes: &[u8]) {
        if kind == EntryKind::Internal {
            self.internal
                .push(serde_json::from_slice(bytes).expect("internal events are JSON"));
            return;
        }
        if bytes.len() <= 64 << 10 {
            self.small_entries.push(bytes.to_vec());
        }
        let ids = ids_in(bytes);
        if ids.is_empty() {
            self.unmarked += 1;
        }
        for id in ids {
            let count = self.counts.entry(id).or_default();
            *count += 1;
            if *count == 1 {
                self.order.entry(key.to_owned()).or_default().push(id);
            }
        }
    }

    /// True when a line or row entry of at most 64 KiB contains `bytes`.
    pub fn raw_contains(&self, bytes: &[u8]) -> bool {
        self.small_entries
            .iter()
            .any(|entry| find(entry, bytes).is_some())
    }

    /// Counts internal events of `reason`.
    pub fn internal_count(&self, reason: &str) -> usize {
        self.internal
            .iter()
            .filter(|event| event["reason"] == reason)
            .count()
    }
}

/// Lines written against lines delivered.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub written: u64,
    pub unique_delivered: u64,
    pub duplicates: u64,
    pub lost: u64,
    /// The first lost ids, for the failure message.
    pub lost_ids: Vec<u64>,
    /// Ids delivered more than once.
    pub duplicated_ids: BTreeSet<u64>,
    /// Delivered ids that were never written.
    pub unexpected: u64,
}

impl Tally {
    pub fn of(written: &[u64], delivered: &Delivered) -> Tally {
        let expected: BTreeSet<u64> = written.iter().copied().collect();
        let mut tally = Tally {
            written: expected.len() as u64,
            ..Tally::default()
        };
        for id in &expected {
            match delivered.counts.get(id) {
                Some(count) => {
                    tally.unique_delivered += 1;
                    tally.duplicates += u64::from(count - 1);
                    if *count > 1 {
                        tally.duplicated_ids.insert(*id);
                    }
                }
                None => {
                    tally.lost += 1;
                    if tally.lost_ids.len() < 10 {
                        tally.lost_ids.push(*id);
                    }
                }
            }
        }
        tally.unexpected = delivered
            .counts
            .keys()
            .filter(|id| !expected.contains(id))
            .count() as u64;
        tally
    }
}

/// Alerts the webhook accepted, by the id of the line that raised them.
pub fn alert_deliveries(agent: &Agent) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for request in agent.webhook.accepted() {
        for id in ids_in(request.payload["text"].as_str().unwrap_or("").as_bytes()) {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// One row of the fault matrix, and the checks behind its verdict.
#[derive(Debug)]
pub struct Report {
    scenario: String,
    started: Instant,
    pub tally: Tally,
    pub alerts_expected: u64,
    pub alerts_delivered: u64,
    notes: Vec<String>,
    failures: Vec<String>,
    known_defects: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        eprintln!("fault matrix: {scenario} ({:?})", Scale::from_env());
        Report {
            scenario: scenario.to_owned(),
            started: Instant::now(),
            tally: Tally::default(),
            alerts_expected: 0,
            alerts_delivered: 0,
            notes: Vec::new(),
            failures: Vec::new(),
            known_defects: Vec::new(),
        }
    }

    /// Adds a fact to the row's notes.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Records a failed expectation when `ok` is false.
    pub fn check(&mut self, ok: bool, failure: impl Into<String>) {
        if !ok {
            self.failures.push(failure.into());
        }
    }

    /// Records a failed expectation that a known agent defect explains. `regression_test`
    /// names the ignored test in `tests/faults.rs` that reproduces the defect alone.
    pub fn check_known_defect(
        &mut self,
        ok: bool,
        failure: impl Into<String>,
        regression_test: &str,
    ) {
        if !ok {
            self.known_defects.push(format!(
                "{} (known defect, see {regression_test})",
                failure.into()
            ));
        }
    }

    /// Checks that every written line arrived.
    pub fn check_no_loss(&mut self) {
        let tally = self.tally.clone();
        self.check(
            tally.lost == 0,
            format!("{} lines lost, first ids {:?}", tally.lost, tally.lost_ids),
        );
        self.check(
            tally.unexpected == 0,
            format!("{} ids in the stream were never written", tally.unexpected),
        );
    }

    /// Checks that no line arrived twice.
    pub fn check_no_duplicates(&mut self) {
        let tally = self.tally.clone();
        let first: Vec<&u64> = tally.duplicated_ids.iter().take(10).collect();
        self.check(
            tally.duplicates == 0,
            format!("{} duplicate lines, first ids {first:?}", tally.duplicates),
        );
    }

    /// Records the alerts: every expected id delivered exactly once. An alert delivered
    /// twice counts as the known defect of `doubled_defect` when one is named.
    pub fn alerts(&mut self, expected: &[u64], delivered: &BTreeMap<u64, u32>) {
        self.alerts_with_known_defect(expected, delivered, None);
    }

    /// Records the alerts: every expected id delivered, and at most `max_resent` extra
    /// deliveries in all. A kill can cut the agent off between Slack receiving a message and
    /// the agent reading the answer; the restarted agent then sends that message again,
    /// because Slack webhooks take no idempotency key.
    pub fn alerts_resent_at_most(
        &mut self,
        expected: &[u64],
        delivered: &BTreeMap<u64, u32>,
        max_resent: u64,
    ) {
        self.alerts_expected = expected.len() as u64;
        self.alerts_delivered = delivered.values().map(|count| u64::from(*count)).sum();
        let missing: Vec<&u64> = expected
            .iter()
            .filter(|id| !delivered.contains_key(id))
            .collect();
        self.check(
            missing.is_empty(),
            format!("{} alerts not delivered: {missing:?}", missing.len()),
        );
        let resent: u64 = delivered
            .values()
            .map(|count| u64::from(count.saturating_sub(1)))
            .sum();
        self.check(
            resent <= max_resent,
            format!("{resent} alerts sent again, more than the {max_resent} kills explain"),
        );
        self.note(format!(
            "{resent} alerts sent again after a kill cut off Slack's answer"
        ));
    }

    pub fn alerts_with_known_defect(
        &mut self,
        expected: &[u64],
        delivered: &BTreeMap<u64, u32>,
        doubled_defect: Option<&str>,
    ) {
        self.alerts_expected = expected.len() as u64;
        self.alerts_delivered = delivered.values().map(|count| u64::from(*count)).sum();
        let missing: Vec<&u64> = expected
            .iter()
            .filter(|id| !delivered.contains_key(id))
            .collect();
        let doubled: Vec<&u64> = delivered
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(id, _)| id)
            .collect();
        self.check(
            missing.is_empty(),
            format!("{} alerts not delivered: {missing:?}", missing.len()),
        );
        let failure = format!(
            "{} alerts delivered more than once: {doubled:?}",
            doubled.len()
        );
        match doubled_defect {
            Some(test) => self.check_known_defect(doubled.is_empty(), failure, test),
            None => self.check(doubled.is_empty(), failure),
        }
    }

    /// Writes the row and fails the test when a check failed. A run whose only failed
    /// checks are known defects gets the verdict KNOWN DEFECT and passes, so that CI stays
    /// green until the fix lands and the row turns PASS.
    pub fn finish(mut self) {
        let verdict = if !self.failures.is_empty() {
            "FAIL"
        } else if !self.known_defects.is_empty() {
            "KNOWN DEFECT"
        } else {
            "PASS"
        };
        let known = std::mem::take(&mut self.known_defects);
        self.failures.extend(known);
        self.write(verdict);
        assert!(
            verdict != "FAIL",
            "{}: {}",
            self.scenario,
            self.failures.join("; ")
        );
    }

    /// Writes a row with verdict SKIPPED and the reason.
    pub fn skip(mut self, reason: &str) {
        eprintln!("fault matrix: {} SKIPPED: {reason}", self.scenario);
        self.notes.insert(0, reason.to_owned());
        self.write("SKIPPED");
    }

    fn write(&self, verdict: &str) {
        let mut notes = self.failures.clone();
        notes.extend(self.notes.iter().cloned());
        let row = serde_json::json!({
            "scenario": self.scenario,
            "scale": format!("{:?}", Scale::from_env()).to_lowercase(),
            "written": self.tally.written,
            "unique_delivered": self.tally.unique_delivered,
            "duplicates": self.tally.duplicates,
            "lost": self.tally.lost,
            "alerts_expected": self.alerts_expected,
            "alerts_delivered": self.alerts_delivered,
            "verdict": verdict,
            "seconds": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "notes": notes.join("; "),
        });
        eprintln!("fault matrix row: {row}");
        let Ok(path) = std::env::var("EDGEALERT_FAULTS_OUT") else {
            return;
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|error| panic!("cannot open EDGEALERT_FAULTS_OUT {path}: {error}"));
        file.write_all(format!("{row}\n").as_bytes()).unwrap();
    }
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
