//! The on-disk spool: Kinesis records waiting while the stream is unreachable.
//!
//! Records are appended as checksummed frames to numbered segment files in
//! `STATE_DIR/spool/` and synced before the lines they hold are acknowledged. A `head` file
//! names the first frame not yet accepted by Kinesis; it moves only after acceptance, so a
//! crash resends at most the frames read since the last head write.
//!
//! Frame: `EA 5F`, payload length (u32, big-endian), CRC-32 of the payload (u32), payload.
//! Payload: key length (u16), key, number of entries in the record (u32), data. A frame cut short by a crash, or one whose checksum
//! does not match, ends its segment: the segment is truncated there and the frame counted.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MAGIC: [u8; 2] = [0xEA, 0x5F];
const FRAME_HEADER: usize = 10;
/// Size at which a new segment file starts.
const SEGMENT_BYTES: u64 = 8 << 20;

/// Position of a frame: segment number and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpoolPos {
    /// Segment number.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledRecord {
    /// Partition key.
    pub key: String,
    /// Lines and internal events inside the record.
    pub entries: u32,
    /// Data blob.
    pub data: Vec<u8>,
    /// Position just past this frame.
    pub next: SpoolPos,
}

/// Error of a spool operation.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The spool directory.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Segment numbers on disk, oldest first, with their sizes.
    segments: VecDeque<(u64, u64)>,
    writer: Option<File>,
    head: SpoolPos,
    read: SpoolPos,
    records: u64,
    /// Damaged ranges inside segments, as (segment, start, end), skipped when reading.
    holes: Vec<(u64, u64, u64)>,
    /// Damaged frames found since start.
    pub torn_frames: u64,
    /// Bytes skipped inside segments because they were damaged.
    pub damaged_bytes: u64,
}

