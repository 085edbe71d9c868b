//! The hand-off between the hub's fan-out and a connection's replay: while a
//! join (or a recovery) writes the messages it read from the store, the
//! live events the hub appends are held back, and written after the replay,
//! in the order they came.
//!
//! ```text
//!  hub fan-out ──push──▶ [held?] ──no──▶ emit (the connection's queue)
//!                          └─yes─▶ held events (bounded) ──release──▶ emit, in order
//!  join:  hold ─▶ membership + store read ─▶ emit replay ─▶ release
//! ```
//!
//! Every step runs under one lock, so a push can never slip between a
//! release's last held event and the first live one.

use std::sync::{Mutex, MutexGuard};

/// What became of a pushed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed<E> {
    /// Written through to the connection (with the emit's result).
    Emitted(Result<(), E>),
    /// Held back behind a replay.
    Held,
    /// Held back, but the hold is at its cap: dropped.
    Full,
}

/// The hand-off (see the module docs), for events of type `T`.
#[derive(Debug)]
pub(crate) struct Handoff<T> {
    held: Mutex<Option<Vec<T>>>,
    cap: usize,
}

impl<T: Clone> Handoff<T> {
    /// A hand-off that holds at most `cap` events, holding from the start
    /// when `holding`.
    pub(crate) fn new(cap: usize, holding: bool) -> Self {
        Self {
            held: Mutex::new(holding.then(Vec::new)),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Vec<T>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Passes `event` to `emit`, or holds it while a replay is written.
    pub(crate) fn push<E>(&self, event: &T, emit: impl FnOnce(&T) -> Result<(), E>) -> Pushed<E> {
        let mut held = self.lock();
        match held.as_mut() {
            Some(waiting) if waiting.len() >= self.cap => Pushed::Full,
            Some(waiting) => {
                waiting.push(event.clone());
                Pushed::Held
            }
            None => Pushed::Emitted(emit(event)),
        }
    }

    /// Holds the next pushes back (until [`Handoff::release`]).
    pub(crate) fn hold(&self) {
        self.lock().get_or_insert_with(Vec::new);
    }

    /// Emits the held events in order (stopping at the first failure), then
    /// lets the next pushes through.
    pub(crate) fn release<E>(&self, mut emit: impl FnMut(&T) -> Result<(), E>) {
        let mut held = self.lock();
        for ev in held.take().unwrap_or_default() {
            if emit(&ev).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// One atomic step of a model run.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// The hub pushes live message `n`.
        Live(u32),
        /// The join starts holding.
        Hold,
        /// The join writes replayed message `n`.
        Replay(u32),
        /// The join releases.
        Release,
    }

    /// Every interleaving of two step sequences, each kept in its own order.
    fn interleavings(a: &[Step], b: &[Step]) -> Vec<Vec<Step>> {
        if a.is_empty() {
            return vec![b.to_vec()];
        }
        if b.is_empty() {
            return vec![a.to_vec()];
        }
        let mut out = Vec::new();
        for mut rest in interleavings(&a[1..], b) {
            rest.insert(0, a[0]);
            out.push(rest);
        }
        for mut rest in interleavings(a, &b[1..]) {
            rest.insert(0, b[0]);
            out.push(rest);
        }
        out
    }

    /// A deterministic scheduler over the hand-off's atomic steps: every
    /// order in which the hub's pushes and a join's steps can interleave.
    /// Whatever the order, each live message is written exactly once, live
    /// messages keep their order, and none that was pushed after the hold
    /// is written before the replay.
    #[test]
    fn every_interleaving_keeps_the_replay_first_and_nothing_lost_or_doubled() {
        let hub = [Step::Live(1), Step::Live(2), Step::Live(3), Step::Live(4)];
        let join = [
            Step::Hold,
            Step::Replay(10),
            Step::Replay(11),
            Step::Release,
        ];
        let runs = interleavings(&hub, &join);
        assert_eq!(runs.len(), 70);
        for run in runs {
            let h = Handoff::new(16, false);
            let mut out: Vec<(bool, u32)> = Vec::new();
            let mut held_from = None;
            for (i, step) in run.iter().enumerate() {
                match *step {
                    Step::Live(n) => {
                        let mut sent = |m: &u32| {
                            out.push((false, *m));
                            Ok::<(), ()>(())
                        };
                        let _ = h.push(&n, &mut sent);
                    }
                    Step::Hold => {
                        h.hold();
                        held_from = Some(i);
                    }
                    Step::Replay(n) => out.push((true, n)),
                    Step::Release => h.release(|m: &u32| {
                        out.push((false, *m));
                        Ok::<(), ()>(())
                    }),
                }
            }
            let live: Vec<u32> = out.iter().filter(|(r, _)| !r).map(|(_, n)| *n).collect();
            assert_eq!(live, vec![1, 2, 3, 4], "{run:?}");
            // Live messages pushed after the hold come after the replay.
            let hold_at = held_from.unwrap();
            let late: Vec<u32> = run[hold_at..]
                .iter()
                .filter_map(|s| match s {
                    Step::Live(n) => Some(*n),
                    _ => None,
                })
                .collect();
            let last_replay = out.iter().rposition(|(r, _)| *r).unwrap();
            for n in late {
                let at = out.iter().position(|&(r, m)| !r && m == n).unwrap();
                assert!(at > last_replay, "{run:?} wrote {n} before the replay");
            }
        }
    }

    #[test]
    fn a_hold_is_bounded() {
        let h = Handoff::new(2, true);
        let emit = |_: &u32| Ok::<(), ()>(());
        assert_eq!(h.push(&1, emit), Pushed::Held);
        assert_eq!(h.push(&2, emit), Pushed::Held);
        assert_eq!(h.push(&3, emit), Pushed::Full);
        let mut out = Vec::new();
        h.release(|m: &u32| {
            out.push(*m);
            Ok::<(), ()>(())
        });
        assert_eq!(out, vec![1, 2]);
        assert_eq!(h.push(&4, emit), Pushed::Emitted(Ok(())));
    }

    /// The same properties with real threads: a hub thread pushing while a
    /// join holds, replays and releases, many times over.
    #[test]
    fn threads_keep_the_order() {
        for _ in 0..200 {
            let h = Arc::new(Handoff::new(1024, false));
            let out = Arc::new(Mutex::new(Vec::new()));
            let hub = {
                let (h, out) = (Arc::clone(&h), Arc::clone(&out));
                std::thread::spawn(move || {
                    for n in 0..100u32 {
                        let _ = h.push(&n, |m| {
                            out.lock().unwrap().push(*m);
                            Ok::<(), ()>(())
                        });
                    }
                })
            };
            h.hold();
            out.lock().unwrap().push(u32::MAX);
            h.release(|m| {
                out.lock().unwrap().push(*m);
                Ok::<(), ()>(())
            });
            hub.join().unwrap();
            let got = out.lock().unwrap().clone();
            let live: Vec<u32> = got.iter().copied().filter(|&m| m != u32::MAX).collect();
            assert_eq!(live, (0..100).collect::<Vec<_>>());
        }
    }
}
