//! Rotation, truncation and deletion of the followed file.

mod common;

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{Fixture, append_to, drain, problems, texts};
use tailer::{Problem, ProblemKind, TailEvent};

#[test]
fn rename_rotation_while_running() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a", "b"]);

    fixture.append_lines(&["c"]);
    fs::rename(&fixture.log, fixture.rotated(1, false)).unwrap();
    fixture.append_lines(&["d", "e"]);
    let events = drain(&mut tailer);
    assert_eq!(texts(&events), ["c", "d", "e"]);
    assert!(problems(&events).is_empty());
}

#[test]
fn rotated_file_gets_late_lines() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.rotate_grace = std::time::Duration::from_secs(3600);
    let mut tailer = tailer::Tailer::open(config).unwrap();
    fixture.append_lines(&["a"]);
    assert_eq!(texts(&drain(&mut tailer)), ["a"]);

    let rotated = fixture.rotated(1, false);
    fs::rename(&fixture.log, &rotated).unwrap();
    fixture.append_lines(&["b"]);
    assert_eq!(texts(&drain(&mut tailer)), ["b"]);

    append_to(&rotated, b"late\n");
    assert_eq!(texts(&drain(&mut tailer)), ["late"]);
}

#[test]
fn rotated_partial_line_is_reported() {
    let fixture = Fixture::new();
    fixture.append(b"a\npart");
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a"]);

    fs::rename(&fixture.log, fixture.rotated(1, false)).unwrap();
    fixture.append_lines(&["b"]);
    let events = drain(&mut tailer);
    let expected = ProblemKind::UnterminatedLine {
        bytes: b"part".to_vec(),
    };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["b"]);
    let TailEvent::Problem(problem) = &events[0] else {
        panic!("first event is not the problem: {events:?}");
    };
    assert_eq!((problem.position.start, problem.position.end), (2, 6));
}

