//! Rotation, truncation and deletion of the followed file.

mod common;

use std::fs;

use common::{Fixture, append_to, drain, problems, texts};
use tailer::{ProblemKind, TailEvent};

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

#[test]
fn copytruncate_restarts_at_zero() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a", "b"]);

    fixture.append(b"par");
    assert!(drain(&mut tailer).is_empty());
    fixture.append_lines(&["c"]);
    fs::copy(&fixture.log, fixture.rotated(1, false)).unwrap();
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
