//! The conformance suite every [`HistoryStore`] passes (memory, SQLite, and any
//! later implementation). Enable the `conformance` feature to run it from
//! another crate's tests.
#![allow(
    clippy::unwrap_used,
    reason = "a test suite: a panic is how a check fails"
)]

use super::{HistoryQuery, HistoryStore, SessionSnapshot};
use prise_proto::message::{Message, Offset, User};
use std::sync::Arc;

/// The retention count the suite expects the store under test to use.
pub const RETAIN_COUNT: usize = 5;

/// A message for the suite.
pub fn message(room: &str, offset: u64, seq: u64) -> Arc<Message> {
    Arc::new(Message {
        id: format!("m{seq}"),
        room_id: room.to_owned(),
        user_id: "u1".into(),
        user_name: "alice".into(),
        content: serde_json::json!({"n": offset}),
        timestamp: 1_000 + seq,
        offset: Offset(offset),
        event: prise_proto::message::MESSAGE_EVENT.into(),
        args: false,
        seq,
    })
}

fn offsets(page: &super::HistoryPage) -> Vec<u64> {
    page.messages.iter().map(|m| m.offset.0).collect()
}

/// Runs the suite against an empty store created with a retention count of
/// [`RETAIN_COUNT`] and the default age.
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub async fn run(store: &dyn HistoryStore, durable: bool) {
    let _ = durable;
    // Heads.
    assert_eq!(store.room_head("r1", false).await.unwrap(), None);
    let h = store.room_head("r1", true).await.unwrap().unwrap();
    assert_eq!((h.last, h.first), (Offset(0), Offset(1)));
    let again = store.room_head("r1", true).await.unwrap().unwrap();
    assert_eq!(again.epoch, h.epoch, "the epoch is stable");
    let h2 = store.room_head("r2", true).await.unwrap().unwrap();
    assert_ne!(h2.epoch, h.epoch, "each room has its own epoch");

    // Append and read.
    store
        .append(vec![message("r1", 1, 1), message("r1", 2, 2)])
        .await
        .unwrap();
    store
        .append(vec![message("r1", 3, 3), message("r2", 1, 4)])
        .await
        .unwrap();
    let h = store.room_head("r1", false).await.unwrap().unwrap();
    assert_eq!((h.last, h.first), (Offset(3), Offset(1)));
    let all = store
        .read(
            "r1",
            HistoryQuery::After {
                after: Offset(0),
                until: Offset(3),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(offsets(&all), [1, 2, 3]);
    assert!(all.complete);
    assert_eq!(all.messages[0].content, serde_json::json!({"n": 1}));
    assert_eq!(all.messages[0].user_name, "alice");
    assert_eq!(all.messages[0].seq, 1);
    let page = store
        .read(
            "r1",
            HistoryQuery::After {
                after: Offset(1),
                until: Offset(2),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(offsets(&page), [2], "until bounds the read");
    let page = store
        .read(
            "r1",
            HistoryQuery::After {
                after: Offset(0),
                until: Offset(3),
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(offsets(&page), [1, 2], "limit keeps the oldest");
    let last = store
        .read(
            "r1",
            HistoryQuery::Last {
                count: 2,
                until: Offset(3),
            },
        )
        .await
        .unwrap();
    assert_eq!(offsets(&last), [2, 3]);
    let none = store
        .read(
            "nowhere",
            HistoryQuery::Last {
                count: 2,
                until: Offset(3),
            },
        )
        .await
        .unwrap();
    assert!(none.messages.is_empty());

    // Retention by count: 8 messages, 5 kept.
    store
        .append((4..=8).map(|o| message("r1", o, o + 1)).collect())
        .await
        .unwrap();
    let h = store.room_head("r1", false).await.unwrap().unwrap();
    assert_eq!((h.last, h.first), (Offset(8), Offset(4)));
    let page = store
        .read(
            "r1",
            HistoryQuery::After {
                after: Offset(0),
                until: Offset(8),
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(offsets(&page), [4, 5, 6, 7, 8]);
    assert!(!page.complete, "offsets 1-3 are gone");
    let page = store
        .read(
            "r1",
            HistoryQuery::After {
                after: Offset(3),
                until: Offset(8),
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert!(page.complete, "everything after 3 is retained");

    // Recovery across rooms by seq.
    let rooms = ["r1".to_owned(), "r2".to_owned()];
    let page = store.read_since_seq(&rooms, 6, 100).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [7, 8, 9]
    );
    assert!(page.complete);
    let page = store.read_since_seq(&rooms, 0, 100).await.unwrap();
    assert!(!page.complete, "r1 dropped messages the reader never saw");
    assert_eq!(page.messages[0].seq, 4, "seq order over rooms");
    let page = store.read_since_seq(&rooms, 6, 2).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    assert!(!page.complete, "truncated by the limit");
    let page = store
        .read_since_seq(&["r2".to_owned()], 0, 100)
        .await
        .unwrap();
    assert_eq!(offsets(&page), [1]);
    assert!(page.complete);
    assert_eq!(store.max_seq().await.unwrap(), 9);

    // Event names and argument lists are stored with the message.
    let mut named = (*message("r3", 1, 10)).clone();
    named.event = "chat message".into();
    named.args = true;
    named.content = serde_json::json!([1, "two"]);
    store.room_head("r3", true).await.unwrap();
    store
        .append(vec![Arc::new(named.clone()), message("r3", 2, 11)])
        .await
        .unwrap();
    let page = store
        .read(
            "r3",
            HistoryQuery::After {
                after: Offset(0),
                until: Offset(2),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(*page.messages[0], named, "the event and its arguments");
    assert!(page.messages[1].is_chat() && !page.messages[1].args);
    let page = store
        .read_since_seq(&["r3".to_owned()], 9, 10)
        .await
        .unwrap();
    assert_eq!(
        page.messages[0].event, "chat message",
        "recovery reads it too"
    );

    // Sessions.
    let snap = SessionSnapshot {
        user: User {
            id: "u1".into(),
            name: "alice".into(),
        },
        rooms: vec!["r1".into()],
        expires_at: 1_000,
    };
    store.save_session("p1", snap.clone()).await.unwrap();
    assert_eq!(
        store.take_session("p1", 500).await.unwrap(),
        Some(snap.clone())
    );
    assert_eq!(
        store.take_session("p1", 500).await.unwrap(),
        None,
        "a session is taken once"
    );
    store.save_session("p2", snap).await.unwrap();
    assert_eq!(
        store.take_session("p2", 2_000).await.unwrap(),
        None,
        "expired"
    );

    let rooms = store.rooms(10).await.unwrap();
    assert!(rooms.contains(&("r1".to_owned(), Offset(8))));
    assert!(rooms.iter().any(|(r, _)| r == "r2"));

    // Clearing a room's history drops its messages, not its offsets.
    let h = store.room_head("r9", true).await.unwrap().unwrap();
    store
        .append((1..=3).map(|o| message("r9", o, 100 + o)).collect())
        .await
        .unwrap();
    assert_eq!(store.clear("r9").await.unwrap(), 3);
    assert_eq!(store.clear("nowhere").await.unwrap(), 0);
    let after = store.room_head("r9", false).await.unwrap().unwrap();
    assert_eq!(after.epoch, h.epoch);
    assert_eq!((after.last, after.first), (Offset(3), Offset(4)));
    let q = |after: u64| HistoryQuery::After {
        after: Offset(after),
        until: Offset(4),
        limit: 10,
    };
    let gone = store.read("r9", q(0)).await.unwrap();
    assert!(gone.messages.is_empty() && !gone.complete);
    let since = store
        .read_since_seq(&["r9".to_owned()], 100, 10)
        .await
        .unwrap();
    assert!(since.messages.is_empty() && !since.complete);
    store.append(vec![message("r9", 4, 104)]).await.unwrap();
    let next = store.read("r9", q(3)).await.unwrap();
    assert_eq!((offsets(&next), next.complete), (vec![4], true));
    store.flush().await.unwrap();
}
