//! Dedup and digest state machine: decisions on synthetic alerts, on alerts built from the
//! osquery fixtures with the shipped rules, persistence, clock changes, caps, and property
//! tests against a reference model of the documented semantics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use rules_core::alert::Alert;
use rules_core::dedup::{
    CLOCK_SKEW_TOLERANCE_SECONDS, DEFAULT_REPLAY_WINDOW_SECONDS, Decision, DedupLimits, DedupState,
    DedupStateError, Digest,
};
use rules_core::rule::{DedupSettings, Severity, Tier};
use rules_core::{Config, Source};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

static CONFIG: LazyLock<Config> =
    LazyLock::new(|| Config::load(&repo().join("conf")).expect("the shipped configuration loads"));

/// Lines of `tests/data/osquery/results_event.log`, so that `lines[n - 1]` is line `n`.
static RESULTS_EVENT: LazyLock<Vec<String>> = LazyLock::new(|| {
    let path = repo().join("tests/data/osquery/results_event.log");
    let text = std::fs::read_to_string(path).expect("fixture is readable");
    text.lines().map(str::to_owned).collect()
});

fn fixture_line(number: usize) -> &'static str {
    &RESULTS_EVENT[number - 1]
}

/// Classifies `line` and returns the alerts of every rule that matches one of its rows.
fn evaluate_line(line: &str) -> Vec<Alert> {
    let classified = CONFIG
        .classify(&Source::new("file", "osquery"), line.as_bytes())
        .unwrap_or_else(|error| panic!("line does not classify: {error}: {line}"));
    classified
        .events()
        .iter()
        .flat_map(|event| CONFIG.rules.evaluate(event))
        .collect()
}

/// Builds the alert of the shipped rule `rule_name` for the single row of `line`, whether
/// or not the rule's condition matches it.
fn alert_for_rule(rule_name: &str, line: &str) -> Alert {
    let classified = CONFIG
        .classify(&Source::new("file", "osquery"), line.as_bytes())
        .unwrap();
    let events = classified.events();
    assert_eq!(events.len(), 1, "one row per line in the event format");
    let rule = CONFIG.rules.get(rule_name).unwrap();
    Alert::new(rule, &events[0])
}

fn rule_settings(alert: &Alert) -> Option<DedupSettings> {
    CONFIG.rules.get(&alert.rule).unwrap().spec.dedup.clone()
}

fn unix_time(line: &str) -> u64 {
    let record: Value = serde_json::from_str(line).unwrap();
    record["unixTime"].as_u64().unwrap()
}

/// Rewrites a fixture line as osqueryd logs it after restarting with a fresh database:
/// counter 0, action `added`, at `unix_time`.
fn counter_zero_redump(line: &str, unix_time: u64, calendar_time: &str) -> String {
    let mut record: Value = serde_json::from_str(line).unwrap();
    record["counter"] = Value::from(0);
    record["unixTime"] = Value::from(unix_time);
    record["calendarTime"] = Value::from(calendar_time);
    record["action"] = Value::from("added");
    record.to_string()
}

/// Observes every alert of `line` with its rule's dedup settings at the line's `unixTime`.
fn observe_line(state: &mut DedupState, line: &str, now: u64) -> Vec<(String, Decision)> {
    evaluate_line(line)
        .into_iter()
        .map(|alert| {
            let settings = rule_settings(&alert);
            let decision = state.observe(&alert, settings.as_ref(), now);
            (alert.rule, decision)
        })
        .collect()
}

fn alert(alert_id: &str, dedup_key: &str) -> Alert {
    Alert {
        alert_id: alert_id.to_owned(),
        rule: "test_rule".to_owned(),
        description: "test rule".to_owned(),
        severity: Severity::High,
        log_type: "osquery:differential".to_owned(),
        host: Some("web-07".to_owned()),
        query: Some("pack_test".to_owned()),
        outputs: vec!["slack:security".to_owned()],
        staged: false,
        tier: Tier::Both,
        dedup_key: dedup_key.to_owned(),
        context: BTreeMap::new(),
        record: Value::Null,
    }
}

fn settings(window_seconds: u64, threshold: u32) -> DedupSettings {
    DedupSettings {
        keys: vec!["hostIdentifier".to_owned()],
        window_seconds,
        threshold,
    }
}

fn suppressed(count: u64) -> Decision {
    Decision::Suppressed { count }
}

fn digest(dedup_key: &str, count: u64, window_seconds: u64, first: u64, last: u64) -> Digest {
    Digest {
        rule: "test_rule".to_owned(),
        host: Some("web-07".to_owned()),
        dedup_key: dedup_key.to_owned(),
        count,
        window_seconds,
        first_seen: first,
        last_seen: last,
    }
}

// ---------------------------------------------------------------------------------------
// Alert ids
// ---------------------------------------------------------------------------------------

#[test]
fn first_alert_notifies() {
    let mut state = DedupState::default();
    let decision = state.observe(&alert("a1", "k"), None, 1_000);
    assert_eq!(decision, Decision::Notify);
    assert!(decision.notifies());

    let mut state = DedupState::default();
    let decision = state.observe(&alert("a1", "k"), Some(&settings(60, 1)), 1_000);
    assert_eq!(decision, Decision::Notify);
}

