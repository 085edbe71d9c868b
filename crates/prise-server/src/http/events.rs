//! `GET /api/events?after=ID&limit=N`: the webhook outbox, for a consumer
//! that was down (API key as the rest of `/api`). Answers
//! `{"events": [...], "next": ID}` in order, delivered or not, as long as
//! `--webhook-retain` keeps them; `next` is the `after` of the next page.

use super::api::{authorized_query, error};
use crate::Shared;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Events in one answer when the request names no limit.
const DEFAULT_LIMIT: usize = 100;
/// Most events in one answer.
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/api/events", get(events))
}

async fn events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page = match authorized_query(
        &shared,
        &headers,
        page,
        "after is an event id, limit a count",
    ) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let Some(webhooks) = &shared.webhooks else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_AVAILABLE",
            "no webhooks on this server (--webhook-url)",
        );
    };
    let after = match page.after.as_deref().map(str::parse::<u64>).transpose() {
        Ok(a) => a.unwrap_or(0),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "after is an event id",
            );
        }
    };
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    match webhooks.events(after, limit).await {
        Ok(events) => {
            let next = events
                .last()
                .and_then(|e| e.get("id").cloned())
                .unwrap_or_else(|| json!(after.to_string()));
            axum::Json(json!({"events": events, "next": next})).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook outbox unreadable");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "STORE_ERROR",
                "the event outbox cannot be read",
            )
        }
    }
}
