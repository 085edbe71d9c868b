//! The node's sessions by id, and the control API's operations on them:
//! list, kick, server-side joins and leaves ([`crate::control`]), applied
//! here for this node; [`Hub::control`] sends them to every node through
//! the broker when it is shared.
//!
//! The registry holds weak references in 16 shards: a session is entered by
//! `connect` and removed by `disconnect`; one a transport dropped without
//! `disconnect` is skipped (and removed) when found dead.

use super::{Hub, Inner};
use crate::HubError;
use crate::control::{
    Claim, ControlOp, IDEMPOTENCY_TTL, MAX_IDEMPOTENCY_KEYS, MAX_LISTED_SESSIONS, NodeAnswer,
    SessionInfo, SessionTarget,
};
use crate::session::{Session, SessionId};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

const REGISTRY_SHARDS: usize = 16;

/// One shard of the registry.
type RegistryShard = Mutex<HashMap<SessionId, Weak<Session>>>;

/// Every live session of the node.
pub(crate) struct Registry(Box<[RegistryShard]>);

impl Default for Registry {
    fn default() -> Self {
        Self((0..REGISTRY_SHARDS).map(|_| Mutex::default()).collect())
    }
}

impl Registry {
    fn shard(&self, id: SessionId) -> std::sync::MutexGuard<'_, HashMap<SessionId, Weak<Session>>> {
        // The shard count is a power of two, so the remainder is in range;
        // a poisoned map is still a consistent map of ids.
        let i = usize::try_from(id.0 % REGISTRY_SHARDS as u64).unwrap_or(0);
        self.0[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, session: &Arc<Session>) {
        self.shard(session.id)
            .insert(session.id, Arc::downgrade(session));
    }

    pub(crate) fn remove(&self, id: SessionId) {
        self.shard(id).remove(&id);
    }

    fn get(&self, id: SessionId) -> Option<Arc<Session>> {
        self.shard(id).get(&id).and_then(Weak::upgrade)
    }

    /// Every live session for which `keep` holds, one shard locked at a time.
    fn collect(&self, mut keep: impl FnMut(&Session) -> bool) -> Vec<Arc<Session>> {
        let mut out = Vec::new();
        for shard in self.0.iter() {
            let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, w| match w.upgrade() {
                Some(s) => {
                    if keep(&s) {
                        out.push(s);
                    }
                    true
                }
                None => false,
            });
        }
        out.sort_by_key(|s| s.id);
        out
    }
}

/// Answers of idempotent calls in one process: insertion order is expiry
/// order (one TTL for all), so the oldest go first, and at most
/// [`MAX_IDEMPOTENCY_KEYS`] are kept.
#[derive(Default)]
pub(crate) struct Idempotency(Mutex<IdemState>);

#[derive(Default)]
struct IdemState {
    answers: HashMap<String, Option<String>>,
    order: VecDeque<(Instant, String)>,
}

impl Idempotency {
    fn claim(&self, key: &str, now: Instant, ttl: Duration) -> Claim {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((at, _)) = st.order.front() {
            if now.saturating_duration_since(*at) < ttl && st.order.len() < MAX_IDEMPOTENCY_KEYS {
                break;
            }
            if let Some((_, k)) = st.order.pop_front() {
                st.answers.remove(&k);
            }
        }
        match st.answers.get(key) {
            Some(Some(answer)) => Claim::Done(answer.clone()),
            Some(None) => Claim::Pending,
            None => {
                st.answers.insert(key.to_owned(), None);
                st.order.push_back((now, key.to_owned()));
                Claim::First
            }
        }
    }

    fn settle(&self, key: &str, answer: Option<String>) {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match answer {
            Some(a) => {
                if let Some(slot) = st.answers.get_mut(key) {
                    *slot = Some(a);
                }
            }
            // The call failed: a retry with the key may do it.
            None => {
                st.answers.remove(key);
                st.order.retain(|(_, k)| k != key);
            }
        }
    }
}

impl Hub {
    /// The id the control API shows for a session of this node.
    pub fn public_id(&self, session: &Session) -> String {
        format!("{}-{}", self.node_id(), session.id.0)
    }

    /// A session as the control API lists it.
    pub fn session_info(&self, session: &Session) -> SessionInfo {
        SessionInfo {
            id: self.public_id(session),
            user: session.user(),
            transport: session.transport.as_str().to_owned(),
            remote: session.remote().map(|a| a.to_string()),
            rooms: session.rooms().iter().map(|r| r.to_string()).collect(),
            connected_at: session.connected_at(),
            queued: session.queued(),
        }
    }

    /// Sessions of this node, optionally only those in `room` and of `user`.
    pub fn sessions(&self, room: Option<&str>, user: Option<&str>) -> Vec<Arc<Session>> {
        self.inner.registry.collect(|s| {
            user.is_none_or(|u| s.user().id == u)
                && room.is_none_or(|r| s.rooms().iter().any(|x| &**x == r))
        })
    }

