//! The byte stream under every prise WebSocket: the socket, plus the
//! permessage-deflate codec when the handshake agreed on it.
//!
//! Without the extension, [`WsIo`] forwards reads and writes to the socket and
//! holds nothing but an empty `Option`. With it, bytes pass through the
//! [`Inbound`] and [`Outbound`] halves of [`crate::deflate`], and the buffers
//! live in one boxed state allocated only then.
//!
//! During a handshake made over a raw stream ([`crate::accept`],
//! [`crate::connect`]) reads stop at the end of the HTTP head, so frames that
//! arrive in the same packet as the head are kept back until the negotiated
//! codec is in place.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::deflate::{Inbound, Outbound, Side};
use crate::extension::Negotiated;

/// Bytes asked of the socket per read when inflating.
const READ_CHUNK: usize = 4 * 1024;
/// Compressed bytes waiting for the socket above which writes wait.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// A WebSocket's byte stream: the socket, and the compression codec if negotiated.
///
/// Reads and writes carry WebSocket frames; tungstenite's framing runs on top.
#[derive(Debug)]
pub struct WsIo<S> {
    inner: S,
    /// Reading the HTTP head of a handshake: stop after it.
    head: Option<Box<Head>>,
    /// Bytes read past the head, handed over before reading the socket again.
    held: BytesMut,
    deflate: Option<Box<Codec>>,
}

#[derive(Debug, Default)]
struct Head {
    /// How much of `\r\n\r\n` the bytes read so far end with.
    matched: u8,
    done: bool,
}

#[derive(Debug)]
struct Codec {
    inbound: Inbound,
    outbound: Outbound,
    /// Raw bytes from the socket not yet decoded.
    rx_in: BytesMut,
    /// Decoded frames not yet read by tungstenite.
    rx_out: BytesMut,
    /// Encoded frames not yet written to the socket.
    tx_out: BytesMut,
    eof: bool,
}

impl<S> WsIo<S> {
    /// A stream past its handshake, with the codec if `deflate` was agreed.
    pub(crate) fn framed(
        inner: S,
        side: Side,
        deflate: Option<Negotiated>,
        max_message: usize,
        max_frame: usize,
    ) -> Self {
        let mut io = Self {
            inner,
            head: None,
            held: BytesMut::new(),
            deflate: None,
        };
        io.start(side, deflate, max_message, max_frame);
        io
    }

    /// A stream about to carry an HTTP handshake.
    pub(crate) fn handshaking(inner: S) -> Self {
        Self {
            inner,
            head: Some(Box::default()),
            held: BytesMut::new(),
            deflate: None,
        }
    }

    /// Ends the handshake: frames follow, through the codec if `deflate` was agreed.
    pub(crate) fn start(
        &mut self,
        side: Side,
        deflate: Option<Negotiated>,
        max_message: usize,
        max_frame: usize,
    ) {
        self.head = None;
        if let Some(n) = deflate {
            self.deflate = Some(Box::new(Codec {
                inbound: Inbound::new(side, &n, max_message, max_frame),
                outbound: Outbound::new(&n),
                rx_in: std::mem::take(&mut self.held),
                rx_out: BytesMut::new(),
                tx_out: BytesMut::new(),
                eof: false,
            }));
        }
    }

    /// True when permessage-deflate is in use on this stream.
    pub fn is_deflate(&self) -> bool {
        self.deflate.is_some()
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The socket. Reading or writing it directly corrupts the WebSocket.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl Head {
    /// Returns how many bytes of `data` belong to the head.
    fn scan(&mut self, data: &[u8]) -> usize {
        for (i, &b) in data.iter().enumerate() {
            self.matched = match (self.matched, b) {
                (1, b'\n') => 2,
                (3, b'\n') => {
                    self.done = true;
                    return i + 1;
                }
                (2, b'\r') => 3,
                (_, b'\r') => 1,
                _ => 0,
            };
        }
        data.len()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    fn poll_read_codec(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(codec) = self.deflate.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            if !codec.rx_out.is_empty() {
                let n = codec.rx_out.len().min(buf.remaining());
                buf.put_slice(&codec.rx_out[..n]);
                codec.rx_out.advance(n);
                if codec.rx_out.is_empty() {
                    codec.rx_out = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if codec.inbound.is_poisoned() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "websocket compression failed",
                )));
            }
            if codec.inbound.process(&mut codec.rx_in, &mut codec.rx_out) {
                continue;
            }
            if codec.eof {
                return Poll::Ready(Ok(()));
            }
            if codec.rx_in.capacity() - codec.rx_in.len() < READ_CHUNK {
                codec.rx_in.reserve(READ_CHUNK);
            }
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.inner),
                cx,
                &mut codec.rx_in
            ))?;
            if n == 0 {
                codec.eof = true;
            }
        }
    }

    /// Writes encoded bytes until none wait, or fewer than `keep` if the socket is busy.
    fn poll_drain(&mut self, cx: &mut Context<'_>, keep: usize) -> Poll<io::Result<()>> {
        let Some(codec) = self.deflate.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while !codec.tx_out.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &codec.tx_out) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => codec.tx_out.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if codec.tx_out.len() < keep => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Do not keep a large message's buffer on an idle connection.
        codec.tx_out = BytesMut::new();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.deflate.is_some() {
            return this.poll_read_codec(cx, buf);
        }
        if !this.held.is_empty() {
            let n = this.held.len().min(buf.remaining());
            buf.put_slice(&this.held[..n]);
            this.held.advance(n);
            if this.held.is_empty() {
                this.held = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        let Some(head) = this.head.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if head.done {
            // The head is complete: nothing more until the handshake ends.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        let keep = head.scan(new);
        if keep < new.len() {
            this.held.extend_from_slice(&new[keep..]);
            buf.set_filled(before + keep);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.deflate.is_none() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        ready!(this.poll_drain(cx, WRITE_HIGH_WATER))?;
        if let Some(codec) = this.deflate.as_mut() {
            codec.outbound.process(buf, &mut codec.tx_out);
        }
        // Start sending at once; what the socket does not take yet waits for
        // the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx, usize::MAX) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx, 0))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx, 0))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_scan_stops_after_the_blank_line() {
        let mut h = Head::default();
        assert_eq!(h.scan(b"GET / HTTP/1.1\r\nHost: x\r"), 24);
        assert!(!h.done);
        assert_eq!(h.scan(b"\n\r\n\x81\x00"), 3);
        assert!(h.done);
        let mut h = Head::default();
        assert_eq!(h.scan(b"a\r\n\r\r\n\r\nrest"), 8);
    }
}
