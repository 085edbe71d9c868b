//! Socket.IO long-polling across three nodes of a real `redis-server`,
//! without sticky sessions: every request of one session goes to whichever
//! node the test picks, as a round-robin balancer would send it.

mod common;

use common::node::Node;
use common::{LineClient, WAIT, ws_send, ws_until};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prise_hub::testing::RedisServer;
use prise_ws::Message;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::TcpStream;

const SEP: char = '\u{1e}';

/// One HTTP/1.1 request on a fresh connection: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, body, &[]).await
}

/// As [`http`], with extra headers.
async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "text/plain;charset=UTF-8");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .expect("request");
    let exchange = async {
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("answer in time")
}

/// A raw Engine.IO polling session, addressed to any node per request.
struct Polling {
    sid: String,
    /// Packets received and not yet consumed.
    inbox: Vec<String>,
}

impl Polling {
    async fn open(node: &Node) -> Polling {
        let (status, body) = http(
            node.bound.http,
            "GET",
            "/socket.io/?EIO=4&transport=polling",
            "",
        )
        .await;
        assert_eq!(status, 200, "handshake: {body}");
        let open: Value = serde_json::from_str(body.strip_prefix('0').expect("open packet"))
            .expect("handshake json");
        Polling {
            sid: open["sid"].as_str().expect("sid").to_owned(),
            inbox: Vec::new(),
        }
    }

    fn path(&self) -> String {
        format!("/socket.io/?EIO=4&transport=polling&sid={}", self.sid)
    }

    async fn post(&self, node: &Node, packets: &[&str]) {
        let (status, body) = http(
            node.bound.http,
            "POST",
            &self.path(),
            &packets.join("\u{1e}"),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (200, "ok"),
            "POST on {}",
            node.bound.http
        );
    }

