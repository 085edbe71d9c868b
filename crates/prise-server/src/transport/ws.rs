//! The WebSocket JSON transport at `/ws`.
//!
//! One task per socket: it decodes text frames
//! ([`prise_proto::wsjson::Request`]) into requests for [`Client::apply`],
//! encodes the answers, and writes the session's queued pushes in batches. Close codes: 1000 normal, 1001 shutdown, 1007
//! invalid UTF-8, 1008 slow consumer, 1009 too big, 1013 server full, 4001 auth.

use super::client::{Client, Credentials, Deadline, Handshake};
use super::reply::{Refusal, Reply};
use super::request::Request;
use crate::Shared;
use crate::security::ratelimit::IpPermit;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use prise_hub::{CloseReason, Outbound, Session, Transport};
use prise_proto::wsjson::{Request as WsRequest, encode};
use prise_ws::{Message, UpgradedWebSocket, Utf8Bytes, WsConfig, WsError, close_code};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Most queued pushes written before one flush.
const WRITE_BATCH: usize = 64;
/// How long to wait for the peer's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The WebSocket configuration the hub uses for its limits.
pub(crate) fn ws_config(shared: &Shared) -> WsConfig {
    let l = &shared.hub.config().limits;
    WsConfig::capped(l.max_frame, shared.ws_deflate)
}

