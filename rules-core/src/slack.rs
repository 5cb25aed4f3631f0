//! Slack incoming-webhook messages for alerts and dedup digests.
//!
//! The agent and the Lambda both post alerts, and a channel must get the same message
//! whichever of them sends it. So rendering is a pure function of its arguments: no clock,
//! no I/O, and the record's object keys are sorted whatever key order serde_json keeps.
//!
//! Every string taken from data has `&`, `<` and `>` replaced by `&amp;`, `&lt;` and `&gt;` in
//! mrkdwn text and in the top-level `text`. Slack parses those three characters as control
//! characters, and its formatting reference (api.slack.com, "Formatting text for app
//! surfaces", escaping) lists exactly these entities for them. Other mrkdwn characters such
//! as `*`, `_` and `~` are left as they are. mrkdwn text objects set `verbatim`, so Slack does
//! not turn URLs and channel names in data into links.
//!
//! Text longer than a limit is cut between characters and ends with `…`. In mrkdwn the marker
//! also gives the number of bytes cut. The limits are the `*_MAX` constants below.

use serde_json::{Map, Value, json};

use crate::alert::Alert;
pub use crate::config::SlackSettings;
use crate::record::scalar_text;
use crate::rule::Severity;

/// Maximum length of a header block's text, in characters (docs.slack.dev, Block Kit
/// reference, "Header block").
pub const HEADER_TEXT_MAX: usize = 150;
/// Maximum length of a section block's text, in characters (Slack's `@slack/types`
/// reference, `SectionBlock.text`). It is also the maximum of any text object (docs.slack.dev,
/// "Text object").
pub const SECTION_TEXT_MAX: usize = 3000;
/// Maximum number of fields in a section block (`@slack/types`, `SectionBlock.fields`).
pub const SECTION_FIELDS_MAX: usize = 10;
/// Maximum length of the text of one section field, in characters (`@slack/types`,
/// `SectionBlock.fields`).
pub const FIELD_TEXT_MAX: usize = 2000;
/// Maximum number of elements in a context block (`@slack/types`, `ContextBlock.elements`).
pub const CONTEXT_ELEMENTS_MAX: usize = 10;
/// Maximum number of blocks in one message (docs.slack.dev, Block Kit reference, "Blocks").
pub const MESSAGE_BLOCKS_MAX: usize = 50;
/// Maximum length of the top-level `text`, in characters. This is edgealert's choice for a
/// readable notification line, not a Slack limit.
pub const FALLBACK_TEXT_MAX: usize = 300;
/// Maximum length of the runbook line, in characters, so that a long runbook value cannot
/// crowd out the description. This is edgealert's choice, not a Slack limit.
pub const RUNBOOK_TEXT_MAX: usize = 1000;

/// Text that replaces the value of a redacted field.
pub const REDACTED: &str = "[redacted]";

/// Row columns shown as section fields when present, in display order, with their labels.
/// The host, query and action fields come first, so with every column present the last
/// column does not fit within [`SECTION_FIELDS_MAX`] and is shown only in the record.
const COLUMN_FIELDS: &[(&str, &str)] = &[
    ("name", "Name"),
    ("path", "Path"),
    ("cmdline", "Command line"),
    ("pid", "PID"),
    ("uid", "UID"),
    ("address", "Address"),
    ("port", "Port"),
    ("protocol", "Protocol"),
];

/// Columns that name what the alert is about in the fallback text, in order of preference.
const SUBJECT_COLUMNS: &[&str] = &["cmdline", "path", "name"];

const CODE_FENCE_OPEN: &str = "```\n";
const CODE_FENCE_CLOSE: &str = "\n```";

