//! State of one followed path: the live file, older files still to read, and finished files.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::acks::AckTracker;
use crate::assembler::LineAssembler;
use crate::checkpoint::{Entry, EntryState};
use crate::identity::{Fingerprint, read_prefix_at};
use crate::siblings::{Candidate, FileStamp, open_candidate, open_rotated, rotated_stamps};
use crate::source::Source;
use crate::status::{FileCounters, FileRole, FileStatus};
use crate::stream::{ReadContext, Role, Stop, Stream};
use crate::{FileIdentity, Position, Problem, ProblemKind, StreamId, TailEvent, TailerConfig};

/// Maximum number of done files remembered per path. osqueryd keeps at most 25
/// rotated files by default; copytruncate adds one per truncation until the next scan.
const MAX_DONE_FILES: usize = 256;

/// A closed file whose emitted ranges are not all acknowledged yet.
pub(crate) struct Finished {
    pub(crate) id: StreamId,
    pub(crate) path: PathBuf,
    pub(crate) identity: FileIdentity,
    pub(crate) read_offset: u64,
    pub(crate) acks: AckTracker,
    pub(crate) counters: FileCounters,
}

/// A file read to its end and fully acknowledged; it is skipped wherever it shows up.
pub(crate) struct DoneFile {
    pub(crate) path: PathBuf,
    pub(crate) identity: FileIdentity,
}

/// One configured path.
pub(crate) struct Followed {
    pub(crate) path: PathBuf,
    /// The path as lossy UTF-8, the form stored in the checkpoint.
    pub(crate) key: String,
    pub(crate) live: Option<Stream>,
    /// Files older than the live file, read in order before it.
    pub(crate) queue: VecDeque<Stream>,
    pub(crate) finished: Vec<Finished>,
    pub(crate) done: Vec<DoneFile>,
    /// Set after a failure to `stat` the path was logged, cleared by the next success.
    stat_failing: bool,
    /// Rotated files at the last scan made while the path was missing.
    missing_scan: Option<Vec<FileStamp>>,
}

