//! The control operations on one hub: listing sessions with their address,
//! kicking by user and by id, server-side joins and leaves with the room's
//! policy applied, and idempotency keys.

use prise_hub::clock::SystemClock;
use prise_hub::control::{Claim, ControlOp, SessionTarget};
use prise_hub::policy::{Policies, RoomPolicy, RoomRule};
use prise_hub::store::{MemoryStore, Retention};
use prise_hub::{CloseReason, Hub, HubConfig, Outbound, Transport};
use prise_proto::message::User;
use std::sync::Arc;

async fn hub() -> Hub {
    let mut config = HubConfig::default();
    let mut small = RoomPolicy::default();
    small.max_members = 1;
    config.policies =
        Arc::new(Policies::new(Vec::new(), vec![RoomRule::new("small", small)]).unwrap());
    Hub::start(
        config,
        Arc::new(MemoryStore::new(Retention::default())),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

fn user(id: &str) -> User {
    User {
        id: id.into(),
        name: id.into(),
    }
}

#[tokio::test]
async fn sessions_are_listed_kicked_and_joined_by_user_or_id() {
    let hub = hub().await;
    let from = "203.0.113.4:5555".parse().unwrap();
    let (a1, mut a1_rx) = hub
        .connect_from(Transport::Tcp, Some(user("a")), Some(from))
        .unwrap();
    let (a2, _a2_rx) = hub.connect(Transport::Ws, Some(user("a"))).unwrap();
    let (b, _b_rx) = hub.connect(Transport::Sse, Some(user("b"))).unwrap();

    // Both of a's sessions join; the room's messages reach them.
    let answer = hub
        .control(ControlOp::Subscribe {
            user: "a".into(),
            room: "news".into(),
        })
        .await
        .unwrap();
    assert_eq!(answer[0].count, 2);
    hub.publish_as(user("api"), "news", "hi".into())
        .await
        .unwrap();
    let got = a1_rx.recv().await.unwrap();
    assert!(matches!(got, Outbound::Message(d) if d.message.content == "hi"));

    // The list, filtered by room and user, with addresses and queues.
    let listed = hub
        .control(ControlOp::Sessions {
            room: Some("news".into()),
            user: None,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!((listed[0].count, listed[0].truncated), (2, true));
    let first = &listed[0].sessions[0];
    assert_eq!(first.id, hub.public_id(&a1));
    assert_eq!(first.remote.as_deref(), Some("203.0.113.4:5555"));
    assert_eq!(
        (first.transport.as_str(), first.rooms.clone()),
        ("tcp", vec!["news".to_owned()])
    );
    let second = hub.session_info(&a2);
    assert_eq!(
        (second.remote, second.queued),
        (None, 1),
        "the message waits in a2's queue"
    );

    // A join the room's policy refuses is counted, not failed.
    let (c1, _c1_rx) = hub.connect(Transport::Ws, Some(user("c"))).unwrap();
    let (d1, _d1_rx) = hub.connect(Transport::Ws, Some(user("d"))).unwrap();
    hub.join(&d1, "small", None, None).await.unwrap();
    let answer = hub
        .control(ControlOp::Subscribe {
            user: "c".into(),
            room: "small".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        (answer[0].count, answer[0].refused.clone()),
        (0, Some((1, "ROOM_FULL".into())))
    );
    assert!(c1.rooms().is_empty());
    assert!(
        hub.control(ControlOp::Subscribe {
            user: "c".into(),
            room: "bad room".into(),
        })
        .await
        .is_err()
    );

    // Leave, then kick by id (another node's id matches nothing) and by user.
    let left = hub
        .control(ControlOp::Unsubscribe {
            user: "a".into(),
            room: "news".into(),
        })
        .await
        .unwrap();
    assert_eq!(left[0].count, 2);
    assert!(a1.rooms().is_empty());
    let kick = |target| ControlOp::Disconnect {
        target,
        reason: "bye".into(),
    };
    let elsewhere = format!("OTHERNODE-{}", b.id.0);
    let none = hub
        .control(kick(SessionTarget::Session(elsewhere)))
        .await
        .unwrap();
    assert_eq!(none[0].count, 0);
    let one = hub
        .control(kick(SessionTarget::Session(hub.public_id(&b))))
        .await
        .unwrap();
    assert_eq!(one[0].count, 1);
    assert_eq!(
        (b.close_reason(), b.close_detail()),
        (Some(CloseReason::Kicked), Some("bye"))
    );
    let two = hub
        .control(kick(SessionTarget::User("a".into())))
        .await
        .unwrap();
    assert_eq!(two[0].count, 2);
    assert_eq!(a2.closed().await, CloseReason::Kicked);

    // A disconnected session leaves the list.
    hub.disconnect(&a1);
    assert!(hub.sessions(None, Some("a")).iter().all(|s| s.id != a1.id));
}

#[tokio::test]
async fn an_idempotency_key_answers_once() {
    let hub = hub().await;
    assert_eq!(hub.claim_key("k").await.unwrap(), Claim::First);
    assert_eq!(hub.claim_key("k").await.unwrap(), Claim::Pending);
    hub.settle_key("k", Some("answer".into())).await;
    assert_eq!(
        hub.claim_key("k").await.unwrap(),
        Claim::Done("answer".into())
    );
    assert_eq!(hub.claim_key("failed").await.unwrap(), Claim::First);
    hub.settle_key("failed", None).await;
    assert_eq!(hub.claim_key("failed").await.unwrap(), Claim::First);
}

#[tokio::test]
async fn clearing_history_keeps_offsets() {
    let hub = hub().await;
    for n in 0..3 {
        hub.publish_as(user("api"), "log", n.into()).await.unwrap();
    }
    assert_eq!(hub.clear_history("log").await.unwrap(), 3);
    let (_, page) = hub
        .history("log", Some(prise_proto::message::Offset(0)), 10)
        .await
        .unwrap();
    assert!(page.messages.is_empty() && !page.complete);
    let m = hub.publish_as(user("api"), "log", 3.into()).await.unwrap();
    assert_eq!(m.offset.0, 4);
}

#[tokio::test]
async fn a_server_side_join_is_restored_by_recovery() {
    let hub = hub().await;
    let (s, _rx) = hub.connect(Transport::SocketIo, Some(user("e"))).unwrap();
    let joined = hub
        .control(ControlOp::Subscribe {
            user: "e".into(),
            room: "alerts".into(),
        })
        .await
        .unwrap();
    assert_eq!(joined[0].count, 1);
    // The transport is lost: the session is suspended, then resumed by a
    // new connection of the same client.
    let seq = hub.delivered_seq();
    hub.suspend(&s, "pid-1").await.unwrap();
    hub.disconnect(&s);
    hub.publish_as(user("api"), "alerts", "while away".into())
        .await
        .unwrap();
    let (back, _rx2) = hub.connect(Transport::SocketIo, None).unwrap();
    let resumed = hub
        .resume(&back, "pid-1", seq)
        .await
        .unwrap()
        .expect("resumed");
    assert_eq!(
        resumed.rooms.iter().map(|r| &**r).collect::<Vec<_>>(),
        ["alerts"]
    );
    assert_eq!(resumed.replay.len(), 1);
    assert_eq!(resumed.replay[0].content, "while away");
}
