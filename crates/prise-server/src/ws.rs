//! The WebSocket JSON transport at `/ws`.
//!
//! One task per socket: it decodes text frames into requests
//! ([`prise_proto::wsjson::Request`]), calls the hub, and writes the session's
//! queued pushes in batches. Close codes: 1000 normal, 1001 shutdown, 1007
//! invalid UTF-8, 1008 slow consumer, 1009 too big, 4001 auth.

use crate::Shared;
use crate::auth::{AuthError, Denied, Identity};
use crate::ratelimit::{IpPermit, MessageLimiter};
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
        deflate: shared.ws_deflate,
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
        crate::ratelimit::refused("origin");
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
    let permit = req.extensions().get::<Arc<IpPermit>>().cloned();
    match prise_ws::upgrade(&mut req, ws_config(&shared), None) {
        Ok((response, pending)) => {
            let span = tracing::info_span!("ws", peer = %peer);
            let task_shared = Arc::clone(&shared);
            shared.tracker.spawn(
                async move {
                    let _permit = permit;
                    match pending.finish().await {
                        Ok(ws) => connection(ws, task_shared, token).await,
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

/// A connection's authentication and rate state.
struct Conn {
    identity: Identity,
    anonymous_ok: bool,
    limiter: MessageLimiter,
    /// Token expiry, or the end of the time to authenticate.
    deadline: Option<tokio::time::Instant>,
}

impl Conn {
    fn denied(&self, id: Option<&Value>, d: Denied, room: &str) -> Message {
        text(encode::error(id, d.code(), &d.message(room)))
    }

    fn set_claims(&mut self, claims: crate::auth::Claims) {
        let left = claims.remaining(std::time::SystemTime::now());
        self.deadline = Some(tokio::time::Instant::now() + left);
        self.identity = Identity::Token(claims);
    }
}

/// Resolves at `deadline`, never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn auth_failed(e: &AuthError) -> (Message, Message) {
    crate::ratelimit::refused("auth_failed");
    let msg = e.to_string();
    (
        text(json!({"type": "auth_failed", "code": e.code(), "message": msg}).to_string()),
        prise_ws::close_message(close_code::AUTH, &msg),
    )
}

async fn connection(ws: UpgradedWebSocket, shared: Arc<Shared>, token: Option<String>) {
    let hub = &shared.hub;
    let (mut sink, mut stream) = ws.split();
    let anonymous_ok = shared.security.anonymous_http;
    let mut conn = Conn {
        identity: Identity::Anonymous,
        anonymous_ok,
        limiter: MessageLimiter::new(&shared.security.rate),
        deadline: (!anonymous_ok)
            .then(|| tokio::time::Instant::now() + shared.security.auth_timeout),
    };
    let user = match token.map(|t| shared.security.auth.verify(&t)).transpose() {
        Ok(c) => c.map(|c| {
            let u = c.user();
            conn.set_claims(c);
            u
        }),
        Err(e) => {
            let (answer, close) = auth_failed(&e);
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
    let (session, mut rx) = match hub.connect(Transport::Ws, user) {
        Ok(s) => s,
        Err(e) => {
            let _ = sink
                .send(prise_ws::close_message(1013, &e.to_string()))
                .await;
            return;
        }
    };
    let mut pushes = Vec::new();
    if conn.identity.claims().is_some() {
        let _ = sink.send(text(encode::auth_success(&session.user()))).await;
    }
    // The futures that wait for rare events live across iterations: a
    // busy connection wakes once per batch of pushes, and creating them
    // anew each time would register and unregister their waiters each time.
    let closed = session.closed();
    tokio::pin!(closed);
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(shutdown);
    let mut armed = conn.deadline;
    let expiry = until(armed);
    tokio::pin!(expiry);
    let close: Option<Message> = loop {
        if conn.deadline != armed {
            armed = conn.deadline;
            expiry.set(until(armed));
        }
        tokio::select! {
            biased;
            reason = &mut closed => break Some(close_for(reason)),
            () = &mut expiry => {
                if conn.identity.claims().is_some() {
                    session.close(CloseReason::AuthExpired);
                    break Some(close_for(CloseReason::AuthExpired));
                }
                break Some(prise_ws::close_message(close_code::AUTH, "authentication timeout"));
            }
            () = &mut shutdown => {
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
                    biased;
                    r = write => if r.is_err() { break None },
                    reason = &mut closed => break Some(close_for(reason)),
                }
            }
            frame = stream.next() => match frame {
                None => break None,
                Some(Ok(Message::Text(t))) => {
                    let (replies, close) = handle(&shared, &session, &mut conn, &t).await;
                    let write = async {
                        for r in replies {
                            sink.feed(r).await?;
                        }
                        sink.flush().await
                    };
                    tokio::select! {
                        biased;
                        r = write => if r.is_err() { break None },
                        reason = &mut closed => break Some(close_for(reason)),
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
    conn: &mut Conn,
    frame: &str,
) -> (Vec<Message>, Option<Message>) {
    let hub = &shared.hub;
    if !conn.limiter.check() {
        return (
            vec![text(encode::error(
                None,
                "RATE_LIMITED",
                "too many requests; slow down",
            ))],
            None,
        );
    }
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
    let anon = conn.anonymous_ok;
    let open = matches!(
        req.frame,
        ClientFrame::Auth { .. } | ClientFrame::Ping { .. }
    );
    if !open && !conn.identity.is_allowed(anon) {
        return (vec![conn.denied(id, Denied::AuthRequired, "")], None);
    }
    let room_check = match &req.frame {
        ClientFrame::Join { room, .. }
        | ClientFrame::History { room, .. }
        | ClientFrame::Presence { room } => conn
            .identity
            .check_join(anon, room)
            .err()
            .map(|d| (d, room)),
        ClientFrame::Message { room, .. } => conn
            .identity
            .check_publish(anon, room)
            .err()
            .map(|d| (d, room)),
        _ => None,
    };
    if let Some((d, room)) = room_check {
        return (vec![conn.denied(id, d, room)], None);
    }
    match req.frame {
        ClientFrame::Auth {
            token: Some(token), ..
        } => {
            let auth = &shared.security.auth;
            let result = match &conn.identity {
                Identity::Token(current) => auth.refresh(current, &token),
                Identity::Anonymous if !session.rooms().is_empty() => {
                    Err(AuthError::BadClaims("auth before join".into()))
                }
                Identity::Anonymous => auth.verify(&token),
            };
            match result {
                Ok(claims) => {
                    if conn.identity.claims().is_none() {
                        hub.set_user(session, claims.user());
                    }
                    conn.set_claims(claims);
                    out.push(text(encode::auth_success(&session.user())));
                }
                Err(e) => {
                    let (answer, close) = auth_failed(&e);
                    return (vec![answer], Some(close));
                }
            }
        }
        ClientFrame::Auth { token: None, .. } if !anon => {
            let (answer, close) = auth_failed(&AuthError::BadClaims(
                "a token is required on this server".into(),
            ));
            return (vec![answer], Some(close));
        }
        ClientFrame::Auth {
            token: None,
            name: Some(_),
        } if conn.identity.claims().is_some() => {
            out.push(conn.denied(id, Denied::Forbidden, ""));
        }
        ClientFrame::Auth { token: None, name } => {
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
                && conn.identity.claims().is_none()
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
        ClientFrame::Rooms => {
            let mut rooms = hub.rooms(1000);
            if let Some(c) = conn.identity.claims() {
                rooms.retain(|r| c.may_join(&r.name));
            }
            out.push(text(encode::rooms(id, &rooms)));
        }
    }
    (out, None)
}
