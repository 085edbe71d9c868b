//! Webhooks against a receiver on a real socket: the hub's events arrive in
//! order, signed, exactly once per transition although the receiver answers
//! 500 to the first attempts (the batch is retried); `GET /api/events` reads
//! the outbox; and with the SQLite store, events the receiver could not take
//! before a restart are delivered after it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use prise_testkit::server::*;
use prise_testkit::*;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "webhook-test-secret";
const API_KEY: &str = "webhook-test-key";

#[derive(Clone, Default)]
struct Receiver {
    /// Attempts still to refuse with a 500.
    refuse: Arc<Mutex<usize>>,
    attempts: Arc<Mutex<usize>>,
    accepted: Arc<Mutex<Vec<Value>>>,
    bad_signatures: Arc<Mutex<usize>>,
}

fn signature(body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn take(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *r.attempts.lock().unwrap() += 1;
    let signed = headers
        .get("x-prise-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == signature(&body));
    if !signed {
        *r.bad_signatures.lock().unwrap() += 1;
    }
    {
        let mut refuse = r.refuse.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let events: Vec<Value> = serde_json::from_slice(&body).unwrap();
    r.accepted.lock().unwrap().extend(events);
    StatusCode::OK
}

impl Receiver {
    async fn start(refuse: usize) -> (Self, String) {
        let r = Self::default();
        *r.refuse.lock().unwrap() = refuse;
        let app = axum::Router::new()
            .route("/events", axum::routing::post(take))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().unwrap().clone()
    }

    /// Waits until `n` events were accepted.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        tokio::time::timeout(WAIT, async {
            loop {
                let got = self.accepted();
                if got.len() >= n {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} events; got {:?}", self.accepted()))
    }
}

/// Each event as `kind room-or-reason`.
fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = e["event"].as_str().unwrap();
            let what = e["room"].as_str().or(e["reason"].as_str()).unwrap_or("");
            format!("{kind} {what}")
        })
        .collect()
}

