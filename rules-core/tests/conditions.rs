//! The condition language on osquery-shaped events: every operator on string columns and on
//! `--logger_numerics` numbers, NULL (`""`) values, missing fields, and `action` and
//! `columns.*` on rows exploded from batch and snapshot records.
//!
//! Conditions are compiled the way the agent compiles them: by loading a configuration
//! directory that contains one rule.

mod common;

use rules_core::condition::Condition;
use rules_core::record::events;
use serde_json::{Value, json};

/// Compiles `condition`, failing the test when it does not compile.
fn compile(condition: Value) -> Condition {
    common::compile_condition(&condition)
        .unwrap_or_else(|errors| panic!("condition {condition} does not compile: {errors}"))
}

/// Builds a differential event (`--logger_event_type=true`) of one added row.
fn differential(columns: Value) -> Value {
    json!({
        "name": "pack_detection_listening_processes",
        "hostIdentifier": "web-07",
        "calendarTime": "Fri Mar 14 09:12:41 2025 UTC",
        "unixTime": 1741943561,
        "epoch": 0,
        "counter": 1,
        "numerics": false,
        "decorations": {"hostname": "web-07"},
        "columns": columns,
        "action": "added"
    })
}

/// Evaluates `condition` on a differential event whose row is `columns`.
fn check(condition: Value, columns: Value) -> bool {
    let record = differential(columns);
    let rows = events("osquery:differential", &record);
    assert_eq!(rows.len(), 1);
    compile(condition).matches(&rows[0])
}

/// Evaluates `{"field": "columns.v", operator: operand}` on a row whose `v` is `value`.
fn column(operator: &str, operand: Value, value: Value) -> bool {
    let mut predicate = json!({"field": "columns.v"});
    predicate[operator] = operand;
    check(predicate, json!({ "v": value }))
}

/// Like [`column`] with `"ignore_case": true`.
fn column_ignore_case(operator: &str, operand: Value, value: Value) -> bool {
    let mut predicate = json!({"field": "columns.v", "ignore_case": true});
    predicate[operator] = operand;
    check(predicate, json!({ "v": value }))
}

/// Evaluates `condition` on every event of `record` as `log_type`.
fn check_rows(condition: Value, log_type: &str, record: &Value) -> Vec<bool> {
    let condition = compile(condition);
    events(log_type, record)
        .iter()
        .map(|event| condition.matches(event))
        .collect()
}

#[test]
fn eq_text_on_string_column() {
    assert!(column("eq", json!("nc"), json!("nc")));
    assert!(!column("eq", json!("nc"), json!("ncat")));
    assert!(!column("eq", json!("nc"), json!("NC")));
    assert!(!column("eq", json!("nc"), json!("")));
}

#[test]
fn eq_number_on_string_and_numeric_column() {
    assert!(column("eq", json!(4444), json!("4444")));
    assert!(column("eq", json!(4444), json!(4444)));
    assert!(column("eq", json!(4444), json!("4444.0")));
    assert!(!column("eq", json!(4444), json!("4445")));
    assert!(!column("eq", json!(4444), json!("")));
    assert!(!column("eq", json!(4444), json!("port 4444")));
}

#[test]
fn eq_text_on_numeric_column() {
    assert!(column("eq", json!("4444"), json!(4444)));
    assert!(column("eq", json!("4444"), json!("4444")));
    assert!(!column("eq", json!("4444"), json!(4445)));
}

#[test]
fn eq_u64_max_is_exact() {
    let max = json!(18446744073709551615u64);
    assert!(column("eq", max.clone(), json!("18446744073709551615")));
    assert!(column("eq", max.clone(), json!(18446744073709551615u64)));
    assert!(!column("eq", max.clone(), json!("18446744073709551614")));
    assert!(!column("eq", max, json!(18446744073709551614u64)));
}

#[test]
fn eq_above_2_pow_53_is_exact() {
    let operand = json!(9007199254740993u64);
    assert!(column("eq", operand.clone(), json!("9007199254740993")));
    assert!(!column("eq", operand.clone(), json!("9007199254740992")));
    assert!(!column("eq", operand, json!(9007199254740992u64)));
}

