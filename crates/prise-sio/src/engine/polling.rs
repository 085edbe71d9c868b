//! The HTTP long-polling transport: a GET waits (bounded) for queued packets
//! and answers them as one payload; a POST carries a payload from the client.
//! One GET and one POST at a time per session: an overlapping GET closes the
//! session, as the protocol says.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use prise_proto::engineio::{
    ErrorCode, Packet, PacketType, PayloadEncoder, Transport, decode_payload,
};

use super::{CloseReason, Engine, EngineConn, EngineHandler, EngineMessage, Frame, Session};
use super::{error_response, text_response};
use crate::config::EngineConfig;

pub(super) fn remote_addr<B>(req: &Request<B>) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

pub(super) async fn handle<H: EngineHandler>(
    engine: &Arc<Engine<H>>,
    req: Request<Body>,
    sid: Option<String>,
) -> Response<Body> {
    match (req.method().clone(), sid) {
        (Method::GET, None) => {
            let remote = remote_addr(&req);
            let query = req.uri().query().unwrap_or("");
            match engine.open(Transport::Polling, remote, req.headers().clone(), query) {
                Some((entry, handshake)) => {
                    if let Some(cluster) = engine.cluster.get() {
                        cluster.claim(entry.session.sid()).await;
                    }
                    text_response(StatusCode::OK, handshake)
                }
                None => text_response(StatusCode::SERVICE_UNAVAILABLE, "too many sessions"),
            }
        }
        (Method::GET, Some(sid)) => poll(engine, &sid).await,
        (Method::POST, Some(sid)) => post(engine, req, &sid).await,
        (_, None) => error_response(ErrorCode::BadHandshakeMethod),
        _ => error_response(ErrorCode::BadRequest),
    }
}

/// Resets `poll_active` when a GET ends, even when hyper drops it early.
struct PollGuard<'a>(&'a Session);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.0.state().poll_active = false;
    }
}

struct PostGuard<'a>(&'a Session);

impl Drop for PostGuard<'_> {
    fn drop(&mut self) {
        self.0.state().post_active = false;
    }
}

fn payload(frames: &[Frame], tail: Option<&str>) -> Response<Body> {
    let mut enc = PayloadEncoder::new();
    for f in frames {
        match f {
            Frame::Text(t) => enc.push_encoded_text(t),
            Frame::Binary(b) => enc.push_binary(b),
        }
    }
    if let Some(t) = tail {
        enc.push_encoded_text(t);
    }
    text_response(StatusCode::OK, enc.finish())
}

/// The answer that tells a polling client its session is over.
fn final_answer(s: &Session, reason: CloseReason) -> Response<Body> {
    {
        let mut st = s.state();
        st.final_poll_done = true;
    }
    s.drained.cancel();
    if reason == CloseReason::TransportClose {
        // The client closed: just end its pending poll.
        return payload(&[], Some("6"));
    }
    let frames = if reason.is_graceful() {
        s.take_frames(usize::MAX, true)
    } else {
        Vec::new()
    };
    payload(&frames, Some("1"))
}

async fn poll<H: EngineHandler>(engine: &Arc<Engine<H>>, sid: &str) -> Response<Body> {
    let Some(entry) = engine.lookup(sid) else {
        return error_response(ErrorCode::UnknownSid);
    };
    let s = &*entry.session;
    s.check_pong_deadline();
    if s.state().probed {
        // A poll that arrives while the upgrade is being completed waits a
        // little for `5` (then: 400, the session has moved to the WebSocket)
        // before it gets its noop, as the reference server's 100 ms check does.
        wait_for_upgrade(s, PROBE_POLL_GRACE.min(engine.config.upgrade_timeout)).await;
    }
    {
        let mut st = s.state();
        if st.transport != Transport::Polling {
            return error_response(ErrorCode::BadRequest);
        }
        if let Some(reason) = st.close {
            if reason.is_graceful() && !st.final_poll_done {
                drop(st);
                return final_answer(s, reason);
            }
            return error_response(ErrorCode::UnknownSid);
        }
        if st.poll_active {
            drop(st);
            s.close(CloseReason::TransportError);
            return error_response(ErrorCode::BadRequest);
        }
        st.poll_active = true;
    }
    let _guard = PollGuard(s);
    let deadline = tokio::time::Instant::now() + engine.config.poll_timeout;
    loop {
        let notified = s.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let st = s.state();
            if let Some(reason) = st.close {
                drop(st);
                return final_answer(s, reason);
            }
            if st.probed || st.transport != Transport::Polling {
                return payload(&[], Some("6"));
            }
        }
        let frames = s.take_frames(engine.config.max_payload, true);
        if !frames.is_empty() {
            return payload(&frames, None);
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = s.closed.cancelled() => {}
            _ = tokio::time::sleep_until(deadline) => return payload(&[], Some("6")),
        }
    }
}