#[test]
fn osquery_rotation_while_closed() {
    let fixture = Fixture::new();
    fixture.append_lines(&["l1", "l2"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["l1", "l2"]);
    tailer.write_checkpoint().unwrap();
    fixture.append_lines(&["l3"]);
    drop(tailer);

    fixture.osquery_rotate();
    fixture.append_lines(&["l4", "l5"]);
    fixture.osquery_rotate();
    fixture.append_lines(&["l6"]);
    assert!(fixture.rotated(2, true).exists());
    assert!(fixture.rotated(1, false).exists());

    let mut tailer = fixture.open();
    let events = drain(&mut tailer);
    assert_eq!(texts(&events), ["l3", "l4", "l5", "l6"]);
    assert!(problems(&events).is_empty());
    let paths: Vec<_> = common::lines(&events)
        .into_iter()
        .map(|line| line.position.path)
        .collect();
    let expected = [
        fixture.rotated(2, true),
        fixture.rotated(1, false),
        fixture.rotated(1, false),
        fixture.log.clone(),
    ];
    assert_eq!(paths, expected);
}

#[test]
fn osquery_rotations_between_polls() {
    let fixture = Fixture::new();
    fixture.append_lines(&["l1"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["l1"]);

    fixture.append_lines(&["l2"]);
    fixture.osquery_rotate();
    fixture.append_lines(&["l3"]);
    fixture.osquery_rotate();
    fixture.append_lines(&["l4"]);
    fixture.osquery_rotate();
    fixture.append_lines(&["l5"]);
    assert!(fixture.rotated(3, true).exists());

    let events = drain(&mut tailer);
    assert_eq!(texts(&events), ["l2", "l3", "l4", "l5"]);
    assert!(problems(&events).is_empty());
}

#[test]
fn restart_after_rotation_skips_read_archives() {
    let fixture = Fixture::new();
    fixture.append_lines(&["l1"]);
    let mut tailer = fixture.open();
    drain(&mut tailer);
    fixture.osquery_rotate();
    fixture.append_lines(&["l2"]);
    assert_eq!(texts(&drain(&mut tailer)), ["l2"]);
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    fixture.osquery_rotate();
    fixture.append_lines(&["l3"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["l3"]);
}

/// Copies the live file to `.1` and truncates it, as logrotate `copytruncate` does.
fn copy_truncate(fixture: &Fixture) {
    fs::copy(&fixture.log, fixture.rotated(1, false)).unwrap();
    fs::File::create(&fixture.log).unwrap();
}

/// Returns the events of `events` that are `Truncated` problems.
fn truncations(events: &[TailEvent]) -> Vec<&Problem> {
    events
        .iter()
        .filter_map(|event| match event {
            TailEvent::Problem(problem)
                if matches!(problem.kind, ProblemKind::Truncated { .. }) =>
            {
                Some(problem)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn copytruncate_reads_rest_from_copy() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a", "b"]);

    fixture.append(b"par");
    assert!(drain(&mut tailer).is_empty());
    fixture.append_lines(&["t", "c"]);
    copy_truncate(&fixture);
    fixture.append_lines(&["d"]);

    let events = drain(&mut tailer);
    let expected = ProblemKind::Truncated {
        possibly_lost_bytes: 0,
    };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["part", "c", "d"]);
    let positions: Vec<_> = common::lines(&events)
        .into_iter()
        .map(|line| (line.position.path, line.position.start))
        .collect();
    let copy = fixture.rotated(1, false);
    let expected = [(copy.clone(), 4), (copy, 9), (fixture.log.clone(), 0)];
    assert_eq!(positions, expected);

    tailer.write_checkpoint().unwrap();
    drop(tailer);
    let mut tailer = fixture.open();
    fixture.append_lines(&["e"]);
    let events = drain(&mut tailer);
    assert_eq!(texts(&events), ["e"]);
    assert!(problems(&events).is_empty());
}

#[test]
fn copytruncate_keeps_ack_tracking() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b"]);
    let mut tailer = fixture.open();
    let before = tailer.poll().unwrap();
    assert_eq!(texts(&before), ["a", "b"]);
    let copy_first_stream = before[0].position().stream;

    fixture.append_lines(&["c"]);
    copy_truncate(&fixture);
    fixture.append_lines(&["d"]);
    let after = tailer.poll().unwrap();
    assert_eq!(texts(&after), ["c", "d"]);
    // The copy continues the read pass of the truncated content.
    assert_eq!(after[1].position().stream, copy_first_stream);
    for event in before.iter().chain(&after) {
        tailer.ack(event.position());
    }
    assert_eq!(tailer.unacked_bytes(), 0);
    assert!(drain(&mut tailer).is_empty());
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    let mut tailer = fixture.open();
    assert!(drain(&mut tailer).is_empty());
}

#[test]
fn copytruncate_unacked_lines_redeliver_from_copy() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a"]);
    tailer.write_checkpoint().unwrap();

    fixture.append_lines(&["b"]);
    assert_eq!(texts(&tailer.poll().unwrap()), ["b"]);
    fixture.append_lines(&["c"]);
    copy_truncate(&fixture);
    fixture.append_lines(&["d"]);
    let events = tailer.poll().unwrap();
    assert_eq!(texts(&events), ["c", "d"]);
    // Only "d" is acknowledged; "b" and "c" stay unacknowledged in the copy.
    tailer.ack(events.last().unwrap().position());
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    let mut tailer = fixture.open();
    let events = drain(&mut tailer);
    assert_eq!(texts(&events), ["b", "c"]);
    assert!(problems(&events).is_empty());
}

#[test]
fn copytruncate_counts_bytes_missing_from_copy() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b"]);
    let mut config = fixture.config();
    config.max_unacked_bytes = 1;
    let mut tailer = tailer::Tailer::open(config).unwrap();
    let first = tailer.poll().unwrap();
    assert_eq!(texts(&first), ["a", "b"]);

    fixture.append_lines(&["c"]);
    fs::copy(&fixture.log, fixture.rotated(1, false)).unwrap();
    // Written after the copy; the tailer observes the size but backpressure keeps it
    // from reading these 14 bytes.
    fixture.append_lines(&["lost-1", "lost-2"]);
    assert!(tailer.poll().unwrap().is_empty());
    fs::File::create(&fixture.log).unwrap();
    fixture.append_lines(&["d"]);

    for event in &first {
        tailer.ack(event.position());
    }
    let events = drain(&mut tailer);
    let expected = ProblemKind::Truncated {
        possibly_lost_bytes: 14,
    };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["c", "d"]);
    let truncated = truncations(&events);
    assert_eq!(truncated[0].position.start, 6);
    assert_eq!(truncated[0].position.end, 20);
}

#[test]
fn truncation_without_copy_counts_unread() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a", "b"]);

    fixture.append(b"par");
    assert!(drain(&mut tailer).is_empty());
    fixture.append_lines(&["c"]);
    fs::copy(&fixture.log, fixture.dir.path().join("elsewhere.log")).unwrap();
    fs::File::create(&fixture.log).unwrap();
    fixture.append_lines(&["d"]);

    let events = drain(&mut tailer);
    // The tailer saw "par" but not the "c\n" written after it, so it counts 3 bytes.
    let expected = ProblemKind::Truncated {
        possibly_lost_bytes: 3,
    };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["d"]);
    assert_eq!(events[1].position().start, 0);

    tailer.write_checkpoint().unwrap();
    drop(tailer);
    let mut tailer = fixture.open();
    fixture.append_lines(&["e"]);
    assert_eq!(texts(&drain(&mut tailer)), ["e"]);
}