fn flags(url: &str) -> Vec<String> {
    [
        "--webhook-url",
        url,
        "--webhook-secret",
        SECRET,
        "--webhook-timeout",
        "1s",
        "--api-key",
        API_KEY,
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test]
async fn events_arrive_once_in_order_through_refused_attempts() {
    let (receiver, url) = Receiver::start(2).await;
    let f = flags(&url);
    let server = spawn_server(&f.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut ann = server.line().await;
    ann.expect("NICK ann", "OK ann").await;
    ann.expect("JOIN lobby", "OK lobby").await;
    let mut bob = server.line().await;
    bob.expect("NICK bob", "OK bob").await;
    bob.expect("JOIN lobby", "OK lobby").await;
    ann.expect("LEAVE lobby", "OK lobby").await;
    ann.expect("QUIT", "BYE").await;
    bob.expect("QUIT", "BYE").await;
    let events = receiver.wait_for(8).await;
    assert_eq!(
        summary(&events),
        [
            "room_occupied lobby",
            "member_joined lobby",
            "member_joined lobby",
            "member_left lobby",
            "session_closed client",
            "member_left lobby",
            "room_vacated lobby",
            "session_closed client",
        ]
    );
    assert_eq!(events[1]["user"]["name"], "ann");
    assert_eq!(events[2]["user"]["name"], "bob");
    assert_eq!(events[4]["transport"], "tcp");
    // Exactly once each, in order: ids strictly increase.
    let ids: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(
        events
            .iter()
            .all(|e| e["id"].as_str() == Some(&*e["seq"].to_string()))
    );
    assert!(
        *receiver.attempts.lock().unwrap() >= 3,
        "the refused batch was retried"
    );
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    // The outbox, for a consumer that was down: everything, then pages.
    let all = HttpRequest::get("/api/events?after=0")
        .header("x-api-key", API_KEY)
        .send(server.bound.http)
        .await;
    assert_eq!(all.status, 200, "{}", all.text());
    let listed = all.json()["events"].as_array().unwrap().clone();
    assert_eq!(summary(&listed), summary(&events));
    let after = events[3]["id"].as_str().unwrap();
    let page = HttpRequest::get(&format!("/api/events?after={after}&limit=2"))
        .header("x-api-key", API_KEY)
        .send(server.bound.http)
        .await
        .json();
    assert_eq!(page["events"][0]["seq"], events[4]["seq"]);
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], events[5]["id"]);
    let refused = HttpRequest::get("/api/events")
        .send(server.bound.http)
        .await;
    assert_eq!(refused.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn undelivered_events_survive_a_restart_on_sqlite() {
    let dir = TestDir::new();
    // Nothing listens there: every attempt fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/events", dead.local_addr().unwrap());
    drop(dead);
    let f = flags(&dead_url);
    let server = spawn_sqlite_server(
        dir.path(),
        &f.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let mut c = server.line().await;
    c.expect("JOIN kept", "OK kept").await;
    c.expect("QUIT", "BYE").await;
    // The three events are in the outbox before they are sent.
    tokio::time::timeout(WAIT, async {
        loop {
            let r = HttpRequest::get("/api/events")
                .header("x-api-key", API_KEY)
                .send(server.bound.http)
                .await
                .json();
            if r["events"].as_array().is_some_and(|e| e.len() >= 4) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("events in the outbox");
    server.stop().await;

    let (receiver, url) = Receiver::start(0).await;
    let f = flags(&url);
    let again = spawn_sqlite_server(
        dir.path(),
        &f.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let events = receiver.wait_for(4).await;
    assert_eq!(
        summary(&events[..4]),
        [
            "room_occupied kept",
            "member_joined kept",
            "member_left kept",
            "room_vacated kept"
        ]
    );
    again.stop().await;
}

/// The events of `events` once each (a batch sent again after a lease
/// handover may repeat some), in order of `seq`.
fn distinct(events: &[Value]) -> Vec<Value> {
    let mut seen = std::collections::BTreeMap::new();
    for e in events {
        seen.entry(e["seq"].as_u64().unwrap())
            .or_insert_with(|| e.clone());
    }
    seen.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_emit_each_transition_once_and_reap_a_dead_nodes_members() {
    let (receiver, url) = Receiver::start(2).await;
    let redis = RedisServer::start();
    let mut f = flags(&url);
    f.extend(["--jwt-secret".to_owned(), SECRET.to_owned()]);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::spawn(&redis.url(), "hooks:", &f).await);
    }
    let token = |sub: &str| {
        let exp = prise_testkit::jwt::now() + 600;
        prise_testkit::jwt::hs256(SECRET, &serde_json::json!({"sub": sub, "exp": exp}))
    };
    let mut alice0 = nodes[0].line().await;
    alice0
        .expect(&format!("AUTH {}", token("alice")), "OK")
        .await;
    alice0.expect("JOIN lobby", "OK lobby").await;
    let mut alice1 = nodes[1].line().await;
    alice1
        .expect(&format!("AUTH {}", token("alice")), "OK")
        .await;
    alice1.expect("JOIN lobby", "OK lobby").await;
    let mut bob = nodes[2].line().await;
    bob.expect(&format!("AUTH {}", token("bob")), "OK").await;
    bob.expect("JOIN lobby", "OK lobby").await;
    // Alice still has a session on node 1: no member_left yet.
    alice0.expect("QUIT", "BYE").await;
    // Bob's node dies: another node reaps its members once its heartbeat expires.
    nodes[2].kill();
    let joined_left = |events: &[Value]| -> Vec<String> {
        distinct(events)
            .iter()
            .filter(|e| e["event"] != "session_closed")
            .map(|e| {
                let who = e["user"]["id"].as_str().unwrap_or("");
                format!("{} {}", e["event"].as_str().unwrap(), who)
            })
            .collect()
    };
    tokio::time::timeout(WAIT * 2, async {
        while joined_left(&receiver.accepted()).len() < 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("bob's member_left; got {:?}", receiver.accepted()));
    alice1.expect("QUIT", "BYE").await;
    tokio::time::timeout(WAIT * 2, async {
        while joined_left(&receiver.accepted()).len() < 6 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the last events; got {:?}", receiver.accepted()));
    let events = distinct(&receiver.accepted());
    assert_eq!(
        joined_left(&events),
        [
            "room_occupied ",
            "member_joined alice",
            "member_joined bob",
            "member_left bob",
            "member_left alice",
            "room_vacated ",
        ]
    );
    let closed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "session_closed")
        .collect();
    assert!(
        closed
            .iter()
            .all(|e| e["user"]["id"] == "alice" && e["reason"] == "client"),
        "{closed:?}"
    );
    assert!(
        *receiver.attempts.lock().unwrap() >= 3,
        "the refused batches were retried"
    );
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    // Every node reads the same outbox.
    let listed = HttpRequest::get("/api/events?after=0&limit=1000")
        .header("x-api-key", API_KEY)
        .send(nodes[1].bound.http)
        .await
        .json();
    let seqs: Vec<u64> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(seqs.len() >= events.len());
}

#[tokio::test]
async fn a_session_ended_by_the_control_api_is_closed_as_kicked() {
    let (receiver, url) = Receiver::start(0).await;
    let mut f = flags(&url);
    f.extend(["--jwt-secret".to_owned(), SECRET.to_owned()]);
    let server = spawn_server(&f.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let exp = prise_testkit::jwt::now() + 600;
    let token = prise_testkit::jwt::hs256(SECRET, &serde_json::json!({"sub": "carl", "exp": exp}));
    let mut carl = server.line().await;
    carl.expect(&format!("AUTH {token}"), "OK").await;
    carl.expect("JOIN desk", "OK desk").await;
    let r = HttpRequest::post("/api/disconnect", r#"{"user": "carl", "reason": "enough"}"#)
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .send(server.bound.http)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = receiver.wait_for(5).await;
    assert_eq!(
        summary(&events),
        [
            "room_occupied desk",
            "member_joined desk",
            "member_left desk",
            "room_vacated desk",
            "session_closed kicked",
        ]
    );
    assert_eq!(events[4]["user"]["id"], "carl");
    server.stop().await;
}