/// Renders the incoming-webhook payload `{"text": ..., "blocks": [...]}` of one alert.
///
/// The blocks are, in order:
///
/// 1. a header with the severity and rule name
/// 2. a section of fields: host, query, action and the row's process and socket columns,
///    left out when the alert has none of them
/// 3. a section with the description and the runbook
/// 4. a context block with the alert id, log type and owner
/// 5. the record as pretty-printed JSON in a code block
///
/// `text` is a one-line summary that Slack shows in notifications.
///
/// Fields listed in `settings.redact` show [`REDACTED`] everywhere in the message. The output
/// depends only on the arguments, so the agent and the Lambda render identical payloads.
///
/// ```
/// use std::collections::BTreeMap;
/// use rules_core::Alert;
/// use rules_core::rule::{Severity, Tier};
/// use rules_core::slack::{SlackSettings, render_alert};
///
/// let alert = Alert {
///     alert_id: "5f0c8e1d2b7a4c3e9d6f1a2b3c4d5e6f".into(),
///     rule: "netcat_listener".into(),
///     description: "A netcat-family tool is listening on a port.".into(),
///     severity: Severity::High,
///     log_type: "osquery:differential".into(),
///     host: Some("web-07.corp.example".into()),
///     query: Some("pack_detection_listening_processes".into()),
///     outputs: vec!["slack:security".into()],
///     staged: false,
///     tier: Tier::Both,
///     dedup_key: "netcat_listener|web-07.corp.example".into(),
///     context: BTreeMap::new(),
///     record: serde_json::json!({
///         "name": "pack_detection_listening_processes",
///         "hostIdentifier": "web-07.corp.example",
///         "columns": {"name": "nc", "cmdline": "nc -lvnp 4444", "port": "4444"},
///         "action": "added"
///     }),
/// };
/// let settings = SlackSettings { redact: vec!["columns.cmdline".into()] };
/// let payload = render_alert(&alert, &settings);
/// assert_eq!(payload["text"], "[HIGH] netcat_listener on web-07.corp.example: [redacted]");
/// assert_eq!(payload["blocks"][0]["text"]["text"], "[HIGH] netcat_listener");
/// assert!(!payload.to_string().contains("nc -lvnp"));
/// ```
pub fn render_alert(alert: &Alert, settings: &SlackSettings) -> Value {
    let redact_paths: Vec<Vec<&str>> = settings
        .redact
        .iter()
        .map(|path| path.split('.').collect())
        .collect();
    let record = redacted_record(&alert.record, &redact_paths);
    let host = shown_envelope_value(alert.host.as_deref(), "hostIdentifier", &redact_paths);
    let query = shown_envelope_value(alert.query.as_deref(), "name", &redact_paths);

    let mut blocks = vec![header_block(alert)];
    if let Some(fields) = fields_block(host, query, &record) {
        blocks.push(fields);
    }
    blocks.push(description_block(alert));
    blocks.push(context_block(alert));
    blocks.push(record_block(&record));
    debug_assert!(blocks.len() <= MESSAGE_BLOCKS_MAX);

    json!({
        "text": alert_fallback_text(alert, host, &record),
        "blocks": blocks,
    })
}

/// Renders the incoming-webhook payload of a dedup digest: "`count` more alerts for rule
/// `rule` on host `host` in the last `window_seconds`", prefixed with the severity.
///
/// The window is written in hours or minutes when it is a whole number of them, otherwise
/// in seconds. Without a host the "on host" part is left out.
///
/// ```
/// use rules_core::rule::Severity;
/// use rules_core::slack::render_digest;
///
/// let payload = render_digest("netcat_listener", Some("web-07"), 12, 3600, Severity::High);
/// assert_eq!(
///     payload["text"],
///     "[HIGH] 12 more alerts for rule netcat_listener on host web-07 in the last 1 hour"
/// );
/// ```
pub fn render_digest(
    rule: &str,
    host: Option<&str>,
    count: u64,
    window_seconds: u64,
    severity: Severity,
) -> Value {
    let noun = if count == 1 { "alert" } else { "alerts" };
    let mut sentence = format!(
        "[{}] {count} more {noun} for rule {rule}",
        severity_label(severity)
    );
    if let Some(host) = host {
        sentence.push_str(" on host ");
        sentence.push_str(host);
    }
    sentence.push_str(" in the last ");
    sentence.push_str(&duration_text(window_seconds));

    let section = json!({
        "type": "section",
        "text": mrkdwn(fit(&sentence, SECTION_TEXT_MAX, Markup::Mrkdwn)),
    });
    json!({
        "text": fit(&one_line(&sentence), FALLBACK_TEXT_MAX, Markup::Mrkdwn),
        "blocks": [section],
    })
}

