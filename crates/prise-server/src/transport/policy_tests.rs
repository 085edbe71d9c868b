//! The request layer under namespace and room policies: named events on
//! every transport, relays, namespaces, `client_publish`, personal rooms,
//! presence off.

use super::client::{Client, Credentials, Handshake};
use super::reply::Reply;
use super::request::Request;
use super::tests::{Policy, Server, join, publish, refusal};
use prise_hub::policy::{NamespacePolicy, Policies, Relay, RoomPolicy, RoomRule};
use prise_hub::{Outbound, Transport};
use prise_proto::message::Offset;
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn room_rule(pattern: &str, f: impl FnOnce(&mut RoomPolicy)) -> RoomRule {
    let mut p = RoomPolicy::default();
    f(&mut p);
    RoomRule::new(pattern, p)
}

async fn server() -> Server {
    let mut root = NamespacePolicy::new("/");
    root.relay = Relay::Rooms;
    let mut game = NamespacePolicy::new("/game");
    game.relay = Relay::Rooms;
    game.echo = false;
    let mut hooked = NamespacePolicy::new("/hooked");
    hooked.relay = Relay::Hook;
    let policies = Policies::new(
        vec![root, game, hooked, NamespacePolicy::new("/deny")],
        vec![
            room_rule("news", |p| p.client_publish = false),
            room_rule("hidden", |p| p.presence = false),
        ],
    )
    .expect("policies");
    Server::start_with(Policy::default(), policies).await
}

async fn socket_in(s: &Server, nsp: &str) -> (Client, mpsc::Receiver<Outbound>) {
    let credentials = Credentials {
        namespace: Some(nsp.to_owned()),
        ..Credentials::default()
    };
    Client::connect(s.ctx(), Transport::SocketIo, credentials, Handshake::Now)
        .await
        .expect("connect")
}

fn emit(room: &str, event: &str, data: Value) -> Request {
    Request::Emit {
        room: room.into(),
        event: event.into(),
        data,
    }
}

fn relay(event: &str, args: Vec<Value>) -> Request {
    Request::Relay {
        event: event.into(),
        args,
        wants_answer: false,
    }
}

/// The events queued for a session so far, as (room, event, content).
fn events(rx: &mut mpsc::Receiver<Outbound>) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let Outbound::Message(d) = ev {
            let m = &d.message;
            out.push((m.room_id.clone(), m.event.to_string(), m.content.clone()));
        }
    }
    out
}

#[tokio::test]
async fn emit_publishes_a_named_event_on_tcp_and_ws() {
    let s = server().await;
    let ctx = s.ctx();
    let (mut tcp, mut tcp_rx) = s.client(Transport::Tcp).await;
    let (mut ws, mut ws_rx) = s.client(Transport::Ws).await;
    for c in [&mut tcp, &mut ws] {
        assert!(matches!(
            c.apply(ctx, join("/game:a")).await,
            Reply::Joined(_)
        ));
    }
    let reply = tcp
        .apply(ctx, emit("/game:a", "move", json!({"x": 1})))
        .await;
    let Reply::Published(m) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!((m.offset, m.event.as_ref()), (Offset(1), "move"));
    let got = events(&mut ws_rx);
    assert_eq!(got, [("/game:a".into(), "move".into(), json!({"x": 1}))]);
    assert!(events(&mut tcp_rx).is_empty(), "/game does not echo");
    let long = "e".repeat(65);
    let r = ws.apply(ctx, emit("/game:a", &long, json!(1))).await;
    assert_eq!(refusal(&r).code, "BAD_REQUEST");
    let r = ws.apply(ctx, emit("/game:b", "move", json!(1))).await;
    assert_eq!(refusal(&r).code, "NO_ROOM", "not a member of /game:b");
    let r = ws.apply(ctx, join("/nope:a")).await;
    assert_eq!(refusal(&r).code, "UNKNOWN_NAMESPACE");
}

