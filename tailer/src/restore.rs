//! Reconstruction of a followed path's state from the checkpoint when the tailer opens.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::assembler::LineAssembler;
use crate::checkpoint::{Entry, EntryState};
use crate::follow::{Followed, stream_from_candidate};
use crate::siblings::{Candidate, open_candidate, open_rotated};
use crate::source::Source;
use crate::stream::{ReadContext, Role, Stream};
use crate::{Position, Problem, ProblemKind, StartAt, StreamId, TailEvent, TailerConfig};

/// Files of one followed path found on disk.
struct Found {
    /// The rotated files, oldest first, then the live file.
    candidates: Vec<Candidate>,
    /// False when listing the directory or opening a file failed with an error other
    /// than "not found", so a file that exists may be missing from `candidates`.
    complete: bool,
}

/// Opens the live file and the rotated files of `path`, oldest first, live last.
fn open_all(path: &Path) -> Found {
    let (mut candidates, failures) = open_rotated(path);
    let mut complete = failures.is_empty();
    for (failed, error) in failures {
        tracing::warn!(path = %failed.display(), %error, "Failed to inspect a rotated file; skipping it.");
    }
    match open_candidate(0, path, false) {
        Ok(live) => candidates.push(live),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            complete = false;
            tracing::warn!(path = %path.display(), %error, "Failed to open a followed file; retrying on the next poll.");
        }
    }
    Found {
        candidates,
        complete,
    }
}

/// Builds the state of a path the checkpoint has never seen.
///
/// Rotated files that already exist are marked done: like the lines before `start_at`,
/// they predate the tailer. The live file starts at `config.start_at`.
pub(crate) fn first_start(path: &Path, config: &TailerConfig) -> Followed {
    let mut followed = Followed::new(path);
    for candidate in open_all(path).candidates {
        if candidate.index > 0 {
            followed.mark_done(candidate.path.clone(), candidate.identity());
            continue;
        }
        let (offset, skipping) = match config.start_at {
            StartAt::Beginning => (0, false),
            StartAt::End => end_position(&candidate.file, candidate.size, config.max_line_bytes).unwrap_or_else(|error| {
                tracing::warn!(path = %path.display(), %error, "Failed to find the last line start; starting at the end of the file.");
                (candidate.size, true)
            }),
        };
        let assembler = if skipping {
            LineAssembler::new_skipping(offset, config.max_line_bytes)
        } else {
            LineAssembler::new(offset, config.max_line_bytes)
        };
        let identity = candidate.identity();
        let mut live = Stream::new(
            path,
            Role::Live,
            identity,
            candidate.prefix,
            Source::Plain(candidate.file),
            assembler,
        );
        live.size = Some(candidate.size);
        followed.live = Some(live);
    }
    followed
}

/// Returns the offset after the last `\n` before `size`, searching back at most
/// `max_line_bytes + 1` bytes. When no `\n` is that close, the line there is too long:
/// the result is `(size, true)`, meaning "skip to the next `\n`".
fn end_position(file: &File, size: u64, max_line_bytes: usize) -> io::Result<(u64, bool)> {
    const STEP: u64 = 64 << 10;
    let window = (max_line_bytes as u64).saturating_add(1);
    let mut buf = vec![0u8; STEP as usize];
    let mut end = size;
    while end > 0 && size - end < window {
        let start = end.saturating_sub(STEP);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(index) = memchr::memrchr(b'\n', chunk) {
            return Ok((start + index as u64 + 1, false));
        }
        end = start;
    }
    Ok(if end == 0 { (0, false) } else { (size, true) })
}

/// Builds the state of a path from its checkpoint entries.
///
/// Each `reading` entry is matched to a file, by device, inode and fingerprint first
/// and by fingerprint alone second (archives have new inodes), and resumes at its
/// offset. Files that match a `done` entry are skipped. Every other file is newer than
/// the checkpoint and is read from 0. Files are read oldest first and the live file last.
/// Unmatched `reading` entries are handled by [`unmatched_entries`]; the ones returned
/// are kept by the caller until they expire.
pub(crate) fn restore(
    path: &Path,
    entries: Vec<Entry>,
    config: &TailerConfig,
    context: &mut ReadContext<'_>,
) -> (Followed, Vec<Entry>) {
    let mut followed = Followed::new(path);
    let Found {
        candidates,
        complete,
    } = open_all(path);
    let (reading, done): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|entry| entry.state == EntryState::Reading);
    let assigned = assign_entries(&candidates, &reading);
    for (candidate, entry) in candidates.into_iter().zip(assigned.iter().copied()) {
        let offset = match entry {
            Some(index) => reading[index].offset,
            None if is_known(&candidate, &reading, &done, &mut followed) => continue,
            None => 0,
        };
        let role = if candidate.index == 0 {
            Role::Live
        } else {
            Role::Archive
        };
        tracing::info!(path = %candidate.path.display(), offset, "Resuming a followed file.");
        match stream_from_candidate(candidate, role, offset, config, context) {
            Some(stream) if matches!(role, Role::Live) => followed.live = Some(stream),
            Some(stream) => followed.queue.push_back(stream),
            None => {}
        }
    }
    let unresolved = unmatched_entries(reading, &assigned, complete, context);
    (followed, unresolved)
}

