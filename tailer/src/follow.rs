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
use crate::identity::read_prefix_at;
use crate::siblings::{Candidate, FileStamp, open_candidate, open_rotated, rotated_stamps};
use crate::source::Source;
use crate::status::{FileCounters, FileRole, FileStatus};
use crate::stream::{ReadContext, Role, Stop, Stream};
use crate::truncation::Slot;
use crate::{FileIdentity, Position, Problem, ProblemKind, StreamId, TailEvent, TailerConfig};

/// Maximum number of done files remembered per path. osqueryd keeps at most 25
/// rotated files by default; each copytruncate adds one, kept until a scan finds
/// the file gone.
const MAX_DONE_FILES: usize = 256;

/// A closed file whose emitted ranges are not all acknowledged yet.
pub(crate) struct Finished {
    pub(crate) id: StreamId,
    pub(crate) path: PathBuf,
    pub(crate) identity: FileIdentity,
    pub(crate) read_offset: u64,
    /// Largest size observed, or the read offset when larger; the decompressed
    /// length read for an archive.
    pub(crate) observed_size: u64,
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
    /// Rotated files at the last scan for unseen rotated files.
    last_scan: Option<Vec<FileStamp>>,
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
            last_scan: None,
        }
    }

    /// Detects rotation and truncation, then reads older files before the live one.
    pub(crate) fn poll(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        self.check_live(config, context);
        if !self.read_queue(config, context) {
            return;
        }
        let Some(live) = &mut self.live else {
            return;
        };
        if live.read(context) == Stop::Replaced {
            // The live file was truncated since the check above; one more round
            // restarts it, and a copy of the old content is read first.
            self.check_live(config, context);
            if self.read_queue(config, context)
                && let Some(live) = &mut self.live
            {
                live.read(context);
            }
        }
    }

    /// Reads queued files in order. Returns false when reading had to stop before the
    /// queue was drained, so the live file must wait.
    fn read_queue(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) -> bool {
        let mut index = 0;
        while index < self.queue.len() {
            // A renamed file can still be truncated, for example when copytruncate ran
            // just before the rename. Files older than its new content are then
            // queued at `index` and read first.
            if matches!(self.queue[index].role, Role::Rotated { .. }) {
                self.check_truncation(Slot::Queued(index), config, context);
            }
            let stream = &mut self.queue[index];
            let stop = stream.read(context);
            let closable = match stream.role {
                Role::Rotated { since } => since.elapsed() >= config.rotate_grace,
                Role::Archive | Role::Live => true,
            };
            match stop {
                // A truncated file is restarted and read again at `index`, unless the
                // check does not confirm it; then the next poll retries.
                Stop::Replaced => {
                    if !self.check_truncation(Slot::Queued(index), config, context) {
                        index += 1;
                    }
                }
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
            observed_size: stream.size.unwrap_or(0).max(stream.read_offset),
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
                self.scan_if_rotated_changed(config, context);
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
        if let Some(live) = &self.live
            && (metadata.dev(), metadata.ino()) == (live.identity.dev, live.identity.inode)
        {
            self.check_live_in_place(config, context);
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

    /// Handles a truncation of the live file in place.
    ///
    /// While nothing of the live file has been seen (empty head), a copytruncate
    /// leaves no trace in the live file itself, so the rotated files are scanned
    /// whenever they change, to find the copy of content that was never read.
    fn check_live_in_place(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        let nothing_seen = self.live.as_ref().is_some_and(|live| live.head.is_empty());
        let truncated = self.check_truncation(Slot::Live, config, context);
        if nothing_seen && !truncated {
            self.scan_if_rotated_changed(config, context);
        }
    }

    /// Queues unseen rotated files and stores the stamps of the rotated files, unless a
    /// file was skipped as a copy of an open file and must be looked at again.
    fn scan_rotated(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        // The stamps are taken first, so that a file that appears during the scan
        // changes them and is found by the next scan.
        let stamps = rotated_stamps(&self.path);
        let settled = self.queue_unseen_rotated(config, context);
        self.last_scan = stamps.ok().filter(|_| settled);
    }

    /// Scans for unseen rotated files, as after an osqueryd rotation before the next
    /// write, unless the rotated files are unchanged since the previous scan.
    fn scan_if_rotated_changed(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        let stamps = match rotated_stamps(&self.path) {
            Ok(stamps) => stamps,
            Err(error) => {
                tracing::debug!(path = %self.path.display(), %error, "Failed to list rotated files.");
                return;
            }
        };
        if self.last_scan.as_ref() == Some(&stamps) {
            return;
        }
        let settled = self.queue_unseen_rotated(config, context);
        self.last_scan = settled.then_some(stamps);
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
        self.live = stream_from_candidate(candidate, Role::Live, 0, config, context);
        self.scan_rotated(config, context);
    }

    /// Queues rotated files that match no known file, by age, and drops done files
    /// that are no longer present. Returns false when a file was skipped because it
    /// starts like an open file (see [`Followed::open_unseen`]).
    fn queue_unseen_rotated(
        &mut self,
        config: &TailerConfig,
        context: &mut ReadContext<'_>,
    ) -> bool {
        let before = rotated_stamps(&self.path).ok();
        let (candidates, failures) = open_rotated(&self.path);
        let complete = failures.is_empty();
        for (path, error) in failures {
            tracing::warn!(path = %path.display(), %error, "Failed to inspect a rotated file; skipping it.");
        }
        // A file renamed while the directory was listed, or one that failed to open,
        // can be missing from `candidates` although it exists. Done files are dropped
        // only after a complete listing during which the rotated files did not change.
        let unchanged = before.is_some() && before == rotated_stamps(&self.path).ok();
        if complete && unchanged {
            self.done.retain(|done| {
                candidates
                    .iter()
                    .any(|candidate| candidate.is(&done.identity))
            });
        }
        self.check_open_files(config, context);
        let mut locations = self.queue_locations(&candidates);
        let (streams, settled) = self.open_unseen(candidates, config, context);
        self.queue_by_age(streams, &mut locations);
        settled
    }

    /// Returns, for each queued stream, the rotation number `N` of the file it reads,
    /// found among `candidates` by inode first and, once compressed, by content.
    /// `None` means the file was not found.
    pub(crate) fn queue_locations(&self, candidates: &[Candidate]) -> Vec<Option<u32>> {
        let locate = |stream: &Stream| {
            let identity = &stream.identity;
            let mut by_inode = candidates
                .iter()
                .filter(|candidate| candidate.has_inode_of(identity));
            let mut by_content = candidates.iter().filter(|candidate| candidate.is(identity));
            by_inode
                .next()
                .or_else(|| by_content.next())
                .map(|candidate| candidate.index)
        };
        self.queue.iter().map(locate).collect()
    }

    /// Queues `streams`, given oldest first with their rotation numbers, each before
    /// the first queued stream known to read a newer file (a smaller number), or at
    /// the back. `locations` are the rotation numbers of the queue, kept in step.
    pub(crate) fn queue_by_age(
        &mut self,
        streams: Vec<(u32, Stream)>,
        locations: &mut Vec<Option<u32>>,
    ) {
        for (index, stream) in streams {
            let newer = |location: &Option<u32>| location.is_some_and(|location| location < index);
            let at = locations.iter().position(newer).unwrap_or(self.queue.len());
            self.queue.insert(at, stream);
            locations.insert(at, Some(index));
        }
    }

    /// Opens streams over the `candidates` that match no open, finished or done file,
    /// in the order given, each with its rotation number.
    ///
    /// A rotated file whose first bytes agree with the current first bytes of the live
    /// file, or with the head of an open file, is skipped too. It is a copy of that
    /// file, possibly still being written by `copytruncate`, and that file is read
    /// anyway. The returned flag is false when such a file was skipped, because it must
    /// be looked at again once that file was truncated.
    pub(crate) fn open_unseen(
        &self,
        candidates: Vec<Candidate>,
        config: &TailerConfig,
        context: &mut ReadContext<'_>,
    ) -> (Vec<(u32, Stream)>, bool) {
        let live_prefix = self.live_prefix();
        let heads: Vec<&[u8]> = self
            .queue
            .iter()
            .chain(&self.live)
            .map(|stream| stream.head.as_slice())
            .chain([live_prefix.as_slice()])
            .collect();
        let open: Vec<FileIdentity> = self.open_identities().collect();
        let closed: Vec<FileIdentity> = self.closed_identities().collect();
        let mut streams = Vec::new();
        let mut settled = true;
        for candidate in candidates {
            // An open file keeps its inode allocated, so an inode match is that file even
            // when its first bytes were replaced. A closed file is matched by content.
            let is_open = |identity: &FileIdentity| {
                candidate.has_inode_of(identity) || candidate.is(identity)
            };
            if open.iter().any(is_open) || closed.iter().any(|identity| candidate.is(identity)) {
                continue;
            }
            if heads
                .iter()
                .any(|head| shares_prefix(&candidate.prefix, head))
            {
                tracing::debug!(path = %candidate.path.display(), "Skipped a rotated file that starts like an open file.");
                settled = false;
                continue;
            }
            tracing::info!(path = %candidate.path.display(), "Found a rotated file that was never read; reading it before newer content.");
            let index = candidate.index;
            if let Some(stream) =
                stream_from_candidate(candidate, Role::Archive, 0, config, context)
            {
                streams.push((index, stream));
            }
        }
        (streams, settled)
    }

    /// Returns the current first bytes of the live file. They are empty when there is no
    /// live file or reading fails, which the next check of the live file reports.
    fn live_prefix(&self) -> Vec<u8> {
        self.live
            .as_ref()
            .and_then(|live| live.source.plain_file())
            .and_then(|file| read_prefix_at(file).ok())
            .unwrap_or_default()
    }

    /// Brings the fingerprints of files that may still grow up to date and handles their
    /// truncation, so that a scan compares rotated files with their current content.
    fn check_open_files(&mut self, config: &TailerConfig, context: &mut ReadContext<'_>) {
        let mut index = 0;
        while index < self.queue.len() {
            // Streams queued by a truncation are visited too; checking them again
            // finds no change.
            if matches!(self.queue[index].role, Role::Rotated { .. }) {
                self.check_truncation(Slot::Queued(index), config, context);
            }
            index += 1;
        }
        self.check_truncation(Slot::Live, config, context);
    }

    /// Returns the identities of the open files.
    fn open_identities(&self) -> impl Iterator<Item = FileIdentity> + '_ {
        self.queue
            .iter()
            .chain(&self.live)
            .map(|stream| stream.identity)
    }

    /// Returns the identities of the finished and done files.
    pub(crate) fn closed_identities(&self) -> impl Iterator<Item = FileIdentity> + '_ {
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
            observed_size: None,
            last_seen_unix_ms: now_unix_ms,
        };
        let finished = self.finished.iter().map(|finished| {
            let offset = finished.acks.acked_offset();
            Entry {
                observed_size: Some(finished.observed_size),
                ..entry(
                    &finished.path,
                    finished.identity,
                    offset,
                    EntryState::Reading,
                )
            }
        });
        let streams = self.queue.iter().chain(&self.live).map(|stream| {
            let offset = stream.acks.acked_offset();
            // The decompressed length of an archive is known only once it was read to
            // its end, so an open archive has no observed size.
            let observed_size = stream.size.map(|size| size.max(stream.read_offset));
            Entry {
                observed_size,
                ..entry(&stream.path, stream.identity, offset, EntryState::Reading)
            }
        });
        let done = self
            .done
            .iter()
            .map(|done| entry(&done.path, done.identity, 0, EntryState::Done));
        finished.chain(streams).chain(done).collect()
    }
}

/// Tells whether two non-empty prefixes agree on their common length, as a file and
/// a partial or complete copy of it do.
pub(crate) fn shares_prefix(a: &[u8], b: &[u8]) -> bool {
    let common = a.len().min(b.len());
    common > 0 && a[..common] == b[..common]
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
    let mut stream = Stream::new(
        &candidate.path,
        role,
        identity,
        candidate.prefix,
        source,
        assembler,
    );
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
