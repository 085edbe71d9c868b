//! The request layer without sockets: every request kind and every refusal
//! of [`Client::apply`] and [`Client::connect`], on a real hub over the
//! memory store.

use super::client::{Client, Credentials, Ctx, Deadline, Handshake};
use super::reply::{Refusal, Reply};
use super::request::{Request, Target};
use crate::security::Security;
use crate::security::auth::{Authenticator, KeySource};
use crate::security::ratelimit::{IpLimiter, RateConfig};
use prise_hub::clock::SystemClock;
use prise_hub::store::{MemoryStore, Retention};
use prise_hub::{CloseReason, Hub, HubConfig, Outbound, Transport};
use prise_proto::message::Offset;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const SECRET: &str = "request-layer-secret";

/// A hub and the security state of one listener policy.
pub(super) struct Server {
    pub(super) hub: Hub,
    security: Security,
    pub(super) hooks: crate::hooks::Hooks,
}

/// Who may come in without a token, and how many requests a connection
/// may send in a burst.
pub(super) struct Policy {
    pub(super) anonymous: bool,
    pub(super) burst: u32,
    pub(super) max_connections: usize,
    pub(super) max_presence_fanout: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            anonymous: true,
            burst: 1000,
            max_connections: 100,
            max_presence_fanout: prise_proto::limits::DEFAULT_MAX_PRESENCE_FANOUT,
        }
    }
}

impl Server {
    pub(super) async fn start(policy: Policy) -> Self {
        Self::start_with(policy, prise_hub::policy::Policies::default()).await
    }

    /// A server with these namespaces and room policies.
    pub(super) async fn start_with(policy: Policy, policies: prise_hub::policy::Policies) -> Self {
        let mut config = HubConfig::default();
        config.limits.max_connections = policy.max_connections;
        config.policies = Arc::new(policies);
        config.limits.max_presence_fanout = policy.max_presence_fanout;
        let store = Arc::new(MemoryStore::new(Retention::default()));
        let hub = Hub::start(config, store, Arc::new(SystemClock))
            .await
            .expect("hub");
        let rate = RateConfig {
            message_rate: 0.001,
            message_burst: policy.burst,
            ..RateConfig::default()
        };
        let security = Security {
            auth: Authenticator::load(&KeySource {
                secret: Some(SECRET.into()),
                ..KeySource::default()
            })
            .expect("key"),
            anonymous_http: policy.anonymous,
            anonymous_tcp: policy.anonymous,
            auth_timeout: Duration::from_secs(10),
            api_keys: Vec::new(),
            rate,
            ips: IpLimiter::new(rate),
            origins: crate::security::OriginPolicy::new(&[]),
            tls: None,
            header_timeout: Duration::from_secs(10),
            max_body: 1024,
            trusted: crate::security::trust::TrustedProxies::default(),
        };
        Self {
            hub,
            security,
            hooks: crate::hooks::Hooks::off(),
        }
    }

    pub(super) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            hub: &self.hub,
            security: &self.security,
            hooks: &self.hooks,
        }
    }

    pub(super) async fn client(&self, transport: Transport) -> (Client, mpsc::Receiver<Outbound>) {
        Client::connect(
            self.ctx(),
            transport,
            Credentials::default(),
            Handshake::Later,
        )
        .await
        .expect("connect")
    }
}

