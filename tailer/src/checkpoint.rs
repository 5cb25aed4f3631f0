//! Checkpoint file: acknowledged offsets stored as versioned JSON.
//!
//! ```json
//! {"version":1,
//!  "followed":[{"path":"/var/log/osquery/osqueryd.results.log","last_seen_unix_ms":1700000000000}],
//!  "files":[{"followed_path":"/var/log/osquery/osqueryd.results.log",
//!            "path":"/var/log/osquery/osqueryd.results.log","dev":2049,"inode":1234,
//!            "fingerprint":"a1b2c3d4e5f60718","fingerprint_len":4096,"offset":81920,
//!            "state":"reading","observed_size":90112,"last_seen_unix_ms":1700000000000}]}
//! ```
//!
//! `followed` lists paths the tailer has followed. On restart, a file of such a path
//! that matches no entry in `files` is treated as new and read from offset 0.
//! A `reading` entry resumes at `offset`. A `done` entry marks a file that was read to
//! its end, so it is skipped wherever it is found. Paths are stored as lossy UTF-8.
//!
//! `observed_size` is the largest size of the file the tailer observed (the
//! decompressed length read, for an archive read to its end). It is optional:
//! `done` entries, open archives and checkpoints written before the field existed
//! lack it, and readers that predate it ignore it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::identity::{FileIdentity, Fingerprint};
use crate::siblings::parent_dir;
use crate::{StartupWarning, TailError};

/// Format version written by this build.
const VERSION: u64 = 1;

/// Progress on one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EntryState {
    /// Reading resumes at the stored offset.
    Reading,
    /// The file was read to its end; it is skipped.
    Done,
}

/// A path the tailer follows, with the time it was last polled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FollowedRecord {
    pub(crate) path: String,
    pub(crate) last_seen_unix_ms: u64,
}

/// One file in the checkpoint, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileRecord {
    followed_path: String,
    path: String,
    dev: u64,
    inode: u64,
    fingerprint: String,
    fingerprint_len: u64,
    offset: u64,
    state: EntryState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_size: Option<u64>,
    last_seen_unix_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Document {
    version: u64,
    #[serde(default)]
    followed: Vec<FollowedRecord>,
    files: Vec<FileRecord>,
}

/// Header read first, so that an unknown version is reported as such.
#[derive(Deserialize)]
struct VersionProbe {
    version: u64,
}

/// One file in the checkpoint, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The configured path, as lossy UTF-8.
    pub(crate) followed_path: String,
    pub(crate) path: PathBuf,
    pub(crate) identity: FileIdentity,
    pub(crate) offset: u64,
    pub(crate) state: EntryState,
    /// Largest size of the file the tailer observed, when known.
    pub(crate) observed_size: Option<u64>,
    pub(crate) last_seen_unix_ms: u64,
}

/// Decoded checkpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) followed: Vec<FollowedRecord>,
    pub(crate) entries: Vec<Entry>,
}

/// Returns the current time in milliseconds since the Unix epoch, 0 if the clock is before it.
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Tells whether a record last seen at `last_seen_unix_ms` is older than `expiry`.
pub(crate) fn is_expired(last_seen_unix_ms: u64, now_unix_ms: u64, expiry: Duration) -> bool {
    let expiry_ms = u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX);
    now_unix_ms.saturating_sub(last_seen_unix_ms) > expiry_ms
}

/// Loads the checkpoint at `path`. A missing file yields an empty checkpoint; an
/// unreadable or invalid one yields an empty checkpoint and a warning.
pub(crate) fn load(path: &Path) -> (Checkpoint, Option<StartupWarning>) {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return (Checkpoint::default(), None);
        }
        Err(error) => {
            let warning = StartupWarning::CheckpointUnreadable {
                path: path.to_path_buf(),
                error: error.to_string(),
            };
            return (Checkpoint::default(), Some(warning));
        }
    };
    match decode(&bytes) {
        Ok(checkpoint) => (checkpoint, None),
        Err(DecodeError::Version(version)) => {
            let warning = StartupWarning::CheckpointVersionUnsupported {
                path: path.to_path_buf(),
                version,
            };
            (Checkpoint::default(), Some(warning))
        }
        Err(DecodeError::Invalid(error)) => {
            let warning = StartupWarning::CheckpointCorrupt {
                path: path.to_path_buf(),
                error,
            };
            (Checkpoint::default(), Some(warning))
        }
    }
}

enum DecodeError {
    Version(u64),
    Invalid(String),
}

fn decode(bytes: &[u8]) -> Result<Checkpoint, DecodeError> {
    let invalid = |error: serde_json::Error| DecodeError::Invalid(error.to_string());
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(invalid)?;
    if probe.version != VERSION {
        return Err(DecodeError::Version(probe.version));
    }
    let document: Document = serde_json::from_slice(bytes).map_err(invalid)?;
    let entries = document
        .files
        .into_iter()
        .map(entry_from_record)
        .collect::<Result<_, _>>()?;
    Ok(Checkpoint {
        followed: document.followed,
        entries,
    })
}

