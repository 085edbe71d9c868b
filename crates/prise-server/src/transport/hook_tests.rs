//! The request layer's hooks against a backend on a real socket: what the
//! end-to-end suite (tests/hooks) cannot show cheaply — the breaker, fail
//! open, the timeout, the connect cache, bad answers and the signature.

use super::client::{Client, Credentials, Handshake};
use super::reply::Reply;
use super::request::Request;
use super::tests::{Policy, Server, join, publish, refusal};
use crate::hooks::{HookArgs, HookKind, Hooks};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prise_hub::Transport;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "hook-tests-secret";

/// How the backend answers.
#[derive(Clone)]
enum Mode {
    Json(Value),
    Status(u16),
    Garbage,
    Slow(Duration),
}

#[derive(Clone)]
struct Backend {
    calls: Arc<AtomicUsize>,
    unsigned: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    last: Arc<Mutex<Value>>,
}

async fn answer(State(b): State<Backend>, headers: HeaderMap, body: Bytes) -> Response {
    b.calls.fetch_add(1, Ordering::SeqCst);
    let expected = crate::hooks::sign_for_tests(SECRET, &body);
    if headers
        .get("x-prise-signature")
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        b.unsigned.fetch_add(1, Ordering::SeqCst);
    }
    *b.last.lock().unwrap() = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mode = b.mode.lock().unwrap().clone();
    match mode {
        Mode::Json(v) => axum::Json(v).into_response(),
        Mode::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Mode::Garbage => "not json".into_response(),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            axum::Json(json!({})).into_response()
        }
    }
}