fn token(sub: &str, claims: Value) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let mut body = json!({"sub": sub, "exp": exp});
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), claims) {
        b.extend(extra);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &body,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

pub(super) fn join(room: &str) -> Request {
    Request::Join {
        room: room.into(),
        since: None,
        epoch: None,
        name: None,
        switch: false,
    }
}

fn switch(room: &str) -> Request {
    Request::Join {
        room: room.into(),
        since: None,
        epoch: None,
        name: None,
        switch: true,
    }
}

pub(super) fn publish(room: &str, content: Value) -> Request {
    Request::Publish {
        room: Target::Room(room.into()),
        content,
    }
}

pub(super) fn presence(room: &str, after: Option<String>, limit: Option<usize>) -> Request {
    Request::Presence {
        room: room.into(),
        after,
        limit,
    }
}

pub(super) fn refusal(reply: &Reply) -> &Refusal {
    match reply {
        Reply::Refused(r) | Reply::Ended(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn requests_without_a_room_are_answered() {
    let s = Server::start(Policy::default()).await;
    let (mut c, _rx) = s.client(Transport::Tcp).await;
    let ctx = s.ctx();
    assert!(matches!(
        c.apply(ctx, Request::Ping(Some(json!("x")))).await,
        Reply::Pong(Some(v)) if v == json!("x")
    ));
    let Reply::Time(ms) = c.apply(ctx, Request::Time).await else {
        panic!("time")
    };
    assert!(ms > 1_700_000_000_000);
    assert!(matches!(c.apply(ctx, Request::Help).await, Reply::Help));
    assert!(matches!(c.apply(ctx, Request::Quit).await, Reply::Bye));
    let Reply::Named(u) = c.apply(ctx, Request::Rename("alice".into())).await else {
        panic!("rename")
    };
    assert_eq!(u.name, "alice");
    let Reply::Named(u) = c.apply(ctx, Request::Anonymous(None)).await else {
        panic!("anonymous")
    };
    assert_eq!(u.name, "alice");
    let r = c.apply(ctx, Request::Rename("two words".into())).await;
    assert_eq!(refusal(&r).code, "BAD_REQUEST");
    let r = c
        .apply(ctx, Request::Malformed(Refusal::bad_request("what")))
        .await;
    assert_eq!(refusal(&r), &Refusal::bad_request("what"));
}

#[tokio::test]
async fn rooms_are_joined_used_and_left() {
    let s = Server::start(Policy::default()).await;
    let ctx = s.ctx();
    let (mut a, _ra) = s.client(Transport::Ws).await;
    let (mut b, mut rb) = s.client(Transport::Tcp).await;
    assert!(matches!(
        b.apply(ctx, join("general")).await,
        Reply::Joined(_)
    ));
    let Reply::Joined(j) = a
        .apply(
            ctx,
            Request::Join {
                room: "general".into(),
                since: None,
                epoch: None,
                name: Some("alice".into()),
                switch: false,
            },
        )
        .await
    else {
        panic!("join")
    };
    assert_eq!(&*j.room, "general");
    assert_eq!(j.members.count, 2);
    assert!(j.members.complete());
    assert!(j.members.members.iter().any(|u| u.name == "alice"));
    let Reply::Published(m) = a.apply(ctx, publish("general", json!("hi"))).await else {
        panic!("publish")
    };
    assert_eq!(m.offset, Offset(1));
    assert_eq!(m.user_name, "alice");
    // b hears the join, then the message.
    let mut got_message = false;
    while let Ok(ev) = rb.try_recv() {
        if let Outbound::Message(d) = ev {
            assert_eq!(d.message.content, json!("hi"));
            got_message = true;
        }
    }
    assert!(got_message);
    assert!(matches!(
        a.apply(
            ctx,
            Request::Typing {
                room: Target::Room("general".into()),
                on: true
            }
        )
        .await,
        Reply::Nothing
    ));
    let Reply::Presence { room, page } = a.apply(ctx, presence("general", None, None)).await else {
        panic!("presence")
    };
    assert_eq!((room.as_str(), page.members.len()), ("general", 2));
    assert_eq!(page.count, 2);
    let Reply::Rooms(rooms) = a.apply(ctx, Request::Rooms).await else {
        panic!("rooms")
    };
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].name, "general");
    assert!(matches!(
        a.apply(ctx, Request::Leave("general".into())).await,
        Reply::Left(r) if r == "general"
    ));
    let r = a.apply(ctx, publish("general", json!("again"))).await;
    assert_eq!(refusal(&r).code, "NO_ROOM");
    let r = a.apply(ctx, Request::Leave("general".into())).await;
    assert_eq!(refusal(&r).code, "NO_ROOM");
    let r = a
        .apply(
            ctx,
            Request::Typing {
                room: Target::Room("elsewhere".into()),
                on: true,
            },
        )
        .await;
    assert_eq!(refusal(&r).code, "NO_ROOM");
}

#[tokio::test]
async fn history_has_one_default_on_every_transport() {
    let s = Server::start(Policy::default()).await;
    let ctx = s.ctx();
    let (mut a, _ra) = s.client(Transport::Tcp).await;
    a.apply(ctx, join("log")).await;
    for i in 0..(super::DEFAULT_HISTORY + 5) {
        assert!(matches!(
            a.apply(ctx, publish("log", json!(i))).await,
            Reply::Published(_)
        ));
    }
    for transport in [Transport::Tcp, Transport::Ws, Transport::SocketIo] {
        let (mut c, _rx) = s.client(transport).await;
        let Reply::History { room, page, .. } = c
            .apply(
                ctx,
                Request::History {
                    room: "log".into(),
                    since: None,
                    limit: None,
                },
            )
            .await
        else {
            panic!("history")
        };
        assert_eq!(room, "log");
        assert_eq!(page.messages.len(), super::DEFAULT_HISTORY, "{transport:?}");
    }
    let Reply::History { page, .. } = a
        .apply(
            ctx,
            Request::History {
                room: "log".into(),
                since: Some(Offset(50)),
                limit: Some(3),
            },
        )
        .await
    else {
        panic!("history since")
    };
    let offsets: Vec<u64> = page.messages.iter().map(|m| m.offset.0).collect();
    assert_eq!(offsets, vec![51, 52, 53]);
    let r = a
        .apply(
            ctx,
            Request::History {
                room: "never".into(),
                since: None,
                limit: None,
            },
        )
        .await;
    assert_eq!(refusal(&r).code, "NO_ROOM");
}

#[tokio::test]
async fn the_single_room_api_acts_on_the_current_room() {
    let s = Server::start(Policy::default()).await;
    let ctx = s.ctx();
    let (mut c, _rx) = s.client(Transport::SocketIo).await;
    let current = |content: Value| Request::Publish {
        room: Target::Current,
        content,
    };
    let r = c.apply(ctx, current(json!("nowhere"))).await;
    assert_eq!(refusal(&r).code, "NO_ROOM");
    assert!(refusal(&r).message.contains("joinRoom"));
    assert!(matches!(
        c.apply(
            ctx,
            Request::Typing {
                room: Target::Current,
                on: true
            }
        )
        .await,
        Reply::Nothing
    ));
    c.apply(ctx, switch("a")).await;
    c.apply(ctx, switch("b")).await;
    assert_eq!(
        c.session()
            .rooms()
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    let Reply::Published(m) = c.apply(ctx, current(json!("hi"))).await else {
        panic!("publish")
    };
    assert_eq!(m.room_id, "b");
    // A plain join adds a room and keeps the current one.
    c.apply(ctx, join("c")).await;
    let Reply::Published(m) = c.apply(ctx, current(json!("still b"))).await else {
        panic!("publish")
    };
    assert_eq!(m.room_id, "b");
    c.apply(ctx, Request::Leave("b".into())).await;
    let r = c.apply(ctx, current(json!("gone"))).await;
    assert_eq!(refusal(&r).code, "NO_ROOM");
}

#[tokio::test]
async fn anonymous_clients_are_told_how_to_authenticate_on_their_transport() {
    let s = Server::start(Policy {
        anonymous: false,
        ..Policy::default()
    })
    .await;
    let ctx = s.ctx();
    for (transport, hint) in [
        (Transport::Tcp, "AUTH token"),
        (Transport::Ws, r#"{"type":"auth""#),
    ] {
        let (mut c, _rx) = s.client(transport).await;
        assert!(c.deadline().is_some(), "time to authenticate");
        let r = c.apply(ctx, join("general")).await;
        let r = refusal(&r);
        assert_eq!(r.code, "AUTH_REQUIRED");
        assert!(r.message.contains(hint), "{transport:?}: {}", r.message);
        if transport != Transport::Tcp {
            assert!(!r.message.contains("AUTH token"), "{}", r.message);
        }
        for req in [
            publish("general", json!("x")),
            Request::Rooms,
            presence("general", None, None),
            Request::Rename("bob".into()),
        ] {
            let r = c.apply(ctx, req).await;
            assert_eq!(refusal(&r).code, "AUTH_REQUIRED");
        }
        assert!(matches!(
            c.apply(ctx, Request::Ping(None)).await,
            Reply::Pong(None)
        ));
        assert!(matches!(
            c.apply(ctx, Request::Anonymous(None)).await,
            Reply::Ended(r) if r.code == "AUTH_FAILED"
        ));
        assert_eq!(c.deadline_passed(ctx).await, Deadline::AuthTimeout);
    }
}

#[tokio::test]
async fn a_token_grants_its_rooms_and_is_refreshed_for_the_same_subject() {
    let s = Server::start(Policy {
        anonymous: false,
        ..Policy::default()
    })
    .await;
    let ctx = s.ctx();
    let (mut c, _rx) = s.client(Transport::Tcp).await;
    let t = token(
        "u1",
        json!({"name": "alice", "rooms": ["team-*"], "publish": false}),
    );
    let Reply::Authenticated { user, exp } = c.apply(ctx, Request::Authenticate(t)).await else {
        panic!("auth")
    };
    assert_eq!((user.id.as_str(), user.name.as_str()), ("u1", "alice"));
    assert!(exp > 0);
    assert_eq!(c.session().user().name, "alice");
    assert!(matches!(
        c.apply(ctx, join("team-a")).await,
        Reply::Joined(_)
    ));
    let r = c.apply(ctx, join("general")).await;
    assert_eq!(refusal(&r), &Refusal::forbidden_room("general"));
    let r = c
        .apply(
            ctx,
            Request::History {
                room: "general".into(),
                since: None,
                limit: None,
            },
        )
        .await;
    assert_eq!(refusal(&r).code, "FORBIDDEN");
    let r = c.apply(ctx, publish("team-a", json!("x"))).await;
    assert_eq!(refusal(&r).code, "FORBIDDEN");
    let r = c.apply(ctx, Request::Rename("mallory".into())).await;
    assert_eq!(refusal(&r), &Refusal::name_from_token());
    let r = c
        .apply(ctx, Request::Anonymous(Some("mallory".into())))
        .await;
    assert_eq!(refusal(&r), &Refusal::name_from_token());
    // Refresh: same subject extends; another subject ends the session.
    // The fresh token expires a minute later: within one second, two
    // tokens from `token` share their `exp`, and the deadlines computed
    // from the wall clock could then differ by its jitter either way.
    let before = c.deadline().expect("a token session has a deadline");
    let later = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3660;
    assert!(matches!(
        c.apply(
            ctx,
            Request::Authenticate(token("u1", json!({"exp": later})))
        )
        .await,
        Reply::Authenticated { .. }
    ));
    assert!(c.deadline().expect("deadline") > before);
    let r = c
        .apply(ctx, Request::Authenticate(token("u2", json!({}))))
        .await;
    assert!(matches!(&r, Reply::Ended(e) if e.code == "AUTH_FAILED"));
    assert_eq!(c.deadline_passed(ctx).await, Deadline::Expired);
    assert_eq!(c.session().close_reason(), Some(CloseReason::AuthExpired));
}

#[tokio::test]
async fn bad_tokens_end_the_session() {
    let s = Server::start(Policy::default()).await;
    let ctx = s.ctx();
    let (mut c, _rx) = s.client(Transport::Ws).await;
    let r = c
        .apply(ctx, Request::Authenticate("not.a.jwt".into()))
        .await;
    assert!(matches!(&r, Reply::Ended(e) if e.code == "AUTH_FAILED"));
    // Anonymous in a room, then a token: refused, the session ends.
    let (mut c, _rx) = s.client(Transport::Tcp).await;
    c.apply(ctx, join("general")).await;
    let r = c
        .apply(ctx, Request::Authenticate(token("u1", json!({}))))
        .await;
    assert!(matches!(&r, Reply::Ended(e) if e.message.contains("before joining")));
}

#[tokio::test]
async fn the_handshake_checks_token_name_and_capacity() {
    let s = Server::start(Policy {
        anonymous: false,
        max_connections: 2,
        ..Policy::default()
    })
    .await;
    let ctx = s.ctx();
    let connect = |token: Option<String>, name: Option<&str>, handshake| {
        Client::connect(
            ctx,
            Transport::SocketIo,
            Credentials {
                token,
                name: name.map(str::to_owned),
                ..Credentials::default()
            },
            handshake,
        )
    };
    let err = |r: Result<(Client, mpsc::Receiver<Outbound>), Refusal>| match r {
        Err(e) => e,
        Ok(_) => panic!("expected a refusal"),
    };
    assert_eq!(
        err(connect(None, None, Handshake::Now).await).code,
        "AUTH_REQUIRED"
    );
    assert_eq!(
        err(connect(Some("bad".into()), None, Handshake::Now).await).code,
        "AUTH_FAILED"
    );
    let (c, _rx) = connect(Some(token("u1", json!({}))), None, Handshake::Now)
        .await
        .expect("token");
    assert!(c.is_authenticated());
    assert!(c.deadline().is_some());
    assert_eq!(s.hub.stats().connections_total(), 1);
    let (later, _rl) = connect(None, None, Handshake::Later).await.expect("later");
    assert!(!later.is_authenticated());
    let full = err(connect(Some(token("u2", json!({}))), None, Handshake::Now).await);
    assert!(full.is_server_full());

    let open = Server::start(Policy::default()).await;
    let ctx = open.ctx();
    let (c, _rx) = Client::connect(
        ctx,
        Transport::SocketIo,
        Credentials {
            token: None,
            name: Some("carol".into()),
            ..Credentials::default()
        },
        Handshake::Now,
    )
    .await
    .expect("named");
    assert_eq!(c.session().user().name, "carol");
    assert!(c.deadline().is_none());
    let bad = Client::connect(
        ctx,
        Transport::SocketIo,
        Credentials {
            token: None,
            name: Some("two words".into()),
            ..Credentials::default()
        },
        Handshake::Now,
    )
    .await;
    assert_eq!(err(bad).code, "BAD_REQUEST");
    // The refused session was let go.
    assert_eq!(open.hub.stats().connections_total(), 1);
}

/// Renders the counters recorded while `f` runs.
fn counted(f: impl FnOnce()) -> String {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, f);
    handle.render()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_rate_refusal_is_counted_once_on_every_transport() {
    for transport in [Transport::Tcp, Transport::Ws, Transport::SocketIo] {
        let rendered = counted(|| {
            runtime().block_on(async {
                let s = Server::start(Policy {
                    burst: 2,
                    ..Policy::default()
                })
                .await;
                let (mut c, _rx) = s.client(transport).await;
                let ctx = s.ctx();
                assert!(matches!(
                    c.apply(ctx, Request::Ping(None)).await,
                    Reply::Pong(_)
                ));
                // A malformed request costs a token too.
                let r = c
                    .apply(ctx, Request::Malformed(Refusal::bad_request("x")))
                    .await;
                assert_eq!(refusal(&r).code, "BAD_REQUEST");
                let r = c.apply(ctx, Request::Ping(None)).await;
                assert_eq!(refusal(&r), &Refusal::rate_limited());
            });
        });
        let lines: Vec<&str> = rendered
            .lines()
            .filter(|l| l.starts_with("prise_refused_total"))
            .collect();
        assert_eq!(
            lines,
            vec![r#"prise_refused_total{reason="rate_limited"} 1"#],
            "{transport:?}"
        );
    }
}

#[test]
fn a_refused_token_is_counted_once() {
    let rendered = counted(|| {
        runtime().block_on(async {
            let s = Server::start(Policy::default()).await;
            let (mut c, _rx) = s.client(Transport::Ws).await;
            let r = c.apply(s.ctx(), Request::Authenticate("x".into())).await;
            assert!(matches!(r, Reply::Ended(_)));
            let r = Client::connect(
                s.ctx(),
                Transport::SocketIo,
                Credentials {
                    token: Some("x".into()),
                    ..Credentials::default()
                },
                Handshake::Now,
            )
            .await;
            assert!(r.is_err());
        });
    });
    assert!(
        rendered.contains(r#"prise_refused_total{reason="auth_failed"} 2"#),
        "{rendered}"
    );
}

#[test]
fn every_close_reason_has_a_wording_per_transport() {
    for transport in Transport::ALL {
        let slow = Refusal::for_close(CloseReason::SlowConsumer, transport).expect("slow");
        assert_eq!(slow.code, "SLOW_CONSUMER");
        let expired = Refusal::for_close(CloseReason::AuthExpired, transport).expect("exp");
        assert_eq!(expired.code, "AUTH_EXPIRED");
        assert!(Refusal::for_close(CloseReason::Shutdown, transport).is_none());
    }
    assert!(
        Refusal::for_close(CloseReason::SlowConsumer, Transport::Tcp)
            .expect("slow")
            .message
            .contains("SINCE")
    );
}
