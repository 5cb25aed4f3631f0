//! Kinesis record codec shared by the agent (encoder) and the Lambda (decoder).
//!
//! Two record formats reach the stream:
//!
//! - **compat**: one osquery JSON line per record, byte-identical to what osqueryd wrote.
//!   Records written by osquery's own `aws_kinesis` logger look the same to a reader.
//! - **packed**: the [`PACKED_MAGIC`] bytes, one codec byte, then a body (compressed as a
//!   whole when the codec says so). The body is a JSON header line followed by entries,
//!   each a fixed 20-byte frame header and the entry's bytes. Each entry names the file and
//!   byte offset it came from, so a consumer can drop duplicate deliveries.
//!
//! `docs/kinesis-records.md` describes the byte layout for consumers in other languages.

use std::borrow::Cow;
use std::io::Read;

use serde::{Deserialize, Serialize};

/// First bytes of every packed record.
pub const PACKED_MAGIC: [u8; 4] = *b"EAP1";

/// Most bytes of data plus partition key in one Kinesis record.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Maximum number of records in one PutRecords request.
pub const MAX_REQUEST_RECORDS: usize = 500;

/// Most bytes of data plus partition keys in one PutRecords request.
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;

/// Most bytes of a partition key (Unicode scalar values count as one each in AWS; the
/// encoder keeps keys ASCII-safe by truncating on a character boundary at this many bytes).
pub const MAX_PARTITION_KEY_BYTES: usize = 256;

/// Size of an entry's frame header inside a packed body.
pub const ENTRY_HEADER_BYTES: usize = 20;

/// Most bytes a packed body may expand to when decoded; larger bodies are rejected so that
/// a hostile record cannot exhaust the decoder's memory. The agent writes bodies of at most
/// 1 MiB.
pub const MAX_DECODED_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Maximum number of entries in a decoded packed record. A 1 MiB body of the agent contains
/// at most about 50,000, since every entry takes 20 bytes of frame header.
pub const MAX_ENTRIES: usize = 100_000;

/// Most bytes of the header line of a packed body.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Value of an entry's file index when the entry has no source file.
pub const NO_FILE: u16 = u16::MAX;

/// Compression of a packed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// The body is stored as is.
    None,
    /// The body is one zstd frame.
    Zstd,
}

impl Codec {
    fn byte(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 1,
        }
    }
}

/// Kind of content of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A whole line of an osquery log, as osqueryd wrote it.
    Line,
    /// An event the agent generated about the log (`edgealert:internal`), such as a line
    /// that was too long or did not parse.
    Internal,
    /// One row of a batch or snapshot line too large for a record, rewritten as a
    /// complete osquery record holding only that row.
    Row,
}

impl EntryKind {
    fn byte(self) -> u8 {
        match self {
            EntryKind::Line => 0,
            EntryKind::Internal => 1,
            EntryKind::Row => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<EntryKind> {
        match byte {
            0 => Some(EntryKind::Line),
            1 => Some(EntryKind::Internal),
            2 => Some(EntryKind::Row),
            _ => None,
        }
    }
}

/// Entry flag: the agent evaluated this entry and delivered the alerts of agent-tier and
/// both-tier rules itself, so the Lambda does not notify for both-tier rules again.
pub const FLAG_NOTIFIED: u8 = 0b0000_0001;

/// A file an entry came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path the agent read the file under.
    pub path: String,
    /// Identity of the file on its host, `device:inode`; with the offset it names a line.
    pub id: String,
}

/// The JSON header line of a packed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedHeader {
    /// Format version; this module writes and reads 1.
    pub v: u32,
    /// Identity of the agent's host (machine id, or host name when there is none).
    pub agent: String,
    /// Version of the agent that wrote the record.
    pub version: String,
    /// Files the entries refer to by index.
    pub files: Vec<FileRef>,
}

/// One entry of a packed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Kind of content.
    pub kind: EntryKind,
    /// Bit set of `FLAG_*` values.
    pub flags: u8,
    /// Index into [`PackedHeader::files`], or [`NO_FILE`].
    pub file: u16,
    /// Byte offset of the line in its file.
    pub offset: u64,
    /// Row index within the line for [`EntryKind::Row`]; 0 otherwise.
    pub row: u32,
    /// The bytes: an osquery line, an internal event or a one-row record.
    pub data: Cow<'a, [u8]>,
}

