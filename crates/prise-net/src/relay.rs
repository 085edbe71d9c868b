//! The relay between local input/output (stdin/stdout) and one [`Conn`].
//!
//! ```text
//!  stdin ─reader task─▶ Input ─decode (framing)─▶ encode ─▶ socket
//!  stdout ◀─ Events (--json / --hex) ◀─ decode (framing) ◀── socket
//! ```
//!
//! Both directions run concurrently, so a peer that writes while it reads
//! (an echo server fed a large file) never deadlocks the relay. When input
//! ends, the write side is shut down (TCP half-close; a Close frame on a
//! WebSocket) and the relay keeps reading until the peer closes. On a
//! stream, the peer's end of stream is a half-close too: input keeps going
//! to the peer until it ends (a peer that did `shutdown(SHUT_WR)` still gets
//! its answer), so the relay ends when both directions are done. With
//! `--linger0`, the end of input closes at once with a reset instead.
//!
//! Message transports (UDP, WebSocket) carry one message per input line by
//! default and are never split silently: a message over the cap is an error.

use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use prise_proto::hexdump::HexDump;
use prise_ws::Message;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, Encoder, FramedRead};

use crate::codec::{CodecError, FrameCodec, Framing};
use crate::error::NetError;
use crate::transport::{BoxStream, Conn, WebSocket, ws_error};

/// Default cap on one message (line, frame, datagram, WebSocket message): 1 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;
/// Size of each read from stdin and from stream sockets.
pub const READ_CHUNK: usize = 128 * 1024;
/// Chunks of stdin buffered ahead of the socket.
pub const INPUT_QUEUE: usize = 8;
/// Largest UDP payload.
pub const MAX_DATAGRAM: usize = 65_507;

/// Relay options shared by `connect` and `listen`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct RelayArgs {
    /// How messages are cut: raw bytes, lines, or 4-byte big-endian length
    /// prefixes (default: raw for streams, lines for udp/ws/wss).
    #[arg(long, value_enum)]
    pub framing: Option<Framing>,
    /// How received messages are written to stdout: one per line, one hex
    /// line each, 4-byte big-endian length prefixes, or raw (default: hex
    /// for `--framing length` on streams, else as `--framing`).
    #[arg(long, value_enum, value_name = "FRAMING")]
    pub out_framing: Option<OutFraming>,
    /// Largest message, line or frame accepted (bytes).
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE, value_name = "BYTES")]
    pub max_message: usize,
    /// Hex dump of both directions on stderr.
    #[arg(long)]
    pub hex: bool,
    /// Events (connect, retry, data, close) as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// WebSocket: send text messages (the default).
    #[arg(long, conflicts_with = "binary")]
    pub text: bool,
    /// WebSocket: send binary messages.
    #[arg(long)]
    pub binary: bool,
    /// WebSocket: offer (connect) or accept (listen) permessage-deflate (RFC 7692).
    #[arg(long)]
    pub deflate: bool,
    /// WebSocket: send a ping this often (e.g. 20s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ping_interval: Option<Duration>,
    /// Give up when nothing arrives for this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// UDP: after input ends, wait this long for more replies.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub udp_wait: Duration,
}

impl Default for RelayArgs {
    fn default() -> Self {
        Self {
            framing: None,
            out_framing: None,
            max_message: DEFAULT_MAX_MESSAGE,
            hex: false,
            json: false,
            text: false,
            binary: false,
            deflate: false,
            ping_interval: None,
            idle_timeout: None,
            udp_wait: Duration::from_secs(1),
        }
    }
}

/// How received messages are written to local output (`--out-framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFraming {
    /// The bytes as they come.
    Raw,
    /// Each message followed by `\n` (ambiguous when a message holds one).
    Lines,
    /// Each message as one line of lower-case hex.
    Hex,
    /// Each message preceded by its length, 4 bytes big-endian.
    Length,
}

