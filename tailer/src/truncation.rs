//! Truncation in place, as done by logrotate `copytruncate`, and recovery of the
//! unread rest of the old content from its copy among the rotated files.
//!
//! logrotate `copytruncate` copies the file to `NAME.1` and only then truncates it,
//! so the copy is complete when the tailer can see the truncation. The rotated files
//! are therefore searched for the copy once, when the truncation is seen. Bytes
//! written between the copy and the truncation are lost; those the tailer had
//! observed are counted in [`ProblemKind::Truncated`].
//!
//! A copier that runs while the file is truncated breaks that order. A copy found
//! while it still grows is read like a renamed file, for `rotate_grace` after it was
//! found, provided it already held unread bytes. A copy that appears only after the
//! truncation was seen is not read: the old content is marked done so that a scan
//! skips it, and its unread bytes are counted as possibly lost.
//!
//! NOTE: a late copy shorter than the fingerprint of the old content does not match
//! that done entry, so a later scan reads it again from offset 0.

use std::fs::File;
use std::io::{self, Read};
use std::mem;
use std::path::PathBuf;
use std::time::Instant;

use crate::acks::AckTracker;
use crate::assembler::LineAssembler;
use crate::follow::{Followed, report_unreadable_archive, shares_prefix};
use crate::identity::read_prefix_at;
use crate::siblings::{Candidate, PositionalReader, open_rotated};
use crate::source::Source;
use crate::stream::{ReadContext, Role, Stream};
use crate::{FileIdentity, Position, Problem, ProblemKind, StreamId, TailEvent, TailerConfig};

/// Place of a stream among the open files of a followed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Live,
    Queued(usize),
}

impl Followed {
    /// Checks the plain file at `slot` for truncation in place and restarts it at 0 if
    /// it was truncated. Returns whether it was truncated.
    ///
    /// After a truncation, the copy of the old content is queued right before the
    /// stream and resumes at the read offset. Rotated files that match no known file
    /// are queued too, by age: they are generations of the file that were copied and
    /// truncated between two checks.
    pub(crate) fn check_truncation(
        &mut self,
        slot: Slot,
        config: &TailerConfig,
        context: &mut ReadContext<'_>,
    ) -> bool {
        let Some(stream) = self.stream_mut(slot) else {
            return false;
        };
        let Some(truncation) = check_in_place(stream, context) else {
            return false;
        };
        let path = stream.path.clone();
        let old = stream.identity;
        let old_head = stream.head.clone();
        let (candidates, failures) = open_rotated(&self.path);
        for (failed, error) in failures {
            tracing::warn!(path = %failed.display(), %error, "Failed to inspect a rotated file; skipping it.");
        }
        let mut locations = self.queue_locations(&candidates);
        let (copy, others) = self.take_copy(slot, &old, &old_head, candidates);
        let copy_index = copy.as_ref().map(|copy| copy.index);
        let Some(stream) = self.stream_mut(slot) else {
            return false;
        };
        match restart_truncated(stream, truncation, copy, config, context) {
            Restarted::FromCopy(copy) => {
                let at = match slot {
                    Slot::Live => self.queue.len(),
                    Slot::Queued(index) => index,
                };
                self.queue.insert(at, *copy);
                locations.insert(at, copy_index);
            }
            Restarted::WithoutCopy { old, copy } => {
                self.mark_done(path, old);
                if let Some((path, identity)) = copy {
                    self.mark_done(path, identity);
                }
            }
        }
        let (unseen, _) = self.open_unseen(others, config, context);
        self.queue_by_age(unseen, &mut locations);
        true
    }

    fn stream_mut(&mut self, slot: Slot) -> Option<&mut Stream> {
        match slot {
            Slot::Live => self.live.as_mut(),
            Slot::Queued(index) => self.queue.get_mut(index),
        }
    }

