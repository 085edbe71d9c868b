//! Server-Sent Events at `GET /sse?room=a&room=b`: a receive-only stream
//! of the rooms' messages and presence, in `text/event-stream`
//! ([`prise_proto::sse`]).
//!
//! ```text
//!  GET /sse ─▶ origin, query (rooms ≤ max_rooms_per_session), token, Last-Event-ID
//!           ─▶ Client::connect ─▶ Client::apply(Join) per room   (refusals: 4xx with a JSON body)
//!           ─▶ with Last-Event-ID: Hub::missed_since  (or `gap`)
//!           ─▶ 200: retry, [gap], ready, replay ─▶ then the session's queue, live
//! ```
//!
//! Every check happens before the response starts, so a refusal is an
//! HTTP status the client can read: 400 bad request or too many rooms, 401
//! no or bad token, 403 origin or room not allowed, 429 rate, 503 full.
//! The stream then has one task (tracked for shutdown); it writes batches
//! of pushes into the response body through a small bounded queue. A peer
//! that does not read fills it, then the session's queue, and the hub
//! closes it as a slow consumer, like on every other transport.
//!
//! Message events carry the hub-wide seq as `id`; the `ready` event carries
//! the seq delivered before the joins, so a client that reconnects before
//! any message resumes without a loss. The replay and the live queue
//! overlap: live messages up to the replay's last seq were in it (the store
//! commits in seq order, see [`prise_hub::Hub::missed_since`]) and are
//! skipped, so ids increase. Nothing else is skipped: a message a cluster
//! node catches up late is sent with its lower id, and a reconnect from
//! there repeats messages rather than missing one. An expired token ends
//! the stream with `event: error` (`AUTH_EXPIRED`).

use super::client::{Client, Credentials, Deadline, Handshake};
use super::reply::{Refusal, Reply};
use super::request::Request;
use crate::Shared;
use crate::security::ratelimit::IpPermit;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prise_hub::{CloseReason, Outbound, Session, Transport};
use prise_proto::sse::{self, encode};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;

/// How long a client waits before reconnecting (the stream's `retry:`).
const RETRY_MS: u64 = 1000;
/// Most queued pushes encoded into one chunk of the body.
const WRITE_BATCH: usize = 64;
/// Chunks waiting for the peer; beyond them the session's own queue fills.
const BODY_QUEUE: usize = 8;
/// How long the last event (an error) may wait for room in the body.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Most query parameters read from one request.
const MAX_PARAMS: usize = 256;

type Chunk = Result<Bytes, Infallible>;

/// What the request asks for, read from its query and headers.
#[derive(Debug, Default, PartialEq)]
struct Ask {
    rooms: Vec<String>,
    remote: Option<std::net::SocketAddr>,
    token: Option<String>,
    last_event_id: Option<u64>,
}

/// A refusal before the stream starts: its status and `{"error":{code,message}}`.
fn refuse(status: StatusCode, r: &Refusal) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": {"code": r.code, "message": r.message}})),
    )
        .into_response()
}

/// The status of a refusal of the request layer: a backend's own code
/// (from a hook) is a 403.
fn status_of(r: &Refusal) -> StatusCode {
    match &*r.code {
        "AUTH_REQUIRED" | "AUTH_FAILED" | "AUTH_EXPIRED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" | "HOOK_REFUSED" => StatusCode::FORBIDDEN,
        "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
        "SERVER_FULL" | "HOOK_UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        "SEND_ERROR" => StatusCode::INTERNAL_SERVER_ERROR,
        "BAD_REQUEST" | "TOO_MANY_ROOMS" | "UNKNOWN_NAMESPACE" | "NO_ROOM" | "ROOM_FULL"
        | "TOO_LARGE" | "HISTORY_GAP" => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    }
}

