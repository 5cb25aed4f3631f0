//! Splits a byte stream into `\n`-terminated lines, holding a partial last line.

use std::mem;

/// Output of the assembler for one line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RawLine {
    /// A line with its bytes (without `\n`); `end` is the offset after the `\n`.
    Complete {
        start: u64,
        end: u64,
        bytes: Vec<u8>,
    },
    /// A line longer than the limit; its bytes were dropped.
    TooLong { start: u64, end: u64, len: u64 },
    /// Bytes after the last `\n` at the end of a file that will not grow.
    Unterminated {
        start: u64,
        end: u64,
        bytes: Vec<u8>,
    },
}

/// Line splitter for one file.
///
/// Invariant: `line_start + held` is the offset of the next byte to feed, where `held`
/// is `buffer.len()`, or `skipped` while a too long line is being skipped.
#[derive(Debug)]
pub(crate) struct LineAssembler {
    max_line_bytes: usize,
    line_start: u64,
    buffer: Vec<u8>,
    skipping: bool,
    skipped: u64,
}

impl LineAssembler {
    /// Creates an assembler whose next byte is at `offset`, which must be a line start.
    pub(crate) fn new(offset: u64, max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            line_start: offset,
            buffer: Vec::new(),
            skipping: false,
            skipped: 0,
        }
    }

    /// Creates an assembler whose next byte at `offset` lies inside a line that is too long.
    /// The rest of that line is skipped up to its `\n` and reported as too long.
    pub(crate) fn new_skipping(offset: u64, max_line_bytes: usize) -> Self {
        Self {
            skipping: true,
            ..Self::new(offset, max_line_bytes)
        }
    }

    /// Returns the offset of the first byte not yet emitted in a line.
    pub(crate) fn line_start(&self) -> u64 {
        self.line_start
    }

    /// Returns the number of bytes fed after the last emitted line.
    pub(crate) fn held_bytes(&self) -> u64 {
        if self.skipping {
            self.skipped
        } else {
            self.buffer.len() as u64
        }
    }

    /// Splits `data`, which continues the stream at `line_start + held_bytes()`.
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut Vec<RawLine>) {
        while let Some(newline) = memchr::memchr(b'\n', data) {
            self.push_piece(&data[..newline]);
            out.push(self.take_line(1));
            data = &data[newline + 1..];
        }
        self.push_piece(data);
    }

    /// Emits the held bytes, if any, because the file ended without a final `\n`.
    pub(crate) fn finish(&mut self) -> Option<RawLine> {
        if self.held_bytes() == 0 {
            return None;
        }
        let line = self.take_line(0);
        Some(match line {
            RawLine::Complete { start, end, bytes } => RawLine::Unterminated { start, end, bytes },
            other => other,
        })
    }

    /// Adds bytes of the current line, switching to skipping once the line is too long.
    fn push_piece(&mut self, piece: &[u8]) {
        if self.skipping {
            self.skipped += piece.len() as u64;
        } else if self.buffer.len() + piece.len() > self.max_line_bytes {
            self.skipping = true;
            self.skipped = (self.buffer.len() + piece.len()) as u64;
            self.buffer = Vec::new();
        } else {
            self.buffer.extend_from_slice(piece);
        }
    }

    /// Closes the current line; `terminator` is 1 when a `\n` follows it.
    fn take_line(&mut self, terminator: u64) -> RawLine {
        let start = self.line_start;
        let line = if self.skipping {
            self.skipping = false;
            let len = mem::take(&mut self.skipped);
            RawLine::TooLong {
                start,
                end: start + len + terminator,
                len,
            }
        } else {
            let bytes = mem::take(&mut self.buffer);
            RawLine::Complete {
                start,
                end: start + bytes.len() as u64 + terminator,
                bytes,
            }
        };
        self.line_start = match &line {
            RawLine::Complete { end, .. }
            | RawLine::TooLong { end, .. }
            | RawLine::Unterminated { end, .. } => *end,
        };
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(start: u64, end: u64, bytes: &[u8]) -> RawLine {
        RawLine::Complete {
            start,
            end,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn assembler_joins_chunks() {
        let mut assembler = LineAssembler::new(10, 100);
        let mut out = Vec::new();
        assembler.feed(b"ab", &mut out);
        assert!(out.is_empty());
        assembler.feed(b"c\nde\n\nf", &mut out);
        assert_eq!(
            out,
            vec![
                complete(10, 14, b"abc"),
                complete(14, 17, b"de"),
                complete(17, 18, b"")
            ]
        );
        assert_eq!(assembler.line_start(), 18);
        assert_eq!(assembler.held_bytes(), 1);
    }

    #[test]
    fn assembler_skips_long_line() {
        let mut assembler = LineAssembler::new(0, 4);
        let mut out = Vec::new();
        assembler.feed(b"abc", &mut out);
        assembler.feed(b"defg", &mut out);
        assembler.feed(b"hi\nok\n", &mut out);
        let expected = vec![
            RawLine::TooLong {
                start: 0,
                end: 10,
                len: 9,
            },
            complete(10, 13, b"ok"),
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn assembler_accepts_line_at_limit() {
        let mut assembler = LineAssembler::new(0, 4);
        let mut out = Vec::new();
        assembler.feed(b"abcd\n", &mut out);
        assert_eq!(out, vec![complete(0, 5, b"abcd")]);
    }

    #[test]
    fn assembler_finish_returns_partial() {
        let mut assembler = LineAssembler::new(0, 10);
        let mut out = Vec::new();
        assembler.feed(b"a\nbc", &mut out);
        let expected = RawLine::Unterminated {
            start: 2,
            end: 4,
            bytes: b"bc".to_vec(),
        };
        assert_eq!(assembler.finish(), Some(expected));
        assert_eq!(assembler.finish(), None);
    }
}
