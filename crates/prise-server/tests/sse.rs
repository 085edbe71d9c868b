//! Server-Sent Events at `/sse`, read by a raw HTTP client: presence and
//! messages published over TCP, resuming with `Last-Event-ID` after a
//! reconnect and after a restart on the SQLite store, the `gap` event,
//! keep-alives, token expiry, a slow reader, and every refusal.

use prise_testkit::jwt::{hs256, now};
use prise_testkit::server::*;
use prise_testkit::sse::{Refused, SseClient};
use prise_testkit::*;
use serde_json::{Value, json};

const SECRET: &str = "test-secret-0123456789";

fn token(sub: &str, ttl: i64, rooms: Option<&[&str]>) -> String {
    let exp = (now() as i64 + ttl) as u64;
    let mut c = json!({"sub": sub, "name": sub, "exp": exp});
    if let Some(r) = rooms {
        c["rooms"] = json!(r);
    }
    hs256(SECRET, &c)
}

/// A TCP client in `rooms`.
async fn publisher(server: &TestServer, rooms: &[&str]) -> LineClient {
    let mut c = server.line().await;
    for r in rooms {
        c.ask(&format!("JOIN {r}"), "OK").await;
    }
    c
}

async fn say(c: &mut LineClient, room: &str, text: &str) {
    let ok = c.ask(&format!("SAY {room} {text}"), "OK").await;
    assert!(ok.starts_with("OK "), "{ok}");
}

/// The next message: its seq, room and content.
async fn message(s: &mut SseClient) -> (u64, String, Value) {
    let e = s.message().await;
    let m = e.json();
    (
        e.seq(),
        m["roomId"].as_str().unwrap().to_owned(),
        m["content"].clone(),
    )
}

#[tokio::test]
async fn a_stream_shows_presence_and_messages_published_over_tcp() {
    let server = spawn_server(&[]).await;
    let addr = server.bound.http;
    let mut s = SseClient::open(addr, "/sse?room=a&room=b", &[]).await;
    assert_eq!(s.header("cache-control"), Some("no-store"));
    let first = s.block().await.unwrap();
    assert_eq!(first.retry, Some(1000));
    let ready = s.next().await;
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.seq(), 0);
    let data = ready.json();
    assert_eq!(data["rooms"][0]["room"], "a");
    assert_eq!(data["rooms"][1]["room"], "b");
    assert_eq!(data["resumed"], false);
    let me = data["user"]["id"].clone();

    let mut tcp = publisher(&server, &["b"]).await;
    let joined = s.until("joined").await.json();
    assert_eq!(joined["room"], "b");
    assert_ne!(joined["user"]["id"], me);
    tcp.send("TYPING b on").await;
    let typing = s.until("typing").await;
    assert_eq!(typing.id, None);
    assert_eq!(typing.json()["typing"], true);

    say(&mut tcp, "b", "hello there").await;
    let e = s.message().await;
    assert_eq!(e.id.as_deref(), Some("1"));
    let m = e.json();
    assert_eq!(m["roomId"], "b");
    assert_eq!(m["content"], "hello there");
    assert_eq!(m["offset"], 1);
    tcp.ask("JOIN a", "OK").await;
    say(&mut tcp, "a", "second").await;
    assert_eq!(message(&mut s).await, (2, "a".into(), json!("second")));
    tcp.send("QUIT").await;
    let left = s.until("left").await.json();
    assert_eq!(left["user"], joined["user"]);
    server.stop().await;
}

