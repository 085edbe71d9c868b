//! The control API: what a backend does to the hub's sessions and rooms,
//! under `/api` with the API keys of [`super::api`]. With `--redis` every
//! call acts on every node (through [`prise_hub::Hub::control`] and the
//! broker).
//!
//! ```text
//! POST   /api/publish      {"room"|"rooms":[…]|"user":"<id>", "content", "event"?, "from"?, "idempotency_key"?}
//! POST   /api/disconnect   {"user"|"session", "reason"?}  → {"disconnected", "nodes"}
//! POST   /api/subscribe    {"user", "room"}               → {"subscribed", "nodes", "refused"?}
//! POST   /api/unsubscribe  {"user", "room"}               → {"unsubscribed", "nodes"}
//! DELETE /api/rooms/{room}/history                      → {"room", "deleted"}
//! POST   /api/batch        {"calls":[{"call":"publish"|…, …}]} → {"results":[{"status","body"}]}
//! GET    /api/sessions     ?room=&user=&limit=            → {"sessions":[…], "count", "complete"}
//! ```
//!
//! Each call is one function from a JSON body to a status and a JSON
//! answer, so `/api/batch` runs them the same way its own routes do. A
//! publish with an `idempotency_key` stores its answer for ten minutes
//! (shared by the nodes with `--redis`): the same key again gets that
//! answer and publishes nothing.

use super::api::{authorize, authorized_query, body_or_error, hub_error};
use crate::Shared;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use prise_hub::control::{Claim, ControlOp, NodeAnswer, SessionTarget, valid_key};
use prise_hub::policy::PERSONAL_PREFIX;
use prise_proto::message::User;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

/// Most rooms one publish names.
pub(crate) const MAX_PUBLISH_ROOMS: usize = 100;
/// Most calls in one `/api/batch`.
pub(crate) const MAX_BATCH_CALLS: usize = 100;
/// Longest `reason` of a disconnect, in bytes.
pub(crate) const MAX_REASON: usize = 256;
/// Default and largest number of sessions `/api/sessions` lists per node.
const DEFAULT_LISTED: usize = 100;

/// The routes of the control API.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/publish", post(publish_route))
        .route("/api/disconnect", post(disconnect_route))
        .route("/api/subscribe", post(subscribe_route))
        .route("/api/unsubscribe", post(unsubscribe_route))
        .route("/api/rooms/{room}/history", delete(clear_route))
        .route("/api/batch", post(batch))
        .route("/api/sessions", get(sessions))
}

/// A call's outcome: its status and JSON answer.
type Answer = (StatusCode, Value);

fn refusal(status: StatusCode, code: &str, message: &str) -> Answer {
    (status, json!({"error": {"code": code, "message": message}}))
}

fn bad(message: &str) -> Answer {
    refusal(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

fn render((status, body): Answer) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

fn hub_answer(e: &prise_hub::HubError) -> Answer {
    let r = hub_error(e);
    let status = r.status();
    refusal(status, e.code(), &e.to_string())
}

/// The calls a body can make (also the `call` of a batch entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Call {
    Publish,
    Disconnect,
    Subscribe,
    Unsubscribe,
    #[serde(rename = "clear_history")]
    ClearHistory,
}

async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    call: Call,
) -> Response {
    if let Err(r) = authorize(shared, headers) {
        return *r;
    }
    let body = match body_or_error(shared, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return render(bad(&e.to_string())),
    };
    render(run(shared, call, value).await)
}

type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

async fn publish_route(State(s): State<Arc<Shared>>, h: HeaderMap, b: Body) -> Response {
    handle(&s, &h, b, Call::Publish).await
}

async fn disconnect_route(State(s): State<Arc<Shared>>, h: HeaderMap, b: Body) -> Response {
    handle(&s, &h, b, Call::Disconnect).await
}

async fn subscribe_route(State(s): State<Arc<Shared>>, h: HeaderMap, b: Body) -> Response {
    handle(&s, &h, b, Call::Subscribe).await
}

async fn unsubscribe_route(State(s): State<Arc<Shared>>, h: HeaderMap, b: Body) -> Response {
    handle(&s, &h, b, Call::Unsubscribe).await
}

