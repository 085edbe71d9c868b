//! The hub's transports and the one request layer they share.
//!
//! ```text
//!  socket ─▶ framing (tcp: lines; ws: text frames; sio: prise-sio events;
//!                     sse: the query of one GET, receive only)
//!         ─▶ prise-proto decoder (line::Command, wsjson::ClientFrame, sio_events::ClientEvent)
//!         ─▶ Request ─▶ Client::apply: rate, auth, refresh, room permission, hub call
//!         ─▶ Reply ─▶ the transport's encoder (line::encode, wsjson::encode, sio_events,
//!                     sse::encode) ─▶ socket
//!  hub push (Outbound) ─▶ the same encoders ─▶ socket
//! ```
//!
//! A transport keeps only its framing, its handshake, its liveness rules
//! (heartbeats, close codes, recovery) and the encoding of replies and
//! pushes; what a request may do and how it is refused is decided once, in
//! [`client`].

pub(crate) mod client;
pub(crate) mod handoff;
pub(crate) mod reply;
pub(crate) mod request;
pub(crate) mod sio;
pub(crate) mod sse;
pub(crate) mod tcp;
pub(crate) mod timers;
pub(crate) mod ws;

#[cfg(test)]
mod hook_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod presence_tests;
#[cfg(test)]
mod tests;

/// Messages a history request returns when it names no limit, on every
/// transport.
pub(crate) const DEFAULT_HISTORY: usize = 50;

/// Resolves at `deadline`, never without one.
pub(crate) async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