fn entry_from_record(record: FileRecord) -> Result<Entry, DecodeError> {
    let hash = u64::from_str_radix(&record.fingerprint, 16).map_err(|_| {
        DecodeError::Invalid(format!("invalid fingerprint {:?}", record.fingerprint))
    })?;
    let identity = FileIdentity {
        dev: record.dev,
        inode: record.inode,
        fingerprint: Fingerprint {
            hash,
            len: record.fingerprint_len,
        },
    };
    Ok(Entry {
        followed_path: record.followed_path,
        path: PathBuf::from(record.path),
        identity,
        offset: record.offset,
        state: record.state,
        observed_size: record.observed_size,
        last_seen_unix_ms: record.last_seen_unix_ms,
    })
}

fn record_from_entry(entry: &Entry) -> FileRecord {
    FileRecord {
        followed_path: entry.followed_path.clone(),
        path: entry.path.to_string_lossy().into_owned(),
        dev: entry.identity.dev,
        inode: entry.identity.inode,
        fingerprint: format!("{:016x}", entry.identity.fingerprint.hash),
        fingerprint_len: entry.identity.fingerprint.len,
        offset: entry.offset,
        state: entry.state,
        observed_size: entry.observed_size,
        last_seen_unix_ms: entry.last_seen_unix_ms,
    }
}

/// Writes the checkpoint atomically: a temporary file in the same directory is written,
/// synced and renamed over `path`, then the directory is synced.
pub(crate) fn store(path: &Path, checkpoint: &Checkpoint) -> Result<(), TailError> {
    let document = Document {
        version: VERSION,
        followed: checkpoint.followed.clone(),
        files: checkpoint.entries.iter().map(record_from_entry).collect(),
    };
    let json = serde_json::to_vec(&document)?;
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp_path = path.with_file_name(temp_name);
    let failed = |at: &Path| {
        let at = at.to_path_buf();
        move |source| TailError::CheckpointWrite { path: at, source }
    };
    write_synced(&temp_path, &json).map_err(failed(&temp_path))?;
    fs::rename(&temp_path, path).map_err(failed(path))?;
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(failed(dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            followed: vec![FollowedRecord {
                path: "/var/log/r.log".into(),
                last_seen_unix_ms: 5,
            }],
            entries: vec![Entry {
                followed_path: "/var/log/r.log".into(),
                path: PathBuf::from("/var/log/r.log"),
                identity: FileIdentity {
                    dev: 1,
                    inode: 2,
                    fingerprint: Fingerprint {
                        hash: 0xdead_beef,
                        len: 17,
                    },
                },
                offset: 99,
                state: EntryState::Reading,
                observed_size: Some(120),
                last_seen_unix_ms: 5,
            }],
        }
    }

    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        store(&path, &sample()).unwrap();
        let (loaded, warning) = load(&path);
        assert_eq!(warning, None);
        assert_eq!(loaded, sample());
        assert!(!dir.path().join("checkpoint.json.tmp").exists());
    }

    #[test]
    fn checkpoint_rejects_unknown_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        fs::write(&path, br#"{"version":7,"files":[]}"#).unwrap();
        let (loaded, warning) = load(&path);
        assert_eq!(loaded, Checkpoint::default());
        assert!(matches!(
            warning,
            Some(StartupWarning::CheckpointVersionUnsupported { version: 7, .. })
        ));
    }

    #[test]
    fn checkpoint_without_observed_size_loads() {
        let json = br#"{"version":1,"files":[{"followed_path":"a","path":"a","dev":1,"inode":2,
            "fingerprint":"00000000deadbeef","fingerprint_len":17,"offset":99,"state":"reading",
            "last_seen_unix_ms":5}]}"#;
        let Ok(checkpoint) = decode(json) else {
            panic!("a checkpoint without observed_size failed to decode");
        };
        assert_eq!(checkpoint.entries.len(), 1);
        assert_eq!(checkpoint.entries[0].observed_size, None);
        assert_eq!(checkpoint.entries[0].offset, 99);
    }

    #[test]
    fn unknown_observed_size_is_not_written() {
        let mut entry = sample().entries[0].clone();
        entry.observed_size = None;
        let json = serde_json::to_string(&record_from_entry(&entry)).unwrap();
        assert!(!json.contains("observed_size"), "{json}");
    }

    #[test]
    fn checkpoint_rejects_bad_fingerprint() {
        let json = br#"{"version":1,"files":[{"followed_path":"a","path":"a","dev":1,"inode":2,
            "fingerprint":"xyz","fingerprint_len":1,"offset":0,"state":"done","last_seen_unix_ms":0}]}"#;
        assert!(matches!(decode(json), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn expiry_compares_age() {
        let day = Duration::from_secs(86_400);
        assert!(is_expired(0, 86_400_001, day));
        assert!(!is_expired(1, 86_400_001, day));
        assert!(!is_expired(10, 5, day));
    }
}