    /// Removes from `candidates` the copy of the content of the stream at `slot` before
    /// its truncation, described by `old` and its first bytes `old_head`, and returns
    /// it with the other candidates.
    ///
    /// The copy's first bytes agree with `old_head` (either may be the shorter), and it
    /// is not one of the other files of this path. A plain copy is preferred, then the
    /// newest.
    fn take_copy(
        &self,
        slot: Slot,
        old: &FileIdentity,
        old_head: &[u8],
        mut candidates: Vec<Candidate>,
    ) -> (Option<Candidate>, Vec<Candidate>) {
        let queued = self
            .queue
            .iter()
            .enumerate()
            .filter(|(index, _)| slot != Slot::Queued(*index))
            .map(|(_, stream)| stream.identity);
        let live = self.live.iter().filter(|_| slot != Slot::Live);
        let open: Vec<FileIdentity> = queued.chain(live.map(|live| live.identity)).collect();
        let closed: Vec<FileIdentity> = self.closed_identities().collect();
        let is_copy = |candidate: &Candidate| {
            let is_open = |identity: &FileIdentity| {
                candidate.has_inode_of(identity) || candidate.is(identity)
            };
            shares_prefix(&candidate.prefix, old_head)
                && !candidate.has_inode_of(old)
                && !open.iter().any(is_open)
                && !closed.iter().any(|identity| candidate.is(identity))
        };
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(_, candidate)| is_copy(candidate))
            .min_by_key(|(_, candidate)| (candidate.compressed, candidate.index))
            .map(|(index, _)| index);
        let copy = best.map(|index| candidates.remove(index));
        (copy, candidates)
    }
}

/// Size and first bytes of a plain file whose content no longer continues what a
/// stream read from it.
pub(crate) struct Truncation {
    size: u64,
    prefix: Vec<u8>,
}

/// Result of [`restart_truncated`].
pub(crate) enum Restarted {
    /// The unread rest of the old content is read from this copy, which carries on the
    /// old read pass: same stream id, line assembler and acknowledgement tracking.
    FromCopy(Box<Stream>),
    /// No copy contains unread bytes. The identity of the old content, and of a copy
    /// found without unread bytes, must be marked done, so that a later scan does not
    /// read them again from 0.
    WithoutCopy {
        old: FileIdentity,
        copy: Option<(PathBuf, FileIdentity)>,
    },
}

/// Checks a plain file that may still be written for growth of its fingerprint and
/// for truncation in place. Returns the observed content after a truncation; the
/// stream itself is restarted by [`restart_truncated`].
pub(crate) fn check_in_place(
    stream: &mut Stream,
    context: &mut ReadContext<'_>,
) -> Option<Truncation> {
    let file = stream.source.plain_file()?;
    let observed = file.metadata().and_then(|metadata| {
        let prefix = read_prefix_at(file)?;
        Ok((metadata.len(), prefix, file.metadata()?.len()))
    });
    let (size, prefix, size_after) = match observed {
        Ok(observed) => observed,
        Err(error) => {
            if !stream.failing {
                stream.failing = true;
                tracing::warn!(path = %stream.path.display(), %error, "Failed to check a followed file; retrying on the next poll.");
                let offset = stream.read_offset;
                let kind = ProblemKind::ReadFailed {
                    error: error.to_string(),
                };
                stream.push_problem(offset, offset, kind, context);
            }
            return None;
        }
    };
    if size_after < size {
        // The file shrank during the check, so the size and the prefix may belong to
        // different content. The next check, made on a stable file, decides.
        return None;
    }
    let replaced = !stream.identity.fingerprint.matches_prefix(&prefix);
    if size < stream.read_offset || replaced {
        return Some(Truncation { size, prefix });
    }
    stream.size = Some(stream.size.unwrap_or(0).max(size));
    if prefix.len() > stream.head.len() {
        stream.set_head(prefix);
    }
    None
}

