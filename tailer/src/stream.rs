//! One read pass over one file: reading, line splitting and event emission.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::acks::AckTracker;
use crate::assembler::{LineAssembler, RawLine};
use crate::glued::{Split, split_glued};
use crate::identity::{FINGERPRINT_BYTES, Fingerprint};
use crate::source::{ReadError, Source};
use crate::status::{FileCounters, FileRole, FileStatus};
use crate::{FileIdentity, Line, Position, Problem, ProblemKind, StreamId, TailEvent};

/// Role of a stream for its followed path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// The file currently at the followed path.
    Live,
    /// A file that left the followed path at `since`.
    Rotated { since: Instant },
    /// A rotated file found by a scan.
    Archive,
}

/// Reason that reading a stream stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// No more bytes for now.
    EndOfData,
    /// The per-poll byte budget is spent.
    Budget,
    /// Unacknowledged bytes reached the limit.
    Backpressure,
    /// A read failed; the failure was reported.
    Failed,
    /// An archive cannot be read further; the reason was reported.
    ArchiveEnded,
    /// The bytes at the read offset differ from the head, so the file was truncated
    /// and rewritten since its last check. Nothing was consumed; the next check of the
    /// file restarts it.
    Replaced,
}

/// Shared state that reading a stream uses and updates.
pub(crate) struct ReadContext<'a> {
    pub(crate) chunk: &'a mut [u8],
    pub(crate) budget: &'a mut usize,
    pub(crate) unacked_bytes: &'a mut u64,
    pub(crate) max_unacked_bytes: u64,
    pub(crate) max_decompressed_bytes: u64,
    pub(crate) recover_glued: bool,
    pub(crate) out: &'a mut Vec<TailEvent>,
}

/// One open file with its read state.
pub(crate) struct Stream {
    pub(crate) id: StreamId,
    pub(crate) path: PathBuf,
    pub(crate) role: Role,
    pub(crate) identity: FileIdentity,
    /// First bytes of the content, exactly the ones the fingerprint covers. A copy
    /// of the file that is shorter than the fingerprint is recognized by them.
    pub(crate) head: Vec<u8>,
    pub(crate) source: Source,
    pub(crate) read_offset: u64,
    pub(crate) assembler: LineAssembler,
    pub(crate) acks: AckTracker,
    /// Largest size observed, for plain files.
    pub(crate) size: Option<u64>,
    pub(crate) counters: FileCounters,
    /// Set after a read failure was reported, cleared by the next successful read.
    pub(crate) failing: bool,
}

impl Stream {
    /// Creates a stream whose reading starts at `assembler`'s offset. The fingerprint
    /// of `identity` must be the one of `head`.
    pub(crate) fn new(
        path: &Path,
        role: Role,
        identity: FileIdentity,
        head: Vec<u8>,
        source: Source,
        assembler: LineAssembler,
    ) -> Self {
        debug_assert_eq!(identity.fingerprint, Fingerprint::of(&head));
        let offset = assembler.line_start();
        Self {
            id: StreamId::next(),
            path: path.to_path_buf(),
            role,
            identity,
            head,
            source,
            read_offset: offset,
            assembler,
            acks: AckTracker::new(offset),
            size: None,
            counters: FileCounters::default(),
            failing: false,
        }
    }

    /// Returns the position of `start..end` in this stream.
    pub(crate) fn position(&self, start: u64, end: u64) -> Position {
        Position {
            stream: self.id,
            file: self.identity,
            path: self.path.clone(),
            start,
            end,
        }
    }

    /// Reads until the end of the data, the budget or the backpressure limit.
    pub(crate) fn read(&mut self, context: &mut ReadContext<'_>) -> Stop {
        let mut lines = Vec::new();
        loop {
            if *context.unacked_bytes >= context.max_unacked_bytes {
                return Stop::Backpressure;
            }
            if *context.budget == 0 {
                return Stop::Budget;
            }
            let len = context.chunk.len().min(*context.budget);
            let n = match self
                .source
                .read_at(&mut context.chunk[..len], self.read_offset)
            {
                Ok(0) => return Stop::EndOfData,
                Ok(n) => n,
                Err(error) => return self.report_read_error(error, context),
            };
            self.failing = false;
            if !self.continues_head(&context.chunk[..n]) {
                return Stop::Replaced;
            }
            *context.budget -= n;
            self.extend_head(n, context);
            self.read_offset += n as u64;
            self.counters.bytes_read += n as u64;
            self.assembler.feed(&context.chunk[..n], &mut lines);
            for line in lines.drain(..) {
                self.emit(line, context);
            }
        }
    }

    /// Replaces the first bytes of the content and the fingerprint computed from them.
    pub(crate) fn set_head(&mut self, head: Vec<u8>) {
        self.identity.fingerprint = Fingerprint::of(&head);
        self.head = head;
    }

    /// Tells whether `bytes`, read at the read offset, agree with the part of the head
    /// they overlap.
    fn continues_head(&self, bytes: &[u8]) -> bool {
        let Ok(start) = usize::try_from(self.read_offset) else {
            return true;
        };
        let Some(expected) = self.head.get(start..) else {
            return true;
        };
        let len = expected.len().min(bytes.len());
        expected[..len] == bytes[..len]
    }

