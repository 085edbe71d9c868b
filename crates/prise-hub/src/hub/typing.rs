//! Typing indicators: shown to the room's other sessions on this node and,
//! with a shared broker, passed on to the other nodes (and back from them).
//! They are not stored and not ordered with messages.

use super::{Hub, Inner};
use crate::HubError;
use crate::session::{Outbound, Session};
use prise_proto::message::User;
use std::sync::Arc;

impl Hub {
    /// Tells the other members of a room that the session's user is typing.
    ///
    /// # Errors
    /// [`HubError::NotMember`] when the session is not in the room.
    pub fn typing(&self, session: &Arc<Session>, room: &str, typing: bool) -> Result<(), HubError> {
        self.require_member(session, room)?;
        let (others, name) = {
            let shard = self.shard(room);
            let Some(r) = shard.rooms.get(room) else {
                return Err(HubError::NotMember(room.to_owned()));
            };
            let others: Vec<Arc<Session>> = r
                .sessions
                .values()
                .filter(|s| s.id != session.id)
                .cloned()
                .collect();
            (others, Arc::clone(&r.name))
        };
        let user = session.user();
        if self.inner.shared {
            self.inner.broker.typing(&name, &user, typing);
        }
        self.send_all(
            others.iter(),
            &Outbound::Typing {
                room: name,
                user: Arc::new(user),
                typing,
            },
        );
        Ok(())
    }
}

impl Inner {
    /// [`crate::broker::DeliverySink::remote_typing`].
    pub(super) fn show_remote_typing(&self, room: &str, user: User, typing: bool) {
        let (name, targets) = {
            let shard = self.lock_shard(room);
            let Some(r) = shard.rooms.get(room) else {
                return;
            };
            (Arc::clone(&r.name), r.others_of(&user.id))
        };
        self.send_all(
            targets.iter(),
            &Outbound::Typing {
                room: name,
                user: Arc::new(user),
                typing,
            },
        );
    }
}
