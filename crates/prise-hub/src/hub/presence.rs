//! Presence in the hub: a room's members and their counts, the `joined` /
//! `left` announcements to the other members, and, with a broker that shares
//! presence, each room's view of its members on every node (see
//! [`crate::presence`] for the versioned events and snapshots).
//!
//! Counts are O(1): a room keeps its distinct users with a session count,
//! and announces a user when their first session enters and their last one
//! leaves.

use super::room::Room;
use super::{Hub, Inner};
use crate::HubError;
use crate::broker::DeliverySink as _;
use crate::presence::{MAX_PENDING_EVENTS, PresenceApplied, PresenceEvent, PresenceSnapshot};
use crate::session::{Outbound, Session};
use prise_proto::message::User;
use std::collections::HashMap;
use std::sync::Arc;

/// A room's shared presence at a version (see [`crate::presence`]).
#[derive(Debug)]
pub(super) struct View {
    version: u64,
    users: HashMap<String, User>,
}

/// What applying one shared presence event to a room's view did.
enum ViewUpdate {
    /// No view yet, or the event is not newer than the view: nothing to tell.
    Unchanged,
    /// Applied: these sessions are to be told.
    Applied(Vec<Arc<Session>>),
    /// The event is more than one version ahead of the view: events were
    /// missed and the view must be read again.
    Gap,
}

/// Whether a user joined or left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Joined,
    Left,
}

impl Change {
    fn of(event: &PresenceEvent) -> Self {
        if event.joined {
            Self::Joined
        } else {
            Self::Left
        }
    }
}

/// A change of a room's members to show to some of its sessions, collected
/// under the shard lock and sent after it is released.
struct Announcement {
    /// The sessions to tell.
    targets: Vec<Arc<Session>>,
    change: Change,
    /// Who joined or left.
    user: User,
}

/// Where a joining session stands, for the shared-presence part of a join.
#[derive(Debug, Clone, Copy)]
pub(super) struct JoinState {
    /// This is the user's first session in the room on this node: the node
    /// registers the user with the broker.
    pub(super) first_local: bool,
    /// The session was in the room before this join: a failure leaves it
    /// there.
    pub(super) already_member: bool,
}

fn sorted(mut v: Vec<User>) -> Vec<User> {
    v.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    v
}

impl Room {
    pub(super) fn members(&self) -> Vec<User> {
        match &self.view {
            Some(view) => sorted(view.users.values().cloned().collect()),
            None => sorted(self.users.values().map(|e| e.user.clone()).collect()),
        }
    }

    pub(super) fn member_users(&self) -> usize {
        self.view
            .as_ref()
            .map_or(self.users.len(), |v| v.users.len())
    }

    /// Sessions to tell about `user`: every local session of another user.
    pub(super) fn others_of(&self, user_id: &str) -> Vec<Arc<Session>> {
        self.sessions
            .values()
            .filter(|s| s.user().id != user_id)
            .cloned()
            .collect()
    }

    /// Applies one event to the view and says whom to tell, or that there is
    /// a gap.
    fn apply(&mut self, event: &PresenceEvent) -> ViewUpdate {
        let Some(view) = &mut self.view else {
            return ViewUpdate::Unchanged;
        };
        if event.version <= view.version {
            return ViewUpdate::Unchanged;
        }
        if event.version != view.version + 1 {
            return ViewUpdate::Gap;
        }
        view.version = event.version;
        if event.joined {
            view.users.insert(event.user.id.clone(), event.user.clone());
        } else {
            view.users.remove(&event.user.id);
        }
        ViewUpdate::Applied(self.others_of(&event.user.id))
    }
}

impl Hub {
    /// The shared-presence part of a join: registers the user's first local
    /// session with the broker (or reads the room's view when this node has
    /// none yet) and returns the members on every node.
    pub(super) async fn join_shared(
        &self,
        session: &Arc<Session>,
        room: &Arc<str>,
        user: &User,
        state: JoinState,
    ) -> Result<Vec<User>, HubError> {
        let JoinState {
            first_local,
            already_member: already,
        } = state;
        let broker = &self.inner.broker;
        let has_view = self
            .shard(room)
            .rooms
            .get(&**room)
            .is_some_and(|r| r.view.is_some());
        let snapshot = if first_local {
            Some(broker.presence_join(room, user).await)
        } else if !has_view {
            Some(broker.presence_snapshot(room).await)
        } else {
            None
        };
        match snapshot {
            Some(Ok(snap)) => {
                if self.inner.presence_install(room, snap, false) == PresenceApplied::Refetch
                    && let Ok(snap) = broker.presence_snapshot(room).await
                {
                    self.inner.presence_install(room, snap, true);
                }
            }
            Some(Err(e)) => {
                if !already {
                    let _ = self.leave(session, room);
                }
                if first_local {
                    broker.presence_changed(room, user);
                }
                return Err(e.into());
            }
            None => {}
        }
        // A leave that raced this registration is reconciled by the broker.
        if first_local && !self.inner.local_member(room, &user.id) {
            broker.presence_changed(room, user);
        }
        Ok(self.presence(room))
    }