impl Spool {
    /// Opens or creates the spool in `dir`, checks every frame after the head and cuts
    /// damaged ones.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|name| name.strip_suffix(".seg"))
                .and_then(|stem| stem.parse::<u64>().ok())
            else {
                continue;
            };
            numbers.push(number);
        }
        numbers.sort_unstable();
        let head_path = dir.join("head");
        let head = match std::fs::read(&head_path) {
            Ok(bytes) => serde_json::from_slice::<SpoolPos>(&bytes).ok(),
            Err(_) => None,
        }
        .unwrap_or(SpoolPos {
            segment: numbers.first().copied().unwrap_or(1),
            offset: 0,
        });
        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segments: VecDeque::new(),
            writer: None,
            head,
            read: head,
            records: 0,
            holes: Vec::new(),
            torn_frames: 0,
            damaged_bytes: 0,
        };
        for number in numbers {
            let path = spool.segment_path(number);
            if number < head.segment {
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let start = if number == head.segment {
                head.offset
            } else {
                0
            };
            let scan = scan(&path, start)?;
            for &(from, to) in &scan.holes {
                spool.torn_frames += 1;
                spool.damaged_bytes += to - from;
                tracing::error!(segment = %path.display(), offset = from, bytes = to - from, "Skipped damaged bytes inside a spool segment; the records they held are lost.");
            }
            if scan.torn_tail {
                spool.torn_frames += 1;
                tracing::warn!(segment = %path.display(), offset = scan.end, "Found a spool frame cut short, as a crash during a write leaves it; the segment is cut there and its lines are read again from the log.");
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                file.set_len(scan.end).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
            }
            spool.records += scan.frames;
            spool
                .holes
                .extend(scan.holes.into_iter().map(|(from, to)| (number, from, to)));
            spool.segments.push_back((number, scan.end));
        }
        // A head in a segment that is gone (removed after its records were accepted, before
        // the head file was written) starts at the next segment.
        let head_present = spool
            .segments
            .iter()
            .any(|(number, _)| *number == spool.head.segment);
        if !head_present && (spool.head.offset > 0 || !spool.segments.is_empty()) {
            spool.head = SpoolPos {
                segment: spool
                    .segments
                    .front()
                    .map_or(spool.head.segment + 1, |(number, _)| *number),
                offset: 0,
            };
            spool.read = spool.head;
        }
        Ok(spool)
    }

    /// Records not yet accepted by Kinesis.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of all segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|(_, size)| size).sum()
    }

    /// True when no record waits.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// True when `payload_bytes` more fit under the byte cap.
    pub fn has_room(&self, payload_bytes: usize) -> bool {
        self.bytes() + (payload_bytes + FRAME_HEADER + 6) as u64 <= self.max_bytes
    }

    /// Appends records and syncs them to disk.
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a str, u32, &'a [u8])>,
    ) -> Result<(), SpoolError> {
        let mut buffer = Vec::new();
        let mut count = 0;
        for (key, entries, data) in records {
            let key = &key.as_bytes()[..key.len().min(usize::from(u16::MAX))];
            let mut payload = Vec::with_capacity(6 + key.len() + data.len());
            payload.extend_from_slice(&u16::try_from(key.len()).unwrap_or(u16::MAX).to_be_bytes());
            payload.extend_from_slice(key);
            payload.extend_from_slice(&entries.to_be_bytes());
            payload.extend_from_slice(data);
            buffer.extend_from_slice(&MAGIC);
            buffer.extend_from_slice(
                &u32::try_from(payload.len())
                    .unwrap_or(u32::MAX)
                    .to_be_bytes(),
            );
            buffer.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
            buffer.extend_from_slice(&payload);
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let needs_new = match self.segments.back() {
            None => true,
            Some((_, size)) => *size >= SEGMENT_BYTES,
        };
        if needs_new || self.writer.is_none() {
            let number = match self.segments.back() {
                Some((number, _)) if !needs_new => *number,
                Some((number, _)) => number + 1,
                None => self.head.segment.max(1),
            };
            let path = self.segment_path(number);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            if needs_new {
                self.segments.push_back((number, 0));
                sync_dir(&self.dir)?;
            }
            self.writer = Some(file);
        }
        let (number, size) = self
            .segments
            .back_mut()
            .expect("a segment exists after opening one");
        let path = self.dir.join(format!("{number:020}.seg"));
        let writer = self.writer.as_mut().expect("the writer was opened above");
        let written = writer.write_all(&buffer).and_then(|()| writer.sync_data());
        if let Err(error) = written {
            // Cut what may have been written, so a half frame does not precede the next one.
            self.writer = None;
            if let Ok(file) = OpenOptions::new().write(true).open(&path) {
                let _ = file.set_len(*size);
            }
            return Err(SpoolError::Io {
                path,
                source: error,
            });
        }
        *size += buffer.len() as u64;
        self.records += count;
        Ok(())
    }

    /// Reads up to `max_records` records or `max_bytes` bytes of keys and data from the read
    /// position on; the read position moves past them.
    pub fn read(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<SpooledRecord>, SpoolError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records {
            let Some(&(number, size)) = self
                .segments
                .iter()
                .find(|(number, _)| *number >= self.read.segment)
            else {
                break;
            };
            if number > self.read.segment {
                self.read = SpoolPos {
                    segment: number,
                    offset: 0,
                };
            }
            if self.read.offset >= size {
                match self.segments.iter().find(|(next, _)| *next > number) {
                    Some(&(next, _)) => {
                        self.read = SpoolPos {
                            segment: next,
                            offset: 0,
                        };
                        continue;
                    }
                    None => break,
                }
            }
            let path = self.segment_path(number);
            let mut file = File::open(&path).map_err(io(&path))?;
            file.seek(SeekFrom::Start(self.read.offset))
                .map_err(io(&path))?;
            let mut reader = std::io::BufReader::new(file);
            while out.len() < max_records && self.read.offset < size {
                if let Some(&(_, _, end)) = self
                    .holes
                    .iter()
                    .find(|(segment, from, _)| *segment == number && *from == self.read.offset)
                {
                    self.read.offset = end;
                    reader.seek(SeekFrom::Start(end)).map_err(io(&path))?;
                    continue;
                }
                let Some((key, entries, data, len)) = read_frame(&mut reader).map_err(io(&path))?
                else {
                    // Frames were checked at open and appends are synced; treat the rest of a
                    // segment that no longer reads as damaged.
                    self.torn_frames += 1;
                    self.read.offset = size;
                    break;
                };
                if !out.is_empty() && bytes + key.len() + data.len() > max_bytes {
                    return Ok(out);
                }
                bytes += key.len() + data.len();
                self.read.offset += len;
                out.push(SpooledRecord {
                    key,
                    entries,
                    data,
                    next: self.read,
                });
            }
        }
        Ok(out)
    }

    /// Marks every record before `next` as accepted, persists the head and removes
    /// segments that hold only accepted records.
    pub fn commit(&mut self, next: SpoolPos, accepted: u64) -> Result<(), SpoolError> {
        self.head = next;
        self.records = self.records.saturating_sub(accepted);
        // Segments go before the head file is written: removing accepted records frees
        // space even on a full disk, and a stale head file pointing into a removed segment
        // is corrected at open.
        let last = self.segments.back().map(|(number, _)| *number);
        while let Some(&(number, size)) = self.segments.front() {
            let consumed = number < self.head.segment
                || (number == self.head.segment
                    && self.head.offset >= size
                    && Some(number) != last);
            if !consumed {
                break;
            }
            let path = self.segment_path(number);
            std::fs::remove_file(&path).map_err(io(&path))?;
            self.segments.pop_front();
            self.holes.retain(|(segment, _, _)| *segment != number);
        }
        if self.records == 0
            && let Some(&(number, size)) = self.segments.back()
            && self.head
                == (SpoolPos {
                    segment: number,
                    offset: size,
                })
        {
            // Start over in a fresh segment once everything was accepted.
            let path = self.segment_path(number);
            std::fs::remove_file(&path).map_err(io(&path))?;
            self.segments.clear();
            self.holes.clear();
            self.writer = None;
            self.head = SpoolPos {
                segment: number + 1,
                offset: 0,
            };
            self.read = self.head;
        }
        let head_path = self.dir.join("head");
        let temp = self.dir.join("head.tmp");
        let bytes = serde_json::to_vec(&self.head).unwrap_or_default();
        {
            let mut file = File::create(&temp).map_err(io(&temp))?;
            file.write_all(&bytes).map_err(io(&temp))?;
            file.sync_all().map_err(io(&temp))?;
        }
        std::fs::rename(&temp, &head_path).map_err(io(&head_path))?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:020}.seg"))
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io(dir))
}

