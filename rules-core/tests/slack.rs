//! Slack messages: snapshots of the message of every starter rule, and exact cases for
//! escaping, truncation, redaction and the dedup digest.
//!
//! The snapshots in `tests/slack/` are pinned byte for byte. After an intended change to the
//! rendering, regenerate them with `UPDATE_SNAPSHOTS=1 cargo test -p rules-core --test slack`
//! and review the diff.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rules_core::rule::{Severity, Tier};
use rules_core::slack::{
    CONTEXT_ELEMENTS_MAX, FALLBACK_TEXT_MAX, FIELD_TEXT_MAX, HEADER_TEXT_MAX, MESSAGE_BLOCKS_MAX,
    REDACTED, SECTION_FIELDS_MAX, SECTION_TEXT_MAX, SlackSettings, render_alert, render_digest,
};
use rules_core::testing::{self, TestCase};
use rules_core::{Alert, Config, Source};
use serde_json::{Value, json};

const HEADER: usize = 0;
const FIELDS: usize = 1;
const DESCRIPTION: usize = 2;
const CONTEXT: usize = 3;
const RECORD: usize = 4;

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slack")
}

/// Length as the renderer limits it: UTF-16 code units.
fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

fn text_of(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, found {value}"))
}

/// Asserts every Block Kit limit the renderer promises, and that no text object is empty.
fn assert_within_limits(payload: &Value) {
    let fallback = text_of(&payload["text"]);
    assert!(!fallback.is_empty(), "empty text");
    assert!(units(fallback) <= FALLBACK_TEXT_MAX, "text too long");
    let blocks = payload["blocks"].as_array().expect("blocks is an array");
    assert!(blocks.len() <= MESSAGE_BLOCKS_MAX, "too many blocks");
    for block in blocks {
        match text_of(&block["type"]) {
            "header" => {
                assert_eq!(block["text"]["type"], "plain_text");
                let text = text_of(&block["text"]["text"]);
                assert!(!text.is_empty(), "empty header");
                assert!(units(text) <= HEADER_TEXT_MAX, "header too long: {text}");
            }
            "section" => {
                if let Some(text) = block.get("text") {
                    let text = text_of(&text["text"]);
                    assert!(!text.is_empty(), "empty section text");
                    assert!(units(text) <= SECTION_TEXT_MAX, "section text too long");
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().expect("fields is an array");
                    assert!(!fields.is_empty(), "empty fields");
                    assert!(fields.len() <= SECTION_FIELDS_MAX, "too many fields");
                    for field in fields {
                        let text = text_of(&field["text"]);
                        assert!(units(text) <= FIELD_TEXT_MAX, "field too long");
                    }
                }
            }
            "context" => {
                let elements = block["elements"].as_array().expect("elements is an array");
                assert!(elements.len() <= CONTEXT_ELEMENTS_MAX, "too many elements");
                for element in elements {
                    let text = text_of(&element["text"]);
                    assert!(!text.is_empty(), "empty context element");
                    assert!(units(text) <= SECTION_TEXT_MAX, "context element too long");
                }
            }
            other => panic!("unexpected block type {other}"),
        }
    }
}

fn block(payload: &Value, index: usize) -> &Value {
    &payload["blocks"][index]
}

fn field_texts(payload: &Value) -> Vec<&str> {
    block(payload, FIELDS)["fields"]
        .as_array()
        .expect("fields is an array")
        .iter()
        .map(|field| text_of(&field["text"]))
        .collect()
}

fn field_text<'p>(payload: &'p Value, label: &str) -> &'p str {
    let heading = format!("*{label}*\n");
    field_texts(payload)
        .into_iter()
        .find(|text| text.starts_with(&heading))
        .unwrap_or_else(|| panic!("no {label} field"))
}

fn section_text(payload: &Value, index: usize) -> &str {
    text_of(&block(payload, index)["text"]["text"])
}

fn listening_record(columns: Value) -> Value {
    json!({
        "name": "pack_detection_listening_processes",
        "hostIdentifier": "web-07.corp.example",
        "columns": columns,
        "action": "added",
    })
}

