//! The WebSocket JSON transport at `/ws`.
//!
//! One task per socket: it decodes text frames into requests
//! ([`prise_proto::wsjson::Request`]), calls the hub, and writes the session's
//! queued pushes in batches. Close codes: 1000 normal, 1001 shutdown, 1007
//! invalid UTF-8, 1008 slow consumer, 1009 too big, 4001 auth.

use crate::Shared;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use prise_hub::{CloseReason, HubError, Outbound, Session, Transport};
use prise_proto::wsjson::{ClientFrame, Request as WsRequest, encode};
use prise_ws::{Message, UpgradedWebSocket, Utf8Bytes, WsConfig, WsError, close_code};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Most queued pushes written before one flush.
const WRITE_BATCH: usize = 64;
/// How long to wait for the peer's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Default number of messages a `history` request returns.
const DEFAULT_HISTORY: usize = 50;

/// The WebSocket configuration the hub uses for its limits.
pub(crate) fn ws_config(shared: &Shared) -> WsConfig {
    let l = &shared.hub.config().limits;
    WsConfig {
        max_message_size: l.max_frame,
        max_frame_size: l.max_frame,
        ..WsConfig::default()
    }
}

/// `GET /ws`: upgrades and spawns the session task.
pub(crate) async fn handler(State(shared): State<Arc<Shared>>, mut req: Request) -> Response {
    if shared.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if shared.hub.stats().connections_total() >= shared.hub.config().limits.max_connections as u64 {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is full").into_response();
    }
    let peer = crate::http::peer_of(&req);
    match prise_ws::upgrade(&mut req, ws_config(&shared), None) {
        Ok((response, pending)) => {
            let span = tracing::info_span!("ws", peer = %peer);
            let task_shared = Arc::clone(&shared);
            shared.tracker.spawn(
                async move {
                    match pending.finish().await {
                        Ok(ws) => connection(ws, task_shared).await,
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                }
                .instrument(span),
            );
            response.map(axum::body::Body::new)
        }
        Err(e) => (e.status(), e.to_string()).into_response(),
    }
}

fn text(s: String) -> Message {
    Message::Text(Utf8Bytes::from(s))
}

fn push(ev: &Outbound) -> Message {
    match ev {
        Outbound::Message(d) => {
            let text = d.encoded(Transport::Ws, |m| Utf8Bytes::from(encode::message(m)));
            Message::Text(Utf8Bytes::clone(&text))
        }
        Outbound::Joined { room, user } => text(encode::joined(room, user)),
        Outbound::Left { room, user } => text(encode::left(room, user)),
        Outbound::Typing { room, user, typing } => text(encode::typing(room, user, *typing)),
    }
}

fn close_for(reason: CloseReason) -> Message {
    let code = match reason {
        CloseReason::SlowConsumer => close_code::POLICY,
        CloseReason::Shutdown => close_code::GOING_AWAY,
        CloseReason::AuthExpired => close_code::AUTH,
    };
    prise_ws::close_message(code, reason.as_str())
}

async fn connection(ws: UpgradedWebSocket, shared: Arc<Shared>) {
    let hub = &shared.hub;
    let (mut sink, mut stream) = ws.split();
    let (session, mut rx) = match hub.connect(Transport::Ws, None) {
        Ok(s) => s,
        Err(e) => {
            let _ = sink
                .send(prise_ws::close_message(1013, &e.to_string()))
                .await;
            return;
        }
    };
    let mut pushes = Vec::new();
    let close: Option<Message> = loop {
        tokio::select! {
            biased;
            reason = session.closed() => break Some(close_for(reason)),
            _ = shared.shutdown.cancelled() => {
                session.close(CloseReason::Shutdown);
                break Some(close_for(CloseReason::Shutdown));
            }
            n = rx.recv_many(&mut pushes, WRITE_BATCH) => {
                if n == 0 {
                    break None;
                }
                let write = async {
                    for ev in pushes.drain(..) {
                        sink.feed(push(&ev)).await?;
                    }
                    sink.flush().await
                };
                tokio::select! {
                    r = write => if r.is_err() { break None },
                    reason = session.closed() => break Some(close_for(reason)),
                }
            }
            frame = stream.next() => match frame {
                None => break None,
                Some(Ok(Message::Text(t))) => {
                    let (replies, close) = handle(&shared, &session, &t).await;
                    let write = async {
                        for r in replies {
                            sink.feed(r).await?;
                        }
                        sink.flush().await
                    };
                    tokio::select! {
                        r = write => if r.is_err() { break None },
                        reason = session.closed() => break Some(close_for(reason)),
                    }
                    if close.is_some() {
                        break close;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let e = encode::error(None, "BAD_REQUEST", "binary frames are not part of this protocol; send JSON text");
                    if sink.send(text(e)).await.is_err() {
                        break None;
                    }
                }
                // Pings are answered by the WebSocket layer; a close frame is
                // answered on the next poll, which ends the stream.
                Some(Ok(_)) => {}
                Some(Err(e)) => break close_for_error(&e),
            }
        }
    };
    hub.disconnect(&session);
    if let Some(close) = close {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            if sink.send(close).await.is_ok() {
                // Wait for the peer's close frame (or the end of the stream).
                while let Some(Ok(_)) = stream.next().await {}
            }
        })
        .await;
    }
}