fn header_block(alert: &Alert) -> Value {
    let title = one_line(&format!(
        "[{}] {}",
        severity_label(alert.severity),
        alert.rule
    ));
    json!({
        "type": "header",
        "text": {"type": "plain_text", "text": fit(&title, HEADER_TEXT_MAX, Markup::Plain)},
    })
}

/// Builds the section of fields, or `None` when the alert has none of them.
fn fields_block(host: Option<&str>, query: Option<&str>, record: &Value) -> Option<Value> {
    let mut fields = Vec::new();
    if let Some(host) = host {
        fields.push(field("Host", host));
    }
    if let Some(query) = query {
        fields.push(field("Query", query));
    }
    if let Some(action) = record.get("action").and_then(value_text) {
        fields.push(field("Action", &action));
    }
    if let Some(columns) = record.get("columns") {
        for (column, label) in COLUMN_FIELDS {
            if let Some(value) = columns.get(*column).and_then(value_text) {
                fields.push(field(label, &value));
            }
        }
    }
    fields.truncate(SECTION_FIELDS_MAX);
    if fields.is_empty() {
        return None;
    }
    Some(json!({"type": "section", "fields": fields}))
}

fn field(label: &str, value: &str) -> Value {
    let heading = format!("*{label}*\n");
    let budget = FIELD_TEXT_MAX - text_units(&heading);
    mrkdwn(heading + &fit(value, budget, Markup::Mrkdwn))
}

fn description_block(alert: &Alert) -> Value {
    let runbook = alert
        .context
        .get("runbook")
        .and_then(value_text)
        .map(|runbook| runbook_line(&runbook));
    let description = if alert.description.trim().is_empty() {
        "No description."
    } else {
        alert.description.as_str()
    };
    let text = match runbook {
        Some(runbook) => {
            let budget = SECTION_TEXT_MAX - text_units(&runbook) - 1;
            format!("{}\n{runbook}", fit(description, budget, Markup::Mrkdwn))
        }
        None => fit(description, SECTION_TEXT_MAX, Markup::Mrkdwn),
    };
    json!({"type": "section", "text": mrkdwn(text)})
}

/// Formats the runbook as a `<url|Runbook>` link when it is a plain http(s) URL that fits
/// [`RUNBOOK_TEXT_MAX`], and as escaped text otherwise.
fn runbook_line(runbook: &str) -> String {
    if is_link_url(runbook) {
        let link = format!("<{}|Runbook>", escape_mrkdwn(runbook));
        if text_units(&link) <= RUNBOOK_TEXT_MAX {
            return link;
        }
    }
    let label = "Runbook: ";
    let budget = RUNBOOK_TEXT_MAX - text_units(label);
    format!("{label}{}", fit(runbook, budget, Markup::Mrkdwn))
}

/// Returns true for an `http://` or `https://` URL without characters that would end or
/// split Slack's `<url|label>` syntax: whitespace, control characters, `<`, `>` and `|`.
fn is_link_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let Some(rest) = rest else {
        return false;
    };
    !rest.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '|'))
}

fn context_block(alert: &Alert) -> Value {
    let mut elements = vec![
        context_element("Alert ID", &alert.alert_id),
        context_element("Log type", &alert.log_type),
    ];
    if let Some(owner) = alert.context.get("owner").and_then(value_text) {
        elements.push(context_element("Owner", &owner));
    }
    debug_assert!(elements.len() <= CONTEXT_ELEMENTS_MAX);
    json!({"type": "context", "elements": elements})
}

fn context_element(label: &str, value: &str) -> Value {
    let heading = format!("{label}: ");
    let budget = SECTION_TEXT_MAX - text_units(&heading);
    mrkdwn(heading + &fit(value, budget, Markup::Mrkdwn))
}