/// Reports a truncation and restarts `stream` at offset 0 under a new stream id.
///
/// `copy` is a rotated file whose first bytes match the content before the truncation.
/// When it contains bytes past the read offset, it is returned as a stream that continues
/// the old read pass at the read offset, so no delivered line repeats and acks of
/// lines emitted before the truncation still move its checkpoint. The copy is read
/// as a rotated file, so bytes that reach it within `rotate_grace` are read too.
///
/// Without such a copy, the ranges emitted before the truncation no longer exist in
/// any file the tailer reads, so they are dropped from acknowledgement tracking and
/// from the backpressure count.
pub(crate) fn restart_truncated(
    stream: &mut Stream,
    truncation: Truncation,
    copy: Option<Candidate>,
    config: &TailerConfig,
    context: &mut ReadContext<'_>,
) -> Restarted {
    let seen_end = stream.size.unwrap_or(0).max(stream.read_offset);
    let old_identity = stream.identity;
    let mut spent_copy = None;
    let copy = copy.and_then(|candidate| {
        let path = candidate.path.clone();
        let identity = candidate.identity();
        let opened = open_copy(candidate, stream, seen_end, config, context);
        if opened.is_none() {
            spent_copy = Some((path, identity));
        }
        opened
    });
    let lost_start = match &copy {
        Some(copy) => copy.end.min(seen_end),
        None => stream.assembler.line_start(),
    };
    let possibly_lost_bytes = seen_end - lost_start;
    match &copy {
        Some(copy) => {
            tracing::warn!(path = %stream.path.display(), copy = %copy.path.display(), offset = stream.read_offset, size = truncation.size, possibly_lost_bytes, "Detected that a followed file was truncated in place; reading the rest of its old content from a rotated copy, then the file from offset 0.");
        }
        None => {
            tracing::warn!(path = %stream.path.display(), offset = stream.read_offset, size = truncation.size, possibly_lost_bytes, "Detected that a followed file was truncated in place and found no rotated copy with unread bytes; reading it again from offset 0.");
        }
    }
    // The problem belongs to no read pass, so acknowledging it has no effect.
    let position = Position {
        stream: StreamId::next(),
        file: old_identity,
        path: stream.path.clone(),
        start: lost_start,
        end: seen_end,
    };
    let kind = ProblemKind::Truncated {
        possibly_lost_bytes,
    };
    context
        .out
        .push(TailEvent::Problem(Problem { position, kind }));
    stream.counters.problems += 1;

    let old_id = mem::replace(&mut stream.id, StreamId::next());
    let old_read_offset = mem::replace(&mut stream.read_offset, 0);
    let old_assembler = mem::replace(
        &mut stream.assembler,
        LineAssembler::new(0, config.max_line_bytes),
    );
    let old_acks = mem::replace(&mut stream.acks, AckTracker::new(0));
    stream.size = Some(truncation.size);
    stream.set_head(truncation.prefix);

    let Some(copy) = copy else {
        *context.unacked_bytes = context
            .unacked_bytes
            .saturating_sub(old_acks.unacked_bytes());
        return Restarted::WithoutCopy {
            old: old_identity,
            copy: spent_copy,
        };
    };
    let role = Role::Rotated {
        since: Instant::now(),
    };
    let mut copy_stream = Stream::new(
        &copy.path,
        role,
        copy.identity,
        copy.head,
        copy.source,
        old_assembler,
    );
    copy_stream.id = old_id;
    copy_stream.read_offset = old_read_offset;
    copy_stream.acks = old_acks;
    copy_stream.size = copy.plain_size;
    Restarted::FromCopy(Box::new(copy_stream))
}

/// A rotated copy of truncated content, opened for reading.
struct OpenedCopy {
    path: PathBuf,
    identity: FileIdentity,
    head: Vec<u8>,
    source: Source,
    /// Size of a plain copy.
    plain_size: Option<u64>,
    /// Length of the content, counted up to the end of the old content the tailer saw
    /// for a `.zst` copy.
    end: u64,
}

/// Opens `candidate` when it contains bytes past the read offset of `stream`, and
/// returns `None` when every byte of it was read already.
fn open_copy(
    candidate: Candidate,
    stream: &Stream,
    seen_end: u64,
    config: &TailerConfig,
    context: &mut ReadContext<'_>,
) -> Option<OpenedCopy> {
    let identity = candidate.identity();
    let end = if candidate.compressed {
        // Decoding one byte past the read offset shows whether the copy contains more.
        let limit = seen_end.max(stream.read_offset + 1);
        decoded_len(&candidate.file, limit).unwrap_or_else(|error| {
            tracing::debug!(path = %candidate.path.display(), %error, "Failed to decode a rotated archive while measuring it.");
            0
        })
    } else {
        candidate.size
    };
    if end <= stream.read_offset {
        tracing::debug!(path = %candidate.path.display(), end, offset = stream.read_offset, "Skipped a rotated copy of truncated content because it contains no unread bytes.");
        return None;
    }
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
    Some(OpenedCopy {
        path: candidate.path,
        identity,
        head: candidate.prefix,
        source,
        plain_size: (!candidate.compressed).then_some(candidate.size),
        end,
    })
}

/// Returns the decompressed length of a `.zst` file, counting at most `limit` bytes.
/// Reads with `pread`, so the file offset that a later decoder uses stays at 0.
fn decoded_len(file: &File, limit: u64) -> io::Result<u64> {
    let reader = PositionalReader { file, offset: 0 };
    let decoder = zstd::stream::read::Decoder::new(reader)?;
    io::copy(&mut decoder.take(limit), &mut io::sink())
}
