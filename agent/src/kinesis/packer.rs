//! From forwarded lines to Kinesis records in the configured format.
//!
//! Every line ends up in exactly one place: a record, rows of a split line in several
//! records, or the dead-letter directory with an internal event forwarded in its place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rules_core::kinesis::{
    Codec, ENTRY_HEADER_BYTES, Entry, EntryKind, FLAG_NOTIFIED, FileRef, MAX_PARTITION_KEY_BYTES,
    MAX_RECORD_BYTES, PackedWriter,
};

use super::{Compression, KinesisSettings, RecordFormat};
use crate::pipeline::OutRecord;

/// Bytes of the 4-byte marker and codec byte before a packed body.
const PACKED_PREFIX_BYTES: usize = 5;

/// One Kinesis record ready to send, with the batches whose lines it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KRecord {
    /// Partition key.
    pub key: String,
    /// Data blob.
    pub data: Vec<u8>,
    /// Number of lines, rows and internal events inside.
    pub entries: u32,
    /// First batch sequence number with an entry in this record.
    pub first_batch: u64,
    /// Last batch sequence number with an entry in this record.
    pub last_batch: u64,
}

impl KRecord {
    /// Bytes Kinesis counts against its limits: data plus partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.key.len()
    }
}

/// Counters of the packer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PackerCounters {
    /// Lines split into rows.
    pub lines_split: u64,
    /// Rows or lines too large for any record.
    pub dead_lettered: u64,
    /// Of those, the ones that could not be written to the dead-letter directory.
    pub dead_letter_failures: u64,
}

struct Open {
    writer: PackedWriter,
    opened: Instant,
    first_batch: u64,
    last_batch: u64,
}

/// Builds records from lines.
pub struct Packer {
    format: RecordFormat,
    codec: Codec,
    level: i32,
    body_limit: usize,
    linger: Duration,
    agent: String,
    notifies: bool,
    dead_letter_dir: PathBuf,
    dead_letter_max_bytes: u64,
    open: BTreeMap<String, Open>,
    random: bool,
    random_key: String,
    /// Counters since start.
    pub counters: PackerCounters,
}

impl Packer {
    /// Creates a packer. `agent` is the host identity written into packed headers and
    /// used as key when a line has none; `notifies` says whether this agent delivers the
    /// alerts of its rules, which sets the notified flag of evaluated entries.
    pub fn new(
        settings: &KinesisSettings,
        agent: &str,
        notifies: bool,
        dead_letter_dir: PathBuf,
    ) -> Packer {
        let body_limit = usize::try_from(settings.packed_record_bytes)
            .unwrap_or(usize::MAX)
            .min(MAX_RECORD_BYTES - MAX_PARTITION_KEY_BYTES - PACKED_PREFIX_BYTES);
        Packer {
            format: settings.format,
            codec: match settings.compression {
                Compression::Zstd => Codec::Zstd,
                Compression::None => Codec::None,
            },
            level: settings.zstd_level,
            body_limit,
            linger: Duration::from_millis(settings.linger_ms),
            agent: agent.to_owned(),
            notifies,
            dead_letter_dir,
            dead_letter_max_bytes: settings.dead_letter_max_bytes,
            open: BTreeMap::new(),
            random: settings.partition_key.field().is_none(),
            random_key: random_key(),
            counters: PackerCounters::default(),
        }
    }

    /// Starts a new batch; random partition keys change here.
    pub fn start_batch(&mut self) {
        self.random_key = random_key();
    }

    /// Adds one forwarded record of batch `batch`; finished records go to `out`.
    pub fn add(&mut self, batch: u64, record: OutRecord, out: &mut Vec<KRecord>) {
        let key = self.key_for(&record);
        let kind = if record.internal {
            EntryKind::Internal
        } else {
            EntryKind::Line
        };
        match self.format {
            RecordFormat::Compat => {
                if record.bytes.len() + key.len() <= MAX_RECORD_BYTES {
                    out.push(KRecord {
                        key,
                        data: record.bytes,
                        entries: 1,
                        first_batch: batch,
                        last_batch: batch,
                    });
                } else {
                    self.split(batch, &key, &record, out);
                }
            }
            RecordFormat::Packed => {
                let flags = self.flags(&record);
                if !self.place_packed(batch, &key, &record, kind, 0, flags, &record.bytes, out) {
                    self.split(batch, &key, &record, out);
                }
            }
        }
    }

