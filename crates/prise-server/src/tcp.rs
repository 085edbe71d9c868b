//! The TCP line protocol transport (`--tcp`), usable with plain `nc`.
//!
//! One task per connection: it reads lines (capped, see
//! [`prise_proto::line::CommandLineDecoder`]), answers commands, and writes the
//! session's queued pushes. A blocked write never blocks the hub: the queue
//! fills, the hub marks the session a slow consumer, and the task drops the
//! connection.

use crate::Shared;
use crate::auth::{AuthError, Denied, Identity};
use crate::ratelimit::{IpPermit, MessageLimiter};
use crate::tls::MaybeTls;
use bytes::{Bytes, BytesMut};
use prise_hub::{CloseReason, HubError, Outbound, Session, Transport};
use prise_proto::line::{self, Command, CommandLineDecoder, LineError, ParseError};
use prise_proto::message::Message;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Most queued pushes written in one go.
const WRITE_BATCH: usize = 64;
/// Answers are written out once this many bytes are pending.
const FLUSH_AT: usize = 64 * 1024;
/// Default number of messages `HISTORY room` returns.
const DEFAULT_HISTORY: usize = 20;

/// Accepts connections until shutdown.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let Some(permit) = crate::ratelimit::admit(
                    &shared,
                    &stream,
                    peer,
                    crate::ratelimit::Listener::Tcp,
                ) else {
                    continue;
                };
                let shared2 = Arc::clone(&shared);
                let span = tracing::info_span!("tcp", %peer);
                shared
                    .tracker
                    .spawn(connection(stream, peer, shared2, permit).instrument(span));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn msg_line(m: &Message) -> Bytes {
    let mut s = String::new();
    line::write_msg(&mut s, m);
    Bytes::from(s)
}

fn encode_event(out: &mut Vec<u8>, ev: &Outbound) {
    match ev {
        Outbound::Message(d) => {
            out.extend_from_slice(&d.encoded(Transport::Tcp, msg_line));
        }
        Outbound::Joined { room, user } => {
            let _ = writeln_bytes(out, format_args!("JOINED {room} {}", user.name));
        }
        Outbound::Left { room, user } => {
            let _ = writeln_bytes(out, format_args!("LEFT {room} {}", user.name));
        }
        Outbound::Typing { room, user, typing } => {
            let on = if *typing { "on" } else { "off" };
            let _ = writeln_bytes(out, format_args!("TYPING {room} {} {on}", user.name));
        }
    }
}

fn writeln_bytes(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    out.write_fmt(args)?;
    out.push(b'\n');
    Ok(())
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
    let hub = &shared.hub;
    let (session, mut rx) = match hub.connect(Transport::Tcp, None) {
        Ok(s) => s,
        Err(e) => {
            let mut out = String::new();
            line::write_err(&mut out, e.code(), &e.to_string());
            let _ = stream.write_all(out.as_bytes()).await;
            return;
        }
    };
    tracing::debug!(session = session.id.0, %peer, "connected");
    let anonymous_ok = shared.security.anonymous_tcp;
    let mut conn = Conn {
        shared: &shared,
        session: &session,
        decoder: CommandLineDecoder::new(hub.config().limits.max_line),
        out: String::new(),
        identity: Identity::Anonymous,
        anonymous_ok,
        limiter: MessageLimiter::new(&shared.security.rate),
        deadline: (!anonymous_ok)
            .then(|| tokio::time::Instant::now() + shared.security.auth_timeout),
    };
    let _ = writeln!(
        conn.out,
        "HELLO prise/{} {} name={}{} (HELP for commands)",
        env!("CARGO_PKG_VERSION"),
        line::PROTOCOL,
        session.user().name,
        if anonymous_ok { "" } else { " auth=required" },
    );
    let result = conn.run(stream, &mut rx).await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended");
    }
    hub.disconnect(&session);
}

struct Conn<'a> {
    shared: &'a Shared,
    session: &'a Arc<Session>,
    decoder: CommandLineDecoder,
    out: String,
    identity: Identity,
    anonymous_ok: bool,
    limiter: MessageLimiter,
    /// When the token expires (or, unauthenticated where that is not
    /// allowed, when the time to authenticate runs out).
    deadline: Option<tokio::time::Instant>,
}

enum Flow {
    Continue,
    Quit,
    /// Write the text, then close.
    Close(String),
}

