//! `prise connect sio://host:port[/namespace]`: a Socket.IO v4 client.
//!
//! ```text
//!  stdin "event json-args" ─line::parse─▶ socketio::encode_event ─▶ Engine.outgoing
//!  Engine.incoming ─socketio::Decoder─▶ EVENT: "event json-args" on stdout
//!                                       ACK:   "ack json-args" (with --ack)
//!                                       ping:  pong
//! ```
//!
//! The packet codecs are `prise_proto::engineio` and `prise_proto::socketio`
//! (the hub's own); [`engine`] carries them over a WebSocket or HTTP
//! long-polling. With `--ack`, each emitted event asks for an
//! acknowledgement and the next line waits for it (bounded by
//! `--ack-timeout`). Events the server emits with an ack id are answered
//! with an empty ack. At the end of input (and of a pending ack) the client
//! leaves the namespace and closes the session.

pub mod engine;
pub mod line;

use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use prise_proto::engineio::{Packet as EnginePacket, PacketType};
use prise_proto::socketio::{self, Decoded, PacketKind, PacketLimits};

use crate::codec::{FrameCodec, Framing};
use crate::endpoint::Endpoint;
use crate::error::NetError;
use crate::relay::Input;
use crate::transport::ConnectOptions;

/// The Engine.IO transport (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SioTransport {
    /// A WebSocket from the start.
    #[default]
    Websocket,
    /// HTTP long-polling only.
    Polling,
}

/// Options of `prise connect sio://`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct SioArgs {
    /// sio://: ask for an acknowledgement of each event and print it (`ack json-args`).
    #[arg(long)]
    pub ack: bool,
    /// sio://: with --ack, give up waiting for an acknowledgement after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,
    /// sio://: the auth payload of the namespace CONNECT, a JSON object.
    #[arg(long, value_name = "JSON")]
    pub auth: Option<String>,
    /// sio://: the Engine.IO transport.
    #[arg(long, value_enum, default_value_t = SioTransport::Websocket)]
    pub transport: SioTransport,
}

impl Default for SioArgs {
    fn default() -> Self {
        Self {
            ack: false,
            ack_timeout: Duration::from_secs(10),
            auth: None,
            transport: SioTransport::Websocket,
        }
    }
}

fn bad(peer: &str, what: impl std::fmt::Display) -> NetError {
    NetError::Protocol(format!("{peer}: {what}"))
}