fn close_for_error(e: &WsError) -> Option<Message> {
    match e {
        WsError::Capacity(_) => Some(prise_ws::close_message(
            close_code::TOO_BIG,
            "message too big",
        )),
        WsError::Utf8(_) => Some(prise_ws::close_message(
            close_code::INVALID_PAYLOAD,
            "invalid UTF-8",
        )),
        WsError::Protocol(_) => Some(prise_ws::close_message(
            close_code::PROTOCOL_ERROR,
            "protocol error",
        )),
        _ => None,
    }
}

fn hub_error(id: Option<&Value>, e: &HubError) -> Message {
    text(encode::error(id, e.code(), &e.to_string()))
}

/// Answers one request. Returns the frames to send and, when the session must
/// end, the close frame.
async fn handle(
    shared: &Shared,
    session: &Arc<Session>,
    frame: &str,
) -> (Vec<Message>, Option<Message>) {
    let hub = &shared.hub;
    let req = match WsRequest::decode(frame) {
        Ok(r) => r,
        Err(e) => {
            return (
                vec![text(encode::error(
                    e.id.as_ref(),
                    "BAD_REQUEST",
                    &e.message,
                ))],
                None,
            );
        }
    };
    let id = req.id.as_ref();
    let mut out = Vec::new();
    match req.frame {
        ClientFrame::Auth { token, name } => {
            if token.is_some() {
                let msg = "token authentication is not configured on this server";
                out.push(text(encode::auth_failed(msg)));
                return (out, Some(prise_ws::close_message(close_code::AUTH, msg)));
            }
            match name.map(|n| hub.rename(session, &n)).transpose() {
                Ok(_) => out.push(text(encode::auth_success(&session.user()))),
                Err(e) => {
                    out.push(text(encode::auth_failed(&e.to_string())));
                    return (
                        out,
                        Some(prise_ws::close_message(
                            close_code::AUTH,
                            "authentication failed",
                        )),
                    );
                }
            }
        }
        ClientFrame::Ping { timestamp } => out.push(text(encode::pong(timestamp.as_ref()))),
        ClientFrame::Join {
            room,
            since,
            epoch,
            name,
        } => {
            if let Some(n) = name
                && let Err(e) = hub.rename(session, &n)
            {
                return (vec![hub_error(id, &e)], None);
            }
            match hub.join(session, &room, since, epoch.as_ref()).await {
                Ok(j) => {
                    out.push(text(encode::join_ack(
                        id,
                        &j.room,
                        &j.epoch,
                        j.offset,
                        &j.members,
                        j.recovered,
                    )));
                    out.extend(j.replay.iter().map(|m| text(encode::message(m))));
                }
                Err(e) => out.push(hub_error(id, &e)),
            }
        }
        ClientFrame::Leave { room } => match hub.leave(session, &room) {
            Ok(()) => out.push(text(encode::ack(id, json!({"room": room})))),
            Err(e) => out.push(hub_error(id, &e)),
        },
        ClientFrame::Message { room, content } => {
            match hub.publish(session, &room, content).await {
                Ok(m) => out.push(text(encode::ack(
                    id,
                    json!({"room": room, "offset": m.offset, "messageId": m.id}),
                ))),
                Err(e) => out.push(hub_error(id, &e)),
            }
        }
        ClientFrame::Typing { room, typing } => {
            if let Err(e) = hub.typing(session, &room, typing) {
                out.push(hub_error(id, &e));
            }
        }
        ClientFrame::History { room, since, limit } => {
            match hub
                .history(&room, since, limit.unwrap_or(DEFAULT_HISTORY))
                .await
            {
                Ok((epoch, page)) => out.push(text(encode::history(
                    id,
                    &room,
                    &epoch,
                    &page.messages,
                    page.complete,
                ))),
                Err(e) => out.push(hub_error(id, &e)),
            }
        }
        ClientFrame::Presence { room } => {
            out.push(text(encode::presence(id, &room, &hub.presence(&room))))
        }
        ClientFrame::Rooms => out.push(text(encode::rooms(id, &hub.rooms(1000)))),
    }
    (out, None)
}
