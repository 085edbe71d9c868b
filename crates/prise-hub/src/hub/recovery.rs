//! Recovery across rooms by the hub-wide seq.
//!
//! For Socket.IO's connection state recovery, [`Hub::suspend`] stores a
//! session's user and rooms for the recovery window; [`Hub::resume`] rejoins
//! them and replays what was published after the client's last seq, in
//! publish order, or answers `None` when retention no longer covers the gap.
//!
//! For Server-Sent Events, whose client names its rooms again on every
//! reconnect, [`Hub::missed_since`] reads what the session's rooms received
//! after a seq, once the session has joined them.

use super::Hub;
use crate::HubError;
use crate::session::Session;
use crate::store::SessionSnapshot;
use prise_proto::message::Message;
use std::collections::HashMap;
use std::sync::Arc;

/// The result of resuming a suspended session.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// Rooms rejoined.
    pub rooms: Vec<Arc<str>>,
    /// Missed messages over all rooms, in publish order.
    pub replay: Vec<Arc<Message>>,
}

impl Hub {
    /// Remembers the session's rooms under `pid` for the recovery window, so
    /// a client coming back with `pid` can resume. Call before [`Hub::disconnect`].
    ///
    /// # Errors
    /// A store failure.
    pub async fn suspend(&self, session: &Arc<Session>, pid: &str) -> Result<(), HubError> {
        let window =
            u64::try_from(self.inner.config.recovery_window.as_millis()).unwrap_or(u64::MAX);
        let snapshot = SessionSnapshot {
            user: session.user(),
            rooms: session.rooms().iter().map(|r| r.to_string()).collect(),
            expires_at: self.inner.clock.now_ms().saturating_add(window),
        };
        self.inner.store.save_session(pid, snapshot).await?;
        Ok(())
    }

    /// True when [`Hub::suspend`] records outlive this process: transports
    /// then keep a live session's record current (after each join and leave,
    /// and before it expires), so that its client recovers on another node or
    /// after a restart even when this process is killed.
    pub fn checkpoints_sessions(&self) -> bool {
        self.inner.store.sessions_outlive_process()
    }

    /// Drops a session's recovery record (a deliberate disconnect: nothing
    /// is to be recovered).
    ///
    /// # Errors
    /// A store failure.
    pub async fn forget_suspended(&self, pid: &str) -> Result<(), HubError> {
        self.inner.store.take_session(pid, 0).await?;
        Ok(())
    }

    /// What the session's rooms received after `after_seq`, in seq order, read
    /// once the session has joined them; `None` when retention (or the
    /// hub's `max_history` per read) no longer covers the gap, or when
    /// `after_seq` lies beyond every seq this hub has delivered (it belongs
    /// to another history).
    ///
    /// Messages also reach the session live from the moment it joined, so
    /// the two overlap. The store commits in seq order, so every live
    /// message with a seq up to the last one returned is among those
    /// returned: a transport that sends the replay, then the live messages
    /// with a greater seq, sends each message once, in seq order.
    ///
    /// # Errors
    /// A store failure.
    pub async fn missed_since(
        &self,
        session: &Arc<Session>,
        after_seq: u64,
    ) -> Result<Option<Vec<Arc<Message>>>, HubError> {
        if after_seq > self.delivered_seq() {
            return Ok(None);
        }
        let rooms: Vec<String> = session.rooms().iter().map(|r| r.to_string()).collect();
        let page = self
            .inner
            .store
            .read_since_seq(&rooms, after_seq, self.inner.config.limits.max_history)
            .await?;
        Ok(page.complete.then_some(page.messages))
    }

    /// Resumes a suspended session: takes back its user and rooms and returns
    /// what it missed after `after_seq`, in publish order. `None` when the
    /// session is unknown, expired, or history no longer covers the gap (the
    /// session then starts fresh, in no room).
    ///
    /// # Errors
    /// A store failure.
    pub async fn resume(
        &self,
        session: &Arc<Session>,
        pid: &str,
        after_seq: u64,
    ) -> Result<Option<Resumed>, HubError> {
        let now = self.inner.clock.now_ms();
        let Some(snapshot) = self.inner.store.take_session(pid, now).await? else {
            return Ok(None);
        };
        session.set_user(snapshot.user);
        let mut heads = HashMap::new();
        for room in &snapshot.rooms {
            match self.join(session, room, None, None).await {
                Ok(j) => {
                    heads.insert(j.room.to_string(), j.offset);
                }
                Err(e) => {
                    tracing::debug!(room = %room, error = %e, "room not resumed");
                }
            }
        }
        let rooms: Vec<String> = heads.keys().cloned().collect();
        let page = self
            .inner
            .store
            .read_since_seq(&rooms, after_seq, self.inner.config.limits.max_history)
            .await?;
        if !page.complete {
            for room in &rooms {
                let _ = self.leave(session, room);
            }
            return Ok(None);
        }
        let replay = page
            .messages
            .into_iter()
            .filter(|m| heads.get(&m.room_id).is_some_and(|h| m.offset <= *h))
            .collect();
        Ok(Some(Resumed {
            rooms: session.rooms(),
            replay,
        }))
    }
}