#[test]
fn repeated_id_is_duplicate_without_settings() {
    let mut state = DedupState::default();
    assert_eq!(
        state.observe(&alert("a1", "k"), None, 1_000),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a1", "k"), None, 1_000),
        Decision::Duplicate
    );
    assert_eq!(
        state.observe(&alert("a1", "k"), None, 5_000),
        Decision::Duplicate
    );
    assert_eq!(
        state.observe(&alert("a2", "k"), None, 5_000),
        Decision::Notify
    );
    assert_eq!(state.alert_id_count(), 2);
}

#[test]
fn repeated_id_not_counted_with_settings() {
    let mut state = DedupState::default();
    let dedup = settings(60, 1);
    assert_eq!(
        state.observe(&alert("a1", "k"), Some(&dedup), 100),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a1", "k"), Some(&dedup), 101),
        Decision::Duplicate
    );
    assert_eq!(
        state.observe(&alert("a2", "k"), Some(&dedup), 102),
        suppressed(1)
    );
    assert_eq!(
        state.observe(&alert("a2", "k"), Some(&dedup), 103),
        Decision::Duplicate
    );
    assert_eq!(
        state.observe(&alert("a3", "k"), Some(&dedup), 104),
        suppressed(2)
    );

    let digests = state.due_digests(160);
    assert_eq!(digests, vec![digest("k", 2, 60, 100, 104)]);
}

#[test]
fn alert_id_notifies_again_after_replay_window() {
    let mut state = DedupState::default();
    let start = 1_000;
    assert_eq!(
        state.observe(&alert("a1", "k"), None, start),
        Decision::Notify
    );
    let last_inside = start + DEFAULT_REPLAY_WINDOW_SECONDS - 1;
    assert_eq!(
        state.observe(&alert("a1", "k"), None, last_inside),
        Decision::Duplicate
    );
    let end = start + DEFAULT_REPLAY_WINDOW_SECONDS;
    assert_eq!(
        state.observe(&alert("a1", "k"), None, end),
        Decision::Notify
    );
    // The id is now remembered from its second sighting.
    assert_eq!(
        state.observe(&alert("a1", "k"), None, end + 1),
        Decision::Duplicate
    );
}

#[test]
fn prune_forgets_expired_ids() {
    let mut state = DedupState::default();
    state.observe(&alert("a1", "k"), None, 1_000);
    state.observe(&alert("a2", "k"), None, 2_000);
    state.prune(1_000 + DEFAULT_REPLAY_WINDOW_SECONDS - 1);
    assert_eq!(state.alert_id_count(), 2);
    state.prune(1_000 + DEFAULT_REPLAY_WINDOW_SECONDS);
    assert_eq!(state.alert_id_count(), 1);
    state.prune(2_000 + DEFAULT_REPLAY_WINDOW_SECONDS);
    assert_eq!(state.alert_id_count(), 0);
    assert_eq!(state.evicted_alert_ids, 0);
}

#[test]
fn prune_closes_windows_keeps_digests() {
    let mut state = DedupState::default();
    let dedup = settings(60, 1);
    state.observe(&alert("a1", "quiet"), Some(&dedup), 100);
    state.observe(&alert("a2", "noisy"), Some(&dedup), 100);
    state.observe(&alert("a3", "noisy"), Some(&dedup), 110);
    state.prune(160);
    assert_eq!(state.window_count(), 0);
    assert_eq!(state.waiting_digest_count(), 1);
    assert_eq!(
        state.due_digests(160),
        vec![digest("noisy", 1, 60, 100, 110)]
    );
    assert_eq!(state.waiting_digest_count(), 0);
}

// ---------------------------------------------------------------------------------------
// Windows, thresholds and digests
// ---------------------------------------------------------------------------------------

#[test]
fn threshold_three_notifies_three_then_counts() {
    let mut state = DedupState::default();
    let dedup = settings(60, 3);
    let decisions: Vec<Decision> = (0..7)
        .map(|i| state.observe(&alert(&format!("a{i}"), "k"), Some(&dedup), 100 + i))
        .collect();
    let expected = vec![
        Decision::Notify,
        Decision::Notify,
        Decision::Notify,
        suppressed(1),
        suppressed(2),
        suppressed(3),
        suppressed(4),
    ];
    assert_eq!(decisions, expected);
}

#[test]
fn keys_are_counted_separately() {
    let mut state = DedupState::default();
    let dedup = settings(60, 1);
    assert_eq!(
        state.observe(&alert("a1", "k1"), Some(&dedup), 100),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a2", "k2"), Some(&dedup), 100),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a3", "k1"), Some(&dedup), 101),
        suppressed(1)
    );
    assert_eq!(
        state.observe(&alert("a4", "k2"), Some(&dedup), 101),
        suppressed(1)
    );
}

#[test]
fn digest_after_window_then_fresh_start() {
    let mut state = DedupState::default();
    let dedup = settings(60, 1);
    assert_eq!(
        state.observe(&alert("a1", "k"), Some(&dedup), 100),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a2", "k"), Some(&dedup), 110),
        suppressed(1)
    );
    assert_eq!(
        state.observe(&alert("a3", "k"), Some(&dedup), 159),
        suppressed(2)
    );

    assert_eq!(state.due_digests(159), vec![]);
    assert_eq!(state.due_digests(160), vec![digest("k", 2, 60, 100, 159)]);
    assert_eq!(state.due_digests(160), vec![], "a digest is returned once");
    assert_eq!(state.window_count(), 0);

    assert_eq!(
        state.observe(&alert("a4", "k"), Some(&dedup), 161),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a5", "k"), Some(&dedup), 162),
        suppressed(1)
    );
    assert_eq!(state.due_digests(220), vec![]);
    assert_eq!(state.due_digests(221), vec![digest("k", 1, 60, 161, 162)]);
}

