//! The Engine.IO v4 server: session registry, request routing, heartbeat.
//!
//! ```text
//!  HTTP request ─▶ Engine::handle ─┬─ GET  no sid  ─▶ new polling session ─▶ "0{handshake}"
//!                                  ├─ GET  sid     ─▶ polling::poll (drains the queue)
//!                                  ├─ POST sid     ─▶ polling::post ─▶ EngineConn::on_message
//!                                  ├─ WS upgrade   ─▶ websocket::run (new session or upgrade)
//!                                  └─ sid held elsewhere ─▶ SessionCluster::forward (or 400)
//!  application ─▶ Session::send (bounded queue, never blocks) ─▶ whichever transport writes
//!  per session: supervisor task = heartbeat (ping, pong timeout) + close handling
//! ```

mod cluster;
mod polling;
pub(crate) mod session;
mod websocket;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use prise_proto::engineio::{ErrorCode, Handshake, Transport};
use tokio_util::task::TaskTracker;

use crate::config::EngineConfig;
pub use cluster::{SessionCluster, SharedCluster};
pub use session::{CloseReason, Frame, SendError, Session};

/// A message from the client, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineMessage {
    /// A text message (the data of a `4` packet).
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

/// The application side of one session, created by [`EngineHandler::on_open`].
///
/// Calls are serialized: one message at a time, in order, whichever
/// transport carried it.
pub trait EngineConn: Send + 'static {
    /// A message arrived. Awaiting here slows reading from this client
    /// (back-pressure), nothing else.
    fn on_message(&mut self, message: EngineMessage) -> impl Future<Output = ()> + Send;
    /// The session closed; called exactly once, after the last message.
    fn on_close(&mut self, reason: CloseReason) -> impl Future<Output = ()> + Send;
}

/// Creates the application side of each new session.
pub trait EngineHandler: Send + Sync + 'static {
    /// The per-session state.
    type Conn: EngineConn;
    /// A session opened. The handshake is already queued, so anything sent
    /// from here arrives after it.
    fn on_open(&self, session: &Arc<Session>) -> Self::Conn;
}

type Registry<C> = HashMap<Arc<str>, Arc<Entry<C>>>;

pub(crate) struct Entry<C> {
    pub(crate) session: Arc<Session>,
    pub(crate) conn: tokio::sync::Mutex<C>,
}

/// An Engine.IO server: serve it with [`Engine::handle`] or [`Engine::router`].
pub struct Engine<H: EngineHandler> {
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) handler: H,
    pub(crate) sessions: Mutex<Registry<H::Conn>>,
    pub(crate) tasks: TaskTracker,
    /// The other servers, when this one is part of a cluster.
    pub(crate) cluster: OnceLock<SharedCluster>,
}

impl<H: EngineHandler> std::fmt::Debug for Engine<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.config.path)
            .field("sessions", &self.session_count())
            .finish()
    }
}

fn new_sid() -> Arc<str> {
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into()
}

pub(crate) fn text_response(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}

pub(crate) fn error_response(code: ErrorCode) -> Response<Body> {
    let mut r = text_response(StatusCode::BAD_REQUEST, code.body());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

fn parse_query(q: &str) -> Query<'_> {
    let mut out = Query {
        eio: None,
        transport: None,
        sid: None,
    };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "EIO" => out.eio = Some(v),
            "transport" => out.transport = Some(v),
            "sid" => out.sid = Some(v),
            _ => {}
        }
    }
    out
}

impl<H: EngineHandler> Engine<H> {
    /// An Engine.IO server with these settings.
    pub fn new(config: EngineConfig, handler: H) -> Arc<Self> {
        Arc::new(Self {
            config: Arc::new(config),
            handler,
            sessions: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            cluster: OnceLock::new(),
        })
    }

    /// Makes this server one of a cluster: polling sessions are claimed
    /// there, and requests for sessions held elsewhere are forwarded. Set
    /// it before serving; a second call is ignored (false).
    pub fn set_cluster(&self, cluster: SharedCluster) -> bool {
        self.cluster.set(cluster).is_ok()
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The application handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    pub(crate) fn registry(&self) -> std::sync::MutexGuard<'_, Registry<H::Conn>> {
        // Plain map operations never leave it inconsistent: recover from poisoning.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.registry().len()
    }

    pub(crate) fn lookup(&self, sid: &str) -> Option<Arc<Entry<H::Conn>>> {
        self.registry().get(sid).cloned()
    }

