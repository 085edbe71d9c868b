//! One Engine.IO session: its bounded outbound queue, its transport state and
//! its close signal. Transports (polling, WebSocket) drain the queue; the
//! application fills it through [`Session::send`], which never blocks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use prise_proto::engineio::Transport;
use prise_ws::Utf8Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::EngineConfig;

/// One outbound Engine.IO packet, encoded once and cheap to clone (shared
/// buffers), so the same frame can be queued on many sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text packet: the type digit and its data (`4…`, `2`, `6`).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Frame {
    /// A text frame from a `'static` string (`"2"`, `"6"`).
    pub fn from_static(s: &'static str) -> Self {
        Self::Text(Utf8Bytes::from_static(s))
    }

    /// A text frame from an owned string.
    pub fn text(s: String) -> Self {
        Self::Text(Utf8Bytes::from(s))
    }

    /// Bytes this frame takes in the queue.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) => b.len(),
        }
    }

    /// True for an empty frame (never produced by this crate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it (close packet, or the WebSocket went away).
    TransportClose,
    /// The transport failed (I/O error, overlapping polls, body too large).
    TransportError,
    /// The client sent something that is not Engine.IO (or Socket.IO).
    ParseError,
    /// No pong arrived within `pingTimeout`.
    PingTimeout,
    /// The application closed it.
    ServerClose,
    /// The outbound queue was full: the client does not keep up.
    SlowConsumer,
    /// The server is shutting down.
    ServerShutdown,
    /// No Socket.IO namespace was joined within `connectTimeout`.
    ConnectTimeout,
}

impl CloseReason {
    /// The reason as the reference implementation words it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::ParseError => "parse error",
            Self::PingTimeout => "ping timeout",
            Self::ServerClose => "forced close",
            Self::SlowConsumer => "slow consumer",
            Self::ServerShutdown => "server shutting down",
            Self::ConnectTimeout => "connect timeout",
        }
    }

    /// Closes the server decided on cleanly: queued packets are still sent,
    /// and a long-polling client gets a close packet on its next poll.
    pub(crate) fn is_graceful(self) -> bool {
        matches!(self, Self::ServerClose | Self::ServerShutdown)
    }
}

/// Why [`Session::send`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The queue was full; the session has been closed as a slow consumer.
    #[error("outbound queue full (slow consumer)")]
    QueueFull,
    /// The session is closed.
    #[error("session closed")]
    Closed,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) queue: VecDeque<Frame>,
    pub(crate) queued_bytes: usize,
    pub(crate) transport: Transport,
    /// A WebSocket is attached and upgrading (refuses a second one).
    pub(crate) upgrading: bool,
    /// The upgrading WebSocket answered `3probe`: polls end with a noop.
    pub(crate) probed: bool,
    pub(crate) poll_active: bool,
    pub(crate) post_active: bool,
    pub(crate) awaiting_pong: bool,
    /// When the next pong is due: one ping interval plus one ping timeout
    /// after the session opened or the last pong. Past it, the session is
    /// dead, whether or not the heartbeat task has run yet.
    pub(crate) pong_deadline: tokio::time::Instant,
    pub(crate) close: Option<CloseReason>,
    /// A long-polling client has been told the session closed.
    pub(crate) final_poll_done: bool,
}

/// A copy of request headers that owns its bytes. The values of a parsed
/// request are slices of the connection's read buffer: keeping them for the
/// life of a session would keep that whole buffer (kilobytes) alive with it.
fn detach(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Ok(mut v) = http::HeaderValue::from_bytes(value.as_bytes()) {
            v.set_sensitive(value.is_sensitive());
            out.append(name.clone(), v);
        }
    }
    out
}

/// One Engine.IO session, shared by its transports and the application.
#[derive(Debug)]
pub struct Session {
    sid: Arc<str>,
    remote: Option<SocketAddr>,
    headers: http::HeaderMap,
    query: Box<str>,
    pub(crate) config: Arc<EngineConfig>,
    state: Mutex<State>,
    /// Wakes the transport that writes (a pending poll or the WebSocket writer).
    pub(crate) wake: Notify,
    /// Wakes the heartbeat when a pong arrives.
    pub(crate) pong: Notify,
    /// Cancelled when the session closes.
    pub(crate) closed: CancellationToken,
    /// Cancelled when the final long-poll answer has been taken.
    pub(crate) drained: CancellationToken,
}

impl Session {
    pub(crate) fn new(
        sid: Arc<str>,
        transport: Transport,
        remote: Option<SocketAddr>,
        headers: http::HeaderMap,
        query: &str,
        config: Arc<EngineConfig>,
    ) -> Self {
        let pong_deadline =
            tokio::time::Instant::now() + config.ping_interval + config.ping_timeout;
        Self {
            sid,
            remote,
            headers: detach(&headers),
            query: query.into(),
            config,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                transport,
                upgrading: false,
                probed: false,
                poll_active: false,
                post_active: false,
                awaiting_pong: false,
                pong_deadline,
                close: None,
                final_poll_done: false,
            }),
            wake: Notify::new(),
            pong: Notify::new(),
            closed: CancellationToken::new(),
            drained: CancellationToken::new(),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this crate; the
        // state stays consistent (plain fields), so recover from poisoning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session id (`sid` of the handshake).
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The session id, shared.
    pub fn sid_arc(&self) -> Arc<str> {
        self.sid.clone()
    }

    /// The peer address, when the server was started with connect info.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// The headers of the request that opened the session.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// The query string of the request that opened the session, without `?`.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The transport in use now (`polling` until an upgrade completes).
    pub fn transport(&self) -> Transport {
        self.state().transport
    }

