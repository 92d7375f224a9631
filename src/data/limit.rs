//! A guard that keeps one overlong line from growing the reader's buffer
//! without bound: a binary file with no newline in gigabytes would
//! otherwise be held in memory whole before the first row fails.

use std::io::{self, Read};

/// Longest line a flow file may have, in bytes; real rows are under 300.
pub(crate) const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Passes bytes through, failing with `InvalidData` once a line exceeds the limit.
pub(crate) struct LineLimit<R> {
    inner: R,
    /// Bytes since the last newline.
    line_bytes: usize,
    /// Newlines seen so far, to name the line in the error.
    newlines: u64,
}

impl<R: Read> LineLimit<R> {
    pub(crate) fn new(inner: R) -> LineLimit<R> {
        LineLimit {
            inner,
            line_bytes: 0,
            newlines: 0,
        }
    }
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        let chunk = &buf[..read];
        match chunk.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.newlines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                self.line_bytes = read - last - 1;
            }
            None => self.line_bytes += read,
        }
        if self.line_bytes > MAX_LINE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "line {} is longer than {MAX_LINE_BYTES} bytes; not a flow file",
                    self.newlines + 1
                ),
            ));
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_short_lines_and_stops_a_long_one() {
        let mut text = b"a,b\n1,2\n".to_vec();
        let mut out = Vec::new();
        LineLimit::new(&text[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, text);

        text.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 1));
        let err = LineLimit::new(&text[..])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().starts_with("line 3 is longer"), "{err}");
    }
}
