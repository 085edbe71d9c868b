//! Several nodes as one hub over a real `redis-server`: shared rooms,
//! presence and order; a node killed under load; a Redis restart under load.
//!
//! Each node runs `prise_server::run` on its own runtime and thread, so it
//! can be killed like `kill -9`: its runtime is dropped without any graceful
//! step (sockets close, heartbeats stop, nothing is cleaned up in Redis).

use prise_testkit::server::{Node, RedisServer, hub_line};
use prise_testkit::{LineClient, WAIT, WsClient, http};
use serde_json::json;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Polls `/readyz` until it answers `want` (bounded by WAIT).
async fn wait_ready(addr: SocketAddr, want: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        if http::get(addr, "/readyz").await.status == want {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz never answered {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `MSG room offset user text` lines until `n` were read; returns (offset, text).
async fn read_msgs(c: &mut LineClient, n: usize) -> Vec<(u64, String)> {
    let mut v = Vec::new();
    while v.len() < n {
        let l = c.until("MSG ").await;
        let mut p = l.splitn(5, ' ');
        p.next();
        p.next();
        let offset = p.next().and_then(|o| o.parse().ok()).expect("offset");
        p.next();
        v.push((offset, p.next().unwrap_or_default().to_owned()));
    }
    v
}

async fn read_ws_msgs(ws: &mut WsClient, n: usize) -> Vec<(u64, String)> {
    let mut v = Vec::new();
    while v.len() < n {
        let m = ws.until("message").await;
        v.push((
            m["message"]["offset"].as_u64().expect("offset"),
            m["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    v
}

fn names(members: &serde_json::Value) -> Vec<String> {
    members
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_rooms_presence_and_order() {
    let redis = RedisServer::start();
    let url = redis.url();
    let nodes = Node::cluster(&url, "share:", 3).await;

    let mut alice = nodes[0].line().await;
    let mut bob = nodes[1].ws().await;
    let mut carol = nodes[2].line().await;
    alice.ask("NICK alice", "OK").await;
    carol.ask("NICK carol", "OK").await;
    alice
        .expect("JOIN general", "OK general offset=0 members=1")
        .await;
    bob.send_json(json!({"type": "join", "room": "general", "name": "bob"}))
        .await;
    let ack = bob.until("ack").await;
    assert_eq!(names(&ack["members"]), ["alice", "bob"]);
    assert_eq!(alice.until("JOINED").await, "JOINED general bob");
    carol
        .expect("JOIN general", "OK general offset=0 members=3")
        .await;
    assert_eq!(alice.until("JOINED").await, "JOINED general carol");
    let joined = bob.until("joined").await;
    assert_eq!(joined["user"]["name"], "carol");

    // The same members from every node.
    let who = "MEMBERS general 3 alice bob carol";
    assert_eq!(alice.ask("WHO general", "MEMBERS").await, who);
    assert_eq!(carol.ask("WHO general", "MEMBERS").await, who);
    bob.send_json(json!({"type": "presence", "room": "general"}))
        .await;
    let p = bob.until("presence").await;
    assert_eq!(names(&p["members"]), ["alice", "bob", "carol"]);

    // Typing crosses nodes.
    alice.send("TYPING general on").await;
    let t = bob.until("typing").await;
    assert_eq!(
        (t["userName"].clone(), t["typing"].clone()),
        (json!("alice"), json!(true))
    );
    assert_eq!(carol.until("TYPING").await, "TYPING general alice on");

    // Everyone publishes at once; everyone sees one order.
    const EACH: usize = 20;
    for i in 0..EACH {
        alice.send(&format!("SAY general a{i}")).await;
        carol.send(&format!("SAY general c{i}")).await;
        bob.send_json(json!({"type": "message", "room": "general", "content": format!("b{i}")}))
            .await;
    }
    let (a, b, c) = tokio::join!(
        read_msgs(&mut alice, 3 * EACH),
        read_ws_msgs(&mut bob, 3 * EACH),
        read_msgs(&mut carol, 3 * EACH)
    );
    assert_eq!(a, b, "alice (node 0) and bob (node 1) see one order");
    assert_eq!(a, c, "alice (node 0) and carol (node 2) see one order");
    let offsets: Vec<u64> = a.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=3 * EACH as u64).collect::<Vec<_>>());
    for who in ["a", "b", "c"] {
        let mine: Vec<&str> = a
            .iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| t.starts_with(who))
            .collect();
        let sent: Vec<String> = (0..EACH).map(|i| format!("{who}{i}")).collect();
        assert_eq!(mine, sent, "each publisher's messages keep their order");
    }

    // History is shared: a late joiner on any node replays it.
    let mut dave = nodes[1].line().await;
    dave.ask("JOIN general SINCE 55", "OK").await;
    let replay = read_msgs(&mut dave, 5).await;
    assert_eq!(replay, a[55..].to_vec());

    // A graceful leave is seen everywhere.
    carol.ask("LEAVE general", "OK").await;
    assert_eq!(alice.until("LEFT").await, "LEFT general carol");
    assert_eq!(bob.until("left").await["user"]["name"], "carol");
    drop(nodes);
}

/// A publisher on node B; a TCP and a WebSocket subscriber on node A, which
/// is killed mid-stream. Both resume on node C with `SINCE`/`since+epoch`:
/// every acknowledged message arrives exactly once, in order, and node A's
/// members leave presence within the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_clients_recover_on_another_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = Node::spawn(&url, "kill:", &[]).await;
    let b = Node::spawn(&url, "kill:", &[]).await;
    let c = Node::spawn(&url, "kill:", &[]).await;

    let mut watcher = c.ws().await;
    watcher
        .send_json(json!({"type": "join", "room": "load", "name": "watcher"}))
        .await;
    watcher.until("ack").await;

    let mut tcp_victim = a.line().await;
    tcp_victim.ask("NICK tvictim", "OK").await;
    tcp_victim.ask("JOIN load", "OK").await;
    let mut ws_victim = a.ws().await;
    ws_victim
        .send_json(json!({"type": "join", "room": "load", "name": "wvictim"}))
        .await;
    let epoch = ws_victim.until("ack").await["epoch"].clone();
    watcher
        .send_json(json!({"type": "presence", "room": "load"}))
        .await;
    // Presence converges: wait for both victims' joined events.
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        let j = watcher.until("joined").await;
        seen.insert(j["user"]["name"].as_str().unwrap_or_default().to_owned());
    }

    // The publisher: sequential SAYs on node B, recording acknowledged offsets.
    const TOTAL: u64 = 150;
    let b_tcp = b.bound.tcp;
    let publisher = tokio::spawn(async move {
        let mut p = hub_line(b_tcp).await;
        p.ask("JOIN load", "OK").await;
        let mut acked = Vec::new();
        for i in 1..=TOTAL {
            let l = p.ask(&format!("SAY load m{i}"), "OK").await;
            acked.push(l[3..].parse::<u64>().expect("offset"));
        }
        acked
    });

    // Read a while on node A, then kill it.
    let before_tcp = read_msgs(&mut tcp_victim, 20).await;
    let before_ws = read_ws_msgs(&mut ws_victim, 20).await;
    a.kill();
    let t0 = Instant::now();

    // The TCP victim drains what node A had sent, then sees the end.
    let mut tcp_seen = before_tcp;
    while let Some(l) = tcp_victim.line().await {
        if let Some(rest) = l.strip_prefix("MSG load ") {
            let mut p = rest.splitn(3, ' ');
            let o: u64 = p.next().and_then(|o| o.parse().ok()).expect("offset");
            p.next();
            tcp_seen.push((o, p.next().unwrap_or_default().to_owned()));
        }
    }
    let mut ws_seen = before_ws;
    loop {
        match ws_victim.next_item().await {
            Some(Ok(prise_ws::Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("json");
                if v["type"] == "message" {
                    ws_seen.push((
                        v["message"]["offset"].as_u64().expect("offset"),
                        v["message"]["content"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ));
                }
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }

    // Reconnect both on node C and resume.
    let last_tcp = tcp_seen.last().map_or(0, |m| m.0);
    let mut tcp_back = c.line().await;
    let ok = tcp_back
        .ask(&format!("JOIN load SINCE {last_tcp}"), "OK")
        .await;
    assert!(ok.starts_with("OK load offset="), "{ok}");
    let last_ws = ws_seen.last().map_or(0, |m| m.0);
    let mut ws_back = c.ws().await;
    ws_back
        .send_json(json!({"type": "join", "room": "load", "since": last_ws, "epoch": epoch}))
        .await;
    let ack = ws_back.until("ack").await;
    assert_eq!(ack["recovered"], true, "{ack}");

    let acked = tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("publisher finishes")
        .expect("publisher");
    assert_eq!(
        acked,
        (1..=TOTAL).collect::<Vec<_>>(),
        "every SAY was acknowledged"
    );
    let rest = TOTAL - last_tcp;
    tcp_seen.extend(read_msgs(&mut tcp_back, rest as usize).await);
    let rest = TOTAL - last_ws;
    ws_seen.extend(read_ws_msgs(&mut ws_back, rest as usize).await);
    let expected: Vec<(u64, String)> = (1..=TOTAL).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(
        tcp_seen, expected,
        "TCP: nothing lost, nothing twice, in order"
    );
    assert_eq!(
        ws_seen, expected,
        "WebSocket: nothing lost, nothing twice, in order"
    );

    // Node A's members leave presence (TTL 1 s, reaped by the live nodes).
    // (The publisher, gone by now, leaves too.)
    let victims = HashSet::from(["tvictim".to_owned(), "wvictim".to_owned()]);
    let mut left = HashSet::new();
    while !victims.is_subset(&left) {
        let l = watcher.until("left").await;
        left.insert(l["user"]["name"].as_str().unwrap_or_default().to_owned());
    }
    assert!(t0.elapsed() < WAIT);
    let who = tcp_back.ask("WHO load", "MEMBERS").await;
    assert!(!who.contains("victim"), "{who}");
    drop((b, c, redis));
}

/// Redis is killed and restarted (append-only file, fsync always) while a
/// publisher on node A sends and a subscriber on node B reads: publishes fail
/// during the outage (not acknowledged), `/readyz` says so, and afterwards
/// the subscriber has every acknowledged message once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_load() {
    let mut redis = RedisServer::start_with(true);
    let url = redis.url();
    let a = Node::spawn(&url, "restart:", &[]).await;
    let b = Node::spawn(&url, "restart:", &[]).await;
    wait_ready(a.bound.http, 200).await;

    let mut sub = b.ws().await;
    sub.send_json(json!({"type": "join", "room": "r", "name": "sub"}))
        .await;
    sub.until("ack").await;
    let mut publisher = a.line().await;
    publisher.ask("JOIN r", "OK").await;

    let mut acked = Vec::new();
    let say = async |p: &mut LineClient, i: u64, acked: &mut Vec<u64>| {
        p.send(&format!("SAY r m{i}")).await;
        let l = loop {
            let l = p.line().await.expect("publisher connection open");
            if l.starts_with("OK ") || l.starts_with("ERR ") {
                break l;
            }
        };
        if let Some(o) = l.strip_prefix("OK ") {
            acked.push(o.parse::<u64>().expect("offset"));
            true
        } else {
            assert!(l.starts_with("ERR SEND_ERROR"), "{l}");
            false
        }
    };
    let mut i = 0;
    for _ in 0..30 {
        i += 1;
        assert!(say(&mut publisher, i, &mut acked).await);
    }
    redis.kill();
    wait_ready(a.bound.http, 503).await;
    wait_ready(b.bound.http, 503).await;
    i += 1;
    assert!(
        !say(&mut publisher, i, &mut acked).await,
        "no ack while redis is down"
    );
    redis.restart();
    wait_ready(a.bound.http, 200).await;
    wait_ready(b.bound.http, 200).await;
    let mut ok_after = 0;
    while ok_after < 30 {
        i += 1;
        if say(&mut publisher, i, &mut acked).await {
            ok_after += 1;
        }
    }
    let last = *acked.last().expect("acks");
    let mut got = Vec::new();
    while got.last().is_none_or(|&o| o < last) {
        let m = sub.until("message").await;
        got.push(m["message"]["offset"].as_u64().expect("offset"));
    }
    let unique: HashSet<u64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "nothing twice: {got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    for o in &acked {
        assert!(unique.contains(o), "acknowledged {o} lost: {got:?}");
    }
    drop((a, b));
}
