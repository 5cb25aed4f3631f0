//! Events returned by [`crate::Tailer::poll`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::FileIdentity;

/// Opaque id of one read pass over one file inside one process.
///
/// A new id starts when a file is opened and when a truncated file is read again from 0.
/// Ids are unique within the process, so a [`Position`] from a dropped tailer never
/// matches a stream of a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u64);

impl StreamId {
    /// Allocates an id never returned before in this process.
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Byte range of one event inside one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Read pass the range belongs to; [`crate::Tailer::ack`] uses it to find the file.
    pub stream: StreamId,
    /// Identity of the file when the event was emitted.
    pub file: FileIdentity,
    /// Path the file was opened under (a renamed file keeps its old path here).
    pub path: PathBuf,
    /// Offset of the first byte, in the uncompressed content for `.zst` archives.
    pub start: u64,
    /// Offset after the last byte, including the `\n` where there is one.
    pub end: u64,
}

/// One complete line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Byte range of the line.
    pub position: Position,
    /// The exact bytes of the line without the trailing `\n`; not necessarily UTF-8.
    pub bytes: Vec<u8>,
}

/// Condition found while reading. It carries a position so that acknowledging it lets
/// the checkpoint move past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The bytes the problem covers; may be empty (`start == end`).
    pub position: Position,
    /// What happened.
    pub kind: ProblemKind,
}

/// Kind of a [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// A line longer than `max_line_bytes` was skipped up to and including its `\n`.
    LineTooLong {
        /// Length of the skipped line without the `\n`.
        len: u64,
    },
    /// A line began with the remains of a failed write, followed by a complete JSON record.
    /// The record is delivered as its own [`Line`] right after this problem.
    GluedFragment {
        /// The bytes before the recovered record.
        fragment: Vec<u8>,
    },
    /// A file became shorter than the read offset, or its first bytes changed, while it
    /// kept its inode (for example `logrotate copytruncate`). Reading restarts at offset 0.
    ///
    /// When a rotated file (`NAME.N`, `NAME.N.zst`) starts with the old content and
    /// contains bytes past the read offset, the rest of the old content is read from it
    /// first, from the read offset, so no delivered line repeats. The position covers
    /// the lost bytes of the old content, and acknowledging it has no effect. A file
    /// found at a restart shorter than its checkpointed offset is reported with 0 lost
    /// bytes.
    Truncated {
        /// Bytes of the old content that the tailer observed and can no longer deliver.
        /// With a copy that contains unread bytes, these are the bytes between the end of
        /// the copy and the largest size observed, written after the copy was made.
        /// Otherwise they are the held partial line plus the bytes between the read
        /// offset and the largest size observed. Bytes written after the last
        /// observation are not counted.
        possibly_lost_bytes: u64,
    },
    /// A rotated, deleted or archived file ended with bytes that no `\n` followed.
    UnterminatedLine {
        /// The bytes after the last `\n`.
        bytes: Vec<u8>,
    },
    /// Reading a `.zst` archive stopped at `max_decompressed_bytes`; the rest of it was not read.
    ArchiveTooLarge {
        /// The configured limit in decompressed bytes.
        limit: u64,
    },
    /// A `.zst` archive could not be decoded; the rest of it was not read.
    ArchiveUnreadable {
        /// The decoder or I/O error message.
        error: String,
    },
    /// A file in the checkpoint was found neither at its path nor among the rotated files,
    /// so its bytes after the acknowledged offset were not read. This includes a file
    /// whose inode now contains other content, because a rewrite in place and an inode
    /// reused after a deletion cannot be distinguished.
    ///
    /// The tailer reports each entry once and then drops it. It reports nothing when the
    /// acknowledged offset had reached the file size last observed, so bytes written
    /// after that observation are lost unreported. Entries of checkpoints written before
    /// the size was stored are always reported.
    FileVanished {
        /// The acknowledged offset stored in the checkpoint.
        acked_offset: u64,
    },
    /// Reading or checking the file failed. The tailer retries on the next poll and reports
    /// the failure again only after a read succeeded in between.
    ReadFailed {
        /// The I/O error message.
        error: String,
    },
}

/// Item returned by [`crate::Tailer::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailEvent {
    /// A complete line.
    Line(Line),
    /// A condition to log or count.
    Problem(Problem),
}

impl TailEvent {
    /// Returns the position to pass to [`crate::Tailer::ack`].
    pub fn position(&self) -> &Position {
        match self {
            TailEvent::Line(line) => &line.position,
            TailEvent::Problem(problem) => &problem.position,
        }
    }
}
