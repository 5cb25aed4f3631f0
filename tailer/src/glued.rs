//! Recovery of a JSON record glued to the fragment of a failed write.
//!
//! osqueryd writes each record with one `write` call and no lock. When a write fails
//! part way, its fragment stays in the file without a `\n` and the next record is
//! appended to it on the same line, for example `{"name":"q","colu{"name":"q2",...}`.
//!
//! Rule, chosen so that a normal line costs at most one validation:
//! 1. A line whose last byte other than ASCII whitespace is not `}` is never parsed,
//!    because a recovered record would have to end the line.
//! 2. Other lines are validated once as JSON. A valid line is left alone.
//! 3. Only for an invalid line, each `{"` after offset 0 is tried in order, up to
//!    [`MAX_ATTEMPTS`] times, and the first one whose rest of the line is valid JSON wins.
//!
//! Validation tolerates invalid UTF-8 inside strings: a line that is not valid UTF-8
//! is validated again after lossy decoding, so such bytes never count as a fragment.

use std::borrow::Cow;

use serde::de::IgnoredAny;

/// Maximum number of `{"` positions tried in one invalid line, which bounds the work on
/// a long line of garbage to `MAX_ATTEMPTS` passes over it.
const MAX_ATTEMPTS: usize = 32;

/// Split point of a line that contains a glued record.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// The fragment `line[..at]` is not JSON, and `line[at..]` is the recovered record.
    Fragment {
        /// Offset of the recovered record in the line.
        at: usize,
    },
    /// Both `line[..at]` and `line[at..]` are valid JSON: two records that lost their `\n`.
    TwoRecords {
        /// Offset of the second record in the line.
        at: usize,
    },
}

/// Finds a complete JSON record at the end of an invalid line, following the module rule.
pub fn split_glued(line: &[u8]) -> Option<Split> {
    let last = line.iter().rposition(|byte| !byte.is_ascii_whitespace())?;
    if line[last] != b'}' || is_json(line) {
        return None;
    }
    let finder = memchr::memmem::Finder::new(b"{\"");
    let at = finder
        .find_iter(&line[1..])
        .map(|index| index + 1)
        .take(MAX_ATTEMPTS)
        .find(|&at| is_json(&line[at..]))?;
    if is_json(&line[..at]) {
        Some(Split::TwoRecords { at })
    } else {
        Some(Split::Fragment { at })
    }
}

/// Tells whether `bytes` is one JSON value, tolerating invalid UTF-8 inside strings.
fn is_json(bytes: &[u8]) -> bool {
    if serde_json::from_slice::<IgnoredAny>(bytes).is_ok() {
        return true;
    }
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(_) => false,
        Cow::Owned(decoded) => serde_json::from_str::<IgnoredAny>(&decoded).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_line_is_not_split() {
        assert_eq!(split_glued(br#"{"name":"q","columns":{"a":"1"}}"#), None);
    }

    #[test]
    fn fragment_is_split_off() {
        let line = br#"{"name":"q","colu{"name":"q2","columns":{"a":"1"}}"#;
        let at = line.len() - br#"{"name":"q2","columns":{"a":"1"}}"#.len();
        assert_eq!(split_glued(line), Some(Split::Fragment { at }));
    }

    #[test]
    fn invalid_utf8_is_not_a_fragment() {
        let line = b"{\"name\":\"q\",\"columns\":{\"a\":\"x\xff\xfe{\\\"y\"}}";
        assert_eq!(split_glued(line), None);
    }

    #[test]
    fn two_records_are_split() {
        assert_eq!(
            split_glued(br#"{"a":1}{"b":2}"#),
            Some(Split::TwoRecords { at: 7 })
        );
    }

    #[test]
    fn line_without_closing_brace_is_skipped() {
        assert_eq!(split_glued(br#"{"name":"q","colu{"name":"q2"}x"#), None);
    }

    #[test]
    fn garbage_without_record_is_not_split() {
        assert_eq!(split_glued(br#"{"a{"b{"c}"#), None);
    }
}