fn netcat_alert(record: Value) -> Alert {
    let context = BTreeMap::from([
        (
            "runbook".to_owned(),
            json!("https://wiki.example.com/runbooks/netcat-listener"),
        ),
        ("owner".to_owned(), json!("secops")),
    ]);
    Alert {
        alert_id: "0123456789abcdef0123456789abcdef".to_owned(),
        rule: "netcat_listener".to_owned(),
        description: "A netcat-family tool is listening on a port.".to_owned(),
        severity: Severity::High,
        log_type: "osquery:differential".to_owned(),
        host: Some("web-07.corp.example".to_owned()),
        query: Some("pack_detection_listening_processes".to_owned()),
        outputs: vec!["slack:security".to_owned()],
        staged: false,
        tier: Tier::Both,
        dedup_key: "netcat_listener|web-07.corp.example".to_owned(),
        context,
        record,
    }
}

fn alert_with_cmdline(cmdline: &str) -> Alert {
    netcat_alert(listening_record(
        json!({"name": "nc", "cmdline": cmdline, "pid": "48213"}),
    ))
}

fn redact(paths: &[&str]) -> SlackSettings {
    SlackSettings {
        redact: paths.iter().map(|path| (*path).to_owned()).collect(),
    }
}

/// Builds the alert of `rule` from its first positive test event, preferring events in the
/// rule's own test directory.
fn first_positive_alert(config: &Config, cases: &[TestCase], rule: &str) -> Option<Alert> {
    let positives = cases
        .iter()
        .filter(|case| case.event.trigger_rules.iter().any(|name| name == rule));
    let (own, other): (Vec<&TestCase>, Vec<&TestCase>) =
        positives.partition(|case| case.in_rule_directory(rule));
    for case in own.into_iter().chain(other) {
        let line = testing::event_line(config, &case.event).expect("test event has a line");
        let source = Source::new(&case.event.service, &case.event.source);
        let classified = config
            .classify(&source, &line)
            .expect("positive test event classifies");
        let alert = classified
            .events()
            .iter()
            .flat_map(|event| config.rules.evaluate(event))
            .find(|alert| alert.rule == rule);
        if alert.is_some() {
            return alert;
        }
    }
    None
}

fn shipped_config_and_cases() -> (Config, Vec<TestCase>) {
    let conf = common::shipped_conf();
    let config = Config::load(&conf).expect("the shipped configuration loads");
    let cases =
        testing::load_tests(&conf.join("rules/tests"), &config).expect("the shipped tests load");
    (config, cases)
}

#[test]
fn starter_rule_messages_match_snapshots() {
    let (config, cases) = shipped_config_and_cases();
    let dir = snapshot_dir();
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut expected_files = BTreeSet::new();
    for rule in config.rules.rules() {
        let Some(alert) = first_positive_alert(&config, &cases, rule.name()) else {
            continue;
        };
        let payload = render_alert(&alert, &config.settings.slack);
        assert_within_limits(&payload);
        let rendered = serde_json::to_string_pretty(&payload).unwrap() + "\n";
        let file_name = format!("{}.json", rule.name());
        let path = dir.join(&file_name);
        if update {
            std::fs::write(&path, &rendered).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == rendered,
            "{} differs from the rendered message; after an intended change run \
             UPDATE_SNAPSHOTS=1 cargo test -p rules-core --test slack and review the diff",
            path.display()
        );
        expected_files.insert(file_name);
    }
    assert!(
        !expected_files.is_empty(),
        "no starter rule has a positive test"
    );

    let stored_files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        stored_files, expected_files,
        "tests/slack/ must contain exactly one snapshot per starter rule with a positive test"
    );
}

#[test]
fn escaping_replaces_only_amp_lt_gt() {
    let mut alert = alert_with_cmdline("sh -c 'a && b' <in >out *bold* _it_ ~st~ `x`");
    alert.rule = "r&d<1>".to_owned();
    alert.description = "Tom & Jerry <b>*not bold*</b> _x_ ~y~".to_owned();
    let payload = render_alert(&alert, &SlackSettings::default());
    assert_within_limits(&payload);

    assert_eq!(
        field_text(&payload, "Command line"),
        "*Command line*\nsh -c 'a &amp;&amp; b' &lt;in &gt;out *bold* _it_ ~st~ `x`"
    );
    assert_eq!(
        section_text(&payload, HEADER),
        "[HIGH] r&d<1>",
        "plain_text is not escaped"
    );
    assert_eq!(
        section_text(&payload, DESCRIPTION),
        "Tom &amp; Jerry &lt;b&gt;*not bold*&lt;/b&gt; _x_ ~y~\n\
         <https://wiki.example.com/runbooks/netcat-listener|Runbook>"
    );
    assert_eq!(
        payload["text"],
        "[HIGH] r&amp;d&lt;1&gt; on web-07.corp.example: \
         sh -c 'a &amp;&amp; b' &lt;in &gt;out *bold* _it_ ~st~ `x`"
    );
    assert!(
        section_text(&payload, RECORD).contains(
            r#""cmdline": "sh -c 'a &amp;&amp; b' &lt;in &gt;out *bold* _it_ ~st~ `x`","#
        )
    );
}

