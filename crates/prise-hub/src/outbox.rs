//! A session's outbox: where the hub appends the session's events.
//!
//! By default a session's events go into its bounded queue (the receiver
//! [`crate::Hub::connect`] returns), which the transport's task drains. A
//! transport whose connection already has a bounded outbound queue of its
//! own (Socket.IO: the Engine.IO session's) attaches an [`Outbox`] instead
//! ([`crate::Session::attach`]): the hub then appends to it directly, in the
//! fan-out's critical section, and no task stands between the hub and the
//! connection's writer.
//!
//! ```text
//!  fan-out ──offer──▶ attached Outbox::push ──▶ connection's own queue ──▶ its writer task
//!          └────────▶ (none attached) try_send ──▶ session queue ──▶ transport task
//! ```

use crate::session::{CloseReason, Outbound};

/// What became of one event offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for the client.
    Queued,
    /// The outbox is full: a durable event closes the session as a slow
    /// consumer, an ephemeral one is missed.
    Full,
    /// The session is gone; nothing to do.
    Closed,
}

/// An outbox the hub appends to directly (see the module docs).
///
/// `push` is called under a room's shard lock, once per event and member:
/// it must not block, must not call back into the hub, and must be bounded
/// (answer [`Offer::Full`] past its caps).
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Appends one event, in the order the hub offers them.
    fn push(&self, event: &Outbound) -> Offer;

    /// The session was asked to end ([`crate::Session::close`], called once,
    /// with the first reason): the connection tells its client and closes.
    /// Called outside the hub's locks; it must not block.
    fn close(&self, reason: CloseReason);

    /// Events waiting to be written (for `GET /api/sessions`).
    fn queued(&self) -> usize {
        0
    }
}
