//! Line assembly: partial lines, long lines, raw bytes and glued fragments.

mod common;

use common::{Fixture, drain, lines, problems, texts};
use tailer::{ProblemKind, TailEvent, Tailer};

#[test]
fn partial_line_completed_later() {
    let fixture = Fixture::new();
    fixture.append(b"{\"a\":1}\n{\"b\":");
    let mut tailer = fixture.open();
    assert_eq!(texts(&drain(&mut tailer)), [r#"{"a":1}"#]);

    fixture.append(b"2}");
    assert!(drain(&mut tailer).is_empty());
    fixture.append(b"\n");
    let events = drain(&mut tailer);
    assert_eq!(texts(&events), [r#"{"b":2}"#]);
    assert_eq!(events[0].position().start, 8);
    assert_eq!(events[0].position().end, 16);
}

#[test]
fn line_over_limit_is_skipped() {
    let fixture = Fixture::new();
    let long = vec![b'x'; 20 << 20];
    fixture.append(&long);
    fixture.append(b"\nnext\n");
    let mut config = fixture.config();
    config.max_line_bytes = 16 << 20;
    let mut tailer = Tailer::open(config).unwrap();

    let events = drain(&mut tailer);
    let expected = ProblemKind::LineTooLong { len: 20 << 20 };
    assert_eq!(problems(&events), [expected]);
    assert_eq!(texts(&events), ["next"]);
    assert_eq!(events[0].position().end, (20 << 20) + 1);
}

#[test]
fn multi_mib_line_spans_polls() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.max_poll_bytes = 1 << 20;
    let mut tailer = Tailer::open(config).unwrap();
    let long: Vec<u8> = (0..5_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    fixture.append(&long);
    fixture.append(b"\n");

    let first = tailer.poll().unwrap();
    assert!(first.is_empty());
    assert!(tailer.has_more());
    let events = drain(&mut tailer);
    let delivered = lines(&events);
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].bytes == long, "long line changed in delivery");
}

#[test]
fn invalid_utf8_is_delivered_exactly() {
    let fixture = Fixture::new();
    let record = b"{\"name\":\"q\",\"columns\":{\"cmdline\":\"a\xff\xfe\xc0b{\\\"x\"}}".to_vec();
    let mut bytes = record.clone();
    bytes.extend_from_slice(b"\n\xff\xfe raw\n");
    fixture.append(&bytes);
    let mut tailer = fixture.open();

    let events = drain(&mut tailer);
    assert!(problems(&events).is_empty());
    let delivered: Vec<Vec<u8>> = lines(&events).into_iter().map(|line| line.bytes).collect();
    assert_eq!(delivered, [record, b"\xff\xfe raw".to_vec()]);
}

#[test]
fn glued_fragment_is_split() {
    let fixture = Fixture::new();
    let fragment = br#"{"name":"q","colu"#;
    let record = br#"{"name":"q2","columns":{"pid":"1"},"action":"added"}"#;
    fixture.append(fragment);
    fixture.append(record);
    fixture.append(b"\n{\"name\":\"q3\"}\n");
    let mut tailer = fixture.open();

    let events = drain(&mut tailer);
    let expected = ProblemKind::GluedFragment {
        fragment: fragment.to_vec(),
    };
    assert_eq!(problems(&events), [expected]);
    let record_text = String::from_utf8(record.to_vec()).unwrap();
    assert_eq!(texts(&events), [record_text.as_str(), r#"{"name":"q3"}"#]);
    let TailEvent::Problem(problem) = &events[0] else {
        panic!("first event is not the fragment: {events:?}");
    };
    assert_eq!(problem.position.start, 0);
    assert_eq!(problem.position.end, fragment.len() as u64);
    let glued_end = (fragment.len() + record.len() + 1) as u64;
    assert_eq!(events[1].position().start, fragment.len() as u64);
    assert_eq!(events[1].position().end, glued_end);
}

#[test]
fn glued_recovery_can_be_disabled() {
    let fixture = Fixture::new();
    fixture.append(b"{\"a\":{\"b\":1}\n");
    let mut config = fixture.config();
    config.recover_glued_records = false;
    let mut tailer = Tailer::open(config).unwrap();
    assert_eq!(texts(&drain(&mut tailer)), [r#"{"a":{"b":1}"#]);
}

#[test]
fn non_json_lines_pass_through() {
    let fixture = Fixture::new();
    fixture.append(b"plain text\n\n{broken}\n");
    let mut tailer = fixture.open();
    let events = drain(&mut tailer);
    assert!(problems(&events).is_empty());
    assert_eq!(texts(&events), ["plain text", "", "{broken}"]);
}