/// Reads the rooms, the token and the resume point; `Err` is the 400 or
/// 401 answer.
fn ask(
    params: &[(String, String)],
    headers: &HeaderMap,
    max_rooms: usize,
) -> Result<Ask, Box<Response>> {
    let bad = |m: &str| Box::new(refuse(StatusCode::BAD_REQUEST, &Refusal::bad_request(m)));
    if params.len() > MAX_PARAMS {
        return Err(bad("too many query parameters"));
    }
    let mut a = Ask::default();
    let mut query_id = None;
    for (k, v) in params {
        match k.as_str() {
            "room" if !a.rooms.contains(v) => a.rooms.push(v.clone()),
            "token" => a.token = Some(v.clone()),
            "lastEventId" => query_id = Some(v.as_str()),
            _ => {}
        }
    }
    if a.rooms.is_empty() {
        return Err(bad("name at least one room: /sse?room=NAME&room=…"));
    }
    if a.rooms.len() > max_rooms {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            &Refusal::new(
                "TOO_MANY_ROOMS",
                format!("at most {max_rooms} rooms per stream"),
            ),
        )));
    }
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let Some(token) = v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
            crate::security::ratelimit::refused("auth_failed");
            return Err(Box::new(refuse(
                StatusCode::UNAUTHORIZED,
                &Refusal::new("AUTH_FAILED", "send Authorization: Bearer <token>"),
            )));
        };
        a.token = Some(token.trim().to_owned());
    }
    // The header (what a reconnecting EventSource sends) wins over the
    // query (what a page that kept the id itself can send).
    let id = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().unwrap_or("?")),
        None => query_id,
    };
    if let Some(id) = id.map(str::trim).filter(|id| !id.is_empty()) {
        let Ok(seq) = id.parse::<u64>() else {
            return Err(bad(
                "Last-Event-ID must be an id this server sent (a number)",
            ));
        };
        a.last_event_id = Some(seq);
    }
    Ok(a)
}

/// The headers that let a page on an allowed origin read the stream.
fn cors(origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    if let Some(o) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
    }
}

/// Is the request's origin allowed (as on `/ws`)? `Err` is the 403 answer.
fn check_origin(shared: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text(header::ORIGIN);
    if shared.security.origins.allows(origin, text(header::HOST)) {
        return Ok(());
    }
    crate::security::ratelimit::refused("origin");
    tracing::debug!(?origin, "sse origin refused");
    Err(Box::new(refuse(
        StatusCode::FORBIDDEN,
        &Refusal::new("FORBIDDEN", "origin not allowed (--allowed-origins)"),
    )))
}