/// A frame's key, entry count, data and length on disk.
type Frame = (String, u32, Vec<u8>, u64);

/// Reads one frame; `None` at a damaged or cut frame.
fn read_frame(reader: &mut impl Read) -> std::io::Result<Option<Frame>> {
    let mut header = [0u8; FRAME_HEADER];
    if !read_full(reader, &mut header)? || header[..2] != MAGIC {
        return Ok(None);
    }
    let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    let crc = u32::from_be_bytes([header[6], header[7], header[8], header[9]]);
    if !(6..=rules_core::kinesis::MAX_RECORD_BYTES + 6).contains(&len) {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    if !read_full(reader, &mut payload)? || crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    let key_len = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
    if 6 + key_len > len {
        return Ok(None);
    }
    let key = String::from_utf8_lossy(&payload[2..2 + key_len]).into_owned();
    let count = &payload[2 + key_len..6 + key_len];
    let entries = u32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    let data = payload[6 + key_len..].to_vec();
    Ok(Some((key, entries, data, (FRAME_HEADER + len) as u64)))
}

/// Fills `buffer`; false when the input ends first.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Ok(false),
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// Result of checking a segment's frames.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// End of the last good frame.
    end: u64,
    /// Good frames.
    frames: u64,
    /// Damaged ranges followed by a good frame, to skip when reading.
    holes: Vec<(u64, u64)>,
    /// True when damaged bytes run to the end of the segment (a write cut by a crash).
    torn_tail: bool,
}

/// Checks the frames of a segment from `start`. After a damaged frame it looks for the
/// next position where a whole frame with a valid checksum starts.
fn scan(path: &Path, start: u64) -> Result<Scan, SpoolError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let mut result = Scan {
        end: start,
        ..Scan::default()
    };
    let mut at = usize::try_from(start).unwrap_or(usize::MAX);
    while at < bytes.len() {
        if let Some(len) = frame_len(&bytes[at..]) {
            at += len;
            result.frames += 1;
            result.end = at as u64;
            continue;
        }
        let resume = (at + 1..bytes.len())
            .find(|&next| bytes[next..].starts_with(&MAGIC) && frame_len(&bytes[next..]).is_some());
        match resume {
            Some(next) => {
                result.holes.push((at as u64, next as u64));
                at = next;
            }
            None => {
                result.torn_tail = true;
                return Ok(result);
            }
        }
    }
    Ok(result)
}

