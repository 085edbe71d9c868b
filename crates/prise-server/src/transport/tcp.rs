//! The TCP line protocol transport (`--tcp`), usable with plain `nc`.
//!
//! One task per connection: it reads lines (capped, see
//! [`prise_proto::line::CommandLineDecoder`]) into requests for
//! [`Client::apply`], writes the answers, and writes the session's queued
//! pushes. A blocked write never blocks the hub: the queue
//! fills, the hub marks the session a slow consumer, and the task drops the
//! connection.

use super::client::{Client, Credentials, Deadline, Handshake};
use super::reply::{Refusal, Reply};
use super::request::Request;
use crate::Shared;
use crate::security::ratelimit::{IpPermit, Listener};
use crate::security::tls::MaybeTls;
use bytes::{Bytes, BytesMut};
use prise_hub::{CloseReason, Outbound, Transport};
use prise_proto::line::{Command, CommandLineDecoder, LineError, ParseError, encode};
use prise_proto::message::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Most queued pushes written in one go.
const WRITE_BATCH: usize = 64;
/// Answers are written out once this many bytes are pending.
const FLUSH_AT: usize = 64 * 1024;
/// How long the last lines before a close may take to write.
const CLOSE_WAIT: Duration = Duration::from_millis(200);

/// Accepts connections until shutdown.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let conns = Arc::clone(&shared);
    crate::accept::serve(
        listener,
        shared,
        Listener::Tcp,
        move |stream, peer, permit| {
            let span = tracing::info_span!("tcp", %peer);
            connection(stream, peer, Arc::clone(&conns), permit).instrument(span)
        },
    )
    .await;
}

fn msg_line(m: &Message) -> Bytes {
    let mut s = String::new();
    encode::message(&mut s, m);
    Bytes::from(s)
}

/// Appends one hub push.
pub(super) fn encode_push(out: &mut Vec<u8>, line: &mut String, ev: &Outbound) {
    if let Outbound::Message(d) = ev {
        out.extend_from_slice(&d.encoded(Transport::Tcp, msg_line));
        return;
    }
    line.clear();
    match ev {
        Outbound::Message(_) => {}
        Outbound::Joined { room, user } => encode::joined(line, room, &user.name),
        Outbound::Left { room, user } => encode::left(line, room, &user.name),
        Outbound::PresenceDiff(d) => {
            let text = d.encoded(Transport::Tcp, |diff| {
                let mut s = String::new();
                encode::presence_diff(&mut s, diff);
                Bytes::from(s)
            });
            out.extend_from_slice(&text);
            return;
        }
        Outbound::Typing { room, user, typing } => encode::typing(line, room, &user.name, *typing),
    }
    out.extend_from_slice(line.as_bytes());
}

/// Appends the answer to one request; `true` when the session ends after it.
pub(super) fn encode_reply(out: &mut String, reply: &Reply) -> bool {
    match reply {
        Reply::Nothing => {}
        Reply::Pong(token) => encode::pong(out, token.as_ref().and_then(|t| t.as_str())),
        Reply::Time(ms) => {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(*ms);
            encode::time(out, &humantime::format_rfc3339_millis(at).to_string());
        }
        Reply::Authenticated { user, exp } => encode::authenticated(out, &user.name, *exp),
        Reply::Named(user) => encode::ok_with(out, &user.name),
        Reply::Joined(j) => {
            encode::joined_room(out, &j.room, j.offset, j.members.count, &j.epoch.0);
            if j.recovered == Some(false) {
                let r = Refusal::history_gap();
                encode::error(out, &r.code, &r.message);
            }
            for m in &j.replay {
                encode::message(out, m);
            }
        }
        Reply::Left(room) => encode::ok_with(out, room),
        Reply::Published(m) => encode::published(out, m.offset),
        Reply::RpcResult(result) => encode::ok_with(out, result),
        // Not a request of this protocol: its decoder never makes one.
        Reply::Relayed(_) => encode::error(out, "BAD_REQUEST", "not a request of this protocol"),
        Reply::Presence { room, page } => {
            let names = page.members.iter().map(|u| u.name.as_str());
            encode::members(out, room, page.count, names);
            if let Some(next) = page.next_text() {
                encode::next(out, room, &next);
            }
        }
        Reply::History { page, .. } => {
            for m in &page.messages {
                encode::message(out, m);
            }
            encode::ok_with(out, page.messages.len());
        }
        Reply::Rooms(rooms) => {
            for r in rooms {
                encode::room(out, r);
            }
            encode::ok_with(out, rooms.len());
        }
        Reply::Help => encode::help(out),
        Reply::Bye => {
            encode::bye(out, None);
            return true;
        }
        Reply::Refused(r) => encode::error(out, &r.code, &r.message),
        Reply::Ended(r) => {
            encode::error(out, &r.code, &r.message);
            encode::bye(out, Some("authentication failed"));
            return true;
        }
    }
    false
}

