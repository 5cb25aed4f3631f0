//! Rotation-aware, crash-safe, checkpointed follower of osquery log files.
//!
//! A [`Tailer`] follows configured paths such as `/var/log/osquery/osqueryd.results.log`
//! and returns complete `\n`-terminated lines with their byte positions. It handles
//! what osqueryd 5.x and logrotate do to those files:
//!
//! - partial last lines (kept until their `\n` arrives), lines of many MiB, and
//!   bytes that are not UTF-8 (delivered exactly);
//! - the fragment of a failed write glued to the next record on one line;
//! - rename rotation, deletion and re-creation, `copytruncate`, and osqueryd's own
//!   rotation into `NAME.1` and zstd archives `NAME.N.zst`.
//!
//! Each event must be acknowledged with [`Tailer::ack`] once every sink has processed
//! it. [`Tailer::write_checkpoint`] stores only acknowledged offsets, so after a crash
//! the lines since the last checkpoint are delivered again (at-least-once delivery).
//! The [`Watcher`] wakes the caller's poll loop through inotify.

#![warn(missing_docs)]

mod acks;
mod assembler;
mod checkpoint;
mod config;
mod error;
mod event;
mod follow;
mod glued;
mod identity;
mod restore;
mod siblings;
mod source;
mod status;
mod stream;
mod tailer;
mod truncation;
mod watcher;

pub use config::{StartAt, TailerConfig};
pub use error::{StartupWarning, TailError};
pub use event::{Line, Position, Problem, ProblemKind, StreamId, TailEvent};
pub use glued::{Split, split_glued};
pub use identity::{FINGERPRINT_BYTES, FileIdentity, Fingerprint};
pub use status::{FileCounters, FileRole, FileStatus};
pub use tailer::Tailer;
pub use watcher::Watcher;
