//! The publish path up to the broker: membership, room policy, name and
//! size checks. Ordering, storing and delivering are the broker's (see
//! [`crate::broker`]); an ephemeral room's messages (`history = "none"`)
//! skip it and are fanned out at once, never stored.

use super::Hub;
use crate::HubError;
use crate::broker::Draft;
use crate::session::{Session, SessionId};
use prise_proto::limits::check_event;
use prise_proto::message::{MESSAGE_EVENT, Message, Offset, User};
use std::borrow::Cow;
use std::sync::Arc;

/// What is published: an event name and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event name ([`MESSAGE_EVENT`] for chat).
    pub name: Cow<'static, str>,
    /// Any JSON value.
    pub data: serde_json::Value,
    /// `data` is a Socket.IO event's argument list (zero or several
    /// arguments), emitted as separate arguments again.
    pub args: bool,
}

impl Event {
    /// A chat message.
    pub fn message(content: serde_json::Value) -> Self {
        Self {
            name: Cow::Borrowed(MESSAGE_EVENT),
            data: content,
            args: false,
        }
    }

    /// A named event with one argument.
    pub fn named(name: impl Into<Cow<'static, str>>, data: serde_json::Value) -> Self {
        Self {
            name: name.into(),
            data,
            args: false,
        }
    }
}

impl Hub {
    /// Publishes a chat message in a room the session is in. Resolves once
    /// the message is stored and fanned out; the result carries its offset.
    ///
    /// # Errors
    /// As [`Hub::publish_event`].
    pub async fn publish(
        &self,
        session: &Arc<Session>,
        room: &str,
        content: serde_json::Value,
    ) -> Result<Arc<Message>, HubError> {
        self.publish_event(session, room, Event::message(content))
            .await
    }

    /// Publishes an event in a room the session is in. A durable room's
    /// event resolves once it is stored and fanned out, with its offset; an
    /// ephemeral room's once it is fanned out, without one. The sender's
    /// own session gets it when its namespace echoes (the default).
    ///
    /// # Errors
    /// Not a member, a bad event name, content too large, or the broker
    /// failed (not acknowledged).
    pub async fn publish_event(
        &self,
        session: &Arc<Session>,
        room: &str,
        event: Event,
    ) -> Result<Arc<Message>, HubError> {
        // An unknown namespace is told as such, before membership.
        self.room_policy(room)?;
        self.require_member(session, room)?;
        let echo = self
            .inner
            .config
            .policies
            .namespace_of(room)
            .is_none_or(|ns| ns.echo);
        let except = (!echo).then_some(session.id);
        self.send(session.user(), room, event, except).await
    }

    /// Publishes a chat message as `user` without a session (the HTTP API
    /// for backends).
    ///
    /// # Errors
    /// As [`Hub::publish_event_as`].
    pub async fn publish_as(
        &self,
        user: User,
        room: &str,
        content: serde_json::Value,
    ) -> Result<Arc<Message>, HubError> {
        self.send(user, room, Event::message(content), None).await
    }

    /// Publishes an event as `user` without a session (the HTTP API).
    ///
    /// # Errors
    /// A bad room or event name, an unknown namespace, content too large,
    /// or the broker failed.
    pub async fn publish_event_as(
        &self,
        user: User,
        room: &str,
        event: Event,
    ) -> Result<Arc<Message>, HubError> {
        self.send(user, room, event, None).await
    }

    async fn send(
        &self,
        user: User,
        room: &str,
        event: Event,
        except: Option<SessionId>,
    ) -> Result<Arc<Message>, HubError> {
        let limits = &self.inner.config.limits;
        let policy = self.room_policy(room)?;
        check_event(&event.name).map_err(HubError::BadEvent)?;
        let size = json_size(&event.data);
        if size > limits.max_message {
            return Err(HubError::TooLarge(limits.max_message));
        }
        if !policy.durable() {
            let message = Arc::new(Message {
                id: ulid::Ulid::generate().to_string(),
                room_id: room.to_owned(),
                user_id: user.id,
                user_name: user.name,
                content: event.data,
                timestamp: self.inner.clock.now_ms(),
                offset: Offset::ZERO,
                event: event.name,
                args: event.args,
                seq: 0,
            });
            self.inner.fan_out_ephemeral(&message, except);
            return Ok(message);
        }
        let draft = Draft {
            room: room.to_owned(),
            user,
            event: event.name,
            content: event.data,
            args: event.args,
            except,
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
