//! Socket.IO long-polling across three nodes of a real `redis-server`,
//! without sticky sessions: every request of one session goes to whichever
//! node the test picks, as a round-robin balancer would send it.

use prise_testkit::server::{Node, RedisServer};
use prise_testkit::{HttpRequest, WsClient};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Instant;

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
    let r = HttpRequest::new(method, path)
        .header("Content-Type", "text/plain;charset=UTF-8")
        .headers(headers)
        .body(body)
        .send(addr)
        .await;
    (r.status, r.text().to_owned())
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
        let deadline = Instant::now() + prise_testkit::WAIT;
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
    let mut nodes = Node::cluster(&url, "poll:", 3).await;

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
    let mut line = nodes[2].line().await;
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
    let mut ws = nodes[1].ws().await;
    ws.send_json(json!({"type": "join", "room": "lobby", "name": "wendy"}))
        .await;
    ws.until("ack").await;
    ws.send_json(json!({"type": "message", "room": "lobby", "content": "from ws"}))
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
    // (The upgrade is of a session held by node 0, on node 2.)
    let path = format!("/socket.io/?EIO=4&transport=websocket&sid={}", a.sid);
    let mut up = WsClient::connect(nodes[2].bound.http, &path).await;
    up.send_text("2probe").await;
    assert_eq!(up.text().await, "3probe");
    up.send_text("5").await;
    up.send_text(r#"423["publish",{"room":"lobby","content":"over the tunnel"}]"#)
        .await;
    let mut acked = false;
    let mut heard = false;
    while !(acked && heard) {
        let text = up.text().await;
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
    assert!(
        up.ended().await,
        "the tunnelled websocket ends with its owner"
    );
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
