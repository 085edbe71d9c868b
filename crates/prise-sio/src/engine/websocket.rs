//! The WebSocket transport: a new session over a WebSocket, or the upgrade of
//! a polling session (`2probe` → `3probe`, pending poll ends with `6`, then
//! `5`). One task per WebSocket reads packets and writes the session queue.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use prise_proto::engineio::{ErrorCode, Packet, PacketType, Transport, decode_text};
use prise_ws::{Message as WsMessage, UpgradedWebSocket, close_code, close_message};

use super::{
    CloseReason, Engine, EngineConn, EngineHandler, EngineMessage, Entry, Frame, Session,
    error_response,
};

/// How long a closing WebSocket waits for the peer's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(super) async fn handle<H: EngineHandler>(
    engine: &Arc<Engine<H>>,
    req: &mut Request<Body>,
    sid: Option<String>,
) -> Response<Body> {
    if !prise_ws::is_upgrade_request(req) {
        return error_response(ErrorCode::BadRequest);
    }
    // A WebSocket for a session that is already upgraded (or upgrading) is
    // accepted and closed at once, as the reference server does; an unknown
    // sid is refused with 400.
    let mut reject = false;
    let existing = match sid {
        Some(sid) => {
            let Some(entry) = engine.lookup(&sid) else {
                return error_response(ErrorCode::UnknownSid);
            };
            {
                let mut st = entry.session.state();
                if st.transport != Transport::Polling || st.upgrading || st.close.is_some() {
                    reject = true;
                } else {
                    st.upgrading = true;
                }
            }
            (!reject).then_some(entry)
        }
        None => None,
    };
    let (response, pending) = match prise_ws::upgrade(req, engine.config.ws_config(), None) {
        Ok(x) => x,
        Err(e) => {
            if let Some(entry) = existing {
                entry.session.state().upgrading = false;
            }
            let mut r = error_response(ErrorCode::BadRequest);
            *r.status_mut() = e.status();
            return r;
        }
    };
    let remote = super::polling::remote_addr(req);
    let headers = req.headers().clone();
    let query = req.uri().query().unwrap_or("").to_owned();
    let tasks = engine.tasks.clone();
    let engine = engine.clone();
    tasks.spawn(async move {
        // The rare or one-time steps are boxed: a task's future is as large
        // as its largest state, and it stays allocated for the connection's life.
        let ws = match Box::pin(pending.finish()).await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                if let Some(entry) = existing {
                    entry.session.state().upgrading = false;
                }
                return;
            }
        };
        if reject {
            Box::pin(async move {
                let mut ws = ws;
                let _ = tokio::time::timeout(CLOSE_GRACE, async {
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            })
            .await;
            return;
        }
        let (ws, entry) = match existing {
            None => {
                let Some((entry, _)) = engine.open(Transport::Websocket, remote, headers, &query)
                else {
                    let mut ws = ws;
                    let refusal = close_message(close_code::INTERNAL_ERROR, "too many sessions");
                    let _ = Box::pin(ws.send(refusal)).await;
                    return;
                };
                (ws, entry)
            }
            Some(entry) => {
                let upgraded = Box::pin(upgrade(ws, &entry, engine.config.upgrade_timeout)).await;
                let Some(ws) = upgraded else { return };
                (ws, entry)
            }
        };
        // Boxed: the task itself then stays small while the connection lives.
        Box::pin(run(ws, &entry)).await;
    });
    response.map(|_| Body::empty())
}

fn text_of(m: &WsMessage) -> Option<&str> {
    match m {
        WsMessage::Text(t) => Some(t.as_str()),
        _ => None,
    }
}

/// Runs the probe exchange; on success the session's transport is the WebSocket.
async fn upgrade<C: EngineConn>(
    mut ws: UpgradedWebSocket,
    entry: &Entry<C>,
    timeout: Duration,
) -> Option<UpgradedWebSocket> {
    let s = &entry.session;
    let exchange = async {
        // 1. `2probe` → `3probe`, and the pending poll (if any) ends with a noop.
        loop {
            let m = ws.next().await?.ok()?;
            match text_of(&m) {
                Some("2probe") => break,
                Some(_) => return None,
                None if matches!(m, WsMessage::Ping(_) | WsMessage::Pong(_)) => {}
                None => return None,
            }
        }
        ws.send(WsMessage::text("3probe")).await.ok()?;
        s.state().probed = true;
        s.wake.notify_waiters();
        // 2. `5` completes the upgrade.
        loop {
            let m = ws.next().await?.ok()?;
            match text_of(&m) {
                Some("5") => return Some(()),
                Some("6") => {}
                Some(_) => return None,
                None if matches!(m, WsMessage::Ping(_) | WsMessage::Pong(_)) => {}
                None => return None,
            }
        }
    };
    let ok = tokio::select! {
        r = tokio::time::timeout(timeout, exchange) => matches!(r, Ok(Some(()))),
        _ = s.closed.cancelled() => false,
    };
    {
        let mut st = s.state();
        st.upgrading = false;
        st.probed = false;
        if ok {
            st.transport = Transport::Websocket;
        }
    }
    s.wake.notify_waiters();
    if ok {
        tracing::debug!(sid = s.sid(), "upgraded to websocket");
        Some(ws)
    } else {
        let _ = ws.close(None).await;
        None
    }
}