impl Followed {
    /// Creates the state of a path with no open files.
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            key: path.to_string_lossy().into_owned(),
            live: None,
            queue: VecDeque::new(),
            finished: Vec::new(),
            done: Vec::new(),
            stat_failing: false,
            missing_scan: None,
        }
    }

    /// Detects rotation and truncation, then reads older files before the live one.
    pub(crate) fn poll(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        self.check_live(config, context);
        if !self.read_queue(config, context) {
            return;
        }
        if let Some(live) = &mut self.live {
            live.read(context);
        }
    }

    /// Reads queued files in order. Returns false when reading had to stop before the
    /// queue was drained, so the live file must wait.
    fn read_queue(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) -> bool {
        let mut index = 0;
        while let Some(stream) = self.queue.get_mut(index) {
            // A renamed file can still be truncated, for example when copytruncate ran
            // just before the rename.
            let replaced = match stream.role {
                Role::Rotated { .. } => check_in_place(stream, config, context),
                Role::Archive | Role::Live => None,
            };
            let stop = stream.read(context);
            let closable = match stream.role {
                Role::Rotated { since } => since.elapsed() >= config.rotate_grace,
                Role::Archive | Role::Live => true,
            };
            let path = stream.path.clone();
            if let Some(replaced) = replaced {
                self.mark_done(path, replaced);
            }
            match stop {
                Stop::EndOfData if !closable => index += 1,
                Stop::EndOfData | Stop::Failed | Stop::ArchiveEnded => {
                    if let Some(stream) = self.queue.remove(index) {
                        self.finish(stream, stop == Stop::EndOfData, context);
                    }
                }
                Stop::Budget | Stop::Backpressure => return false,
            }
        }
        true
    }

    /// Closes a stream; `flush` reports a held partial line as unterminated.
    fn finish(&mut self, mut stream: Stream, flush: bool, context: &mut ReadContext<'_>) {
        if flush {
            stream.flush_partial(context);
        }
        tracing::debug!(path = %stream.path.display(), offset = stream.read_offset, "Closed a file that was read to its end.");
        let finished = Finished {
            id: stream.id,
            path: stream.path,
            identity: stream.identity,
            read_offset: stream.read_offset,
            acks: stream.acks,
            counters: stream.counters,
        };
        if finished.acks.is_settled() {
            self.mark_done(finished.path, finished.identity);
        } else {
            self.finished.push(finished);
        }
    }

    /// Records a fully read file. An empty file contains nothing to skip and is not kept.
    /// Past [`MAX_DONE_FILES`] the oldest is forgotten.
    pub(crate) fn mark_done(&mut self, path: PathBuf, identity: FileIdentity) {
        let duplicate = self
            .done
            .iter()
            .any(|done| done.identity.fingerprint == identity.fingerprint);
        if identity.fingerprint.len == 0 || duplicate {
            return;
        }
        if self.done.len() >= MAX_DONE_FILES {
            self.done.remove(0);
        }
        self.done.push(DoneFile { path, identity });
    }

    /// Compares the file at the path with the live stream and reacts to a change.
    fn check_live(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        let metadata = match fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.stat_failing = false;
                if let Some(live) = self.live.take() {
                    self.retire(live);
                }
                self.scan_while_missing(config, context);
                return;
            }
            Err(error) => {
                if !self.stat_failing {
                    tracing::warn!(path = %self.path.display(), %error, "Failed to stat a followed path; retrying on the next poll.");
                }
                self.stat_failing = true;
                return;
            }
        };
        self.stat_failing = false;
        if let Some(live) = &mut self.live
            && (metadata.dev(), metadata.ino()) == (live.identity.dev, live.identity.inode)
        {
            if let Some(replaced) = check_in_place(live, config, context) {
                // A copy made by copytruncate contains the old content, so it must not be read again.
                self.mark_done(self.path.clone(), replaced);
            }
            return;
        }
        if let Some(old) = self.live.take() {
            self.retire(old);
        }
        self.open_live(config, context);
    }

    /// Moves the live stream to the queue, to be drained before the next file.
    fn retire(&mut self, mut live: Stream) {
        tracing::info!(path = %self.path.display(), inode = live.identity.inode, offset = live.read_offset, "Detected that the followed file was renamed or deleted; draining it.");
        live.role = Role::Rotated {
            since: Instant::now(),
        };
        self.queue.push_back(live);
    }

    /// Scans for unseen rotated files while the path is missing, as after an osqueryd
    /// rotation before the next write. The scan is skipped while the rotated files are
    /// unchanged since the previous one.
    fn scan_while_missing(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        let stamps = match rotated_stamps(&self.path) {
            Ok(stamps) => stamps,
            Err(error) => {
                tracing::debug!(path = %self.path.display(), %error, "Failed to list rotated files of a missing path.");
                return;
            }
        };
        if self.missing_scan.as_ref() == Some(&stamps) {
            return;
        }
        self.queue_unseen_rotated(None, config, context);
        self.missing_scan = Some(stamps);
    }

    /// Opens the file now at the path from offset 0, after queueing rotated files that
    /// were never seen (they were rotated between two polls).
    fn open_live(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        let candidate = match open_candidate(0, &self.path, false) {
            Ok(candidate) => candidate,
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), %error, "Failed to open a followed file; retrying on the next poll.");
                }
                return;
            }
        };
        tracing::info!(path = %self.path.display(), inode = candidate.inode, "Opened a new file at the followed path.");
        let live = stream_from_candidate(candidate, Role::Live, 0, config, context);
        let live_identity = live.as_ref().map(|live| live.identity);
        self.queue_unseen_rotated(live_identity.as_ref(), config, context);
        self.live = live;
        self.missing_scan = None;
    }

    /// Queues rotated files that match no known file, oldest first, and drops done
    /// files that are no longer present.
    fn queue_unseen_rotated(
        &mut self,
        live: Option<&FileIdentity>,
        config: &TailerConfig,
        context: &mut ReadContext<'_>,
    ) {
        let (candidates, failures) = open_rotated(&self.path);
        for (path, error) in failures {
            tracing::warn!(path = %path.display(), %error, "Failed to inspect a rotated file; skipping it.");
        }
        self.check_open_files(config, context);
        let open: Vec<FileIdentity> = self.open_identities().chain(live.copied()).collect();
        let closed: Vec<FileIdentity> = self.closed_identities().collect();
        self.done.retain(|done| {
            candidates
                .iter()
                .any(|candidate| candidate.is(&done.identity))
        });
        for candidate in candidates {
            // An open file keeps its inode allocated, so an inode match is that file even
            // when its first bytes were replaced. A closed file is matched by content.
            let is_open = |identity: &FileIdentity| {
                candidate.has_inode_of(identity) || candidate.is(identity)
            };
            if open.iter().any(is_open) || closed.iter().any(|identity| candidate.is(identity)) {
                continue;
            }
            tracing::info!(path = %candidate.path.display(), "Found a rotated file that was never read; reading it before the live file.");
            if let Some(stream) =
                stream_from_candidate(candidate, Role::Archive, 0, config, context)
            {
                self.queue.push_back(stream);
            }
        }
    }

    /// Brings the fingerprints of files that may still grow up to date and handles their
    /// truncation, so that a scan compares rotated files with their current content.
    fn check_open_files(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        let mut replaced = Vec::new();
        for stream in self.queue.iter_mut().chain(&mut self.live) {
            if matches!(stream.role, Role::Rotated { .. } | Role::Live)
                && let Some(identity) = check_in_place(stream, config, context)
            {
                replaced.push((stream.path.clone(), identity));
            }
        }
        for (path, identity) in replaced {
            self.mark_done(path, identity);
        }
    }

    /// Returns the identities of the open files.
    fn open_identities(&self) -> impl Iterator<Item = FileIdentity> + '_ {
        self.queue
            .iter()
            .chain(&self.live)
            .map(|stream| stream.identity)
    }

    /// Returns the identities of the finished and done files.
    fn closed_identities(&self) -> impl Iterator<Item = FileIdentity> + '_ {
        let finished = self.finished.iter().map(|finished| finished.identity);
        finished.chain(self.done.iter().map(|done| done.identity))
    }

    /// Applies an acknowledgement. Returns the released byte count, or `None` when the
    /// stream is not one of this path's.
    pub(crate) fn ack(&mut self, position: &Position) -> Option<u64> {
        let matches = |id: StreamId| id == position.stream;
        if let Some(stream) = self
            .queue
            .iter_mut()
            .chain(&mut self.live)
            .find(|stream| matches(stream.id))
        {
            return Some(stream.acks.ack(position.start, position.end));
        }
        let index = self
            .finished
            .iter()
            .position(|finished| matches(finished.id))?;
        let released = self.finished[index].acks.ack(position.start, position.end);
        if self.finished[index].acks.is_settled() {
            let finished = self.finished.swap_remove(index);
            self.mark_done(finished.path, finished.identity);
        }
        Some(released)
    }

    /// Returns the status of every file of this path, oldest first.
    pub(crate) fn statuses(&self) -> Vec<FileStatus> {
        let finished = self.finished.iter().map(|finished| FileStatus {
            followed_path: self.path.clone(),
            path: finished.path.clone(),
            stream: finished.id,
            role: FileRole::Finished,
            identity: finished.identity,
            read_offset: finished.read_offset,
            acked_offset: finished.acks.acked_offset(),
            size: None,
            lag_bytes: None,
            unacked_bytes: finished.acks.unacked_bytes(),
            counters: finished.counters,
        });
        let streams = self.queue.iter().chain(&self.live);
        finished
            .chain(streams.map(|stream| stream.status(&self.path, None)))
            .collect()
    }

    /// Returns the checkpoint entries of this path, stamped with `now_unix_ms`.
    pub(crate) fn entries(&self, now_unix_ms: u64) -> Vec<Entry> {
        let entry = |path: &Path, identity: FileIdentity, offset: u64, state: EntryState| Entry {
            followed_path: self.key.clone(),
            path: path.to_path_buf(),
            identity,
            offset,
            state,
            last_seen_unix_ms: now_unix_ms,
        };
        let finished = self.finished.iter().map(|finished| {
            let offset = finished.acks.acked_offset();
            entry(
                &finished.path,
                finished.identity,
                offset,
                EntryState::Reading,
            )
        });
        let streams = self.queue.iter().chain(&self.live).map(|stream| {
            let offset = stream.acks.acked_offset();
            entry(&stream.path, stream.identity, offset, EntryState::Reading)
        });
        let done = self
            .done
            .iter()
            .map(|done| entry(&done.path, done.identity, 0, EntryState::Done));
        finished.chain(streams).chain(done).collect()
    }
}

