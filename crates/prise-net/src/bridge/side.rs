//! One side of a bridge as a source and a sink of messages, whatever it
//! is: a byte stream cut by a [`Framing`], a WebSocket (one message each),
//! a UDP socket (one datagram each), or a process's pipes.
//!
//! Byte streams are cut by the side's framing: `raw` makes each read one
//! message, `lines` and `length` decode and encode messages with their caps.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use prise_ws::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::{CodecError, FrameCodec, Framing};
use crate::error::NetError;
use crate::relay::{MAX_DATAGRAM, READ_CHUNK};
use crate::transport::{Conn, WebSocket, ws_error};

/// A boxed reading half.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed writing half.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// How one side cuts and sends messages.
#[derive(Debug, Clone, Copy)]
pub struct SideOptions {
    /// Framing of a byte stream (ignored by WebSocket and UDP sides).
    pub framing: Framing,
    /// Cap on one message, line or frame.
    pub max_message: usize,
    /// WebSocket: send text messages (binary otherwise).
    pub text: bool,
}

/// Messages coming from one side.
pub struct MessageReader {
    kind: ReaderKind,
    peer: String,
}

enum ReaderKind {
    Bytes {
        read: BoxRead,
        codec: FrameCodec,
        raw: bool,
        chunk: usize,
        buf: BytesMut,
        eof: bool,
    },
    Ws(SplitStream<WebSocket>),
    Udp(Arc<UdpSocket>, Vec<u8>),
    Channel(mpsc::Receiver<Bytes>),
}

/// Messages going to one side.
pub struct MessageWriter {
    kind: WriterKind,
    peer: String,
}

enum WriterKind {
    Bytes {
        /// `None` once finished: dropping it closes a pipe, whose shutdown
        /// alone does not.
        write: Option<BoxWrite>,
        codec: FrameCodec,
        raw: bool,
        wire: BytesMut,
    },
    Ws {
        sink: SplitSink<WebSocket, Message>,
        text: bool,
    },
    Udp(Arc<UdpSocket>, Option<SocketAddr>),
}

/// Both directions of one side.
pub struct Side {
    /// What the side sends.
    pub reader: MessageReader,
    /// What the side is sent.
    pub writer: MessageWriter,
}

impl Side {
    /// A side over an open connection to `peer`.
    pub fn from_conn(conn: Conn, peer: &str, opts: SideOptions) -> Self {
        match conn {
            Conn::Stream(s) => {
                let (r, w) = tokio::io::split(s);
                Self::from_pipes(Box::new(r), Box::new(w), peer, opts)
            }
            Conn::Ws(ws, _) => {
                let (sink, stream) = (*ws).split();
                Self {
                    reader: MessageReader {
                        kind: ReaderKind::Ws(stream),
                        peer: peer.to_owned(),
                    },
                    writer: MessageWriter {
                        kind: WriterKind::Ws {
                            sink,
                            text: opts.text,
                        },
                        peer: peer.to_owned(),
                    },
                }
            }
            Conn::Udp(sock) => {
                let sock = Arc::new(sock);
                Self {
                    reader: MessageReader {
                        kind: ReaderKind::Udp(sock.clone(), vec![0; MAX_DATAGRAM + 1]),
                        peer: peer.to_owned(),
                    },
                    writer: MessageWriter {
                        kind: WriterKind::Udp(sock, None),
                        peer: peer.to_owned(),
                    },
                }
            }
        }
    }

    /// A side over a pair of byte pipes (a stream's halves, a process's
    /// stdout and stdin).
    pub fn from_pipes(read: BoxRead, write: BoxWrite, peer: &str, opts: SideOptions) -> Self {
        let raw = opts.framing == Framing::Raw;
        Self {
            reader: MessageReader {
                kind: ReaderKind::Bytes {
                    read,
                    codec: FrameCodec::new(opts.framing, opts.max_message),
                    raw,
                    chunk: READ_CHUNK.min(opts.max_message.max(1)),
                    buf: BytesMut::new(),
                    eof: false,
                },
                peer: peer.to_owned(),
            },
            writer: MessageWriter {
                kind: WriterKind::Bytes {
                    write: Some(write),
                    codec: FrameCodec::new(opts.framing, opts.max_message),
                    raw,
                    wire: BytesMut::new(),
                },
                peer: peer.to_owned(),
            },
        }
    }

    /// One peer of a UDP listener: datagrams arrive through `rx` (the
    /// listener's receive loop) and answers go out of `sock` to `peer`.
    pub fn udp_peer(sock: Arc<UdpSocket>, peer: SocketAddr, rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            reader: MessageReader {
                kind: ReaderKind::Channel(rx),
                peer: peer.to_string(),
            },
            writer: MessageWriter {
                kind: WriterKind::Udp(sock, Some(peer)),
                peer: peer.to_string(),
            },
        }
    }

    /// Caps raw reads at one datagram, for a side whose messages go to UDP.
    pub fn limit_chunks(&mut self, max: usize) {
        if let ReaderKind::Bytes { chunk, .. } = &mut self.reader.kind {
            *chunk = (*chunk).min(max).max(1);
        }
    }

    /// Does this side carry datagrams (and so has no end of stream)?
    pub fn is_datagram(&self) -> bool {
        matches!(self.writer.kind, WriterKind::Udp(..))
    }
}

fn codec_error(e: CodecError, peer: &str) -> NetError {
    match e {
        CodecError::Io(e) => NetError::from_io(e, peer),
        other => NetError::Protocol(format!("{peer}: {other}")),
    }
}

