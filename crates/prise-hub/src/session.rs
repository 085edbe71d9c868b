//! A session: one client connection on any transport, as the hub sees it.

use crate::Transport;
use crate::outbox::{Offer, Outbox};
use prise_proto::message::{Message, User};
use prise_proto::presence::Diff;
use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

/// A session's id, unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Why the hub ended a session. The transport turns it into its own answer
/// (a close code, a `BYE` line, a disconnect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The outbound queue was full: the client does not read fast enough.
    SlowConsumer,
    /// The server is shutting down.
    Shutdown,
    /// The session's credentials expired.
    AuthExpired,
    /// A backend ended it through the control API (`POST /api/disconnect`);
    /// [`Session::close_detail`] holds the reason it gave.
    Kicked,
}

impl CloseReason {
    /// Short text for logs and close frames.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow consumer",
            Self::Shutdown => "server shutting down",
            Self::AuthExpired => "authentication expired",
            Self::Kicked => "kicked",
        }
    }
}

/// Encodings of one event, one slot per transport, each computed by the
/// first subscriber that needs it and shared by every other one.
#[derive(Default)]
struct Encodings([OnceLock<Arc<dyn Any + Send + Sync>>; Transport::COUNT]);

impl Encodings {
    fn get<E, T: Send + Sync + 'static>(
        &self,
        transport: Transport,
        event: &E,
        encode: impl FnOnce(&E) -> T,
    ) -> Arc<T> {
        let slot = &self.0[transport as usize];
        if let Some(any) = slot.get() {
            // One transport caches one type; a caller asking for another
            // type gets a fresh, uncached encoding.
            return Arc::clone(any)
                .downcast::<T>()
                .unwrap_or_else(|_| Arc::new(encode(event)));
        }
        let fresh = Arc::new(encode(event));
        let stored = slot.get_or_init(|| Arc::clone(&fresh) as Arc<dyn Any + Send + Sync>);
        Arc::clone(stored).downcast::<T>().unwrap_or(fresh)
    }
}

/// A message on its way to many sessions, with its encodings cached so that
/// fan-out encodes once per transport, not once per subscriber.
pub struct Delivery {
    /// The message.
    pub message: Arc<Message>,
    encoded: Encodings,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Wraps a message for fan-out.
    pub fn new(message: Arc<Message>) -> Self {
        Self {
            message,
            encoded: Encodings::default(),
        }
    }

    /// The message encoded for `transport` (any type the transport sends),
    /// computed by the first caller and shared by every other subscriber.
    pub fn encoded<T: Send + Sync + 'static>(
        &self,
        transport: Transport,
        encode: impl FnOnce(&Message) -> T,
    ) -> Arc<T> {
        self.encoded.get(transport, &*self.message, encode)
    }
}

/// A room's coalesced presence diff on its way to every member on the node,
/// encoded once per transport like a [`Delivery`].
pub struct PresenceDiff {
    /// Who came and went, and the count after.
    pub diff: Diff,
    encoded: Encodings,
}

impl std::fmt::Debug for PresenceDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceDiff")
            .field("diff", &self.diff)
            .finish_non_exhaustive()
    }
}

impl PresenceDiff {
    /// Wraps a diff for fan-out.
    pub fn new(diff: Diff) -> Self {
        Self {
            diff,
            encoded: Encodings::default(),
        }
    }

    /// The diff encoded for `transport`, computed once and shared.
    pub fn encoded<T: Send + Sync + 'static>(
        &self,
        transport: Transport,
        encode: impl FnOnce(&Diff) -> T,
    ) -> Arc<T> {
        self.encoded.get(transport, &self.diff, encode)
    }
}

/// An event queued for a session. Kept small (32 bytes): queues are
/// allocated in blocks of slots, so its size is paid per idle connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A message published in one of the session's rooms (its own included).
    Message(Arc<Delivery>),
    /// A user joined a room the session is in.
    Joined {
        /// Room.
        room: Arc<str>,
        /// Who.
        user: Arc<User>,
    },
    /// A user left a room the session is in.
    Left {
        /// Room.
        room: Arc<str>,
        /// Who.
        user: Arc<User>,
    },
    /// Who came and went in a large room during one interval (instead of
    /// one `Joined`/`Left` per change; see `--max-presence-fanout`).
    PresenceDiff(Arc<PresenceDiff>),
    /// A user started or stopped typing.
    Typing {
        /// Room.
        room: Arc<str>,
        /// Who.
        user: Arc<User>,
        /// Started or stopped.
        typing: bool,
    },
}

