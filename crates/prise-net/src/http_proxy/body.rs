//! Message bodies as the proxy relays them: how each one ends (RFC 9112
//! §6), and a scanner that finds the end of a chunked body while its bytes
//! pass through unchanged. Pure functions over bytes, no I/O.

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD responses, 1xx, 204, 304, requests without one).
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// A chunked body that breaks the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk-size line is not hexadecimal, or overflows.
    #[error("bad chunk size")]
    BadSize,
    /// Chunk data is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    /// A chunk-size or trailer line is over [`MAX_CHUNK_LINE`] bytes.
    #[error("chunk line over {MAX_CHUNK_LINE} bytes")]
    LineTooLong,
}

/// Longest chunk-size line (with extensions) or trailer line.
pub const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a size line: the value so far, hex digits seen, in extensions.
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

/// Finds where a chunked body ends, byte by byte, without changing it.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    line: usize,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: 0,
                ext: false,
            },
            line: 0,
        }
    }
}

impl ChunkedScanner {
    /// Has the last chunk and its trailers been seen?
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    fn line_byte(&mut self) -> Result<(), ChunkError> {
        self.line += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err(ChunkError::LineTooLong);
        }
        Ok(())
    }

    /// Scans `src`, the next bytes of the body, and returns how many of
    /// them belong to it: all of them, or fewer when the body ends inside.
    ///
    /// # Errors
    /// The bytes break the chunked grammar.
    pub fn scan(&mut self, src: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < src.len() {
            let b = src[i];
            self.state = match self.state {
                State::Done => return Ok(i),
                State::Data(left) => {
                    let take =
                        usize::try_from(left).map_or(src.len() - i, |l| l.min(src.len() - i));
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                State::Size { value, digits, ext } => {
                    self.line_byte()?;
                    match b {
                        b'\r' if digits > 0 => State::SizeLf { value },
                        _ if ext => State::Size { value, digits, ext },
                        b';' | b' ' | b'\t' if digits > 0 => State::Size {
                            value,
                            digits,
                            ext: true,
                        },
                        _ => {
                            let d = char::from(b).to_digit(16).ok_or(ChunkError::BadSize)?;
                            if digits >= 15 {
                                return Err(ChunkError::BadSize);
                            }
                            State::Size {
                                value: value * 16 + u64::from(d),
                                digits: digits + 1,
                                ext,
                            }
                        }
                    }
                }
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(ChunkError::BadSize);
                    }
                    self.line = 0;
                    if value == 0 {
                        State::TrailerStart
                    } else {
                        State::Data(value)
                    }
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                    ext: false,
                },
                State::DataCr | State::DataLf => return Err(ChunkError::MissingCrlf),
                State::TrailerStart if b == b'\r' => State::EndLf,
                State::TrailerStart | State::TrailerLine => {
                    self.line_byte()?;
                    if b == b'\n' {
                        self.line = 0;
                        State::TrailerStart
                    } else {
                        State::TrailerLine
                    }
                }
                State::EndLf if b == b'\n' => State::Done,
                State::EndLf => return Err(ChunkError::MissingCrlf),
            };
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_a_chunked_body() {
        let body = b"4\r\nWiki\r\n5;name=x\r\npedia\r\n0\r\nExpires: never\r\n\r\nNEXT";
        let mut s = ChunkedScanner::default();
        assert_eq!(s.scan(body).unwrap(), body.len() - 4);
        assert!(s.done());
        // The same body one byte at a time.
        let mut s = ChunkedScanner::default();
        let mut used = 0;
        for b in body.iter().take(body.len() - 4) {
            used += s.scan(std::slice::from_ref(b)).unwrap();
        }
        assert!(s.done());
        assert_eq!(used, body.len() - 4);
        assert_eq!(s.scan(b"NEXT").unwrap(), 0);
    }

    #[test]
    fn an_empty_body_is_one_zero_chunk() {
        let mut s = ChunkedScanner::default();
        assert_eq!(s.scan(b"0\r\n\r\n").unwrap(), 5);
        assert!(s.done());
    }

    #[test]
    fn broken_bodies_are_errors() {
        assert_eq!(
            ChunkedScanner::default().scan(b"zz\r\n"),
            Err(ChunkError::BadSize)
        );
        assert_eq!(
            ChunkedScanner::default().scan(b"2\r\nabX"),
            Err(ChunkError::MissingCrlf)
        );
        assert_eq!(
            ChunkedScanner::default().scan(b"ffffffffffffffffff\r\n"),
            Err(ChunkError::BadSize)
        );
        let long = [b'1'; 1]
            .iter()
            .chain([b';'; MAX_CHUNK_LINE].iter())
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(
            ChunkedScanner::default().scan(&long),
            Err(ChunkError::LineTooLong)
        );
        assert_eq!(
            ChunkedScanner::default().scan(b"\r\n"),
            Err(ChunkError::BadSize)
        );
    }
}
