//! The Engine.IO v4 client transports, each turned into two bounded
//! queues: packets in, encoded text packets out.
//!
//! - WebSocket: one frame per packet (`/socket.io/?EIO=4&transport=websocket`).
//! - HTTP long-polling: one connection holds the pending `GET` (a payload
//!   of packets per answer), another sends `POST`s (queued packets joined
//!   into one payload). Answers are capped by the session's `maxPayload`.
//!
//! Both open the TCP stream with [`crate::proxy_client::dial`], so
//! `--proxy` and the connect timeout apply.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prise_proto::engineio::{self, Handshake, Packet, PacketType, PayloadLimits};
use prise_ws::Message;
use tokio::sync::mpsc;

use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::transport::{self, Conn, ConnectOptions};

/// Packets queued in each direction.
pub const QUEUE: usize = 64;
/// Most packets sent in one POST.
pub const MAX_POST_PACKETS: usize = 64;

/// An open Engine.IO session.
#[derive(Debug)]
pub struct Engine {
    /// The server's open packet.
    pub handshake: Handshake,
    /// Packets from the server; a failure ends the queue.
    pub incoming: mpsc::Receiver<Result<Packet, NetError>>,
    /// Encoded text packets to the server (`4…`, `3`, `1`).
    pub outgoing: mpsc::Sender<String>,
    /// The task sending `outgoing`; it ends once `outgoing` is dropped and
    /// everything queued is sent.
    pub writer: tokio::task::JoinHandle<()>,
}

fn open(packet: Option<Result<Packet, NetError>>, peer: &str) -> Result<Handshake, NetError> {
    match packet {
        Some(Ok(Packet::Text(PacketType::Open, json))) => serde_json::from_str(&json)
            .map_err(|e| NetError::Protocol(format!("{peer}: bad engine.io open packet: {e}"))),
        Some(Ok(other)) => Err(NetError::Protocol(format!(
            "{peer}: expected the engine.io open packet, got {other:?}"
        ))),
        Some(Err(e)) => Err(e),
        None => Err(NetError::Protocol(format!(
            "{peer}: closed before the engine.io open packet"
        ))),
    }
}