#[test]
fn eq_negative_numbers() {
    assert!(column("eq", json!(-1), json!("-1")));
    assert!(column("eq", json!(-1), json!(-1)));
    assert!(!column("eq", json!(-1), json!("1")));
    assert!(column("eq", json!(i64::MIN), json!("-9223372036854775808")));
    assert!(!column(
        "eq",
        json!(i64::MIN),
        json!("-9223372036854775807")
    ));
}

#[test]
fn eq_whole_real() {
    assert!(column("eq", json!(2), json!("2.0")));
    assert!(column("eq", json!(2.0), json!("2")));
    assert!(column("eq", json!(2.0), json!(2.0)));
    assert!(column("eq", json!("2.0"), json!(2.0)));
    assert!(!column("eq", json!("2.0"), json!("2")));
    assert!(!column("eq", json!(2.5), json!("2")));
}

#[test]
fn eq_boolean() {
    assert!(column("eq", json!(true), json!(true)));
    assert!(column("eq", json!(true), json!("true")));
    assert!(column("eq", json!(true), json!("TRUE")));
    assert!(!column("eq", json!(true), json!(false)));
    assert!(!column("eq", json!(true), json!("1")));
    assert!(!column("eq", json!(true), json!(1)));
    assert!(column("eq", json!(false), json!(false)));
    assert!(column("eq", json!(false), json!("false")));
    assert!(!column("eq", json!(false), json!("")));
    assert!(column("eq", json!("true"), json!(true)));
}

#[test]
fn ne_text_and_number() {
    assert!(column("ne", json!("root"), json!("mallory")));
    assert!(!column("ne", json!("root"), json!("root")));
    assert!(!column("ne", json!(0), json!("0")));
    assert!(!column("ne", json!(0), json!(0)));
    assert!(column("ne", json!(0), json!("1")));
    // NULL is not equal to 0.
    assert!(column("ne", json!(0), json!("")));
}

#[test]
fn in_mixed_literals() {
    let operand = json!(["nc", 4444, true]);
    assert!(column("in", operand.clone(), json!("nc")));
    assert!(column("in", operand.clone(), json!("4444")));
    assert!(column("in", operand.clone(), json!(4444)));
    assert!(column("in", operand.clone(), json!("true")));
    assert!(!column("in", operand.clone(), json!("ncat")));
    assert!(!column("in", operand, json!("")));
    assert!(!column("in", json!([]), json!("nc")));
}

#[test]
fn contains_list() {
    let operand = json!(["-e /bin/sh", "-c "]);
    assert!(column(
        "contains",
        operand.clone(),
        json!("nc -lvnp 4444 -e /bin/sh")
    ));
    assert!(column("contains", operand.clone(), json!("sh -c id")));
    assert!(!column("contains", operand.clone(), json!("nc -lvnp 4444")));
    assert!(column("contains", json!("lvnp"), json!("nc -lvnp 4444")));
    assert!(column("contains", json!("44"), json!(4444)));
    assert!(!column("contains", json!([]), json!("anything")));
}

#[test]
fn starts_with_list() {
    let operand = json!(["/tmp/", "/dev/shm/"]);
    assert!(column("starts_with", operand.clone(), json!("/dev/shm/x")));
    assert!(column("starts_with", operand.clone(), json!("/tmp/")));
    assert!(!column("starts_with", operand.clone(), json!("/var/tmp/x")));
    assert!(!column("starts_with", operand, json!("")));
    assert!(column("starts_with", json!("-"), json!(-5)));
}

#[test]
fn ends_with_list() {
    let operand = json!(["/nc", "/ncat"]);
    assert!(column("ends_with", operand.clone(), json!("/usr/bin/ncat")));
    assert!(!column(
        "ends_with",
        operand.clone(),
        json!("/usr/bin/nc.openbsd")
    ));
    assert!(!column("ends_with", operand, json!("")));
    assert!(column("ends_with", json!(".0"), json!(2.0)));
}

#[test]
fn ignore_case_ascii() {
    assert!(column_ignore_case("eq", json!("NC"), json!("nc")));
    assert!(column_ignore_case("eq", json!("nc"), json!("Nc")));
    assert!(!column_ignore_case("eq", json!("nc"), json!("ncat")));
    assert!(column_ignore_case("ne", json!("ROOT"), json!("admin")));
    assert!(!column_ignore_case("ne", json!("ROOT"), json!("root")));
    assert!(column_ignore_case("in", json!(["NCAT"]), json!("ncat")));
    assert!(column_ignore_case(
        "contains",
        json!("BIN"),
        json!("/usr/bin/nc")
    ));
    assert!(column_ignore_case(
        "starts_with",
        json!(["/USR/"]),
        json!("/usr/bin/nc")
    ));
    assert!(column_ignore_case(
        "ends_with",
        json!(["/NC"]),
        json!("/usr/bin/nc")
    ));
    assert!(column_ignore_case(
        "regex",
        json!("^/USR/"),
        json!("/usr/bin/nc")
    ));
}

