//! Model-based test: random writes, rotations, truncations, restarts and crashes,
//! checked against a model of which lines must be delivered and how often.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;

use common::{Fixture, drain};
use proptest::prelude::*;
use tailer::{ProblemKind, TailEvent, Tailer, TailerConfig};

#[derive(Debug, Clone)]
enum Op {
    /// Appends lines; with `split_last` the last line is written in two parts with a
    /// poll between them.
    Append { count: u8, split_last: bool },
    /// Polls until idle, acknowledging every event.
    Poll,
    /// logrotate rename + create: rotated files shift up unchanged, the live file
    /// becomes `.1` and an empty live file is created.
    RenameRotate,
    /// osqueryd rotation: rotated files shift up, `.1` is compressed into `.2.zst`,
    /// the live file becomes `.1`; the next append creates the live file.
    OsqueryRotate,
    /// logrotate `copytruncate`: rotated files shift up unchanged, the live file is
    /// copied to `.1`, then truncated in place. No line is lost.
    CopyTruncate,
    /// Copies the live file outside the rotation names and truncates it in place, so
    /// lines not yet delivered are lost.
    CopyElsewhereTruncate,
    /// Writes the checkpoint (everything delivered is acknowledged), drops, reopens.
    Restart,
    /// Drops the tailer without writing the checkpoint and reopens it.
    Kill,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..5, any::<bool>()).prop_map(|(count, split_last)| Op::Append { count, split_last }),
        3 => Just(Op::Poll),
        1 => Just(Op::RenameRotate),
        1 => Just(Op::OsqueryRotate),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::CopyElsewhereTruncate),
        1 => Just(Op::Restart),
        1 => Just(Op::Kill),
    ]
}

/// What the tailer must deliver, tracked by line sequence number.
#[derive(Default)]
struct Model {
    next_seq: u64,
    written: Vec<u64>,
    /// Lines currently in the live file.
    live: Vec<u64>,
    /// Lines removed by a truncation without a rotated copy; they exist in no
    /// followed file any more.
    truncated_away: HashSet<u64>,
    /// Lines removed by a truncation without a rotated copy before their first delivery.
    lost: HashSet<u64>,
    lost_bytes: u64,
    delivered: HashMap<u64, u32>,
    first_order: Vec<u64>,
    /// Lines delivered since the last checkpoint write.
    since_checkpoint: HashSet<u64>,
    /// Extra deliveries each line may get, one per crash while it was not checkpointed.
    allowed_repeats: HashMap<u64, u32>,
    reported_lost_bytes: u64,
}

impl Model {
    fn line(seq: u64) -> String {
        let pad = "x".repeat((seq as usize * 7) % 50);
        format!(r#"{{"seq":{seq},"pad":"{pad}"}}"#)
    }

    /// Records delivered events and returns the sequence numbers of repeated lines.
    fn record(&mut self, events: &[TailEvent]) -> HashSet<u64> {
        let mut repeated = HashSet::new();
        for event in events {
            match event {
                TailEvent::Line(line) => {
                    let text = std::str::from_utf8(&line.bytes).unwrap();
                    let value: serde_json::Value = serde_json::from_str(text).unwrap();
                    let seq = value["seq"].as_u64().unwrap();
                    let count = self.delivered.entry(seq).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        self.first_order.push(seq);
                    } else {
                        repeated.insert(seq);
                    }
                    self.since_checkpoint.insert(seq);
                }
                TailEvent::Problem(problem) => match &problem.kind {
                    ProblemKind::Truncated {
                        possibly_lost_bytes,
                    } => {
                        self.reported_lost_bytes += possibly_lost_bytes;
                    }
                    ProblemKind::FileVanished { .. } => {}
                    other => panic!("unexpected problem {other:?} at {:?}", problem.position),
                },
            }
        }
        repeated
    }
}

struct Harness {
    fixture: Fixture,
    config: TailerConfig,
    tailer: Option<Tailer>,
    model: Model,
    copies: u32,
}