/// The hub's side of a session. The transport holds an `Arc<Session>` and the
/// receiving end of its queue, or attaches an [`Outbox`] of its own.
#[derive(Debug)]
pub struct Session {
    /// Process-unique id.
    pub id: SessionId,
    /// Transport that carries it.
    pub transport: Transport,
    user: Mutex<User>,
    /// The queue's sending end; `None` once an outbox is attached, so the
    /// queue's memory goes when the transport drops its receiver.
    tx: Mutex<Option<mpsc::Sender<Outbound>>>,
    /// When set, events go here instead of `tx` (see [`crate::outbox`]).
    outbox: OnceLock<Arc<dyn Outbox>>,
    closed: CancellationToken,
    reason: OnceLock<CloseReason>,
    detail: OnceLock<Box<str>>,
    pub(crate) rooms: Mutex<Vec<Arc<str>>>,
    remote: Option<SocketAddr>,
    connected_at: u64,
}

impl Session {
    pub(crate) fn new(
        id: SessionId,
        transport: Transport,
        user: User,
        tx: mpsc::Sender<Outbound>,
        remote: Option<SocketAddr>,
        connected_at: u64,
    ) -> Self {
        Self {
            id,
            transport,
            user: Mutex::new(user),
            tx: Mutex::new(Some(tx)),
            outbox: OnceLock::new(),
            closed: CancellationToken::new(),
            reason: OnceLock::new(),
            detail: OnceLock::new(),
            rooms: Mutex::new(Vec::new()),
            remote,
            connected_at,
        }
    }

    /// Sends the session's events to `outbox` from now on instead of its
    /// queue, which is let go: the transport drops its receiver and the
    /// queue's memory is freed. Attach before the session joins a room.
    /// False when an outbox was already attached.
    pub fn attach(&self, outbox: Arc<dyn Outbox>) -> bool {
        if self.outbox.set(outbox).is_err() {
            return false;
        }
        // Nothing offers to a session in no room: no event is in flight.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        true
    }

    /// Appends one event to the session's outbox (or queue), never waiting.
    pub(crate) fn offer(&self, event: &Outbound) -> Offer {
        if let Some(outbox) = self.outbox.get() {
            return outbox.push(event);
        }
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match tx.as_ref().map(|tx| tx.try_send(event.clone())) {
            Some(Ok(())) => Offer::Queued,
            Some(Err(TrySendError::Full(_))) => Offer::Full,
            Some(Err(TrySendError::Closed(_))) | None => Offer::Closed,
        }
    }

    /// The client's address (behind a trusted balancer, the one it named),
    /// when the transport knows it.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// When the session connected, in milliseconds since the Unix epoch (the
    /// hub's clock).
    pub fn connected_at(&self) -> u64 {
        self.connected_at
    }

    /// Events waiting in the outbound queue.
    pub fn queued(&self) -> usize {
        if let Some(outbox) = self.outbox.get() {
            return outbox.queued();
        }
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.as_ref()
            .map_or(0, |tx| tx.max_capacity().saturating_sub(tx.capacity()))
    }

    /// Ends the session as [`CloseReason::Kicked`] with the reason a backend
    /// gave (the first close wins, and so does its detail).
    pub fn kick(&self, detail: &str) {
        if self.reason.get().is_none() {
            let _ = self.detail.set(detail.into());
        }
        self.close(CloseReason::Kicked);
    }

    /// The reason given with [`Session::kick`], if any.
    pub fn close_detail(&self) -> Option<&str> {
        self.detail.get().map(|d| &**d)
    }

    /// The session's user.
    pub fn user(&self) -> User {
        self.user.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_user(&self, user: User) {
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = user;
    }

    /// Rooms the session is in.
    pub fn rooms(&self) -> Vec<Arc<str>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks the transport to end the session; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self.reason.set(reason).is_ok()
            && let Some(outbox) = self.outbox.get()
        {
            outbox.close(reason);
        }
        self.closed.cancel();
    }

    /// Resolves when the hub (or the server) asked the session to end.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> CloseReason {
        self.closed.cancelled().await;
        self.close_reason().unwrap_or(CloseReason::Shutdown)
    }

    /// Why the session was asked to end, if it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn outbound_stays_small() {
        assert!(std::mem::size_of::<super::Outbound>() <= 32);
    }
}
