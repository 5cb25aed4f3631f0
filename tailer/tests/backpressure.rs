//! Backpressure on unacknowledged bytes and acknowledgement across files.

mod common;

use common::{Fixture, append_to, drain, texts};
use tailer::{StartAt, Tailer, TailerConfig};

#[test]
fn poll_stops_at_unacked_limit() {
    let fixture = Fixture::new();
    let all: Vec<String> = (0..20).map(|i| format!("line-{i:04}")).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    fixture.append_lines(&refs);
    let mut config = fixture.config();
    config.max_unacked_bytes = 30;
    config.read_chunk_bytes = 16;
    let mut tailer = Tailer::open(config).unwrap();

    let first = tailer.poll().unwrap();
    assert!(!first.is_empty());
    // Each line is 10 bytes; reading stops once 30 bytes are unacknowledged and may
    // finish the 16-byte chunk that crossed the limit.
    assert!(tailer.unacked_bytes() >= 30);
    assert!(tailer.unacked_bytes() < 30 + 16 + 10);
    assert!(tailer.poll().unwrap().is_empty());
    assert!(!tailer.has_more());

    for event in &first {
        tailer.ack(event.position());
    }
    assert_eq!(tailer.unacked_bytes(), 0);
    let mut delivered = texts(&first);
    delivered.extend(texts(&drain(&mut tailer)));
    assert_eq!(delivered, all);
}

#[test]
fn acks_across_files_in_any_order() {
    let fixture = Fixture::new();
    let other = fixture.dir.path().join("osqueryd.snapshots.log");
    fixture.append_lines(&["r1", "r2"]);
    append_to(&other, b"s1\ns2\n");
    let mut config = TailerConfig::new(
        vec![fixture.log.clone(), other.clone()],
        fixture.checkpoint.clone(),
    );
    config.start_at = StartAt::Beginning;
    let mut tailer = Tailer::open(config.clone()).unwrap();

    let events = tailer.poll().unwrap();
    assert_eq!(texts(&events), ["r1", "r2", "s1", "s2"]);
    tailer.ack(events[3].position());
    tailer.ack(events[1].position());
    tailer.ack(events[2].position());
    let acked: Vec<u64> = tailer
        .status()
        .iter()
        .map(|status| status.acked_offset)
        .collect();
    assert_eq!(acked, [0, 6]);
    tailer.write_checkpoint().unwrap();
    drop(tailer);

    let mut tailer = Tailer::open(config).unwrap();
    assert_eq!(texts(&drain(&mut tailer)), ["r1", "r2"]);
}

#[test]
fn poll_budget_sets_has_more() {
    let fixture = Fixture::new();
    fixture.append_lines(&["aaaa", "bbbb", "cccc"]);
    let mut config = fixture.config();
    config.max_poll_bytes = 5;
    let mut tailer = Tailer::open(config).unwrap();
    assert_eq!(texts(&tailer.poll().unwrap()), ["aaaa"]);
    assert!(tailer.has_more());
    assert_eq!(texts(&drain(&mut tailer)), ["bbbb", "cccc"]);
}
