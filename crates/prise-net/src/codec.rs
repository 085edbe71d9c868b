//! tokio-util codecs over the sans-IO framing of `prise_proto::framing`,
//! and the `--framing` choice.

use bytes::{Bytes, BytesMut};
use prise_proto::framing::{DecodeError, EncodeError, LengthDecoder, NewlineDecoder};
use tokio_util::codec::{Decoder, Encoder};

/// How a byte stream is cut into messages (`--framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// No framing: bytes pass through as they come.
    Raw,
    /// One message per line (`\n`, or `\r\n`).
    Lines,
    /// Each message preceded by its length, 4 bytes big-endian.
    Length,
}

/// A codec error: the framing was broken, or the stream failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer broke a framing limit.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A message could not be framed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The underlying stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A codec for one [`Framing`], with its caps.
#[derive(Debug, Clone)]
pub enum FrameCodec {
    /// Pass-through: every read is one message.
    Raw,
    /// Lines, capped.
    Lines(NewlineDecoder),
    /// Length-prefixed frames, capped.
    Length(LengthDecoder),
}

impl FrameCodec {
    /// A codec for `framing` whose messages are at most `max_len` bytes.
    pub fn new(framing: Framing, max_len: usize) -> Self {
        match framing {
            Framing::Raw => Self::Raw,
            Framing::Lines => Self::Lines(NewlineDecoder::new(max_len)),
            Framing::Length => Self::Length(LengthDecoder::new(max_len)),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        match self {
            Self::Raw if src.is_empty() => Ok(None),
            Self::Raw => Ok(Some(src.split().freeze())),
            Self::Lines(d) => Ok(d.decode(src)?),
            Self::Length(d) => Ok(d.decode(src)?),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        match self {
            Self::Lines(d) => Ok(d.decode_eof(src)?),
            Self::Length(d) => match d.decode(src)? {
                Some(frame) => Ok(Some(frame)),
                None if src.is_empty() => Ok(None),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "stream ended inside a length-prefixed frame",
                )
                .into()),
            },
            Self::Raw => self.decode(src),
        }
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        match self {
            Self::Raw => dst.extend_from_slice(item),
            Self::Lines(d) => d.encode(item, dst)?,
            Self::Length(d) => d.encode(item, dst)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio_util::codec::FramedRead;

    #[tokio::test]
    async fn framed_read_over_a_stream() {
        let data: &[u8] = b"\x00\x00\x00\x02hi\x00\x00\x00\x03abc";
        let mut r = FramedRead::new(data, FrameCodec::new(Framing::Length, 8));
        assert_eq!(r.next().await.unwrap().unwrap(), &b"hi"[..]);
        assert_eq!(r.next().await.unwrap().unwrap(), &b"abc"[..]);
        assert!(r.next().await.is_none());

        let truncated: &[u8] = b"\x00\x00\x00\x05ab";
        let mut r = FramedRead::new(truncated, FrameCodec::new(Framing::Length, 8));
        assert!(matches!(r.next().await, Some(Err(CodecError::Io(_)))));

        let lines: &[u8] = b"one\r\ntwo";
        let got: Vec<_> = FramedRead::new(lines, FrameCodec::new(Framing::Lines, 8))
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(got, [&b"one"[..], &b"two"[..]]);
    }

    #[test]
    fn encoder_frames_each_kind() {
        let mut out = BytesMut::new();
        FrameCodec::new(Framing::Length, 8)
            .encode(&b"ab"[..], &mut out)
            .unwrap();
        FrameCodec::new(Framing::Lines, 8)
            .encode(&b"cd"[..], &mut out)
            .unwrap();
        FrameCodec::new(Framing::Raw, 8)
            .encode(&b"ef"[..], &mut out)
            .unwrap();
        assert_eq!(&out[..], b"\x00\x00\x00\x02abcd\nef");
    }
}
