//! Room and namespace policies as the hub applies them: named events,
//! echo, ephemeral rooms, member caps, personal rooms, namespaces.

use prise_hub::clock::SystemClock;
use prise_hub::policy::{History, NamespacePolicy, Policies, RoomPolicy, RoomRule};
use prise_hub::store::{MemoryStore, Retention};
use prise_hub::{Event, Hub, HubConfig, Outbound, Session, Transport};
use prise_proto::message::{Message, Offset, User};
use std::sync::Arc;
use tokio::sync::mpsc::Receiver;

fn rule(pattern: &str, policy: RoomPolicy) -> RoomRule {
    RoomRule::new(pattern, policy)
}

fn policy(f: impl FnOnce(&mut RoomPolicy)) -> RoomPolicy {
    let mut p = RoomPolicy::default();
    f(&mut p);
    p
}

async fn hub_with(namespaces: Vec<NamespacePolicy>, rooms: Vec<RoomRule>, depth: usize) -> Hub {
    let mut config = HubConfig::default();
    config.limits.queue_depth = depth;
    config.policies = Arc::new(Policies::new(namespaces, rooms).unwrap());
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

async fn member(hub: &Hub, id: &str, room: &str) -> (Arc<Session>, Receiver<Outbound>) {
    let (s, rx) = hub.connect(Transport::Ws, Some(user(id))).unwrap();
    hub.join(&s, room, None, None).await.unwrap();
    (s, rx)
}

/// The messages queued for a session so far.
fn messages(rx: &mut Receiver<Outbound>) -> Vec<Arc<Message>> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let Outbound::Message(d) = ev {
            out.push(Arc::clone(&d.message));
        }
    }
    out
}

#[tokio::test]
async fn named_events_are_stored_with_their_name_and_echo_follows_the_namespace() {
    let mut quiet = NamespacePolicy::new("/quiet");
    quiet.echo = false;
    let hub = hub_with(vec![quiet], vec![], 16).await;
    let (a, mut a_rx) = member(&hub, "a", "r").await;
    let (_b, mut b_rx) = member(&hub, "b", "r").await;
    let m = hub
        .publish_event(&a, "r", Event::named("move", serde_json::json!({"x": 1})))
        .await
        .unwrap();
    assert_eq!((m.offset, m.event.as_ref()), (Offset(1), "move"));
    assert_eq!(messages(&mut a_rx).len(), 1, "`/` echoes to the sender");
    assert_eq!(messages(&mut b_rx)[0].event, "move");
    let (_, page) = hub.history("r", None, 10).await.unwrap();
    assert_eq!(page.messages[0].event, "move");

    let (qa, mut qa_rx) = member(&hub, "a", "/quiet:r").await;
    let (_qb, mut qb_rx) = member(&hub, "b", "/quiet:r").await;
    hub.publish_event(&qa, "/quiet:r", Event::named("move", 2.into()))
        .await
        .unwrap();
    assert!(
        messages(&mut qa_rx).is_empty(),
        "no echo: not to the sender"
    );
    assert_eq!(messages(&mut qb_rx).len(), 1);
    assert!(
        messages(&mut b_rx).is_empty(),
        "room r of /quiet is not room r of /"
    );

    let long = "e".repeat(65);
    let e = hub
        .publish_event(&a, "r", Event::named(long, 1.into()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "BAD_REQUEST");
    let e = hub
        .publish_event_as(user("api"), "/nope:r", Event::named("x", 1.into()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "UNKNOWN_NAMESPACE");
}

#[tokio::test]
async fn an_ephemeral_room_delivers_without_history_and_drops_for_a_full_queue() {
    let ephemeral = policy(|p| p.history = History::None);
    let hub = hub_with(vec![], vec![rule("cursor:*", ephemeral)], 2).await;
    let (a, mut a_rx) = member(&hub, "a", "cursor:1").await;
    let (b, _b_rx) = member(&hub, "b", "cursor:1").await;
    let _ = messages(&mut a_rx);
    for i in 0..5 {
        let m = hub
            .publish_event(&a, "cursor:1", Event::named("cursor", i.into()))
            .await
            .unwrap();
        assert_eq!(m.offset, Offset::ZERO, "no offset");
    }
    // b never read: its queue (2) is full, it missed messages and stays.
    assert!(b.close_reason().is_none(), "not disconnected");
    assert!(hub.stats().ephemeral_drops() >= 3);
    assert_eq!(messages(&mut a_rx).len(), 2);
    let (epoch, page) = hub.history("cursor:1", None, 10).await.unwrap();
    assert!(page.messages.is_empty() && page.complete);
    assert_eq!(epoch.0, "none");
    let j = hub
        .join(&a, "cursor:1", Some(Offset::ZERO), None)
        .await
        .unwrap();
    assert!(j.replay.is_empty() && j.offset == Offset::ZERO);
}

#[tokio::test]
async fn max_members_counts_users_and_presence_off_announces_nothing() {
    let capped = policy(|p| p.max_members = 2);
    let quiet = policy(|p| p.join_leave = false);
    let hub = hub_with(vec![], vec![rule("small", capped), rule("q*", quiet)], 16).await;
    let (_a, _) = member(&hub, "a", "small").await;
    let (_b, _) = member(&hub, "b", "small").await;
    let (a2, _) = hub.connect(Transport::Tcp, Some(user("a"))).unwrap();
    hub.join(&a2, "small", None, None)
        .await
        .expect("a second session of a member");
    let (c, _) = hub.connect(Transport::Tcp, Some(user("c"))).unwrap();
    let e = hub.join(&c, "small", None, None).await.unwrap_err();
    assert_eq!(e.code(), "ROOM_FULL");
    assert!(c.rooms().is_empty());

    let (_qa, mut qa_rx) = member(&hub, "a", "quiet").await;
    let (qb, _) = member(&hub, "b", "quiet").await;
    hub.disconnect(&qb);
    assert!(qa_rx.try_recv().is_err(), "no joined, no left");
}

#[tokio::test]
async fn a_personal_room_admits_only_its_user_and_the_api_reaches_it() {
    let hub = hub_with(vec![NamespacePolicy::new("/game")], vec![], 16).await;
    let (one, mut one_rx) = member(&hub, "42", "user:42").await;
    let (_two, mut two_rx) = member(&hub, "42", "user:42").await;
    let (other, _) = hub.connect(Transport::Ws, Some(user("7"))).unwrap();
    let e = hub.join(&other, "user:42", None, None).await.unwrap_err();
    assert_eq!(e.code(), "FORBIDDEN");
    let e = hub
        .join(&other, "/game:user:42", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "FORBIDDEN");
    hub.publish_event_as(user("backend"), "user:42", Event::named("notify", 1.into()))
        .await
        .unwrap();
    assert_eq!(messages(&mut one_rx).len(), 1);
    assert_eq!(messages(&mut two_rx).len(), 1, "every session of the user");
    drop(one);
}