impl MessageReader {
    /// The next message, or `None` at the end of the stream.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read and not yet returned stay in the buffer.
    ///
    /// # Errors
    /// The connection failed, or a message broke a framing cap.
    pub async fn next(&mut self) -> Result<Option<Bytes>, NetError> {
        let peer = &self.peer;
        match &mut self.kind {
            ReaderKind::Bytes {
                read,
                codec,
                raw,
                chunk,
                buf,
                eof,
            } => loop {
                if *eof {
                    return codec.decode_eof(buf).map_err(|e| codec_error(e, peer));
                }
                if !*raw && let Some(m) = codec.decode(buf).map_err(|e| codec_error(e, peer))? {
                    return Ok(Some(m));
                }
                buf.reserve(*chunk);
                let n = read
                    .read_buf(&mut (&mut *buf).limit(*chunk))
                    .await
                    .map_err(|e| NetError::from_io(e, peer))?;
                if n == 0 {
                    *eof = true;
                } else if *raw {
                    return Ok(Some(buf.split().freeze()));
                }
            },
            ReaderKind::Ws(stream) => loop {
                match stream.next().await {
                    None | Some(Err(prise_ws::WsError::ConnectionClosed)) => return Ok(None),
                    Some(Ok(Message::Text(t))) => return Ok(Some(Bytes::from(t))),
                    Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                    Some(Ok(Message::Close(_))) => {
                        // The peer's Close ends its direction. Reading on
                        // sends the stack's answering Close and sees the
                        // stream end, so the close handshake completes.
                        while let Some(Ok(_)) = stream.next().await {}
                        return Ok(None);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(ws_error(e, peer)),
                }
            },
            ReaderKind::Udp(sock, buf) => {
                let n = sock
                    .recv(buf)
                    .await
                    .map_err(|e| NetError::from_io(e, peer))?;
                Ok(Some(Bytes::copy_from_slice(&buf[..n])))
            }
            ReaderKind::Channel(rx) => Ok(rx.recv().await),
        }
    }
}

impl MessageWriter {
    /// Sends one message. `Ok(false)`: the peer has closed (a WebSocket
    /// whose close handshake started) and takes no more.
    ///
    /// # Errors
    /// The connection failed, or the message does not fit the side (over
    /// a cap, not UTF-8 for `--text`, a newline inside a line).
    pub async fn send(&mut self, msg: Bytes) -> Result<bool, NetError> {
        let peer = &self.peer;
        match &mut self.kind {
            WriterKind::Bytes {
                write,
                codec,
                raw,
                wire,
            } => {
                let data = if *raw {
                    msg
                } else {
                    wire.clear();
                    codec
                        .encode(&msg[..], wire)
                        .map_err(|e| NetError::Protocol(format!("to {peer}: {e}")))?;
                    wire.split().freeze()
                };
                let Some(write) = write else {
                    return Err(NetError::Usage(format!("{peer}: write after the end")));
                };
                write
                    .write_all(&data)
                    .await
                    .map_err(|e| NetError::from_io(e, peer))?;
                Ok(true)
            }
            WriterKind::Ws { sink, text } => {
                let message = if *text {
                    let t = String::from_utf8(msg.to_vec()).map_err(|_| {
                        NetError::Protocol(format!(
                            "to {peer}: a message is not valid UTF-8; drop --text"
                        ))
                    })?;
                    Message::text(t)
                } else {
                    Message::binary(msg)
                };
                match sink.send(message).await {
                    Ok(()) => Ok(true),
                    Err(e) if closed(&e) => Ok(false),
                    Err(e) => Err(ws_error(e, peer)),
                }
            }
            WriterKind::Udp(sock, to) => {
                if msg.len() > MAX_DATAGRAM {
                    return Err(NetError::Protocol(format!(
                        "to {peer}: a message of {} bytes does not fit a datagram",
                        msg.len()
                    )));
                }
                let sent = match to {
                    Some(addr) => sock.send_to(&msg, *addr).await,
                    None => sock.send(&msg).await,
                };
                sent.map_err(|e| NetError::from_io(e, peer))?;
                Ok(true)
            }
        }
    }

    /// Ends this direction: a half-close on a stream, a Close frame on a
    /// WebSocket, nothing on UDP.
    ///
    /// # Errors
    /// The stream failed while shutting down.
    pub async fn finish(&mut self) -> Result<(), NetError> {
        let peer = &self.peer;
        match &mut self.kind {
            WriterKind::Bytes { write, .. } => {
                let Some(mut w) = write.take() else {
                    return Ok(());
                };
                match w.shutdown().await {
                    Ok(()) => Ok(()),
                    // The peer is already gone: nothing left to end.
                    Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
                    Err(e) => Err(NetError::from_io(e, peer)),
                }
            }
            WriterKind::Ws { sink, .. } => {
                let close = prise_ws::close_message(prise_ws::close_code::NORMAL, "");
                match sink.send(close).await {
                    Ok(()) => Ok(()),
                    Err(e) if closed(&e) => Ok(()),
                    Err(e) => Err(ws_error(e, peer)),
                }
            }
            WriterKind::Udp(..) => Ok(()),
        }
    }
}

/// Is this WebSocket error the orderly end of a connection?
fn closed(e: &prise_ws::WsError) -> bool {
    use prise_ws::ProtocolError;
    use prise_ws::WsError;
    matches!(
        e,
        WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Protocol(ProtocolError::SendAfterClosing)
    )
}
