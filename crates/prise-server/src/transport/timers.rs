//! One timer task for the rare deadlines of many connections (a token's
//! expiry, a recovery checkpoint), instead of a task or a pinned timer per
//! connection.
//!
//! Deadlines sit in one heap ordered by instant; the task sleeps until the
//! earliest, then fires every entry that is due. An entry holds its
//! connection weakly: a connection that went away is skipped when its
//! deadline comes. The heap is bounded by the live connections' deadlines
//! plus those of connections that ended within the longest interval.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a deadline does when it comes.
pub(crate) trait Timed: Send + Sync {
    /// The deadline tagged `tag` has passed; re-arm with [`Timers::at`] for
    /// a periodic one. Must not block (spawn for anything slow).
    fn fire(self: Arc<Self>, tag: u8, timers: &Arc<Timers>);
}

struct Entry {
    at: Instant,
    seq: u64,
    tag: u8,
    what: Weak<dyn Timed>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A due deadline: its tag and whom it is for.
type Due = (u8, Weak<dyn Timed>);

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

/// The shared timers (see the module docs).
#[derive(Default)]
pub(crate) struct Timers {
    heap: Mutex<Heap>,
    /// An earlier deadline than the one the task sleeps towards was added.
    earlier: Notify,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("pending", &self.pending())
            .finish()
    }
}

impl Timers {
    /// Calls `what.fire(tag)` at `at` (or soon after), if `what` still lives.
    pub(crate) fn at(&self, at: Instant, tag: u8, what: Weak<dyn Timed>) {
        let first = {
            let mut h = self.heap.lock().unwrap_or_else(|e| e.into_inner());
            h.seq += 1;
            let seq = h.seq;
            let first = h.entries.peek().is_none_or(|Reverse(e)| at < e.at);
            h.entries.push(Reverse(Entry { at, seq, tag, what }));
            first
        };
        if first {
            self.earlier.notify_one();
        }
    }

    /// Deadlines waiting, live or not.
    pub(crate) fn pending(&self) -> usize {
        self.heap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    /// The entries due at `now`, taken out of the heap; and the next deadline.
    fn take_due(&self, now: Instant) -> (Vec<Due>, Option<Instant>) {
        let mut h = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        while h.entries.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(e)) = h.entries.pop() {
                due.push((e.tag, e.what));
            }
        }
        (due, h.entries.peek().map(|Reverse(e)| e.at))
    }

    /// Fires deadlines as they come, until `stop` resolves.
    pub(crate) async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let (due, next) = self.take_due(Instant::now());
            for (tag, what) in due {
                if let Some(what) = what.upgrade() {
                    what.fire(tag, &self);
                }
            }
            let sleep = super::until(next);
            tokio::select! {
                biased;
                () = &mut stop => return,
                () = self.earlier.notified() => {}
                () = sleep => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Timed for Count {
        fn fire(self: Arc<Self>, tag: u8, timers: &Arc<Timers>) {
            self.0.fetch_add(1, Ordering::SeqCst);
            if tag == 1 && self.0.load(Ordering::SeqCst) < 3 {
                let again = Arc::downgrade(&self) as Weak<dyn Timed>;
                timers.at(Instant::now() + Duration::from_millis(10), 1, again);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fires_due_entries_rearms_and_skips_the_dropped() {
        let timers = Arc::new(Timers::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(Arc::clone(&timers).run(stop.clone().cancelled_owned()));
        let live = Arc::new(Count(AtomicUsize::new(0)));
        let gone = Arc::new(Count(AtomicUsize::new(0)));
        let now = Instant::now();
        timers.at(
            now + Duration::from_secs(60),
            0,
            Arc::downgrade(&gone) as Weak<dyn Timed>,
        );
        // Added later but due earlier: the task wakes for it.
        timers.at(
            now + Duration::from_millis(5),
            1,
            Arc::downgrade(&live) as Weak<dyn Timed>,
        );
        let weak_gone = Arc::downgrade(&gone);
        drop(gone);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            live.0.load(Ordering::SeqCst),
            3,
            "fired, then re-armed twice"
        );
        assert_eq!(timers.pending(), 1);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(weak_gone.upgrade().is_none());
        assert_eq!(timers.pending(), 0);
        stop.cancel();
        task.await.unwrap();
    }
}