#[tokio::test]
async fn socket_io_rooms_are_their_namespace_and_relays_follow_its_policy() {
    let s = server().await;
    let ctx = s.ctx();
    let (mut root, mut root_rx) = socket_in(&s, "/").await;
    let (mut game, mut game_rx) = socket_in(&s, "/game").await;
    let (mut ws, mut ws_rx) = s.client(Transport::Ws).await;
    assert!(matches!(root.apply(ctx, join("a")).await, Reply::Joined(_)));
    let Reply::Joined(j) = game.apply(ctx, join("a")).await else {
        panic!("join")
    };
    assert_eq!(&*j.room, "/game:a", "qualified with the namespace");
    assert!(matches!(
        ws.apply(ctx, join("/game:a")).await,
        Reply::Joined(_)
    ));
    events(&mut root_rx);

    // `/` echoes, `/game` does not; the rooms named `a` are apart.
    let r = root
        .apply(ctx, relay("chat message", vec![json!("hi")]))
        .await;
    assert!(matches!(&r, Reply::Relayed(v) if v.len() == 1), "{r:?}");
    assert_eq!(
        events(&mut root_rx),
        [("a".into(), "chat message".into(), json!("hi"))]
    );
    assert!(events(&mut game_rx).is_empty() && events(&mut ws_rx).is_empty());
    let r = game
        .apply(ctx, relay("move", vec![json!(1), json!(2)]))
        .await;
    let Reply::Relayed(sent) = r else {
        panic!("{r:?}")
    };
    assert!(sent[0].args, "several arguments are kept as a list");
    assert!(events(&mut game_rx).is_empty(), "no echo in /game");
    assert_eq!(
        events(&mut ws_rx),
        [("/game:a".into(), "move".into(), json!([1, 2]))]
    );

    // A room name with a prefix of its own is refused on Socket.IO.
    let r = root.apply(ctx, join("/game:a")).await;
    assert_eq!(refusal(&r).code, "BAD_REQUEST");

    // Deny (the default), hook, and a socket in no room.
    let (mut denied, _d) = socket_in(&s, "/deny").await;
    let r = denied.apply(ctx, relay("move", vec![])).await;
    assert_eq!(refusal(&r).message, "unknown event move");
    let (mut hooked, _h) = socket_in(&s, "/hooked").await;
    let r = hooked.apply(ctx, relay("move", vec![])).await;
    assert!(refusal(&r).message.contains("emitWithAck"), "{r:?}");
    let mut asked = relay("move", vec![]);
    if let Request::Relay { wants_answer, .. } = &mut asked {
        *wants_answer = true;
    }
    // An RPC, with no rpc hook configured.
    let r = hooked.apply(ctx, asked).await;
    assert_eq!(refusal(&r).code, "NOT_AVAILABLE");
    let (mut alone, _a) = socket_in(&s, "/").await;
    let r = alone.apply(ctx, relay("move", vec![])).await;
    assert_eq!(refusal(&r).code, "NO_ROOM");
}

#[tokio::test]
async fn client_publish_false_leaves_publishing_to_the_api() {
    let s = server().await;
    let ctx = s.ctx();
    let (mut ws, mut ws_rx) = s.client(Transport::Ws).await;
    let (mut sio, _rx) = socket_in(&s, "/").await;
    assert!(matches!(
        ws.apply(ctx, join("news")).await,
        Reply::Joined(_)
    ));
    assert!(matches!(
        sio.apply(ctx, join("news")).await,
        Reply::Joined(_)
    ));
    for (on_sio, req) in [
        (false, publish("news", json!("x"))),
        (false, emit("news", "e", json!(1))),
        (true, relay("e", vec![json!(1)])),
    ] {
        let c = if on_sio { &mut sio } else { &mut ws };
        let r = c.apply(ctx, req).await;
        let r = refusal(&r);
        assert_eq!(r.code, "FORBIDDEN");
        assert!(r.message.contains("only the HTTP API"), "{}", r.message);
    }
    let api = prise_proto::message::User {
        id: "api".into(),
        name: "api".into(),
    };
    s.hub.publish_as(api, "news", json!("hello")).await.unwrap();
    assert_eq!(events(&mut ws_rx).len(), 1);
}

#[tokio::test]
async fn a_personal_room_is_its_users_and_presence_off_lists_nobody() {
    let s = server().await;
    let ctx = s.ctx();
    let (mut mine, _m) = s.client(Transport::Ws).await;
    let (mut other, _o) = s.client(Transport::Ws).await;
    let id = mine.session().user().id;
    let own = format!("user:{id}");
    assert!(matches!(
        mine.apply(ctx, join(&own)).await,
        Reply::Joined(_)
    ));
    let r = other.apply(ctx, join(&own)).await;
    assert_eq!(refusal(&r).code, "FORBIDDEN");

    let Reply::Joined(j) = mine.apply(ctx, join("hidden")).await else {
        panic!("join")
    };
    assert!(j.members.members.is_empty());
    let hidden = Request::Presence {
        room: "hidden".into(),
        after: None,
        limit: None,
    };
    let Reply::Presence { page, .. } = mine.apply(ctx, hidden).await else {
        panic!("presence")
    };
    assert!(page.members.is_empty());
}
