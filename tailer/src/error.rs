//! Error and warning types returned by the tailer.

use std::io;
use std::path::PathBuf;

/// Failure of a tailer operation that affects the whole tailer.
///
/// Failures that affect one file (a read error, a vanished file) are
/// reported as [`crate::Problem`] events by [`crate::Tailer::poll`] instead.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The configuration is unusable; the message names the field.
    #[error("invalid tailer configuration: {0}")]
    InvalidConfig(String),

    /// Writing, syncing or renaming the checkpoint file failed.
    #[error("failed to write checkpoint file {path}: {source}")]
    CheckpointWrite {
        /// The file that failed, which is the temporary file or the checkpoint itself.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// Serializing the checkpoint to JSON failed.
    #[error("failed to serialize the checkpoint: {0}")]
    CheckpointEncode(#[from] serde_json::Error),

    /// The inotify watcher could not be created.
    #[error("failed to start the file watcher: {0}")]
    Watch(#[from] notify::Error),
}

/// Condition found by [`crate::Tailer::open`] that did not stop it.
///
/// The tailer logs each warning when it occurs. The caller can read them with
/// [`crate::Tailer::startup_warnings`] to count them or raise an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupWarning {
    /// The checkpoint file exists but could not be read, so every file starts at `start_at`.
    CheckpointUnreadable {
        /// The checkpoint file.
        path: PathBuf,
        /// The I/O error message.
        error: String,
    },
    /// The checkpoint file is not valid JSON of the expected shape, so every file starts at `start_at`.
    CheckpointCorrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// The parse error message.
        error: String,
    },
    /// The checkpoint file has a format version this build does not read.
    CheckpointVersionUnsupported {
        /// The checkpoint file.
        path: PathBuf,
        /// The version found in the file.
        version: u64,
    },
}