impl OutFraming {
    /// The output framing that goes with an input `framing` when none is
    /// asked for: frames of a length-framed stream are printed as hex,
    /// since they may hold newlines.
    pub fn default_for(framing: Framing, stream: bool) -> Self {
        match framing {
            Framing::Raw => Self::Raw,
            Framing::Lines => Self::Lines,
            Framing::Length if stream => Self::Hex,
            Framing::Length => Self::Length,
        }
    }
}

/// Where events and hex dumps go. Shared by both directions of a relay.
#[derive(Debug)]
pub struct Events {
    json: bool,
    hex: bool,
    start: Instant,
    dumps: Mutex<(HexDump, HexDump)>,
}

impl Events {
    /// Events as JSON lines on stdout when `json`, hex dumps on stderr when `hex`.
    pub fn new(json: bool, hex: bool) -> Self {
        Self {
            json,
            hex,
            start: Instant::now(),
            dumps: Mutex::new((HexDump::new(), HexDump::new())),
        }
    }

    /// Are events printed as JSON?
    pub fn json(&self) -> bool {
        self.json
    }

    /// Prints one JSON event (when enabled), stamped with `t_ms` since start.
    pub fn emit(&self, event: &str, mut fields: Value) {
        if !self.json {
            return;
        }
        if let Value::Object(map) = &mut fields {
            map.insert("event".into(), event.into());
            map.insert(
                "t_ms".into(),
                json!(self.start.elapsed().as_secs_f64() * 1000.0),
            );
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout is not worth failing the connection for.
        let _ = writeln!(out, "{fields}");
        let _ = out.flush();
    }

    fn dump(&self, outgoing: bool, data: &[u8]) {
        if !self.hex {
            return;
        }
        let mut dumps = self.dumps.lock().unwrap_or_else(|e| e.into_inner());
        let (arrow, dump) = if outgoing {
            ("> sent", &mut dumps.0)
        } else {
            ("< received", &mut dumps.1)
        };
        let text = dump.chunk(data);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{arrow} {} bytes", data.len());
        let _ = err.write_all(text.as_bytes());
    }

    /// Records bytes sent to the peer.
    pub fn sent(&self, data: &[u8]) {
        self.dump(true, data);
        if self.json {
            self.emit("sent", json!({ "len": data.len() }));
        }
    }

    /// Records a message received from the peer.
    pub fn received(&self, data: &[u8], kind: Option<&str>) {
        self.dump(false, data);
        if self.json {
            let mut v = match std::str::from_utf8(data) {
                Ok(s) => json!({ "len": data.len(), "text": s }),
                Err(_) => json!({
                    "len": data.len(),
                    "base64": base64::engine::general_purpose::STANDARD.encode(data),
                }),
            };
            if let (Some(kind), Value::Object(m)) = (kind, &mut v) {
                m.insert("kind".into(), kind.into());
            }
            self.emit("recv", v);
        }
    }
}

/// Reads `reader` in a background task, in chunks of up to [`READ_CHUNK`]
/// bytes, into a bounded queue; the queue closes at end of input.
pub fn read_chunks<R: AsyncRead + Send + Unpin + 'static>(mut reader: R) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            buf.reserve(READ_CHUNK);
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(buf.split().freeze()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Local input: chunks of bytes from a reader task, cut into messages.
#[derive(Debug)]
pub struct Input {
    rx: mpsc::Receiver<Bytes>,
    buf: BytesMut,
    eof: bool,
}

impl Input {
    /// Input read from `reader` by a background task (bounded queue).
    pub fn spawn<R: AsyncRead + Send + Unpin + 'static>(reader: R) -> Self {
        Self::from_channel(read_chunks(reader))
    }

    /// Input from standard input.
    pub fn stdin() -> Self {
        Self::spawn(tokio::io::stdin())
    }

    /// Input from a channel; the channel closing is end of input.
    pub fn from_channel(rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// Has input ended, with every message taken?
    pub fn ended(&self) -> bool {
        self.eof && self.buf.is_empty()
    }

    /// The next message, or `None` at end of input.
    ///
    /// # Cancel safety
    /// Cancel safe: the only await is on the channel, and bytes received are
    /// kept in the buffer.
    ///
    /// # Errors
    /// A line or frame over the cap.
    pub async fn next(&mut self, codec: &mut FrameCodec) -> Result<Option<Bytes>, NetError> {
        let broken = |e: CodecError| NetError::Usage(format!("input: {e}"));
        loop {
            if !self.eof {
                if let Some(msg) = codec.decode(&mut self.buf).map_err(broken)? {
                    return Ok(Some(msg));
                }
                match self.rx.recv().await {
                    Some(chunk) if self.buf.is_empty() => self.buf = chunk.into(),
                    Some(chunk) => self.buf.extend_from_slice(&chunk),
                    None => self.eof = true,
                }
            } else {
                return codec.decode_eof(&mut self.buf).map_err(broken);
            }
        }
    }
}

fn codec_error(e: CodecError, peer: &str) -> NetError {
    match e {
        CodecError::Io(e) => NetError::from_io(e, peer),
        other => NetError::Protocol(format!("{peer}: {other}")),
    }
}

/// The resolved relay settings for one connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Framing of the socket (streams) or of local input (UDP, WebSocket).
    pub framing: Framing,
    /// How received messages are written out.
    pub out_framing: OutFraming,
    /// After the peer's end of stream, keep sending input until it ends
    /// (`false` for `--keep-open` peers, whose input is shared).
    pub wait_for_input: bool,
    /// At the end of input, drop the connection (with `SO_LINGER 0`, a
    /// reset) instead of half-closing it.
    pub reset_on_eof: bool,
    /// Cap on one message.
    pub max_message: usize,
    /// Send WebSocket binary messages instead of text.
    pub binary: bool,
    /// WebSocket ping interval.
    pub ping_interval: Option<Duration>,
    /// Idle timeout on reads.
    pub idle_timeout: Option<Duration>,
    /// UDP wait after input ends.
    pub udp_wait: Duration,
}

impl RelayOptions {
    /// Settings for `conn` from the command line (framing defaults by transport).
    pub fn new(args: &RelayArgs, conn: &Conn) -> Self {
        let stream = matches!(conn, Conn::Stream(_));
        let default = if stream { Framing::Raw } else { Framing::Lines };
        let framing = args.framing.unwrap_or(default);
        Self {
            framing,
            out_framing: args
                .out_framing
                .unwrap_or(OutFraming::default_for(framing, stream)),
            wait_for_input: true,
            reset_on_eof: false,
            max_message: args.max_message,
            binary: args.binary,
            ping_interval: args.ping_interval,
            idle_timeout: args.idle_timeout,
            udp_wait: args.udp_wait,
        }
    }
}

/// Relays `input` to `conn` and `conn` to `output` until the peer closes.
///
/// # Errors
/// The connection failed, a limit was broken, or the idle timeout expired.
pub async fn relay<W>(
    conn: Conn,
    peer: &str,
    input: &mut Input,
    output: &mut W,
    events: &Events,
    opts: &RelayOptions,
) -> Result<(), NetError>
where
    W: AsyncWrite + Unpin + Send,
{
    match conn {
        Conn::Stream(s) => relay_stream(s, peer, input, output, events, opts).await,
        Conn::Udp(s) => relay_udp(&s, peer, input, output, events, opts).await,
        Conn::Ws(ws, _) => relay_ws(*ws, peer, input, output, events, opts).await,
    }?;
    events.emit("closed", json!({ "peer": peer }));
    Ok(())
}

async fn idle<T>(
    limit: Option<Duration>,
    peer: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, NetError> {
    match limit {
        Some(d) => tokio::time::timeout(d, fut).await.map_err(|_| {
            NetError::TimedOut(format!(
                "waiting for {peer}: idle for {}",
                humantime::format_duration(d)
            ))
        }),
        None => Ok(fut.await),
    }
}

async fn write_out<W: AsyncWrite + Unpin>(out: &mut W, parts: &[&[u8]]) -> Result<(), NetError> {
    let err = |e| NetError::io("writing output", e);
    if let [one] = parts {
        out.write_all(one).await.map_err(err)?;
    } else {
        // One write per message, so that messages of several peers sharing
        // stdout never interleave inside a line.
        out.write_all(&parts.concat()).await.map_err(err)?;
    }
    out.flush().await.map_err(err)
}

async fn relay_stream<W: AsyncWrite + Unpin + Send>(
    stream: BoxStream,
    peer: &str,
    input: &mut Input,
    output: &mut W,
    events: &Events,
    opts: &RelayOptions,
) -> Result<(), NetError> {
    let (rd, mut wr) = tokio::io::split(stream);
    // On a stream, `length` describes the wire; local input is then lines.
    let input_framing = match opts.framing {
        Framing::Length => Framing::Lines,
        f => f,
    };
    let up = async {
        let mut decode = FrameCodec::new(input_framing, opts.max_message);
        let mut encode = FrameCodec::new(opts.framing, opts.max_message);
        let mut wire = BytesMut::new();
        while let Some(msg) = input.next(&mut decode).await? {
            let data = if opts.framing == Framing::Raw {
                msg
            } else {
                wire.clear();
                encode
                    .encode(&msg[..], &mut wire)
                    .map_err(|e| NetError::Usage(format!("input: {e}")))?;
                wire.split().freeze()
            };
            events.sent(&data);
            wr.write_all(&data)
                .await
                .map_err(|e| NetError::from_io(e, peer))?;
        }
        events.emit("eof", json!({ "side": "local" }));
        if opts.reset_on_eof {
            // Dropping the socket (SO_LINGER 0) sends the reset.
            wr.flush().await.map_err(|e| NetError::from_io(e, peer))?;
            return Ok(());
        }
        // Half-close: the peer sees end of stream, and may still answer.
        wr.shutdown()
            .await
            .map_err(|e| NetError::from_io(e, peer))?;
        Ok::<(), NetError>(())
    };
    let down = async {
        let codec = FrameCodec::new(opts.framing, opts.max_message);
        let mut frames = FramedRead::with_capacity(rd, codec, READ_CHUNK);
        while let Some(frame) = idle(opts.idle_timeout, peer, frames.next()).await? {
            let frame = frame.map_err(|e| codec_error(e, peer))?;
            deliver(output, events, opts.out_framing, &frame, None).await?;
        }
        events.emit("eof", json!({ "side": "remote" }));
        Ok::<(), NetError>(())
    };
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                r?;
                up_done = true;
                if down_done || opts.reset_on_eof {
                    return Ok(());
                }
            }
            r = &mut down, if !down_done => {
                r?;
                down_done = true;
                if up_done || !opts.wait_for_input {
                    return Ok(());
                }
            }
        }
    }
}

