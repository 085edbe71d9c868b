//! One hub client over any of the hub's protocols, reduced to what the
//! benchmarks need: join a room, publish with an acknowledgement, receive
//! messages.
//!
//! - `tcp://host:port` — the TCP line protocol;
//! - `ws://host:port/ws` — the WebSocket JSON protocol;
//! - `sio://host:port` — Socket.IO v4 over WebSocket (`/socket.io/?EIO=4&transport=websocket`),
//!   the events `join`, `publish` (with acks) and the `message` push.

use crate::BenchError;
use futures_util::{SinkExt, StreamExt};
use prise_ws::{Message, WebSocket};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// The protocol of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP line protocol.
    Tcp,
    /// WebSocket JSON.
    Ws,
    /// Socket.IO over WebSocket.
    Sio,
}

/// A parsed target URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// Protocol.
    pub protocol: Protocol,
    /// Server address.
    pub addr: SocketAddr,
    /// WebSocket URL (ws and sio).
    pub ws_url: String,
}

impl Target {
    /// Parses `tcp://`, `ws://` or `sio://` URLs with a numeric host.
    ///
    /// # Errors
    /// [`BenchError::Target`] for anything else.
    pub fn parse(s: &str) -> Result<Target, BenchError> {
        let url = url::Url::parse(s).map_err(|e| BenchError::Target(format!("{s}: {e}")))?;
        let protocol = match url.scheme() {
            "tcp" => Protocol::Tcp,
            "ws" => Protocol::Ws,
            "sio" => Protocol::Sio,
            other => {
                return Err(BenchError::Target(format!(
                    "{s}: scheme {other} is not one of tcp, ws, sio"
                )));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| BenchError::Target(format!("{s}: no host")))?;
        let port = url
            .port()
            .ok_or_else(|| BenchError::Target(format!("{s}: no port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .map_err(|_| BenchError::Target(format!("{s}: host must be an IP address")))?;
        let ws_url = match protocol {
            Protocol::Tcp => String::new(),
            Protocol::Ws => {
                let path = if url.path().is_empty() || url.path() == "/" {
                    "/ws"
                } else {
                    url.path()
                };
                format!("ws://{addr}{path}")
            }
            Protocol::Sio => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
        };
        Ok(Target {
            protocol,
            addr,
            ws_url,
        })
    }
}

/// Opens a TCP connection from `source` (a loopback address, so many
/// connections spread over several source addresses).
///
/// # Errors
/// The connect error.
pub async fn dial(
    target: SocketAddr,
    source: Option<std::net::IpAddr>,
) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.set_nodelay(true)?;
    socket.connect(target).await
}

/// A message as the benchmarks see it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message content.
    pub content: Value,
}

enum Inner {
    Tcp {
        reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
        writer: tokio::net::tcp::OwnedWriteHalf,
        line: String,
    },
    Ws(Box<WebSocket<TcpStream>>),
    Sio {
        ws: Box<WebSocket<TcpStream>>,
        next_ack: u64,
    },
}

/// A connected client.
pub struct Client {
    inner: Inner,
}

fn proto_err(what: impl Into<String>) -> BenchError {
    BenchError::Protocol(what.into())
}

impl Client {
    /// Connects and completes the protocol's handshake.
    ///
    /// # Errors
    /// Connection or handshake failures.
    pub async fn connect(
        target: &Target,
        source: Option<std::net::IpAddr>,
    ) -> Result<Client, BenchError> {
        let stream = dial(target.addr, source).await?;
        let inner = match target.protocol {
            Protocol::Tcp => {
                let (r, w) = stream.into_split();
                let mut reader = BufReader::new(r);
                let mut line = String::new();
                reader.read_line(&mut line).await?;
                if !line.starts_with("HELLO") {
                    return Err(proto_err(format!("unexpected greeting {line:?}")));
                }
                Inner::Tcp {
                    reader,
                    writer: w,
                    line: String::new(),
                }
            }
            Protocol::Ws => {
                let (ws, _) = prise_ws::connect(
                    stream,
                    &target.ws_url,
                    &Default::default(),
                    Default::default(),
                )
                .await
                .map_err(|e| proto_err(e.to_string()))?;
                Inner::Ws(Box::new(ws))
            }
            Protocol::Sio => {
                let (mut ws, _) = prise_ws::connect(
                    stream,
                    &target.ws_url,
                    &Default::default(),
                    Default::default(),
                )
                .await
                .map_err(|e| proto_err(e.to_string()))?;
                // Engine.IO open packet, then the Socket.IO CONNECT to "/".
                let open = next_text(&mut ws).await?;
                if !open.starts_with('0') {
                    return Err(proto_err(format!("unexpected engine.io open {open:?}")));
                }
                ws.send(Message::text("40"))
                    .await
                    .map_err(|e| proto_err(e.to_string()))?;
                loop {
                    let t = next_text(&mut ws).await?;
                    if t.starts_with("40") {
                        break;
                    }
                    if t.starts_with("44") {
                        return Err(proto_err(format!("connect refused: {t}")));
                    }
                }
                Inner::Sio {
                    ws: Box::new(ws),
                    next_ack: 0,
                }
            }
        };
        Ok(Client { inner })
    }

    /// Joins a room and waits for the answer; returns the answer's size in
    /// bytes (the `OK` line, the `ack` frame, the Socket.IO ack packet).
    ///
    /// # Errors
    /// Protocol or connection failures.
    pub async fn join(&mut self, room: &str) -> Result<usize, BenchError> {
        Ok(match &mut self.inner {
            Inner::Tcp { writer, .. } => {
                writer
                    .write_all(format!("JOIN {room}\n").as_bytes())
                    .await?;
                let l = self.tcp_until("OK", "ERR").await?;
                if l.starts_with("ERR") {
                    return Err(proto_err(l));
                }
                l.len() + 1
            }
            Inner::Ws(ws) => {
                send_json(ws, json!({"type": "join", "room": room})).await?;
                let ack = until_type(ws, "ack").await?;
                ack.to_string().len()
            }
            Inner::Sio { ws, next_ack } => {
                let id = *next_ack;
                *next_ack += 1;
                let pkt = format!("42{id}{}", json!(["join", room]));
                ws.send(Message::text(pkt))
                    .await
                    .map_err(|e| proto_err(e.to_string()))?;
                let (_, size) = sio_ack_sized(ws, id).await?;
                size
            }
        })
    }

    /// Publishes and waits for the acknowledgement. Pushes that arrive
    /// meanwhile are dropped (publishers in the benchmarks do not subscribe).
    ///
    /// # Errors
    /// Protocol or connection failures, or a refused publish.
    pub async fn publish(&mut self, room: &str, content: &Value) -> Result<(), BenchError> {
        match &mut self.inner {
            Inner::Tcp { writer, .. } => {
                let text = match content {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                writer
                    .write_all(format!("SAY {room} {text}\n").as_bytes())
                    .await?;
                let l = self.tcp_until("OK", "ERR").await?;
                if l.starts_with("ERR") {
                    return Err(proto_err(l));
                }
            }
            Inner::Ws(ws) => {
                send_json(
                    ws,
                    json!({"type": "message", "room": room, "content": content}),
                )
                .await?;
                let v = until_type2(ws, "ack", "error").await?;
                if v["type"] == "error" {
                    return Err(proto_err(v.to_string()));
                }
            }
            Inner::Sio { ws, next_ack } => {
                let id = *next_ack;
                *next_ack += 1;
                let pkt = format!(
                    "42{id}{}",
                    json!(["publish", {"room": room, "content": content}])
                );
                ws.send(Message::text(pkt))
                    .await
                    .map_err(|e| proto_err(e.to_string()))?;
                sio_until_ack(ws, id).await?;
            }
        }
        Ok(())
    }

    /// Waits for the next published message.
    ///
    /// # Errors
    /// Protocol or connection failures (end of stream included).
    pub async fn next_message(&mut self) -> Result<Received, BenchError> {
        match &mut self.inner {
            Inner::Tcp { reader, line, .. } => loop {
                line.clear();
                if reader.read_line(line).await? == 0 {
                    return Err(proto_err("connection closed"));
                }
                if let Some(rest) = line.strip_prefix("MSG ") {
                    // MSG room offset user text
                    let text = rest.splitn(4, ' ').nth(3).unwrap_or("").trim_end();
                    let content = serde_json::from_str(text)
                        .unwrap_or_else(|_| Value::String(text.to_owned()));
                    return Ok(Received { content });
                }
            },
            Inner::Ws(ws) => {
                let v = until_type(ws, "message").await?;
                Ok(Received {
                    content: v["message"]["content"].clone(),
                })
            }
            Inner::Sio { ws, .. } => loop {
                let t = next_text(ws).await?;
                if t == "2" {
                    ws.send(Message::text("3"))
                        .await
                        .map_err(|e| proto_err(e.to_string()))?;
                    continue;
                }
                if let Some(body) = t.strip_prefix("42") {
                    let v: Value =
                        serde_json::from_str(body).map_err(|e| proto_err(e.to_string()))?;
                    if v[0] == "message" {
                        return Ok(Received {
                            content: v[1]["content"].clone(),
                        });
                    }
                }
            },
        }
    }

    async fn tcp_until(&mut self, ok: &str, err: &str) -> Result<String, BenchError> {
        let Inner::Tcp { reader, line, .. } = &mut self.inner else {
            return Err(proto_err("not a tcp client"));
        };
        loop {
            line.clear();
            if reader.read_line(line).await? == 0 {
                return Err(proto_err("connection closed"));
            }
            if line.starts_with(ok) || line.starts_with(err) {
                return Ok(line.trim_end().to_owned());
            }
        }
    }
}

async fn next_text(ws: &mut WebSocket<TcpStream>) -> Result<String, BenchError> {
    loop {
        match ws.next().await {
            None => return Err(proto_err("connection closed")),
            Some(Err(e)) => return Err(proto_err(e.to_string())),
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(c))) => return Err(proto_err(format!("closed: {c:?}"))),
            Some(Ok(_)) => {}
        }
    }
}

async fn send_json(ws: &mut WebSocket<TcpStream>, v: Value) -> Result<(), BenchError> {
    ws.send(Message::text(v.to_string()))
        .await
        .map_err(|e| proto_err(e.to_string()))
}

async fn until_type(ws: &mut WebSocket<TcpStream>, t: &str) -> Result<Value, BenchError> {
    until_type2(ws, t, t).await
}

async fn until_type2(ws: &mut WebSocket<TcpStream>, a: &str, b: &str) -> Result<Value, BenchError> {
    loop {
        let text = next_text(ws).await?;
        let v: Value = serde_json::from_str(&text).map_err(|e| proto_err(e.to_string()))?;
        if v["type"] == a || v["type"] == b {
            return Ok(v);
        }
    }
}

async fn sio_until_ack(ws: &mut WebSocket<TcpStream>, id: u64) -> Result<Value, BenchError> {
    sio_ack_sized(ws, id).await.map(|(v, _)| v)
}

/// The ack with `id` and the size of its packet in bytes.
async fn sio_ack_sized(
    ws: &mut WebSocket<TcpStream>,
    id: u64,
) -> Result<(Value, usize), BenchError> {
    let prefix = format!("43{id}");
    loop {
        let t = next_text(ws).await?;
        if t == "2" {
            ws.send(Message::text("3"))
                .await
                .map_err(|e| proto_err(e.to_string()))?;
            continue;
        }
        if let Some(body) = t.strip_prefix(&prefix)
            && body.starts_with('[')
        {
            let v = serde_json::from_str(body).map_err(|e| proto_err(e.to_string()))?;
            return Ok((v, t.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("ws://127.0.0.1:7878").unwrap();
        assert_eq!(t.protocol, Protocol::Ws);
        assert_eq!(t.ws_url, "ws://127.0.0.1:7878/ws");
        let t = Target::parse("sio://127.0.0.1:3000").unwrap();
        assert_eq!(
            t.ws_url,
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        let t = Target::parse("tcp://[::1]:7879").unwrap();
        assert_eq!(t.addr.port(), 7879);
        assert!(Target::parse("http://127.0.0.1:1").is_err());
        assert!(Target::parse("tcp://localhost:1").is_err());
    }
}
