//! The admin endpoint: `GET /metrics` (Prometheus text), `GET /status` (JSON), and the
//! backend control API:
//!
//! | request | effect | answers |
//! |---|---|---|
//! | `GET /backends` | every backend: state, health, weight, connections, last check | 200 |
//! | `POST /backends` (JSON body) | add a backend | 201, 400, 404, 409 |
//! | `POST /backends/{id}/drain` | no new connection, established ones finish | 200, 404, 409 |
//! | `POST /backends/{id}/enable` | back into service | 200, 404, 409 |
//! | `POST /backends/{id}/disable` | no new connection, established ones closed | 200, 404, 409 |
//! | `DELETE /backends/{id}` | drain, then remove | 202, 404, 409 |
//!
//! `{id}` is a backend's number or its address. Errors are `{"error": "..."}`. Request
//! bodies are capped at [`MAX_BODY`] bytes.

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backend::BackendStatus;
use crate::config::{Balance, ConfigError};
use crate::control::{AddBackend, ControlError};
use crate::pool::JoinError;
use crate::server::ProxyHandle;

/// Largest request body accepted by the admin endpoint.
pub const MAX_BODY: usize = 16 * 1024;

/// The body of `GET /status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The first listener's address.
    pub listen: std::net::SocketAddr,
    /// Every listener's address.
    pub listeners: Vec<std::net::SocketAddr>,
    /// Balancing algorithm of the first listener.
    pub balance: Balance,
    /// Client connections open now.
    pub connections: u64,
    /// Every backend.
    pub backends: Vec<BackendStatus>,
}

/// Serves the admin routes on `listener` until `stop` fires.
pub(crate) async fn serve(listener: TcpListener, handle: ProxyHandle, stop: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/backends", get(list).post(add))
        .route("/backends/{id}", axum::routing::delete(remove))
        .route("/backends/{id}/{action}", post(action))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(handle);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "admin endpoint stopped");
    }
}

async fn metrics(State(h): State<ProxyHandle>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.metrics(),
    )
}

async fn status(State(h): State<ProxyHandle>) -> Json<Status> {
    let config = h.config();
    Json(Status {
        listen: h.local_addr(),
        listeners: h.local_addrs(),
        balance: config.listeners[0].balance,
        connections: h.stats().active.load(std::sync::atomic::Ordering::Relaxed),
        backends: h.status(),
    })
}

async fn list(State(h): State<ProxyHandle>) -> Response {
    Json(h.members()).into_response()
}

async fn add(
    State(h): State<ProxyHandle>,
    body: Result<Json<AddBackend>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(req)) => req,
        Err(e) => return error(e.status(), &e.body_text()),
    };
    match h.add(req) {
        Ok(added) => (StatusCode::CREATED, Json(added)).into_response(),
        Err(e) => control_error(&e),
    }
}

async fn action(
    State(h): State<ProxyHandle>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let result = match action.as_str() {
        "drain" => h.drain(&id),
        "enable" => h.enable(&id),
        "disable" => h.disable(&id),
        other => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no action {other} (drain, enable, disable)"),
            );
        }
    };
    match result {
        Ok(s) => Json(s).into_response(),
        Err(e) => control_error(&e),
    }
}

async fn remove(State(h): State<ProxyHandle>, Path(id): Path<String>) -> Response {
    match h.remove(&id) {
        Ok(s) => (StatusCode::ACCEPTED, Json(s)).into_response(),
        Err(e) => control_error(&e),
    }
}

fn control_error(e: &ControlError) -> Response {
    let code = match e {
        ControlError::UnknownBackend(_) | ControlError::UnknownListener(_) => StatusCode::NOT_FOUND,
        ControlError::ListenerRequired | ControlError::Config(ConfigError::Invalid(_)) => {
            StatusCode::BAD_REQUEST
        }
        ControlError::Config(_) => StatusCode::BAD_REQUEST,
        ControlError::Ambiguous(_) | ControlError::Join(JoinError::Exists | JoinError::Full) => {
            StatusCode::CONFLICT
        }
    };
    error(code, &e.to_string())
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}