/// Length of the whole, valid frame at the start of `bytes`, if there is one.
fn frame_len(bytes: &[u8]) -> Option<usize> {
    let mut reader = bytes;
    match read_frame(&mut reader) {
        Ok(Some((_, _, _, len))) => usize::try_from(len).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(spool: &mut Spool) -> Vec<(String, Vec<u8>)> {
        spool
            .read(usize::MAX, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|record| (record.key, record.data))
            .collect()
    }

    #[test]
    fn spool_round_trip_survives_reopen_and_commit_moves_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.is_empty());
        spool
            .append([("k1", 1, &b"one"[..]), ("k2", 1, &b"two"[..])])
            .unwrap();
        spool.append([("k1", 1, &b"three"[..])]).unwrap();
        assert_eq!(spool.records(), 3);
        drop(spool);

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.records(), 3);
        let read = spool.read(2, usize::MAX).unwrap();
        assert_eq!(read.len(), 2);
        spool.commit(read[0].next, 1).unwrap();
        drop(spool);

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.records(), 2);
        assert_eq!(
            records(&mut spool),
            vec![
                ("k2".into(), b"two".to_vec()),
                ("k1".into(), b"three".to_vec())
            ]
        );
    }

    #[test]
    fn spool_cuts_a_torn_last_frame_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append([("k", 1, &b"whole"[..])]).unwrap();
        drop(spool);
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|ext| ext == "seg"))
            .unwrap();
        let good = std::fs::metadata(&segment).unwrap().len();
        // A second frame cut after 7 bytes, as a kill during the write leaves it.
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[0xEA, 0x5F, 0, 0, 0, 9, 1]).unwrap();
        drop(file);

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.torn_frames, 1);
        assert_eq!(spool.records(), 1);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), good);
        assert_eq!(records(&mut spool), vec![("k".into(), b"whole".to_vec())]);
        spool.append([("k", 1, &b"after"[..])]).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.torn_frames, 0);
        assert_eq!(
            records(&mut spool),
            vec![
                ("k".into(), b"whole".to_vec()),
                ("k".into(), b"after".to_vec())
            ]
        );
    }

    #[test]
    fn spool_stops_at_a_frame_with_a_bad_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool
            .append([("k", 1, &b"first"[..]), ("k", 1, &b"second"[..])])
            .unwrap();
        drop(spool);
        let segment = dir.path().join(format!("{:020}.seg", 1));
        let mut bytes = std::fs::read(&segment).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&segment, &bytes).unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.torn_frames, 1);
        assert_eq!(records(&mut spool), vec![("k".into(), b"first".to_vec())]);
    }

    #[test]
    fn spool_skips_a_damaged_frame_in_the_middle_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool
            .append([
                ("k", 1, &b"first"[..]),
                ("k", 1, &b"second"[..]),
                ("k", 1, &b"third"[..]),
            ])
            .unwrap();
        drop(spool);
        let segment = dir.path().join(format!("{:020}.seg", 1));
        let mut bytes = std::fs::read(&segment).unwrap();
        // The second frame starts after the first: header 10, key length 2, key 1, count 4, data 5.
        let second = 10 + 2 + 1 + 4 + 5;
        bytes[second + 12] ^= 0xff;
        std::fs::write(&segment, &bytes).unwrap();

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.torn_frames, 1);
        assert_eq!(spool.damaged_bytes, 10 + 2 + 1 + 4 + 6);
        assert_eq!(spool.records(), 2);
        assert_eq!(
            records(&mut spool),
            vec![
                ("k".into(), b"first".to_vec()),
                ("k".into(), b"third".to_vec())
            ]
        );
        assert_eq!(
            std::fs::read(&segment).unwrap().len(),
            bytes.len(),
            "nothing is cut"
        );
    }

    #[test]
    fn spool_ignores_a_stale_head_into_a_removed_segment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("head"), br#"{"segment":3,"offset":500}"#).unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.is_empty());
        spool.append([("k", 1, &b"new"[..])]).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records(&mut spool), vec![("k".into(), b"new".to_vec())]);
    }

    #[test]
    fn spool_respects_its_byte_cap_and_removes_accepted_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 100).unwrap();
        assert!(spool.has_room(50));
        spool.append([("k", 1, &[7u8; 50][..])]).unwrap();
        assert!(!spool.has_room(50));
        let read = spool.read(10, usize::MAX).unwrap();
        spool.commit(read[0].next, 1).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert!(spool.has_room(50));
        spool.append([("k", 1, &b"again"[..])]).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 100).unwrap();
        assert_eq!(records(&mut spool), vec![("k".into(), b"again".to_vec())]);
    }

    #[test]
    fn spool_read_limits_bytes_but_returns_at_least_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool
            .append([
                ("a", 1, &[1u8; 40][..]),
                ("b", 1, &[2u8; 40][..]),
                ("c", 1, &[3u8; 40][..]),
            ])
            .unwrap();
        assert_eq!(spool.read(10, 10).unwrap().len(), 1);
        assert_eq!(spool.read(10, 90).unwrap().len(), 2);
        assert!(spool.read(10, 90).unwrap().is_empty());
    }
}
