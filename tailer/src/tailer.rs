//! The [`Tailer`]: opening from a checkpoint, polling, acknowledging and checkpointing.

use std::mem;

use crate::checkpoint::{self, Checkpoint, Entry, FollowedRecord, is_expired, unix_ms_now};
use crate::follow::Followed;
use crate::restore::{first_start, restore};
use crate::status::FileStatus;
use crate::stream::ReadContext;
use crate::{Position, StartupWarning, TailError, TailEvent, TailerConfig};

/// Rotation-aware, checkpointed follower of log files.
///
/// The tailer never sleeps or waits for data: [`Tailer::poll`] reads what is available
/// and returns. Its reads and `stat` calls are ordinary system calls on local files. Call it when a [`crate::Watcher`] reports a change, on a slow timer as a
/// safety net, right away while [`Tailer::has_more`] is true, and after acknowledging
/// events while backpressure held reading back.
pub struct Tailer {
    config: TailerConfig,
    followed: Vec<Followed>,
    /// Checkpoint entries kept until they expire: files of paths no longer configured,
    /// and files whose lookup failed with an error other than "not found".
    orphans: Vec<Entry>,
    /// Checkpoint records of paths no longer configured, kept until they expire.
    other_followed: Vec<FollowedRecord>,
    /// Problems found by [`Tailer::open`], returned by the first poll.
    outbox: Vec<TailEvent>,
    unacked_bytes: u64,
    chunk: Vec<u8>,
    has_more: bool,
    /// Index of the path read first by the next poll; it rotates so that one busy path
    /// cannot take the whole budget of every poll.
    next_first: usize,
    warnings: Vec<StartupWarning>,
}

impl Tailer {
    /// Validates the configuration, loads the checkpoint and opens the files.
    ///
    /// Each checkpointed file is looked up by device, inode and fingerprint at its path,
    /// among `.N` and `.N.zst` rotated files. Unread remainders of rotated files and
    /// rotated files newer than the checkpoint are scheduled before the live file. A
    /// checkpoint that cannot be used is reported in [`Tailer::startup_warnings`] and
    /// every path starts as if it were new, at [`TailerConfig::start_at`].
    pub fn open(config: TailerConfig) -> Result<Tailer, TailError> {
        config.validate()?;
        let (checkpoint, warning) = checkpoint::load(&config.checkpoint_path);
        if let Some(warning) = &warning {
            tracing::warn!(path = %config.checkpoint_path.display(), ?warning, "Ignored an unusable checkpoint file; every path starts at start_at.");
        }
        let mut tailer = Tailer {
            chunk: vec![0; config.read_chunk_bytes],
            config,
            followed: Vec::new(),
            orphans: Vec::new(),
            other_followed: Vec::new(),
            outbox: Vec::new(),
            unacked_bytes: 0,
            has_more: false,
            next_first: 0,
            warnings: warning.into_iter().collect(),
        };
        tailer.restore_all(checkpoint);
        Ok(tailer)
    }

    /// Builds the state of every configured path from the loaded checkpoint.
    fn restore_all(&mut self, checkpoint: Checkpoint) {
        let now = unix_ms_now();
        let expiry = self.config.checkpoint_expiry;
        let live = |last_seen: u64| !is_expired(last_seen, now, expiry);
        let mut entries: Vec<Entry> = checkpoint
            .entries
            .into_iter()
            .filter(|entry| live(entry.last_seen_unix_ms))
            .collect();
        let mut budget = 0;
        let mut context = ReadContext {
            chunk: &mut self.chunk,
            budget: &mut budget,
            unacked_bytes: &mut self.unacked_bytes,
            max_unacked_bytes: 0,
            max_decompressed_bytes: self.config.max_decompressed_bytes,
            recover_glued: false,
            out: &mut self.outbox,
        };
        for path in &self.config.paths {
            let key = path.to_string_lossy();
            let (mine, rest): (Vec<Entry>, Vec<Entry>) = entries
                .into_iter()
                .partition(|entry| entry.followed_path == key);
            entries = rest;
            let followed_before = checkpoint
                .followed
                .iter()
                .any(|record| record.path == key && live(record.last_seen_unix_ms));
            if mine.is_empty() && !followed_before {
                self.followed.push(first_start(path, &self.config));
                continue;
            }
            let (followed, unresolved) = restore(path, mine, &self.config, &mut context);
            self.followed.push(followed);
            self.orphans.extend(unresolved);
        }
        self.orphans.extend(entries);
        self.other_followed = checkpoint
            .followed
            .into_iter()
            .filter(|record| live(record.last_seen_unix_ms))
            .filter(|record| {
                !self
                    .config
                    .paths
                    .iter()
                    .any(|path| path.to_string_lossy() == record.path)
            })
            .collect();
    }

