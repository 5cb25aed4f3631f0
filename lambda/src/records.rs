//! Kinesis records to log lines: every format the agent writes and osquery's own logger.
//!
//! - packed records (`EAP1`, body stored or zstd-compressed) hold many entries, each with
//!   the agent's notified flag and the file and offset it came from;
//! - compat records hold one osquery line;
//! - osquery's `aws_kinesis` logger writes one JSON object per record, with every scalar
//!   as a string and `log_type` appended. To the decoder it is a compat record, and the
//!   classifier accepts the strings.

use std::borrow::Cow;
use std::sync::Arc;

use rules_core::Source;
use rules_core::kinesis::{self, CodecError, Decoded, EntryKind};

/// One line to classify, taken from a record.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    /// The bytes of the line, as osqueryd or the agent wrote them.
    pub data: Cow<'a, [u8]>,
    /// True when an agent evaluated this line and notified for its agent and both tier
    /// rules.
    pub agent_notified: bool,
    /// Origin of the line, for logs.
    pub origin: Origin,
}

/// Position of a line inside its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The whole record is the line (compat format or osquery's own logger).
    Record,
    /// An entry of a packed record.
    Entry {
        /// Index of the entry in the record.
        index: usize,
        /// The agent's host identity from the record header, shared by the record's lines.
        agent: Arc<str>,
        /// Path of the osquery log the line was read from, when the entry names one.
        file: Option<Arc<str>>,
        /// Byte offset of the line in that file.
        offset: u64,
        /// Kind of the entry.
        kind: EntryKind,
    },
}

/// Decodes one Kinesis record into its lines.
pub fn lines(data: &[u8]) -> Result<Vec<Line<'_>>, CodecError> {
    match kinesis::decode(data)? {
        Decoded::Json(bytes) => Ok(vec![Line {
            data: Cow::Borrowed(bytes),
            agent_notified: false,
            origin: Origin::Record,
        }]),
        Decoded::Packed(packed) => {
            let header = packed.header;
            // One shared copy of the header's strings, however many entries name them.
            let agent: Arc<str> = Arc::from(header.agent.as_str());
            let files: Vec<Arc<str>> = header
                .files
                .iter()
                .map(|file| Arc::from(file.path.as_str()))
                .collect();
            let lines = packed
                .entries
                .into_iter()
                .enumerate()
                .map(|(index, entry)| {
                    let file = files.get(usize::from(entry.file)).cloned();
                    Line {
                        agent_notified: entry.notified(),
                        origin: Origin::Entry {
                            index,
                            agent: Arc::clone(&agent),
                            file,
                            offset: entry.offset,
                            kind: entry.kind,
                        },
                        data: entry.data,
                    }
                })
                .collect();
            Ok(lines)
        }
    }
}

/// Returns a short stable name of a decoding failure, for counters.
pub fn codec_reason(error: &CodecError) -> &'static str {
    match error {
        CodecError::UnknownFormat { .. } => "unknown_format",
        CodecError::UnknownCodec { .. } => "unknown_codec",
        CodecError::Decompress { .. } => "decompress_failed",
        CodecError::TooLarge { .. } => "body_too_large",
        CodecError::Header { .. } => "invalid_header",
        CodecError::Version { .. } => "unsupported_version",
        CodecError::Entry { .. } | CodecError::EntryTooLarge { .. } => "invalid_entry",
    }
}

/// Resolves the source of a record from its event source ARN, as StreamAlert does: the
/// stream name of `arn:aws:kinesis:<region>:<account>:stream/<name>` under the `kinesis`
/// service of `sources.json`.
pub fn source_of(event_source_arn: Option<&str>) -> Option<Source> {
    let arn = event_source_arn?;
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("kinesis"), Some(_region), Some(_account)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let resource = parts.next()?;
    let name = resource.strip_prefix("stream/")?;
    // An ARN of a stream consumer (enhanced fan-out) continues with /consumer/<name>:<time>.
    let name = name.split('/').next()?;
    (!name.is_empty()).then(|| Source::new("kinesis", name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules_core::kinesis::{Codec, Entry, FLAG_NOTIFIED, FileRef, NO_FILE, PackedWriter};

    #[test]
    fn source_of_reads_the_stream_name() {
        assert_eq!(
            source_of(Some(
                "arn:aws:kinesis:eu-west-1:123456789012:stream/edgealert"
            )),
            Some(Source::new("kinesis", "edgealert"))
        );
        assert_eq!(
            source_of(Some(
                "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/fleet/consumer/lambda:1700000000"
            )),
            Some(Source::new("kinesis", "fleet"))
        );
        assert_eq!(
            source_of(Some("arn:aws:sqs:eu-west-1:123456789012:queue")),
            None
        );
        assert_eq!(
            source_of(Some("arn:aws:kinesis:eu-west-1:123456789012:stream/")),
            None
        );
        assert_eq!(source_of(None), None);
    }

    #[test]
    fn lines_of_packed_record_keep_flags_and_origin() {
        let mut writer = PackedWriter::new("host-a", "0.1.0");
        let file = writer.file_index(&FileRef {
            path: "/var/log/osquery/osqueryd.results.log".into(),
            id: "2049:12".into(),
        });
        writer
            .push(&Entry {
                kind: EntryKind::Line,
                flags: FLAG_NOTIFIED,
                file,
                offset: 40,
                row: 0,
                data: Cow::Borrowed(b"{\"a\":1}"),
            })
            .unwrap();
        writer
            .push(&Entry {
                kind: EntryKind::Internal,
                flags: 0,
                file: NO_FILE,
                offset: 0,
                row: 0,
                data: Cow::Borrowed(b"{\"b\":2}"),
            })
            .unwrap();
        let record = writer.finish(Codec::Zstd, 3);
        let lines = lines(&record).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].agent_notified);
        assert!(!lines[1].agent_notified);
        assert_eq!(lines[1].data.as_ref(), b"{\"b\":2}");
        assert_eq!(
            lines[0].origin,
            Origin::Entry {
                index: 0,
                agent: "host-a".into(),
                file: Some("/var/log/osquery/osqueryd.results.log".into()),
                offset: 40,
                kind: EntryKind::Line,
            }
        );
    }

    #[test]
    fn lines_of_json_record_is_the_record() {
        let lines = lines(b"{\"name\":\"q\"}").unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].origin, Origin::Record);
        assert!(!lines[0].agent_notified);
    }

    #[test]
    fn codec_reasons_are_stable() {
        let error = lines(b"\x1f\x8b\x08\x00").unwrap_err();
        assert_eq!(codec_reason(&error), "unknown_format");
        let error = lines(b"EAP1\x09").unwrap_err();
        assert_eq!(codec_reason(&error), "unknown_codec");
    }
}