#[test]
fn quiet_window_yields_no_digest() {
    let mut state = DedupState::default();
    let dedup = settings(60, 2);
    state.observe(&alert("a1", "k"), Some(&dedup), 100);
    state.observe(&alert("a2", "k"), Some(&dedup), 101);
    assert_eq!(state.window_count(), 1);
    assert_eq!(state.due_digests(1_000), vec![]);
    assert_eq!(state.window_count(), 0);
}

#[test]
fn window_is_fixed_from_first_alert() {
    let mut state = DedupState::default();
    let dedup = settings(60, 1);
    assert_eq!(
        state.observe(&alert("a1", "k"), Some(&dedup), 100),
        Decision::Notify
    );
    // Alerts inside the window do not extend it.
    assert_eq!(
        state.observe(&alert("a2", "k"), Some(&dedup), 150),
        suppressed(1)
    );
    assert_eq!(
        state.observe(&alert("a3", "k"), Some(&dedup), 159),
        suppressed(2)
    );
    assert_eq!(
        state.observe(&alert("a4", "k"), Some(&dedup), 160),
        Decision::Notify
    );
}

#[test]
fn late_alert_closes_window_keeps_digest() {
    let mut state = DedupState::default();
    let dedup = settings(60, 1);
    state.observe(&alert("a1", "k"), Some(&dedup), 100);
    state.observe(&alert("a2", "k"), Some(&dedup), 120);
    // No due_digests call before the key's next alert, which opens a new window.
    assert_eq!(
        state.observe(&alert("a3", "k"), Some(&dedup), 500),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a4", "k"), Some(&dedup), 501),
        suppressed(1)
    );
    assert_eq!(state.due_digests(501), vec![digest("k", 1, 60, 100, 120)]);
    assert_eq!(state.due_digests(560), vec![digest("k", 1, 60, 500, 501)]);
}

#[test]
fn window_keeps_settings_it_opened_with() {
    let mut state = DedupState::default();
    state.observe(&alert("a1", "k"), Some(&settings(60, 1)), 100);
    let changed = settings(600, 5);
    assert_eq!(
        state.observe(&alert("a2", "k"), Some(&changed), 101),
        suppressed(1)
    );
    assert_eq!(
        state.observe(&alert("a3", "k"), Some(&changed), 160),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a4", "k"), Some(&changed), 161),
        Decision::Notify
    );
    let digests = state.due_digests(160 + 600);
    assert_eq!(digests, vec![digest("k", 1, 60, 100, 101)]);
}

#[test]
fn flood_of_one_key_gives_one_digest() {
    let mut state = DedupState::default();
    let dedup = settings(300, 1);
    let now = 1_741_950_000;
    let mut notified = 0;
    let mut last = None;
    for i in 0..1_000 {
        let decision = state.observe(&alert(&format!("{i:032x}"), "k"), Some(&dedup), now);
        if decision.notifies() {
            notified += 1;
        }
        last = Some(decision);
    }
    assert_eq!(notified, 1);
    assert_eq!(last, Some(suppressed(999)));
    assert_eq!(state.due_digests(now + 299), vec![]);
    assert_eq!(
        state.due_digests(now + 300),
        vec![digest("k", 999, 300, now, now)]
    );
}

