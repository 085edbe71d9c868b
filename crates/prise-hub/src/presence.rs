//! Presence shared by several nodes: the events and snapshots a cluster
//! broker hands to the hub.
//!
//! Each room's shared presence has a **version** that grows by one with each
//! `joined`/`left` event (assigned in Redis, in the same script that changes
//! the member set). A node keeps, per room with local members, a view
//! `(version, users)`:
//!
//! - an event with `version == view + 1` is applied and shown to the local
//!   members; one at or below the view is old and ignored; one above it means
//!   events were lost (e.g. while Redis was unreachable) and the view is
//!   fetched again;
//! - a snapshot `(version, users)` read in one atomic script replaces the view
//!   when it is newer; events that arrived before it are kept (bounded) and
//!   replayed over it.
//!
//! So every node shows the same members and the same sequence of
//! `joined`/`left` events per room.

use prise_proto::message::User;

/// Most presence events kept for a room whose view is being fetched; beyond
/// it the view is fetched again.
pub const MAX_PENDING_EVENTS: usize = 256;

/// A change of a room's shared member set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    /// The room's presence version after this event.
    pub version: u64,
    /// Joined (first session anywhere) or left (last session anywhere).
    pub joined: bool,
    /// Who.
    pub user: User,
}

/// A room's shared member set at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceSnapshot {
    /// The version of the set.
    pub version: u64,
    /// Members (distinct users).
    pub users: Vec<User>,
}

/// What the hub answers to a presence event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceApplied {
    /// Applied, ignored as old, kept until the view arrives, or the room has
    /// no local members.
    Done,
    /// Events were missed: fetch a snapshot and install it.
    Refetch,
}
