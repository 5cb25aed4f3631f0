//! Discovery of rotated files next to a followed path.
//!
//! For a followed path `DIR/NAME`, rotated files are `DIR/NAME.N` (plain) and
//! `DIR/NAME.N.zst` (zstd) with `N >= 1`; a larger `N` is older. osqueryd 5.x with
//! `--logger_rotate` produces `.1` and `.N.zst`; logrotate without compression produces `.N`.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::identity::{FileIdentity, Fingerprint, read_prefix_at, read_prefix_from};

/// A file that may hold lines of a followed path, opened and with its first bytes read.
pub(crate) struct Candidate {
    /// 0 for the followed path itself, otherwise the rotation number `N`.
    pub(crate) index: u32,
    pub(crate) path: PathBuf,
    pub(crate) compressed: bool,
    pub(crate) file: File,
    pub(crate) dev: u64,
    pub(crate) inode: u64,
    /// Size of the file on disk (compressed size for archives).
    pub(crate) size: u64,
    /// Up to [`crate::FINGERPRINT_BYTES`] first bytes of the uncompressed content.
    pub(crate) prefix: Vec<u8>,
}

impl Candidate {
    /// Returns the identity of the file, with a fingerprint over its whole prefix.
    pub(crate) fn identity(&self) -> FileIdentity {
        FileIdentity {
            dev: self.dev,
            inode: self.inode,
            fingerprint: Fingerprint::of(&self.prefix),
        }
    }

    /// Tells whether this file is the one `known` describes. A non-empty fingerprint
    /// must match the first bytes. An empty fingerprint means the file was empty when
    /// seen, so device and inode decide, and only a plain file can match them.
    pub(crate) fn is(&self, known: &FileIdentity) -> bool {
        if known.fingerprint.len > 0 {
            return known.fingerprint.matches_prefix(&self.prefix);
        }
        !self.compressed && known.dev == self.dev && known.inode == self.inode
    }

    /// Tells whether this plain file has the device and inode of `known`.
    pub(crate) fn has_inode_of(&self, known: &FileIdentity) -> bool {
        !self.compressed && known.dev == self.dev && known.inode == self.inode
    }
}

/// Name, device, inode, size and modification time of one rotated file. Two equal
/// lists of stamps mean that no rotated file appeared, vanished or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    path: PathBuf,
    dev: u64,
    inode: u64,
    size: u64,
    mtime: (i64, i64),
}

