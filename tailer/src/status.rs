//! Per-file status reported by [`crate::Tailer::status`].

use std::path::PathBuf;

use crate::{FileIdentity, StreamId};

/// Role of a file for the tailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// The file currently at the followed path.
    Live,
    /// A file that left the followed path while it was being read; it is drained to its end.
    Rotated,
    /// A rotated file (`.N` or `.N.zst`) found by a scan and read once to its end.
    Archive,
    /// A file read to its end and closed, with ranges not yet acknowledged.
    Finished,
}

/// Counters of one file since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounters {
    /// Lines emitted.
    pub lines: u64,
    /// Problems emitted.
    pub problems: u64,
    /// Bytes read, after decompression for archives.
    pub bytes_read: u64,
}

/// Progress of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    /// The configured path this file belongs to.
    pub followed_path: PathBuf,
    /// The path the file was opened under.
    pub path: PathBuf,
    /// Read pass id, as in [`crate::Position::stream`].
    pub stream: StreamId,
    /// Role of the file.
    pub role: FileRole,
    /// Device, inode and fingerprint.
    pub identity: FileIdentity,
    /// Offset of the next byte to read.
    pub read_offset: u64,
    /// Offset up to which all emitted events are acknowledged.
    pub acked_offset: u64,
    /// Size at the last check; `None` for archives, whose uncompressed size is unknown.
    pub size: Option<u64>,
    /// Bytes not yet acknowledged: `size - acked_offset`; `None` when `size` is unknown.
    pub lag_bytes: Option<u64>,
    /// Bytes of emitted events not yet acknowledged.
    pub unacked_bytes: u64,
    /// Counters since the file was opened.
    pub counters: FileCounters,
}