impl Harness {
    fn new() -> Self {
        let fixture = Fixture::new();
        let mut config = fixture.config();
        config.read_chunk_bytes = 64;
        config.max_poll_bytes = 300;
        let mut tailer = Tailer::open(config.clone()).unwrap();
        // Like the agent, checkpoint right away so that a crash is never a first start.
        tailer.write_checkpoint().unwrap();
        Self {
            fixture,
            config,
            tailer: Some(tailer),
            model: Model::default(),
            copies: 0,
        }
    }

    fn tailer(&mut self) -> &mut Tailer {
        self.tailer.as_mut().unwrap()
    }

    fn poll(&mut self) -> HashSet<u64> {
        let events = drain(self.tailer());
        self.model.record(&events)
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append { count, split_last } => self.append(*count, *split_last),
            Op::Poll => {
                let repeated = self.poll();
                assert!(repeated.is_empty(), "repeated {repeated:?} without a crash");
            }
            Op::RenameRotate => {
                if self.fixture.log.exists() {
                    self.shift(false);
                    fs::File::create(&self.fixture.log).unwrap();
                    self.model.live.clear();
                }
            }
            Op::OsqueryRotate => {
                let size = fs::metadata(&self.fixture.log).map_or(0, |metadata| metadata.len());
                if size > 0 {
                    self.shift(true);
                    self.model.live.clear();
                }
            }
            Op::CopyTruncate => self.copy_truncate(),
            Op::CopyElsewhereTruncate => self.copy_elsewhere_truncate(),
            Op::Restart => self.restart(),
            Op::Kill => self.kill(),
        }
    }

    fn append(&mut self, count: u8, split_last: bool) {
        for index in 0..count {
            let seq = self.model.next_seq;
            self.model.next_seq += 1;
            let text = format!("{}\n", Model::line(seq));
            let last = index + 1 == count;
            if split_last && last {
                let (head, tail) = text.as_bytes().split_at(text.len() / 2);
                self.fixture.append(head);
                let repeated = self.poll();
                assert!(repeated.is_empty(), "repeated {repeated:?} without a crash");
                self.fixture.append(tail);
            } else {
                self.fixture.append(text.as_bytes());
            }
            self.model.written.push(seq);
            self.model.live.push(seq);
        }
    }

    /// Shifts rotated files up by one and renames the live file to `.1`.
    fn shift(&mut self, compress_first: bool) {
        self.shift_rotated(compress_first);
        fs::rename(&self.fixture.log, self.fixture.rotated(1, false)).unwrap();
    }

    /// Shifts rotated files up by one, so that `.1` is free.
    fn shift_rotated(&mut self, compress_first: bool) {
        let highest = (1..)
            .take_while(|&index| {
                self.fixture.rotated(index, false).exists()
                    || self.fixture.rotated(index, true).exists()
            })
            .last()
            .unwrap_or(0);
        for index in (2..=highest).rev() {
            for compressed in [false, true] {
                let from = self.fixture.rotated(index, compressed);
                if from.exists() {
                    fs::rename(&from, self.fixture.rotated(index + 1, compressed)).unwrap();
                }
            }
        }
        let first = self.fixture.rotated(1, false);
        if first.exists() {
            if compress_first {
                let compressed = zstd::encode_all(&fs::read(&first).unwrap()[..], 3).unwrap();
                fs::write(self.fixture.rotated(2, true), compressed).unwrap();
                fs::remove_file(&first).unwrap();
            } else {
                fs::rename(&first, self.fixture.rotated(2, false)).unwrap();
            }
        }
    }

    fn copy_truncate(&mut self) {
        if !self.fixture.log.exists() {
            return;
        }
        self.shift_rotated(false);
        fs::copy(&self.fixture.log, self.fixture.rotated(1, false)).unwrap();
        fs::File::create(&self.fixture.log).unwrap();
        // The lines now sit in `.1`, as after a rename rotation.
        self.model.live.clear();
    }

    fn copy_elsewhere_truncate(&mut self) {
        if !self.fixture.log.exists() {
            return;
        }
        self.copies += 1;
        let copy: PathBuf = self
            .fixture
            .dir
            .path()
            .join(format!("copy-{}", self.copies));
        fs::copy(&self.fixture.log, copy).unwrap();
        fs::File::create(&self.fixture.log).unwrap();
        for seq in self.model.live.drain(..) {
            self.model.truncated_away.insert(seq);
            if !self.model.delivered.contains_key(&seq) {
                self.model.lost.insert(seq);
                self.model.lost_bytes += Model::line(seq).len() as u64 + 1;
            }
        }
    }

    fn restart(&mut self) {
        self.tailer().write_checkpoint().unwrap();
        self.model.since_checkpoint.clear();
        self.tailer = None;
        self.tailer = Some(Tailer::open(self.config.clone()).unwrap());
        let repeated = self.poll();
        assert!(
            repeated.is_empty(),
            "repeated {repeated:?} after a clean restart"
        );
    }

    fn kill(&mut self) {
        let at_risk: HashSet<u64> = self
            .model
            .since_checkpoint
            .difference(&self.model.truncated_away)
            .copied()
            .collect();
        for seq in &at_risk {
            *self.model.allowed_repeats.entry(*seq).or_insert(0) += 1;
        }
        self.tailer = None;
        self.tailer = Some(Tailer::open(self.config.clone()).unwrap());
        let repeated = self.poll();
        assert_eq!(
            repeated, at_risk,
            "repeats after a crash differ from the unacknowledged lines"
        );
    }

    fn check_final(&mut self) {
        let repeated = self.poll();
        assert!(repeated.is_empty(), "repeated {repeated:?} without a crash");
        let model = &self.model;
        let expected: Vec<u64> = model
            .written
            .iter()
            .copied()
            .filter(|seq| !model.lost.contains(seq))
            .collect();
        assert_eq!(
            model.first_order, expected,
            "first deliveries differ from written lines"
        );
        for (seq, count) in &model.delivered {
            let allowed = 1 + model.allowed_repeats.get(seq).copied().unwrap_or(0);
            assert!(
                *count <= allowed,
                "line {seq} delivered {count} times, allowed {allowed}"
            );
        }
        assert!(model.reported_lost_bytes <= model.lost_bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn delivered_lines_match_model(ops in prop::collection::vec(op_strategy(), 1..40)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op);
        }
        harness.check_final();
    }
}