fn to_ws(f: Frame) -> WsMessage {
    match f {
        Frame::Text(t) => WsMessage::Text(t),
        Frame::Binary(b) => WsMessage::Binary(b),
    }
}

async fn write_frames(ws: &mut UpgradedWebSocket, frames: Vec<Frame>) -> bool {
    for f in frames {
        if ws.feed(to_ws(f)).await.is_err() {
            return false;
        }
    }
    ws.flush().await.is_ok()
}

/// Serves one session over a WebSocket until it closes.
async fn run<C: EngineConn>(mut ws: UpgradedWebSocket, entry: &Entry<C>) {
    let s = &entry.session;
    // Created once: waiting on it again each time round would register and
    // unregister a waiter per wake-up.
    let closed = s.closed.cancelled();
    tokio::pin!(closed);
    loop {
        let frames = s.take_frames(usize::MAX, false);
        if !frames.is_empty() {
            let ok = tokio::select! {
                biased;
                ok = write_frames(&mut ws, frames) => ok,
                () = &mut closed => false,
            };
            if !ok {
                s.close(CloseReason::TransportError);
                break;
            }
        }
        // `Session::send` wakes with `notify_one`, which leaves a permit when
        // nobody waits: frames queued after `take_frames` above still wake
        // this wait (at worst once more than needed).
        tokio::select! {
            biased;
            () = &mut closed => break,
            () = s.wake.notified() => {}
            m = ws.next() => match m {
                None => {
                    s.close(CloseReason::TransportClose);
                    break;
                }
                Some(Err(e)) => {
                    tracing::debug!(sid = s.sid(), error = %e, "websocket read failed");
                    s.close(CloseReason::TransportError);
                    break;
                }
                Some(Ok(m)) => {
                    if !Box::pin(on_ws_message(entry, m)).await {
                        break;
                    }
                }
            }
        }
    }
    Box::pin(close(ws, s)).await;
}

/// Closing: sends what a graceful close still owes, then a close frame.
async fn close(mut ws: UpgradedWebSocket, s: &Session) {
    let reason = s.close_reason().unwrap_or(CloseReason::ServerClose);
    if reason.is_graceful() {
        let frames = s.take_frames(usize::MAX, false);
        let _ = tokio::time::timeout(CLOSE_GRACE, write_frames(&mut ws, frames)).await;
    }
    if !matches!(reason, CloseReason::TransportClose) {
        let code = match reason {
            CloseReason::ServerShutdown => close_code::GOING_AWAY,
            CloseReason::SlowConsumer => close_code::POLICY,
            CloseReason::ParseError => close_code::PROTOCOL_ERROR,
            _ => close_code::NORMAL,
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            let _ = ws.send(close_message(code, reason.as_str())).await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

/// Handles one inbound WebSocket message; false when the session closed.
async fn on_ws_message<C: EngineConn>(entry: &Entry<C>, m: WsMessage) -> bool {
    let s = &entry.session;
    match m {
        WsMessage::Text(t) => match decode_text(&t) {
            Ok(Packet::Text(PacketType::Message, data)) => {
                entry
                    .conn
                    .lock()
                    .await
                    .on_message(EngineMessage::Text(data))
                    .await;
            }
            Ok(Packet::Text(PacketType::Pong, _)) => s.on_pong(),
            Ok(Packet::Text(PacketType::Ping, data)) => {
                let _ = s.send(Frame::text(format!("3{data}")));
            }
            Ok(Packet::Text(PacketType::Close, _)) => {
                s.close(CloseReason::TransportClose);
                return false;
            }
            Ok(Packet::Text(PacketType::Noop | PacketType::Upgrade, _)) => {}
            Ok(Packet::Text(PacketType::Open, _) | Packet::Binary(_)) | Err(_) => {
                tracing::debug!(sid = s.sid(), "invalid engine.io packet");
                s.close(CloseReason::ParseError);
                return false;
            }
        },
        WsMessage::Binary(b) => {
            entry
                .conn
                .lock()
                .await
                .on_message(EngineMessage::Binary(b))
                .await;
        }
        WsMessage::Close(_) | WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
    }
    !s.is_closed()
}
