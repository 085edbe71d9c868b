//! Message framing over a byte stream: newline-delimited lines and 4-byte
//! big-endian length prefixes.
//!
//! Both decoders are sans-IO: feed them a [`BytesMut`] that holds whatever
//! the socket delivered so far, and they return `Ok(None)` while a frame is
//! incomplete, `Ok(Some(frame))` once one is whole (consuming its bytes), or
//! an error when the peer broke a limit. A peer never makes them buffer more
//! than the configured maximum plus one read.
//!
//! ```text
//! lines:  b"hello\r\nworld\n"         -> "hello", "world"
//! length: b"\0\0\0\x05hello"          -> "hello"
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Default cap on one line, terminator excluded: 64 KiB.
pub const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024;
/// Default cap on one length-prefixed frame: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Size of the length prefix in bytes.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Why a stream could not be split into frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No line terminator within the allowed length.
    #[error("line longer than {max} bytes")]
    LineTooLong {
        /// The cap that was exceeded.
        max: usize,
    },
    /// A length prefix announced more than the allowed size.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The cap that was exceeded.
        max: usize,
    },
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The frame is larger than the configured cap (or than `u32::MAX`).
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The frame length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A line to send contains a newline, which would split it in two.
    #[error("line contains a newline")]
    EmbeddedNewline,
}

/// Splits a byte stream into lines ending in `\n` (a preceding `\r` is
/// removed too). The returned frame excludes the terminator.
#[derive(Debug, Clone)]
pub struct NewlineDecoder {
    max_len: usize,
    /// How far the buffer was already scanned for `\n`, so that a long line
    /// arriving in many reads is scanned once, not quadratically.
    scanned: usize,
}

impl Default for NewlineDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE_LEN)
    }
}

impl NewlineDecoder {
    /// A decoder that accepts lines of at most `max_len` bytes (terminator excluded).
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            scanned: 0,
        }
    }

    /// The configured cap.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Takes one line out of `buf`, if a whole one is there.
    ///
    /// # Errors
    /// [`DecodeError::LineTooLong`] once more than `max_len` bytes (plus the
    /// terminator) arrived without a `\n`. The buffer is left as it was; the
    /// caller is expected to drop the connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        // `\r\n` counts as the terminator, so allow max_len + 2 bytes.
        let limit = buf.len().min(self.max_len.saturating_add(2));
        let start = self.scanned.min(limit);
        match buf[start..limit].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let nl = start + i;
                self.scanned = 0;
                let mut line = buf.split_to(nl + 1);
                line.truncate(nl);
                if line.last() == Some(&b'\r') {
                    line.truncate(nl - 1);
                }
                if line.len() > self.max_len {
                    return Err(DecodeError::LineTooLong { max: self.max_len });
                }
                Ok(Some(line.freeze()))
            }
            None if buf.len() > self.max_len.saturating_add(1) => {
                Err(DecodeError::LineTooLong { max: self.max_len })
            }
            None => {
                self.scanned = limit;
                Ok(None)
            }
        }
    }

    /// Takes what is left at end of stream as a final unterminated line.
    ///
    /// # Errors
    /// Fails when the rest is longer than the cap.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        self.scanned = 0;
        if buf.is_empty() {
            return Ok(None);
        }
        if buf.len() > self.max_len {
            return Err(DecodeError::LineTooLong { max: self.max_len });
        }
        let mut line = buf.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        Ok(Some(line.freeze()))
    }

    /// Appends `line` and a `\n` to `dst`.
    ///
    /// # Errors
    /// Fails when the line holds a `\n` or is longer than the cap.
    pub fn encode(&self, line: &[u8], dst: &mut BytesMut) -> Result<(), EncodeError> {
        if line.len() > self.max_len {
            return Err(EncodeError::TooLarge {
                len: line.len(),
                max: self.max_len,
            });
        }
        if line.contains(&b'\n') {
            return Err(EncodeError::EmbeddedNewline);
        }
        dst.reserve(line.len() + 1);
        dst.put_slice(line);
        dst.put_u8(b'\n');
        Ok(())
    }
}

/// Splits a byte stream into frames, each preceded by its length as a
/// 4-byte big-endian unsigned integer.
#[derive(Debug, Clone)]
pub struct LengthDecoder {
    max_len: usize,
}

impl Default for LengthDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl LengthDecoder {
    /// A decoder that accepts frames of at most `max_len` bytes (prefix excluded).
    pub fn new(max_len: usize) -> Self {
        Self { max_len }
    }