#[tokio::test]
async fn last_event_id_resumes_after_a_reconnect_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_sqlite_server(dir.path(), &[]).await;
    let addr = server.bound.http;
    let mut tcp = publisher(&server, &["a", "b", "c"]).await;
    say(&mut tcp, "c", "before, elsewhere").await;
    let mut s = SseClient::open(addr, "/sse?room=a&room=b", &[]).await;
    let ready = s.until("ready").await;
    assert_eq!(ready.seq(), 1);
    say(&mut tcp, "a", "one").await;
    say(&mut tcp, "b", "two").await;
    assert_eq!(message(&mut s).await, (2, "a".into(), json!("one")));
    assert_eq!(message(&mut s).await, (3, "b".into(), json!("two")));
    drop(s);

    // Missed while away, in two rooms and one it does not read.
    say(&mut tcp, "b", "three").await;
    say(&mut tcp, "c", "not for it").await;
    say(&mut tcp, "a", "five").await;
    let mut s = SseClient::open(addr, "/sse?room=a&room=b", &[("Last-Event-ID", "3")]).await;
    let ready = s.until("ready").await;
    assert_eq!(ready.id, None, "a resumed stream keeps the client's id");
    assert_eq!(ready.json()["resumed"], true);
    assert_eq!(message(&mut s).await, (4, "b".into(), json!("three")));
    assert_eq!(message(&mut s).await, (6, "a".into(), json!("five")));
    say(&mut tcp, "a", "live").await;
    assert_eq!(message(&mut s).await, (7, "a".into(), json!("live")));
    drop(s);
    say(&mut tcp, "b", "while away").await;
    drop(tcp);
    server.stop().await;

    let server = spawn_sqlite_server(dir.path(), &[]).await;
    let addr = server.bound.http;
    let mut s = SseClient::open(addr, "/sse?room=a&room=b", &[("Last-Event-ID", "7")]).await;
    assert_eq!(s.until("ready").await.json()["resumed"], true);
    assert_eq!(message(&mut s).await, (8, "b".into(), json!("while away")));
    let mut tcp = publisher(&server, &["a"]).await;
    say(&mut tcp, "a", "after the restart").await;
    assert_eq!(
        message(&mut s).await,
        (9, "a".into(), json!("after the restart"))
    );
    // The query form of the resume point, for pages that keep it.
    let mut q = SseClient::open(addr, "/sse?room=a&lastEventId=6", &[]).await;
    assert_eq!(message(&mut q).await.0, 7);
    assert_eq!(message(&mut q).await.0, 9);
    drop((s, q, tcp));
    server.stop().await;
}