#[test]
fn digest_order_ignores_insertion_order() {
    let keys = ["m", "z", "a", "q"];
    let mut results = Vec::new();
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
        let mut state = DedupState::default();
        let dedup = settings(60, 1);
        for (n, &index) in order.iter().enumerate() {
            let key = keys[index];
            // Keys "m" and "z" open at 100, "a" and "q" at 101.
            let start = 100 + (index as u64 / 2);
            state.observe(&alert(&format!("{key}-1"), key), Some(&dedup), start);
            let repeat = format!("{key}-2");
            state.observe(&alert(&repeat, key), Some(&dedup), 110 + n as u64);
        }
        let digests = state.due_digests(1_000);
        let order: Vec<(u64, String)> = digests
            .iter()
            .map(|d| (d.first_seen, d.dedup_key.clone()))
            .collect();
        let expected = vec![
            (100, "m".to_owned()),
            (100, "z".to_owned()),
            (101, "a".to_owned()),
            (101, "q".to_owned()),
        ];
        assert_eq!(order, expected);
        results.push(order);
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

// ---------------------------------------------------------------------------------------
// Staged rules
// ---------------------------------------------------------------------------------------

#[test]
fn staged_alert_never_notifies_or_counts() {
    let mut state = DedupState::default();
    let dedup = settings(60, 1);
    let mut staged = alert("s1", "k");
    staged.staged = true;
    assert_eq!(state.observe(&staged, Some(&dedup), 100), Decision::Staged);
    assert_eq!(state.observe(&staged, Some(&dedup), 101), Decision::Staged);
    assert_eq!(state.observe(&staged, None, 102), Decision::Staged);
    assert_eq!(state.alert_id_count(), 0);
    assert_eq!(state.window_count(), 0);

    // The staged alerts opened no window, so the key's first real alert notifies.
    assert_eq!(
        state.observe(&alert("a1", "k"), Some(&dedup), 103),
        Decision::Notify
    );
    assert_eq!(state.observe(&staged, Some(&dedup), 104), Decision::Staged);
    assert_eq!(
        state.observe(&alert("a2", "k"), Some(&dedup), 105),
        suppressed(1)
    );
    assert_eq!(state.due_digests(1_000), vec![digest("k", 1, 60, 103, 105)]);
}

#[test]
fn staged_shipped_rule_is_staged() {
    let rule = CONFIG.rules.get("kernel_module_loaded").unwrap();
    assert!(rule.spec.staged);
    let line = fixture_line(11);
    let mut staged = alert_for_rule("kernel_module_loaded", line);
    assert!(staged.staged);
    let settings = rule.spec.dedup.clone();
    let mut state = DedupState::default();
    assert_eq!(
        state.observe(&staged, settings.as_ref(), 100),
        Decision::Staged
    );
    staged.alert_id = "other".to_owned();
    assert_eq!(
        state.observe(&staged, settings.as_ref(), 100),
        Decision::Staged
    );
    assert_eq!(state.alert_id_count(), 0);
}

// ---------------------------------------------------------------------------------------
// osquery fixtures with the shipped rules
// ---------------------------------------------------------------------------------------

#[test]
fn churn_pairs_do_not_notify_twice() {
    // (earlier `added` row of the same process, churn pair removed line, churn pair added line)
    for (first, removed, added) in [(12, 17, 18), (19, 25, 26)] {
        let first_line = fixture_line(first);
        let added_line = fixture_line(added);
        assert!(
            evaluate_line(fixture_line(removed)).is_empty(),
            "no shipped rule matches the removed row of line {removed}"
        );

        let before = alert_for_rule("netcat_listener", first_line);
        let after = alert_for_rule("netcat_listener", added_line);
        assert_ne!(before.alert_id, after.alert_id, "line {first} vs {added}");
        assert_eq!(before.dedup_key, after.dedup_key, "line {first} vs {added}");

        let settings = rule_settings(&before);
        let mut state = DedupState::default();
        let first_time = unix_time(first_line);
        let added_time = unix_time(added_line);
        let decision = state.observe(&before, settings.as_ref(), first_time);
        assert_eq!(decision, Decision::Notify, "line {first}");
        let decision = state.observe(&after, settings.as_ref(), added_time);
        assert_eq!(decision, suppressed(1), "line {added}");
    }
}

#[test]
fn results_event_log_notifies_once() {
    let mut state = DedupState::default();
    let mut decisions: Vec<(usize, String, Decision)> = Vec::new();
    for number in 1..=RESULTS_EVENT.len() {
        let line = fixture_line(number);
        for (rule, decision) in observe_line(&mut state, line, unix_time(line)) {
            decisions.push((number, rule, decision));
        }
    }
    let cmd = "netcat_command_execution".to_owned();
    let listener = "netcat_listener".to_owned();
    let expected = vec![
        (11, listener.clone(), Decision::Notify),
        (15, cmd.clone(), Decision::Notify),
        (15, listener.clone(), Decision::Notify),
        // The same ncat process listening on :: and 0.0.0.0.
        (16, cmd.clone(), suppressed(1)),
        (16, listener.clone(), suppressed(1)),
        // The ncat process row of the process query, then its churn pair.
        (19, cmd.clone(), suppressed(2)),
        (26, cmd.clone(), suppressed(3)),
    ];
    assert_eq!(decisions, expected);

    // Re-delivering the whole file changes nothing: every alert id is a duplicate.
    for number in 1..=RESULTS_EVENT.len() {
        let line = fixture_line(number);
        for (rule, decision) in observe_line(&mut state, line, unix_time(line) + 60) {
            assert_eq!(decision, Decision::Duplicate, "line {number} rule {rule}");
        }
    }

    // osqueryd restarts an hour after line 26 with a fresh database and logs every row of
    // the processes still running as `added`, with counter 0.
    let restart_time = unix_time(fixture_line(26)) + 3_600;
    let mut redump_decisions = Vec::new();
    for number in [7, 8, 9, 15, 16, 23, 26] {
        let redump = counter_zero_redump(
            fixture_line(number),
            restart_time,
            "Fri Mar 14 14:12:20 2025 UTC",
        );
        for (rule, decision) in observe_line(&mut state, &redump, restart_time) {
            redump_decisions.push((number, rule, decision));
        }
    }
    let expected = vec![
        (15, cmd.clone(), suppressed(4)),
        (15, listener.clone(), suppressed(2)),
        (16, cmd.clone(), suppressed(5)),
        (16, listener.clone(), suppressed(3)),
        (26, cmd.clone(), suppressed(6)),
    ];
    assert_eq!(redump_decisions, expected);

    // The nc window (line 11) suppressed nothing and ends without a digest. The ncat
    // windows opened at line 15 end one day later.
    let ncat_start = unix_time(fixture_line(15));
    let ncat_end = ncat_start + 86_400;
    assert_eq!(state.due_digests(ncat_end - 1), vec![]);
    assert_eq!(state.window_count(), 2);
    let host = Some("web-07.corp.example".to_owned());
    let expected = vec![
        Digest {
            rule: cmd.clone(),
            host: host.clone(),
            dedup_key: format!("{cmd}|web-07.corp.example|48377|ncat -lvp 8443 --ssl -e /bin/bash"),
            count: 6,
            window_seconds: 86_400,
            first_seen: ncat_start,
            last_seen: restart_time,
        },
        Digest {
            rule: listener.clone(),
            host,
            dedup_key: format!("{listener}|web-07.corp.example|48377|8443"),
            count: 3,
            window_seconds: 86_400,
            first_seen: ncat_start,
            last_seen: restart_time,
        },
    ];
    assert_eq!(state.due_digests(ncat_end), expected);
    assert_eq!(state.window_count(), 0);
}

// ---------------------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------------------

#[test]
fn restart_from_json_keeps_suppressing() {
    let mut state = DedupState::default();
    let dedup = settings(3_600, 1);
    let hex_id = "821f3ef2bfce7529b71692688e071a34";
    assert_eq!(
        state.observe(&alert(hex_id, "k"), Some(&dedup), 1_000),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("not-hex", "k"), Some(&dedup), 1_010),
        suppressed(1)
    );
    state.evicted_alert_ids = 4;

    let json = serde_json::to_string(&state).unwrap();
    let document: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(document["version"], 1);
    assert_eq!(document["alert_ids"][0][0], hex_id);
    assert_eq!(document["alert_ids"][0][1], 1_000);
    assert_eq!(document["windows"]["k"]["suppressed"], 1);

    let mut restored: DedupState = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, state);
    assert_eq!(restored.evicted_alert_ids, 4);
    let decision = restored.observe(&alert(hex_id, "k"), Some(&dedup), 2_000);
    assert_eq!(decision, Decision::Duplicate);
    let decision = restored.observe(&alert("not-hex", "k"), Some(&dedup), 2_000);
    assert_eq!(decision, Decision::Duplicate);
    let decision = restored.observe(&alert("a3", "k"), Some(&dedup), 2_000);
    assert_eq!(decision, suppressed(2));
    assert_eq!(
        restored.due_digests(4_600),
        vec![digest("k", 2, 3_600, 1_000, 2_000)]
    );
}

