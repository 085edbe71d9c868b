//! Bounded waiting.

use std::time::Duration;

/// The bound on every wait unless a test asks for another: long enough for
/// a loaded machine, short enough that a hang fails the test quickly.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(2);

/// Waits (bounded by [`WAIT`]) until `cond` holds; true if it did.
///
/// Only for state another thread updates without an event to wait on (a
/// counter, a flag); wait on the event itself wherever there is one.
pub async fn eventually(cond: impl Fn() -> bool) -> bool {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .is_ok()
}