    /// Long-polls `node` until a packet starting with `prefix` arrives;
    /// returns it (packets before it stay in the inbox).
    async fn until(&mut self, node: &Node, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.inbox.iter().position(|p| p.starts_with(prefix)) {
                return self.inbox.remove(i);
            }
            assert!(Instant::now() < deadline, "no {prefix} packet in time");
            let (status, body) = http(node.bound.http, "GET", &self.path(), "").await;
            assert_eq!(status, 200, "GET on {}: {body}", node.bound.http);
            self.inbox.extend(body.split(SEP).map(str::to_owned));
        }
    }

    /// Long-polls `node` until the `message` event with this content arrives
    /// (other messages are skipped).
    async fn message(&mut self, node: &Node, content: &str) -> Value {
        loop {
            let m = args(&self.until(node, r#"42["message""#).await);
            if m[1]["content"] == content {
                return m;
            }
        }
    }
}

/// The text of the next WebSocket frame.
async fn next_text(ws: &mut common::Ws) -> String {
    let frame = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("frame in time")
        .expect("open")
        .expect("frame");
    frame.to_text().unwrap_or_default().to_owned()
}

/// The JSON array of a Socket.IO event or ack packet (`42[...]`, `431[...]`).
fn args(packet: &str) -> Value {
    let start = packet.find('[').expect("array");
    serde_json::from_str(&packet[start..]).expect("json")
}

fn member_count(ack: &Value) -> usize {
    ack[0]["members"].as_array().expect("members").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_session_is_served_by_every_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::spawn(&url, "poll:", &[])).collect();

    // Handshake on node 0; CONNECT on node 1; its answer polled on node 2.
    let mut a = Polling::open(&nodes[0]).await;
    a.post(&nodes[1], &["40"]).await;
    let connected = a.until(&nodes[2], "40").await;
    assert!(connected.contains("\"sid\""), "{connected}");

    // Join through node 2, ack polled through node 1.
    a.post(&nodes[2], &[r#"421["join","lobby"]"#]).await;
    let joined = args(&a.until(&nodes[1], "431").await);
    assert_eq!(joined[0]["room"], "lobby");
    assert_eq!(member_count(&joined), 1);

    // A line client on node 2 joins: presence is shared.
    let mut line =
        LineClient::from_stream(TcpStream::connect(nodes[2].bound.tcp).await.expect("tcp")).await;
    line.ask("NICK lina", "OK").await;
    assert!(
        line.ask("JOIN lobby", "OK").await.contains("members=2"),
        "the polling user is a member, seen from node 2"
    );

    // Publish with ack through node 1, ack polled through node 0.
    a.post(
        &nodes[1],
        &[r#"422["publish",{"room":"lobby","content":"from polling"}]"#],
    )
    .await;
    let ack = args(&a.until(&nodes[0], "432").await);
    assert_eq!(ack[0]["room"], "lobby");
    assert!(ack[0]["offset"].as_u64().is_some(), "{ack}");
    assert!(line.until("MSG ").await.ends_with("from polling"));

    // A message from the TCP client (node 2) and one from a WebSocket
    // client (node 1) reach the polling session through any node.
    line.send("SAY lobby from line").await;
    let m = a.message(&nodes[1], "from line").await;
    assert!(m[1]["offset"].as_u64().is_some(), "{m}");
    let mut ws = {
        let stream = TcpStream::connect(nodes[1].bound.http).await.expect("ws");
        let url = format!("ws://{}/ws", nodes[1].bound.http);
        prise_ws::connect(stream, &url, &Default::default(), Default::default())
            .await
            .expect("ws handshake")
            .0
    };
    ws_send(
        &mut ws,
        json!({"type": "join", "room": "lobby", "name": "wendy"}),
    )
    .await;
    ws_until(&mut ws, "ack").await;
    ws_send(
        &mut ws,
        json!({"type": "message", "room": "lobby", "content": "from ws"}),
    )
    .await;
    a.message(&nodes[0], "from ws").await;

    // A second polling session, held by node 1, shares the room.
    let mut b = Polling::open(&nodes[1]).await;
    b.post(&nodes[0], &["40"]).await;
    b.until(&nodes[2], "40").await;
    b.post(&nodes[0], &[r#"420["join","lobby"]"#]).await;
    let joined = args(&b.until(&nodes[2], "430").await);
    assert_eq!(member_count(&joined), 4, "{joined}");

    // Session A upgrades to a WebSocket on node 2 (tunnelled to node 0).
    let ws_url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid={}",
        nodes[2].bound.http, a.sid
    );
    let stream = TcpStream::connect(nodes[2].bound.http).await.expect("ws");
    let (mut up, _) = prise_ws::connect(stream, &ws_url, &Default::default(), Default::default())
        .await
        .expect("upgrade of a session held by node 0, on node 2");
    up.send(Message::text("2probe")).await.expect("probe");
    assert_eq!(next_text(&mut up).await, "3probe");
    up.send(Message::text("5")).await.expect("upgrade");
    up.send(Message::text(
        r#"423["publish",{"room":"lobby","content":"over the tunnel"}]"#,
    ))
    .await
    .expect("publish");
    let mut acked = false;
    let mut heard = false;
    while !(acked && heard) {
        let text = next_text(&mut up).await;
        acked |= text.starts_with("433[");
        heard |= text.starts_with(r#"42["message""#) && text.contains("over the tunnel");
    }
    b.message(&nodes[0], "over the tunnel").await;

    // The owner dies: its session is unknown everywhere, the WebSocket
    // tunnelled through node 2 ends, and node 1's session lives on.
    nodes[0].kill();
    for node in &nodes[1..] {
        let (status, body) = http(node.bound.http, "GET", &a.path(), "").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("Session ID unknown"), "{body}");
    }
    let end =
        tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = up.next().await {} }).await;
    assert!(end.is_ok(), "the tunnelled websocket ends with its owner");
    line.send("SAY lobby after the crash").await;
    b.message(&nodes[2], "after the crash").await;

    // A request that claims to be forwarded already is not forwarded again;
    // a made-up sid is not looked up: both get the usual 400.
    let (status, body) = http_with(
        nodes[2].bound.http,
        "GET",
        &b.path(),
        "",
        &[("prise-hop", "elsewhere")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = http(
        nodes[1].bound.http,
        "GET",
        "/socket.io/?EIO=4&transport=polling&sid=not%20a%20sid",
        "",
    )
    .await;
    assert_eq!(status, 400);
    // Session B still works after those.
    b.post(&nodes[2], &[r#"421["presence","lobby"]"#]).await;
    b.until(&nodes[1], "431").await;
    drop(nodes);
}
