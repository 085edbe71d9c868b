//! Join and leave announcements, and their cap for large rooms.

use prise_hub::clock::SystemClock;
use prise_hub::store::{MemoryStore, Retention};
use prise_hub::{Hub, HubConfig, Outbound, Session, Transport};
use std::sync::Arc;
use tokio::sync::mpsc::Receiver;

async fn hub(max_presence_fanout: usize) -> Hub {
    let mut config = HubConfig::default();
    config.limits.max_presence_fanout = max_presence_fanout;
    Hub::start(
        config,
        Arc::new(MemoryStore::new(Retention::default())),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

async fn member(hub: &Hub) -> (Arc<Session>, Receiver<Outbound>) {
    let (s, rx) = hub.connect(Transport::Ws, None).unwrap();
    hub.join(&s, "big", None, None).await.unwrap();
    (s, rx)
}

/// The joins and leaves queued for one member so far.
fn announcements(rx: &mut Receiver<Outbound>) -> (usize, usize) {
    let (mut joined, mut left) = (0, 0);
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Outbound::Joined { .. } => joined += 1,
            Outbound::Left { .. } => left += 1,
            _ => {}
        }
    }
    (joined, left)
}

#[tokio::test]
async fn joins_and_leaves_are_announced_up_to_the_cap() {
    let hub = hub(2).await;
    let (_a, mut a) = member(&hub).await;
    let (b_session, _b) = member(&hub).await; // announced to 1
    let (_c, _c_rx) = member(&hub).await; // announced to 2
    // The first member saw both joins.
    assert_eq!(announcements(&mut a), (2, 0));
    // A fourth member would cost 3 pushes: over the cap, not announced.
    let (d_session, _d) = member(&hub).await;
    assert_eq!(announcements(&mut a), (0, 0));
    // Presence itself is complete.
    assert_eq!(hub.presence("big").len(), 4);
    // Leaving a room of 4 costs 3 pushes: skipped; of 3 it costs 2: announced.
    hub.disconnect(&d_session);
    assert_eq!(announcements(&mut a), (0, 0));
    hub.disconnect(&b_session);
    assert_eq!(announcements(&mut a), (0, 1));
}

#[tokio::test]
async fn zero_means_no_cap() {
    let hub = hub(0).await;
    let (_a, mut a) = member(&hub).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(member(&hub).await);
    }
    assert_eq!(announcements(&mut a), (5, 0));
}
