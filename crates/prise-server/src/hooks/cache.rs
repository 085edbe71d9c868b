//! The `connect` answers of the last few seconds, by credentials: a client
//! that reconnects (a reconnect storm after a network cut, a page reload)
//! within `--hook-cache-ttl` gets the backend's answer again without a
//! call. Bounded: the oldest entries go first.

use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Most answers kept.
pub(crate) const CACHE_ENTRIES: usize = 10_000;

/// A digest of what a client presented.
pub(crate) type Key = [u8; 32];

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, (Instant, Map<String, Value>)>,
    order: VecDeque<(Instant, Key)>,
}

/// The cache.
#[derive(Debug)]
pub(crate) struct ConnectCache {
    ttl: Duration,
    entries: Mutex<Entries>,
}

/// The key of a client's credentials: SHA-256 over each part, each
/// prefixed by its length so parts cannot run into each other.
pub(crate) fn key(parts: &[&[u8]]) -> Key {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl ConnectCache {
    /// A cache keeping answers for `ttl` (zero: keeps nothing).
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer for `key`, when one is fresh.
    pub(crate) fn get(&self, key: &Key) -> Option<Map<String, Value>> {
        if self.ttl.is_zero() {
            return None;
        }
        let e = self.entries();
        e.map
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, answer)| answer.clone())
    }

    /// Keeps `answer` for `key`.
    pub(crate) fn put(&self, key: Key, answer: Map<String, Value>) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut e = self.entries();
        while let Some((at, k)) = e.order.front().copied() {
            let stale = now.duration_since(at) >= self.ttl;
            if !stale && e.order.len() < CACHE_ENTRIES {
                break;
            }
            e.order.pop_front();
            // The map holds the newest answer of a key: drop it only when
            // this queue entry is that answer's.
            if e.map.get(&k).is_some_and(|(t, _)| *t == at) {
                e.map.remove(&k);
            }
        }
        e.order.push_back((now, key));
        e.map.insert(key, (now, answer));
    }

    /// Answers kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(n: u64) -> Map<String, Value> {
        json!({ "n": n }).as_object().cloned().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn answers_expire_and_the_cache_stays_bounded() {
        let c = ConnectCache::new(Duration::from_secs(5));
        let k = key(&[b"token", b"a"]);
        assert_ne!(k, key(&[b"tokena", b""]));
        c.put(k, answer(1));
        assert_eq!(c.get(&k), Some(answer(1)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(c.get(&k), None);
        for n in 0..(CACHE_ENTRIES as u64 + 10) {
            c.put(key(&[&n.to_le_bytes()]), answer(n));
        }
        assert_eq!(c.len(), CACHE_ENTRIES);
        assert!(c.get(&key(&[&0u64.to_le_bytes()])).is_none());
        assert!(
            c.get(&key(&[&(CACHE_ENTRIES as u64 + 9).to_le_bytes()]))
                .is_some()
        );
    }

    #[test]
    fn zero_ttl_keeps_nothing() {
        let c = ConnectCache::new(Duration::ZERO);
        c.put([0; 32], answer(1));
        assert_eq!((c.get(&[0; 32]), c.len()), (None, 0));
    }
}