/// Writes one message received on a message transport to local output.
pub(crate) async fn deliver<W: AsyncWrite + Unpin>(
    output: &mut W,
    events: &Events,
    framing: OutFraming,
    data: &[u8],
    kind: Option<&str>,
) -> Result<(), NetError> {
    events.received(data, kind);
    if events.json() {
        return Ok(());
    }
    match framing {
        OutFraming::Raw => write_out(output, &[data]).await,
        OutFraming::Lines => write_out(output, &[data, b"\n"]).await,
        OutFraming::Hex => {
            let mut line = String::with_capacity(data.len() * 2 + 1);
            for b in data {
                line.push_str(&format!("{b:02x}"));
            }
            line.push('\n');
            write_out(output, &[line.as_bytes()]).await
        }
        OutFraming::Length => {
            let len = u32::try_from(data.len())
                .map_err(|_| NetError::Protocol("message too large to frame".into()))?;
            write_out(output, &[&len.to_be_bytes(), data]).await
        }
    }
}

async fn relay_udp<W: AsyncWrite + Unpin + Send>(
    sock: &UdpSocket,
    peer: &str,
    input: &mut Input,
    output: &mut W,
    events: &Events,
    opts: &RelayOptions,
) -> Result<(), NetError> {
    let max = opts.max_message.min(MAX_DATAGRAM);
    let mut decode = FrameCodec::new(opts.framing, max);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut input_done = false;
    loop {
        let wait = if input_done {
            Some(opts.udp_wait)
        } else {
            opts.idle_timeout
        };
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = input.next(&mut decode), if !input_done => match msg? {
                Some(msg) => {
                    if msg.len() > max {
                        return Err(NetError::Usage(format!(
                            "a datagram of {} bytes exceeds {max}; use --framing lines",
                            msg.len()
                        )));
                    }
                    events.sent(&msg);
                    sock.send(&msg).await.map_err(|e| NetError::from_io(e, peer))?;
                }
                None => {
                    input_done = true;
                    events.emit("eof", json!({ "side": "local" }));
                }
            },
            r = sock.recv(&mut buf) => {
                let n = r.map_err(|e| NetError::from_io(e, peer))?;
                deliver(output, events, opts.out_framing, &buf[..n], None).await?;
            }
            () = sleep => {
                if input_done {
                    return Ok(());
                }
                return Err(NetError::TimedOut(format!("waiting for {peer}: idle")));
            }
        }
    }
}