impl Entry<'_> {
    /// True when the agent notified for this entry.
    pub fn notified(&self) -> bool {
        self.flags & FLAG_NOTIFIED != 0
    }

    /// Key that is the same for every delivery of this entry and different for any other
    /// entry: agent, file identity, offset, kind and row.
    pub fn delivery_key(&self, header: &PackedHeader) -> String {
        let file = header
            .files
            .get(usize::from(self.file))
            .map_or("-", |file| file.id.as_str());
        format!(
            "{}|{}|{}|{}|{}",
            header.agent,
            file,
            self.offset,
            self.kind.byte(),
            self.row
        )
    }

    /// Bytes this entry adds to a packed body.
    pub fn encoded_len(&self) -> usize {
        ENTRY_HEADER_BYTES + self.data.len()
    }
}

/// Builds the body of one packed record.
#[derive(Debug)]
pub struct PackedWriter {
    header: PackedHeader,
    entries: Vec<u8>,
    count: usize,
}

impl PackedWriter {
    /// Starts an empty record for `agent` written by agent `version`.
    pub fn new(agent: &str, version: &str) -> PackedWriter {
        PackedWriter {
            header: PackedHeader {
                v: 1,
                agent: agent.to_owned(),
                version: version.to_owned(),
                files: Vec::new(),
            },
            entries: Vec::new(),
            count: 0,
        }
    }

    /// Number of entries pushed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the body so far, header line included, before compression.
    pub fn body_len(&self) -> usize {
        self.header_json().len() + 1 + self.entries.len()
    }

    /// Index of `file` in the header, adding it when new. Returns [`NO_FILE`] when the
    /// header already names 65,535 files.
    pub fn file_index(&mut self, file: &FileRef) -> u16 {
        if let Some(index) = self.header.files.iter().position(|known| known == file) {
            return u16::try_from(index).unwrap_or(NO_FILE);
        }
        match u16::try_from(self.header.files.len()) {
            Ok(index) if index != NO_FILE => {
                self.header.files.push(file.clone());
                index
            }
            _ => NO_FILE,
        }
    }

    /// Appends an entry. Entries longer than `u32::MAX` bytes cannot be framed and are
    /// refused; they never fit a record anyway.
    pub fn push(&mut self, entry: &Entry<'_>) -> Result<(), CodecError> {
        let len = u32::try_from(entry.data.len()).map_err(|_| CodecError::EntryTooLarge {
            len: entry.data.len(),
        })?;
        self.entries.push(entry.kind.byte());
        self.entries.push(entry.flags);
        self.entries.extend_from_slice(&entry.file.to_be_bytes());
        self.entries.extend_from_slice(&entry.offset.to_be_bytes());
        self.entries.extend_from_slice(&entry.row.to_be_bytes());
        self.entries.extend_from_slice(&len.to_be_bytes());
        self.entries.extend_from_slice(&entry.data);
        self.count += 1;
        Ok(())
    }

    /// Finishes the record: magic, codec byte and body. With [`Codec::Zstd`] the body is
    /// stored uncompressed instead when compression does not make it smaller.
    pub fn finish(self, codec: Codec, level: i32) -> Vec<u8> {
        let mut body = self.header_json().into_bytes();
        body.push(b'\n');
        body.extend_from_slice(&self.entries);
        if codec == Codec::Zstd
            && let Ok(compressed) = zstd::bulk::compress(&body, level)
            && compressed.len() < body.len()
        {
            return framed(Codec::Zstd, &compressed);
        }
        framed(Codec::None, &body)
    }

    fn header_json(&self) -> String {
        // Serialising a struct of strings and numbers cannot fail.
        serde_json::to_string(&self.header).unwrap_or_default()
    }
}

fn framed(codec: Codec, body: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(PACKED_MAGIC.len() + 1 + body.len());
    record.extend_from_slice(&PACKED_MAGIC);
    record.push(codec.byte());
    record.extend_from_slice(body);
    record
}

/// A decoded Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A packed record.
    Packed(PackedRecord),
    /// One JSON record: the agent's compat format, or osquery's own `aws_kinesis` logger.
    Json(&'a [u8]),
}

