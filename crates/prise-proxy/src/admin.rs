//! The admin endpoint: `GET /metrics` (Prometheus text) and `GET /status` (JSON).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backend::BackendStatus;
use crate::config::Balance;
use crate::server::ProxyHandle;

/// The body of `GET /status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Listening address.
    pub listen: std::net::SocketAddr,
    /// Balancing algorithm in force.
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
    Json(Status {
        listen: h.local_addr(),
        balance: h.config().balance,
        connections: h.stats().active.load(std::sync::atomic::Ordering::Relaxed),
        backends: h.status(),
    })
}
