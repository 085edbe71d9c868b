//! The control API on one node, and client addresses behind a trusted
//! balancer, over real sockets: kicking a session on each transport,
//! server-side joins, idempotent and multi-room publishing, batches, the
//! session list; PROXY protocol headers and `X-Forwarded-For` believed only
//! from `--trust-proxy` peers.

use prise_proto::proxy_header::{Version, encode};
use prise_testkit::server::*;
use prise_testkit::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const KEY: (&str, &str) = ("Authorization", "Bearer k-1");

/// One API call: (status, JSON body).
async fn api(server: &TestServer, method: &str, path: &str, body: Value) -> (u16, Value) {
    let mut r = HttpRequest::new(method, path).headers(&[KEY]);
    if !body.is_null() {
        r = r.body(body.to_string());
    }
    let r = r.send(server.bound.http).await;
    (
        r.status,
        serde_json::from_str(r.text()).unwrap_or(Value::Null),
    )
}

/// The hub's sessions of `user`.
async fn sessions_of(server: &TestServer, user: &str) -> Vec<Value> {
    let (s, v) = api(
        server,
        "GET",
        &format!("/api/sessions?user={user}"),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["sessions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_session_is_told_why_on_every_transport() {
    let server = spawn_server(&["--api-key", "k-1"]).await;
    let mut tcp = server.line().await;
    tcp.ask("NICK alice", "OK").await;
    tcp.ask("JOIN lobby", "OK").await;
    let mut ws = server.ws().await;
    ws.send_json(json!({"type": "join", "room": "lobby", "name": "bob"}))
        .await;
    ws.until("ack").await;
    let mut other = server.line().await;
    other.ask("NICK carol", "OK").await;

    let tcp_id = {
        let (s, v) = api(&server, "GET", "/api/sessions?room=lobby", Value::Null).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["count"], 2);
        assert_eq!(v["complete"], true);
        let list = v["sessions"].as_array().unwrap();
        let alice = list.iter().find(|s| s["user"]["name"] == "alice").unwrap();
        assert_eq!(alice["transport"], "tcp");
        assert_eq!(alice["rooms"], json!(["lobby"]));
        assert!(alice["connectedAt"].as_u64().unwrap() > 0);
        assert_eq!(alice["queued"], 0);
        assert_eq!(
            alice["remote"].as_str().unwrap(),
            tcp.writer.local_addr().unwrap().to_string()
        );
        alice["id"].as_str().unwrap().to_owned()
    };

    // By session id, with a reason: an ERR line before BYE.
    let (s, v) = api(
        &server,
        "POST",
        "/api/disconnect",
        json!({"session": tcp_id, "reason": "maintenance window"}),
    )
    .await;
    assert_eq!((s, &v["disconnected"]), (200, &json!(1)), "{v}");
    assert_eq!(tcp.until("ERR").await, "ERR KICKED maintenance window");
    assert_eq!(tcp.until("BYE").await, "BYE kicked");
    assert!(tcp.closed().await);

    // By user: the WebSocket closes with 4003.
    let bob = sessions_of(&server, "").await;
    let bob_id = bob
        .iter()
        .find(|s| s["user"]["name"] == "bob")
        .map(|s| s["user"]["id"].as_str().unwrap().to_owned())
        .unwrap();
    let (s, v) = api(&server, "POST", "/api/disconnect", json!({"user": bob_id})).await;
    assert_eq!((s, &v["disconnected"]), (200, &json!(1)), "{v}");
    assert_eq!(ws.close_code().await, Some(4003));

    // Nobody else was touched.
    other.ask("PING x", "PONG x").await;

    // Refusals are 400s with a JSON error.
    for body in [
        json!({}),
        json!({"user": "a", "session": "b"}),
        json!({"user": "a", "reason": "x".repeat(300)}),
        json!({"user": "a", "bogus": 1}),
    ] {
        let (s, v) = api(&server, "POST", "/api/disconnect", body).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("BAD_REQUEST")));
    }
    let (s, _) = HttpRequest::post("/api/disconnect", r#"{"user":"a"}"#)
        .send(server.bound.http)
        .await
        .pipe(|r| (r.status, ()));
    assert_eq!(s, 401);
    server.stop().await;
}