/// Tells whether a file that resumes no entry was already read. That is the case when
/// it matches a `done` entry, which is then kept, or when it is a second copy of a
/// matched file.
fn is_known(
    candidate: &Candidate,
    reading: &[Entry],
    done: &[Entry],
    followed: &mut Followed,
) -> bool {
    if let Some(done) = done.iter().find(|done| candidate.is(&done.identity)) {
        followed.mark_done(candidate.path.clone(), done.identity);
        return true;
    }
    reading
        .iter()
        .any(|entry| entry.identity.fingerprint.len > 0 && candidate.is(&entry.identity))
}

/// Returns for each candidate the index of the `reading` entry it resumes, if any.
fn assign_entries(candidates: &[Candidate], reading: &[Entry]) -> Vec<Option<usize>> {
    let mut assigned: Vec<Option<usize>> = vec![None; candidates.len()];
    for (index, entry) in reading.iter().enumerate() {
        let free = |slot: &usize| assigned[*slot].is_none();
        let slots = || (0..candidates.len()).filter(free);
        let by_inode = slots().find(|&slot| {
            candidates[slot].has_inode_of(&entry.identity) && candidates[slot].is(&entry.identity)
        });
        let by_fingerprint = || {
            slots().find(|&slot| {
                entry.identity.fingerprint.len > 0 && candidates[slot].is(&entry.identity)
            })
        };
        if let Some(slot) = by_inode.or_else(by_fingerprint) {
            assigned[slot] = Some(index);
        }
    }
    assigned
}

/// Reports `reading` entries that matched no file and drops them, so that each is
/// reported once. Returns the entries to keep.
///
/// - An entry with an empty fingerprint was an empty file at offset 0. If that file
///   grew and moved, `restore` found it as a file matching no entry and reads it
///   from 0, so the entry is dropped without a problem.
/// - When the lookup was not `complete`, the file may still exist, so every entry is
///   kept without a problem and looked up again at the next start.
/// - An entry whose acknowledged offset reached its observed size was read to the
///   last byte the tailer observed, so it is dropped without a problem.
/// - Every other entry is reported as [`ProblemKind::FileVanished`]. This includes a
///   file whose inode now contains other content, because a rewrite in place and an
///   inode reused after a deletion look the same.
fn unmatched_entries(
    reading: Vec<Entry>,
    assigned: &[Option<usize>],
    complete: bool,
    context: &mut ReadContext<'_>,
) -> Vec<Entry> {
    let mut unresolved = Vec::new();
    for (index, entry) in reading.into_iter().enumerate() {
        if entry.identity.fingerprint.len == 0 || assigned.contains(&Some(index)) {
            continue;
        }
        if !complete {
            unresolved.push(entry);
            continue;
        }
        if entry.observed_size.is_some_and(|size| entry.offset >= size) {
            tracing::info!(path = %entry.path.display(), inode = entry.identity.inode, offset = entry.offset, "Dropped the checkpoint entry of a file that was read to its end and no longer exists.");
            continue;
        }
        tracing::warn!(path = %entry.path.display(), inode = entry.identity.inode, offset = entry.offset, observed_size = ?entry.observed_size, "Found no file for a checkpoint entry; its unread bytes are lost.");
        let position = Position {
            stream: StreamId::next(),
            file: entry.identity,
            path: entry.path.clone(),
            start: entry.offset,
            end: entry.offset,
        };
        let kind = ProblemKind::FileVanished {
            acked_offset: entry.offset,
        };
        context
            .out
            .push(TailEvent::Problem(Problem { position, kind }));
    }
    unresolved
}