#[test]
fn ignore_case_non_ascii() {
    assert!(column_ignore_case("eq", json!("ÜBER"), json!("über")));
    assert!(!column("eq", json!("ÜBER"), json!("über")));
    assert!(column_ignore_case("contains", json!("É"), json!("café")));
    assert!(column_ignore_case(
        "starts_with",
        json!("ПРО"),
        json!("процесс")
    ));
    assert!(column_ignore_case("regex", json!("^ÜBER$"), json!("über")));
}

/// Regression: `str::to_lowercase` turns a word-final `Σ` into `ς`, so a field could lose a
/// match by turning on `ignore_case`.
#[test]
fn ignore_case_greek_final_sigma() {
    assert!(column_ignore_case("eq", json!("ΟΔΟΣ"), json!("οδος")));
    assert!(column_ignore_case("eq", json!("οδος"), json!("ΟΔΟΣ")));
    assert!(column_ignore_case("eq", json!("ΟΔΟΣ"), json!("ΟΔΟΣ")));
    assert!(column_ignore_case("contains", json!("Σ"), json!("ΟΔΟΣ")));
    assert!(column_ignore_case("ends_with", json!("ς"), json!("ΟΔΟΣ")));
    assert!(column_ignore_case("in", json!(["ΟΔΟΣ"]), json!("Οδος")));
}

#[test]
fn regex_on_text_and_numbers() {
    let tmp = json!("^/(tmp|var/tmp|dev/shm)/");
    assert!(column("regex", tmp.clone(), json!("/tmp/x")));
    assert!(!column("regex", tmp.clone(), json!("/home/tmp/x")));
    assert!(!column("regex", tmp.clone(), json!("/TMP/x")));
    assert!(!column("regex", tmp, json!("")));
    assert!(column("regex", json!("lvnp"), json!("nc -lvnp 4444")));
    assert!(column("regex", json!("^44"), json!(4444)));
    assert!(!column("regex", json!("."), json!({"nested": "x"})));
    assert!(!column("regex", json!("."), json!(["x"])));
}

#[test]
fn cidr_ipv4() {
    let private = json!(["10.0.0.0/8", "192.168.0.0/16"]);
    assert!(column("cidr", private.clone(), json!("10.1.2.3")));
    assert!(column("cidr", private.clone(), json!("192.168.1.1")));
    assert!(!column("cidr", private.clone(), json!("11.0.0.1")));
    assert!(!column("cidr", private, json!("::1")));
    assert!(column("cidr", json!("127.0.0.1"), json!("127.0.0.1")));
    assert!(!column("cidr", json!("127.0.0.1"), json!("127.0.0.2")));
}

#[test]
fn cidr_ipv6() {
    assert!(column("cidr", json!(["fd00::/8"]), json!("fd12:3456::1")));
    assert!(!column("cidr", json!(["fd00::/8"]), json!("fe80::1")));
    assert!(!column("cidr", json!(["0.0.0.0/0"]), json!("::1")));
    assert!(column("cidr", json!(["::/0"]), json!("::1")));
}

#[test]
fn cidr_ipv6_zone_id() {
    assert!(column("cidr", json!(["fe80::/10"]), json!("fe80::1%eth0")));
    assert!(!column("cidr", json!(["fd00::/8"]), json!("fe80::1%eth0")));
}

/// Regression: a dual-stack socket reports an IPv4 peer as `::ffff:a.b.c.d`.
#[test]
fn cidr_ipv4_mapped_ipv6() {
    assert!(column(
        "cidr",
        json!(["10.0.0.0/8"]),
        json!("::ffff:10.1.2.3")
    ));
    assert!(!column(
        "cidr",
        json!(["10.0.0.0/8"]),
        json!("::ffff:11.1.2.3")
    ));
    assert!(column(
        "cidr",
        json!(["::ffff:0:0/96"]),
        json!("::ffff:10.1.2.3")
    ));
}