async fn clear_route(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return *r;
    }
    render(clear_history(&shared, json!({"room": room})).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomBody {
    room: String,
}

async fn clear_history(shared: &Shared, body: Value) -> Answer {
    let req: RoomBody = match parse(body) {
        Ok(r) => r,
        Err(a) => return a,
    };
    match shared.hub.clear_history(&req.room).await {
        Ok(n) => {
            tracing::info!(room = %req.room, deleted = n, "history deleted");
            (StatusCode::OK, json!({"room": req.room, "deleted": n}))
        }
        Err(e) => hub_answer(&e),
    }
}

async fn run(shared: &Shared, call: Call, body: Value) -> Answer {
    match call {
        Call::Publish => publish(shared, body).await,
        Call::Disconnect => disconnect(shared, body).await,
        Call::Subscribe => subscribe(shared, body, true).await,
        Call::Unsubscribe => subscribe(shared, body, false).await,
        Call::ClearHistory => clear_history(shared, body).await,
    }
}

fn parse<T: DeserializeOwned>(body: Value) -> Result<T, Answer> {
    serde_json::from_value(body).map_err(|e| bad(&e.to_string()))
}

/// `user` of a publish: a user id (its personal room), or, as before the
/// control API, the author.
#[derive(Deserialize)]
#[serde(untagged)]
enum UserField {
    Personal(String),
    Author(User),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    user: Option<UserField>,
    content: Value,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    from: Option<User>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

async fn publish(shared: &Shared, body: Value) -> Answer {
    let req: PublishBody = match parse(body) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let Some(key) = req.idempotency_key.clone() else {
        return publish_now(shared, req).await;
    };
    if !valid_key(&key) {
        return bad("idempotency_key is 1-128 visible ASCII characters");
    }
    match shared.hub.claim_key(&key).await {
        Err(e) => hub_answer(&e),
        Ok(Claim::Done(stored)) => {
            metrics::counter!("prise_api_idempotent_replays_total").increment(1);
            serde_json::from_str::<(u16, Value)>(&stored)
                .ok()
                .and_then(|(s, b)| Some((StatusCode::from_u16(s).ok()?, b)))
                .unwrap_or_else(|| {
                    refusal(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "SEND_ERROR",
                        "stored answer unreadable",
                    )
                })
        }
        Ok(Claim::Pending) => refusal(
            StatusCode::CONFLICT,
            "IN_PROGRESS",
            "a publish with this idempotency_key is in progress; retry later",
        ),
        Ok(Claim::First) => {
            let answer = publish_now(shared, req).await;
            // Only what was published is remembered: a refused or failed
            // publish may be retried with the same key.
            let stored = answer
                .0
                .is_success()
                .then(|| serde_json::to_string(&(answer.0.as_u16(), &answer.1)).ok())
                .flatten();
            shared.hub.settle_key(&key, stored).await;
            answer
        }
    }
}

async fn publish_now(shared: &Shared, req: PublishBody) -> Answer {
    let (personal, author) = match req.user {
        Some(UserField::Personal(id)) => (Some(id), req.from),
        Some(UserField::Author(u)) => (None, req.from.or(Some(u))),
        None => (None, req.from),
    };
    let single = req.room.is_some() && req.rooms.is_empty() && personal.is_none();
    let mut rooms: Vec<String> = req.room.into_iter().chain(req.rooms).collect();
    if let Some(id) = personal {
        rooms.push(format!("{PERSONAL_PREFIX}{id}"));
    }
    if rooms.is_empty() {
        return bad("name a room, rooms or a user");
    }
    if rooms.len() > MAX_PUBLISH_ROOMS {
        return bad(&format!("at most {MAX_PUBLISH_ROOMS} rooms per publish"));
    }
    let user = author.unwrap_or_else(|| User {
        id: "api".into(),
        name: "api".into(),
    });
    let max_name = shared.hub.config().limits.max_name;
    if prise_proto::limits::check_name(&user.name, max_name).is_err()
        || prise_proto::limits::check_name(&user.id, max_name).is_err()
    {
        return bad("user id and name must be 1-64 bytes without whitespace");
    }
    // Every room is checked before any is published to.
    for room in &rooms {
        if let Err(e) = shared.hub.room_policy(room) {
            return hub_answer(&e);
        }
    }
    let mut results = Vec::with_capacity(rooms.len());
    let mut first_error = None;
    for room in &rooms {
        let event = match &req.event {
            Some(name) => prise_hub::Event::named(name.clone(), req.content.clone()),
            None => prise_hub::Event::message(req.content.clone()),
        };
        match shared.hub.publish_event_as(user.clone(), room, event).await {
            Ok(m) => results.push(json!({
                "room": m.room_id,
                "offset": prise_proto::wsjson::encode::offset(m.offset),
                "messageId": m.id,
                "timestamp": m.timestamp,
            })),
            Err(e) => {
                let a = hub_answer(&e);
                results.push(json!({"room": room, "error": a.1["error"]}));
                first_error.get_or_insert(a);
            }
        }
    }
    match (single, first_error) {
        (true, Some(e)) => e,
        (true, None) => (StatusCode::OK, results.swap_remove(0)),
        // Nothing published: the first refusal.
        (false, Some(e)) if results.iter().all(|r| r.get("error").is_some()) => e,
        (false, _) => (StatusCode::OK, json!({"messages": results})),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

async fn disconnect(shared: &Shared, body: Value) -> Answer {
    let req: DisconnectBody = match parse(body) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let target = match (req.user, req.session) {
        (Some(u), None) => SessionTarget::User(u),
        (None, Some(s)) => SessionTarget::Session(s),
        _ => return bad("name exactly one of user and session"),
    };
    let reason = req.reason.unwrap_or_default();
    if reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return bad(&format!(
            "reason is at most {MAX_REASON} bytes without control characters"
        ));
    }
    let op = ControlOp::Disconnect { target, reason };
    match shared.hub.control(op).await {
        Ok(nodes) => (
            StatusCode::OK,
            json!({"disconnected": total(&nodes), "nodes": nodes.len()}),
        ),
        Err(e) => hub_answer(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeBody {
    user: String,
    room: String,
}

async fn subscribe(shared: &Shared, body: Value, join: bool) -> Answer {
    let req: SubscribeBody = match parse(body) {
        Ok(r) => r,
        Err(a) => return a,
    };
    let max_name = shared.hub.config().limits.max_name;
    if prise_proto::limits::check_name(&req.user, max_name).is_err() {
        return bad("user is a user id: 1-64 bytes without whitespace");
    }
    if let Err(e) = shared.hub.room_policy(&req.room) {
        return hub_answer(&e);
    }
    let (op, field) = if join {
        let op = ControlOp::Subscribe {
            user: req.user,
            room: req.room,
        };
        (op, "subscribed")
    } else {
        let op = ControlOp::Unsubscribe {
            user: req.user,
            room: req.room,
        };
        (op, "unsubscribed")
    };
    match shared.hub.control(op).await {
        Ok(nodes) => {
            let mut body = json!({field: total(&nodes), "nodes": nodes.len()});
            let refused: usize = nodes
                .iter()
                .filter_map(|n| n.refused.as_ref())
                .map(|r| r.0)
                .sum();
            if let Some((_, code)) = nodes.iter().find_map(|n| n.refused.as_ref()) {
                body["refused"] = json!({"count": refused, "code": code});
            }
            (StatusCode::OK, body)
        }
        Err(e) => hub_answer(&e),
    }
}

fn total(nodes: &[NodeAnswer]) -> usize {
    nodes.iter().map(|n| n.count).sum()
}

#[derive(Deserialize)]
struct SessionsQuery {
    room: Option<String>,
    user: Option<String>,
    limit: Option<usize>,
}

async fn sessions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<Query<SessionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match authorized_query(
        &shared,
        &headers,
        query,
        "room and user are names, limit a non-negative integer",
    ) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LISTED)
        .min(prise_hub::control::MAX_LISTED_SESSIONS);
    // An empty filter (`?user=`) is no filter.
    let op = ControlOp::Sessions {
        room: q.room.filter(|r| !r.is_empty()),
        user: q.user.filter(|u| !u.is_empty()),
        limit,
    };
    match shared.hub.control(op).await {
        Ok(nodes) => {
            let complete = nodes.iter().all(|n| !n.truncated);
            let count = total(&nodes);
            let listed: Vec<_> = nodes.into_iter().flat_map(|n| n.sessions).collect();
            render((
                StatusCode::OK,
                json!({"sessions": listed, "count": count, "complete": complete}),
            ))
        }
        Err(e) => hub_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    calls: Vec<Value>,
}

async fn batch(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return *r;
    }
    let body = match body_or_error(&shared, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let req: BatchBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return render(bad(&e.to_string())),
    };
    if req.calls.len() > MAX_BATCH_CALLS {
        return render(bad(&format!("at most {MAX_BATCH_CALLS} calls per batch")));
    }
    let mut results = Vec::with_capacity(req.calls.len());
    for mut entry in req.calls {
        let call = entry
            .as_object_mut()
            .and_then(|o| o.remove("call"))
            .and_then(|c| serde_json::from_value::<Call>(c).ok());
        let (status, body) = match call {
            Some(call) => run(&shared, call, entry).await,
            None => bad(
                "each call names \"call\": publish, disconnect, subscribe, unsubscribe or clear_history",
            ),
        };
        results.push(json!({"status": status.as_u16(), "body": body}));
    }
    render((StatusCode::OK, json!({"results": results})))
}