/// A line that is not a request.
fn malformed(e: &LineError) -> Request {
    Request::Malformed(match e {
        LineError::TooLong(max) => Refusal::new(
            "LINE_TOO_LONG",
            format!("line longer than {max} bytes was discarded"),
        ),
        LineError::BadUtf8 => Refusal::new("BAD_UTF8", "line is not valid UTF-8"),
    })
}

/// The request a line holds; `None` for an empty line.
fn request(line: &str) -> Option<Request> {
    match Command::parse(line) {
        Ok(c) => Some(c.into()),
        Err(ParseError::Empty) => None,
        Err(e) => Some(Request::Malformed(Refusal::new(e.code(), e.to_string()))),
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, permit: IpPermit) {
    let _permit = permit;
    let tls = shared.security.tls.as_ref().map(|t| t.tcp.clone());
    let mut stream =
        match MaybeTls::accept(stream, tls.as_ref(), shared.security.header_timeout).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "tls handshake failed");
                return;
            }
        };
    let credentials = Credentials {
        remote: Some(peer),
        ..Credentials::default()
    };
    let connected =
        Client::connect(shared.ctx(), Transport::Tcp, credentials, Handshake::Later).await;
    let (client, mut rx) = match connected {
        Ok(c) => c,
        Err(r) => {
            let mut out = String::new();
            encode::error(&mut out, &r.code, &r.message);
            let _ = stream.write_all(out.as_bytes()).await;
            return;
        }
    };
    let session = Arc::clone(client.session());
    tracing::debug!(session = session.id.0, %peer, "connected");
    let mut conn = Conn {
        shared: &shared,
        decoder: CommandLineDecoder::new(shared.hub.config().limits.max_line),
        out: String::new(),
        client,
    };
    encode::hello(
        &mut conn.out,
        env!("CARGO_PKG_VERSION"),
        &session.user().name,
        conn.client.needs_auth(),
    );
    if let Err(e) = conn.run(stream, &mut rx).await {
        tracing::debug!(error = %e, "connection ended");
    }
    shared.hub.disconnect(&session);
}

struct Conn<'a> {
    shared: &'a Shared,
    decoder: CommandLineDecoder,
    /// Answers not yet written.
    out: String,
    client: Client,
}

/// What the connection does after reading.
enum Flow {
    Continue,
    /// Write what is pending, then close.
    End,
    /// The hub ended the session.
    Closed(CloseReason),
}