/// The content of a packed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedRecord {
    /// The header line.
    pub header: PackedHeader,
    /// The entries in the order they were written.
    pub entries: Vec<Entry<'static>>,
}

/// Error of decoding a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The record is neither packed nor JSON.
    #[error(
        "unknown record format (first bytes {prefix}): expected the packed marker EAP1 or a JSON object"
    )]
    UnknownFormat {
        /// Hex of the first bytes.
        prefix: String,
    },
    /// The codec byte names no known compression.
    #[error(
        "unknown codec byte {byte} in a packed record: this reader knows 0 (none) and 1 (zstd)"
    )]
    UnknownCodec {
        /// The byte found.
        byte: u8,
    },
    /// The compressed body could not be decompressed.
    #[error("packed record body does not decompress: {reason}")]
    Decompress {
        /// Message of the decompressor.
        reason: String,
    },
    /// The body decompresses to more than [`MAX_DECODED_BODY_BYTES`].
    #[error("packed record body expands beyond {limit} bytes; refusing to decode it")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The header line is missing or is not a valid header.
    #[error("packed record header is invalid: {reason}")]
    Header {
        /// Description of the problem.
        reason: String,
    },
    /// The header names a format version this reader does not know.
    #[error("packed record format version {version} is not supported: this reader knows 1")]
    Version {
        /// The version found.
        version: u32,
    },
    /// An entry frame is cut short or names an unknown kind.
    #[error("packed record entry {index} at body byte {at} is invalid: {reason}")]
    Entry {
        /// Index of the entry.
        index: usize,
        /// Byte offset of the frame in the decompressed body.
        at: usize,
        /// Description of the problem.
        reason: String,
    },
    /// An entry is too large to frame.
    #[error("an entry of {len} bytes cannot be framed: entries hold at most 4 GiB")]
    EntryTooLarge {
        /// Length of the entry.
        len: usize,
    },
}

/// Decodes one Kinesis record of any format the agent or osquery writes.
pub fn decode(record: &[u8]) -> Result<Decoded<'_>, CodecError> {
    if let Some(rest) = record.strip_prefix(&PACKED_MAGIC) {
        return decode_packed(rest).map(Decoded::Packed);
    }
    match record.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'{') => Ok(Decoded::Json(record)),
        _ => Err(CodecError::UnknownFormat {
            prefix: hex::encode(&record[..record.len().min(8)]),
        }),
    }
}

fn decode_packed(rest: &[u8]) -> Result<PackedRecord, CodecError> {
    let (&codec, payload) = rest.split_first().ok_or_else(|| CodecError::Header {
        reason: "the record ends after the marker".into(),
    })?;
    let body: Cow<'_, [u8]> = match codec {
        0 => {
            if payload.len() > MAX_DECODED_BODY_BYTES {
                return Err(CodecError::TooLarge {
                    limit: MAX_DECODED_BODY_BYTES,
                });
            }
            Cow::Borrowed(payload)
        }
        1 => Cow::Owned(decompress(payload)?),
        byte => return Err(CodecError::UnknownCodec { byte }),
    };
    let newline =
        body.iter()
            .position(|&byte| byte == b'\n')
            .ok_or_else(|| CodecError::Header {
                reason: "no header line".into(),
            })?;
    if newline > MAX_HEADER_BYTES {
        return Err(CodecError::Header {
            reason: format!("the header line has {newline} bytes, more than {MAX_HEADER_BYTES}"),
        });
    }
    let header: PackedHeader =
        serde_json::from_slice(&body[..newline]).map_err(|error| CodecError::Header {
            reason: error.to_string(),
        })?;
    if header.v != 1 {
        return Err(CodecError::Version { version: header.v });
    }
    let mut entries = Vec::new();
    let mut at = newline + 1;
    while at < body.len() {
        let index = entries.len();
        if index >= MAX_ENTRIES {
            return Err(CodecError::Entry {
                index,
                at,
                reason: format!("more than {MAX_ENTRIES} entries in one record"),
            });
        }
        let invalid = |reason: String| CodecError::Entry { index, at, reason };
        let frame = body.get(at..at + ENTRY_HEADER_BYTES).ok_or_else(|| {
            invalid(format!(
                "{} bytes left, frame header needs {ENTRY_HEADER_BYTES}",
                body.len() - at
            ))
        })?;
        let kind = EntryKind::from_byte(frame[0])
            .ok_or_else(|| invalid(format!("unknown entry kind {}", frame[0])))?;
        let flags = frame[1];
        let file = u16::from_be_bytes([frame[2], frame[3]]);
        let offset = u64::from_be_bytes(frame[4..12].try_into().unwrap_or_default());
        let row = u32::from_be_bytes(frame[12..16].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(frame[16..20].try_into().unwrap_or_default());
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let start = at + ENTRY_HEADER_BYTES;
        let data = start
            .checked_add(len)
            .and_then(|end| body.get(start..end))
            .ok_or_else(|| invalid(format!("data of {len} bytes runs past the end of the body")))?;
        if file != NO_FILE && usize::from(file) >= header.files.len() {
            return Err(invalid(format!(
                "file index {file} but the header names {} files",
                header.files.len()
            )));
        }
        entries.push(Entry {
            kind,
            flags,
            file,
            offset,
            row,
            data: Cow::Owned(data.to_vec()),
        });
        at = start + len;
    }
    Ok(PackedRecord { header, entries })
}