    /// Members of a room (distinct users), sorted by name.
    pub fn presence(&self, room: &str) -> Vec<User> {
        self.shard(room)
            .rooms
            .get(room)
            .map(Room::members)
            .unwrap_or_default()
    }

    /// Number of sessions in a room, in O(1).
    pub fn member_count(&self, room: &str) -> usize {
        self.shard(room)
            .rooms
            .get(room)
            .map_or(0, |r| r.sessions.len())
    }
}

impl Inner {
    fn notify(&self, room: &Arc<str>, tell: Vec<Announcement>) {
        for Announcement {
            targets,
            change,
            user,
        } in tell
        {
            let user = Arc::new(user);
            let event = match change {
                Change::Joined => Outbound::Joined {
                    room: Arc::clone(room),
                    user,
                },
                Change::Left => Outbound::Left {
                    room: Arc::clone(room),
                    user,
                },
            };
            self.announce(&targets, &event);
        }
    }

    /// Pushes a join or leave to the room's other members on this node,
    /// unless there are more of them than `max_presence_fanout`: announcing
    /// every join of a large room one by one costs the square of its size.
    pub(super) fn announce(&self, targets: &[Arc<Session>], event: &Outbound) {
        let cap = self.config.limits.max_presence_fanout;
        if cap != 0 && targets.len() > cap {
            metrics::counter!("prise_presence_announcements_skipped_total").increment(1);
            return;
        }
        self.send_all(targets.iter(), event);
    }

    /// [`crate::broker::DeliverySink::presence_event`].
    pub(super) fn apply_presence_event(&self, room: &str, event: PresenceEvent) -> PresenceApplied {
        let (name, tell) = {
            let mut shard = self.lock_shard(room);
            let Some(r) = shard.rooms.get_mut(room) else {
                return PresenceApplied::Done;
            };
            if r.view.is_none() {
                if r.pending.len() >= MAX_PENDING_EVENTS {
                    r.pending.remove(0);
                }
                r.pending.push(event);
                return PresenceApplied::Done;
            }
            match r.apply(&event) {
                ViewUpdate::Gap => return PresenceApplied::Refetch,
                ViewUpdate::Unchanged => return PresenceApplied::Done,
                ViewUpdate::Applied(targets) => (
                    Arc::clone(&r.name),
                    vec![Announcement {
                        targets,
                        change: Change::of(&event),
                        user: event.user,
                    }],
                ),
            }
        };
        self.notify(&name, tell);
        PresenceApplied::Done
    }

    /// [`crate::broker::DeliverySink::presence_install`].
    pub(super) fn install_presence(
        &self,
        room: &str,
        snapshot: PresenceSnapshot,
        force: bool,
    ) -> PresenceApplied {
        let mut result = PresenceApplied::Done;
        let (name, tell) = {
            let mut shard = self.lock_shard(room);
            let Some(r) = shard.rooms.get_mut(room) else {
                return PresenceApplied::Done;
            };
            let newer = r
                .view
                .as_ref()
                .is_none_or(|v| force || snapshot.version > v.version);
            if !newer {
                return PresenceApplied::Done;
            }
            let users: HashMap<String, User> = snapshot
                .users
                .into_iter()
                .map(|u| (u.id.clone(), u))
                .collect();
            let mut tell = Vec::new();
            if let Some(old) = &r.view {
                for (id, u) in &users {
                    if !old.users.contains_key(id) {
                        tell.push(Announcement {
                            targets: r.others_of(id),
                            change: Change::Joined,
                            user: u.clone(),
                        });
                    }
                }
                for (id, u) in &old.users {
                    if !users.contains_key(id) {
                        tell.push(Announcement {
                            targets: r.others_of(id),
                            change: Change::Left,
                            user: u.clone(),
                        });
                    }
                }
            }
            r.view = Some(View {
                version: snapshot.version,
                users,
            });
            for event in std::mem::take(&mut r.pending) {
                match r.apply(&event) {
                    ViewUpdate::Applied(targets) => tell.push(Announcement {
                        targets,
                        change: Change::of(&event),
                        user: event.user,
                    }),
                    ViewUpdate::Unchanged => {}
                    ViewUpdate::Gap => {
                        result = PresenceApplied::Refetch;
                        break;
                    }
                }
            }
            (Arc::clone(&r.name), tell)
        };
        self.notify(&name, tell);
        result
    }
}