    /// An axum router serving this engine at its configured path (with and
    /// without the trailing slash). Merge it into the application's router.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        let path = self.config.path.clone();
        let bare = path.trim_end_matches('/').to_owned();
        let e1 = self.clone();
        let e2 = self.clone();
        let mut r = axum::Router::new().route(
            &path,
            axum::routing::any(move |req: Request<Body>| {
                let e = e1.clone();
                async move { e.handle(req).await }
            }),
        );
        if !bare.is_empty() && bare != path {
            r = r.route(
                &bare,
                axum::routing::any(move |req: Request<Body>| {
                    let e = e2.clone();
                    async move { e.handle(req).await }
                }),
            );
        }
        r
    }

    /// Closes every session (WebSockets get a close frame, pending polls a
    /// close packet) and waits, up to `deadline`, for their tasks to end.
    pub async fn shutdown(&self, deadline: std::time::Duration) {
        let all: Vec<_> = self.registry().values().cloned().collect();
        for e in all {
            e.session.close(CloseReason::ServerShutdown);
        }
        self.tasks.close();
        let _ = tokio::time::timeout(deadline, self.tasks.wait()).await;
    }

    /// Answers one HTTP request on the engine path.
    pub async fn handle(self: &Arc<Self>, mut req: Request<Body>) -> Response<Body> {
        let query = req.uri().query().unwrap_or("").to_owned();
        let q = parse_query(&query);
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if req.method() == http::Method::OPTIONS {
            return polling::with_cors(&self.config, origin.as_deref(), polling::preflight(&req));
        }
        let response = match (q.eio, q.transport.and_then(Transport::parse)) {
            (Some("4"), Some(transport)) => {
                let sid = q.sid.map(str::to_owned);
                if let Some(sid) = sid.as_deref()
                    && let Some(cluster) = self.cluster.get()
                    && self.lookup(sid).is_none()
                {
                    // Not held here: the server holding it answers (its
                    // answer already carries its CORS headers).
                    if cluster::plausible_sid(sid)
                        && let Some(r) = cluster.forward(sid, req).await
                    {
                        return r;
                    }
                    return polling::with_cors(
                        &self.config,
                        origin.as_deref(),
                        error_response(ErrorCode::UnknownSid),
                    );
                }
                match transport {
                    Transport::Websocket if self.config.allow_websocket => {
                        websocket::handle(self, &mut req, sid).await
                    }
                    Transport::Polling if self.config.allow_polling => {
                        polling::handle(self, req, sid).await
                    }
                    _ => error_response(ErrorCode::UnknownTransport),
                }
            }
            (Some("4"), None) => error_response(ErrorCode::UnknownTransport),
            _ => error_response(ErrorCode::UnsupportedProtocolVersion),
        };
        polling::with_cors(&self.config, origin.as_deref(), response)
    }

    /// Registers a new session and starts its supervisor. `None` when the
    /// server is at its session cap.
    pub(crate) fn open(
        self: &Arc<Self>,
        transport: Transport,
        remote: Option<SocketAddr>,
        headers: http::HeaderMap,
        query: &str,
    ) -> Option<(Arc<Entry<H::Conn>>, String)> {
        let sid = new_sid();
        let session = Arc::new(Session::new(
            sid.clone(),
            transport,
            remote,
            headers,
            query,
            self.config.clone(),
        ));
        let handshake = Handshake {
            sid: sid.to_string(),
            upgrades: match transport {
                Transport::Polling if self.config.allow_websocket => vec!["websocket".into()],
                _ => vec![],
            },
            ping_interval: self.config.ping_interval.as_millis() as u64,
            ping_timeout: self.config.ping_timeout.as_millis() as u64,
            max_payload: self.config.max_payload as u64,
        }
        .encode();
        if transport == Transport::Websocket {
            // The WebSocket writer sends the queue in order: the handshake first.
            let _ = session.send(Frame::text(handshake.clone()));
        }
        let conn = self.handler.on_open(&session);
        let entry = Arc::new(Entry {
            session,
            conn: tokio::sync::Mutex::new(conn),
        });
        {
            let mut reg = self.registry();
            if reg.len() >= self.config.max_sessions {
                return None;
            }
            reg.insert(sid, entry.clone());
        }
        let engine = self.clone();
        let e = entry.clone();
        self.tasks.spawn(async move { engine.supervise(e).await });
        Some((entry, handshake))
    }

    /// Heartbeat, then close handling: the application's `on_close`, the
    /// final long-poll, removal from the registry.
    async fn supervise(self: Arc<Self>, entry: Arc<Entry<H::Conn>>) {
        let s = &entry.session;
        // Absolute times from the session's pong deadline (set when it
        // opened, moved by each pong): ping one timeout before it, close at it.
        loop {
            let deadline = s.state().pong_deadline;
            let ping_at = deadline - self.config.ping_timeout;
            tokio::select! {
                _ = s.closed.cancelled() => break,
                _ = tokio::time::sleep_until(ping_at) => {}
            }
            s.state().awaiting_pong = true;
            if s.send_control(Frame::from_static("2")).is_err() {
                break;
            }
            tokio::select! {
                _ = s.closed.cancelled() => break,
                _ = s.pong.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    s.close(CloseReason::PingTimeout);
                    break;
                }
            }
        }
        let reason = s.close_reason().unwrap_or(CloseReason::ServerClose);
        entry.conn.lock().await.on_close(reason).await;
        let wait_final = {
            let st = s.state();
            st.transport == Transport::Polling && reason.is_graceful() && !st.final_poll_done
        };
        if wait_final {
            // Give a polling client one poll to learn of the close.
            let grace = self.config.ping_interval + self.config.ping_timeout;
            let _ = tokio::time::timeout(grace, s.drained.cancelled()).await;
        }
        self.registry().remove(s.sid());
        if let Some(cluster) = self.cluster.get() {
            cluster.release(s.sid()).await;
        }
    }
}