/// Runs the client against `url` until input ends or the server leaves.
///
/// # Errors
/// The connection or a handshake failed, the namespace refused the
/// connection (exit 3), the server broke the protocol, or an ack or the
/// server's heartbeat did not come in time.
pub async fn run(
    url: &Endpoint,
    opts: &ConnectOptions,
    args: &SioArgs,
    max_message: usize,
) -> Result<(), NetError> {
    let auth = match &args.auth {
        Some(text) => {
            let v: Value = serde_json::from_str(text)
                .map_err(|e| NetError::Usage(format!("--auth is not JSON: {e}")))?;
            if !v.is_object() {
                return Err(NetError::Usage("--auth must be a JSON object".into()));
            }
            Some(v)
        }
        None => None,
    };
    let peer = url.to_string();
    let mut engine = match args.transport {
        SioTransport::Websocket => engine::websocket(url, opts).await?,
        SioTransport::Polling => engine::polling(url, opts).await?,
    };
    let nsp = url.path.clone();
    let heartbeat = Duration::from_millis(
        engine
            .handshake
            .ping_interval
            .saturating_add(engine.handshake.ping_timeout)
            .min(3_600_000),
    );
    let connect = socketio::Packet {
        kind: PacketKind::Connect,
        nsp: nsp.clone(),
        id: None,
        data: auth,
        attachments: 0,
    };
    send(&engine, format!("4{}", connect.encode()), &peer).await?;
    let mut decoder = socketio::Decoder::new(PacketLimits::default());
    let mut last_heard = Instant::now();
    // Wait for the namespace's answer.
    loop {
        let packet = tokio::time::timeout_at(last_heard + heartbeat, engine.incoming.recv())
            .await
            .map_err(|_| NetError::TimedOut(format!("waiting for {peer} to accept {nsp}")))?;
        last_heard = Instant::now();
        match packet {
            None => return Err(bad(&peer, "closed before accepting the namespace")),
            Some(p) => match engine_packet(&engine, p?, &mut decoder, &peer).await? {
                Some(d) if d.packet.nsp == nsp => match d.packet.kind {
                    PacketKind::Connect => break,
                    PacketKind::ConnectError => {
                        let message = d
                            .packet
                            .data
                            .as_ref()
                            .map(|v| v.get("message").unwrap_or(v).to_string())
                            .unwrap_or_default();
                        return Err(NetError::Refused(format!("{peer}: {message}")));
                    }
                    _ => {}
                },
                _ => {}
            },
        }
    }
    tracing::debug!(%peer, %nsp, "connected");
    let mut stdout = tokio::io::stdout();
    let mut input = Input::stdin();
    let mut lines = FrameCodec::new(Framing::Lines, max_message);
    let mut next_id: u64 = 0;
    let mut awaiting: Option<(u64, Instant)> = None;
    let mut input_done = false;
    loop {
        if input_done && awaiting.is_none() {
            let leave = format!(
                "4{}",
                socketio::Packet {
                    kind: PacketKind::Disconnect,
                    nsp: nsp.clone(),
                    id: None,
                    data: None,
                    attachments: 0,
                }
                .encode()
            );
            let _ = send(&engine, leave, &peer).await;
            let _ = send(&engine, "1".to_owned(), &peer).await;
            // Let the writer task send them before the process ends.
            drop(engine.outgoing);
            let _ = tokio::time::timeout(Duration::from_secs(2), engine.writer).await;
            return Ok(());
        }
        let ack_deadline = async {
            match awaiting {
                Some((_, at)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = input.next(&mut lines), if !input_done && awaiting.is_none() => match msg? {
                None => input_done = true,
                Some(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let (name, args_) = line::parse(&text)
                        .map_err(|e| NetError::Usage(format!("input line {text:?}: {e}")))?;
                    let id = args.ack.then(|| {
                        next_id += 1;
                        next_id
                    });
                    let mut packet = String::from("4");
                    socketio::encode_event_into(&mut packet, &nsp, id, Some(&name), &args_, 0);
                    send(&engine, packet, &peer).await?;
                    if let Some(id) = id {
                        awaiting = Some((id, Instant::now() + args.ack_timeout));
                    }
                }
            },
            packet = tokio::time::timeout_at(last_heard + heartbeat, engine.incoming.recv()) => {
                let Ok(packet) = packet else {
                    return Err(NetError::TimedOut(format!("{peer}: no heartbeat for {}", humantime::format_duration(heartbeat))));
                };
                last_heard = Instant::now();
                let Some(packet) = packet else {
                    return Err(bad(&peer, "the session ended"));
                };
                let Some(d) = engine_packet(&engine, packet?, &mut decoder, &peer).await? else {
                    continue;
                };
                if d.packet.nsp != nsp {
                    continue;
                }
                if let Some(text) = on_packet(&engine, d, &nsp, &mut awaiting, &peer).await? {
                    let out = format!("{text}\n");
                    let written = match stdout.write_all(out.as_bytes()).await {
                        Ok(()) => stdout.flush().await,
                        Err(e) => Err(e),
                    };
                    written.map_err(|e| NetError::io("writing output", e))?;
                }
            }
            () = ack_deadline => {
                let id = awaiting.map(|(id, _)| id).unwrap_or_default();
                return Err(NetError::TimedOut(format!(
                    "waiting for {peer} to acknowledge event {id} after {}",
                    humantime::format_duration(args.ack_timeout)
                )));
            }
        }
    }
}

async fn send(engine: &engine::Engine, text: String, peer: &str) -> Result<(), NetError> {
    engine
        .outgoing
        .send(text)
        .await
        .map_err(|_| bad(peer, "the session ended"))
}

/// Handles an Engine.IO packet: answers pings, ends on close, feeds
/// messages to the Socket.IO decoder.
async fn engine_packet(
    engine: &engine::Engine,
    packet: EnginePacket,
    decoder: &mut socketio::Decoder,
    peer: &str,
) -> Result<Option<Decoded>, NetError> {
    match packet {
        EnginePacket::Text(PacketType::Ping, data) => {
            send(engine, format!("3{data}"), peer).await?;
            Ok(None)
        }
        EnginePacket::Text(PacketType::Close, _) => Err(bad(peer, "the server closed the session")),
        EnginePacket::Text(PacketType::Message, text) => {
            decoder.feed_text(&text).map_err(|e| bad(peer, e))
        }
        EnginePacket::Binary(data) => decoder.feed_binary(data).map_err(|e| bad(peer, e)),
        EnginePacket::Text(..) => Ok(None),
    }
}

/// Handles a Socket.IO packet of our namespace; returns the line to print.
async fn on_packet(
    engine: &engine::Engine,
    d: Decoded,
    nsp: &str,
    awaiting: &mut Option<(u64, Instant)>,
    peer: &str,
) -> Result<Option<String>, NetError> {
    let Decoded {
        packet,
        attachments,
    } = d;
    let mut data = packet.data.unwrap_or(Value::Null);
    line::inline_attachments(&mut data, &attachments);
    let mut items = match data {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    match packet.kind {
        PacketKind::Event | PacketKind::BinaryEvent => {
            if items.is_empty() {
                return Ok(None);
            }
            let name = match items.remove(0) {
                Value::String(s) => s,
                other => other.to_string(),
            };
            if let Some(id) = packet.id {
                let mut ack = String::from("4");
                socketio::encode_event_into(&mut ack, nsp, Some(id), None, &[], 0);
                send(engine, ack, peer).await?;
            }
            Ok(Some(line::format(&name, &items)))
        }
        PacketKind::Ack | PacketKind::BinaryAck => {
            if awaiting.is_some_and(|(id, _)| Some(id) == packet.id) {
                *awaiting = None;
                return Ok(Some(line::format("ack", &items)));
            }
            Ok(None)
        }
        PacketKind::Disconnect => Err(bad(peer, format!("the server closed namespace {nsp}"))),
        PacketKind::Connect | PacketKind::ConnectError => Ok(None),
    }
}