    /// Extends the head and fingerprint of a plain file over the `n` bytes just read
    /// into the chunk when they cover exactly the bytes before them. They then cover
    /// every byte read within the first [`FINGERPRINT_BYTES`], so a truncation
    /// followed by writes past the read offset still changes the bytes they cover.
    fn extend_head(&mut self, n: usize, context: &ReadContext<'_>) {
        if self.source.plain_file().is_none() || self.head.len() as u64 != self.read_offset {
            return;
        }
        let take = FINGERPRINT_BYTES.saturating_sub(self.head.len()).min(n);
        let next = &context.chunk[..take];
        self.identity.fingerprint.extend(next);
        self.head.extend_from_slice(next);
    }

    /// Emits the held partial line, if any, because the file will not grow any more.
    pub(crate) fn flush_partial(&mut self, context: &mut ReadContext<'_>) {
        if let Some(line) = self.assembler.finish() {
            self.emit(line, context);
        }
    }

    /// Returns the status of this stream, with `role` overriding the stream's own.
    pub(crate) fn status(&self, followed_path: &Path, role: Option<FileRole>) -> FileStatus {
        let own_role = match self.role {
            Role::Live => FileRole::Live,
            Role::Rotated { .. } => FileRole::Rotated,
            Role::Archive => FileRole::Archive,
        };
        let acked_offset = self.acks.acked_offset();
        FileStatus {
            followed_path: followed_path.to_path_buf(),
            path: self.path.clone(),
            stream: self.id,
            role: role.unwrap_or(own_role),
            identity: self.identity,
            read_offset: self.read_offset,
            acked_offset,
            size: self.size,
            lag_bytes: self.size.map(|size| size.saturating_sub(acked_offset)),
            unacked_bytes: self.acks.unacked_bytes(),
            counters: self.counters,
        }
    }

    fn report_read_error(&mut self, error: ReadError, context: &mut ReadContext<'_>) -> Stop {
        let offset = self.read_offset;
        let kind = match (error, self.source.plain_file().is_some()) {
            (ReadError::LimitReached, _) => ProblemKind::ArchiveTooLarge {
                limit: context.max_decompressed_bytes,
            },
            (ReadError::Io(error), false) => ProblemKind::ArchiveUnreadable {
                error: error.to_string(),
            },
            (ReadError::Io(error), true) => {
                if self.failing {
                    return Stop::Failed;
                }
                self.failing = true;
                ProblemKind::ReadFailed {
                    error: error.to_string(),
                }
            }
        };
        tracing::warn!(path = %self.path.display(), offset, problem = ?kind, "Failed to read a followed file.");
        self.push_problem(offset, offset, kind, context);
        match self.source.plain_file() {
            Some(_) => Stop::Failed,
            None => Stop::ArchiveEnded,
        }
    }

    fn emit(&mut self, line: RawLine, context: &mut ReadContext<'_>) {
        match line {
            RawLine::Complete { start, end, bytes } => {
                self.emit_complete(start, end, bytes, context)
            }
            RawLine::TooLong { start, end, len } => {
                tracing::warn!(path = %self.path.display(), offset = start, len, "Skipped a line longer than the limit.");
                self.push_problem(start, end, ProblemKind::LineTooLong { len }, context);
            }
            RawLine::Unterminated { start, end, bytes } => {
                tracing::warn!(path = %self.path.display(), offset = start, len = bytes.len(), "Found a final line without a newline in a file that will not grow.");
                self.push_problem(start, end, ProblemKind::UnterminatedLine { bytes }, context);
            }
        }
    }

    fn emit_complete(
        &mut self,
        start: u64,
        end: u64,
        mut bytes: Vec<u8>,
        context: &mut ReadContext<'_>,
    ) {
        let split = if context.recover_glued {
            split_glued(&bytes)
        } else {
            None
        };
        let (at, prefix_is_record) = match split {
            None => return self.push_line(start, end, bytes, context),
            Some(Split::Fragment { at }) => (at, false),
            Some(Split::TwoRecords { at }) => (at, true),
        };
        let record = bytes.split_off(at);
        let middle = start + at as u64;
        if prefix_is_record {
            self.push_line(start, middle, bytes, context);
        } else {
            tracing::warn!(path = %self.path.display(), offset = start, len = at, "Split off the fragment of a failed write glued to a record.");
            let kind = ProblemKind::GluedFragment { fragment: bytes };
            self.push_problem(start, middle, kind, context);
        }
        self.push_line(middle, end, record, context);
    }

    fn push_line(&mut self, start: u64, end: u64, bytes: Vec<u8>, context: &mut ReadContext<'_>) {
        *context.unacked_bytes += self.acks.emit(start, end);
        self.counters.lines += 1;
        let position = self.position(start, end);
        context.out.push(TailEvent::Line(Line { position, bytes }));
    }

    /// Emits a problem; `start..end` is tracked for acknowledgement unless it is empty.
    pub(crate) fn push_problem(
        &mut self,
        start: u64,
        end: u64,
        kind: ProblemKind,
        context: &mut ReadContext<'_>,
    ) {
        *context.unacked_bytes += self.acks.emit(start, end);
        self.counters.problems += 1;
        let position = self.position(start, end);
        context
            .out
            .push(TailEvent::Problem(Problem { position, kind }));
    }
}