#[test]
fn cidr_invalid_address() {
    let operand = json!(["0.0.0.0/0", "::/0"]);
    assert!(!column("cidr", operand.clone(), json!("not-an-ip")));
    assert!(!column("cidr", operand.clone(), json!("")));
    assert!(!column("cidr", operand.clone(), json!("10.1.2.3/32")));
    assert!(!column("cidr", operand.clone(), json!("10.1.2.3:443")));
    assert!(!column("cidr", operand.clone(), json!(167837955)));
    assert!(!column("cidr", operand, json!("%eth0")));
}

#[test]
fn compare_string_and_numeric_columns() {
    assert!(column("gt", json!(1024), json!("4444")));
    assert!(column("gt", json!(1024), json!(4444)));
    assert!(!column("gt", json!(1024), json!("1024")));
    assert!(column("gte", json!(1024), json!("1024")));
    assert!(column("lt", json!(1024), json!("22")));
    assert!(!column("lt", json!(1024), json!("1024")));
    assert!(column("lte", json!(22), json!("22")));
    assert!(!column("lte", json!(22), json!(23)));
}

#[test]
fn compare_large_and_negative_integers() {
    assert!(column(
        "gt",
        json!(9007199254740992u64),
        json!("9007199254740993")
    ));
    assert!(column(
        "lt",
        json!(18446744073709551615u64),
        json!("18446744073709551614")
    ));
    assert!(column(
        "gt",
        json!(18446744073709551615u64),
        json!("18446744073709551616")
    ));
    assert!(column("lt", json!(0), json!("-5")));
    assert!(column("gt", json!(-10), json!(-5)));
    assert!(!column("gt", json!(-5), json!("-10")));
}

#[test]
fn compare_reals() {
    assert!(column("gte", json!(2.5), json!("2.5")));
    assert!(!column("gt", json!(2.5), json!("2.0")));
    assert!(column("gt", json!(2), json!("2.5")));
    assert!(column("lt", json!(2.5), json!(2)));
    assert!(column("lt", json!(1e10), json!("1e9")));
}

#[test]
fn compare_null_is_false() {
    for operator in ["gt", "gte", "lt", "lte"] {
        assert!(!column(operator, json!(0), json!("")), "{operator} on \"\"");
    }
    assert!(check(
        json!({"not": {"field": "columns.v", "gt": 0}}),
        json!({"v": ""})
    ));
}

#[test]
fn compare_non_numbers_is_false() {
    for value in [
        json!("abc"),
        json!("1e400"),
        json!("NaN"),
        json!("inf"),
        json!(" 5"),
        json!("0x10"),
        json!(true),
        json!(null),
    ] {
        assert!(!column("gte", json!(0), value.clone()), "gte 0 on {value}");
    }
}

#[test]
fn exists_on_null_and_missing() {
    assert!(column("exists", json!(true), json!("")));
    assert!(!column("exists", json!(false), json!("")));
    assert!(check(
        json!({"field": "columns.absent", "exists": false}),
        json!({"v": "1"})
    ));
    assert!(!check(
        json!({"field": "columns.absent", "exists": true}),
        json!({"v": "1"})
    ));
}

#[test]
fn missing_field_is_false_for_every_operator() {
    let operators = [
        ("eq", json!("x")),
        ("ne", json!("x")),
        ("in", json!(["x"])),
        ("contains", json!("x")),
        ("starts_with", json!("x")),
        ("ends_with", json!("x")),
        ("regex", json!(".*")),
        ("cidr", json!("0.0.0.0/0")),
        ("gt", json!(0)),
        ("gte", json!(0)),
        ("lt", json!(0)),
        ("lte", json!(0)),
        ("exists", json!(true)),
    ];
    for (operator, operand) in operators {
        let mut predicate = json!({"field": "columns.absent"});
        predicate[operator] = operand;
        let negated = json!({ "not": predicate.clone() });
        assert!(!check(predicate, json!({"v": "x"})), "{operator}");
        assert!(check(negated, json!({"v": "x"})), "not {operator}");
    }
}

#[test]
fn missing_path_below_scalar_is_false() {
    assert!(!check(
        json!({"field": "columns.v.inner", "eq": "x"}),
        json!({"v": "x"})
    ));
    assert!(!check(
        json!({"field": "decorations.hostname.x", "exists": true}),
        json!({"v": "x"})
    ));
}