/// Builds the section that shows the record as pretty-printed JSON in a code block.
///
/// When the JSON does not fit [`SECTION_TEXT_MAX`], the code block shows its start and a
/// `[truncated: N bytes cut]` line follows the block.
fn record_block(record: &Value) -> Value {
    // Serializing a Value does not fail, because its keys are strings and its numbers finite.
    let pretty = serde_json::to_string_pretty(record).unwrap_or_default();
    let fences = text_units(CODE_FENCE_OPEN) + text_units(CODE_FENCE_CLOSE);
    let (body, _) = escape_prefix(&pretty, usize::MAX, Markup::CodeBlock);
    let text = if fences + text_units(&body) <= SECTION_TEXT_MAX {
        format!("{CODE_FENCE_OPEN}{body}{CODE_FENCE_CLOSE}")
    } else {
        // The marker is sized for the longest possible count, so the cut count always fits.
        let reserve = text_units(&format!("\n{}", cut_marker(pretty.len())));
        let budget = SECTION_TEXT_MAX - fences - reserve;
        let (body, shown_bytes) = escape_prefix(&pretty, budget, Markup::CodeBlock);
        let marker = cut_marker(pretty.len() - shown_bytes);
        format!("{CODE_FENCE_OPEN}{body}{CODE_FENCE_CLOSE}\n{marker}")
    };
    json!({"type": "section", "text": mrkdwn(text)})
}

/// Builds the one-line notification text: `[SEVERITY] rule on host: subject`, where the
/// subject is the row's command line, path or name, whichever comes first.
fn alert_fallback_text(alert: &Alert, host: Option<&str>, record: &Value) -> String {
    let mut line = format!("[{}] {}", severity_label(alert.severity), alert.rule);
    if let Some(host) = host {
        line.push_str(" on ");
        line.push_str(host);
    }
    let subject = record.get("columns").and_then(|columns| {
        SUBJECT_COLUMNS
            .iter()
            .find_map(|column| columns.get(*column).and_then(value_text))
    });
    if let Some(subject) = subject {
        line.push_str(": ");
        line.push_str(&subject);
    }
    fit(&one_line(&line), FALLBACK_TEXT_MAX, Markup::Mrkdwn)
}

/// Returns a host or query name to show, or [`REDACTED`] when `path` is redacted.
fn shown_envelope_value<'a>(
    value: Option<&'a str>,
    path: &str,
    redact_paths: &[Vec<&str>],
) -> Option<&'a str> {
    let redacted = redact_paths.iter().any(|segments| segments == &[path]);
    value.map(|value| if redacted { REDACTED } else { value })
}

/// Copies the record with object keys sorted and every redacted field replaced.
fn redacted_record(record: &Value, redact_paths: &[Vec<&str>]) -> Value {
    let mut record = sorted_keys(record);
    for path in redact_paths {
        redact(&mut record, path);
    }
    record
}

/// Copies `value` with the keys of every object in sorted order.
///
/// serde_json keeps keys sorted unless a crate in the build enables its `preserve_order`
/// feature. Sorting here keeps the agent's and the Lambda's messages identical either way.
fn sorted_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let sorted: Map<String, Value> = keys
                .into_iter()
                .map(|key| (key.clone(), sorted_keys(&map[key.as_str()])))
                .collect();
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_keys).collect()),
        scalar => scalar.clone(),
    }
}

/// Replaces the value at `path` with [`REDACTED`]. Numeric segments index arrays. A path
/// that the record lacks changes nothing.
fn redact(value: &mut Value, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let child = match value {
        Value::Object(map) => map.get_mut(*first),
        Value::Array(items) => first
            .parse::<usize>()
            .ok()
            .and_then(|index| items.get_mut(index)),
        _ => None,
    };
    let Some(child) = child else {
        return;
    };
    if rest.is_empty() {
        *child = Value::String(REDACTED.to_owned());
    } else {
        redact(child, rest);
    }
}

