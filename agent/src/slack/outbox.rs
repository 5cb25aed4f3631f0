//! The persistent outbox: a Slack message is written here before the lines that raised it
//! are acknowledged, and removed only after Slack accepted it, so messages survive restarts
//! and crashes.
//!
//! Each message is one file, `<sequence>-<output>-<alert id>.json`, written to a temporary
//! name, synced and renamed, and the directory is synced. Messages are sent in sequence
//! order. A message that cannot be delivered moves to `dead-letter/` with its last error.
//!
//! A delivered message's file moves to `delivered/<output>-<alert id>` and stays there for
//! [`DELIVERED_RETENTION_SECONDS`], so that the same alert is not queued again when its
//! line is read again after a crash, or when a commit is retried. Only a crash between
//! Slack's answer and that rename sends a message twice.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One message waiting for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Slack descriptor, such as `security`.
    pub descriptor: String,
    /// Id of the alert the message is about, or of the digest.
    pub alert_id: String,
    /// The webhook payload.
    pub payload: serde_json::Value,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// A message file in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Position in the send order.
    pub sequence: u64,
    /// The file.
    pub path: PathBuf,
}

/// How long a delivered message is remembered, in seconds: the longest dedup window.
pub const DELIVERED_RETENTION_SECONDS: u64 = 24 * 60 * 60;

/// The outbox directory and its dead-letter directory.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    dead_letter: PathBuf,
    delivered_dir: PathBuf,
    next_sequence: u64,
    /// `<output>-<alert id>` of every queued message, so a re-read line does not queue the
    /// same message twice.
    queued: BTreeSet<String>,
    /// `<output>-<alert id>` of messages delivered within the retention time.
    delivered: BTreeSet<String>,
}