    fn targets(&self, target: &SessionTarget) -> Vec<Arc<Session>> {
        match target {
            SessionTarget::User(u) => self.sessions(None, Some(u)),
            SessionTarget::Session(id) => id
                .rsplit_once('-')
                .filter(|(node, _)| *node == self.node_id())
                .and_then(|(_, n)| n.parse().ok())
                .and_then(|n| self.inner.registry.get(SessionId(n)))
                .into_iter()
                .collect(),
        }
    }

    /// Applies `op` to the sessions of every node: through the broker when
    /// the hub is shared (one answer per node that answered in time), else
    /// here.
    ///
    /// # Errors
    /// The room of a join is invalid (checked before any node is asked), or
    /// the shared engine cannot be reached.
    pub async fn control(&self, op: ControlOp) -> Result<Vec<NodeAnswer>, HubError> {
        if let ControlOp::Subscribe { room, .. } = &op {
            self.room_policy(room)?;
        }
        match self.inner.broker.control(&op) {
            Some(cluster) => Ok(cluster.await?),
            None => Ok(vec![self.apply_control(&op).await]),
        }
    }

    /// Applies `op` to this node's sessions.
    pub async fn apply_control(&self, op: &ControlOp) -> NodeAnswer {
        let mut answer = NodeAnswer {
            node: self.node_id().to_owned(),
            ..NodeAnswer::default()
        };
        match op {
            ControlOp::Disconnect { target, reason } => {
                for s in self.targets(target) {
                    tracing::info!(session = s.id.0, user = %s.user().id, %reason, "kicked");
                    s.kick(reason);
                    answer.count += 1;
                }
            }
            ControlOp::Subscribe { user, room } => {
                for s in self.sessions(None, Some(user)) {
                    match self.join(&s, room, None, None).await {
                        Ok(_) => answer.count += 1,
                        Err(e) => {
                            answer.refused = Some(match answer.refused.take() {
                                Some((n, code)) => (n + 1, code),
                                None => (1, e.code().to_owned()),
                            });
                        }
                    }
                }
            }
            ControlOp::Unsubscribe { user, room } => {
                for s in self.sessions(Some(room), Some(user)) {
                    if self.leave(&s, room).is_ok() {
                        answer.count += 1;
                    }
                }
            }
            ControlOp::Sessions { room, user, limit } => {
                let all = self.sessions(room.as_deref(), user.as_deref());
                let limit = (*limit).min(MAX_LISTED_SESSIONS);
                answer.count = all.len();
                answer.truncated = all.len() > limit;
                answer.sessions = all
                    .iter()
                    .take(limit)
                    .map(|s| self.session_info(s))
                    .collect();
            }
        }
        answer
    }

    /// Looks up an idempotency key (shared by every node when the broker
    /// keeps keys, else this process's); [`Claim::First`] holds it for this
    /// call until [`Hub::settle_key`].
    ///
    /// # Errors
    /// The shared engine cannot be reached.
    pub async fn claim_key(&self, key: &str) -> Result<Claim, HubError> {
        match self.inner.broker.claim_key(key, IDEMPOTENCY_TTL) {
            Some(shared) => Ok(shared.await?),
            None => Ok(self
                .inner
                .idempotency
                .claim(key, Instant::now(), IDEMPOTENCY_TTL)),
        }
    }

    /// Stores the answer of the call that claimed `key`, or (`None`, the
    /// call failed) releases the key so a retry does the call.
    pub async fn settle_key(&self, key: &str, answer: Option<String>) {
        match self
            .inner
            .broker
            .settle_key(key, answer.clone(), IDEMPOTENCY_TTL)
        {
            Some(shared) => {
                if let Err(e) = shared.await {
                    tracing::warn!(error = %e, "storing an idempotent answer failed");
                }
            }
            None => self.inner.idempotency.settle(key, answer),
        }
    }
}

impl Inner {
    /// The hub for a control operation that arrived from the broker.
    pub(super) fn hub(&self) -> Option<Hub> {
        self.me.upgrade().map(|inner| Hub { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keeps_the_first_answer_until_it_expires() {
        let idem = Idempotency::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(600);
        assert_eq!(idem.claim("k", t0, ttl), Claim::First);
        assert_eq!(idem.claim("k", t0, ttl), Claim::Pending);
        idem.settle("k", Some("a".into()));
        assert_eq!(idem.claim("k", t0, ttl), Claim::Done("a".into()));
        assert_eq!(idem.claim("k", t0 + ttl, ttl), Claim::First);
        // A failed call frees its key.
        assert_eq!(idem.claim("j", t0, ttl), Claim::First);
        idem.settle("j", None);
        assert_eq!(idem.claim("j", t0, ttl), Claim::First);
    }
}
