//! The HTTP listener: the page, `/ws`, `/sse`, `/stats`, `/metrics`, `/healthz`,
//! `/readyz`, on hyper with upgrades, one task per connection.

pub(crate) mod api;
pub(crate) mod control;
pub(crate) mod events;
pub(crate) mod forward;
pub(crate) mod page;

use crate::Shared;
use crate::security::tls::MaybeTls;
use crate::transport::{sse, ws};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use prise_hub::Transport;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tracing::Instrument;

/// The process-wide Prometheus recorder (installed once, shared by every hub
/// in the process, e.g. in tests).
pub(crate) fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::debug!("a metrics recorder was already installed");
        }
        handle
    })
}

/// The header through which trusted balancers name the client.
const FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The client's address of a request: the peer's, or the one a trusted
/// proxy named (PROXY header, `X-Forwarded-For`).
pub(crate) fn peer_of(req: &Request) -> String {
    remote_of(req).map_or_else(|| "?".to_owned(), |a| a.to_string())
}

/// The client's address, when the listener recorded it.
pub(crate) fn remote_of<B>(req: &http::Request<B>) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// The routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::app_js))
        .route("/style.css", get(page::style_css))
        .route("/ws", get(ws::handler))
        .route("/sse", get(sse::handler).options(sse::preflight))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(crate::http::api::routes(&shared))
        .merge(crate::http::events::routes())
        .with_state(Arc::clone(&shared))
        .merge(
            shared
                .sio
                .router()
                .layer(axum::middleware::map_request(note_forwarded)),
        )
}

/// Logs who a request forwarded by another node came from.
async fn note_forwarded(req: Request) -> Request {
    if let Some(hop) = req.headers().get(crate::http::forward::HOP_HEADER) {
        let client = req
            .headers()
            .get(crate::http::forward::CLIENT_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        tracing::debug!(from_node = ?hop, client, "socket.io request forwarded by another node");
    }
    req
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if !shared.hub.ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let s = shared.hub.stats();
    let mut conns = serde_json::Map::new();
    for t in Transport::ALL {
        conns.insert(t.as_str().into(), s.connections(t).into());
    }
    let body = json!({
        "uptimeSeconds": s.uptime_seconds(),
        "connections": conns,
        "messagesTotal": s.messages(),
        "deliveriesTotal": s.deliveries(),
        "messagesPerSecond": shared.rate.get(),
        "slowConsumerDisconnects": s.slow_consumers(),
        "rooms": shared.hub.rooms(200),
    });
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// Accepts HTTP connections until shutdown.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = router(Arc::clone(&shared));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.security.header_timeout)
        .max_buf_size(64 * 1024);
    let builder = Arc::new(builder);
    let conns = Arc::clone(&shared);
    let handle = move |stream, peer: SocketAddr, permit| {
        let shared = &conns;
        let app = app.clone();
        // The permit travels with each request so an upgraded WebSocket
        // keeps holding it after the HTTP connection hands its socket over.
        let permit = Arc::new(permit);
        let trusted = Arc::clone(shared);
        let svc = TowerToHyperService::new(app.map_request(
            move |mut req: Request<hyper::body::Incoming>| {
                let forwarded = req
                    .headers()
                    .get_all(FORWARDED_FOR)
                    .iter()
                    .filter_map(|v| v.to_str().ok());
                let client = trusted.security.trusted.client(peer, forwarded);
                req.extensions_mut().insert(ConnectInfo(client));
                req.extensions_mut().insert(Arc::clone(&permit));
                req.map(axum::body::Body::new)
            },
        ));
        let builder = Arc::clone(&builder);
        let shutdown = shared.shutdown.clone();
        let tls = shared.security.tls.as_ref().map(|t| t.http.clone());
        let handshake = shared.security.header_timeout;
        async move {
            let stream = match MaybeTls::accept(stream, tls.as_ref(), handshake).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "tls handshake failed");
                    return;
                }
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "http connection ended");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        }
        .instrument(tracing::debug_span!("http", %peer))
    };
    crate::accept::serve(
        listener,
        shared,
        crate::security::ratelimit::Listener::Http,
        handle,
    )
    .await;
}