#[test]
fn long_cmdline_is_truncated_with_marker() {
    let cmdline = "A".repeat(100 * 1024);
    let payload = render_alert(&alert_with_cmdline(&cmdline), &SlackSettings::default());
    assert_within_limits(&payload);

    // 15 characters of heading, 1954 of the value and 31 of marker fill the 2000.
    let expected_field = format!(
        "*Command line*\n{}… [truncated: 100446 bytes cut]",
        "A".repeat(1954)
    );
    assert_eq!(field_text(&payload, "Command line"), expected_field);
    assert_eq!(units(&expected_field), FIELD_TEXT_MAX);

    let expected_text = format!(
        "[HIGH] netcat_listener on web-07.corp.example: {}… [truncated: 102178 bytes cut]",
        "A".repeat(222)
    );
    assert_eq!(payload["text"], expected_text.as_str());
    assert_eq!(units(&expected_text), FALLBACK_TEXT_MAX);

    let record_text = section_text(&payload, RECORD);
    let pretty = serde_json::to_string_pretty(&listening_record(
        json!({"name": "nc", "cmdline": cmdline, "pid": "48213"}),
    ))
    .unwrap();
    assert_eq!(pretty.len(), 102_590);
    // The fences take 8 characters and the marker is sized for a 6-digit count, 30
    // characters with its line break, so 2962 bytes of the ASCII JSON are shown.
    let expected_record = format!(
        "```\n{}\n```\n[truncated: 99628 bytes cut]",
        &pretty[..2962]
    );
    assert_eq!(record_text, expected_record);
    // The 5-digit count leaves one character of the reserved marker room unused.
    assert_eq!(units(record_text), SECTION_TEXT_MAX - 1);
}

#[test]
fn truncation_never_splits_a_character() {
    // The value budget is 1956 characters after the marker. The 1955 'a's leave one, and
    // the emoji needs two UTF-16 code units, so the cut falls before the emoji.
    let cmdline = format!("{}😀{}", "a".repeat(1955), "b".repeat(100));
    let payload = render_alert(&alert_with_cmdline(&cmdline), &SlackSettings::default());
    assert_within_limits(&payload);
    assert_eq!(
        field_text(&payload, "Command line"),
        format!(
            "*Command line*\n{}… [truncated: 104 bytes cut]",
            "a".repeat(1955)
        )
    );

    // Two-byte characters: 1956 of them are shown, and the count is of bytes, not
    // characters.
    let payload = render_alert(
        &alert_with_cmdline(&"é".repeat(3000)),
        &SlackSettings::default(),
    );
    assert_within_limits(&payload);
    assert_eq!(
        field_text(&payload, "Command line"),
        format!(
            "*Command line*\n{}… [truncated: 2088 bytes cut]",
            "é".repeat(1956)
        )
    );

    // Four-byte characters in the plain_text header: 71 emoji fill 142 of the 149 code
    // units left after "[HIGH] " and the ellipsis.
    let mut alert = alert_with_cmdline("nc");
    alert.rule = "😀".repeat(100);
    let payload = render_alert(&alert, &SlackSettings::default());
    assert_within_limits(&payload);
    let header = section_text(&payload, HEADER);
    assert_eq!(header, format!("[HIGH] {}…", "😀".repeat(71)));
    assert_eq!(units(header), HEADER_TEXT_MAX);
}

