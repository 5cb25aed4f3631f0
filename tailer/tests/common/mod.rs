//! Helpers shared by the integration tests: a log directory, osqueryd-style writes
//! and rotations, and a poll loop that acknowledges everything.

#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tailer::{Line, ProblemKind, StartAt, TailEvent, Tailer, TailerConfig};
use tempfile::TempDir;

/// Maximum number of polls one drain may take before the test fails.
const MAX_POLLS: usize = 10_000;

/// A temporary directory with one followed log file and a checkpoint path.
pub struct Fixture {
    pub dir: TempDir,
    pub log: PathBuf,
    pub checkpoint: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("osqueryd.results.log");
        let checkpoint = dir.path().join("checkpoint.json");
        Self {
            dir,
            log,
            checkpoint,
        }
    }

    /// Returns a configuration that reads from the beginning and closes rotated files at once.
    pub fn config(&self) -> TailerConfig {
        let mut config = TailerConfig::new(vec![self.log.clone()], self.checkpoint.clone());
        config.start_at = StartAt::Beginning;
        config.rotate_grace = Duration::ZERO;
        config
    }

    pub fn open(&self) -> Tailer {
        Tailer::open(self.config()).unwrap()
    }

    /// Appends like osqueryd: open with O_APPEND, one write, close.
    pub fn append(&self, bytes: &[u8]) {
        append_to(&self.log, bytes);
    }

    /// Appends each line followed by `\n`.
    pub fn append_lines(&self, lines: &[&str]) {
        for line in lines {
            self.append(format!("{line}\n").as_bytes());
        }
    }

    /// Returns `NAME.N`, or `NAME.N.zst` when `compressed`.
    pub fn rotated(&self, index: u32, compressed: bool) -> PathBuf {
        let suffix = if compressed { ".zst" } else { "" };
        self.dir
            .path()
            .join(format!("osqueryd.results.log.{index}{suffix}"))
    }

    /// Rotates like osqueryd 5.x `--logger_rotate`: archives shift up by one, `.1` is
    /// compressed into `.2.zst`, and the live file is renamed to `.1`. The next append
    /// creates a new live file.
    pub fn osquery_rotate(&self) {
        for index in (2..=25).rev() {
            let from = self.rotated(index, true);
            if from.exists() {
                fs::rename(&from, self.rotated(index + 1, true)).unwrap();
            }
        }
        let first = self.rotated(1, false);
        if first.exists() {
            let compressed = zstd::encode_all(&fs::read(&first).unwrap()[..], 3).unwrap();
            fs::write(self.rotated(2, true), compressed).unwrap();
            fs::remove_file(&first).unwrap();
        }
        fs::rename(&self.log, &first).unwrap();
    }
}

/// Appends bytes to `path` with one write call, creating the file if needed.
pub fn append_to(path: &PathBuf, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// Polls and acknowledges every event until a poll returns nothing and has no more.
pub fn drain(tailer: &mut Tailer) -> Vec<TailEvent> {
    let mut all = Vec::new();
    for _ in 0..MAX_POLLS {
        let events = tailer.poll().unwrap();
        for event in &events {
            tailer.ack(event.position());
        }
        let idle = events.is_empty() && !tailer.has_more();
        all.extend(events);
        if idle {
            return all;
        }
    }
    panic!("tailer did not become idle after {MAX_POLLS} polls");
}

/// Returns the lines of `events` as strings, replacing invalid UTF-8.
pub fn texts(events: &[TailEvent]) -> Vec<String> {
    lines(events)
        .iter()
        .map(|line| String::from_utf8_lossy(&line.bytes).into_owned())
        .collect()
}

/// Returns the lines of `events`.
pub fn lines(events: &[TailEvent]) -> Vec<Line> {
    events
        .iter()
        .filter_map(|event| match event {
            TailEvent::Line(line) => Some(line.clone()),
            TailEvent::Problem(_) => None,
        })
        .collect()
}

/// Returns the problem kinds of `events`.
pub fn problems(events: &[TailEvent]) -> Vec<ProblemKind> {
    events
        .iter()
        .filter_map(|event| match event {
            TailEvent::Problem(problem) => Some(problem.kind.clone()),
            TailEvent::Line(_) => None,
        })
        .collect()
}
