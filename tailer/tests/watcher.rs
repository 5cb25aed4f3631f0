//! Wakeups from the inotify watcher.

mod common;

use std::fs;
use std::sync::mpsc;
use std::time::Duration;

use common::Fixture;
use tailer::Watcher;

/// Generous bound for an inotify event to arrive on a loaded machine.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

fn drain_channel(receiver: &mpsc::Receiver<()>) {
    while receiver.try_recv().is_ok() {}
}

#[test]
fn watcher_wakes_on_append_and_rotation() {
    let fixture = Fixture::new();
    let (sender, receiver) = mpsc::channel();
    let watcher = Watcher::new(std::slice::from_ref(&fixture.log), move || {
        let _ = sender.send(());
    })
    .unwrap();
    assert_eq!(watcher.watched_dirs(), [fixture.dir.path().to_path_buf()]);

    fixture.append_lines(&["a"]);
    assert!(receiver.recv_timeout(EVENT_TIMEOUT).is_ok());

    drain_channel(&receiver);
    fs::rename(&fixture.log, fixture.rotated(1, false)).unwrap();
    assert!(receiver.recv_timeout(EVENT_TIMEOUT).is_ok());
}

#[test]
fn watcher_skips_missing_directory() {
    let fixture = Fixture::new();
    let missing = fixture.dir.path().join("absent").join("x.log");
    let watcher = Watcher::new(&[missing, fixture.log.clone()], || {}).unwrap();
    assert_eq!(watcher.watched_dirs(), [fixture.dir.path().to_path_buf()]);
}