/// Checks a plain file that may still be written for growth of its fingerprint and
/// for truncation in place.
/// Returns the identity of the content before a truncation.
fn check_in_place(
    live: &mut Stream,
    config: &TailerConfig,
    context: &mut ReadContext<'_>,
) -> Option<FileIdentity> {
    let file = live.source.plain_file()?;
    let observed = file
        .metadata()
        .and_then(|metadata| Ok((metadata.len(), read_prefix_at(file)?)));
    let (size, prefix) = match observed {
        Ok(observed) => observed,
        Err(error) => {
            if !live.failing {
                live.failing = true;
                tracing::warn!(path = %live.path.display(), %error, "Failed to check a followed file; retrying on the next poll.");
                let offset = live.read_offset;
                let kind = ProblemKind::ReadFailed {
                    error: error.to_string(),
                };
                live.push_problem(offset, offset, kind, context);
            }
            return None;
        }
    };
    let replaced = !live.identity.fingerprint.matches_prefix(&prefix);
    if size < live.read_offset || replaced {
        let old_identity = live.identity;
        restart_truncated(live, size, &prefix, config, context);
        return Some(old_identity);
    }
    live.size = Some(live.size.unwrap_or(0).max(size));
    if prefix.len() as u64 > live.identity.fingerprint.len {
        live.identity.fingerprint = Fingerprint::of(&prefix);
    }
    None
}

