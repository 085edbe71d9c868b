//! Presence in the hub: a room's members and their counts, the `joined` /
//! `left` announcements to the other members, the coalesced diffs of large
//! rooms, and, with a broker that shares presence, each room's view of its
//! members on every node (see [`crate::presence`] for the versioned events
//! and snapshots).
//!
//! Counts are O(1) and pages O(log n + page) ([`Roster`]): a room keeps its
//! distinct users sorted, with a session count each, and a change is a user's
//! first session entering or last one leaving.
//!
//! # Announcements
//!
//! In a room with at most `max_presence_fanout` other members on the node, a
//! change is pushed at once (`Joined`/`Left`) to the other users' sessions.
//! Above it, each push would cost one queue slot per member, so n joins cost
//! n²/2: the change is recorded in the room's pending diff instead (bounded
//! to [`MAX_DIFF_USERS`] a way) and one [`PresenceDiff`] per interval
//! (`presence_interval`) goes to every member on the node. While a diff is
//! pending, every change of the room goes into it, so changes are seen in
//! order.

use super::room::Room;
use super::roster::Roster;
use super::{Hub, Inner};
use crate::HubError;
use crate::broker::DeliverySink as _;
use crate::presence::{MAX_PENDING_EVENTS, PresenceApplied, PresenceEvent, PresenceSnapshot};
use crate::session::{CloseReason, Outbound, PresenceDiff, Session};
use prise_proto::message::User;
use prise_proto::presence::{Cursor, Diff, MAX_DIFF_USERS, Page, page_limit};
use std::sync::Arc;
use tokio::sync::watch;

/// A room's shared presence at a version (see [`crate::presence`]).
#[derive(Debug)]
pub(super) struct View {
    version: u64,
    roster: Roster,
}

/// What applying one shared presence event to a room's view did.
enum ViewUpdate {
    /// No view yet, or the event is not newer than the view: nothing to tell.
    Unchanged,
    /// Applied; the change is in the room's announcements.
    Applied,
    /// The event is more than one version ahead of the view: events were
    /// missed and the view must be read again.
    Gap,
}

/// Whether a user joined or left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
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

/// A change to push at once to some of a small room's sessions, collected
/// under the shard lock and sent after it is released.
struct Announcement {
    /// The sessions to tell.
    targets: Vec<Arc<Session>>,
    change: Change,
    /// Who joined or left.
    user: Arc<User>,
}

/// Presence work found under a shard lock, done after it is released.
#[derive(Default)]
#[must_use]
pub(super) struct Tell {
    now: Vec<Announcement>,
    /// A room's diff was started: its flush must be scheduled.
    diff_started: bool,
}

/// The changes of a large room waiting for its next diff. Net changes: a
/// user who came and went within the interval is in neither list.
#[derive(Debug)]
pub(super) struct PendingDiff {
    joined: Vec<Arc<User>>,
    left: Vec<Arc<User>>,
    /// False once a change found its list full.
    complete: bool,
}

impl PendingDiff {
    fn record(&mut self, change: Change, user: Arc<User>) {
        let (add, undo) = match change {
            Change::Joined => (&mut self.joined, &mut self.left),
            Change::Left => (&mut self.left, &mut self.joined),
        };
        // Both lists hold at most MAX_DIFF_USERS: these scans are bounded.
        if let Some(i) = undo.iter().position(|u| u.id == user.id) {
            undo.swap_remove(i);
        } else if add.iter().all(|u| u.id != user.id) {
            if add.len() < MAX_DIFF_USERS {
                add.push(user);
            } else {
                self.complete = false;
            }
        }
    }
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

impl Room {
    /// The room's members: the shared view once read, else the local users.
    pub(super) fn roster(&self) -> &Roster {
        self.view.as_ref().map_or(&self.local, |v| &v.roster)
    }

    pub(super) fn member_users(&self) -> usize {
        self.roster().len()
    }