impl Backend {
    async fn start(mode: Mode) -> (Self, String) {
        let b = Self {
            calls: Arc::default(),
            unsigned: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
            last: Arc::new(Mutex::new(Value::Null)),
        };
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(answer))
            .with_state(b.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (b, url)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

fn args(url: &str, hooks: &[HookKind]) -> HookArgs {
    HookArgs {
        hook_url: Some(url.to_owned()),
        hooks: hooks.to_vec(),
        hook_secret: Some(SECRET.into()),
        hook_timeout: Duration::from_millis(500),
        ..HookArgs::default()
    }
}

async fn server(a: &HookArgs) -> Server {
    let mut s = Server::start(Policy::default()).await;
    s.hooks = Hooks::build(a, &prise_hub::policy::Policies::default(), "node-1").expect("hooks");
    s
}

async fn connect(s: &Server, auth: Value) -> Result<Client, super::reply::Refusal> {
    let credentials = Credentials {
        auth,
        ..Credentials::default()
    };
    Client::connect(s.ctx(), Transport::Ws, credentials, Handshake::Later)
        .await
        .map(|(c, _rx)| c)
}

#[tokio::test]
async fn a_failing_backend_is_refused_closed_then_spared_by_the_breaker() {
    let (b, url) = Backend::start(Mode::Status(500)).await;
    let s = server(&args(&url, &[HookKind::Join])).await;
    let (mut c, _rx) = s.client(Transport::Ws).await;
    for _ in 0..crate::hooks::TRIP_AFTER {
        let r = c.apply(s.ctx(), join("a")).await;
        assert_eq!(refusal(&r).code, "HOOK_UNAVAILABLE");
    }
    assert_eq!(b.calls(), crate::hooks::TRIP_AFTER as usize);
    // Open: refused at once, the backend is not called.
    b.set(Mode::Json(json!({})));
    let r = c.apply(s.ctx(), join("a")).await;
    assert_eq!(refusal(&r).code, "HOOK_UNAVAILABLE");
    assert_eq!(b.calls(), crate::hooks::TRIP_AFTER as usize);
    assert_eq!(b.unsigned.load(Ordering::SeqCst), 0, "every call is signed");
}

#[tokio::test]
async fn hooks_named_fail_open_let_requests_through_but_rpc_never() {
    let (b, url) = Backend::start(Mode::Garbage).await;
    let mut a = args(&url, &[HookKind::Join, HookKind::Publish, HookKind::Rpc]);
    a.hook_fail_open = vec![HookKind::Join, HookKind::Publish, HookKind::Rpc];
    let s = server(&a).await;
    let (mut c, _rx) = s.client(Transport::Tcp).await;
    assert!(matches!(
        c.apply(s.ctx(), join("a")).await,
        Reply::Joined(_)
    ));
    let r = c.apply(s.ctx(), publish("a", json!("as sent"))).await;
    let Reply::Published(m) = r else {
        panic!("{r:?}")
    };
    assert_eq!(m.content, json!("as sent"));
    let rpc = Request::Rpc {
        method: "m".into(),
        data: Value::Null,
    };
    let r = c.apply(s.ctx(), rpc).await;
    assert_eq!(refusal(&r).code, "HOOK_UNAVAILABLE");
    assert_eq!(b.calls(), 3);
}

#[tokio::test]
async fn a_slow_backend_is_cut_at_the_timeout() {
    let (_b, url) = Backend::start(Mode::Slow(Duration::from_secs(5))).await;
    let s = server(&args(&url, &[HookKind::Publish])).await;
    let (mut c, _rx) = s.client(Transport::Ws).await;
    assert!(matches!(
        c.apply(s.ctx(), join("a")).await,
        Reply::Joined(_)
    ));
    let r = c.apply(s.ctx(), publish("a", json!(1))).await;
    assert_eq!(refusal(&r).code, "HOOK_UNAVAILABLE");
    let (_, page) = s.hub.history("a", None, 10).await.unwrap();
    assert!(page.messages.is_empty(), "a refused message is not stored");
}

#[tokio::test]
async fn connect_answers_are_reused_for_the_same_credentials() {
    let (b, url) = Backend::start(Mode::Json(
        json!({"user": {"id": "u9", "info": {"tier": 2}}}),
    ))
    .await;
    let s = server(&args(&url, &[HookKind::Connect, HookKind::Join])).await;
    let one = connect(&s, json!({"k": 1})).await.expect("admitted");
    let two = connect(&s, json!({"k": 1})).await.expect("admitted");
    assert_eq!(
        b.calls(),
        1,
        "the second connect was answered from the cache"
    );
    assert_eq!(one.session().user().id, "u9");
    assert_eq!(two.session().user().id, "u9");
    connect(&s, json!({"k": 2})).await.expect("admitted");
    assert_eq!(b.calls(), 2);
    // Later hooks carry the user and the backend's info.
    let mut one = one;
    b.set(Mode::Json(json!({})));
    assert!(matches!(
        one.apply(s.ctx(), join("r")).await,
        Reply::Joined(_)
    ));
    let last = b.last.lock().unwrap().clone();
    assert_eq!(last["hook"], "join");
    assert_eq!(last["room"], "r");
    assert_eq!(last["user"]["info"], json!({"tier": 2}));
    assert_eq!(last["session"]["transport"], "ws");
    assert_eq!(last["node"], "node-1");
}

#[tokio::test]
async fn unusable_connect_answers_are_refused() {
    let (b, url) = Backend::start(Mode::Json(json!({"user": {"id": "two words"}}))).await;
    let mut a = args(&url, &[HookKind::Connect]);
    a.hook_cache_ttl = Duration::ZERO;
    let s = server(&a).await;
    assert_eq!(
        connect(&s, Value::Null).await.err().unwrap().code,
        "HOOK_UNAVAILABLE"
    );
    b.set(Mode::Json(json!({"user": {"id": "u"}, "expires_at": 1})));
    assert_eq!(
        connect(&s, Value::Null).await.err().unwrap().code,
        "AUTH_EXPIRED"
    );
    b.set(Mode::Json(json!({"rooms": "lobby"})));
    assert_eq!(
        connect(&s, Value::Null).await.err().unwrap().code,
        "HOOK_UNAVAILABLE"
    );
    b.set(Mode::Json(
        json!({"error": {"code": "nope", "message": "no"}}),
    ));
    assert_eq!(connect(&s, Value::Null).await.err().unwrap().code, "NOPE");
    // A guest: admitted without a user.
    b.set(Mode::Json(json!({})));
    let guest = connect(&s, Value::Null).await.expect("guest");
    assert!(!guest.is_authenticated());
    assert_eq!(
        s.hub.stats().connections_total(),
        1,
        "refused clients hold no session"
    );
}
