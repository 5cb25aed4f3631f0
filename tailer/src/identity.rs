//! File identity: device, inode and a fingerprint of the first bytes.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Number of leading bytes that a complete fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 4096;

/// FNV-1a 64-bit hash of the first `len` bytes of a file.
///
/// The value is stable across runs, builds and platforms, so it can be stored in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The hash value.
    pub hash: u64,
    /// Number of bytes hashed, at most [`FINGERPRINT_BYTES`]; shorter while the file is shorter.
    pub len: u64,
}

impl Fingerprint {
    /// Computes the fingerprint of `prefix`, which must hold at most [`FINGERPRINT_BYTES`] bytes.
    pub fn of(prefix: &[u8]) -> Self {
        Self {
            hash: fnv1a64(prefix),
            len: prefix.len() as u64,
        }
    }

    /// Tells whether `prefix` (the first bytes of a candidate file) starts with the bytes
    /// this fingerprint was computed from.
    pub fn matches_prefix(&self, prefix: &[u8]) -> bool {
        match usize::try_from(self.len) {
            Ok(len) if len <= prefix.len() => fnv1a64(&prefix[..len]) == self.hash,
            _ => false,
        }
    }

    /// Tells whether the fingerprint covers all [`FINGERPRINT_BYTES`] bytes and will not grow.
    pub fn is_complete(&self) -> bool {
        self.len >= FINGERPRINT_BYTES as u64
    }

    /// Extends the fingerprint over the bytes that follow the ones it covers, up to
    /// [`FINGERPRINT_BYTES`] in all; bytes past that limit are ignored.
    pub(crate) fn extend(&mut self, next: &[u8]) {
        let room = (FINGERPRINT_BYTES as u64).saturating_sub(self.len);
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(next.len());
        self.hash = fnv1a64_continue(self.hash, &next[..take]);
        self.len += take as u64;
    }
}

/// Identity of a file: where it is stored and what it starts with.
///
/// A rename keeps `dev` and `inode`. Compression into a `.zst` archive changes them but
/// keeps the fingerprint, which is computed over the uncompressed content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number from `stat`.
    pub dev: u64,
    /// Inode number from `stat`.
    pub inode: u64,
    /// Fingerprint of the first bytes.
    pub fingerprint: Fingerprint,
}

/// Hashes bytes with 64-bit FNV-1a.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    fnv1a64_continue(OFFSET_BASIS, bytes)
}

/// Continues a 64-bit FNV-1a hash whose state after the earlier bytes is `hash`.
fn fnv1a64_continue(hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(hash, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Reads up to [`FINGERPRINT_BYTES`] bytes from offset 0 of a plain file.
pub(crate) fn read_prefix_at(file: &File) -> io::Result<Vec<u8>> {
    let mut prefix = vec![0; FINGERPRINT_BYTES];
    let mut filled = 0;
    while filled < prefix.len() {
        match file.read_at(&mut prefix[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    prefix.truncate(filled);
    Ok(prefix)
}

/// Reads up to [`FINGERPRINT_BYTES`] bytes from a sequential reader.
pub(crate) fn read_prefix_from(reader: impl Read) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(FINGERPRINT_BYTES);
    reader
        .take(FINGERPRINT_BYTES as u64)
        .read_to_end(&mut prefix)?;
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fingerprint_matches_longer_prefix() {
        let fingerprint = Fingerprint::of(b"abc");
        assert!(fingerprint.matches_prefix(b"abcdef"));
        assert!(!fingerprint.matches_prefix(b"abd"));
        assert!(!fingerprint.matches_prefix(b"ab"));
    }

    #[test]
    fn extended_fingerprint_equals_whole_prefix() {
        let mut fingerprint = Fingerprint::of(b"abc");
        fingerprint.extend(b"def");
        assert_eq!(fingerprint, Fingerprint::of(b"abcdef"));
    }

    #[test]
    fn extend_stops_at_fingerprint_bytes() {
        let bytes = vec![b'x'; FINGERPRINT_BYTES + 10];
        let mut fingerprint = Fingerprint::of(&bytes[..FINGERPRINT_BYTES - 2]);
        fingerprint.extend(&bytes[FINGERPRINT_BYTES - 2..]);
        assert_eq!(fingerprint, Fingerprint::of(&bytes[..FINGERPRINT_BYTES]));
    }

    #[test]
    fn empty_fingerprint_matches_anything() {
        assert!(Fingerprint::of(b"").matches_prefix(b"xyz"));
    }
}