    /// True once the session has closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state().close
    }

    /// Queues one frame without blocking.
    ///
    /// # Errors
    /// [`SendError::QueueFull`] when the queue is at its cap: the session is
    /// then closed as a slow consumer (and counted in
    /// `prise_slow_consumer_disconnects_total{transport="socketio"}`);
    /// [`SendError::Closed`] when the session is closed.
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.send_all(std::slice::from_ref(&frame))
    }

    /// Queues several frames atomically (all or none), without blocking.
    ///
    /// # Errors
    /// As [`Session::send`].
    pub fn send_all(&self, frames: &[Frame]) -> Result<(), SendError> {
        {
            let mut st = self.state();
            if st.close.is_some() {
                return Err(SendError::Closed);
            }
            let bytes: usize = frames.iter().map(Frame::len).sum();
            let fits = st.queue.len() + frames.len() <= self.config.max_queued_packets
                && st.queued_bytes + bytes <= self.config.max_queued_bytes;
            if fits {
                st.queue.extend(frames.iter().cloned());
                st.queued_bytes += bytes;
                drop(st);
                self.wake.notify_one();
                return Ok(());
            }
        }
        metrics::counter!("prise_slow_consumer_disconnects_total", "transport" => "socketio")
            .increment(1);
        tracing::debug!(sid = %self.sid, "outbound queue full, closing slow consumer");
        self.close(CloseReason::SlowConsumer);
        Err(SendError::QueueFull)
    }

    /// Queues a control frame (ping) even past the caps' last slot; only used
    /// by the heartbeat, one frame per interval.
    pub(crate) fn send_control(&self, frame: Frame) -> Result<(), SendError> {
        let mut st = self.state();
        if st.close.is_some() {
            return Err(SendError::Closed);
        }
        if st.queue.len() > self.config.max_queued_packets {
            drop(st);
            return self.send(frame);
        }
        st.queued_bytes += frame.len();
        st.queue.push_back(frame);
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// Closes the session when its pong is overdue, even if the heartbeat
    /// timer has not fired yet (a request can arrive within the timer's
    /// granularity). True when the session is closed.
    pub(crate) fn check_pong_deadline(&self) -> bool {
        let overdue = {
            let st = self.state();
            st.close.is_none() && tokio::time::Instant::now() >= st.pong_deadline
        };
        if overdue {
            self.close(CloseReason::PingTimeout);
        }
        self.is_closed()
    }

    /// Closes the session (idempotent: the first reason wins).
    pub fn close(&self, reason: CloseReason) {
        {
            let mut st = self.state();
            if st.close.is_some() {
                return;
            }
            st.close = Some(reason);
        }
        tracing::debug!(sid = %self.sid, reason = reason.as_str(), "engine.io session closing");
        self.closed.cancel();
        self.wake.notify_waiters();
    }

    /// Takes queued frames up to `budget` encoded bytes (at least one frame).
    pub(crate) fn take_frames(&self, budget: usize, for_polling: bool) -> Vec<Frame> {
        let mut st = self.state();
        let mut out = Vec::new();
        let mut used = 0;
        while let Some(f) = st.queue.front() {
            let cost = match f {
                Frame::Binary(b) if for_polling => {
                    prise_proto::engineio::encoded_binary_len(b.len())
                }
                f => f.len(),
            } + 1;
            if !out.is_empty() && used + cost > budget {
                break;
            }
            used += cost;
            // `front()` was Some just above, under the same lock.
            if let Some(f) = st.queue.pop_front() {
                st.queued_bytes -= f.len();
                out.push(f);
            }
        }
        out
    }

    pub(crate) fn on_pong(&self) {
        let mut st = self.state();
        if st.awaiting_pong {
            st.awaiting_pong = false;
            st.pong_deadline =
                tokio::time::Instant::now() + self.config.ping_interval + self.config.ping_timeout;
            drop(st);
            self.pong.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(max_packets: usize, max_bytes: usize) -> Session {
        let config = EngineConfig {
            max_queued_packets: max_packets,
            max_queued_bytes: max_bytes,
            ..EngineConfig::default()
        };
        Session::new(
            "s".into(),
            Transport::Polling,
            None,
            http::HeaderMap::new(),
            "",
            Arc::new(config),
        )
    }

    #[test]
    fn full_queue_closes_the_session_as_slow_consumer() {
        let s = session(2, 1 << 20);
        s.send(Frame::from_static("4a")).unwrap();
        s.send(Frame::from_static("4b")).unwrap();
        assert_eq!(s.send(Frame::from_static("4c")), Err(SendError::QueueFull));
        assert_eq!(s.close_reason(), Some(CloseReason::SlowConsumer));
        assert!(s.is_closed());
        assert_eq!(s.send(Frame::from_static("4d")), Err(SendError::Closed));
    }

    #[test]
    fn byte_cap_and_atomic_batches() {
        let s = session(100, 5);
        let frames = [Frame::from_static("4abc"), Frame::from_static("4def")];
        assert_eq!(s.send_all(&frames), Err(SendError::QueueFull));
        let s = session(100, 10);
        s.send_all(&frames).unwrap();
        assert_eq!(s.take_frames(3, true).len(), 1);
        assert_eq!(s.take_frames(100, true).len(), 1);
        assert!(s.take_frames(100, true).is_empty());
    }

    #[test]
    fn close_keeps_the_first_reason() {
        let s = session(4, 100);
        s.close(CloseReason::PingTimeout);
        s.close(CloseReason::ServerClose);
        assert_eq!(s.close_reason(), Some(CloseReason::PingTimeout));
    }
}