#[test]
fn restart_keeps_waiting_digests_and_limits() {
    let limits = DedupLimits {
        replay_window_seconds: 600,
        max_alert_ids: 10,
        max_windows: 5,
    };
    let mut state = DedupState::new(limits);
    let dedup = settings(60, 1);
    state.observe(&alert("a1", "k"), Some(&dedup), 100);
    state.observe(&alert("a2", "k"), Some(&dedup), 101);
    state.prune(200);
    assert_eq!(state.waiting_digest_count(), 1);

    let json = serde_json::to_string(&state).unwrap();
    let mut restored: DedupState = serde_json::from_str(&json).unwrap();
    assert_eq!(restored.limits(), limits);
    assert_eq!(
        restored.due_digests(200),
        vec![digest("k", 1, 60, 100, 101)]
    );
}

#[test]
fn unsupported_state_version_is_rejected() {
    let error = serde_json::from_str::<DedupState>(r#"{"version": 2, "alert_ids": {}}"#)
        .unwrap_err()
        .to_string();
    let expected = DedupStateError::UnsupportedVersion { found: 2 }.to_string();
    assert!(error.starts_with(&expected), "{error}");
    assert!(error.contains("this build reads version 1"), "{error}");
}

#[test]
fn invalid_fingerprint_is_rejected() {
    let document = r#"{"version": 1, "alert_ids": [["ABC", 1]]}"#;
    let error = serde_json::from_str::<DedupState>(document)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("invalid alert id fingerprint \"ABC\""),
        "{error}"
    );

    let id = "821f3ef2bfce7529b71692688e071a34";
    let document = format!(r#"{{"version": 1, "alert_ids": [["{id}", 1], ["{id}", 2]]}}"#);
    let error = serde_json::from_str::<DedupState>(&document)
        .unwrap_err()
        .to_string();
    assert!(error.contains("appears twice"), "{error}");
}

#[test]
fn minimal_state_document_loads() {
    let state: DedupState = serde_json::from_str(r#"{"version": 1}"#).unwrap();
    assert_eq!(state, DedupState::default());
}

// ---------------------------------------------------------------------------------------
// Clock changes
// ---------------------------------------------------------------------------------------

#[test]
fn clock_step_back_within_tolerance_keeps_window() {
    let mut state = DedupState::default();
    let dedup = settings(600, 1);
    assert_eq!(
        state.observe(&alert("a1", "k"), Some(&dedup), 10_000),
        Decision::Notify
    );
    let back = 10_000 - CLOCK_SKEW_TOLERANCE_SECONDS;
    assert_eq!(
        state.observe(&alert("a2", "k"), Some(&dedup), back),
        suppressed(1)
    );
    assert_eq!(state.due_digests(back), vec![]);
    assert_eq!(state.window_count(), 1);
    // The window still ends 600 seconds after its start, not after the earlier alert.
    assert_eq!(
        state.due_digests(10_600),
        vec![digest("k", 1, 600, back, 10_000)]
    );
}

#[test]
fn clock_set_back_opens_new_window() {
    let mut state = DedupState::default();
    let dedup = settings(600, 1);
    assert_eq!(
        state.observe(&alert("a1", "k"), Some(&dedup), 10_000),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a2", "k"), Some(&dedup), 10_001),
        suppressed(1)
    );

    // The clock is set back one hour. The key notifies once more and opens a new window on
    // the new clock.
    let back = 10_000 - 3_600;
    assert_eq!(
        state.observe(&alert("a3", "k"), Some(&dedup), back),
        Decision::Notify
    );
    assert_eq!(
        state.observe(&alert("a4", "k"), Some(&dedup), back + 1),
        suppressed(1)
    );
    assert_eq!(
        state.observe(&alert("a5", "k"), Some(&dedup), back + 600),
        Decision::Notify
    );

    let digests = state.due_digests(back + 600);
    let expected = vec![
        digest("k", 1, 600, back, back + 1),
        digest("k", 1, 600, 10_000, 10_001),
    ];
    assert_eq!(digests, expected);
}

#[test]
fn clock_set_back_closes_window_in_due_digests() {
    let mut state = DedupState::default();
    let dedup = settings(600, 1);
    state.observe(&alert("a1", "k"), Some(&dedup), 10_000);
    state.observe(&alert("a2", "k"), Some(&dedup), 10_001);
    let back = 10_000 - CLOCK_SKEW_TOLERANCE_SECONDS - 1;
    assert_eq!(
        state.due_digests(back),
        vec![digest("k", 1, 600, 10_000, 10_001)]
    );
    assert_eq!(state.window_count(), 0);
}

#[test]
fn clock_set_back_keeps_duplicate_ids() {
    let mut state = DedupState::default();
    let start = 1_741_950_000;
    assert_eq!(
        state.observe(&alert("a1", "k"), None, start),
        Decision::Notify
    );

    // One year back: the id stays a duplicate.
    let back = start - 365 * 86_400;
    assert_eq!(
        state.observe(&alert("a1", "k"), None, back),
        Decision::Duplicate
    );
    state.prune(back);
    assert_eq!(state.alert_id_count(), 1);
    assert_eq!(
        state.observe(&alert("a1", "k"), None, back),
        Decision::Duplicate
    );

    // prune re-dated the id to `back`, so it expires one replay window later.
    let expiry = back + DEFAULT_REPLAY_WINDOW_SECONDS;
    assert_eq!(
        state.observe(&alert("a1", "k"), None, expiry - 1),
        Decision::Duplicate
    );
    state.prune(expiry);
    assert_eq!(state.alert_id_count(), 0);
    assert_eq!(
        state.observe(&alert("a1", "k"), None, expiry),
        Decision::Notify
    );
}

#[test]
fn extreme_times_do_not_panic() {
    let mut state = DedupState::default();
    let dedup = settings(u64::MAX, u32::MAX);
    for now in [u64::MAX, 0, u64::MAX - 1, 1, u64::MAX] {
        state.observe(&alert(&format!("a{now}"), "k"), Some(&dedup), now);
        state.observe(&alert(&format!("b{now}"), "j"), None, now);
        state.prune(now);
        state.due_digests(now);
    }
}

// ---------------------------------------------------------------------------------------
// Caps
// ---------------------------------------------------------------------------------------

#[test]
fn alert_id_cap_evicts_oldest() {
    let limits = DedupLimits {
        max_alert_ids: 3,
        ..DedupLimits::default()
    };
    let mut state = DedupState::new(limits);
    for (i, id) in ["a1", "a2", "a3", "a4"].into_iter().enumerate() {
        assert_eq!(
            state.observe(&alert(id, "k"), None, 100 + i as u64),
            Decision::Notify
        );
    }
    assert_eq!(state.alert_id_count(), 3);
    assert_eq!(state.evicted_alert_ids, 1);
    // a1 was the oldest, so it is forgotten and notifies again, which evicts a2.
    assert_eq!(
        state.observe(&alert("a1", "k"), None, 200),
        Decision::Notify
    );
    assert_eq!(state.evicted_alert_ids, 2);
    assert_eq!(
        state.observe(&alert("a3", "k"), None, 200),
        Decision::Duplicate
    );
    assert_eq!(
        state.observe(&alert("a4", "k"), None, 200),
        Decision::Duplicate
    );
    assert_eq!(
        state.observe(&alert("a2", "k"), None, 200),
        Decision::Notify
    );
}

#[test]
fn id_cap_skips_counting_expired_ids() {
    let limits = DedupLimits {
        replay_window_seconds: 10,
        max_alert_ids: 1,
        ..DedupLimits::default()
    };
    let mut state = DedupState::new(limits);
    state.observe(&alert("a1", "k"), None, 100);
    state.observe(&alert("a2", "k"), None, 110);
    assert_eq!(state.alert_id_count(), 1);
    assert_eq!(state.evicted_alert_ids, 0);
    state.observe(&alert("a3", "k"), None, 111);
    assert_eq!(state.evicted_alert_ids, 1);
}

#[test]
fn window_cap_evicts_oldest_window() {
    let limits = DedupLimits {
        max_windows: 2,
        ..DedupLimits::default()
    };
    let mut state = DedupState::new(limits);
    let dedup = settings(600, 1);
    state.observe(&alert("a1", "old"), Some(&dedup), 100);
    assert_eq!(
        state.observe(&alert("a2", "old"), Some(&dedup), 101),
        suppressed(1)
    );
    state.observe(&alert("b1", "mid"), Some(&dedup), 102);
    assert_eq!(
        state.observe(&alert("c1", "new"), Some(&dedup), 103),
        Decision::Notify
    );

    assert_eq!(state.window_count(), 2);
    assert_eq!(state.evicted_windows, 1);
    // The evicted window's digest comes early, before its end at 700.
    assert_eq!(
        state.due_digests(104),
        vec![digest("old", 1, 600, 100, 101)]
    );
    // The evicted key starts over and notifies, which evicts "mid".
    assert_eq!(
        state.observe(&alert("a3", "old"), Some(&dedup), 105),
        Decision::Notify
    );
    assert_eq!(state.evicted_windows, 2);
    assert_eq!(state.due_digests(104), vec![], "mid suppressed nothing");
}

#[test]
fn waiting_digest_cap_drops_oldest() {
    let limits = DedupLimits {
        max_windows: 2,
        ..DedupLimits::default()
    };
    let mut state = DedupState::new(limits);
    let dedup = settings(10, 1);
    for (i, key) in ["k1", "k2", "k3"].into_iter().enumerate() {
        let start = 100 * (i as u64 + 1);
        state.observe(&alert(&format!("{key}-1"), key), Some(&dedup), start);
        state.observe(&alert(&format!("{key}-2"), key), Some(&dedup), start + 1);
        state.prune(start + 10);
    }
    assert_eq!(state.waiting_digest_count(), 2);
    assert_eq!(state.dropped_digests, 1);
    let digests = state.due_digests(1_000);
    let keys: Vec<&str> = digests.iter().map(|d| d.dedup_key.as_str()).collect();
    assert_eq!(keys, vec!["k2", "k3"]);
}

#[test]
fn set_limits_evicts_down_to_new_caps() {
    let mut state = DedupState::default();
    let dedup = settings(600, 1);
    for i in 0..5 {
        let key = format!("k{i}");
        state.observe(&alert(&format!("{key}-1"), &key), Some(&dedup), 100 + i);
        state.observe(&alert(&format!("{key}-2"), &key), Some(&dedup), 100 + i);
    }
    state.set_limits(DedupLimits {
        replay_window_seconds: 600,
        max_alert_ids: 4,
        max_windows: 3,
    });
    assert_eq!(state.alert_id_count(), 4);
    assert_eq!(state.evicted_alert_ids, 6);
    assert_eq!(state.window_count(), 3);
    assert_eq!(state.evicted_windows, 2);
    // Two evicted windows left digests, which fit the new cap of 3 waiting digests.
    assert_eq!(state.waiting_digest_count(), 2);
}

#[test]
fn zero_caps_are_raised_to_one() {
    let state = DedupState::new(DedupLimits {
        replay_window_seconds: 60,
        max_alert_ids: 0,
        max_windows: 0,
    });
    assert_eq!(state.limits().max_alert_ids, 1);
    assert_eq!(state.limits().max_windows, 1);
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

const KEYS: usize = 3;

/// One step of a property test. Times advance by `advance` seconds.
#[derive(Debug, Clone)]
enum Step {
    Observe { id: u8, key: usize, advance: u64 },
    DueDigests { advance: u64 },
    Prune { advance: u64 },
    Restart,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..60, 0..KEYS, 0u64..20)
            .prop_map(|(id, key, advance)| Step::Observe { id, key, advance }),
        1 => (0u64..40).prop_map(|advance| Step::DueDigests { advance }),
        1 => (0u64..40).prop_map(|advance| Step::Prune { advance }),
        1 => Just(Step::Restart),
    ]
}

fn arb_settings() -> impl Strategy<Value = Vec<DedupSettings>> {
    prop::collection::vec(
        (1u64..60, 1u32..4).prop_map(|(window, threshold)| settings(window, threshold)),
        KEYS,
    )
}

/// The documented semantics of one key's window, for comparison with `DedupState`.
#[derive(Debug, Clone, Copy)]
struct ModelWindow {
    start: u64,
    last: u64,
    notified: u32,
    suppressed: u64,
}

/// Sorted `(dedup key, first seen, last seen, count)` of digests.
fn digest_summary(digests: &[Digest]) -> Vec<(String, u64, u64, u64)> {
    let mut summary: Vec<_> = digests
        .iter()
        .map(|d| (d.dedup_key.clone(), d.first_seen, d.last_seen, d.count))
        .collect();
    summary.sort();
    summary
}

fn model_close(key: usize, window: ModelWindow, expected: &mut Vec<(String, u64, u64, u64)>) {
    if window.suppressed > 0 {
        expected.push((
            format!("key{key}"),
            window.start,
            window.last,
            window.suppressed,
        ));
    }
}

fn model_close_ended(
    windows: &mut [Option<ModelWindow>],
    dedup: &[DedupSettings],
    now: u64,
    expected: &mut Vec<(String, u64, u64, u64)>,
) {
    for (key, slot) in windows.iter_mut().enumerate() {
        if let Some(window) = *slot
            && now >= window.start + dedup[key].window_seconds
        {
            model_close(key, window, expected);
            *slot = None;
        }
    }
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        // Failing inputs are printed, and nothing is written next to the test sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// With time that never goes back and caps that are never reached, every decision and
    /// every digest equals the reference model: at most `threshold` notifications per key
    /// and window, and each suppressed alert in exactly one digest.
    #[test]
    fn decisions_and_digests_match_model(
        dedup in arb_settings(),
        steps in prop::collection::vec(arb_step(), 1..200),
    ) {
        let mut state = DedupState::default();
        let mut now = 1_741_950_000u64;
        let mut seen_ids: HashSet<u8> = HashSet::new();
        let mut windows: Vec<Option<ModelWindow>> = vec![None; KEYS];
        let mut model_ready: Vec<(String, u64, u64, u64)> = Vec::new();
        let mut notifications: HashMap<(usize, u64), u32> = HashMap::new();
        let mut suppressed_total = 0u64;
        let mut digested_total = 0u64;

        for step in steps {
            match step {
                Step::Observe { id, key, advance } => {
                    now += advance;
                    let alert = alert(&format!("id-{id}"), &format!("key{key}"));
                    let decision = state.observe(&alert, Some(&dedup[key]), now);
                    if !seen_ids.insert(id) {
                        prop_assert_eq!(decision, Decision::Duplicate);
                        continue;
                    }
                    let window_seconds = dedup[key].window_seconds;
                    if let Some(window) = windows[key]
                        && now >= window.start + window_seconds
                    {
                        model_close(key, window, &mut model_ready);
                        windows[key] = None;
                    }
                    let window = windows[key].get_or_insert(ModelWindow {
                        start: now,
                        last: now,
                        notified: 0,
                        suppressed: 0,
                    });
                    window.last = now;
                    if window.notified < dedup[key].threshold {
                        window.notified += 1;
                        prop_assert_eq!(decision, Decision::Notify);
                        let count = notifications.entry((key, window.start)).or_default();
                        *count += 1;
                        prop_assert!(*count <= dedup[key].threshold);
                    } else {
                        window.suppressed += 1;
                        suppressed_total += 1;
                        prop_assert_eq!(decision, suppressed(window.suppressed));
                    }
                }
                Step::DueDigests { advance } => {
                    now += advance;
                    let digests = state.due_digests(now);
                    model_close_ended(&mut windows, &dedup, now, &mut model_ready);
                    model_ready.sort();
                    prop_assert_eq!(digest_summary(&digests), std::mem::take(&mut model_ready));
                    digested_total += digests.iter().map(|d| d.count).sum::<u64>();
                }
                Step::Prune { advance } => {
                    now += advance;
                    state.prune(now);
                    model_close_ended(&mut windows, &dedup, now, &mut model_ready);
                }
                Step::Restart => {
                    let json = serde_json::to_string(&state).unwrap();
                    let restored: DedupState = serde_json::from_str(&json).unwrap();
                    prop_assert_eq!(&restored, &state);
                    state = restored;
                }
            }
        }

        // Past every window: the rest of the suppressed alerts come out in digests.
        now += 60;
        let digests = state.due_digests(now);
        model_close_ended(&mut windows, &dedup, now, &mut model_ready);
        model_ready.sort();
        prop_assert_eq!(digest_summary(&digests), model_ready);
        digested_total += digests.iter().map(|d| d.count).sum::<u64>();
        prop_assert_eq!(digested_total, suppressed_total);
        prop_assert_eq!(state.window_count(), 0);
        prop_assert_eq!(state.evicted_alert_ids, 0);
        prop_assert_eq!(state.evicted_windows, 0);
    }

    /// With arbitrary times, including a clock that jumps back, nothing panics and every
    /// suppressed alert is in exactly one digest once time passes every window.
    #[test]
    fn arbitrary_times_digest_every_suppressed_alert(
        dedup in arb_settings(),
        steps in prop::collection::vec((0u8..60, 0..KEYS, 0u64..5_000, 0u8..10), 1..200),
    ) {
        let mut state = DedupState::default();
        let mut suppressed_per_key = [0u64; KEYS];
        let mut digested_per_key = [0u64; KEYS];
        let mut max_time = 0;
        for (id, key, now, action) in steps {
            max_time = max_time.max(now);
            match action {
                0 => state.prune(now),
                1 => {
                    for digest in state.due_digests(now) {
                        let key: usize = digest.dedup_key[3..].parse().unwrap();
                        digested_per_key[key] += digest.count;
                        prop_assert!(digest.first_seen <= digest.last_seen);
                    }
                }
                _ => {
                    let alert = alert(&format!("id-{id}"), &format!("key{key}"));
                    let decision = state.observe(&alert, Some(&dedup[key]), now);
                    if let Decision::Suppressed { .. } = decision {
                        suppressed_per_key[key] += 1;
                    }
                }
            }
        }
        let end = max_time + 60 + CLOCK_SKEW_TOLERANCE_SECONDS;
        for digest in state.due_digests(end) {
            let key: usize = digest.dedup_key[3..].parse().unwrap();
            digested_per_key[key] += digest.count;
        }
        prop_assert_eq!(digested_per_key, suppressed_per_key);
        prop_assert_eq!(state.window_count(), 0);
    }

    /// With small caps, the state never contains more entries than its caps allow.
    #[test]
    fn caps_bound_memory(
        max_alert_ids in 1usize..8,
        max_windows in 1usize..4,
        steps in prop::collection::vec((any::<u16>(), 0usize..10, 0u64..1_000), 1..300),
    ) {
        let mut state = DedupState::new(DedupLimits {
            replay_window_seconds: 600,
            max_alert_ids,
            max_windows,
        });
        let dedup = settings(100, 1);
        for (id, key, now) in steps {
            let alert = alert(&format!("id-{id}"), &format!("key{key}"));
            state.observe(&alert, Some(&dedup), now);
            prop_assert!(state.alert_id_count() <= max_alert_ids);
            prop_assert!(state.window_count() <= max_windows);
            prop_assert!(state.waiting_digest_count() <= max_windows);
        }
    }
}