    /// Sessions to tell about `user`: every local session of another user.
    pub(super) fn others_of(&self, user_id: &str) -> Vec<Arc<Session>> {
        self.sessions
            .values()
            .filter(|s| s.user().id != user_id)
            .cloned()
            .collect()
    }

    /// Routes one change: pushed at once in a small room, into the pending
    /// diff in a large one (or while a diff is pending). O(1) in a large
    /// room; O(cap) in a small one.
    pub(super) fn change(&mut self, cap: usize, change: Change, user: Arc<User>, tell: &mut Tell) {
        let own = self.users.get(&user.id).copied().unwrap_or(0);
        let others = self.sessions.len().saturating_sub(own);
        if cap == 0 || (self.diff.is_none() && others <= cap) {
            tell.now.push(Announcement {
                targets: self.others_of(&user.id),
                change,
                user,
            });
            return;
        }
        metrics::counter!("prise_presence_coalesced_total").increment(1);
        let diff = self.diff.get_or_insert_with(|| {
            tell.diff_started = true;
            PendingDiff {
                joined: Vec::new(),
                left: Vec::new(),
                complete: true,
            }
        });
        diff.record(change, user);
    }

    /// Applies one event to the view and routes its change, or says that
    /// there is a gap.
    fn apply(&mut self, event: &PresenceEvent, cap: usize, tell: &mut Tell) -> ViewUpdate {
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
        let user = Arc::new(event.user.clone());
        if event.joined {
            view.roster.insert(Arc::clone(&user));
        } else {
            view.roster.remove(&user.id);
        }
        self.change(cap, Change::of(event), user, tell);
        ViewUpdate::Applied
    }
}

/// What a join does about the shared view, decided under the shard lock.
enum ViewStep {
    /// The view is there (or the room is gone): nothing to read.
    Ready,
    /// Another join is reading it: wait for that.
    Wait(watch::Receiver<bool>),
    /// This join reads it, and tells the others when done.
    Load(watch::Sender<bool>),
}

impl Hub {
    /// The shared-presence part of a join: registers the user's first local
    /// session with the broker and makes sure this node has the room's view.
    /// The view is read once per node and room (by pages); concurrent joins
    /// wait for that one read, so a join's cost does not grow with the room.
    pub(super) async fn join_shared(
        &self,
        session: &Arc<Session>,
        room: &Arc<str>,
        user: &Arc<User>,
        state: JoinState,
    ) -> Result<(), HubError> {
        let JoinState {
            first_local,
            already_member: already,
        } = state;
        let broker = &self.inner.broker;
        let fail = |e: crate::broker::BrokerError| {
            if !already {
                let _ = self.leave(session, room);
            }
            if first_local {
                broker.presence_changed(room, user);
            }
            Err(e.into())
        };
        if first_local && let Err(e) = broker.presence_join(room, user).await {
            return fail(e);
        }
        loop {
            let step = {
                let mut shard = self.shard(room);
                match shard.rooms.get_mut(&**room) {
                    None => ViewStep::Ready,
                    Some(r) => match (&mut r.view, &r.loading) {
                        (Some(view), _) => {
                            // Registered: in the view now, whether or not its
                            // event has arrived (the event is then a no-op).
                            if first_local && !view.roster.contains(&user.id) {
                                view.roster.insert(Arc::clone(user));
                            }
                            ViewStep::Ready
                        }
                        (None, Some(rx)) => ViewStep::Wait(rx.clone()),
                        (None, None) => {
                            let (tx, rx) = watch::channel(false);
                            r.loading = Some(rx);
                            ViewStep::Load(tx)
                        }
                    },
                }
            };
            match step {
                ViewStep::Ready => break,
                // A failed read clears `loading` and says done: the loop
                // then reads again. A reading join that went away (its
                // future dropped) only drops its sender: clear it here.
                ViewStep::Wait(mut rx) => {
                    if rx.wait_for(|done| *done).await.is_err()
                        && let Some(r) = self.shard(room).rooms.get_mut(&**room)
                        && r.loading.as_ref().is_some_and(|l| l.same_channel(&rx))
                    {
                        r.loading = None;
                    }
                }
                ViewStep::Load(tx) => {
                    let read = broker.presence_snapshot(room).await;
                    let read = match read {
                        Ok(snap) => {
                            if self.inner.install_presence(room, snap, false)
                                == PresenceApplied::Refetch
                            {
                                broker
                                    .presence_snapshot(room)
                                    .await
                                    .map(|snap| self.inner.install_presence(room, snap, true))
                            } else {
                                Ok(PresenceApplied::Done)
                            }
                        }
                        Err(e) => Err(e),
                    };
                    if let Some(r) = self.shard(room).rooms.get_mut(&**room) {
                        r.loading = None;
                    }
                    let _ = tx.send(true);
                    if let Err(e) = read {
                        return fail(e);
                    }
                }
            }
        }
        // A leave that raced this registration is reconciled by the broker.
        if first_local && !self.inner.local_member(room, &user.id) {
            broker.presence_changed(room, user);
        }
        Ok(())
    }