async fn relay_ws<W: AsyncWrite + Unpin + Send>(
    ws: WebSocket,
    peer: &str,
    input: &mut Input,
    output: &mut W,
    events: &Events,
    opts: &RelayOptions,
) -> Result<(), NetError> {
    let (mut sink, mut stream) = ws.split();
    let up = async {
        let mut decode = FrameCodec::new(opts.framing, opts.max_message);
        let mut ping = opts.ping_interval.map(|d| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loop {
            let tick = async {
                match ping.as_mut() {
                    Some(i) => {
                        i.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = input.next(&mut decode) => match msg? {
                    Some(msg) => {
                        let message = if opts.binary {
                            Message::binary(msg.clone())
                        } else {
                            let text = String::from_utf8(msg.to_vec()).map_err(|_| {
                                NetError::Usage("input is not valid UTF-8; use --binary".into())
                            })?;
                            Message::text(text)
                        };
                        events.sent(&msg);
                        sink.send(message).await.map_err(|e| ws_error(e, peer))?;
                    }
                    None => break,
                },
                () = tick => {
                    sink.send(Message::Ping(Bytes::new())).await.map_err(|e| ws_error(e, peer))?;
                }
            }
        }
        sink.send(prise_ws::close_message(prise_ws::close_code::NORMAL, ""))
            .await
            .map_err(|e| ws_error(e, peer))?;
        events.emit("eof", json!({ "side": "local" }));
        Ok::<(), NetError>(())
    };
    let down = async {
        // Keep reading after a Close frame until the stream ends, so the
        // close handshake completes cleanly.
        let mut close_seen = false;
        while let Some(msg) = idle(opts.idle_timeout, peer, stream.next()).await? {
            match msg {
                Ok(Message::Text(t)) => {
                    deliver(output, events, opts.out_framing, t.as_bytes(), Some("text")).await?;
                }
                Ok(Message::Binary(b)) => {
                    deliver(output, events, opts.out_framing, &b, Some("binary")).await?;
                }
                Ok(Message::Close(frame)) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    close_seen = true;
                    events.emit("close", json!({ "code": code, "reason": reason }));
                    tracing::debug!(code, reason, "peer closed the websocket");
                }
                Ok(_) => {}
                Err(prise_ws::WsError::ConnectionClosed) => break,
                // After the close handshake, a peer that drops TLS without
                // close_notify has still closed cleanly.
                Err(prise_ws::WsError::Io(e))
                    if close_seen && e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    break;
                }
                Err(e) => return Err(ws_error(e, peer)),
            }
        }
        Ok::<(), NetError>(())
    };
    tokio::pin!(up, down);
    let mut up_done = false;
    loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                match r {
                    Ok(()) => {}
                    // The peer closed first: the reader reports how.
                    Err(NetError::Protocol(_)) => {}
                    Err(e) => return Err(e),
                }
                up_done = true;
            }
            r = &mut down => return r,
        }
    }
}