#[tokio::test]
async fn a_resume_past_retention_or_from_another_history_is_a_gap() {
    let server = spawn_server(&["--retain-count", "2"]).await;
    let addr = server.bound.http;
    let mut tcp = publisher(&server, &["a"]).await;
    for i in 1..=5 {
        say(&mut tcp, "a", &format!("m{i}")).await;
    }
    let mut s = SseClient::open(addr, "/sse?room=a", &[("Last-Event-ID", "1")]).await;
    let gap = s.until("gap").await;
    assert_eq!(gap.json()["lastEventId"], 1);
    let ready = s.next().await;
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.seq(), 5, "the gap moves the client's id to now");
    say(&mut tcp, "a", "m6").await;
    assert_eq!(message(&mut s).await, (6, "a".into(), json!("m6")));

    // An id this hub never sent (its history was reset).
    let mut s = SseClient::open(addr, "/sse?room=a", &[("Last-Event-ID", "999")]).await;
    assert_eq!(s.next().await.event, "gap");
    assert_eq!(s.next().await.seq(), 6);
    // Within retention: no gap.
    let mut s = SseClient::open(addr, "/sse?room=a", &[("Last-Event-ID", "5")]).await;
    assert_eq!(s.next().await.event, "ready");
    assert_eq!(message(&mut s).await.0, 6);
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_comments_flow_while_the_rooms_are_quiet() {
    let server = spawn_server(&["--sse-keepalive", "100ms"]).await;
    let mut s = SseClient::open(server.bound.http, "/sse?room=quiet", &[]).await;
    loop {
        let b = s.block().await.expect("open");
        if b.comments.iter().any(|c| c == "keep-alive") {
            assert!(b.event.is_empty() && b.data.is_empty());
            break;
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_stream_ends_with_an_error_event_when_the_token_expires() {
    let server = spawn_server(&["--jwt-secret", SECRET, "--anonymous", "deny"]).await;
    let addr = server.bound.http;
    let auth = format!("Bearer {}", token("alice", 2, None));
    let mut s = SseClient::open(addr, "/sse?room=a", &[("Authorization", &auth)]).await;
    let ready = s.until("ready").await.json();
    assert_eq!(ready["user"], json!({"id": "alice", "name": "alice"}));
    let e = s.until("error").await;
    assert_eq!(e.json()["code"], "AUTH_EXPIRED");
    assert!(s.block().await.is_none(), "the stream ends after the error");
    server.stop().await;
}

#[tokio::test]
async fn refusals_are_statuses_with_a_clear_body() {
    let server = spawn_server(&[
        "--jwt-secret",
        SECRET,
        "--anonymous",
        "deny",
        "--max-rooms-per-session",
        "2",
        "--allowed-origins",
        "http://app.example",
    ])
    .await;
    let addr = server.bound.http;
    let code = |r: &Refused| r.body["error"]["code"].as_str().unwrap().to_owned();
    let msg = |r: &Refused| r.body["error"]["message"].as_str().unwrap().to_owned();

    let t = token("rita", 300, Some(&["team-*"]));
    let r = SseClient::refused(addr, &format!("/sse?room=team-a&room=ops&token={t}"), &[]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "FORBIDDEN"));
    assert!(msg(&r).contains("room ops"), "{}", msg(&r));

    let r = SseClient::refused(addr, &format!("/sse?room=a&room=b&room=c&token={t}"), &[]).await;
    assert_eq!((r.status, code(&r).as_str()), (400, "TOO_MANY_ROOMS"));
    assert!(msg(&r).contains("at most 2 rooms"), "{}", msg(&r));

    let r = SseClient::refused(addr, "/sse?room=a", &[("Authorization", "Bearer x.y.z")]).await;
    assert_eq!((r.status, code(&r).as_str()), (401, "AUTH_FAILED"));
    let old = token("rita", -120, None);
    let r = SseClient::refused(addr, &format!("/sse?room=a&token={old}"), &[]).await;
    assert_eq!((r.status, code(&r).as_str()), (401, "AUTH_EXPIRED"));
    let r = SseClient::refused(addr, "/sse?room=a", &[]).await;
    assert_eq!((r.status, code(&r).as_str()), (401, "AUTH_REQUIRED"));

    let r = SseClient::refused(addr, &format!("/sse?token={t}"), &[]).await;
    assert_eq!((r.status, code(&r).as_str()), (400, "BAD_REQUEST"));
    let bad_name = format!("/sse?room=team-{}&token={t}", "x".repeat(200));
    let r = SseClient::refused(addr, &bad_name, &[]).await;
    assert_eq!((r.status, code(&r).as_str()), (400, "BAD_REQUEST"));
    let r = SseClient::refused(
        addr,
        &format!("/sse?room=team-a&token={t}"),
        &[("Last-Event-ID", "not-a-number")],
    )
    .await;
    assert_eq!(r.status, 400);

    // Origins as on /ws: a listed one is answered with CORS headers.
    let path = format!("/sse?room=team-a&token={t}");
    let r = SseClient::refused(addr, &path, &[("Origin", "http://evil.example")]).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "FORBIDDEN"));
    assert!(msg(&r).contains("origin"));
    let s = SseClient::open(addr, &path, &[("Origin", "http://app.example")]).await;
    assert_eq!(
        s.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let origin = [
        ("Origin", "http://app.example"),
        ("Access-Control-Request-Method", "GET"),
    ];
    let pre = SseClient::request(stream, "OPTIONS", "/sse", &origin).await;
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert!(
        pre.header("access-control-allow-headers")
            .unwrap()
            .contains("last-event-id")
    );
    drop(s);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_not_read_is_closed_as_a_slow_consumer() {
    let server = spawn_server(&["--queue-depth", "16", "--rate-messages", "0"]).await;
    // A tiny receive buffer, and nothing read after the headers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.bound.http).await.unwrap();
    let mut s = SseClient::request(stream, "GET", "/sse?room=busy", &[]).await;
    assert_eq!(s.status, 200);
    let mut tcp = publisher(&server, &["busy"]).await;
    let payload = "p".repeat(4000);
    let mut sent = 0;
    loop {
        let stats = http_get_json(&server, "/stats").await;
        if stats["slowConsumerDisconnects"] != 0 {
            break;
        }
        assert!(
            sent < 20_000,
            "no slow-consumer close after {sent} messages"
        );
        for _ in 0..50 {
            sent += 1;
            say(&mut tcp, "busy", &payload).await;
        }
    }
    // What was written before the close is still readable, then the
    // stream ends, the session already gone.
    let mut last = None;
    while let Some(b) = s.block().await {
        last = Some(b);
    }
    let last = last.expect("events before the end");
    assert!(
        last.event == "message" || last.json()["code"] == "SLOW_CONSUMER",
        "{last:?}"
    );
    assert_eq!(
        http_get_json(&server, "/stats").await["connections"]["sse"],
        0
    );
    server.stop().await;
}

async fn http_get_json(server: &TestServer, path: &str) -> Value {
    let r = prise_testkit::http::get(server.bound.http, path).await;
    serde_json::from_str(r.text()).unwrap()
}
