//! The HTTP API for backends, under `/api`, behind API keys
//! (`Authorization: Bearer <key>` or `X-API-Key: <key>`).
//!
//! ```text
//! GET  /api/rooms                      → {"rooms":[{name,members,offset}]}
//! GET  /api/rooms/{room}/history       ?since=n&limit=n → {"room","epoch","messages","complete"}
//! GET  /api/rooms/{room}/presence?after=&limit= → {"room","members":[{id,name}],"count","complete","next"?}
//! ```
//!
//! The calls that act (publish, disconnect, subscribe, batch, sessions) are
//! the control API, in [`super::control`]. A room of another namespace is
//! `/ns:room`, a user's personal room `user:<id>`. Errors are `{"error":{"code","message"}}` with 400, 401,
//! 404, 413, 429, 500. Bodies are capped at `--max-body`; every request counts against the
//! connection's rate limit like any other client.

use crate::Shared;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use prise_hub::HubError;
use prise_proto::message::Offset;
use prise_proto::presence::{Cursor, put_page};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The `/api` routes.
pub(crate) fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .merge(super::control::routes())
        .route("/api/rooms", get(rooms))
        .route("/api/rooms/{room}/history", get(history))
        .route("/api/rooms/{room}/presence", get(presence))
        .layer(axum::extract::DefaultBodyLimit::max(
            shared.security.max_body,
        ))
}

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

pub(super) fn hub_error(e: &HubError) -> Response {
    let status = match e {
        HubError::NoRoom(_) | HubError::NotMember(_) => StatusCode::NOT_FOUND,
        HubError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        HubError::BadName(_)
        | HubError::BadEvent(_)
        | HubError::UnknownNamespace(_)
        | HubError::TooManyRooms(_)
        | HubError::RoomLimit => StatusCode::BAD_REQUEST,
        HubError::RoomFull(..) | HubError::NotYours(_) => StatusCode::FORBIDDEN,
        HubError::Full => StatusCode::SERVICE_UNAVAILABLE,
        HubError::Send(_) | HubError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.code(), &e.to_string())
}

/// Equal in time independent of where the first difference is.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A query string that did not parse.
pub(super) type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// Checks the API key, then takes the query string; `Err` is the 401 answer,
/// or the 400 answer saying `usage`.
pub(super) fn authorized_query<T>(
    shared: &Shared,
    headers: &HeaderMap,
    query: QueryResult<T>,
    usage: &str,
) -> Result<T, Box<Response>> {
    authorize(shared, headers)?;
    query
        .map(|Query(q)| q)
        .map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "BAD_REQUEST", usage)))
}

/// Checks the API key; `Err` is the 401 answer.
pub(super) fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let keys = &shared.security.api_keys;
    if keys.is_empty() {
        crate::security::ratelimit::refused("api_key");
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "AUTH_REQUIRED",
            "no API key is configured on this server (--api-key)",
        )));
    }
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    let Some(given) = given else {
        crate::security::ratelimit::refused("api_key");
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "AUTH_REQUIRED",
            "send Authorization: Bearer <key> or X-API-Key",
        )));
    };
    // Compare with every key so the time does not tell which one matched.
    let ok = keys
        .iter()
        .fold(false, |acc, k| acc | ct_eq(k.as_bytes(), given.as_bytes()));
    if ok {
        Ok(())
    } else {
        crate::security::ratelimit::refused("api_key");
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "AUTH_FAILED",
            "API key not accepted",
        )))
    }
}

/// The body of a request, or the answer to a body that could not be read
/// (over `--max-body`: 413 `TOO_LARGE`).
pub(super) fn body_or_error(
    shared: &Shared,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, Box<Response>> {
    match body {
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            crate::security::ratelimit::refused("body_too_large");
            Err(Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "TOO_LARGE",
                &format!("body larger than {} bytes", shared.security.max_body),
            )))
        }
        Err(e) => Err(Box::new(error(e.status(), "BAD_REQUEST", &e.body_text()))),
    }
}

async fn rooms(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return *r;
    }
    axum::Json(json!({"rooms": shared.hub.rooms(1000)})).into_response()
}

#[derive(Deserialize)]
struct HistoryQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

async fn history(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match authorized_query(
        &shared,
        &headers,
        query,
        "since and limit are non-negative integers",
    ) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    match shared
        .hub
        .history(
            &room,
            q.since.map(Offset),
            q.limit.unwrap_or(crate::transport::DEFAULT_HISTORY),
        )
        .await
    {
        Ok((epoch, page)) => axum::Json(json!({
            "room": room,
            "epoch": epoch,
            "messages": page.messages.iter().map(|m| &**m).collect::<Vec<_>>(),
            "complete": page.complete,
        }))
        .into_response(),
        Err(e) => hub_error(&e),
    }
}

#[derive(Deserialize)]
struct PresenceQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn presence(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    query: Result<Query<PresenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match authorized_query(&shared, &headers, query, "limit is a non-negative integer") {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let after = match q.after.as_deref().map(Cursor::decode).transpose() {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("after: {e}"),
            );
        }
    };
    let page = shared.hub.presence_page(&room, after.as_ref(), q.limit);
    let mut body = json!({"room": room});
    put_page(&mut body, &page);
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