/// Shrunk cases that once failed, kept as fixed scenarios.
#[test]
fn model_regressions() {
    let append = |count| Op::Append {
        count,
        split_last: false,
    };
    let split = Op::Append {
        count: 1,
        split_last: true,
    };
    let cases = [
        // A partial line held, then the file truncated and renamed before the next poll.
        vec![split.clone(), Op::CopyTruncate, Op::RenameRotate, append(1)],
        vec![
            split.clone(),
            Op::CopyElsewhereTruncate,
            Op::RenameRotate,
            append(1),
        ],
        // Two copytruncates between polls, the first of content never read.
        vec![
            append(2),
            Op::CopyTruncate,
            append(1),
            Op::CopyTruncate,
            append(1),
        ],
        // A held partial line, two copytruncates and a rename between polls.
        vec![
            split.clone(),
            Op::CopyTruncate,
            append(1),
            Op::CopyTruncate,
            append(1),
            Op::RenameRotate,
        ],
        // Content never read, two copytruncates and a rename between polls.
        vec![
            append(1),
            Op::CopyTruncate,
            Op::Poll,
            append(1),
            Op::CopyTruncate,
            append(1),
            Op::RenameRotate,
            append(1),
        ],
        // A copytruncate of read content, then a crash before the checkpoint.
        vec![
            append(2),
            Op::Poll,
            append(1),
            Op::CopyTruncate,
            append(1),
            Op::Kill,
        ],
        // A file created, written and rotated while the path was never polled.
        vec![append(1), Op::OsqueryRotate],
        // A renamed file that was truncated, rewritten and compressed between polls.
        vec![
            split.clone(),
            Op::CopyElsewhereTruncate,
            append(1),
            Op::RenameRotate,
            append(1),
            Op::OsqueryRotate,
            append(1),
        ],
        vec![
            split,
            Op::CopyTruncate,
            append(1),
            Op::RenameRotate,
            append(1),
            Op::OsqueryRotate,
            append(1),
        ],
    ];
    for ops in cases {
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op);
        }
        harness.check_final();
    }
}