/// How long a poll arriving mid-upgrade waits for the upgrade to complete.
const PROBE_POLL_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

async fn wait_for_upgrade(s: &Session, timeout: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = s.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !s.state().upgrading || s.is_closed() {
            return;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

async fn post<H: EngineHandler>(
    engine: &Arc<Engine<H>>,
    req: Request<Body>,
    sid: &str,
) -> Response<Body> {
    let Some(entry) = engine.lookup(sid) else {
        return error_response(ErrorCode::UnknownSid);
    };
    let s = &*entry.session;
    s.check_pong_deadline();
    {
        let mut st = s.state();
        if st.close.is_some() {
            return error_response(ErrorCode::UnknownSid);
        }
        if st.transport != Transport::Polling {
            return error_response(ErrorCode::BadRequest);
        }
        if st.post_active {
            drop(st);
            s.close(CloseReason::TransportError);
            return error_response(ErrorCode::BadRequest);
        }
        st.post_active = true;
    }
    let _guard = PostGuard(s);
    let limit = engine.config.max_payload;
    let body = match axum::body::to_bytes(req.into_body(), limit).await {
        Ok(b) => b,
        Err(_) => {
            s.close(CloseReason::TransportError);
            return text_response(StatusCode::PAYLOAD_TOO_LARGE, "payload too large");
        }
    };
    let packets = match decode_payload(&body, engine.config.payload_limits()) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(sid, error = %e, "invalid polling payload");
            s.close(CloseReason::ParseError);
            return error_response(ErrorCode::BadRequest);
        }
    };
    let mut conn = entry.conn.lock().await;
    for p in packets {
        if s.is_closed() {
            break;
        }
        match p {
            Packet::Text(PacketType::Message, text) => {
                conn.on_message(EngineMessage::Text(text)).await
            }
            Packet::Binary(b) => conn.on_message(EngineMessage::Binary(b)).await,
            Packet::Text(PacketType::Pong, _) => s.on_pong(),
            Packet::Text(PacketType::Close, _) => s.close(CloseReason::TransportClose),
            Packet::Text(PacketType::Ping, data) => {
                let _ = s.send(Frame::text(format!("3{data}")));
            }
            Packet::Text(PacketType::Noop | PacketType::Upgrade, _) => {}
            Packet::Text(PacketType::Open, _) => {
                s.close(CloseReason::ParseError);
                return error_response(ErrorCode::BadRequest);
            }
        }
    }
    let mut r = text_response(StatusCode::OK, "ok");
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// The answer to a CORS preflight (`OPTIONS`).
pub(super) fn preflight<B>(req: &Request<B>) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(v) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

/// Adds the CORS headers the configuration allows for this origin.
pub(super) fn with_cors(
    config: &EngineConfig,
    origin: Option<&str>,
    mut r: Response<Body>,
) -> Response<Body> {
    if r.status() == StatusCode::SWITCHING_PROTOCOLS {
        return r;
    }
    if let Some(allow) = config.cors.allow_origin(origin)
        && let Ok(v) = HeaderValue::from_str(&allow)
    {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        if config.cors.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}
