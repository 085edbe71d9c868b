//! The publish path up to the broker: membership, name and size checks.
//! Ordering, storing and delivering are the broker's (see
//! [`crate::broker`]).

use super::Hub;
use crate::HubError;
use crate::broker::Draft;
use crate::session::Session;
use prise_proto::limits::check_name;
use prise_proto::message::{Message, User};
use std::sync::Arc;

impl Hub {
    /// Publishes in a room the session is in. Resolves once the message is
    /// stored and fanned out; the result carries its offset.
    ///
    /// # Errors
    /// Not a member, content too large, or the broker failed (not acknowledged).
    pub async fn publish(
        &self,
        session: &Arc<Session>,
        room: &str,
        content: serde_json::Value,
    ) -> Result<Arc<Message>, HubError> {
        self.require_member(session, room)?;
        self.publish_as(session.user(), room, content).await
    }

    /// Publishes as `user` without a session (the HTTP API for backends).
    ///
    /// # Errors
    /// A bad room name, content too large, or the broker failed.
    pub async fn publish_as(
        &self,
        user: User,
        room: &str,
        content: serde_json::Value,
    ) -> Result<Arc<Message>, HubError> {
        let limits = &self.inner.config.limits;
        check_name(room, limits.max_room_name).map_err(HubError::BadName)?;
        let size = json_size(&content);
        if size > limits.max_message {
            return Err(HubError::TooLarge(limits.max_message));
        }
        let draft = Draft {
            room: room.to_owned(),
            user,
            content,
        };
        Ok(self.inner.broker.publish(draft).await?)
    }
}

/// Size of a JSON value once encoded, without allocating the encoding.
fn json_size(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}
