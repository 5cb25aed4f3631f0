//! Restart from the checkpoint: resume offsets, identity checks and bad checkpoints.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::{Fixture, drain, problems, texts};
use tailer::{ProblemKind, StartAt, StartupWarning, Tailer};

#[test]
fn restart_resumes_after_acked_lines() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b", "c"]);
    let mut tailer = fixture.open();
    let events = tailer.poll().unwrap();
    assert_eq!(texts(&events), ["a", "b", "c"]);
    tailer.ack(events[1].position());
    tailer.ack(events[0].position());
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    fixture.append_lines(&["d"]);
    let mut tailer = fixture.open();
    assert!(tailer.startup_warnings().is_empty());
    assert_eq!(texts(&drain(&mut tailer)), ["c", "d"]);
}

#[test]
fn ack_gap_holds_checkpoint_back() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b", "c"]);
    let mut tailer = fixture.open();
    let events = tailer.poll().unwrap();
    tailer.ack(events[2].position());
    tailer.ack(events[0].position());
    let status = tailer.status();
    assert_eq!(status[0].acked_offset, 2);
    assert_eq!(status[0].unacked_bytes, 2);
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["b", "c"]);
}

#[test]
fn kill_without_checkpoint_redelivers() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a"]);
    let mut tailer = fixture.open();
    drain(&mut tailer);
    tailer.write_checkpoint().unwrap();
    fixture.append_lines(&["b", "c"]);
    assert_eq!(texts(&drain(&mut tailer)), ["b", "c"]);
    drop(tailer);

    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["b", "c"]);
}

#[test]
fn inode_reuse_reads_from_zero() {
    let fixture = Fixture::new();
    fixture.append_lines(&["old-1", "old-2"]);
    let mut tailer = fixture.open();
    drain(&mut tailer);
    tailer.write_checkpoint().unwrap();
    let old_inode = fs::metadata(&fixture.log).unwrap().ino();
    drop(tailer);

    fs::remove_file(&fixture.log).unwrap();
    fixture.append_lines(&["new-1", "new-2", "new-3"]);
    // The file system may or may not hand out the old inode again. Point the
    // checkpoint at the new inode so that the case is always an inode reuse.
    let new_inode = fs::metadata(&fixture.log).unwrap().ino();
    let json = fs::read_to_string(&fixture.checkpoint).unwrap();
    let needle = format!("\"inode\":{old_inode},");
    assert!(json.contains(&needle), "checkpoint lacks {needle}: {json}");
    let replaced = json.replace(&needle, &format!("\"inode\":{new_inode},"));
    fs::write(&fixture.checkpoint, replaced).unwrap();

    let mut tailer = fixture.open();
    let events = drain(&mut tailer);
    assert_eq!(texts(&events), ["new-1", "new-2", "new-3"]);
    // The old file was read to its end, so nothing of it is reported lost.
    assert!(problems(&events).is_empty());
}

#[test]
fn deleted_read_file_is_not_reported() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a", "b"]);
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    fs::remove_file(&fixture.log).unwrap();
    let mut tailer = fixture.open();
    assert_eq!(drain(&mut tailer), []);
    tailer.write_checkpoint().unwrap();
    assert!(file_records(&fixture).is_empty());
    drop(tailer);

    let mut tailer = fixture.open();
    assert_eq!(drain(&mut tailer), []);
}

#[test]
fn vanished_file_is_reported_once() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b", "c"]);
    let mut tailer = fixture.open();
    let events = tailer.poll().unwrap();
    assert_eq!(texts(&events), ["a", "b", "c"]);
    tailer.ack(events[0].position());
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    fs::remove_file(&fixture.log).unwrap();
    let mut tailer = fixture.open();
    let events = drain(&mut tailer);
    assert_eq!(events.len(), 1);
    assert_eq!(
        problems(&events),
        [ProblemKind::FileVanished { acked_offset: 2 }]
    );
    assert_eq!(events[0].position().path, fixture.log);
    assert_eq!(events[0].position().start, 2);
    tailer.write_checkpoint().unwrap();
    assert!(file_records(&fixture).is_empty());
    drop(tailer);

    let mut tailer = fixture.open();
    assert_eq!(drain(&mut tailer), []);
}