impl Outbox {
    /// Opens (creating) `dir` and `dir/dead-letter`, and resumes the sequence after the
    /// highest queued message. Temporary files of an interrupted write are removed.
    pub fn open(dir: &Path) -> std::io::Result<Outbox> {
        let dead_letter = dir.join("dead-letter");
        std::fs::create_dir_all(&dead_letter)?;
        let delivered_dir = dir.join("delivered");
        std::fs::create_dir_all(&delivered_dir)?;
        let mut outbox = Outbox {
            dir: dir.to_path_buf(),
            dead_letter,
            delivered_dir,
            next_sequence: 0,
            queued: BTreeSet::new(),
            delivered: BTreeSet::new(),
        };
        outbox.prune_delivered(std::time::SystemTime::now())?;
        for entry in outbox.entries()? {
            outbox.next_sequence = outbox.next_sequence.max(entry.sequence + 1);
            if let Some(key) = queue_key(&entry.path) {
                outbox.queued.insert(key);
            }
        }
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.path().extension().is_some_and(|ext| ext == "tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(outbox)
    }

    /// Writes `message` durably; returns false when the same output and alert id are
    /// already queued.
    pub fn put(&mut self, message: &Message) -> std::io::Result<bool> {
        let key = format!("{}-{}", message.descriptor, message.alert_id);
        if self.queued.contains(&key) || self.delivered.contains(&key) {
            return Ok(false);
        }
        let name = format!("{:020}-{key}.json", self.next_sequence);
        let temporary = self.dir.join(format!("{name}.tmp"));
        let mut file = File::create(&temporary)?;
        file.write_all(&serde_json::to_vec(message)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, self.dir.join(&name))?;
        File::open(&self.dir)?.sync_all()?;
        self.next_sequence += 1;
        self.queued.insert(key);
        Ok(true)
    }

    /// Lists queued messages in send order.
    pub fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let sequence = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.split('-').next())
                .and_then(|digits| digits.parse::<u64>().ok());
            if let Some(sequence) = sequence {
                entries.push(Entry { sequence, path });
            }
        }
        entries.sort();
        Ok(entries)
    }

    /// Reads a queued message; a file that does not parse is moved to the dead letters.
    pub fn read(&mut self, entry: &Entry) -> std::io::Result<Option<Message>> {
        let bytes = std::fs::read(&entry.path)?;
        match serde_json::from_slice(&bytes) {
            Ok(message) => Ok(Some(message)),
            Err(error) => {
                self.dead_letter(entry, &format!("unreadable outbox file: {error}"))?;
                Ok(None)
            }
        }
    }

    /// Marks a message delivered: its file moves to `delivered/`, where it keeps the same
    /// alert from being queued again until the retention time ends.
    pub fn remove(&mut self, entry: &Entry) -> std::io::Result<()> {
        let Some(key) = queue_key(&entry.path) else {
            return std::fs::remove_file(&entry.path);
        };
        let target = self.delivered_dir.join(&key);
        std::fs::rename(&entry.path, &target)?;
        // Only the name and time matter: emptying the file keeps the records small on a
        // full disk, and its time starts the retention.
        let file = File::options().write(true).open(&target)?;
        file.set_len(0)?;
        file.set_modified(std::time::SystemTime::now())?;
        self.queued.remove(&key);
        self.delivered.insert(key);
        if self.delivered.len().is_multiple_of(256) {
            self.prune_delivered(std::time::SystemTime::now())?;
        }
        Ok(())
    }

    /// Forgets delivered messages older than the retention time, and loads the others.
    fn prune_delivered(&mut self, now: std::time::SystemTime) -> std::io::Result<()> {
        let retention = std::time::Duration::from_secs(DELIVERED_RETENTION_SECONDS);
        self.delivered.clear();
        for entry in std::fs::read_dir(&self.delivered_dir)?.flatten() {
            let expired = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .map(|modified| now.duration_since(modified).unwrap_or_default() > retention)
                .unwrap_or(true);
            if expired {
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(name) = entry.file_name().to_str() {
                self.delivered.insert(name.to_owned());
            }
        }
        Ok(())
    }

    /// Moves a message that cannot be delivered to `dead-letter/`, with its error beside it.
    pub fn dead_letter(&mut self, entry: &Entry, error: &str) -> std::io::Result<()> {
        let name = entry.path.file_name().unwrap_or_default();
        let target = self.dead_letter.join(name);
        std::fs::rename(&entry.path, &target)?;
        std::fs::write(target.with_extension("error"), format!("{error}\n"))?;
        if let Some(key) = queue_key(&entry.path) {
            self.queued.remove(&key);
        }
        Ok(())
    }

    /// Returns the number of queued messages.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// Returns the number of queued messages for `descriptor`.
    pub fn pending_for(&self, descriptor: &str) -> usize {
        self.queued
            .iter()
            .filter(|key| {
                key.rsplit_once('-')
                    .is_some_and(|(name, _)| name == descriptor)
            })
            .count()
    }

    /// Returns the number of dead letters.
    pub fn dead_letters(&self) -> usize {
        std::fs::read_dir(&self.dead_letter)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Returns the descriptor of a message file. Alert ids contain no `-`, so the descriptor is
/// everything between the sequence number and the last `-`, even when it contains `-`.
pub fn descriptor_of(path: &Path) -> Option<&str> {
    let key = path.file_stem()?.to_str()?.split_once('-')?.1;
    Some(key.rsplit_once('-')?.0)
}

/// Returns `<output>-<alert id>` from a message file name.
fn queue_key(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    stem.split_once('-').map(|(_, key)| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(alert_id: &str) -> Message {
        Message {
            descriptor: "security".into(),
            alert_id: alert_id.into(),
            payload: serde_json::json!({"text": alert_id}),
            created_at: 1,
        }
    }

    #[test]
    fn outbox_keeps_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.put(&message("a")).unwrap());
        assert!(outbox.put(&message("b")).unwrap());
        drop(outbox);
        let mut outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.put(&message("c")).unwrap());
        let entries = outbox.entries().unwrap();
        let ids: Vec<String> = entries
            .iter()
            .map(|entry| outbox.read(entry).unwrap().unwrap().alert_id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn outbox_skips_queued_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.put(&message("a")).unwrap());
        assert!(!outbox.put(&message("a")).unwrap());
        drop(outbox);
        let mut outbox = Outbox::open(dir.path()).unwrap();
        assert!(!outbox.put(&message("a")).unwrap());
        assert_eq!(outbox.len(), 1);
    }

    #[test]
    fn outbox_does_not_queue_a_delivered_message_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.put(&message("a")).unwrap());
        let entry = outbox.entries().unwrap().remove(0);
        outbox.remove(&entry).unwrap();
        assert_eq!(outbox.len(), 0);
        assert!(!outbox.put(&message("a")).unwrap(), "a retried commit");
        drop(outbox);
        let mut outbox = Outbox::open(dir.path()).unwrap();
        assert!(
            !outbox.put(&message("a")).unwrap(),
            "a line read again after a crash"
        );
        assert!(outbox.entries().unwrap().is_empty());
        assert!(outbox.put(&message("b")).unwrap());
    }

    #[test]
    fn outbox_forgets_delivered_messages_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        outbox.put(&message("a")).unwrap();
        let entry = outbox.entries().unwrap().remove(0);
        outbox.remove(&entry).unwrap();
        let later = std::time::SystemTime::now()
            + std::time::Duration::from_secs(DELIVERED_RETENTION_SECONDS + 60);
        outbox.prune_delivered(later).unwrap();
        assert!(outbox.put(&message("a")).unwrap());
        assert!(!dir.path().join("delivered/security-a").exists());
    }

    #[test]
    fn outbox_separates_descriptors_sharing_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let mut ops = message("a1");
        ops.descriptor = "sec-ops".into();
        let mut sec = message("b2");
        sec.descriptor = "sec".into();
        outbox.put(&ops).unwrap();
        outbox.put(&sec).unwrap();
        let entries = outbox.entries().unwrap();
        let found: Vec<Option<&str>> = entries
            .iter()
            .map(|entry| descriptor_of(&entry.path))
            .collect();
        assert_eq!(found, [Some("sec-ops"), Some("sec")]);
        assert_eq!(outbox.pending_for("sec"), 1);
        assert_eq!(outbox.pending_for("sec-ops"), 1);
    }

    #[test]
    fn outbox_dead_letters_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("00000000000000000007-security-x.json"),
            b"{torn",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("00000000000000000008-security-y.json.tmp"),
            b"{",
        )
        .unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let entries = outbox.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(outbox.read(&entries[0]).unwrap(), None);
        assert_eq!(outbox.dead_letters(), 1);
        assert!(
            !dir.path()
                .join("00000000000000000008-security-y.json.tmp")
                .exists()
        );
        assert!(outbox.put(&message("z")).unwrap());
        assert_eq!(outbox.entries().unwrap()[0].sequence, 8);
    }
}