/// `OPTIONS /sse`: the CORS preflight of a page on an allowed origin (an
/// `EventSource` never needs one; a `fetch` reader with `Authorization`
/// does).
pub(crate) async fn preflight(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = check_origin(&shared, &headers) {
        return *r;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    cors(headers.get(header::ORIGIN), h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, last-event-id, cache-control"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// `GET /sse`: the checks, the joins and the replay, then the stream.
pub(crate) async fn handler(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    req: axum::extract::Request,
) -> Response {
    if shared.shutdown.is_cancelled() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &Refusal::new("SERVER_FULL", "shutting down"),
        );
    }
    let headers = req.headers();
    if let Err(r) = check_origin(&shared, headers) {
        return *r;
    }
    let Ok(Query(params)) = query else {
        return refuse(
            StatusCode::BAD_REQUEST,
            &Refusal::bad_request("the query string is not form-encoded"),
        );
    };
    let max_rooms = shared.hub.config().limits.max_rooms_per_session;
    let mut ask = match ask(&params, headers, max_rooms) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    ask.remote = crate::http::remote_of(&req);
    let peer = crate::http::peer_of(&req);
    let mut credentials = Credentials {
        remote: crate::http::remote_of(&req),
        ..Credentials::default()
    };
    if shared.hooks.is_active() {
        credentials.headers = headers.clone();
        credentials.query = req.uri().query().unwrap_or("").to_owned();
    }
    let origin = headers.get(header::ORIGIN).cloned();
    let permit = req.extensions().get::<Arc<IpPermit>>().cloned();
    let span = tracing::info_span!("sse", peer = %peer);
    let opened = open(&shared, ask, credentials)
        .instrument(span.clone())
        .await;
    let (stream, first) = match opened {
        Ok(o) => o,
        Err(r) => return refuse(status_of(&r), &r),
    };
    let (body_tx, body_rx) = mpsc::channel::<Chunk>(BODY_QUEUE);
    // The queue is empty: the first chunk always fits.
    let _ = body_tx.try_send(Ok(Bytes::from(first)));
    let task_shared = Arc::clone(&shared);
    shared.tracker.spawn(
        async move {
            let _permit = permit;
            stream.run(&task_shared, body_tx).await;
        }
        .instrument(span),
    );
    let body = Body::from_stream(futures_util::stream::unfold(body_rx, |mut rx| async {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Reverse proxies (nginx) would otherwise buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    cors(origin.as_ref(), h);
    response
}

/// An open stream: the client, its queue, and what the replay covered.
struct Stream {
    client: Client,
    rx: mpsc::Receiver<Outbound>,
    /// The greatest seq of the replay (0 without one): live messages at or
    /// below it were in the replay and are not sent again.
    replayed: u64,
}

/// Admits the client, joins its rooms and reads what it missed; returns the
/// stream and its first chunk (`retry`, `gap`, `ready`, the replay).
async fn open(
    shared: &Shared,
    ask: Ask,
    mut credentials: Credentials,
) -> Result<(Stream, String), Refusal> {
    let ctx = shared.ctx();
    let hub = &shared.hub;
    // Every message at or below this seq was fanned out before the joins,
    // so none of them is in the session's queue.
    let before = hub.delivered_seq();
    credentials.token = ask.token;
    credentials.remote = ask.remote;
    let (mut client, rx) =
        Client::connect(ctx, Transport::Sse, credentials, Handshake::Now).await?;
    let session = Arc::clone(client.session());
    let mut joined = Vec::with_capacity(ask.rooms.len());
    for room in ask.rooms {
        let join = Request::Join {
            room,
            since: None,
            epoch: None,
            name: None,
            switch: false,
        };
        match client.apply(ctx, join).await {
            Reply::Joined(j) => joined.push(j),
            Reply::Refused(r) | Reply::Ended(r) => {
                hub.disconnect(&session);
                return Err(r);
            }
            other => {
                hub.disconnect(&session);
                tracing::warn!(?other, "unexpected answer to a join");
                return Err(Refusal::bad_request("join failed"));
            }
        }
    }
    let replay = match ask.last_event_id {
        None => None,
        Some(after) => match hub.missed_since(&session, after).await {
            Ok(r) => Some((after, r)),
            Err(e) => {
                hub.disconnect(&session);
                return Err(Refusal::hub(&e));
            }
        },
    };
    let mut first = String::new();
    sse::retry(&mut first, RETRY_MS);
    let rooms: Vec<encode::RoomState<'_>> = joined
        .iter()
        .map(|j| encode::RoomState {
            room: &j.room,
            epoch: &j.epoch,
            offset: j.offset,
            members: &j.members.members,
        })
        .collect();
    let user = session.user();
    let mut stream = Stream {
        client,
        rx,
        replayed: 0,
    };
    match replay {
        Some((_, Some(messages))) => {
            encode::ready(&mut first, None, &user, &rooms, true);
            for m in &messages {
                encode::message(&mut first, m);
                stream.replayed = stream.replayed.max(m.seq);
            }
        }
        Some((after, None)) => {
            encode::gap(&mut first, after);
            encode::ready(&mut first, Some(before), &user, &rooms, false);
        }
        None => encode::ready(&mut first, Some(before), &user, &rooms, false),
    }
    Ok((stream, first))
}

/// Why the stream ends, and the last event to send.
fn close_event(session: &Session, reason: CloseReason) -> Option<String> {
    let r = Refusal::for_session(session, reason, Transport::Sse)?;
    let mut out = String::new();
    encode::error(&mut out, &r.code, &r.message);
    Some(out)
}

impl Stream {
    /// Encodes one push, unless it is a message already sent.
    fn encode(&mut self, out: &mut String, ev: &Outbound) {
        match ev {
            Outbound::Message(d) => {
                if d.message.seq <= self.replayed {
                    return;
                }
                let text = d.encoded(Transport::Sse, |m| {
                    let mut s = String::new();
                    encode::message(&mut s, m);
                    s
                });
                out.push_str(&text);
            }
            Outbound::Joined { room, user } => encode::joined(out, room, user),
            Outbound::Left { room, user } => encode::left(out, room, user),
            Outbound::Typing { room, user, typing } => encode::typing(out, room, user, *typing),
            Outbound::PresenceDiff(d) => {
                let text = d.encoded(Transport::Sse, |diff| {
                    let mut s = String::new();
                    encode::presence_diff(&mut s, diff);
                    s
                });
                out.push_str(&text);
            }
        }
    }

    /// Streams the session's pushes until it ends; then leaves its rooms.
    async fn run(mut self, shared: &Shared, body: mpsc::Sender<Chunk>) {
        let session: Arc<Session> = Arc::clone(self.client.session());
        let closed = session.closed();
        tokio::pin!(closed);
        let shutdown = shared.shutdown.cancelled();
        tokio::pin!(shutdown);
        let expiry = super::until(self.client.deadline());
        tokio::pin!(expiry);
        let mut keepalive = tokio::time::interval(shared.sse_keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.reset();
        let mut pushes = Vec::with_capacity(WRITE_BATCH);
        let last: Option<String> = loop {
            let chunk = tokio::select! {
                biased;
                reason = &mut closed => break close_event(&session, reason),
                () = &mut expiry => match self.client.deadline_passed(shared.ctx()).await {
                    Deadline::Extended => {
                        expiry.set(super::until(self.client.deadline()));
                        continue;
                    }
                    Deadline::Expired => break close_event(&session, CloseReason::AuthExpired),
                    Deadline::AuthTimeout => break None,
                },
                () = &mut shutdown => {
                    session.close(CloseReason::Shutdown);
                    break None;
                }
                () = body.closed() => break None,
                _ = keepalive.tick() => {
                    let mut s = String::new();
                    sse::comment(&mut s, "keep-alive");
                    s
                }
                n = self.rx.recv_many(&mut pushes, WRITE_BATCH) => {
                    if n == 0 {
                        break None;
                    }
                    let mut s = String::new();
                    for ev in pushes.drain(..) {
                        self.encode(&mut s, &ev);
                    }
                    if s.is_empty() {
                        continue;
                    }
                    keepalive.reset();
                    s
                }
            };
            tokio::select! {
                biased;
                reason = &mut closed => break close_event(&session, reason),
                r = body.send(Ok(Bytes::from(chunk))) => if r.is_err() { break None },
            }
        };
        shared.hub.disconnect(&session);
        if let Some(last) = last {
            let _ = tokio::time::timeout(CLOSE_WAIT, body.send(Ok(Bytes::from(last)))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    fn status(r: Result<Ask, Box<Response>>) -> StatusCode {
        r.err().map(|r| r.status()).unwrap_or(StatusCode::OK)
    }

    #[test]
    fn rooms_are_deduplicated_and_capped() {
        let h = HeaderMap::new();
        let a = ask(
            &params(&[("room", "a"), ("room", "b"), ("room", "a")]),
            &h,
            2,
        )
        .unwrap();
        assert_eq!(a.rooms, ["a", "b"]);
        let q = params(&[("room", "a"), ("room", "b"), ("room", "c")]);
        assert_eq!(status(ask(&q, &h, 2)), StatusCode::BAD_REQUEST);
        assert_eq!(status(ask(&[], &h, 2)), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn token_and_resume_point() {
        let mut h = HeaderMap::new();
        let q = params(&[("room", "a"), ("token", "q"), ("lastEventId", "5")]);
        let a = ask(&q, &h, 4).unwrap();
        assert_eq!((a.token.as_deref(), a.last_event_id), (Some("q"), Some(5)));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer h"));
        h.insert("last-event-id", HeaderValue::from_static("9"));
        let a = ask(&q, &h, 4).unwrap();
        assert_eq!((a.token.as_deref(), a.last_event_id), (Some("h"), Some(9)));
        h.insert("last-event-id", HeaderValue::from_static("nine"));
        assert_eq!(status(ask(&q, &h, 4)), StatusCode::BAD_REQUEST);
        h.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(ask(&q, &h, 4).unwrap().last_event_id, None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        assert_eq!(status(ask(&q, &h, 4)), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn refusals_map_to_statuses() {
        let s = |code| status_of(&Refusal::new(code, ""));
        assert_eq!(s("FORBIDDEN"), StatusCode::FORBIDDEN);
        assert_eq!(s("AUTH_FAILED"), StatusCode::UNAUTHORIZED);
        assert_eq!(s("AUTH_REQUIRED"), StatusCode::UNAUTHORIZED);
        assert_eq!(s("TOO_MANY_ROOMS"), StatusCode::BAD_REQUEST);
        assert_eq!(s("BAD_REQUEST"), StatusCode::BAD_REQUEST);
        assert_eq!(s("SERVER_FULL"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(s("HOOK_UNAVAILABLE"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(s("BANNED"), StatusCode::FORBIDDEN, "a backend's own code");
    }
}
