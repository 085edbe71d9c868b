//! The hub as the broker's [`DeliverySink`]: committed messages come in
//! here (`deliver`, or `offer` from pub/sub with duplicates and gaps), and a
//! cluster broker reads the rooms it must catch up and the memberships it
//! must keep registered. Fan-out, presence and typing live in their own
//! files; this is where the seam maps onto them.

use super::Inner;
use crate::broker::{DeliverySink, Offered};
use crate::control::{ControlOp, NodeAnswer};
use crate::presence::{PresenceApplied, PresenceEvent, PresenceSnapshot};
use crate::session::SessionId;
use futures_util::future::{BoxFuture, FutureExt};
use prise_proto::message::{Epoch, Message, Offset, User};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl DeliverySink for Inner {
    fn offer(&self, epoch: &Epoch, message: Arc<Message>) -> Offered {
        {
            let mut shard = self.lock_shard(&message.room_id);
            if let Some(r) = shard.rooms.get_mut(message.room_id.as_str()) {
                if r.epoch != *epoch {
                    // The shared history was reset: follow the new epoch.
                    r.epoch = epoch.clone();
                    r.delivered = Offset(message.offset.0.saturating_sub(1));
                } else if message.offset <= r.delivered {
                    return Offered::Duplicate;
                } else if message.offset.0 > r.delivered.0 + 1 {
                    return Offered::Gap(r.delivered);
                }
            }
        }
        // Only the broker's one delivery task offers, so nothing changed the
        // room's `delivered` since the check.
        self.deliver(epoch, message);
        Offered::Delivered
    }

    fn delivered_rooms(&self) -> Vec<(String, Epoch, Offset)> {
        self.collect_rooms(|r, v| v.push((r.name.to_string(), r.epoch.clone(), r.delivered)))
    }

    fn presence_event(&self, room: &str, event: PresenceEvent) -> PresenceApplied {
        self.apply_presence_event(room, event)
    }

    fn presence_install(
        &self,
        room: &str,
        snapshot: PresenceSnapshot,
        force: bool,
    ) -> PresenceApplied {
        self.install_presence(room, snapshot, force)
    }

    fn local_member(&self, room: &str, user_id: &str) -> bool {
        self.lock_shard(room)
            .rooms
            .get(room)
            .is_some_and(|r| r.users.contains_key(user_id))
    }

    fn local_memberships(&self) -> Vec<(String, User)> {
        self.collect_rooms(|r, v| {
            v.extend(
                r.local
                    .users()
                    .map(|u| (r.name.to_string(), User::clone(u))),
            );
        })
    }

    fn presence_rooms(&self) -> Vec<String> {
        self.collect_rooms(|r, v| {
            if !r.sessions.is_empty() {
                v.push(r.name.to_string());
            }
        })
    }

    fn advance_seq(&self, seq: u64) {
        self.delivered_seq.fetch_max(seq, Ordering::AcqRel);
    }

    fn remote_typing(&self, room: &str, user: User, typing: bool) {
        self.show_remote_typing(room, user, typing);
    }

    fn control(&self, op: ControlOp) -> BoxFuture<'static, NodeAnswer> {
        match self.hub() {
            Some(hub) => async move { hub.apply_control(&op).await }.boxed(),
            None => futures_util::future::ready(NodeAnswer::default()).boxed(),
        }
    }

    fn deliver(&self, epoch: &Epoch, message: Arc<Message>) {
        self.fan_out(epoch, message, None);
    }

    fn deliver_except(&self, epoch: &Epoch, message: Arc<Message>, except: Option<SessionId>) {
        self.fan_out(epoch, message, except);
    }
}