/// `.pipe(f)`: applies `f` to a value (keeps the assertions above flat).
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_publish_idempotency_and_batches() {
    let server = spawn_server(&["--api-key", "k-1"]).await;
    let mut dave = server.line().await;
    dave.ask("NICK dave", "OK").await;
    let dave_id = sessions_of(&server, "").await[0]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A server-side join: messages of the room reach the session.
    let (s, v) = api(
        &server,
        "POST",
        "/api/subscribe",
        json!({"user": dave_id, "room": "alerts"}),
    )
    .await;
    assert_eq!((s, &v["subscribed"]), (200, &json!(1)), "{v}");
    let (s, v) = api(
        &server,
        "POST",
        "/api/subscribe",
        json!({"user": dave_id, "room": "bad room"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // The same idempotency key twice: one message, the same answer.
    let body = json!({"room": "alerts", "content": "once", "idempotency_key": "evt-1"});
    let (s1, first) = api(&server, "POST", "/api/publish", body.clone()).await;
    let (s2, again) = api(&server, "POST", "/api/publish", body).await;
    assert_eq!((s1, s2), (200, 200), "{first} {again}");
    assert_eq!(first, again);
    assert_eq!(first["offset"], 1);
    let (s, v) = api(
        &server,
        "POST",
        "/api/publish",
        json!({"room": "alerts", "content": "x", "idempotency_key": "has space"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // Several rooms and the personal room in one publish, with an event name.
    let (s, v) = api(
        &server,
        "POST",
        "/api/publish",
        json!({"rooms": ["alerts", "other"], "user": dave_id, "content": "many", "event": "notice"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let rooms: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["room"].as_str().unwrap())
        .collect();
    let personal = format!("user:{dave_id}");
    assert_eq!(rooms, ["alerts", "other", personal.as_str()]);

    // A batch: publish, unsubscribe, publish again, one bad call.
    let (s, v) = api(
        &server,
        "POST",
        "/api/batch",
        json!({"calls": [
            {"call": "publish", "room": "alerts", "content": "last seen"},
            {"call": "unsubscribe", "user": dave_id, "room": "alerts"},
            {"call": "publish", "room": "alerts", "content": "not seen"},
            {"call": "explode"},
        ]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let statuses: Vec<u64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 400]);
    assert_eq!(v["results"][1]["body"]["unsubscribed"], 1);

    // What dave saw in alerts: each message once, nothing after the leave.
    assert_eq!(dave.until("MSG alerts").await, "MSG alerts 1 api once");
    let event = dave.until("EVENT alerts").await;
    assert!(event.starts_with("EVENT alerts 2 api notice"), "{event}");
    assert_eq!(dave.until("MSG alerts").await, "MSG alerts 3 api last seen");
    dave.send("PING end").await;
    loop {
        let l = dave.line().await.expect("a line");
        assert!(!l.contains("not seen"), "{l}");
        if l == "PONG end" {
            break;
        }
    }
    let (s, v) = api(
        &server,
        "GET",
        "/api/rooms/alerts/history?since=0",
        Value::Null,
    )
    .await;
    assert_eq!((s, v["messages"].as_array().map(Vec::len)), (200, Some(4)));

    // Deleting the history: nothing to read back, offsets go on.
    let (s, v) = api(&server, "DELETE", "/api/rooms/alerts/history", Value::Null).await;
    assert_eq!((s, &v["deleted"]), (200, &json!(4)), "{v}");
    let (_, v) = api(
        &server,
        "GET",
        "/api/rooms/alerts/history?since=0",
        Value::Null,
    )
    .await;
    assert_eq!(
        (&v["messages"], &v["complete"]),
        (&json!([]), &json!(false)),
        "{v}"
    );
    let (_, v) = api(
        &server,
        "POST",
        "/api/publish",
        json!({"room": "alerts", "content": "fresh"}),
    )
    .await;
    assert_eq!(v["offset"], 5, "{v}");
    let (s, _) = api(
        &server,
        "DELETE",
        "/api/rooms/bad%20room/history",
        Value::Null,
    )
    .await;
    assert_eq!(s, 400);
    server.stop().await;
}

/// Every session, asked through a PROXY header from an address of its own
/// each time (so the asking never counts against a per-IP limit a test
/// is exercising).
async fn listed(server: &TestServer) -> Vec<Value> {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let me = SocketAddr::from(([198, 18, 0, n], 9));
    let s = proxied(server.bound.http, Version::V2, me).await;
    let r = HttpRequest::get("/api/sessions")
        .headers(&[KEY])
        .send_on(s)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["sessions"].as_array().cloned().unwrap_or_default()
}

/// Waits (bounded) until `list` shows a session from `remote`.
async fn wait_for_session<'a, F, Fut>(server: &'a TestServer, remote: &str, list: F)
where
    F: Fn(&'a TestServer) -> Fut,
    Fut: std::future::Future<Output = Vec<Value>>,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let all = list(server).await;
        if all.iter().any(|s| s["remote"] == remote) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session from {remote}: {all:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A connection to `addr` from a trusted balancer that first writes a
/// PROXY header naming `client`.
async fn proxied(addr: SocketAddr, version: Version, client: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&encode(version, client, addr)).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addresses_come_from_trusted_proxies_only() {
    let server = spawn_server(&[
        "--api-key",
        "k-1",
        "--trust-proxy",
        "127.0.0.1/32",
        "--max-connections-per-ip",
        "2",
    ])
    .await;
    let alice: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let bob: SocketAddr = "[2001:db8::9]:41000".parse().unwrap();

    // TCP with v2, then v1: the hub sees the clients, and limits them.
    let s = proxied(server.bound.tcp, Version::V2, alice).await;
    let mut a = LineClient::from_stream(s).hello(HUB_GREETING).await;
    a.ask("NICK alice", "OK").await;
    let s = proxied(server.bound.tcp, Version::V1, bob).await;
    let mut b = LineClient::from_stream(s).hello(HUB_GREETING).await;
    b.ask("NICK bob", "OK").await;
    let s = proxied(server.bound.tcp, Version::V1, alice).await;
    let _a2 = LineClient::from_stream(s).hello(HUB_GREETING).await;
    let s = proxied(server.bound.tcp, Version::V2, alice).await;
    let mut refused = LineClient::from_stream(s);
    let first = refused.line().await.unwrap();
    assert!(
        first.starts_with("ERR RATE_LIMITED"),
        "a third connection of alice is over her limit of two: {first}"
    );

    let all = listed(&server).await;
    let remote = |name: &str| {
        all.iter()
            .find(|s| s["user"]["name"] == name)
            .and_then(|s| s["remote"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(remote("alice"), Some(alice.to_string()));
    assert_eq!(remote("bob"), Some(bob.to_string()));

    // On the TCP listener a trusted peer must send a header.
    let mut plain = LineClient::connect(server.bound.tcp).await;
    plain.send("PROXY garbage, not a header").await;
    assert!(plain.closed().await);

    // HTTP: X-Forwarded-For from the trusted peer, then a PROXY header.
    let (_forwarded, head) = raw_upgrade(
        server.bound.http,
        "/ws",
        "X-Forwarded-For: 192.0.2.50, 127.0.0.1\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    wait_for_session(&server, "192.0.2.50:0", listed).await;
    let mut ws = WsClient::handshake(
        {
            let mut s = TcpStream::connect(server.bound.http).await.unwrap();
            s.write_all(&encode(
                Version::V1,
                "198.51.100.2:2".parse().unwrap(),
                server.bound.http,
            ))
            .await
            .unwrap();
            s
        },
        &format!("ws://{}/ws", server.bound.http),
        prise_ws::WsConfig::default(),
    )
    .await
    .unwrap();
    ws.send_json(json!({"type": "join", "room": "r", "name": "carol"}))
        .await;
    ws.until("ack").await;
    let all = listed(&server).await;
    let carol = all.iter().find(|s| s["user"]["name"] == "carol").unwrap();
    assert_eq!(carol["remote"], "198.51.100.2:2");
    assert_eq!(carol["transport"], "ws");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peers_cannot_name_another_address() {
    let server = spawn_server(&["--api-key", "k-1", "--trust-proxy", "10.0.0.0/8"]).await;
    // A PROXY header from an untrusted peer is not read: it is a command
    // line like any other, and the hub answers it as one.
    let mut c = LineClient::connect(server.bound.tcp)
        .await
        .hello(HUB_GREETING)
        .await;
    c.send("PROXY TCP4 203.0.113.1 127.0.0.1 1 2").await;
    assert!(c.until("ERR").await.starts_with("ERR UNKNOWN_COMMAND"));
    c.ask("NICK mallory", "OK").await;
    // Nor X-Forwarded-For on HTTP.
    let (_ws, head) = raw_upgrade(
        server.bound.http,
        "/ws",
        "X-Forwarded-For: 203.0.113.99\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mine = _ws.local_addr().unwrap().to_string();
    wait_for_session(&server, &mine, |s| sessions_of(s, "")).await;
    for s in sessions_of(&server, "").await {
        let remote: SocketAddr = s["remote"].as_str().unwrap().parse().unwrap();
        assert!(remote.ip().is_loopback(), "{s}");
    }
    server.stop().await;
}

/// One Engine.IO polling request: (status, body).
async fn poll(server: &TestServer, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = HttpRequest::new(method, path)
        .header("Content-Type", "text/plain;charset=UTF-8")
        .body(body)
        .send(server.bound.http)
        .await;
    (r.status, r.text().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_socket_io_client_gets_an_error_and_a_namespace_disconnect() {
    let server = spawn_server(&["--api-key", "k-1"]).await;
    let (s, open) = poll(&server, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
    assert_eq!(s, 200, "{open}");
    let open: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let path = format!(
        "/socket.io/?EIO=4&transport=polling&sid={}",
        open["sid"].as_str().unwrap()
    );
    let (s, _) = poll(&server, "POST", &path, r#"40{"name":"erin"}"#).await;
    assert_eq!(s, 200);
    let (_, connected) = poll(&server, "GET", &path, "").await;
    assert!(connected.starts_with("40"), "{connected}");

    let erin = sessions_of(&server, "").await;
    let erin = erin.iter().find(|s| s["transport"] == "socketio").unwrap();
    let (s, v) = api(
        &server,
        "POST",
        "/api/disconnect",
        json!({"user": erin["user"]["id"], "reason": "spam"}),
    )
    .await;
    assert_eq!((s, &v["disconnected"]), (200, &json!(1)), "{v}");

    // Long-poll until the namespace disconnect; the error comes first.
    let mut packets = Vec::new();
    while !packets.iter().any(|p: &String| p == "41") {
        let (s, body) = poll(&server, "GET", &path, "").await;
        assert_eq!(s, 200, "{body}");
        packets.extend(body.split('\u{1e}').map(str::to_owned));
    }
    let error = packets
        .iter()
        .position(|p| p.starts_with("42[\"error\"") && p.contains("KICKED") && p.contains("spam"))
        .unwrap_or_else(|| panic!("no KICKED error in {packets:?}"));
    let gone = packets.iter().position(|p| p == "41").unwrap();
    assert!(error < gone, "{packets:?}");
    // The Engine.IO session itself stays until the client closes it.
    let (s, _) = poll(&server, "POST", &path, "1").await;
    assert_eq!(s, 200);
    server.stop().await;
}