#[test]
fn rewrite_in_place_is_reported_once() {
    let fixture = Fixture::new();
    fixture.append_lines(&["old-1", "old-2"]);
    let mut tailer = fixture.open();
    let events = tailer.poll().unwrap();
    assert_eq!(texts(&events), ["old-1", "old-2"]);
    tailer.ack(events[0].position());
    tailer.write_checkpoint().unwrap();
    let inode = fs::metadata(&fixture.log).unwrap().ino();
    drop(tailer);

    fs::write(&fixture.log, b"new-1\n").unwrap();
    assert_eq!(fs::metadata(&fixture.log).unwrap().ino(), inode);
    let mut tailer = fixture.open();
    let events = drain(&mut tailer);
    assert_eq!(events.len(), 2);
    assert_eq!(
        problems(&events),
        [ProblemKind::FileVanished { acked_offset: 6 }]
    );
    assert_eq!(texts(&events), ["new-1"]);
    tailer.write_checkpoint().unwrap();
    assert_eq!(file_records(&fixture).len(), 1);
    drop(tailer);

    fixture.append_lines(&["new-2"]);
    let mut tailer = fixture.open();
    let events = drain(&mut tailer);
    assert_eq!(events.len(), 1);
    assert_eq!(texts(&events), ["new-2"]);
}

#[test]
fn rewrite_after_full_read_is_silent() {
    let fixture = Fixture::new();
    fixture.append_lines(&["old-1", "old-2"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["old-1", "old-2"]);
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    fs::write(&fixture.log, b"new-1\n").unwrap();
    let mut tailer = fixture.open();
    let events = drain(&mut tailer);
    assert_eq!(events.len(), 1);
    assert_eq!(texts(&events), ["new-1"]);
}

#[test]
fn truncation_while_running_leaves_no_entry() {
    let fixture = Fixture::new();
    fixture.append_lines(&["old-1", "old-2"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["old-1", "old-2"]);
    fs::write(&fixture.log, b"new-1\n").unwrap();
    let events = drain(&mut tailer);
    assert_eq!(events.len(), 2);
    assert_eq!(
        problems(&events),
        [ProblemKind::Truncated {
            possibly_lost_bytes: 0
        }]
    );
    assert_eq!(texts(&events), ["new-1"]);
    tailer.write_checkpoint().unwrap();
    let states: Vec<String> = file_records(&fixture)
        .iter()
        .map(|record| record["state"].as_str().unwrap().to_owned())
        .collect();
    // The old content is kept only as a `done` entry, which is never reported.
    assert_eq!(states, ["reading", "done"]);
    drop(tailer);

    let mut tailer = fixture.open();
    assert_eq!(drain(&mut tailer), []);
}

#[test]
fn entry_without_observed_size_is_reported_once() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a"]);
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a"]);
    tailer.write_checkpoint().unwrap();
    drop(tailer);
    // A checkpoint written before `observed_size` existed.
    let json = fs::read_to_string(&fixture.checkpoint).unwrap();
    let mut document: serde_json::Value = serde_json::from_str(&json).unwrap();
    for record in document["files"].as_array_mut().unwrap() {
        let removed = record.as_object_mut().unwrap().remove("observed_size");
        assert_eq!(removed, Some(serde_json::json!(2)));
    }
    fs::write(&fixture.checkpoint, document.to_string()).unwrap();

    fs::remove_file(&fixture.log).unwrap();
    let mut tailer = fixture.open();
    assert!(tailer.startup_warnings().is_empty());
    let events = drain(&mut tailer);
    // Without the observed size, the tailer cannot tell that nothing was unread.
    assert_eq!(
        problems(&events),
        [ProblemKind::FileVanished { acked_offset: 2 }]
    );
    assert_eq!(events.len(), 1);
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    let mut tailer = fixture.open();
    assert_eq!(drain(&mut tailer), []);
}

#[test]
fn failed_lookup_keeps_entry_unreported() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b"]);
    let mut tailer = fixture.open();
    let events = tailer.poll().unwrap();
    tailer.ack(events[0].position());
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    fs::remove_file(&fixture.log).unwrap();
    // A directory under a rotated name fails to be read, so the lookup is incomplete.
    let blocker = fixture.rotated(1, false);
    fs::create_dir(&blocker).unwrap();
    let mut tailer = fixture.open();
    assert_eq!(drain(&mut tailer), []);
    tailer.write_checkpoint().unwrap();
    assert_eq!(file_records(&fixture).len(), 1);
    drop(tailer);

    fs::remove_dir(&blocker).unwrap();
    let mut tailer = fixture.open();
    let events = drain(&mut tailer);
    assert_eq!(
        problems(&events),
        [ProblemKind::FileVanished { acked_offset: 2 }]
    );
    assert_eq!(events.len(), 1);
}