    /// Members of a room (distinct users) in sort order (name, then id):
    /// at most `limit` (capped at [`prise_proto::presence::MAX_PAGE`]; the
    /// default page without one) after `after`, with the room's count and
    /// the cursor to the next page. O(log n + limit).
    pub fn presence_page(&self, room: &str, after: Option<&Cursor>, limit: Option<usize>) -> Page {
        let limit = page_limit(limit);
        self.shard(room)
            .rooms
            .get(room)
            .map(|r| r.roster().page(after, limit))
            .unwrap_or_default()
    }

    /// Every member of a room, sorted: O(n) — for tests and small rooms;
    /// clients page with [`Hub::presence_page`].
    pub fn presence(&self, room: &str) -> Vec<User> {
        self.shard(room)
            .rooms
            .get(room)
            .map(|r| r.roster().page(None, usize::MAX).members)
            .unwrap_or_default()
    }

    /// Number of distinct users in a room, in O(1).
    pub fn presence_count(&self, room: &str) -> usize {
        self.shard(room)
            .rooms
            .get(room)
            .map_or(0, Room::member_users)
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
    /// Sends what `tell` collected: a small room's announcements, and the
    /// timer of a large room's first pending change.
    pub(super) fn tell(&self, room: &Arc<str>, tell: Tell) {
        let Tell { now, diff_started } = tell;
        for Announcement {
            targets,
            change,
            user,
        } in now
        {
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
            self.send_all(targets.iter(), &event);
        }
        if diff_started {
            self.schedule_diff(room);
        }
    }

    /// Sends `room`'s pending diff after one interval.
    fn schedule_diff(&self, room: &Arc<str>) {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let inner = self.me.clone();
                let room = Arc::clone(room);
                let every = self.config.presence_interval;
                handle.spawn(async move {
                    tokio::time::sleep(every).await;
                    if let Some(inner) = inner.upgrade() {
                        inner.flush_diff(&room);
                    }
                });
            }
            // No runtime to wait in (a caller outside tokio): send it now.
            Err(_) => self.flush_diff(room),
        }
    }

    /// Pushes `room`'s pending diff to every member on the node (one
    /// encoding per transport, shared), under the shard lock like a message.
    pub(super) fn flush_diff(&self, room: &str) {
        let mut slow = Vec::new();
        {
            let mut shard = self.lock_shard(room);
            let Some(r) = shard.rooms.get_mut(room) else {
                return;
            };
            let Some(pending) = r.diff.take() else {
                return;
            };
            if pending.joined.is_empty() && pending.left.is_empty() && pending.complete {
                return;
            }
            let plain = |v: Vec<Arc<User>>| v.into_iter().map(|u| User::clone(&u)).collect();
            let diff = Diff {
                room: r.name.to_string(),
                joined: plain(pending.joined),
                left: plain(pending.left),
                count: r.member_users(),
                complete: pending.complete,
            };
            let event = Outbound::PresenceDiff(Arc::new(PresenceDiff::new(diff)));
            for s in r.sessions.values() {
                if s.offer(&event) == crate::outbox::Offer::Full {
                    slow.push(Arc::clone(s));
                }
            }
        }
        metrics::counter!("prise_presence_diffs_total").increment(1);
        for s in slow {
            if s.close_reason().is_none() {
                self.stats.slow_consumer(s.transport);
            }
            s.close(CloseReason::SlowConsumer);
        }
    }

