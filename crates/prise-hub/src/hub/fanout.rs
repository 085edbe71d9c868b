//! Fan-out: handing messages and events to members' bounded queues.
//!
//! A message is delivered under its room's shard lock: one
//! `Arc<Delivery>` (which caches its encoding per transport), offered to
//! each member's queue or attached outbox (`crate::outbox`), then `delivered = offset`. A full queue closes
//! that session as a slow consumer (counted); nothing waits on a slow client.
//! An ephemeral message (a room with `history = "none"`) is not stored and
//! has no offset: a full queue only misses it (counted), the session stays.

use super::room::{Room, SHARDS, shard_of};
use super::{Hub, Inner};
use crate::outbox::Offer;
use crate::session::{CloseReason, Delivery, Outbound, Session, SessionId};
use prise_proto::message::{Epoch, Message, Offset};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Hub {
    pub(super) fn send_all<'a>(
        &self,
        targets: impl Iterator<Item = &'a Arc<Session>>,
        event: &Outbound,
    ) {
        self.inner.send_all(targets, event);
    }
}

impl Inner {
    pub(super) fn send_all<'a>(
        &self,
        targets: impl Iterator<Item = &'a Arc<Session>>,
        event: &Outbound,
    ) {
        let mut slow = Vec::new();
        for s in targets {
            if s.offer(event) == Offer::Full {
                slow.push(Arc::clone(s));
            }
        }
        for s in slow {
            self.slow_consumer(&s);
        }
    }

    fn slow_consumer(&self, session: &Arc<Session>) {
        if session.close_reason().is_none() {
            self.stats.slow_consumer(session.transport);
            tracing::info!(
                session = session.id.0,
                transport = session.transport.as_str(),
                "disconnecting slow consumer"
            );
        }
        session.close(CloseReason::SlowConsumer);
    }

    /// [`crate::broker::DeliverySink::deliver`]: fans a committed message out
    /// to the room's members on this node but `except`.
    pub(super) fn fan_out(&self, epoch: &Epoch, message: Arc<Message>, except: Option<SessionId>) {
        let delivery = Arc::new(Delivery::new(Arc::clone(&message)));
        let event = Outbound::Message(delivery);
        let mut slow = Vec::new();
        let fanout;
        {
            let idx = shard_of(&message.room_id);
            let mut shard = self.shards[idx].lock().unwrap_or_else(|e| e.into_inner());
            let room = match shard.rooms.get_mut(message.room_id.as_str()) {
                Some(r) => r,
                None => {
                    let name: Arc<str> = Arc::from(message.room_id.as_str());
                    shard.rooms.entry(Arc::clone(&name)).or_insert_with(|| {
                        Room::new(name, epoch.clone(), Offset(message.offset.0 - 1))
                    })
                }
            };
            // A join that created the room entry read a store head that
            // already held this message (committed, not yet delivered): its
            // members have it below their `delivered` and read it from the
            // store, so it is not sent to them twice.
            fanout = if message.offset > room.delivered {
                room.sessions.len()
            } else {
                0
            };
            if fanout > 0 {
                for s in room.sessions.values() {
                    if Some(s.id) == except {
                        continue;
                    }
                    if s.offer(&event) == Offer::Full {
                        slow.push(Arc::clone(s));
                    }
                }
            }
            room.delivered = room.delivered.max(message.offset);
            self.delivered_seq.fetch_max(message.seq, Ordering::AcqRel);
            if fanout == 0 && shard.rooms.len() > self.config.limits.max_rooms / SHARDS {
                Hub::sweep(&mut shard);
            }
        }
        self.stats.published(fanout);
        for s in slow {
            if s.close_reason().is_none() {
                self.stats.slow_consumer(s.transport);
            }
            s.close(CloseReason::SlowConsumer);
        }
    }

    /// Fans an ephemeral message out to the room's members on this node but
    /// `except`; a member whose queue is full misses it.
    pub(super) fn fan_out_ephemeral(&self, message: &Arc<Message>, except: Option<SessionId>) {
        let event = Outbound::Message(Arc::new(Delivery::new(Arc::clone(message))));
        let (mut sent, mut dropped) = (0, 0);
        {
            let shard = self.lock_shard(&message.room_id);
            if let Some(room) = shard.rooms.get(message.room_id.as_str()) {
                for s in room.sessions.values() {
                    if Some(s.id) == except {
                        continue;
                    }
                    match s.offer(&event) {
                        Offer::Queued => sent += 1,
                        Offer::Full => dropped += 1,
                        Offer::Closed => {}
                    }
                }
            }
        }
        self.stats.published(sent);
        if dropped > 0 {
            self.stats.ephemeral_dropped(dropped);
        }
    }
}
