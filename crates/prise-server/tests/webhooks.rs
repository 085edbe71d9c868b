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