    /// Closes the records that have waited `linger` or longer.
    pub fn flush_due(&mut self, now: Instant, out: &mut Vec<KRecord>) {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, open)| now.duration_since(open.opened) >= self.linger)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            self.close(&key, out);
        }
    }

    /// Closes every open record.
    pub fn flush_all(&mut self, out: &mut Vec<KRecord>) {
        let keys: Vec<String> = self.open.keys().cloned().collect();
        for key in keys {
            self.close(&key, out);
        }
    }

    /// When the oldest open record is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|open| open.opened + self.linger)
            .min()
    }

    /// Lowest batch sequence number with a line in an open record.
    pub fn lowest_open_batch(&self) -> Option<u64> {
        self.open.values().map(|open| open.first_batch).min()
    }

    fn flags(&self, record: &OutRecord) -> u8 {
        if record.evaluated && self.notifies {
            FLAG_NOTIFIED
        } else {
            0
        }
    }

    fn key_for(&self, record: &OutRecord) -> String {
        if self.random {
            return self.random_key.clone();
        }
        match &record.key {
            Some(key) if !key.is_empty() => truncate_key(key),
            _ => truncate_key(&self.agent),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_entry(
        &mut self,
        batch: u64,
        key: &str,
        record: &OutRecord,
        kind: EntryKind,
        row: u32,
        flags: u8,
        data: &[u8],
        out: &mut Vec<KRecord>,
    ) {
        let file = FileRef {
            path: record.path.display().to_string(),
            id: record.file_id.clone(),
        };
        let entry = Entry {
            kind,
            flags,
            file: 0,
            offset: record.offset,
            row,
            data: std::borrow::Cow::Borrowed(data),
        };
        let needed = entry.encoded_len() + header_allowance(record);
        if let Some(open) = self.open.get(key)
            && open.writer.body_len() + needed > self.body_limit
        {
            self.close(key, out);
        }
        let open = self.open.entry(key.to_owned()).or_insert_with(|| Open {
            writer: PackedWriter::new(&self.agent, env!("CARGO_PKG_VERSION")),
            opened: Instant::now(),
            first_batch: batch,
            last_batch: batch,
        });
        let file = open.writer.file_index(&file);
        // Entries here are under the body limit, far below the 4 GiB a frame can hold.
        let _ = open.writer.push(&Entry { file, ..entry });
        open.last_batch = batch;
    }

    fn close(&mut self, key: &str, out: &mut Vec<KRecord>) {
        let Some(open) = self.open.remove(key) else {
            return;
        };
        let entries = u32::try_from(open.writer.len()).unwrap_or(u32::MAX);
        out.push(KRecord {
            key: key.to_owned(),
            data: open.writer.finish(self.codec, self.level),
            entries,
            first_batch: open.first_batch,
            last_batch: open.last_batch,
        });
    }

    /// Splits a line too large for one record into rows; rows that still do not fit, or a
    /// line that cannot be split, go to the dead-letter directory.
    fn split(&mut self, batch: u64, key: &str, record: &OutRecord, out: &mut Vec<KRecord>) {
        let rows = match rules_core::kinesis::split_rows(&record.bytes) {
            Ok(rows) => rows,
            Err(error) => {
                self.dead_letter(batch, record, &record.bytes, None, &error.to_string(), out);
                return;
            }
        };
        self.counters.lines_split += 1;
        tracing::info!(
            file = %record.path.display(),
            offset = record.offset,
            bytes = record.bytes.len(),
            rows = rows.len(),
            "Split a line larger than a Kinesis record into one record per row."
        );
        let flags = self.flags(record);
        for (row, data) in rows {
            let placed = match self.format {
                RecordFormat::Compat if data.len() + key.len() <= MAX_RECORD_BYTES => {
                    out.push(KRecord {
                        key: key.to_owned(),
                        data,
                        entries: 1,
                        first_batch: batch,
                        last_batch: batch,
                    });
                    continue;
                }
                RecordFormat::Compat => false,
                RecordFormat::Packed => {
                    self.place_packed(batch, key, record, EntryKind::Row, row, flags, &data, out)
                }
            };
            if !placed {
                self.dead_letter(
                    batch,
                    record,
                    &data,
                    Some(row),
                    "a single row is larger than a record",
                    out,
                );
            }
        }
    }

    /// Adds a packed entry: to the key's open record when it fits `packed_record_bytes`,
    /// otherwise alone in a record of its own when that fits a Kinesis record. Returns
    /// false when the entry is too large for any record.
    #[allow(clippy::too_many_arguments)]
    fn place_packed(
        &mut self,
        batch: u64,
        key: &str,
        record: &OutRecord,
        kind: EntryKind,
        row: u32,
        flags: u8,
        data: &[u8],
        out: &mut Vec<KRecord>,
    ) -> bool {
        let empty = PackedWriter::new(&self.agent, env!("CARGO_PKG_VERSION")).body_len();
        let body = empty + ENTRY_HEADER_BYTES + data.len() + header_allowance(record);
        if body <= self.body_limit {
            self.push_entry(batch, key, record, kind, row, flags, data, out);
            true
        } else if PACKED_PREFIX_BYTES + body + key.len() <= MAX_RECORD_BYTES {
            // Close the key's open record first, so the entries of the key keep their order.
            self.close(key, out);
            self.push_entry(batch, key, record, kind, row, flags, data, out);
            self.close(key, out);
            true
        } else {
            false
        }
    }

    fn dead_letter(
        &mut self,
        batch: u64,
        record: &OutRecord,
        data: &[u8],
        row: Option<u32>,
        why: &str,
        out: &mut Vec<KRecord>,
    ) {
        self.counters.dead_lettered += 1;
        // The time keeps names unique when a file's inode and offsets are reused after
        // rotation or truncation.
        let stem = format!(
            "{}-{}-{}",
            unix_ms(),
            record.file_id.replace(':', "-"),
            record.offset
        );
        let (stem, what) = match row {
            Some(row) => (format!("{stem}-row{row}"), "row"),
            None => (stem, "line"),
        };
        let written = write_dead_letter(
            &self.dead_letter_dir,
            &stem,
            data,
            self.dead_letter_max_bytes,
        );
        let outcome = match written {
            Ok(path) => format!("it was written to {}", path.display()),
            Err(error) => {
                self.counters.dead_letter_failures += 1;
                format!(
                    "writing it to {} failed, so it is lost: {error}",
                    self.dead_letter_dir.display()
                )
            }
        };
        let message = format!(
            "A {}-byte {what} does not fit a Kinesis record ({why}); {outcome}.",
            data.len()
        );
        tracing::warn!(file = %record.path.display(), offset = record.offset, reason = "record_too_large", "{message}");
        let event = serde_json::json!({
            "edgealert": {"version": env!("CARGO_PKG_VERSION")},
            "hostIdentifier": self.agent,
            "unixTime": unix_now(),
            "reason": "record_too_large",
            "file": record.path.display().to_string(),
            "offset": record.offset,
            "message": message,
            "excerpt": String::from_utf8_lossy(&data[..data.len().min(256)]),
        });
        let internal = OutRecord {
            bytes: serde_json::to_vec(&event).unwrap_or_default(),
            internal: true,
            key: Some(self.agent.clone()),
            evaluated: false,
            ..record.clone_meta()
        };
        let key = truncate_key(&self.agent);
        match self.format {
            RecordFormat::Compat => out.push(KRecord {
                key,
                data: internal.bytes,
                entries: 1,
                first_batch: batch,
                last_batch: batch,
            }),
            RecordFormat::Packed => {
                let bytes = internal.bytes.clone();
                self.push_entry(
                    batch,
                    &key,
                    &internal,
                    EntryKind::Internal,
                    row.unwrap_or(0),
                    0,
                    &bytes,
                    out,
                );
            }
        }
    }
}

impl OutRecord {
    /// A copy of the record's origin without its bytes.
    fn clone_meta(&self) -> OutRecord {
        OutRecord {
            bytes: Vec::new(),
            internal: self.internal,
            path: self.path.clone(),
            file_id: self.file_id.clone(),
            offset: self.offset,
            key: self.key.clone(),
            evaluated: self.evaluated,
        }
    }
}

/// Room a record's file reference may take in a packed header.
fn header_allowance(record: &OutRecord) -> usize {
    record.path.as_os_str().len() + record.file_id.len() + 64
}

/// Writes `data` to a new file named `stem.json` in `dir` (`stem-2.json` and so on when the
/// name is taken), unless the directory would grow past `max_bytes`. Returns the path.
fn write_dead_letter(
    dir: &Path,
    stem: &str,
    data: &[u8],
    max_bytes: u64,
) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let used: u64 = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .map(|meta| meta.len())
        .sum();
    if used + data.len() as u64 > max_bytes {
        return Err(std::io::Error::other(format!(
            "the directory holds {used} bytes and its cap is {max_bytes} (kinesis.dead_letter_max_bytes)"
        )));
    }
    for attempt in 1u32.. {
        let path = match attempt {
            1 => dir.join(format!("{stem}.json")),
            n => dir.join(format!("{stem}-{n}.json")),
        };
        let opened = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path);
        match opened {
            Ok(mut file) => {
                file.write_all(data)?;
                file.sync_all()?;
                return Ok(path);
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    unreachable!("the attempts run until a free name is found")
}

/// Cuts a key to [`MAX_PARTITION_KEY_BYTES`] on a character boundary; an empty key
/// becomes `-`, since Kinesis refuses empty keys.
pub fn truncate_key(key: &str) -> String {
    if key.is_empty() {
        return "-".to_owned();
    }
    let mut end = key.len().min(MAX_PARTITION_KEY_BYTES);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key[..end].to_owned()
}

fn random_key() -> String {
    format!("{:016x}", fastrand::u64(..))
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_millis())
        .unwrap_or_default()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules_core::kinesis::{Decoded, decode};

    fn settings(format: RecordFormat) -> KinesisSettings {
        KinesisSettings {
            stream: "s".into(),
            format,
            packed_record_bytes: 4096,
            ..KinesisSettings::default()
        }
    }

    fn line(offset: u64, bytes: &[u8]) -> OutRecord {
        OutRecord {
            bytes: bytes.to_vec(),
            internal: false,
            path: "/var/log/osquery/osqueryd.results.log".into(),
            file_id: "2049:77".into(),
            offset,
            key: Some("web-1".into()),
            evaluated: true,
        }
    }

    fn packed_entries(record: &KRecord) -> Vec<(u64, u32, Vec<u8>, bool)> {
        let Decoded::Packed(packed) = decode(&record.data).unwrap() else {
            panic!("expected a packed record");
        };
        packed
            .entries
            .into_iter()
            .map(|entry| {
                let notified = entry.notified();
                (entry.offset, entry.row, entry.data.into_owned(), notified)
            })
            .collect()
    }

    #[test]
    fn packer_compat_makes_one_identical_record_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut packer = Packer::new(
            &settings(RecordFormat::Compat),
            "agent-host",
            true,
            dir.path().into(),
        );
        let mut out = Vec::new();
        packer.add(0, line(0, b"{\"a\":1}"), &mut out);
        packer.add(1, line(8, b"\xff{\"b\":2}"), &mut out);
        assert_eq!(packer.next_due(), None);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, b"{\"a\":1}");
        assert_eq!(out[1].data, b"\xff{\"b\":2}");
        assert_eq!((out[1].first_batch, out[1].last_batch), (1, 1));
        assert_eq!(out[0].key, "web-1");
    }

    #[test]
    fn packer_packed_closes_a_record_at_the_size_limit_and_at_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut packer = Packer::new(
            &settings(RecordFormat::Packed),
            "agent-host",
            true,
            dir.path().into(),
        );
        let mut out = Vec::new();
        let text = format!("{{\"pad\":\"{}\"}}", "x".repeat(900));
        for n in 0..10u64 {
            packer.add(n / 4, line(n * 1000, text.as_bytes()), &mut out);
        }
        assert!(
            !out.is_empty(),
            "4 KiB bodies hold fewer than 10 lines of 900 bytes"
        );
        assert_eq!(
            packer.lowest_open_batch().map(|batch| batch <= 2),
            Some(true)
        );
        packer.flush_all(&mut out);
        assert_eq!(packer.next_due(), None);
        let entries: Vec<_> = out.iter().flat_map(packed_entries).collect();
        let offsets: Vec<u64> = entries.iter().map(|entry| entry.0).collect();
        assert_eq!(offsets, (0..10).map(|n| n * 1000).collect::<Vec<_>>());
        assert!(
            entries
                .iter()
                .all(|entry| entry.2 == text.as_bytes() && entry.3)
        );
        assert!(out.iter().all(|record| record.size() <= MAX_RECORD_BYTES));
        assert_eq!(out.iter().map(|record| record.entries).sum::<u32>(), 10);
        assert_eq!(out[0].first_batch, 0);
        assert_eq!(out.last().unwrap().last_batch, 2);
    }

    #[test]
    fn packer_sets_the_notified_flag_only_for_evaluated_lines_of_a_notifying_agent() {
        let dir = tempfile::tempdir().unwrap();
        for (notifies, evaluated, expected) in [
            (true, true, true),
            (true, false, false),
            (false, true, false),
        ] {
            let mut packer = Packer::new(
                &settings(RecordFormat::Packed),
                "h",
                notifies,
                dir.path().into(),
            );
            let mut out = Vec::new();
            packer.add(
                0,
                OutRecord {
                    evaluated,
                    ..line(0, b"{}")
                },
                &mut out,
            );
            packer.flush_all(&mut out);
            assert_eq!(packed_entries(&out[0])[0].3, expected);
        }
    }

    #[test]
    fn packer_splits_a_batch_line_larger_than_a_record_into_rows() {
        let dir = tempfile::tempdir().unwrap();
        for format in [RecordFormat::Compat, RecordFormat::Packed] {
            let roomy = KinesisSettings {
                packed_record_bytes: 512 * 1024,
                ..settings(format)
            };
            let mut packer = Packer::new(&roomy, "h", true, dir.path().into());
            let row = format!("{{\"cmdline\":\"{}\"}}", "a".repeat(400 * 1024));
            let big = format!(
                "{{\"name\":\"pack_x\",\"hostIdentifier\":\"web-1\",\"diffResults\":{{\"removed\":[],\"added\":[{row},{row},{row}]}}}}"
            );
            let mut out = Vec::new();
            packer.add(0, line(5, big.as_bytes()), &mut out);
            packer.flush_all(&mut out);
            assert_eq!(packer.counters.lines_split, 1);
            assert_eq!(packer.counters.dead_lettered, 0);
            match format {
                RecordFormat::Compat => {
                    assert_eq!(out.len(), 3);
                    for record in &out {
                        let value: serde_json::Value =
                            serde_json::from_slice(&record.data).unwrap();
                        assert_eq!(value["diffResults"]["added"].as_array().unwrap().len(), 1);
                        assert_eq!(value["name"], "pack_x");
                    }
                }
                RecordFormat::Packed => {
                    assert_eq!(out.len(), 3, "one 400 KiB row per 512 KiB body");
                    let entries: Vec<_> = out.iter().flat_map(packed_entries).collect();
                    let places: Vec<(u64, u32)> =
                        entries.iter().map(|entry| (entry.0, entry.1)).collect();
                    assert_eq!(places, vec![(5, 0), (5, 1), (5, 2)]);
                }
            }
        }
    }

    #[test]
    fn packer_dead_letters_a_single_row_too_large_and_forwards_an_internal_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut packer = Packer::new(
            &settings(RecordFormat::Compat),
            "agent-host",
            true,
            dir.path().into(),
        );
        let huge = format!(
            "{{\"name\":\"q\",\"columns\":{{\"blob\":\"{}\"}},\"action\":\"added\"}}",
            "z".repeat(MAX_RECORD_BYTES)
        );
        let mut out = Vec::new();
        packer.add(3, line(42, huge.as_bytes()), &mut out);
        assert_eq!(packer.counters.dead_lettered, 1);
        assert_eq!(out.len(), 1);
        let event: serde_json::Value = serde_json::from_slice(&out[0].data).unwrap();
        assert_eq!(event["reason"], "record_too_large");
        assert_eq!(event["offset"], 42);
        assert_eq!(event["hostIdentifier"], "agent-host");
        assert_eq!(out[0].key, "agent-host");
        let saved: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(saved.len(), 1);
        let name = saved[0].file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with("-2049-77-42.json"), "{name}");
        assert_eq!(std::fs::read(&saved[0]).unwrap(), huge.as_bytes());
        let message = event["message"].as_str().unwrap();
        assert!(
            message.contains(&saved[0].display().to_string()),
            "{message}"
        );

        // The same file identity and offset again, as after a truncation: a second file.
        packer.add(4, line(42, huge.as_bytes()), &mut out);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_eq!(packer.counters.dead_letter_failures, 0);
    }

    #[test]
    fn packer_counts_dead_letters_over_the_cap_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let capped = KinesisSettings {
            dead_letter_max_bytes: 1000,
            ..settings(RecordFormat::Compat)
        };
        let mut packer = Packer::new(&capped, "agent-host", true, dir.path().into());
        let huge = format!(
            "{{\"name\":\"q\",\"columns\":{{\"blob\":\"{}\"}},\"action\":\"added\"}}",
            "z".repeat(MAX_RECORD_BYTES)
        );
        let mut out = Vec::new();
        packer.add(0, line(7, huge.as_bytes()), &mut out);
        assert_eq!(packer.counters.dead_lettered, 1);
        assert_eq!(packer.counters.dead_letter_failures, 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let event: serde_json::Value = serde_json::from_slice(&out[0].data).unwrap();
        let message = event["message"].as_str().unwrap();
        assert!(message.contains("so it is lost"), "{message}");
        assert!(
            message.contains("kinesis.dead_letter_max_bytes"),
            "{message}"
        );
    }

    #[test]
    fn packer_puts_a_line_over_the_packed_size_in_a_record_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut packer = Packer::new(
            &settings(RecordFormat::Packed),
            "h",
            true,
            dir.path().into(),
        );
        let big = format!("{{\"name\":\"q\",\"pad\":\"{}\"}}", "p".repeat(600 * 1024));
        let mut out = Vec::new();
        packer.add(0, line(0, b"{\"first\":1}"), &mut out);
        packer.add(0, line(20, big.as_bytes()), &mut out);
        packer.add(0, line(700_000, b"{\"last\":1}"), &mut out);
        packer.flush_all(&mut out);
        assert_eq!(packer.counters.dead_lettered, 0);
        assert_eq!(packer.counters.lines_split, 0);
        assert_eq!(out.len(), 3, "before, alone, after");
        assert!(out.iter().all(|record| record.size() <= MAX_RECORD_BYTES));
        let offsets: Vec<u64> = out
            .iter()
            .flat_map(packed_entries)
            .map(|entry| entry.0)
            .collect();
        assert_eq!(offsets, vec![0, 20, 700_000]);
        assert_eq!(packed_entries(&out[1])[0].2, big.as_bytes());
    }

    #[test]
    fn packer_keys_fall_back_to_the_agent_and_random_keys_change_per_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut packer = Packer::new(
            &settings(RecordFormat::Compat),
            "agent-host",
            true,
            dir.path().into(),
        );
        let mut out = Vec::new();
        packer.add(
            0,
            OutRecord {
                key: None,
                ..line(0, b"{}")
            },
            &mut out,
        );
        packer.add(
            0,
            OutRecord {
                key: Some(String::new()),
                ..line(3, b"{}")
            },
            &mut out,
        );
        packer.add(
            0,
            OutRecord {
                key: Some("é".repeat(200)),
                ..line(6, b"{}")
            },
            &mut out,
        );
        assert_eq!(out[0].key, "agent-host");
        assert_eq!(out[1].key, "agent-host");
        assert_eq!(out[2].key.len(), 256);

        let random = KinesisSettings {
            partition_key: super::super::PartitionKey::Named(super::super::NamedKey::Random),
            ..settings(RecordFormat::Compat)
        };
        let mut packer = Packer::new(&random, "agent-host", true, dir.path().into());
        let mut out = Vec::new();
        packer.start_batch();
        packer.add(0, line(0, b"{}"), &mut out);
        packer.add(0, line(3, b"{}"), &mut out);
        packer.start_batch();
        packer.add(1, line(6, b"{}"), &mut out);
        assert_eq!(out[0].key, out[1].key);
        assert_ne!(out[1].key, out[2].key);
        assert_eq!(out[0].key.len(), 16);
    }

    #[test]
    fn truncate_key_keeps_character_boundaries_and_refuses_empty_keys() {
        assert_eq!(truncate_key(""), "-");
        assert_eq!(truncate_key("web-1"), "web-1");
        let long = format!("{}é", "a".repeat(255));
        assert_eq!(truncate_key(&long), "a".repeat(255));
    }
}