#[test]
fn copy_without_unread_bytes_is_skipped() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a"]);
    let mut tailer = fixture.open();
    fs::copy(&fixture.log, fixture.rotated(1, false)).unwrap();
    fixture.append_lines(&["b"]);
    assert_eq!(texts(&drain(&mut tailer)), ["a", "b"]);
    fs::File::create(&fixture.log).unwrap();
    fixture.append_lines(&["c"]);

    let events = drain(&mut tailer);
    let expected = ProblemKind::Truncated {
        possibly_lost_bytes: 0,
    };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["c"]);

    tailer.write_checkpoint().unwrap();
    drop(tailer);
    let mut tailer = fixture.open();
    assert!(drain(&mut tailer).is_empty());
}

#[test]
fn copytruncate_from_compressed_copy() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a"]);

    fixture.append_lines(&["b", "c"]);
    let content = fs::read(&fixture.log).unwrap();
    fs::write(
        fixture.rotated(1, true),
        zstd::encode_all(&content[..], 3).unwrap(),
    )
    .unwrap();
    fs::File::create(&fixture.log).unwrap();
    fixture.append_lines(&["d"]);

    let events = drain(&mut tailer);
    let expected = ProblemKind::Truncated {
        possibly_lost_bytes: 0,
    };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["b", "c", "d"]);
}

#[test]
fn copytruncates_between_polls_read_in_order() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a"]);

    fixture.append_lines(&["b"]);
    copy_truncate(&fixture);
    fixture.append_lines(&["c"]);
    fs::rename(fixture.rotated(1, false), fixture.rotated(2, false)).unwrap();
    copy_truncate(&fixture);
    fixture.append_lines(&["d"]);

    let events = drain(&mut tailer);
    let expected = ProblemKind::Truncated {
        possibly_lost_bytes: 0,
    };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["b", "c", "d"]);
}

#[test]
fn copytruncate_before_first_read() {
    let fixture = Fixture::new();
    fs::File::create(&fixture.log).unwrap();
    let mut tailer = fixture.open();
    assert!(drain(&mut tailer).is_empty());

    // Nothing of this content is read before it is copied and truncated, so the
    // live file itself shows no sign of the truncation.
    fixture.append_lines(&["a", "b"]);
    copy_truncate(&fixture);
    fixture.append_lines(&["c"]);
    let events = drain(&mut tailer);
    assert_eq!(texts(&events), ["a", "b", "c"]);
    assert!(problems(&events).is_empty());
}

#[test]
fn copy_in_progress_is_not_read_twice() {
    let fixture = Fixture::new();
    fs::File::create(&fixture.log).unwrap();
    let mut config = fixture.config();
    config.max_unacked_bytes = 1;
    let mut tailer = tailer::Tailer::open(config).unwrap();
    assert!(drain(&mut tailer).is_empty());

    fixture.append_lines(&["a", "b"]);
    // The first half of a copy that is still being written.
    fs::write(fixture.rotated(1, false), b"a\n").unwrap();
    let events = drain(&mut tailer);
    assert_eq!(texts(&events), ["a", "b"]);
    fixture.append_lines(&["c"]);
    assert_eq!(texts(&drain(&mut tailer)), ["c"]);
}

#[test]
fn truncation_hidden_by_regrowth_is_detected() {
    let fixture = Fixture::new();
    fixture.append_lines(&["first-line"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["first-line"]);

    fs::File::create(&fixture.log).unwrap();
    fixture.append_lines(&["other-line", "more"]);
    let events = drain(&mut tailer);
    let expected = ProblemKind::Truncated {
        possibly_lost_bytes: 0,
    };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["other-line", "more"]);
}