/// Returns the stamps of the rotated files of `followed` without opening them.
pub(crate) fn rotated_stamps(followed: &Path) -> io::Result<Vec<FileStamp>> {
    let mut stamps = Vec::new();
    for name in list_rotated(followed)? {
        match fs::metadata(&name.path) {
            Ok(metadata) => stamps.push(FileStamp {
                dev: metadata.dev(),
                inode: metadata.ino(),
                size: metadata.len(),
                mtime: (metadata.mtime(), metadata.mtime_nsec()),
                path: name.path,
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(stamps)
}

/// Rotated file name found in a directory listing.
struct RotatedName {
    index: u32,
    path: PathBuf,
    compressed: bool,
}

/// Opens the rotated files of `followed`, oldest (largest `N`) first.
///
/// Files that vanish between listing and opening are left out, and so is an archive
/// whose content starts like a plain rotated file: it is a copy, typically `.2.zst`
/// while it is being compressed from `.1`. Other failures are returned with the path
/// so that the caller can report them and go on.
pub(crate) fn open_rotated(followed: &Path) -> (Vec<Candidate>, Vec<(PathBuf, io::Error)>) {
    let mut candidates = Vec::new();
    let mut failures = Vec::new();
    let names = match list_rotated(followed) {
        Ok(names) => names,
        Err(error) => {
            failures.push((parent_dir(followed).to_path_buf(), error));
            return (candidates, failures);
        }
    };
    for name in names {
        match open_candidate(name.index, &name.path, name.compressed) {
            Ok(candidate) => candidates.push(candidate),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => failures.push((name.path, error)),
        }
    }
    (drop_compressed_copies(candidates), failures)
}

/// Removes archives whose content starts like one of the plain files.
fn drop_compressed_copies(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let plain_prefixes: Vec<Vec<u8>> = candidates
        .iter()
        .filter(|candidate| !candidate.compressed)
        .map(|candidate| candidate.prefix.clone())
        .collect();
    candidates
        .into_iter()
        .filter(|candidate| {
            let copy_of = |plain: &Vec<u8>| {
                !candidate.prefix.is_empty() && plain.starts_with(&candidate.prefix)
            };
            !candidate.compressed || !plain_prefixes.iter().any(copy_of)
        })
        .collect()
}

/// Opens one file and reads its first bytes, decompressing when `compressed` is set.
pub(crate) fn open_candidate(index: u32, path: &Path, compressed: bool) -> io::Result<Candidate> {
    let file = File::open(path)?;
    let metadata = file.metadata()?;
    let prefix = if compressed {
        let reader = PositionalReader {
            file: &file,
            offset: 0,
        };
        read_prefix_from(zstd::stream::read::Decoder::new(reader)?)?
    } else {
        read_prefix_at(&file)?
    };
    Ok(Candidate {
        index,
        path: path.to_path_buf(),
        compressed,
        file,
        dev: metadata.dev(),
        inode: metadata.ino(),
        size: metadata.len(),
        prefix,
    })
}

/// Returns the directory that contains `path`, `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn list_rotated(followed: &Path) -> io::Result<Vec<RotatedName>> {
    let Some(base) = followed.file_name() else {
        return Ok(Vec::new());
    };
    let dir = parent_dir(followed);
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some((index, compressed)) = rotation_suffix(base, &entry.file_name()) {
            names.push(RotatedName {
                index,
                path: dir.join(entry.file_name()),
                compressed,
            });
        }
    }
    names.sort_by(|a, b| b.index.cmp(&a.index).then(a.compressed.cmp(&b.compressed)));
    Ok(names)
}

/// Parses `NAME.N` or `NAME.N.zst` into `(N, compressed)`.
fn rotation_suffix(base: &OsStr, name: &OsStr) -> Option<(u32, bool)> {
    let rest = name.as_bytes().strip_prefix(base.as_bytes())?;
    let rest = rest.strip_prefix(b".")?;
    let (digits, compressed) = match rest.strip_suffix(b".zst") {
        Some(digits) => (digits, true),
        None => (rest, false),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let index: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (index >= 1).then_some((index, compressed))
}

/// Reader over a file that uses `pread`, so it leaves the shared file offset alone.
pub(crate) struct PositionalReader<'a> {
    pub(crate) file: &'a File,
    pub(crate) offset: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_suffix_parses_names() {
        let base = OsStr::new("results.log");
        let parse = |name: &str| rotation_suffix(base, OsStr::new(name));
        assert_eq!(parse("results.log.1"), Some((1, false)));
        assert_eq!(parse("results.log.12.zst"), Some((12, true)));
        assert_eq!(parse("results.log"), None);
        assert_eq!(parse("results.log.0"), None);
        assert_eq!(parse("results.log.zst"), None);
        assert_eq!(parse("results.log.1.gz"), None);
        assert_eq!(parse("results.logx.1"), None);
    }

    #[test]
    fn open_rotated_orders_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("r.log");
        fs::write(dir.path().join("r.log.1"), b"one\n").unwrap();
        let archive = zstd::encode_all(&b"two\n"[..], 3).unwrap();
        fs::write(dir.path().join("r.log.2.zst"), archive).unwrap();
        fs::write(dir.path().join("other.1"), b"x").unwrap();
        let (candidates, failures) = open_rotated(&live);
        assert!(failures.is_empty());
        let found: Vec<(u32, &[u8])> = candidates
            .iter()
            .map(|candidate| (candidate.index, candidate.prefix.as_slice()))
            .collect();
        assert_eq!(found, vec![(2, &b"two\n"[..]), (1, &b"one\n"[..])]);
    }

    #[test]
    fn open_rotated_drops_archive_copy() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("r.log");
        fs::write(dir.path().join("r.log.1"), b"one\ntwo\n").unwrap();
        let partial = zstd::encode_all(&b"one\n"[..], 3).unwrap();
        fs::write(dir.path().join("r.log.2.zst"), partial).unwrap();
        let (candidates, failures) = open_rotated(&live);
        assert!(failures.is_empty());
        let indexes: Vec<u32> = candidates.iter().map(|candidate| candidate.index).collect();
        assert_eq!(indexes, vec![1]);
    }
}