/// `GET /ws`: upgrades and spawns the session task.
pub(crate) async fn handler(
    State(shared): State<Arc<Shared>>,
    mut req: axum::extract::Request,
) -> Response {
    if shared.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if shared.hub.stats().connections_total() >= shared.hub.config().limits.max_connections as u64 {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is full").into_response();
    }
    let peer = crate::http::peer_of(&req);
    let remote = crate::http::remote_of(&req);
    let header = |name: http::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let origin = header(http::header::ORIGIN);
    if !shared
        .security
        .origins
        .allows(origin.as_deref(), header(http::header::HOST).as_deref())
    {
        crate::security::ratelimit::refused("origin");
        tracing::debug!(%peer, ?origin, "origin refused");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    // `?token=` authenticates at the upgrade; a bad token is answered on the
    // socket (auth_failed, close 4001) so browsers can read why.
    let token = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_owned)
    });
    let mut credentials = Credentials {
        token,
        remote,
        ..Credentials::default()
    };
    if shared.hooks.is_active() {
        credentials.headers = req.headers().clone();
        credentials.query = req.uri().query().unwrap_or("").to_owned();
    }
    let permit = req.extensions().get::<Arc<IpPermit>>().cloned();
    match prise_ws::upgrade(&mut req, ws_config(&shared), None) {
        Ok((response, pending)) => {
            let span = tracing::info_span!("ws", peer = %peer);
            let task_shared = Arc::clone(&shared);
            shared.tracker.spawn(
                async move {
                    let _permit = permit;
                    match pending.finish().await {
                        Ok(ws) => connection(ws, task_shared, credentials).await,
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

pub(super) fn push(ev: &Outbound) -> Message {
    match ev {
        Outbound::Message(d) => {
            let text = d.encoded(Transport::Ws, |m| Utf8Bytes::from(encode::message(m)));
            Message::Text(Utf8Bytes::clone(&text))
        }
        Outbound::Joined { room, user } => text(encode::joined(room, user)),
        Outbound::Left { room, user } => text(encode::left(room, user)),
        Outbound::PresenceDiff(d) => {
            let text = d.encoded(Transport::Ws, |diff| {
                Utf8Bytes::from(encode::presence_diff(diff))
            });
            Message::Text(Utf8Bytes::clone(&text))
        }
        Outbound::Typing { room, user, typing } => text(encode::typing(room, user, *typing)),
    }
}

/// Close code of a session ended through the control API.
pub(crate) const CLOSE_KICKED: u16 = 4003;
/// Longest close reason: a close frame's payload is at most 125 bytes, 2 of
/// them the code.
const MAX_CLOSE_REASON: usize = 123;

fn close_for(session: &Session, reason: CloseReason) -> Message {
    let code = match reason {
        CloseReason::SlowConsumer => close_code::POLICY,
        CloseReason::Shutdown => close_code::GOING_AWAY,
        CloseReason::AuthExpired => close_code::AUTH,
        CloseReason::Kicked => CLOSE_KICKED,
    };
    let text = match (reason, session.close_detail()) {
        (CloseReason::Kicked, Some(d)) if !d.is_empty() => d,
        _ => reason.as_str(),
    };
    prise_ws::close_message(code, prise_proto::limits::clip(text, MAX_CLOSE_REASON))
}

fn error(id: Option<&Value>, r: &Refusal) -> Message {
    text(encode::error(id, &r.code, &r.message))
}

/// `auth_failed`, then close 4001.
fn auth_failed(r: &Refusal) -> (Message, Message) {
    (
        text(json!({"type": "auth_failed", "code": r.code, "message": r.message}).to_string()),
        prise_ws::close_message(close_code::AUTH, &r.message),
    )
}

/// The frames answering one request and, when the session ends, the close
/// frame.
pub(super) fn encode_reply(id: Option<&Value>, reply: Reply) -> (Vec<Message>, Option<Message>) {
    let one = |m: Message| (vec![m], None);
    match reply {
        Reply::Nothing => (Vec::new(), None),
        Reply::Pong(ts) => one(text(encode::pong(ts.as_ref()))),
        Reply::Authenticated { user, .. } | Reply::Named(user) => {
            one(text(encode::auth_success(&user)))
        }
        Reply::Joined(j) => {
            let mut out = vec![text(encode::join_ack(
                id,
                &j.room,
                &j.epoch,
                j.offset,
                &j.members,
                j.recovered,
            ))];
            out.extend(j.replay.iter().map(|m| text(encode::message(m))));
            (out, None)
        }
        Reply::Left(room) => one(text(encode::ack(id, json!({"room": room})))),
        Reply::Published(m) => one(text(encode::ack(
            id,
            json!({"room": m.room_id, "offset": encode::offset(m.offset), "messageId": m.id}),
        ))),
        Reply::Presence { room, page } => one(text(encode::presence(id, &room, &page))),
        Reply::History { room, epoch, page } => one(text(encode::history(
            id,
            &room,
            &epoch,
            &page.messages,
            page.complete,
        ))),
        Reply::Rooms(rooms) => one(text(encode::rooms(id, &rooms))),
        Reply::RpcResult(result) => one(text(encode::rpc_result(id, &result))),
        Reply::Refused(r) => one(error(id, &r)),
        Reply::Ended(r) => {
            let (answer, close) = auth_failed(&r);
            (vec![answer], Some(close))
        }
        // Not requests of this protocol: its decoder never makes them.
        Reply::Time(_) | Reply::Help | Reply::Bye | Reply::Relayed(_) => one(error(
            id,
            &Refusal::bad_request("not a request of this protocol"),
        )),
    }
}

/// The request a text frame holds, and its `id`.
fn request(frame: &str) -> (Option<Value>, Request) {
    match WsRequest::decode(frame) {
        Ok(r) => (r.id, r.frame.into()),
        Err(e) => (e.id, Request::Malformed(Refusal::bad_request(e.message))),
    }
}

async fn connection(ws: UpgradedWebSocket, shared: Arc<Shared>, credentials: Credentials) {
    let hub = &shared.hub;
    let (mut sink, mut stream) = ws.split();
    let connected =
        Client::connect(shared.ctx(), Transport::Ws, credentials, Handshake::Later).await;
    let (mut client, mut rx) = match connected {
        Ok(c) => c,
        Err(r) => {
            let (answer, close) = if r.is_server_full() {
                (
                    error(None, &r),
                    prise_ws::close_message(close_code::TRY_AGAIN_LATER, &r.message),
                )
            } else {
                auth_failed(&r)
            };
            let _ = sink.send(answer).await;
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                if sink.send(close).await.is_ok() {
                    while let Some(Ok(_)) = stream.next().await {}
                }
            })
            .await;
            return;
        }
    };
    let session = Arc::clone(client.session());
    let mut pushes = Vec::new();
    if client.is_authenticated() {
        let _ = sink.send(text(encode::auth_success(&session.user()))).await;
    }
    // The futures that wait for rare events live across iterations: a
    // busy connection wakes once per batch of pushes, and creating them
    // anew each time would register and unregister their waiters each time.
    let closed = session.closed();
    tokio::pin!(closed);
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(shutdown);
    let mut armed = client.deadline();
    let expiry = super::until(armed);
    tokio::pin!(expiry);
    let close: Option<Message> = loop {
        if client.deadline() != armed {
            armed = client.deadline();
            expiry.set(super::until(armed));
        }
        tokio::select! {
            biased;
            reason = &mut closed => break Some(close_for(&session, reason)),
            () = &mut expiry => match client.deadline_passed(shared.ctx()).await {
                Deadline::Extended => {}
                Deadline::Expired => break Some(close_for(&session, CloseReason::AuthExpired)),
                Deadline::AuthTimeout => {
                    break Some(prise_ws::close_message(close_code::AUTH, "authentication timeout"));
                }
            },
            () = &mut shutdown => {
                session.close(CloseReason::Shutdown);
                break Some(close_for(&session, CloseReason::Shutdown));
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
                    biased;
                    r = write => if r.is_err() { break None },
                    reason = &mut closed => break Some(close_for(&session, reason)),
                }
            }
            frame = stream.next() => {
                let (id, req) = match frame {
                    None => break None,
                    Some(Ok(Message::Text(t))) => request(&t),
                    Some(Ok(Message::Binary(_))) => (None, Request::Malformed(Refusal::bad_request(
                        "binary frames are not part of this protocol; send JSON text",
                    ))),
                    // Pings are answered by the WebSocket layer; a close frame is
                    // answered on the next poll, which ends the stream.
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break close_for_error(&e),
                };
                let is_rpc = matches!(req, Request::Rpc { .. });
                let reply = client.apply(shared.ctx(), req).await;
                let (replies, close) = match reply {
                    Reply::Refused(r) if is_rpc => (
                        vec![text(encode::rpc_error(id.as_ref(), &r.code, &r.message))],
                        None,
                    ),
                    reply => encode_reply(id.as_ref(), reply),
                };
                let write = async {
                    for r in replies {
                        sink.feed(r).await?;
                    }
                    sink.flush().await
                };
                tokio::select! {
                    biased;
                    r = write => if r.is_err() { break None },
                    reason = &mut closed => break Some(close_for(&session, reason)),
                }
                if close.is_some() {
                    break close;
                }
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
