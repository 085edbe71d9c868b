//! What happens in the hub that a backend may want to hear of: users
//! entering and leaving rooms (first session in, last session out), rooms
//! becoming occupied or vacated, sessions closing and why. The hub reports
//! each to an [`ActivitySink`] (set with [`crate::Hub::set_activity`]) in
//! the order it happened for each room: joins and leaves are reported under
//! the room's shard lock, so a sink must only queue them (never block).
//!
//! Joins and leaves are reported on a hub whose presence is its own (one
//! node); with presence shared over a broker, a node sees only its own
//! sessions, and the broker records the cluster's transitions itself (the
//! Redis engine in its presence scripts, see
//! [`crate::redis_broker::WebhookOutbox`]). Closed sessions are reported on
//! every hub.

use crate::Transport;
use crate::session::{CloseReason, SessionId};
use prise_proto::message::User;
use std::sync::Arc;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// A user's first session entered a room.
    MemberJoined {
        /// The room.
        room: Arc<str>,
        /// Who.
        user: Arc<User>,
        /// The room had no member before.
        occupied: bool,
    },
    /// A user's last session left a room.
    MemberLeft {
        /// The room.
        room: Arc<str>,
        /// Who.
        user: Arc<User>,
        /// The room has no member now.
        vacated: bool,
    },
    /// A session ended (after its rooms were left).
    SessionClosed {
        /// Which.
        session: SessionId,
        /// Its user.
        user: User,
        /// Its transport.
        transport: Transport,
        /// Why the hub closed it; `None`: the client went away.
        reason: Option<CloseReason>,
    },
}

/// Where the hub reports [`Activity`]. Called under locks: queue, never block.
pub trait ActivitySink: Send + Sync {
    /// Takes one report.
    fn record(&self, activity: Activity);
}