/// Resolves at `deadline`, never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Conn<'_> {
    async fn run(
        &mut self,
        stream: MaybeTls,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> std::io::Result<()> {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut buf = BytesMut::new();
        let mut pushes = Vec::new();
        loop {
            if !self.out.is_empty() {
                let bytes = std::mem::take(&mut self.out);
                tokio::select! {
                    r = wr.write_all(bytes.as_bytes()) => r?,
                    _ = self.session.closed() => return self.close(&mut wr).await,
                }
            }
            let deadline = self.deadline;
            tokio::select! {
                biased;
                _ = self.session.closed() => return self.close(&mut wr).await,
                _ = until(deadline) => {
                    if self.identity.claims().is_some() {
                        tracing::debug!("token expired");
                        self.session.close(CloseReason::AuthExpired);
                        return self.close(&mut wr).await;
                    }
                    self.out.push_str("ERR AUTH_REQUIRED no AUTH in time\nBYE authentication timeout\n");
                    return self.finish(&mut wr).await;
                }
                _ = self.shared.shutdown.cancelled() => {
                    self.session.close(CloseReason::Shutdown);
                    return self.close(&mut wr).await;
                }
                n = rx.recv_many(&mut pushes, WRITE_BATCH) => {
                    if n == 0 {
                        return Ok(());
                    }
                    let mut bytes = Vec::with_capacity(n * 64);
                    for ev in pushes.drain(..) {
                        encode_event(&mut bytes, &ev);
                    }
                    tokio::select! {
                        r = wr.write_all(&bytes) => r?,
                        _ = self.session.closed() => return self.close(&mut wr).await,
                    }
                }
                r = rd.read_buf(&mut buf) => {
                    if r? == 0 {
                        return Ok(());
                    }
                    loop {
                        match self.decoder.decode(&mut buf) {
                            Ok(Some(l)) => {
                                match self.command(&l).await {
                                    Flow::Continue => {}
                                    Flow::Quit => {
                                        self.out.push_str("BYE\n");
                                        wr.write_all(self.out.as_bytes()).await?;
                                        let _ = wr.shutdown().await;
                                        return Ok(());
                                    }
                                    Flow::Close(text) => {
                                        self.out.push_str(&text);
                                        return self.finish(&mut wr).await;
                                    }
                                }
                                if self.out.len() >= FLUSH_AT {
                                    // Pipelined commands: write answers as they
                                    // come so they never pile up in memory.
                                    let bytes = std::mem::take(&mut self.out);
                                    tokio::select! {
                                        r = wr.write_all(bytes.as_bytes()) => r?,
                                        _ = self.session.closed() => return self.close(&mut wr).await,
                                    }
                                }
                            }
                            Ok(None) => break,
                            Err(LineError::TooLong(max)) => line::write_err(
                                &mut self.out,
                                "LINE_TOO_LONG",
                                &format!("line longer than {max} bytes was discarded"),
                            ),
                            Err(LineError::BadUtf8) => {
                                line::write_err(&mut self.out, "BAD_UTF8", "line is not valid UTF-8")
                            }
                        }
                    }
                    if buf.is_empty() && buf.capacity() > 4096 {
                        // Give back a buffer a long line made grow.
                        buf = BytesMut::new();
                    }
                }
            }
        }
    }

    /// Writes what is pending (bounded in time), then closes.
    async fn finish<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        let text = std::mem::take(&mut self.out);
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), async {
            let _ = wr.write_all(text.as_bytes()).await;
            let _ = wr.shutdown().await;
        })
        .await;
        Ok(())
    }

    async fn close<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        let reason = self.session.close_reason().unwrap_or(CloseReason::Shutdown);
        let text = match reason {
            CloseReason::SlowConsumer => {
                "ERR SLOW_CONSUMER too many undelivered messages; reconnect and JOIN with SINCE\nBYE slow consumer\n".to_owned()
            }
            CloseReason::AuthExpired => {
                "ERR AUTH_EXPIRED token expired; reconnect with a fresh token\nBYE authentication expired\n".to_owned()
            }
            other => format!("BYE {}\n", other.as_str()),
        };
        // Best effort, bounded: a peer that does not read gets nothing more.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), async {
            let _ = wr.write_all(text.as_bytes()).await;
            let _ = wr.shutdown().await;
        })
        .await;
        Ok(())
    }

    fn err(&mut self, code: &str, message: &str) {
        line::write_err(&mut self.out, code, message);
    }

    fn hub_err(&mut self, e: &HubError) {
        line::write_err(&mut self.out, e.code(), &e.to_string());
    }

    fn denied(&mut self, d: Denied, room: &str) {
        line::write_err(&mut self.out, d.code(), &d.message(room));
    }

    /// `AUTH token`: first authentication or refresh.
    fn auth(&mut self, token: &str) -> Flow {
        let auth = &self.shared.security.auth;
        let result = match &self.identity {
            Identity::Token(current) => auth.refresh(current, token),
            Identity::Anonymous if !self.session.rooms().is_empty() => {
                Err(AuthError::BadClaims("AUTH before JOIN".into()))
            }
            Identity::Anonymous => auth.verify(token),
        };
        match result {
            Ok(claims) => {
                let user = claims.user();
                if self.identity.claims().is_none() {
                    self.shared.hub.set_user(self.session, user.clone());
                }
                let left = claims.remaining(std::time::SystemTime::now());
                self.deadline = Some(tokio::time::Instant::now() + left);
                let _ = writeln!(self.out, "OK {} exp={}", user.name, claims.exp);
                self.identity = Identity::Token(claims);
                Flow::Continue
            }
            Err(e) => {
                crate::ratelimit::refused("auth_failed");
                let mut text = String::new();
                line::write_err(&mut text, e.code(), &e.to_string());
                text.push_str("BYE authentication failed\n");
                Flow::Close(text)
            }
        }
    }

    async fn command(&mut self, l: &str) -> Flow {
        let cmd = match Command::parse(l) {
            Ok(c) => c,
            Err(ParseError::Empty) => return Flow::Continue,
            Err(e) => {
                self.err(e.code(), &e.to_string());
                return Flow::Continue;
            }
        };
        if !self.limiter.check() {
            self.err("RATE_LIMITED", "too many requests; slow down");
            return Flow::Continue;
        }
        let open = matches!(
            cmd,
            Command::Ping(_) | Command::Time | Command::Help | Command::Quit | Command::Auth(_)
        );
        if !open && !self.identity.is_allowed(self.anonymous_ok) {
            self.denied(Denied::AuthRequired, "");
            return Flow::Continue;
        }
        let room_check = match &cmd {
            Command::Join { room, .. } | Command::Who(room) | Command::History { room, .. } => self
                .identity
                .check_join(self.anonymous_ok, room)
                .err()
                .map(|d| (d, room.clone())),
            Command::Say { room, .. } => self
                .identity
                .check_publish(self.anonymous_ok, room)
                .err()
                .map(|d| (d, room.clone())),
            _ => None,
        };
        if let Some((d, room)) = room_check {
            self.denied(d, &room);
            return Flow::Continue;
        }
        let hub = &self.shared.hub;
        match cmd {
            Command::Ping(token) => match token {
                Some(t) => {
                    let _ = writeln!(self.out, "PONG {t}");
                }
                None => self.out.push_str("PONG\n"),
            },
            Command::Time => {
                let now =
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(hub.clock().now_ms());
                let _ = writeln!(self.out, "TIME {}", humantime::format_rfc3339_millis(now));
            }
            Command::Nick(_) if self.identity.claims().is_some() => {
                self.err("FORBIDDEN", "your name comes from your token");
            }
            Command::Nick(name) => match hub.rename(self.session, &name) {
                Ok(u) => {
                    let _ = writeln!(self.out, "OK {}", u.name);
                }
                Err(e) => self.hub_err(&e),
            },
            Command::Auth(token) => return self.auth(&token),
            Command::Join { room, since } => {
                match hub.join(self.session, &room, since, None).await {
                    Ok(j) => {
                        let _ = writeln!(
                            self.out,
                            "OK {} offset={} members={} epoch={}",
                            j.room,
                            j.offset,
                            j.members.len(),
                            j.epoch
                        );
                        if let Some(false) = j.recovered {
                            self.err(
                                "HISTORY_GAP",
                                "some messages after that offset are no longer retained",
                            );
                        }
                        for m in &j.replay {
                            line::write_msg(&mut self.out, m);
                        }
                    }
                    Err(e) => self.hub_err(&e),
                }
            }
            Command::Leave(room) => match hub.leave(self.session, &room) {
                Ok(()) => {
                    let _ = writeln!(self.out, "OK {room}");
                }
                Err(e) => self.hub_err(&e),
            },
            Command::Say { room, text } => {
                match hub
                    .publish(self.session, &room, serde_json::Value::String(text))
                    .await
                {
                    Ok(m) => {
                        let _ = writeln!(self.out, "OK {}", m.offset);
                    }
                    Err(e) => self.hub_err(&e),
                }
            }
            Command::Typing { room, on } => {
                if let Err(e) = hub.typing(self.session, &room, on) {
                    self.hub_err(&e);
                }
            }
            Command::Who(room) => {
                let members = hub.presence(&room);
                let names: Vec<&str> = members.iter().map(|u| u.name.as_str()).collect();
                let _ = writeln!(
                    self.out,
                    "MEMBERS {room} {} {}",
                    names.len(),
                    names.join(" ")
                );
            }
            Command::History { room, count } => {
                match hub
                    .history(&room, None, count.unwrap_or(DEFAULT_HISTORY))
                    .await
                {
                    Ok((_, page)) => {
                        for m in &page.messages {
                            line::write_msg(&mut self.out, m);
                        }
                        let _ = writeln!(self.out, "OK {}", page.messages.len());
                    }
                    Err(e) => self.hub_err(&e),
                }
            }
            Command::Rooms => {
                let mut rooms = hub.rooms(1000);
                if let Some(c) = self.identity.claims() {
                    rooms.retain(|r| c.may_join(&r.name));
                }
                for r in &rooms {
                    let _ = writeln!(self.out, "ROOM {} {} {}", r.name, r.members, r.offset);
                }
                let _ = writeln!(self.out, "OK {}", rooms.len());
            }
            Command::Help => {
                for h in line::HELP {
                    let _ = writeln!(self.out, "HELP {h}");
                }
                self.out.push_str("OK\n");
            }
            Command::Quit => return Flow::Quit,
        }
        Flow::Continue
    }
}