    /// [`crate::broker::DeliverySink::presence_event`].
    pub(super) fn apply_presence_event(&self, room: &str, event: PresenceEvent) -> PresenceApplied {
        let cap = self.config.limits.max_presence_fanout;
        let mut tell = Tell::default();
        let name = {
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
            match r.apply(&event, cap, &mut tell) {
                ViewUpdate::Gap => return PresenceApplied::Refetch,
                ViewUpdate::Unchanged => return PresenceApplied::Done,
                ViewUpdate::Applied => Arc::clone(&r.name),
            }
        };
        self.tell(&name, tell);
        PresenceApplied::Done
    }

    /// [`crate::broker::DeliverySink::presence_install`].
    ///
    /// A snapshot read by pages is not atomic: members who came or went
    /// during the read may or may not be in it. Its version is read before
    /// the first page, and every event after that version is applied over it
    /// (kept while the view is missing, or applied as it arrives); joins and
    /// leaves are idempotent on a set, so the view ends as Redis is.
    pub(super) fn install_presence(
        &self,
        room: &str,
        snapshot: PresenceSnapshot,
        force: bool,
    ) -> PresenceApplied {
        let cap = self.config.limits.max_presence_fanout;
        let mut result = PresenceApplied::Done;
        let mut tell = Tell::default();
        let name = {
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
            let mut roster = Roster::default();
            for u in snapshot.users {
                roster.insert(Arc::new(u));
            }
            let mut changes = Vec::new();
            if let Some(old) = &r.view {
                changes.extend(
                    roster
                        .users()
                        .filter(|u| !old.roster.contains(&u.id))
                        .map(|u| (Change::Joined, Arc::clone(u))),
                );
                changes.extend(
                    old.roster
                        .users()
                        .filter(|u| !roster.contains(&u.id))
                        .map(|u| (Change::Left, Arc::clone(u))),
                );
            }
            r.view = Some(View {
                version: snapshot.version,
                roster,
            });
            for (change, user) in changes {
                r.change(cap, change, user, &mut tell);
            }
            for event in std::mem::take(&mut r.pending) {
                if let ViewUpdate::Gap = r.apply(&event, cap, &mut tell) {
                    result = PresenceApplied::Refetch;
                    break;
                }
            }
            Arc::clone(&r.name)
        };
        self.tell(&name, tell);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Arc<User> {
        Arc::new(User {
            id: id.into(),
            name: id.into(),
        })
    }

    #[test]
    fn a_pending_diff_keeps_net_changes_and_a_bound() {
        let mut d = PendingDiff {
            joined: Vec::new(),
            left: Vec::new(),
            complete: true,
        };
        d.record(Change::Joined, user("a"));
        d.record(Change::Joined, user("a"));
        d.record(Change::Left, user("b"));
        assert_eq!((d.joined.len(), d.left.len()), (1, 1));
        // Came and went within the interval: in neither list.
        d.record(Change::Left, user("a"));
        d.record(Change::Joined, user("b"));
        assert!(d.joined.is_empty() && d.left.is_empty() && d.complete);
        for i in 0..MAX_DIFF_USERS + 5 {
            d.record(Change::Joined, user(&i.to_string()));
        }
        assert_eq!(d.joined.len(), MAX_DIFF_USERS);
        assert!(!d.complete);
    }
}