/// Returns the `files` records of the checkpoint as JSON values.
fn file_records(fixture: &Fixture) -> Vec<serde_json::Value> {
    let json = fs::read_to_string(&fixture.checkpoint).unwrap();
    let document: serde_json::Value = serde_json::from_str(&json).unwrap();
    document["files"].as_array().unwrap().clone()
}

#[test]
fn corrupt_checkpoint_uses_start_at() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a", "b"]);
    fs::write(&fixture.checkpoint, b"{\"version\":1,\"files\":[tru").unwrap();

    let mut tailer = fixture.open();
    let warnings = tailer.startup_warnings();
    assert_eq!(warnings.len(), 1);
    assert!(matches!(
        warnings[0],
        StartupWarning::CheckpointCorrupt { .. }
    ));
    assert_eq!(texts(&drain(&mut tailer)), ["a", "b"]);
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    let tailer = fixture.open();
    assert!(tailer.startup_warnings().is_empty());
}

#[test]
fn unreadable_checkpoint_is_reported() {
    let fixture = Fixture::new();
    fs::create_dir(&fixture.checkpoint).unwrap();
    let tailer = fixture.open();
    assert!(matches!(
        tailer.startup_warnings(),
        [StartupWarning::CheckpointUnreadable { .. }]
    ));
}

#[test]
fn start_at_end_keeps_partial_line() {
    let fixture = Fixture::new();
    fixture.append(b"old-1\nold-2\nnew-");
    let mut config = fixture.config();
    config.start_at = StartAt::End;
    let mut tailer = Tailer::open(config).unwrap();
    assert!(drain(&mut tailer).is_empty());

    fixture.append(b"1\nnew-2\n");
    assert_eq!(texts(&drain(&mut tailer)), ["new-1", "new-2"]);
}

#[test]
fn start_at_end_ignored_after_checkpoint() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.start_at = StartAt::End;
    let mut tailer = Tailer::open(config.clone()).unwrap();
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    fixture.append_lines(&["created-later"]);
    let mut tailer = Tailer::open(config).unwrap();
    assert_eq!(texts(&drain(&mut tailer)), ["created-later"]);
}

#[test]
fn expired_entries_are_dropped() {
    let fixture = Fixture::new();
    fixture.append_lines(&["a"]);
    let mut tailer = fixture.open();
    drain(&mut tailer);
    tailer.write_checkpoint().unwrap();
    drop(tailer);
    let json = fs::read_to_string(&fixture.checkpoint).unwrap();
    let mut document: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["followed", "files"] {
        for record in document[key].as_array_mut().unwrap() {
            record["last_seen_unix_ms"] = serde_json::json!(0);
        }
    }
    fs::write(&fixture.checkpoint, document.to_string()).unwrap();

    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), ["a"]);
}