#[test]
fn empty_all_and_any() {
    assert!(check(json!({"all": []}), json!({})));
    assert!(!check(json!({"any": []}), json!({})));
    assert!(check(json!({"not": {"any": []}}), json!({})));
}

fn batch() -> Value {
    json!({
        "name": "pack_detection_listening_processes",
        "hostIdentifier": "web-07",
        "calendarTime": "Fri Mar 14 09:12:41 2025 UTC",
        "unixTime": 1741943561,
        "epoch": 0,
        "counter": 2,
        "decorations": {"hostname": "web-07"},
        "diffResults": {
            "removed": [{"name": "nc", "pid": "1", "port": "4444"}],
            "added": [{"name": "nc", "pid": "2", "port": "4444"}, {"name": "sshd", "pid": "3", "port": "22"}]
        }
    })
}

#[test]
fn batch_rows_carry_action() {
    let record = batch();
    let removed = json!({"field": "action", "eq": "removed"});
    let added = json!({"field": "action", "eq": "added"});
    assert_eq!(
        check_rows(removed, "osquery:batch", &record),
        [true, false, false]
    );
    assert_eq!(
        check_rows(added, "osquery:batch", &record),
        [false, true, true]
    );
}

#[test]
fn batch_rows_read_columns_and_envelope() {
    let record = batch();
    let pid = json!({"field": "columns.pid", "eq": 2});
    let host = json!({"field": "hostIdentifier", "eq": "web-07"});
    let decoration = json!({"field": "decorations.hostname", "eq": "web-07"});
    let counter = json!({"field": "counter", "gt": 1});
    assert_eq!(
        check_rows(pid, "osquery:batch", &record),
        [false, true, false]
    );
    assert_eq!(
        check_rows(host, "osquery:batch", &record),
        [true, true, true]
    );
    assert_eq!(
        check_rows(decoration, "osquery:batch", &record),
        [true, true, true]
    );
    assert_eq!(
        check_rows(counter, "osquery:batch", &record),
        [true, true, true]
    );
}

#[test]
fn batch_kinesis_empty_removed_gives_added_rows_only() {
    let mut record = batch();
    record["diffResults"]["removed"] = json!("");
    let added = json!({"field": "action", "eq": "added"});
    assert_eq!(check_rows(added, "osquery:batch", &record), [true, true]);
}

#[test]
fn snapshot_rows_carry_action_and_columns() {
    let record = json!({
        "name": "pack_snapshots_listening_processes",
        "hostIdentifier": "web-07",
        "calendarTime": "Fri Mar 14 09:12:41 2025 UTC",
        "unixTime": 1741943561,
        "epoch": 0,
        "counter": 0,
        "action": "snapshot",
        "snapshot": [{"name": "nc", "port": 4444}, {"name": "sshd", "port": 22}]
    });
    let snapshot = json!({"field": "action", "eq": "snapshot"});
    let port = json!({"field": "columns.port", "gt": 1024});
    let not_name = json!({"not": {"field": "columns.name", "eq": "sshd"}});
    assert_eq!(
        check_rows(snapshot, "osquery:snapshot", &record),
        [true, true]
    );
    assert_eq!(check_rows(port, "osquery:snapshot", &record), [true, false]);
    assert_eq!(
        check_rows(not_name, "osquery:snapshot", &record),
        [true, false]
    );
}

/// Regression: osquery's aws_kinesis logger writes an empty snapshot as `""`, which used to
/// give one event without a row, so a negated condition matched the empty snapshot.
#[test]
fn snapshot_kinesis_empty_has_no_rows() {
    let record = json!({
        "name": "pack_snapshots_listening_processes",
        "hostIdentifier": "web-07",
        "calendarTime": "Fri Mar 14 09:12:41 2025 UTC",
        "unixTime": "1741943561",
        "epoch": "0",
        "counter": "0",
        "action": "snapshot",
        "snapshot": "",
        "log_type": "result"
    });
    let negated = json!({"not": {"field": "columns.name", "eq": "sshd"}});
    assert!(check_rows(negated, "osquery:snapshot", &record).is_empty());
}

#[test]
fn differential_action_reads_record() {
    let removed = json!({"field": "action", "eq": "removed"});
    let added = json!({"field": "action", "eq": "added"});
    assert!(!check(removed, json!({"pid": "1"})));
    assert!(check(added, json!({"pid": "1"})));
}