#[test]
fn deleted_and_recreated_file() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a"]);

    fixture.append_lines(&["b"]);
    fs::remove_file(&fixture.log).unwrap();
    assert_eq!(texts(&drain(&mut tailer)), ["b"]);
    assert!(tailer.status().is_empty());

    fixture.append_lines(&["c"]);
    let events = drain(&mut tailer);
    assert_eq!(texts(&events), ["c"]);
    assert_eq!(events[0].position().start, 0);
}

#[test]
fn archive_over_limit_is_reported() {
    let fixture = Fixture::new();
    fixture.append_lines(&["aaaa"]);
    let mut tailer = fixture.open();
    drain(&mut tailer);
    tailer.write_checkpoint().unwrap();
    fixture.append_lines(&["bbbb", "cccc", "dddd"]);
    drop(tailer);
    fixture.osquery_rotate();
    fixture.append_lines(&["x"]);
    fixture.osquery_rotate();
    fixture.append_lines(&["y"]);

    let mut config = fixture.config();
    config.max_decompressed_bytes = 12;
    let mut tailer = tailer::Tailer::open(config).unwrap();
    let events = drain(&mut tailer);
    let expected = ProblemKind::ArchiveTooLarge { limit: 12 };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["bbbb", "x", "y"]);
}

#[test]
fn copytruncate_under_load_loses_nothing() {
    const LINES: u64 = 400;
    let fixture = Arc::new(Fixture::new());
    fs::File::create(&fixture.log).unwrap();
    let mut tailer = fixture.open();
    // The writer waits while a rotation runs, as the copy and the truncation must
    // both see every line for none to be lost.
    let lock = Arc::new(Mutex::new(()));
    let writing = Arc::new(AtomicBool::new(true));

    let writer = {
        let (fixture, lock, writing) = (fixture.clone(), lock.clone(), writing.clone());
        thread::spawn(move || {
            for seq in 0..LINES {
                {
                    let _guard = lock.lock().unwrap();
                    fixture.append(format!("{{\"seq\":{seq}}}\n").as_bytes());
                }
                thread::sleep(Duration::from_millis(1));
            }
            writing.store(false, Ordering::SeqCst);
        })
    };
    let rotator = {
        let (fixture, lock, writing) = (fixture.clone(), lock.clone(), writing.clone());
        thread::spawn(move || {
            let mut rotations = 0;
            while writing.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20));
                let _guard = lock.lock().unwrap();
                for index in (1..=rotations).rev() {
                    fs::rename(
                        fixture.rotated(index, false),
                        fixture.rotated(index + 1, false),
                    )
                    .unwrap();
                }
                copy_truncate(&fixture);
                rotations += 1;
            }
            rotations
        })
    };

    let mut events = Vec::new();
    while writing.load(Ordering::SeqCst) {
        let polled = tailer.poll().unwrap();
        for event in &polled {
            tailer.ack(event.position());
        }
        events.extend(polled);
        thread::sleep(Duration::from_micros(200));
    }
    writer.join().unwrap();
    let rotations = rotator.join().unwrap();
    events.extend(drain(&mut tailer));

    assert!(rotations >= 5, "only {rotations} rotations ran");
    let seqs: Vec<u64> = texts(&events)
        .iter()
        .map(|text| {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            value["seq"].as_u64().unwrap()
        })
        .collect();
    let mut counts = vec![0u32; LINES as usize];
    for &seq in &seqs {
        counts[seq as usize] += 1;
    }
    let missing: Vec<u64> = (0..LINES)
        .filter(|&seq| counts[seq as usize] == 0)
        .collect();
    let repeated: Vec<u64> = (0..LINES).filter(|&seq| counts[seq as usize] > 1).collect();
    let misordered: Vec<(u64, u64)> = seqs
        .windows(2)
        .filter(|pair| pair[0] >= pair[1])
        .map(|pair| (pair[0], pair[1]))
        .collect();
    assert!(missing.is_empty(), "missing lines {missing:?}");
    assert!(repeated.is_empty(), "repeated lines {repeated:?}");
    assert!(misordered.is_empty(), "lines out of order {misordered:?}");
    for kind in problems(&events) {
        let ProblemKind::Truncated {
            possibly_lost_bytes,
        } = kind
        else {
            panic!("unexpected problem {kind:?}");
        };
        assert_eq!(possibly_lost_bytes, 0);
    }
}