#[test]
fn long_rule_name_truncates_header() {
    let mut alert = alert_with_cmdline("nc -lvnp 4444");
    alert.rule = "r".repeat(300);
    let payload = render_alert(&alert, &SlackSettings::default());
    assert_within_limits(&payload);
    assert_eq!(
        section_text(&payload, HEADER),
        format!("[HIGH] {}…", "r".repeat(142))
    );
    assert_eq!(
        payload["text"],
        format!("[HIGH] {}… [truncated: 73 bytes cut]", "r".repeat(265)).as_str()
    );
}

#[test]
fn header_is_one_line() {
    let mut alert = alert_with_cmdline("nc");
    alert.rule = "first\nsecond\tthird".to_owned();
    let payload = render_alert(&alert, &SlackSettings::default());
    assert_within_limits(&payload);
    assert_eq!(section_text(&payload, HEADER), "[HIGH] first second third");
    assert_eq!(
        payload["text"],
        "[HIGH] first second third on web-07.corp.example: nc"
    );
}

#[test]
fn redaction_replaces_nested_and_ignores_missing() {
    let record = json!({
        "name": "pack_detection_listening_processes",
        "hostIdentifier": "web-07.corp.example",
        "decorations": {"hostname": "web-07", "username": "mkovacs"},
        "columns": {"cmdline": "nc -e /bin/sh", "name": "nc"},
        "tags": ["keep", "secret"],
        "action": "added",
    });
    let settings = redact(&[
        "columns.cmdline",
        "decorations.username",
        "tags.1",
        "columns.missing",
        "absent.deeper.path",
        "tags.7",
    ]);
    let payload = render_alert(&netcat_alert(record), &settings);
    assert_within_limits(&payload);

    let expected_record = r#"```
{
  "action": "added",
  "columns": {
    "cmdline": "[redacted]",
    "name": "nc"
  },
  "decorations": {
    "hostname": "web-07",
    "username": "[redacted]"
  },
  "hostIdentifier": "web-07.corp.example",
  "name": "pack_detection_listening_processes",
  "tags": [
    "keep",
    "[redacted]"
  ]
}
```"#;
    assert_eq!(section_text(&payload, RECORD), expected_record);
    assert_eq!(
        field_text(&payload, "Command line"),
        "*Command line*\n[redacted]"
    );
    assert_eq!(
        payload["text"],
        "[HIGH] netcat_listener on web-07.corp.example: [redacted]"
    );
}

#[test]
fn redacted_host_and_query_are_hidden() {
    let settings = redact(&["hostIdentifier", "name"]);
    let payload = render_alert(&alert_with_cmdline("nc -lvnp 4444"), &settings);
    assert_within_limits(&payload);
    assert_eq!(field_text(&payload, "Host"), "*Host*\n[redacted]");
    assert_eq!(field_text(&payload, "Query"), "*Query*\n[redacted]");
    assert_eq!(
        payload["text"],
        "[HIGH] netcat_listener on [redacted]: nc -lvnp 4444"
    );
    let rendered = payload.to_string();
    assert!(!rendered.contains("web-07.corp.example"));
    assert!(!rendered.contains("pack_detection_listening_processes"));
}

#[test]
fn payload_contains_no_redacted_value() {
    let (config, cases) = shipped_config_and_cases();
    let alert = first_positive_alert(&config, &cases, "netcat_listener").unwrap();
    let paths = [
        "hostIdentifier",
        "columns.cmdline",
        "columns.path",
        "decorations.hostname",
        "decorations.username",
        "decorations.host_uuid",
    ];
    let payload = render_alert(&alert, &redact(&paths));
    assert_within_limits(&payload);
    let rendered = serde_json::to_string(&payload).unwrap();
    for path in paths {
        let mut value = &alert.record;
        for segment in path.split('.') {
            value = &value[segment];
        }
        let value = value
            .as_str()
            .unwrap_or_else(|| panic!("{path} is a string in the test event"));
        assert!(!value.is_empty(), "{path} is empty in the test event");
        assert!(
            !rendered.contains(value),
            "{path} value {value:?} is in the payload"
        );
    }
    assert!(rendered.contains(REDACTED));
}

#[test]
fn backticks_cannot_close_code_block() {
    let cmdline = "echo ```; cat ```` x ``";
    let payload = render_alert(&alert_with_cmdline(cmdline), &SlackSettings::default());
    assert_within_limits(&payload);

    let record_text = section_text(&payload, RECORD);
    assert!(record_text.starts_with("```\n{\n"));
    assert!(record_text.ends_with("\n}\n```"));
    assert_eq!(record_text.matches("```").count(), 2, "only the fences");
    assert!(record_text.contains(
        "\"cmdline\": \"echo `\u{200B}`\u{200B}`; cat `\u{200B}`\u{200B}`\u{200B}` x `\u{200B}`\","
    ));
    assert_eq!(
        field_text(&payload, "Command line"),
        "*Command line*\necho ```; cat ```` x ``",
        "fields keep backticks"
    );
}

