//! The TCP line protocol transport (`--tcp`), usable with plain `nc`.
//!
//! One task per connection: it reads lines (capped, see
//! [`prise_proto::line::LineDecoder`]), answers commands, and writes the
//! session's queued pushes. A blocked write never blocks the hub: the queue
//! fills, the hub marks the session a slow consumer, and the task drops the
//! connection.

use crate::Shared;
use bytes::{Bytes, BytesMut};
use prise_hub::{CloseReason, HubError, Outbound, Session, Transport};
use prise_proto::line::{self, Command, LineDecoder, LineError, ParseError};
use prise_proto::message::Message;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
                let shared2 = Arc::clone(&shared);
                let span = tracing::info_span!("tcp", %peer);
                shared
                    .tracker
                    .spawn(connection(stream, peer, shared2).instrument(span));
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

async fn connection(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
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
    let mut conn = Conn {
        shared: &shared,
        session: &session,
        decoder: LineDecoder::new(hub.config().limits.max_line),
        out: String::new(),
    };
    let _ = writeln!(
        conn.out,
        "HELLO prise/{} {} name={} (HELP for commands)",
        env!("CARGO_PKG_VERSION"),
        line::PROTOCOL,
        session.user().name
    );
    let result = conn.run(&mut stream, &mut rx).await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended");
    }
    hub.disconnect(&session);
}

struct Conn<'a> {
    shared: &'a Shared,
    session: &'a Arc<Session>,
    decoder: LineDecoder,
    out: String,
}

enum Flow {
    Continue,
    Quit,
}

impl Conn<'_> {
    async fn run(
        &mut self,
        stream: &mut TcpStream,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> std::io::Result<()> {
        let (mut rd, mut wr) = stream.split();
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
            tokio::select! {
                biased;
                _ = self.session.closed() => return self.close(&mut wr).await,
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
                                if let Flow::Quit = self.command(&l).await {
                                    self.out.push_str("BYE\n");
                                    wr.write_all(self.out.as_bytes()).await?;
                                    let _ = wr.shutdown().await;
                                    return Ok(());
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

    async fn close(&mut self, wr: &mut tokio::net::tcp::WriteHalf<'_>) -> std::io::Result<()> {
        let reason = self.session.close_reason().unwrap_or(CloseReason::Shutdown);
        let text = match reason {
            CloseReason::SlowConsumer => {
                "ERR SLOW_CONSUMER too many undelivered messages; reconnect and JOIN with SINCE\nBYE slow consumer\n".to_owned()
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

    async fn command(&mut self, l: &str) -> Flow {
        let cmd = match Command::parse(l) {
            Ok(c) => c,
            Err(ParseError::Empty) => return Flow::Continue,
            Err(e) => {
                self.err(e.code(), &e.to_string());
                return Flow::Continue;
            }
        };
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
            Command::Nick(name) => match hub.rename(self.session, &name) {
                Ok(u) => {
                    let _ = writeln!(self.out, "OK {}", u.name);
                }
                Err(e) => self.hub_err(&e),
            },
            Command::Auth(_) => self.err(
                "AUTH_FAILED",
                "token authentication is not configured on this server; use NICK",
            ),
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
                let rooms = hub.rooms(1000);
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
