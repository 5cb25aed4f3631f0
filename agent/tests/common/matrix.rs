//! Harness of the fault matrix, shared by the agent's and the Lambda's `tests/faults.rs`.
//! It has a seeded generator of osquery lines that each carry a unique id, the accounting
//! of what reached the Kinesis stream and the webhooks, and the result row that
//! `scripts/faults` turns into a table.
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

use super::kinesis::StreamRecord;
use super::webhook::Webhook;

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

/// Alerts `webhook` accepted, by the id of the line that raised them.
pub fn webhook_alerts(webhook: &Webhook) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for request in webhook.accepted() {
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
    /// the agent reading the response; the restarted agent then sends that message again,
    /// because Slack webhooks take no idempotency key.
    pub fn alerts_resent_at_most(
        &mut self,
        expected: &[u64],
        delivered: &BTreeMap<u64, u32>,
        max_resent: u64,
    ) {
        self.count_alerts(expected, delivered);
        let resent: u64 = delivered
            .values()
            .map(|count| u64::from(count.saturating_sub(1)))
            .sum();
        self.check(
            resent <= max_resent,
            format!("{resent} alerts sent again, more than the kills explain ({max_resent})"),
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
        self.count_alerts(expected, delivered);
        let doubled: Vec<&u64> = delivered
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(id, _)| id)
            .collect();
        let failure = format!(
            "{} alerts delivered more than once: {doubled:?}",
            doubled.len()
        );
        match doubled_defect {
            Some(test) => self.check_known_defect(doubled.is_empty(), failure, test),
            None => self.check(doubled.is_empty(), failure),
        }
    }

    /// Records the alert counts and checks that every expected id was delivered.
    fn count_alerts(&mut self, expected: &[u64], delivered: &BTreeMap<u64, u32>) {
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
