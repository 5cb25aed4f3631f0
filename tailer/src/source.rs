//! Byte sources: plain files read by offset and `.zst` archives read as a stream.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;

/// Decoder of a `.zst` archive.
type ZstdDecoder = zstd::stream::read::Decoder<'static, BufReader<File>>;

/// Failure of [`Source::read_at`].
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The underlying read or decoding failed.
    Io(io::Error),
    /// Reading on would pass the decompression limit of an archive.
    LimitReached,
}

impl From<io::Error> for ReadError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// Byte source of one stream.
pub(crate) enum Source {
    /// A plain file; reads use `pread`, so no seek position is kept.
    Plain(File),
    /// A zstd archive decoded in order from offset 0.
    Zstd(ZstdSource),
}

/// Streaming decoder state of an archive.
pub(crate) struct ZstdSource {
    decoder: ZstdDecoder,
    position: u64,
    limit: u64,
}

impl Source {
    /// Opens a zstd archive whose decoding stops at `limit` decompressed bytes.
    pub(crate) fn zstd(file: File, limit: u64) -> io::Result<Self> {
        Ok(Self::Zstd(ZstdSource {
            decoder: ZstdDecoder::new(file)?,
            position: 0,
            limit,
        }))
    }

    /// Returns the plain file, or `None` for an archive.
    pub(crate) fn plain_file(&self) -> Option<&File> {
        match self {
            Source::Plain(file) => Some(file),
            Source::Zstd(_) => None,
        }
    }

    /// Reads bytes at `offset` into `buf` and returns how many; 0 means end of data.
    ///
    /// An archive can only move forward: an `offset` past the decoded position is reached
    /// by decoding and discarding, and an `offset` before it is an error.
    pub(crate) fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<usize, ReadError> {
        match self {
            Source::Plain(file) => loop {
                match file.read_at(buf, offset) {
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    result => return Ok(result?),
                }
            },
            Source::Zstd(archive) => archive.read_at(buf, offset),
        }
    }
}

impl ZstdSource {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<usize, ReadError> {
        if offset < self.position {
            let message = format!(
                "archive offset {offset} is before the decoded position {}",
                self.position
            );
            return Err(ReadError::Io(io::Error::other(message)));
        }
        while self.position < offset {
            let requested = usize::try_from(offset - self.position).unwrap_or(usize::MAX);
            let len = requested.min(buf.len());
            if self.read_bounded(&mut buf[..len])? == 0 {
                return Ok(0);
            }
        }
        self.read_bounded(buf)
    }

    /// Decodes at most `buf.len()` bytes without passing the limit.
    fn read_bounded(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        let room = self.limit.saturating_sub(self.position);
        if room == 0 {
            // Decode one more byte to tell an archive that ends exactly at the limit
            // from one that is longer.
            let mut probe = [0u8; 1];
            return match read_retrying(&mut self.decoder, &mut probe)? {
                0 => Ok(0),
                _ => Err(ReadError::LimitReached),
            };
        }
        let len = usize::try_from(room).unwrap_or(usize::MAX).min(buf.len());
        let n = read_retrying(&mut self.decoder, &mut buf[..len])?;
        self.position += n as u64;
        Ok(n)
    }
}

/// Calls `read` again when it is interrupted by a signal.
fn read_retrying(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn archive(content: &[u8]) -> File {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&zstd::encode_all(content, 3).unwrap())
            .unwrap();
        file.reopen().unwrap()
    }

    #[test]
    fn zstd_source_skips_to_offset() {
        let mut source = Source::zstd(archive(b"0123456789"), 100).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(source.read_at(&mut buf, 6).unwrap(), 4);
        assert_eq!(&buf, b"6789");
        assert_eq!(source.read_at(&mut buf, 10).unwrap(), 0);
    }

    #[test]
    fn zstd_source_stops_at_limit() {
        let mut source = Source::zstd(archive(b"0123456789"), 5).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(source.read_at(&mut buf, 0).unwrap(), 5);
        assert!(matches!(
            source.read_at(&mut buf, 5),
            Err(ReadError::LimitReached)
        ));
    }

    #[test]
    fn zstd_source_accepts_archive_at_limit() {
        let mut source = Source::zstd(archive(b"01234"), 5).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(source.read_at(&mut buf, 0).unwrap(), 5);
        assert_eq!(source.read_at(&mut buf, 5).unwrap(), 0);
    }
}