fn decompress(payload: &[u8]) -> Result<Vec<u8>, CodecError> {
    let decoder =
        zstd::stream::read::Decoder::new(payload).map_err(|error| CodecError::Decompress {
            reason: error.to_string(),
        })?;
    let mut body = Vec::new();
    let limit = u64::try_from(MAX_DECODED_BODY_BYTES).unwrap_or(u64::MAX);
    decoder
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|error| CodecError::Decompress {
            reason: error.to_string(),
        })?;
    if body.len() > MAX_DECODED_BODY_BYTES {
        return Err(CodecError::TooLarge {
            limit: MAX_DECODED_BODY_BYTES,
        });
    }
    Ok(body)
}

/// Error of splitting a line into rows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    /// The line is not a JSON object.
    #[error("the line is not a JSON object: {reason}")]
    NotAnObject {
        /// Description of the problem, with the byte offset.
        reason: String,
    },
    /// The line holds one row (event format) or no row array.
    #[error("the line holds no diffResults or snapshot rows to split")]
    NoRows,
}

/// Splits a batch (`diffResults`) or snapshot line into complete osquery records of one row
/// each, in the order the rows appear (`removed` before `added`, as osqueryd orders them).
///
/// Every other top-level member keeps its bytes and order, and each row's bytes are copied
/// unchanged, so a consumer sees a valid record of the same query. The scan works on bytes
/// and does not validate UTF-8, because osqueryd writes invalid UTF-8 in string values as it
/// finds it. Returns the rows with their index in the line.
pub fn split_rows(line: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, SplitError> {
    let members = object_members(line, 0)?;
    let mut out = Vec::new();
    let mut index = 0u32;
    for (position, member) in members.iter().enumerate() {
        let value = &line[member.value.clone()];
        match &line[member.key.clone()] {
            b"\"diffResults\"" => {
                let diff =
                    object_members(line, member.value.start).map_err(|_| SplitError::NoRows)?;
                for action in &diff {
                    let name = &line[action.key.clone()];
                    for row in array_elements(line, action.value.start)? {
                        let row = &line[row];
                        let mut replacement = Vec::with_capacity(row.len() + 32);
                        if name == b"\"removed\"" {
                            replacement.extend_from_slice(b"{\"added\":[],\"removed\":[");
                            replacement.extend_from_slice(row);
                            replacement.extend_from_slice(b"]}");
                        } else {
                            replacement.push(b'{');
                            replacement.extend_from_slice(name);
                            replacement.extend_from_slice(b":[");
                            replacement.extend_from_slice(row);
                            replacement.extend_from_slice(b"],\"removed\":[]}");
                        }
                        out.push((index, rebuild(line, &members, position, &replacement)));
                        index = index.saturating_add(1);
                    }
                }
            }
            b"\"snapshot\"" if value.first() == Some(&b'[') => {
                for row in array_elements(line, member.value.start)? {
                    let mut replacement = Vec::with_capacity(row.len() + 2);
                    replacement.push(b'[');
                    replacement.extend_from_slice(&line[row]);
                    replacement.push(b']');
                    out.push((index, rebuild(line, &members, position, &replacement)));
                    index = index.saturating_add(1);
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(SplitError::NoRows);
    }
    Ok(out)
}

/// Byte ranges of one object member: the key with its quotes, and the value.
struct Member {
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

fn rebuild(line: &[u8], members: &[Member], replaced: usize, replacement: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len().min(replacement.len() + 4096));
    out.push(b'{');
    for (position, member) in members.iter().enumerate() {
        if position > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&line[member.key.clone()]);
        out.push(b':');
        if position == replaced {
            out.extend_from_slice(replacement);
        } else {
            out.extend_from_slice(&line[member.value.clone()]);
        }
    }
    out.push(b'}');
    out
}

fn invalid(at: usize, what: &str) -> SplitError {
    SplitError::NotAnObject {
        reason: format!("{what} at byte {at}"),
    }
}

fn skip_whitespace(line: &[u8], mut at: usize) -> usize {
    while line
        .get(at)
        .is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// Returns the end of the string that starts with the quote at `at`.
fn skip_string(line: &[u8], at: usize) -> Result<usize, SplitError> {
    let mut position = at + 1;
    while let Some(&byte) = line.get(position) {
        match byte {
            b'\\' => position += 2,
            b'"' => return Ok(position + 1),
            _ => position += 1,
        }
    }
    Err(invalid(at, "unterminated string"))
}

/// Returns the end of the value that starts at `at` (after whitespace).
fn skip_value(line: &[u8], at: usize) -> Result<usize, SplitError> {
    match line.get(at) {
        Some(b'"') => skip_string(line, at),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut position = at;
            while let Some(&byte) = line.get(position) {
                match byte {
                    b'"' => {
                        position = skip_string(line, position)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(position + 1);
                        }
                    }
                    _ => {}
                }
                position += 1;
            }
            Err(invalid(at, "unterminated object or array"))
        }
        Some(_) => {
            let mut position = at;
            while line.get(position).is_some_and(|byte| {
                !matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            }) {
                position += 1;
            }
            if position == at {
                return Err(invalid(at, "missing value"));
            }
            Ok(position)
        }
        None => Err(invalid(at, "missing value")),
    }
}

/// Members of the object that starts at `at` (after whitespace).
fn object_members(line: &[u8], at: usize) -> Result<Vec<Member>, SplitError> {
    let mut position = skip_whitespace(line, at);
    if line.get(position) != Some(&b'{') {
        return Err(invalid(position, "expected an object"));
    }
    position = skip_whitespace(line, position + 1);
    let mut members = Vec::new();
    if line.get(position) == Some(&b'}') {
        return Ok(members);
    }
    loop {
        if line.get(position) != Some(&b'"') {
            return Err(invalid(position, "expected a member name"));
        }
        let key_end = skip_string(line, position)?;
        let key = position..key_end;
        position = skip_whitespace(line, key_end);
        if line.get(position) != Some(&b':') {
            return Err(invalid(position, "expected a colon"));
        }
        let value_start = skip_whitespace(line, position + 1);
        let value_end = skip_value(line, value_start)?;
        members.push(Member {
            key,
            value: value_start..value_end,
        });
        position = skip_whitespace(line, value_end);
        match line.get(position) {
            Some(b',') => position = skip_whitespace(line, position + 1),
            Some(b'}') => return Ok(members),
            _ => {
                return Err(invalid(
                    position,
                    "expected a comma or the end of the object",
                ));
            }
        }
    }
}

/// Byte ranges of the elements of the array that starts at `at` (after whitespace).
fn array_elements(line: &[u8], at: usize) -> Result<Vec<std::ops::Range<usize>>, SplitError> {
    let mut position = skip_whitespace(line, at);
    if line.get(position) != Some(&b'[') {
        return Err(SplitError::NoRows);
    }
    position = skip_whitespace(line, position + 1);
    let mut elements = Vec::new();
    if line.get(position) == Some(&b']') {
        return Ok(elements);
    }
    loop {
        let end = skip_value(line, position)?;
        elements.push(position..end);
        position = skip_whitespace(line, end);
        match line.get(position) {
            Some(b',') => position = skip_whitespace(line, position + 1),
            Some(b']') => return Ok(elements),
            _ => {
                return Err(invalid(
                    position,
                    "expected a comma or the end of the array",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, offset: u64, data: &[u8]) -> Entry<'static> {
        Entry {
            kind,
            flags: FLAG_NOTIFIED,
            file: 0,
            offset,
            row: 0,
            data: Cow::Owned(data.to_vec()),
        }
    }

    fn file() -> FileRef {
        FileRef {
            path: "/var/log/osquery/osqueryd.results.log".into(),
            id: "2049:131".into(),
        }
    }

    #[test]
    fn packed_round_trip_keeps_entries_in_order_with_both_codecs() {
        for codec in [Codec::None, Codec::Zstd] {
            let mut writer = PackedWriter::new("host-a", "0.1.0");
            assert_eq!(writer.file_index(&file()), 0);
            assert_eq!(writer.file_index(&file()), 0);
            let lines: Vec<Vec<u8>> = (0..50)
                .map(|n| format!("{{\"name\":\"q\",\"n\":{n}}}").into_bytes())
                .collect();
            let mut offset = 0;
            for line in &lines {
                writer.push(&entry(EntryKind::Line, offset, line)).unwrap();
                offset += line.len() as u64 + 1;
            }
            writer
                .push(&Entry {
                    flags: 0,
                    file: NO_FILE,
                    ..entry(EntryKind::Internal, 7, b"\xff\x00not utf-8")
                })
                .unwrap();
            let expected_len = writer.body_len();
            let record = writer.finish(codec, 3);
            assert_eq!(&record[..4], b"EAP1");
            if codec == Codec::None {
                assert_eq!(record.len(), expected_len + 5);
            }
            let Decoded::Packed(packed) = decode(&record).unwrap() else {
                panic!("expected a packed record");
            };
            assert_eq!(packed.header.agent, "host-a");
            assert_eq!(packed.header.files, vec![file()]);
            assert_eq!(packed.entries.len(), 51);
            for (decoded, line) in packed.entries.iter().zip(&lines) {
                assert_eq!(decoded.data.as_ref(), line.as_slice());
                assert!(decoded.notified());
            }
            let last = packed.entries.last().unwrap();
            assert_eq!(last.kind, EntryKind::Internal);
            assert_eq!(last.data.as_ref(), b"\xff\x00not utf-8");
            assert_eq!(last.delivery_key(&packed.header), "host-a|-|7|1|0");
        }
    }

    #[test]
    fn zstd_codec_compresses_repetitive_lines_and_falls_back_when_it_does_not_help() {
        let mut writer = PackedWriter::new("h", "v");
        let line = br#"{"name":"pack_processes","hostIdentifier":"web-1","columns":{"pid":"1"}}"#;
        for n in 0..200 {
            writer.push(&entry(EntryKind::Line, n, line)).unwrap();
        }
        let plain = writer.body_len();
        let record = writer.finish(Codec::Zstd, 3);
        assert_eq!(record[4], 1);
        assert!(record.len() * 10 < plain, "{} vs {plain}", record.len());

        let tiny = PackedWriter::new("h", "v").finish(Codec::Zstd, 3);
        assert_eq!(tiny[4], 0, "an empty body does not shrink, so it is stored");
    }

    #[test]
    fn decode_classifies_json_and_rejects_unknown_formats() {
        assert_eq!(
            decode(b"  {\"name\":\"x\"}").unwrap(),
            Decoded::Json(b"  {\"name\":\"x\"}")
        );
        assert_eq!(
            decode(b"\x1f\x8b\x08\x00gzip").unwrap_err(),
            CodecError::UnknownFormat {
                prefix: "1f8b0800677a6970".into()
            }
        );
        assert_eq!(
            decode(b"").unwrap_err(),
            CodecError::UnknownFormat { prefix: "".into() }
        );
        assert_eq!(
            decode(b"EAP1\x07body").unwrap_err(),
            CodecError::UnknownCodec { byte: 7 }
        );
        assert!(matches!(
            decode(b"EAP1").unwrap_err(),
            CodecError::Header { .. }
        ));
    }

    #[test]
    fn decode_rejects_truncated_and_corrupt_packed_records() {
        let mut writer = PackedWriter::new("h", "v");
        writer.file_index(&file());
        writer
            .push(&entry(EntryKind::Line, 0, b"{\"a\":1}"))
            .unwrap();
        let record = writer.finish(Codec::None, 0);

        let cut = &record[..record.len() - 3];
        assert!(matches!(
            decode(cut).unwrap_err(),
            CodecError::Entry { index: 0, reason, .. } if reason.contains("runs past the end")
        ));

        let mut bad_kind = record.clone();
        let frame = record.iter().position(|&b| b == b'\n').unwrap() + 1;
        bad_kind[frame] = 9;
        assert!(matches!(
            decode(&bad_kind).unwrap_err(),
            CodecError::Entry { reason, .. } if reason == "unknown entry kind 9"
        ));

        let mut bad_file = record.clone();
        bad_file[frame + 3] = 4;
        assert!(matches!(
            decode(&bad_file).unwrap_err(),
            CodecError::Entry { reason, .. } if reason.contains("file index 4")
        ));

        let compressed = {
            let mut writer = PackedWriter::new("h", "v");
            for n in 0..100 {
                writer
                    .push(&entry(EntryKind::Line, n, b"{\"same\":\"bytes again\"}"))
                    .unwrap();
            }
            writer.finish(Codec::Zstd, 3)
        };
        assert_eq!(compressed[4], 1);
        let truncated = &compressed[..compressed.len() / 2];
        assert!(matches!(
            decode(truncated).unwrap_err(),
            CodecError::Decompress { .. }
        ));

        assert!(matches!(
            decode(b"EAP1\x00{\"v\":2,\"agent\":\"a\",\"version\":\"v\",\"files\":[]}\n")
                .unwrap_err(),
            CodecError::Version { version: 2 }
        ));
        assert!(matches!(
            decode(b"EAP1\x00no newline").unwrap_err(),
            CodecError::Header { .. }
        ));
    }

    #[test]
    fn decode_refuses_more_entries_than_the_limit() {
        let mut writer = PackedWriter::new("h", "v");
        for _ in 0..=MAX_ENTRIES {
            writer
                .push(&Entry {
                    file: NO_FILE,
                    ..entry(EntryKind::Line, 0, b"")
                })
                .unwrap();
        }
        let record = writer.finish(Codec::Zstd, 1);
        assert!(matches!(
            decode(&record).unwrap_err(),
            CodecError::Entry { index, reason, .. }
                if index == MAX_ENTRIES && reason == "more than 100000 entries in one record"
        ));
    }

    #[test]
    fn decode_refuses_a_header_line_over_the_limit() {
        let agent = "A".repeat(MAX_HEADER_BYTES);
        let record = PackedWriter::new(&agent, "v").finish(Codec::Zstd, 1);
        assert!(matches!(
            decode(&record).unwrap_err(),
            CodecError::Header { reason } if reason.contains("more than 1048576")
        ));
    }

    #[test]
    fn decode_refuses_a_body_that_expands_past_the_limit() {
        let body = vec![b'a'; MAX_DECODED_BODY_BYTES + 10];
        let mut record = b"EAP1\x01".to_vec();
        record.extend_from_slice(&zstd::bulk::compress(&body, 1).unwrap());
        assert_eq!(
            decode(&record).unwrap_err(),
            CodecError::TooLarge {
                limit: MAX_DECODED_BODY_BYTES
            }
        );
    }

    #[test]
    fn split_rows_makes_one_complete_record_per_batch_row() {
        let line = br#"{"name":"pack_nc","hostIdentifier":"h\/1","calendarTime":"x","unixTime":1,"diffResults":{"removed":[{"pid":"1"}],"added":[{"pid":"2","cmd":"nc -l"},{"pid":"3"}]},"counter":0,"numerics":false}"#;
        let rows = split_rows(line).unwrap();
        let texts: Vec<(u32, String)> = rows
            .into_iter()
            .map(|(index, bytes)| (index, String::from_utf8(bytes).unwrap()))
            .collect();
        assert_eq!(
            texts,
            vec![
                (0, r#"{"name":"pack_nc","hostIdentifier":"h\/1","calendarTime":"x","unixTime":1,"diffResults":{"added":[],"removed":[{"pid":"1"}]},"counter":0,"numerics":false}"#.to_owned()),
                (1, r#"{"name":"pack_nc","hostIdentifier":"h\/1","calendarTime":"x","unixTime":1,"diffResults":{"added":[{"pid":"2","cmd":"nc -l"}],"removed":[]},"counter":0,"numerics":false}"#.to_owned()),
                (2, r#"{"name":"pack_nc","hostIdentifier":"h\/1","calendarTime":"x","unixTime":1,"diffResults":{"added":[{"pid":"3"}],"removed":[]},"counter":0,"numerics":false}"#.to_owned()),
            ]
        );
        for (_, text) in &texts {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(value["hostIdentifier"], "h/1");
        }
    }

    #[test]
    fn split_rows_keeps_invalid_utf8_bytes_of_rows() {
        let mut line =
            br#"{"name":"q","snapshot":[{"a":"1"},{"a":"X"}],"action":"snapshot"}"#.to_vec();
        let at = line.iter().position(|&byte| byte == b'X').unwrap();
        line[at] = 0xff;
        let rows = split_rows(&line).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1].1,
            b"{\"name\":\"q\",\"snapshot\":[{\"a\":\"\xff\"}],\"action\":\"snapshot\"}".to_vec()
        );
    }

    #[test]
    fn split_rows_handles_escapes_nesting_and_whitespace() {
        let line =
            br#" { "name" : "q\"}" , "snapshot" : [ {"a":"[{\\\"}"} , {"b":[1,{"c":2}]} ] } "#;
        let rows = split_rows(line).unwrap();
        assert_eq!(
            rows[0].1,
            br#"{"name":"q\"}","snapshot":[{"a":"[{\\\"}"}]}"#.to_vec()
        );
        assert_eq!(
            rows[1].1,
            br#"{"name":"q\"}","snapshot":[{"b":[1,{"c":2}]}]}"#.to_vec()
        );
        for text in [&rows[0].1, &rows[1].1] {
            serde_json::from_slice::<serde_json::Value>(text).unwrap();
        }
    }

    #[test]
    fn split_rows_rejects_malformed_lines_with_the_byte_offset() {
        assert_eq!(
            split_rows(b"[1,2]").unwrap_err(),
            SplitError::NotAnObject {
                reason: "expected an object at byte 0".into()
            }
        );
        assert_eq!(
            split_rows(br#"{"snapshot":[{"a":"1"}"#).unwrap_err(),
            SplitError::NotAnObject {
                reason: "unterminated object or array at byte 12".into()
            }
        );
        assert_eq!(
            split_rows(br#"{"a" 1}"#).unwrap_err(),
            SplitError::NotAnObject {
                reason: "expected a colon at byte 5".into()
            }
        );
        assert_eq!(
            split_rows(br#"{"snapshot":"text"}"#).unwrap_err(),
            SplitError::NoRows
        );
    }

    proptest::proptest! {
        #[test]
        fn split_rows_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = split_rows(&bytes);
        }

        #[test]
        fn split_rows_never_panics_on_mutated_lines(cut in 0usize..120, flip in 0usize..120, byte in proptest::prelude::any::<u8>()) {
            let mut line = br#"{"name":"q","diffResults":{"removed":[{"p":"1"}],"added":[{"p":"2","c":"x\"y"}]},"counter":0}"#.to_vec();
            let flip = flip % line.len();
            line[flip] = byte;
            line.truncate(cut.min(line.len()));
            let _ = split_rows(&line);
        }
    }

    #[test]
    fn split_rows_splits_snapshots_and_refuses_single_row_lines() {
        let line = br#"{"snapshot":[{"a":"1"},{"a":"2"}],"action":"snapshot","name":"q"}"#;
        let rows = split_rows(line).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1].1,
            br#"{"snapshot":[{"a":"2"}],"action":"snapshot","name":"q"}"#.to_vec()
        );
        assert_eq!(
            split_rows(br#"{"name":"q","columns":{"a":"1"},"action":"added"}"#).unwrap_err(),
            SplitError::NoRows
        );
        assert_eq!(
            split_rows(br#"{"snapshot":[]}"#).unwrap_err(),
            SplitError::NoRows
        );
        assert!(matches!(
            split_rows(b"{\"snapshot\":[{\"a\":").unwrap_err(),
            SplitError::NotAnObject { .. }
        ));
    }
}