    /// Reads what is available on every file and returns the resulting events.
    ///
    /// Detects rotation, deletion and truncation with `stat`. Reads at most
    /// [`TailerConfig::max_poll_bytes`] and stops once the unacknowledged bytes reach
    /// [`TailerConfig::max_unacked_bytes`]; the complete lines of the chunk that crossed
    /// the limit are still returned, so the limit can be passed by up to one chunk plus
    /// one held line. Per-file failures are returned as [`crate::Problem`] events, not
    /// as `Err`; this build never returns `Err` here.
    pub fn poll(&mut self) -> Result<Vec<TailEvent>, TailError> {
        let mut events = mem::take(&mut self.outbox);
        let mut budget = self.config.max_poll_bytes;
        let count = self.followed.len();
        for step in 0..count {
            let index = (self.next_first + step) % count;
            let mut context = ReadContext {
                chunk: &mut self.chunk,
                budget: &mut budget,
                unacked_bytes: &mut self.unacked_bytes,
                max_unacked_bytes: self.config.max_unacked_bytes as u64,
                max_decompressed_bytes: self.config.max_decompressed_bytes,
                recover_glued: self.config.recover_glued_records,
                out: &mut events,
            };
            self.followed[index].poll(&self.config, &mut context);
        }
        self.next_first = (self.next_first + 1) % count.max(1);
        self.has_more = budget == 0;
        Ok(events)
    }

    /// Tells whether the last poll stopped because its byte budget was spent, so the
    /// next poll returns more without waiting for a file change.
    pub fn has_more(&self) -> bool {
        self.has_more
    }

    /// Records that every sink has processed the event at `position`.
    ///
    /// Acknowledgement is cumulative per file: the checkpoint moves past `position.end`
    /// once every earlier event of that file is acknowledged too. Acks may come in any
    /// order. An unknown position, for example one from a dropped tailer or one emitted
    /// before a truncation, is ignored.
    pub fn ack(&mut self, position: &Position) {
        for followed in &mut self.followed {
            if let Some(released) = followed.ack(position) {
                self.unacked_bytes = self.unacked_bytes.saturating_sub(released);
                return;
            }
        }
    }

    /// Returns the bytes of emitted events not yet acknowledged.
    pub fn unacked_bytes(&self) -> u64 {
        self.unacked_bytes
    }

    /// Writes the acknowledged offsets to the checkpoint file atomically: a temporary
    /// file is written and synced, renamed over the checkpoint, and the directory synced.
    pub fn write_checkpoint(&mut self) -> Result<(), TailError> {
        let now = unix_ms_now();
        let expiry = self.config.checkpoint_expiry;
        self.orphans
            .retain(|entry| !is_expired(entry.last_seen_unix_ms, now, expiry));
        self.other_followed
            .retain(|record| !is_expired(record.last_seen_unix_ms, now, expiry));
        let mut checkpoint = Checkpoint::default();
        for followed in &self.followed {
            checkpoint.followed.push(FollowedRecord {
                path: followed.key.clone(),
                last_seen_unix_ms: now,
            });
            checkpoint.entries.extend(followed.entries(now));
        }
        checkpoint
            .followed
            .extend(self.other_followed.iter().cloned());
        checkpoint.entries.extend(self.orphans.iter().cloned());
        checkpoint::store(&self.config.checkpoint_path, &checkpoint)
    }

    /// Returns the progress of every open or unacknowledged file, grouped by path,
    /// oldest first.
    pub fn status(&self) -> Vec<FileStatus> {
        self.followed.iter().flat_map(Followed::statuses).collect()
    }

    /// Returns the conditions found by [`Tailer::open`] that did not stop it.
    pub fn startup_warnings(&self) -> &[StartupWarning] {
        &self.warnings
    }

    /// Returns the configuration.
    pub fn config(&self) -> &TailerConfig {
        &self.config
    }
}