#[test]
fn missing_host_and_query_are_left_out() {
    let mut alert = netcat_alert(json!({
        "columns": {"name": "nc", "path": "", "cmdline": "nc -lvnp 4444", "pid": null},
        "action": "added",
    }));
    alert.host = None;
    alert.query = None;
    let payload = render_alert(&alert, &SlackSettings::default());
    assert_within_limits(&payload);
    assert_eq!(
        field_texts(&payload),
        [
            "*Action*\nadded",
            "*Name*\nnc",
            "*Command line*\nnc -lvnp 4444"
        ]
    );
    assert_eq!(payload["text"], "[HIGH] netcat_listener: nc -lvnp 4444");
}

#[test]
fn record_without_fields_has_no_fields_block() {
    let mut alert = netcat_alert(json!({"message": "free text", "empty": ""}));
    alert.host = None;
    alert.query = None;
    alert.context.clear();
    let payload = render_alert(&alert, &SlackSettings::default());
    assert_within_limits(&payload);
    let types: Vec<&str> = payload["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|block| text_of(&block["type"]))
        .collect();
    assert_eq!(types, ["header", "section", "context", "section"]);
    assert_eq!(payload["text"], "[HIGH] netcat_listener");
    assert_eq!(
        payload["blocks"][1]["text"]["text"],
        "A netcat-family tool is listening on a port."
    );
    assert_eq!(
        payload["blocks"][2]["elements"],
        json!([
            {"type": "mrkdwn", "text": "Alert ID: 0123456789abcdef0123456789abcdef", "verbatim": true},
            {"type": "mrkdwn", "text": "Log type: osquery:differential", "verbatim": true},
        ])
    );
}

#[test]
fn fields_stop_at_ten() {
    let payload = render_alert(
        &netcat_alert(listening_record(json!({
            "name": "nc", "path": "/usr/bin/nc.openbsd", "cmdline": "nc -lvnp 4444",
            "pid": "48213", "uid": 1000, "address": "0.0.0.0", "port": "4444",
            "protocol": "6", "family": "2", "fd": "", "socket": null
        }))),
        &SlackSettings::default(),
    );
    assert_within_limits(&payload);
    assert_eq!(
        field_texts(&payload),
        [
            "*Host*\nweb-07.corp.example",
            "*Query*\npack_detection_listening_processes",
            "*Action*\nadded",
            "*Name*\nnc",
            "*Path*\n/usr/bin/nc.openbsd",
            "*Command line*\nnc -lvnp 4444",
            "*PID*\n48213",
            "*UID*\n1000",
            "*Address*\n0.0.0.0",
            "*Port*\n4444",
        ]
    );
}

#[test]
fn runbook_link_only_for_http_urls() {
    let cases = [
        (
            json!("https://wiki.example.com/run?a=1&b=2"),
            "<https://wiki.example.com/run?a=1&amp;b=2|Runbook>",
        ),
        (
            json!("HTTP://wiki.example.com/run"),
            "<HTTP://wiki.example.com/run|Runbook>",
        ),
        (
            json!("see the wiki page NetcatListener"),
            "Runbook: see the wiki page NetcatListener",
        ),
        (json!("javascript:alert(1)"), "Runbook: javascript:alert(1)"),
        (
            json!("https://evil.example/|Click <here>"),
            "Runbook: https://evil.example/|Click &lt;here&gt;",
        ),
        (json!("https://"), "Runbook: https://"),
        (json!(42), "Runbook: 42"),
    ];
    for (runbook, expected) in cases {
        let mut alert = alert_with_cmdline("nc");
        alert.context.insert("runbook".to_owned(), runbook.clone());
        let payload = render_alert(&alert, &SlackSettings::default());
        assert_within_limits(&payload);
        assert_eq!(
            section_text(&payload, DESCRIPTION),
            format!("A netcat-family tool is listening on a port.\n{expected}"),
            "runbook {runbook}"
        );
    }
}

#[test]
fn context_shows_id_log_type_and_owner() {
    let payload = render_alert(&alert_with_cmdline("nc"), &SlackSettings::default());
    let elements: Vec<&str> = block(&payload, CONTEXT)["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|element| text_of(&element["text"]))
        .collect();
    assert_eq!(
        elements,
        [
            "Alert ID: 0123456789abcdef0123456789abcdef",
            "Log type: osquery:differential",
            "Owner: secops"
        ]
    );
}

#[test]
fn rendering_is_deterministic() {
    let alert = alert_with_cmdline("nc -lvnp 4444");
    let settings = redact(&["columns.pid"]);
    let first = serde_json::to_string(&render_alert(&alert, &settings)).unwrap();
    let second = serde_json::to_string(&render_alert(&alert.clone(), &settings)).unwrap();
    assert_eq!(first, second);
}

#[test]
fn digest_wording() {
    let cases = [
        (
            render_digest(
                "netcat_listener",
                Some("web-07"),
                12,
                86_400,
                Severity::High,
            ),
            "[HIGH] 12 more alerts for rule netcat_listener on host web-07 in the last 24 hours",
        ),
        (
            render_digest("netcat_listener", None, 1, 60, Severity::Critical),
            "[CRITICAL] 1 more alert for rule netcat_listener in the last 1 minute",
        ),
        (
            render_digest("r", Some("h"), 3, 5_400, Severity::Low),
            "[LOW] 3 more alerts for rule r on host h in the last 90 minutes",
        ),
        (
            render_digest("r", Some("h"), 2, 90, Severity::Info),
            "[INFO] 2 more alerts for rule r on host h in the last 90 seconds",
        ),
        (
            render_digest("a&b", Some("<h>"), 2, 1, Severity::Medium),
            "[MEDIUM] 2 more alerts for rule a&amp;b on host &lt;h&gt; in the last 1 second",
        ),
    ];
    for (payload, expected) in cases {
        assert_within_limits(&payload);
        assert_eq!(payload["text"], expected);
        assert_eq!(
            payload["blocks"],
            json!([{"type": "section", "text": {"type": "mrkdwn", "text": expected, "verbatim": true}}])
        );
    }
}

#[test]
fn digest_truncates_long_host() {
    let host = "h".repeat(5000);
    let payload = render_digest("r", Some(&host), 2, 60, Severity::High);
    assert_within_limits(&payload);
    let section = text_of(&payload["blocks"][0]["text"]["text"]);
    assert_eq!(units(section), SECTION_TEXT_MAX);
    assert!(section.ends_with("… [truncated: 2090 bytes cut]"));
}

#[test]
fn settings_reject_invalid_redact_path() {
    let dir = common::osquery_conf(r#"{"file": {"osquery": {"logs": ["osquery"]}}}"#);
    std::fs::write(
        dir.path().join("edgealert.json"),
        r#"{"slack": {"redact": ["columns.cmdline", "columns..pid"]}}"#,
    )
    .unwrap();
    let errors = Config::load(dir.path()).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].path, "$.slack.redact[1]");
    assert_eq!(
        errors.0[0].message,
        "invalid field path \"columns..pid\": use keys separated by '.', such as \"columns.cmdline\""
    );
}

#[test]
fn settings_load_redact_paths() {
    let dir = common::osquery_conf(r#"{"file": {"osquery": {"logs": ["osquery"]}}}"#);
    std::fs::write(
        dir.path().join("edgealert.json"),
        r#"{"slack": {"redact": ["columns.cmdline"]}}"#,
    )
    .unwrap();
    let config = Config::load(dir.path()).unwrap();
    assert_eq!(config.settings.slack.redact, ["columns.cmdline"]);

    std::fs::write(
        dir.path().join("edgealert.json"),
        r#"{"slack": {"redcat": []}}"#,
    )
    .unwrap();
    let errors = Config::load(dir.path()).unwrap_err();
    assert_eq!(errors.0[0].path, "$.slack.redcat");
    assert!(errors.0[0].message.contains("unknown field `redcat`"));
}
