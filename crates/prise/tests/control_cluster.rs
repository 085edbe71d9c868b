//! The control API of three `prise serve` nodes over a real `redis-server`,
//! with `prise proxy --proxy-protocol v2` processes in front of one node's
//! listeners: a user's sessions ended on every node, server-side joins,
//! idempotent publishing and batches across nodes, and the session list and
//! per-IP limits with the clients' own addresses behind the balancer.
//!
//! Every address is on loopback; clients that must look distinct bind
//! 127.0.0.x source addresses. 127.0.0.1 (the proxies, and the nodes, which
//! are exempt from per-IP limits as cluster peers) is the trusted balancer.

use prise_testkit::jwt::{hs256, now};
use prise_testkit::server::{HUB_GREETING, Node, RedisServer, hub_ws};
use prise_testkit::{ChildProcess, HttpRequest, LineClient, WAIT};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

const SECRET: &str = "cluster-secret-0123456789";
const API_KEY: &str = "ops-key";

fn token(sub: &str) -> String {
    hs256(
        SECRET,
        &json!({"sub": sub, "name": sub, "exp": now() + 3600}),
    )
}

fn src(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// `prise proxy` sending PROXY v2 to `backend`, and where it listens.
fn proxy(backend: SocketAddr) -> (ChildProcess, SocketAddr) {
    let p = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_prise"))
            .args(["proxy", "--listen", "127.0.0.1:0", "--check", "none"])
            .args(["--proxy-protocol", "v2", "--backend"])
            .arg(backend.to_string())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .with_wait(WAIT);
    let line = p.stderr_after("proxy listening");
    // Drop colour codes, then take `listen=ADDR`.
    let mut plain = String::new();
    let mut esc = false;
    for ch in line.chars() {
        match (esc, ch) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    let addr = plain
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .unwrap_or_else(|| panic!("no listen= in {line:?}"));
    (p, addr.parse().expect("proxy address"))
}

/// A line client from `from` to `addr`, authenticated as `user`.
async fn line_as(addr: SocketAddr, from: IpAddr, user: &str) -> LineClient {
    let mut c = LineClient::connect_from(addr, from)
        .await
        .hello(HUB_GREETING)
        .await;
    c.ask(&format!("AUTH {}", token(user)), "OK").await;
    c
}

/// One API call over a connection from `from` to `addr`: (status, body).
async fn api(
    addr: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(from, 0)).expect("bind");
    let stream = sock.connect(addr).await.expect("connect");
    let mut r = HttpRequest::new(method, path).header("X-API-Key", API_KEY);
    if !body.is_null() {
        r = r.body(body.to_string());
    }
    let r = r.send_on(stream).await;
    (
        r.status,
        serde_json::from_str(r.text()).unwrap_or(Value::Null),
    )
}

/// Polls `/readyz` (bounded by WAIT) until it answers 200.
async fn wait_ready(addr: SocketAddr) {
    let deadline = std::time::Instant::now() + WAIT;
    while prise_testkit::http::get(addr, "/readyz").await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "{addr} never ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_obey_the_control_api_behind_a_proxy() {
    let redis = RedisServer::start();
    let url = redis.url();
    let flags = [
        "--api-key",
        API_KEY,
        "--jwt-secret",
        SECRET,
        "--trust-proxy",
        "127.0.0.1",
        "--max-connections-per-ip",
        "2",
    ];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::spawn(&url, "ctl:", &flags).await);
    }
    // Every node subscribed to the cluster's channel before any call.
    for n in &nodes {
        wait_ready(n.bound.http).await;
    }
    let (_tcp_proxy, tcp_front) = proxy(nodes[0].bound.tcp);
    let (_http_proxy, http_front) = proxy(nodes[0].bound.http);

    // alice on every node: through the proxy, by WebSocket, by TCP.
    let mut alice0 = line_as(tcp_front, src(2), "alice").await;
    let mut alice1 = hub_ws(nodes[1].bound.http, &format!("?token={}", token("alice"))).await;
    alice1.until("auth_success").await;
    let mut alice2 = line_as(nodes[2].bound.tcp, src(3), "alice").await;
    let mut bob = line_as(nodes[1].bound.tcp, src(4), "bob").await;

    // Per-IP limits hold behind the proxy: 127.0.0.2 has one more slot,
    // then is refused, while another client still gets in.
    let _second = line_as(tcp_front, src(2), "carol").await;
    let mut third = LineClient::connect_from(tcp_front, src(2)).await;
    let refusal = third.line().await.unwrap_or_default();
    assert!(refusal.starts_with("ERR RATE_LIMITED"), "{refusal:?}");
    let _other = line_as(tcp_front, src(5), "dave").await;

    // The session list (asked through the HTTP proxy) shows the client's
    // own address, on every node.
    let (s, v) = api(
        http_front,
        src(6),
        "GET",
        "/api/sessions?user=alice",
        Value::Null,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["count"], 3, "{v}");
    let remotes: Vec<&str> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["remote"].as_str().unwrap())
        .collect();
    let behind_proxy = alice0.writer.local_addr().unwrap().to_string();
    assert!(
        remotes.contains(&behind_proxy.as_str()),
        "{remotes:?} lacks {behind_proxy}"
    );
    let direct = alice2.writer.local_addr().unwrap().to_string();
    assert!(
        remotes.contains(&direct.as_str()),
        "{remotes:?} lacks {direct}"
    );

    // One call on node 2 ends alice's sessions on all three nodes.
    let (s, v) = api(
        nodes[2].bound.http,
        src(1),
        "POST",
        "/api/disconnect",
        json!({"user": "alice", "reason": "account closed"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["disconnected"].as_u64(), v["nodes"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(alice0.until("ERR").await, "ERR KICKED account closed");
    assert_eq!(alice0.until("BYE").await, "BYE kicked");
    assert_eq!(alice1.close_code().await, Some(4003));
    assert_eq!(alice2.until("ERR").await, "ERR KICKED account closed");
    bob.ask("PING still-here", "PONG still-here").await;
    let (_, v) = api(
        http_front,
        src(6),
        "GET",
        "/api/sessions?user=alice",
        Value::Null,
    )
    .await;
    assert_eq!(v["count"], 0, "{v}");

    // bob (on node 1) joins a room by a call to node 0.
    let (s, v) = api(
        nodes[0].bound.http,
        src(1),
        "POST",
        "/api/subscribe",
        json!({"user": "bob", "room": "ops"}),
    )
    .await;
    assert_eq!((s, v["subscribed"].as_u64()), (200, Some(1)), "{v}");

    // The same idempotency key on two nodes: one message, one answer.
    let body = json!({"room": "ops", "content": "deploy", "idempotency_key": "deploy-7"});
    let (s0, first) = api(
        nodes[0].bound.http,
        src(1),
        "POST",
        "/api/publish",
        body.clone(),
    )
    .await;
    let (s2, again) = api(nodes[2].bound.http, src(1), "POST", "/api/publish", body).await;
    assert_eq!((s0, s2), (200, 200), "{first} {again}");
    assert_eq!(first, again);

    // A batch on node 1: a publish and bob's leave; then one he misses.
    let (s, v) = api(
        nodes[1].bound.http,
        src(1),
        "POST",
        "/api/batch",
        json!({"calls": [
            {"call": "publish", "room": "ops", "content": "after"},
            {"call": "unsubscribe", "user": "bob", "room": "ops"},
            {"call": "publish", "room": "ops", "content": "unseen"},
        ]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][1]["body"]["unsubscribed"], 1, "{v}");
    assert_eq!(bob.until("MSG ops").await, "MSG ops 1 api deploy");
    assert_eq!(bob.until("MSG ops").await, "MSG ops 2 api after");
    bob.send("PING end").await;
    loop {
        let l = bob.line().await.expect("a line");
        assert!(!l.starts_with("MSG ops"), "{l}");
        if l == "PONG end" {
            break;
        }
    }

    // History deleted through node 2 is gone for node 0 as well.
    let (s, v) = api(
        nodes[2].bound.http,
        src(1),
        "DELETE",
        "/api/rooms/ops/history",
        Value::Null,
    )
    .await;
    assert_eq!((s, v["deleted"].as_u64()), (200, Some(3)), "{v}");
    let (_, v) = api(
        nodes[0].bound.http,
        src(1),
        "GET",
        "/api/rooms/ops/history?since=0",
        Value::Null,
    )
    .await;
    assert_eq!(v["messages"], json!([]), "{v}");

    // One session by its id: listed by node 0, held by node 1, ended by node 2.
    let (_, v) = api(
        nodes[0].bound.http,
        src(1),
        "GET",
        "/api/sessions?user=bob",
        Value::Null,
    )
    .await;
    let id = v["sessions"][0]["id"]
        .as_str()
        .expect("bob's session id")
        .to_owned();
    let (s, v) = api(
        nodes[2].bound.http,
        src(1),
        "POST",
        "/api/disconnect",
        json!({"session": id}),
    )
    .await;
    assert_eq!((s, v["disconnected"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(
        bob.until("ERR").await,
        "ERR KICKED disconnected by the server"
    );
    drop(nodes);
}
