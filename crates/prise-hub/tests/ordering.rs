//! Join-with-replay racing live publishing: every session sees every offset
//! exactly once, in order, on both stores.

use prise_hub::clock::SystemClock;
use prise_hub::store::{HistoryStore, MemoryStore, Retention, SqliteStore};
use prise_hub::{Hub, HubConfig, Outbound, Transport};
use prise_proto::message::{Offset, User};
use std::sync::Arc;
use std::time::Duration;

const MESSAGES: u64 = 400;
const JOINERS: usize = 8;

async fn race(store: Arc<dyn HistoryStore>) {
    let hub = Hub::start(HubConfig::default(), store, Arc::new(SystemClock))
        .await
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let user = User {
                id: "p".into(),
                name: "p".into(),
            };
            for i in 0..MESSAGES {
                let m = hub
                    .publish_as(user.clone(), "race", serde_json::json!(i))
                    .await
                    .unwrap();
                assert_eq!(m.offset, Offset(i + 1));
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut joiners = Vec::new();
    for j in 0..JOINERS {
        let hub = hub.clone();
        joiners.push(tokio::spawn(async move {
            // Join at different moments of the publishing run.
            for _ in 0..j * 7 {
                tokio::task::yield_now().await;
            }
            let (session, mut rx) = hub.connect(Transport::Ws, None).unwrap();
            let joined = hub
                .join(&session, "race", Some(Offset::ZERO), None)
                .await
                .unwrap();
            assert_eq!(joined.recovered, Some(true));
            let mut seen: Vec<u64> = joined.replay.iter().map(|m| m.offset.0).collect();
            while seen.last().copied().unwrap_or(0) < MESSAGES {
                let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("messages keep coming")
                    .expect("queue open");
                if let Outbound::Message(d) = ev {
                    seen.push(d.message.offset.0);
                }
            }
            let expected: Vec<u64> = (1..=MESSAGES).collect();
            assert_eq!(
                seen, expected,
                "joiner {j} saw a gap, a duplicate or a reordering"
            );
            hub.disconnect(&session);
        }));
    }
    publisher.await.unwrap();
    for j in joiners {
        j.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_join_races_publish() {
    race(Arc::new(MemoryStore::new(Retention::default()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_join_races_publish() {
    let dir = tempfile::tempdir().unwrap();
    race(Arc::new(
        SqliteStore::open(&dir.path().join("p.db"), Retention::default()).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_users_once_and_suspended_sessions_resume() {
    let hub = Hub::start(
        HubConfig::default(),
        Arc::new(MemoryStore::new(Retention::default())),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let alice = User {
        id: "a".into(),
        name: "alice".into(),
    };
    let (tab1, mut rx1) = hub.connect(Transport::Ws, Some(alice.clone())).unwrap();
    let (tab2, _rx2) = hub
        .connect(Transport::SocketIo, Some(alice.clone()))
        .unwrap();
    let (bob, mut bob_rx) = hub.connect(Transport::Tcp, None).unwrap();
    hub.join(&bob, "room", None, None).await.unwrap();
    hub.join(&tab1, "room", None, None).await.unwrap();
    hub.join(&tab2, "room", None, None).await.unwrap();
    assert_eq!(hub.presence("room").len(), 2, "alice counts once");
    assert_eq!(hub.member_count("room"), 3);
    // Bob saw alice join once.
    let ev = bob_rx.try_recv().unwrap();
    assert!(matches!(ev, Outbound::Joined { ref user, .. } if user.name == "alice"));
    assert!(bob_rx.try_recv().is_err());

    // Tab 1 is suspended, misses two messages, and resumes.
    hub.publish_as(alice.clone(), "room", "one".into())
        .await
        .unwrap();
    let seen = match rx1.recv().await.unwrap() {
        Outbound::Message(d) => d.message.seq,
        other => panic!("{other:?}"),
    };
    hub.suspend(&tab1, "pid-1").await.unwrap();
    hub.disconnect(&tab1);
    assert_eq!(
        hub.presence("room").len(),
        2,
        "alice is still there on tab 2"
    );
    hub.publish_as(alice.clone(), "room", "two".into())
        .await
        .unwrap();
    hub.publish_as(alice.clone(), "room", "three".into())
        .await
        .unwrap();
    let (back, _rx) = hub.connect(Transport::SocketIo, None).unwrap();
    let resumed = hub
        .resume(&back, "pid-1", seen)
        .await
        .unwrap()
        .expect("resumed");
    assert_eq!(back.user(), alice);
    let contents: Vec<_> = resumed.replay.iter().map(|m| m.content.clone()).collect();
    assert_eq!(contents, ["two", "three"]);
    assert!(
        hub.resume(&back, "pid-1", seen).await.unwrap().is_none(),
        "a pid resumes once"
    );
}

/// Streams that join two rooms while both are published to, then read
/// what they missed after a seq (`missed_since`) and go on live, skipping
/// live messages up to the replay's last seq: each sees every seq of its
/// rooms after its resume point once, in increasing order.
async fn missed_since_races_publish(store: Arc<dyn HistoryStore>) {
    let hub = Hub::start(HubConfig::default(), store, Arc::new(SystemClock))
        .await
        .unwrap();
    let user = User {
        id: "p".into(),
        name: "p".into(),
    };
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let room = ["x", "y", "z"][(i % 3) as usize];
                hub.publish_as(user.clone(), room, serde_json::json!(i))
                    .await
                    .unwrap();
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut streams = Vec::new();
    for j in 0..JOINERS {
        let hub = hub.clone();
        streams.push(tokio::spawn(async move {
            for _ in 0..j * 7 {
                tokio::task::yield_now().await;
            }
            // Resume from a point already passed (or from the start).
            let after = hub.delivered_seq().saturating_sub(j as u64 * 5);
            let (session, mut rx) = hub.connect(Transport::Sse, None).unwrap();
            hub.join(&session, "x", None, None).await.unwrap();
            tokio::task::yield_now().await;
            hub.join(&session, "y", None, None).await.unwrap();
            let replay = hub
                .missed_since(&session, after)
                .await
                .unwrap()
                .expect("retention covers it");
            let mut seen: Vec<u64> = replay.iter().map(|m| m.seq).collect();
            let replayed = seen.last().copied().unwrap_or(0);
            let mine = |seq: u64| (seq - 1) % 3 != 2;
            let expected: Vec<u64> = (after + 1..=MESSAGES).filter(|s| mine(*s)).collect();
            while seen.len() < expected.len() {
                let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("messages keep coming")
                    .expect("queue open");
                if let Outbound::Message(d) = ev
                    && d.message.seq > replayed
                {
                    seen.push(d.message.seq);
                }
            }
            assert_eq!(seen, expected, "stream {j} from {after}");
            hub.disconnect(&session);
        }));
    }
    publisher.await.unwrap();
    for s in streams {
        s.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_missed_since_races_publish() {
    missed_since_races_publish(Arc::new(MemoryStore::new(Retention::default()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_missed_since_races_publish() {
    let dir = tempfile::tempdir().unwrap();
    missed_since_races_publish(Arc::new(
        SqliteStore::open(&dir.path().join("p.db"), Retention::default()).unwrap(),
    ))
    .await;
}
