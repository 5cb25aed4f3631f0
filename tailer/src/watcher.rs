//! Wakeups from inotify when a followed file or one of its rotated files changes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::TailError;
use crate::siblings::parent_dir;

/// Watches the directories of the followed paths and calls a callback on changes.
///
/// The callback runs on the watcher's thread; it should only signal the thread that
/// polls the [`crate::Tailer`], for example with `tokio::sync::Notify::notify_one`.
/// Events of the same burst are not merged, so a cheap, idempotent callback is expected.
/// The watcher stops when dropped.
pub struct Watcher {
    _inner: RecommendedWatcher,
    dirs: Vec<PathBuf>,
}

impl Watcher {
    /// Starts watching the parent directories of `paths`.
    ///
    /// The callback runs for every create, write, close-after-write, rename and delete
    /// of a file whose name starts with the name of a followed file, such as `NAME.1`
    /// or `NAME.2.zst`. It also runs for every watcher error and for events without a
    /// path, such as a queue overflow. A directory that cannot be watched is logged and
    /// skipped (see [`Watcher::watched_dirs`]).
    ///
    /// NOTE: a directory created after this call is not watched; its files are only
    /// read by the caller's timer-driven polls.
    pub fn new<F>(paths: &[PathBuf], on_change: F) -> Result<Watcher, TailError>
    where
        F: Fn() + Send + 'static,
    {
        let names: Vec<OsString> = paths
            .iter()
            .filter_map(|path| path.file_name())
            .map(|name| name.to_os_string())
            .collect();
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event) if is_relevant(&event, &names) => on_change(),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "The file watcher reported an error; polling anyway.");
                on_change();
            }
        };
        let mut inner = notify::recommended_watcher(handler)?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for path in paths {
            let dir = parent_dir(path).to_path_buf();
            if dirs.contains(&dir) {
                continue;
            }
            match inner.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => dirs.push(dir),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "Failed to watch a directory; its files are only polled on the timer.");
                }
            }
        }
        Ok(Watcher {
            _inner: inner,
            dirs,
        })
    }

    /// Returns the directories being watched.
    pub fn watched_dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// Tells whether an event may change what a poll reads. Opens and reads are ignored,
/// because the tailer's own opens and reads would otherwise wake it again.
fn is_relevant(event: &notify::Event, names: &[OsString]) -> bool {
    if matches!(
        event.kind,
        EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
    ) {
        return false;
    }
    event.paths.is_empty()
        || event
            .paths
            .iter()
            .any(|path| concerns_followed(path, names))
}

fn concerns_followed(path: &Path, names: &[OsString]) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    let name = name.as_encoded_bytes();
    names
        .iter()
        .any(|followed| name.starts_with(followed.as_encoded_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessMode, CreateKind, ModifyKind};

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn relevant_events_match_followed_names() {
        let names = vec![OsString::from("r.log")];
        let create = EventKind::Create(CreateKind::File);
        let write = EventKind::Modify(ModifyKind::Any);
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(is_relevant(&event(write, "/d/r.log"), &names));
        assert!(is_relevant(&event(create, "/d/r.log.2.zst"), &names));
        assert!(is_relevant(&event(closed, "/d/r.log"), &names));
        assert!(!is_relevant(&event(open, "/d/r.log"), &names));
        assert!(!is_relevant(&event(write, "/d/other.log"), &names));
        assert!(is_relevant(&notify::Event::new(EventKind::Any), &names));
    }
}