/// Returns the text shown for a value: scalars as rules compare them, arrays and objects as
/// compact JSON. Returns `None` for null and empty strings, which carry nothing to show.
fn value_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::Array(_) | Value::Object(_) => value.to_string(),
        scalar => scalar_text(scalar)?.into_owned(),
    };
    (!text.is_empty()).then_some(text)
}

fn severity_label(severity: Severity) -> String {
    severity.as_str().to_ascii_uppercase()
}

/// Writes a window length in whole hours or minutes when it is one, otherwise in seconds.
fn duration_text(seconds: u64) -> String {
    let (amount, unit) = if seconds > 0 && seconds.is_multiple_of(3600) {
        (seconds / 3600, "hour")
    } else if seconds > 0 && seconds.is_multiple_of(60) {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    let plural = if amount == 1 { "" } else { "s" };
    format!("{amount} {unit}{plural}")
}

/// Replaces line breaks and other control characters with spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text, "verbatim": true})
}

/// Kind of Slack string that text from data is written into, which sets its escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Markup {
    /// A `plain_text` object: written as it is.
    Plain,
    /// mrkdwn text or the top-level `text`: `&`, `<` and `>` escaped.
    Mrkdwn,
    /// The inside of a mrkdwn code block: escaped as mrkdwn, and a zero-width space
    /// (U+200B) between adjacent backticks so that data cannot close the block.
    CodeBlock,
}

/// Writes `text` with `markup`, cut to at most `max` characters with a marker when it is
/// longer: `…` for plain text, `… [truncated: N bytes cut]` for mrkdwn.
fn fit(text: &str, max: usize, markup: Markup) -> String {
    let (full, _) = escape_prefix(text, usize::MAX, markup);
    if text_units(&full) <= max {
        return full;
    }
    let marker_for = |cut: usize| match markup {
        Markup::Plain => "…".to_owned(),
        Markup::Mrkdwn | Markup::CodeBlock => format!("… {}", cut_marker(cut)),
    };
    // The marker is sized for the longest possible count, so the cut count always fits.
    let reserve = text_units(&marker_for(text.len()));
    let (mut shown, shown_bytes) = escape_prefix(text, max.saturating_sub(reserve), markup);
    shown.push_str(&marker_for(text.len() - shown_bytes));
    shown
}

fn cut_marker(cut_bytes: usize) -> String {
    format!("[truncated: {cut_bytes} bytes cut]")
}

/// Writes the longest start of `text` whose written form fits in `budget` characters.
/// Returns the written text and how many bytes of `text` it covers, always at a character
/// boundary.
fn escape_prefix(text: &str, budget: usize, markup: Markup) -> (String, usize) {
    let mut written = String::new();
    let mut written_units = 0;
    let mut previous = None;
    for (index, c) in text.char_indices() {
        let mut buffer = [0u8; 4];
        let piece: &str = match (markup, c) {
            (Markup::Mrkdwn | Markup::CodeBlock, '&') => "&amp;",
            (Markup::Mrkdwn | Markup::CodeBlock, '<') => "&lt;",
            (Markup::Mrkdwn | Markup::CodeBlock, '>') => "&gt;",
            _ => c.encode_utf8(&mut buffer),
        };
        let separator = markup == Markup::CodeBlock && c == '`' && previous == Some('`');
        let cost = text_units(piece) + usize::from(separator);
        if written_units + cost > budget {
            return (written, index);
        }
        if separator {
            written.push('\u{200B}');
        }
        written.push_str(piece);
        written_units += cost;
        previous = Some(c);
    }
    (written, text.len())
}

fn escape_mrkdwn(text: &str) -> String {
    escape_prefix(text, usize::MAX, Markup::Mrkdwn).0
}

/// Counts the length of `text` the way the limits are enforced: in UTF-16 code units.
///
/// NOTE: Slack's reference gives limits in "characters" without saying what it counts. A
/// character outside the Basic Multilingual Plane, such as most emoji, is one code point
/// but two UTF-16 code units, so counting code units stays within either reading. Escaped
/// entities are counted as written (`&amp;` is 5), which is also the larger reading.
fn text_units(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}
