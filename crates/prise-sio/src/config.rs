//! Settings of the Engine.IO and Socket.IO layers. Every size and count a
//! peer controls has a cap here, with its default documented.

use std::time::Duration;

use prise_proto::engineio::{DEFAULT_MAX_PACKETS_PER_PAYLOAD, DEFAULT_MAX_PAYLOAD, PayloadLimits};
use prise_ws::WsConfig;

/// Default path the Engine.IO server answers on.
pub const DEFAULT_PATH: &str = "/engine.io/";
/// Default interval between server pings: 25 s (as the reference server).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Default wait for a pong: 20 s (as the reference server).
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Default cap on packets waiting in one session's outbound queue.
pub const DEFAULT_MAX_QUEUED_PACKETS: usize = 1_024;
/// Default cap on bytes waiting in one session's outbound queue: 16 MiB.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 << 20;
/// Default cap on open sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;
/// Default longest wait of one long-poll GET before it is answered with a noop.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client has to finish an upgrade (`2probe` … `5`).
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to join a namespace: 45 s (as the reference server).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(45);
/// Default timeout of a server-to-client emit expecting an ack.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on acks one socket may wait for at once.
pub const DEFAULT_MAX_PENDING_ACKS: usize = 256;
/// Default cap on decoded packets waiting for the application, per session.
pub const DEFAULT_INBOUND_QUEUE: usize = 64;

/// Cross-origin settings of the long-polling transport.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorsConfig {
    /// Origins allowed to poll (`"*"` allows any). Empty (the default): no
    /// CORS headers, so only same-origin pages can poll.
    pub allowed_origins: Vec<String>,
    /// Answer `Access-Control-Allow-Credentials: true` (cookies). With it,
    /// the request's origin is echoed instead of `*`.
    pub credentials: bool,
}

impl CorsConfig {
    /// The value of `Access-Control-Allow-Origin` for a request from `origin`.
    pub(crate) fn allow_origin(&self, origin: Option<&str>) -> Option<String> {
        let any = self.allowed_origins.iter().any(|o| o == "*");
        match origin {
            Some(o) if any || self.allowed_origins.iter().any(|a| a == o) => Some(o.to_owned()),
            None if any && !self.credentials => Some("*".to_owned()),
            _ => None,
        }
    }
}

/// Settings of an Engine.IO server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// The HTTP path served, with a trailing slash (default [`DEFAULT_PATH`]).
    pub path: String,
    /// Interval between server pings (default [`DEFAULT_PING_INTERVAL`]).
    pub ping_interval: Duration,
    /// Wait for a pong before closing (default [`DEFAULT_PING_TIMEOUT`]).
    pub ping_timeout: Duration,
    /// Largest payload (POST body) or WebSocket message, in bytes; announced
    /// as `maxPayload` (default [`DEFAULT_MAX_PAYLOAD`], 1 MB).
    pub max_payload: usize,
    /// Most packets in one POST body (default [`DEFAULT_MAX_PACKETS_PER_PAYLOAD`]).
    pub max_packets_per_payload: usize,
    /// Most packets queued for one session before it is closed as a slow
    /// consumer (default [`DEFAULT_MAX_QUEUED_PACKETS`]).
    pub max_queued_packets: usize,
    /// Most bytes queued for one session (default [`DEFAULT_MAX_QUEUED_BYTES`]).
    pub max_queued_bytes: usize,
    /// Most open sessions; more handshakes get HTTP 503 (default [`DEFAULT_MAX_SESSIONS`]).
    pub max_sessions: usize,
    /// Longest wait of one long-poll GET (default [`DEFAULT_POLL_TIMEOUT`]).
    pub poll_timeout: Duration,
    /// Time allowed for an upgrade (default [`DEFAULT_UPGRADE_TIMEOUT`]).
    pub upgrade_timeout: Duration,
    /// Serve HTTP long-polling (default true).
    pub allow_polling: bool,
    /// Serve WebSocket and upgrades to it (default true).
    pub allow_websocket: bool,
    /// Cross-origin settings of long-polling.
    pub cors: CorsConfig,
    /// WebSocket buffers; the message cap is raised to `max_payload` if lower.
    pub ws: WsConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            path: DEFAULT_PATH.to_owned(),
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_packets_per_payload: DEFAULT_MAX_PACKETS_PER_PAYLOAD,
            max_queued_packets: DEFAULT_MAX_QUEUED_PACKETS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_sessions: DEFAULT_MAX_SESSIONS,
            poll_timeout: DEFAULT_POLL_TIMEOUT,
            upgrade_timeout: DEFAULT_UPGRADE_TIMEOUT,
            allow_polling: true,
            allow_websocket: true,
            cors: CorsConfig::default(),
            ws: WsConfig::default(),
        }
    }
}

impl EngineConfig {
    pub(crate) fn payload_limits(&self) -> PayloadLimits {
        PayloadLimits {
            max_payload: self.max_payload,
            max_packets: self.max_packets_per_payload,
        }
    }

    pub(crate) fn ws_config(&self) -> WsConfig {
        let mut ws = self.ws;
        ws.max_message_size = self.max_payload;
        ws.max_frame_size = self.max_payload.max(self.ws.max_frame_size);
        ws
    }
}

/// Settings of a Socket.IO server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SioConfig {
    /// The Engine.IO layer underneath; its `path` defaults to `/socket.io/` here.
    pub engine: EngineConfig,
    /// Namespaces clients may join; `/` is always served. Others get
    /// `CONNECT_ERROR {"message":"Invalid namespace"}`.
    pub namespaces: Vec<String>,
    /// Time a session has to join a namespace before it is closed
    /// (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// Connection state recovery: CONNECT answers carry a `pid`, and a
    /// client's `{pid, offset}` reaches [`crate::SioHandler::connect`].
    /// Default false.
    pub recovery: bool,
    /// Caps on binary attachments and namespace names.
    pub limits: prise_proto::socketio::PacketLimits,
    /// Most acks one socket may await at once (default [`DEFAULT_MAX_PENDING_ACKS`]).
    pub max_pending_acks: usize,
    /// Decoded packets waiting for the handler, per session
    /// (default [`DEFAULT_INBOUND_QUEUE`]); a full queue stops reading.
    pub inbound_queue: usize,
}

impl Default for SioConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig {
                path: "/socket.io/".to_owned(),
                ..EngineConfig::default()
            },
            namespaces: vec!["/".to_owned()],
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            recovery: false,
            limits: prise_proto::socketio::PacketLimits::default(),
            max_pending_acks: DEFAULT_MAX_PENDING_ACKS,
            inbound_queue: DEFAULT_INBOUND_QUEUE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origin_rules() {
        let none = CorsConfig::default();
        assert_eq!(none.allow_origin(Some("http://a")), None);
        let any = CorsConfig {
            allowed_origins: vec!["*".into()],
            credentials: false,
        };
        assert_eq!(any.allow_origin(None).as_deref(), Some("*"));
        assert_eq!(
            any.allow_origin(Some("http://a")).as_deref(),
            Some("http://a")
        );
        let list = CorsConfig {
            allowed_origins: vec!["http://a".into()],
            credentials: true,
        };
        assert_eq!(
            list.allow_origin(Some("http://a")).as_deref(),
            Some("http://a")
        );
        assert_eq!(list.allow_origin(Some("http://b")), None);
    }
}