    /// The configured cap.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Takes one frame out of `buf`, if a whole one is there.
    ///
    /// Reserves room for the rest of a frame once its prefix is known, so a
    /// large frame is read with few reallocations.
    ///
    /// # Errors
    /// [`DecodeError::FrameTooLarge`] as soon as a prefix announces more than
    /// the cap, before any of its payload is buffered.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > self.max_len {
            return Err(DecodeError::FrameTooLarge {
                len,
                max: self.max_len,
            });
        }
        let total = LENGTH_PREFIX_LEN + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(LENGTH_PREFIX_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }

    /// Appends the prefix and `frame` to `dst`.
    ///
    /// # Errors
    /// Fails when the frame is larger than the cap.
    pub fn encode(&self, frame: &[u8], dst: &mut BytesMut) -> Result<(), EncodeError> {
        let max = self.max_len.min(u32::MAX as usize);
        if frame.len() > max {
            return Err(EncodeError::TooLarge {
                len: frame.len(),
                max,
            });
        }
        dst.reserve(LENGTH_PREFIX_LEN + frame.len());
        // Fits: checked against u32::MAX above.
        dst.put_u32(frame.len() as u32);
        dst.put_slice(frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(b: &[u8]) -> BytesMut {
        BytesMut::from(b)
    }

    #[test]
    fn lines_split_on_lf_and_crlf() {
        let mut d = NewlineDecoder::new(16);
        let mut b = buf(b"hello\r\nworld\npartial");
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), &b"hello"[..]);
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), &b"world"[..]);
        assert_eq!(d.decode(&mut b).unwrap(), None);
        b.extend_from_slice(b"\n");
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), &b"partial"[..]);
        assert!(b.is_empty());
    }

    #[test]
    fn empty_lines_are_frames() {
        let mut d = NewlineDecoder::new(4);
        let mut b = buf(b"\n\r\n");
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), &b""[..]);
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), &b""[..]);
    }

    #[test]
    fn line_at_the_cap_passes_and_one_over_fails() {
        let mut d = NewlineDecoder::new(4);
        assert_eq!(
            d.decode(&mut buf(b"abcd\r\n")).unwrap().unwrap(),
            &b"abcd"[..]
        );
        assert_eq!(
            d.decode(&mut buf(b"abcd\n")).unwrap().unwrap(),
            &b"abcd"[..]
        );
        assert_eq!(
            d.decode(&mut buf(b"abcde\n")),
            Err(DecodeError::LineTooLong { max: 4 })
        );
        let mut d = NewlineDecoder::new(4);
        assert_eq!(
            d.decode(&mut buf(b"abcdefgh")),
            Err(DecodeError::LineTooLong { max: 4 })
        );
    }

    #[test]
    fn line_arriving_byte_by_byte() {
        let mut d = NewlineDecoder::new(8);
        let mut b = BytesMut::new();
        for &c in b"abc" {
            b.extend_from_slice(&[c]);
            assert_eq!(d.decode(&mut b).unwrap(), None);
        }
        b.extend_from_slice(b"\r");
        assert_eq!(d.decode(&mut b).unwrap(), None);
        b.extend_from_slice(b"\n");
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), &b"abc"[..]);
    }

    #[test]
    fn unterminated_last_line_at_eof() {
        let mut d = NewlineDecoder::new(8);
        let mut b = buf(b"a\nlast\r");
        assert_eq!(d.decode_eof(&mut b).unwrap().unwrap(), &b"a"[..]);
        assert_eq!(d.decode_eof(&mut b).unwrap().unwrap(), &b"last"[..]);
        assert_eq!(d.decode_eof(&mut b).unwrap(), None);
    }

    #[test]
    fn line_encode() {
        let d = NewlineDecoder::new(4);
        let mut out = BytesMut::new();
        d.encode(b"hi", &mut out).unwrap();
        assert_eq!(&out[..], b"hi\n");
        assert_eq!(
            d.encode(b"a\nb", &mut out),
            Err(EncodeError::EmbeddedNewline)
        );
        assert!(d.encode(b"abcde", &mut out).is_err());
    }

    #[test]
    fn length_prefixed_frames() {
        let mut d = LengthDecoder::new(8);
        let mut b = buf(b"\x00\x00\x00\x05hello\x00\x00\x00\x00\x00\x00");
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), &b"hello"[..]);
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), &b""[..]);
        // Two bytes of the next prefix: need more.
        assert_eq!(d.decode(&mut b).unwrap(), None);
        b.extend_from_slice(b"\x00\x02o");
        assert_eq!(d.decode(&mut b).unwrap(), None);
        b.extend_from_slice(b"k");
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), &b"ok"[..]);
        assert!(b.is_empty());
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_payload() {
        let mut d = LengthDecoder::new(8);
        assert_eq!(
            d.decode(&mut buf(b"\x00\x00\x00\x09")),
            Err(DecodeError::FrameTooLarge { len: 9, max: 8 })
        );
        assert_eq!(
            d.decode(&mut buf(b"\xff\xff\xff\xff")),
            Err(DecodeError::FrameTooLarge {
                len: u32::MAX as usize,
                max: 8
            })
        );
    }

    #[test]
    fn length_encode() {
        let d = LengthDecoder::new(8);
        let mut out = BytesMut::new();
        d.encode(b"abc", &mut out).unwrap();
        assert_eq!(&out[..], b"\x00\x00\x00\x03abc");
        assert!(d.encode(b"123456789", &mut out).is_err());
    }
}