/// Reports a truncation and restarts the live file at offset 0 under a new stream id.
///
/// Ranges emitted before the truncation no longer exist in the file, so they are
/// dropped from acknowledgement tracking and from the backpressure count.
fn restart_truncated(
    live: &mut Stream,
    size: u64,
    prefix: &[u8],
    config: &TailerConfig,
    context: &mut ReadContext<'_>,
) {
    let line_start = live.assembler.line_start();
    let seen_end = live.size.unwrap_or(0).max(live.read_offset);
    let possibly_lost_bytes = seen_end.saturating_sub(line_start);
    tracing::warn!(path = %live.path.display(), offset = live.read_offset, size, possibly_lost_bytes, "Detected that a followed file was truncated in place; reading it again from offset 0.");
    *context.unacked_bytes = context
        .unacked_bytes
        .saturating_sub(live.acks.unacked_bytes());
    let problem = Problem {
        position: live.position(line_start, seen_end),
        kind: ProblemKind::Truncated {
            possibly_lost_bytes,
        },
    };
    context.out.push(TailEvent::Problem(problem));
    live.counters.problems += 1;
    live.id = StreamId::next();
    live.read_offset = 0;
    live.assembler = LineAssembler::new(0, config.max_line_bytes);
    live.acks = AckTracker::new(0);
    live.size = Some(size);
    live.identity.fingerprint = Fingerprint::of(prefix);
}

/// Builds a stream over an opened candidate that starts at `offset`.
///
/// A plain file shorter than `offset` was truncated since the offset was stored; it is
/// reported and read from 0. Returns `None` when an archive's decoder cannot start.
pub(crate) fn stream_from_candidate(
    candidate: Candidate,
    role: Role,
    offset: u64,
    config: &TailerConfig,
    context: &mut ReadContext<'_>,
) -> Option<Stream> {
    let identity = candidate.identity();
    let plain_size = (!candidate.compressed).then_some(candidate.size);
    let source = if candidate.compressed {
        match Source::zstd(candidate.file, config.max_decompressed_bytes) {
            Ok(source) => source,
            Err(error) => {
                report_unreadable_archive(&candidate.path, identity, &error, context);
                return None;
            }
        }
    } else {
        Source::Plain(candidate.file)
    };
    let shrunk = plain_size.is_some_and(|size| size < offset);
    let start = if shrunk { 0 } else { offset };
    let assembler = LineAssembler::new(start, config.max_line_bytes);
    let mut stream = Stream::new(&candidate.path, role, identity, source, assembler);
    stream.size = plain_size;
    if shrunk {
        tracing::warn!(path = %candidate.path.display(), offset, size = candidate.size, "Found a checkpointed file shorter than its stored offset; reading it from offset 0.");
        let kind = ProblemKind::Truncated {
            possibly_lost_bytes: 0,
        };
        stream.push_problem(0, 0, kind, context);
    }
    Some(stream)
}

/// Reports an archive whose decoder failed to start.
pub(crate) fn report_unreadable_archive(
    path: &Path,
    identity: FileIdentity,
    error: &io::Error,
    context: &mut ReadContext<'_>,
) {
    tracing::warn!(path = %path.display(), %error, "Failed to open a rotated archive; skipping it.");
    let position = Position {
        stream: StreamId::next(),
        file: identity,
        path: path.to_path_buf(),
        start: 0,
        end: 0,
    };
    let kind = ProblemKind::ArchiveUnreadable {
        error: error.to_string(),
    };
    context
        .out
        .push(TailEvent::Problem(Problem { position, kind }));
}