/// Opens a session over a WebSocket.
///
/// # Errors
/// The connection or the handshake failed.
pub async fn websocket(ep: &Endpoint, opts: &ConnectOptions) -> Result<Engine, NetError> {
    let ws_ep = Endpoint {
        scheme: Scheme::Ws,
        path: "/socket.io/?EIO=4&transport=websocket".into(),
        ..ep.clone()
    };
    let peer = ep.authority();
    let Conn::Ws(ws, _) = transport::connect(&ws_ep, opts).await? else {
        return Err(NetError::Protocol(format!("{peer}: not a websocket")));
    };
    let (mut sink, mut stream) = (*ws).split();
    let (in_tx, mut incoming) = mpsc::channel(QUEUE);
    let (outgoing, mut out_rx) = mpsc::channel::<String>(QUEUE);
    let reader_peer = peer.clone();
    tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let packet = match msg {
                Ok(Message::Text(t)) => engineio::decode_text(&t)
                    .map_err(|e| NetError::Protocol(format!("{reader_peer}: {e}"))),
                Ok(Message::Binary(b)) => Ok(Packet::Binary(b)),
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => Err(transport::ws_error(e, &reader_peer)),
            };
            let failed = packet.is_err();
            if in_tx.send(packet).await.is_err() || failed {
                break;
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(text) = out_rx.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let handshake = open(incoming.recv().await, &peer)?;
    Ok(Engine {
        handshake,
        incoming,
        outgoing,
        writer,
    })
}

/// One HTTP/1.1 connection for polling requests. A server may close an
/// idle keep-alive connection at any time, so a request that finds its
/// connection closed (and was therefore never sent) goes out once more on
/// a new one.
struct Http {
    sender: SendRequest<Full<Bytes>>,
    ep: Endpoint,
    opts: ConnectOptions,
}

impl Http {
    async fn new(ep: &Endpoint, opts: &ConnectOptions) -> Result<Self, NetError> {
        Ok(Self {
            sender: Self::open(ep, opts).await?,
            ep: ep.clone(),
            opts: opts.clone(),
        })
    }

    async fn open(
        ep: &Endpoint,
        opts: &ConnectOptions,
    ) -> Result<SendRequest<Full<Bytes>>, NetError> {
        let tcp = transport::bounded(
            ep,
            opts.timeout,
            crate::proxy_client::dial(ep, &opts.socket, opts.proxy.as_ref()),
        )
        .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| NetError::Protocol(format!("{}: {e}", ep.authority())))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// One request; the answer's body, capped at `max` bytes.
    async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        body: Bytes,
        max: usize,
    ) -> Result<Bytes, NetError> {
        let peer = self.ep.authority();
        let err = |e: &dyn std::fmt::Display| NetError::Protocol(format!("{peer}: {method} {e}"));
        let mut reopened = false;
        let resp = loop {
            if self.sender.ready().await.is_err() {
                if reopened {
                    return Err(err(&"the connection closed"));
                }
                self.sender = Self::open(&self.ep, &self.opts).await?;
                reopened = true;
                continue;
            }
            let req = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header(http::header::HOST, &peer)
                .header(http::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                .body(Full::new(body.clone()))
                .map_err(|e| err(&e))?;
            match self.sender.send_request(req).await {
                Ok(resp) => break resp,
                // Canceled: the connection closed before the request went out.
                Err(e) if e.is_canceled() && !reopened => {
                    self.sender = Self::open(&self.ep, &self.opts).await?;
                    reopened = true;
                }
                Err(e) => return Err(err(&e)),
            }
        };
        let status = resp.status();
        let body = Limited::new(resp.into_body(), max)
            .collect()
            .await
            .map_err(|e| err(&format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(err(&format!("HTTP {status}: {text}")));
        }
        Ok(body)
    }
}

/// Opens a session over HTTP long-polling.
///
/// # Errors
/// The connection or the handshake failed.
pub async fn polling(ep: &Endpoint, opts: &ConnectOptions) -> Result<Engine, NetError> {
    let base = "/socket.io/?EIO=4&transport=polling";
    let mut get = Http::new(ep, opts).await?;
    let limits = PayloadLimits::default();
    let first = get
        .request(http::Method::GET, base, Bytes::new(), limits.max_payload)
        .await?;
    let peer = ep.authority();
    let decode = |body: &[u8], limits| {
        engineio::decode_payload(body, limits)
            .map_err(|e| NetError::Protocol(format!("{peer}: {e}")))
    };
    let mut packets = decode(&first, limits)?.into_iter();
    let handshake = open(packets.next().map(Ok), &peer)?;
    let limits = PayloadLimits {
        max_payload: usize::try_from(handshake.max_payload)
            .unwrap_or(usize::MAX)
            .clamp(1024, engineio::DEFAULT_MAX_PAYLOAD * 16),
        ..limits
    };
    let path = format!("{base}&sid={}", handshake.sid);
    let mut post = Http::new(ep, opts).await?;
    let (in_tx, incoming) = mpsc::channel(QUEUE);
    let (outgoing, mut out_rx) = mpsc::channel::<String>(QUEUE);
    for p in packets {
        // A fresh queue of QUEUE places: the first payload holds few packets.
        let _ = in_tx.try_send(Ok(p));
    }
    let get_path = path.clone();
    let get_peer = peer.clone();
    tokio::spawn(async move {
        loop {
            let packets = get
                .request(
                    http::Method::GET,
                    &get_path,
                    Bytes::new(),
                    limits.max_payload,
                )
                .await
                .and_then(|body| {
                    engineio::decode_payload(&body, limits)
                        .map_err(|e| NetError::Protocol(format!("{get_peer}: {e}")))
                });
            match packets {
                Ok(packets) => {
                    for p in packets {
                        let close = matches!(p, Packet::Text(PacketType::Close, _));
                        if in_tx.send(Ok(p)).await.is_err() || close {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = in_tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(first) = out_rx.recv().await {
            let mut payload = engineio::PayloadEncoder::new();
            payload.push_encoded_text(&first);
            let mut n = 1;
            while n < MAX_POST_PACKETS {
                let Ok(more) = out_rx.try_recv() else { break };
                payload.push_encoded_text(&more);
                n += 1;
            }
            let body = Bytes::from(payload.finish());
            if let Err(e) = post.request(http::Method::POST, &path, body, 1024).await {
                tracing::warn!(error = %e, "engine.io post failed");
                return;
            }
        }
    });
    Ok(Engine {
        handshake,
        incoming,
        outgoing,
        writer,
    })
}
