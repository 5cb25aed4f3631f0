//! Tailer configuration.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::TailError;

/// Start position in a file that has no checkpoint entry when the tailer opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Read the live file from offset 0.
    Beginning,
    /// Skip what the live file already contains. Reading starts after its last `\n`,
    /// so a line that is still being written is delivered once it completes.
    End,
}

/// Settings of a [`crate::Tailer`]. Build one with [`TailerConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct TailerConfig {
    /// Files to follow, for example `/var/log/osquery/osqueryd.results.log`.
    pub paths: Vec<PathBuf>,
    /// Start position for a configured path that the checkpoint has never seen.
    pub start_at: StartAt,
    /// Maximum line length in bytes without the `\n`. Longer lines are skipped and reported.
    pub max_line_bytes: usize,
    /// Emitted but unacknowledged bytes at which `poll` stops reading (backpressure).
    pub max_unacked_bytes: usize,
    /// Size of one `read` call in bytes.
    pub read_chunk_bytes: usize,
    /// Maximum bytes read by one `poll` call over all files.
    pub max_poll_bytes: usize,
    /// JSON file that stores acknowledged offsets; its directory must exist.
    pub checkpoint_path: PathBuf,
    /// Checkpoint entries of files not seen for this long are dropped.
    pub checkpoint_expiry: Duration,
    /// Maximum decompressed bytes read from one `.N.zst` archive, including skipped bytes.
    pub max_decompressed_bytes: u64,
    /// Time a renamed or deleted file stays open after its path moved on, to catch a
    /// write that was in flight during the rotation.
    pub rotate_grace: Duration,
    /// Whether to split a line that starts with the fragment of a failed write
    /// (see [`crate::ProblemKind::GluedFragment`]). Costs one JSON validation per line ending in `}`,
    /// so a consumer that parses every line anyway switches it off and calls
    /// [`crate::split_glued`] only for the lines it fails to parse.
    pub recover_glued_records: bool,
}

impl TailerConfig {
    /// Default maximum line length: 16 MiB.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

    /// Creates a configuration with default limits.
    pub fn new(paths: Vec<PathBuf>, checkpoint_path: PathBuf) -> Self {
        Self {
            paths,
            start_at: StartAt::End,
            max_line_bytes: Self::DEFAULT_MAX_LINE_BYTES,
            max_unacked_bytes: 64 << 20,
            read_chunk_bytes: 256 << 10,
            max_poll_bytes: 8 << 20,
            checkpoint_path,
            checkpoint_expiry: Duration::from_secs(7 * 24 * 3600),
            max_decompressed_bytes: 4 << 30,
            rotate_grace: Duration::from_secs(2),
            recover_glued_records: true,
        }
    }

    /// Checks that limits are non-zero and that no path is configured twice.
    pub(crate) fn validate(&self) -> Result<(), TailError> {
        let invalid = |message: &str| Err(TailError::InvalidConfig(message.to_owned()));
        if self.paths.is_empty() {
            return invalid("paths is empty; configure at least one file to follow");
        }
        let mut seen = HashSet::new();
        for path in &self.paths {
            if path.file_name().is_none() {
                return invalid(&format!("path {} does not name a file", path.display()));
            }
            if !seen.insert(path) {
                return invalid(&format!("path {} is configured twice", path.display()));
            }
        }
        if self.max_line_bytes == 0 || self.read_chunk_bytes == 0 || self.max_poll_bytes == 0 {
            return invalid(
                "max_line_bytes, read_chunk_bytes and max_poll_bytes must be at least 1",
            );
        }
        if self.max_unacked_bytes == 0 || self.max_decompressed_bytes == 0 {
            return invalid("max_unacked_bytes and max_decompressed_bytes must be at least 1");
        }
        Ok(())
    }
}
