//! Parse + classify + evaluate per line, against serde_json parse-only of the same lines.
//!
//! The lines come from a seeded generator shaped like a real fleet's results log: mostly
//! differential process and socket rows of about 750 bytes, some batch and snapshot lines,
//! churn pairs and a counter-0 dump. The rules are the shipped starter pack plus 50
//! synthetic rules over the same queries.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rules_core::{Config, Source};
use serde_json::{Value, json};

const LINES: usize = 20_000;

/// A small deterministic generator (xorshift64*), so every run measures the same lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &[
    "sshd",
    "nginx",
    "postgres",
    "python3",
    "node",
    "java",
    "containerd",
    "bash",
    "cron",
    "nc",
];
const QUERIES: &[&str] = &[
    "pack_detection_processes",
    "pack_detection_listening_processes",
    "pack_incident-response_process_open_sockets",
    "pack_detection_process_events",
    "pack_osquery-monitoring_schedule",
];

fn process_row(rng: &mut Rng) -> Value {
    let name = rng.pick(NAMES);
    let pid = 1000 + rng.below(60_000);
    json!({
        "cmdline": format!("/usr/bin/{name} --config /etc/{name}/{name}.conf --workers {}", rng.below(16)),
        "cwd": "/", "egid": "0", "euid": "0", "gid": "0", "name": name,
        "nice": "0", "on_disk": "1", "parent": "1", "path": format!("/usr/bin/{name}"),
        "pgroup": pid.to_string(), "pid": pid.to_string(), "resident_size": (rng.below(1 << 30)).to_string(),
        "root": "/", "sgid": "0", "start_time": (1_741_900_000 + rng.below(40_000)).to_string(),
        "state": "S", "suid": "0", "system_time": rng.below(100_000).to_string(),
        "threads": rng.below(64).to_string(), "uid": "0", "user_time": rng.below(100_000).to_string(),
        "address": "0.0.0.0", "port": (rng.below(65_535)).to_string(), "protocol": "6", "family": "2"
    })
}

fn envelope(rng: &mut Rng, query: &str, counter: u64) -> serde_json::Map<String, Value> {
    let host = format!("web-{:02}.corp.example", rng.below(40));
    let value = json!({
        "name": query, "hostIdentifier": host, "calendarTime": "Fri Mar 14 09:12:03 2025 UTC",
        "unixTime": 1_741_943_523 + rng.below(86_400), "epoch": 0, "counter": counter, "numerics": false,
        "decorations": {"host_uuid": "8F3A2C1E-5B7D-4E90-A1C3-6D2F0B9E4A17", "hostname": host, "username": "ops"}
    });
    value.as_object().cloned().unwrap_or_default()
}

fn generate_lines(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut lines = Vec::with_capacity(LINES);
    while lines.len() < LINES {
        let query = rng.pick(QUERIES);
        let counter = 1 + rng.below(500);
        let mut record = envelope(&mut rng, query, counter);
        match rng.below(100) {
            0..=1 => {
                let rows: Vec<Value> = (0..8).map(|_| process_row(&mut rng)).collect();
                record.insert("diffResults".into(), json!({"removed": [], "added": rows}));
            }
            2 => {
                let rows: Vec<Value> = (0..8).map(|_| process_row(&mut rng)).collect();
                record.insert("snapshot".into(), Value::Array(rows));
                record.insert("action".into(), json!("snapshot"));
                record.insert("counter".into(), json!(0));
            }
            _ => {
                record.insert("columns".into(), process_row(&mut rng));
                let action = if rng.below(4) == 0 {
                    "removed"
                } else {
                    "added"
                };
                record.insert("action".into(), json!(action));
            }
        }
        lines.push(serde_json::to_vec(&Value::Object(record)).unwrap_or_default());
    }
    lines
}

/// Copies the shipped configuration and adds 50 synthetic rules.
fn bench_conf() -> (tempfile::TempDir, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let temp = tempfile::tempdir().expect("temporary directory");
    let dir = temp.path().join("conf");
    for sub in ["schemas", "rules"] {
        std::fs::create_dir_all(dir.join(sub)).expect("create directory");
        for entry in std::fs::read_dir(repo.join("conf").join(sub)).expect("list conf") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::copy(&path, dir.join(sub).join(path.file_name().expect("name")))
                    .expect("copy");
            }
        }
    }
    for file in ["sources.json", "outputs.json", "edgealert.json"] {
        std::fs::copy(repo.join("conf").join(file), dir.join(file)).expect("copy");
    }
    for index in 0..50 {
        let query = QUERIES[index % QUERIES.len()];
        let rule = json!({
            "name": format!("synthetic_{index:02}"),
            "description": "Synthetic benchmark rule.",
            "logs": ["osquery"],
            "queries": [query],
            "condition": {"all": [
                {"field": "action", "in": ["added", "snapshot"]},
                {"field": "columns.name", "eq": format!("tool{index}")},
                {"any": [
                    {"field": "columns.path", "regex": format!("^/opt/tool{index}/")},
                    {"field": "columns.port", "gt": 60_000 + index},
                    {"field": "columns.address", "cidr": ["203.0.113.0/24"]}
                ]}
            ]},
            "outputs": ["slack:security"],
            "severity": "low"
        });
        let path = dir.join("rules").join(format!("synthetic_{index:02}.json"));
        std::fs::write(path, serde_json::to_vec_pretty(&rule).unwrap_or_default())
            .expect("write rule");
    }
    (temp, dir)
}

fn bench(c: &mut Criterion) {
    let lines = generate_lines(0x5eed_1234_abcd_ef01);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let (_temp, dir) = bench_conf();
    let config = Config::load(&dir).expect("benchmark configuration loads");
    let source = Source::new("file", "osquery");
    eprintln!(
        "lines: {}, mean bytes per line: {}, rules: {}",
        lines.len(),
        bytes / lines.len(),
        config.rules.rules().len()
    );

    let mut group = c.benchmark_group("per_line");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(20);
    group.bench_function("parse_only", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(serde_json::from_slice::<Value>(line).ok());
            }
        })
    });
    group.bench_function("parse_classify_evaluate", |b| {
        b.iter(|| {
            let mut alerts = 0usize;
            for line in &lines {
                if let Ok(classified) = config.classify(&source, line) {
                    for event in classified.events() {
                        alerts += config.rules.evaluate(&event).len();
                    }
                }
            }
            black_box(alerts)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