impl Conn<'_> {
    async fn run(
        &mut self,
        stream: MaybeTls,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> std::io::Result<()> {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let session = Arc::clone(self.client.session());
        let mut buf = BytesMut::new();
        let mut pushes = Vec::new();
        let mut line = String::new();
        // The waits for rare events live across iterations (see ws.rs).
        let closed = session.closed();
        tokio::pin!(closed);
        let shutdown = self.shared.shutdown.cancelled();
        tokio::pin!(shutdown);
        let mut armed = self.client.deadline();
        let expiry = super::until(armed);
        tokio::pin!(expiry);
        loop {
            if !self.out.is_empty() {
                let bytes = std::mem::take(&mut self.out);
                tokio::select! {
                    r = wr.write_all(bytes.as_bytes()) => r?,
                    reason = &mut closed => return self.close(&mut wr, reason).await,
                }
            }
            if self.client.deadline() != armed {
                armed = self.client.deadline();
                expiry.set(super::until(armed));
            }
            tokio::select! {
                biased;
                reason = &mut closed => return self.close(&mut wr, reason).await,
                () = &mut expiry => match self.client.deadline_passed(self.shared.ctx()).await {
                    Deadline::Extended => {}
                    Deadline::Expired => {
                        tracing::debug!("token expired");
                        return self.close(&mut wr, CloseReason::AuthExpired).await;
                    }
                    Deadline::AuthTimeout => {
                        let r = Refusal::auth_timeout(Transport::Tcp);
                        encode::error(&mut self.out, &r.code, &r.message);
                        encode::bye(&mut self.out, Some("authentication timeout"));
                        return self.finish(&mut wr).await;
                    }
                },
                () = &mut shutdown => {
                    session.close(CloseReason::Shutdown);
                    return self.close(&mut wr, CloseReason::Shutdown).await;
                }
                n = rx.recv_many(&mut pushes, WRITE_BATCH) => {
                    if n == 0 {
                        return Ok(());
                    }
                    let mut bytes = Vec::with_capacity(n * 64);
                    for ev in pushes.drain(..) {
                        encode_push(&mut bytes, &mut line, &ev);
                    }
                    tokio::select! {
                        r = wr.write_all(&bytes) => r?,
                        reason = &mut closed => return self.close(&mut wr, reason).await,
                    }
                }
                r = rd.read_buf(&mut buf) => {
                    if r? == 0 {
                        return Ok(());
                    }
                    match self.read(&mut buf, &mut wr, &mut closed).await? {
                        Flow::Continue => {}
                        Flow::End => return self.finish(&mut wr).await,
                        Flow::Closed(reason) => return self.close(&mut wr, reason).await,
                    }
                    if buf.is_empty() && buf.capacity() > 4096 {
                        // Give back a buffer a long line made grow.
                        buf = BytesMut::new();
                    }
                }
            }
        }
    }

    /// Answers every whole line in `buf`.
    async fn read<W: AsyncWrite + Unpin>(
        &mut self,
        buf: &mut BytesMut,
        wr: &mut W,
        closed: &mut (impl std::future::Future<Output = CloseReason> + Unpin),
    ) -> std::io::Result<Flow> {
        loop {
            let req = match self.decoder.decode(buf) {
                Ok(Some(l)) => request(&l),
                Ok(None) => return Ok(Flow::Continue),
                Err(e) => Some(malformed(&e)),
            };
            let Some(req) = req else { continue };
            let reply = self.client.apply(self.shared.ctx(), req).await;
            if encode_reply(&mut self.out, &reply) {
                return Ok(Flow::End);
            }
            if self.out.len() >= FLUSH_AT {
                // Pipelined commands: write answers as they come so they
                // never pile up in memory.
                let bytes = std::mem::take(&mut self.out);
                tokio::select! {
                    r = wr.write_all(bytes.as_bytes()) => r?,
                    reason = &mut *closed => return Ok(Flow::Closed(reason)),
                }
            }
        }
    }

    /// Writes what is pending (bounded in time), then closes.
    async fn finish<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        let text = std::mem::take(&mut self.out);
        // Best effort, bounded: a peer that does not read gets nothing more.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            let _ = wr.write_all(text.as_bytes()).await;
            let _ = wr.shutdown().await;
        })
        .await;
        Ok(())
    }

    /// Tells the client why the hub ended its session, then closes.
    async fn close<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        reason: CloseReason,
    ) -> std::io::Result<()> {
        self.out.clear();
        if let Some(r) = Refusal::for_session(self.client.session(), reason, Transport::Tcp) {
            encode::error(&mut self.out, &r.code, &r.message);
        }
        encode::bye(&mut self.out, Some(reason.as_str()));
        self.finish(wr).await
    }
}
