//! Fleet features with real backends on loopback, counting where connections go: fair
//! sharing after a kill, source and consistent hashing, weights, backups, maxconn queueing,
//! runtime control through the admin API, PROXY protocol in, several listeners.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use prise_proxy::{AdminState, BackendConfig, Balance, CheckKind, ProxyConfig, ProxyProtocol};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Active TCP checks every 50 ms; one failure takes a backend down, two passes bring it up.
fn checked(cfg: &mut ProxyConfig) {
    cfg.check.kind = CheckKind::Tcp;
    cfg.check.interval = Duration::from_millis(50);
    cfg.check.timeout = Duration::from_millis(500);
    cfg.check.fall = 1;
    cfg.check.rise = 2;
}

async fn start(names: &[&str]) -> Vec<TestBackend> {
    let mut v = Vec::new();
    for n in names {
        v.push(TestBackend::start(n).await);
    }
    v
}

/// Counts the backends that answer `n` new connections.
async fn count(addr: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        *m.entry(which_backend(addr).await).or_insert(0) += 1;
    }
    m
}

async fn share_after_kill(balance: Balance) {
    let mut bs = start(&["a", "b", "c"]).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let mut cfg = config(&addrs);
    cfg.listener().balance = balance;
    checked(&mut cfg);
    let p = spawn_proxy(cfg).await;
    let mut state = p.handle.backend(addrs[1]).unwrap().subscribe();
    bs.remove(1).kill().await;
    assert!(
        wait_state(&mut state, false, WAIT).await,
        "never marked down"
    );
    let m = count(p.addr, 6).await;
    assert_eq!(m.get("a"), Some(&3), "{m:?}");
    assert_eq!(m.get("c"), Some(&3), "{m:?}");
}

#[tokio::test]
async fn round_robin_shares_a_killed_backend_among_all_survivors() {
    share_after_kill(Balance::RoundRobin).await;
}

#[tokio::test]
async fn least_connections_shares_a_killed_backend_among_all_survivors() {
    share_after_kill(Balance::LeastConn).await;
}

/// 300 distinct client addresses spread over 127.0.0.0/8.
fn clients() -> Vec<IpAddr> {
    (0..300u32)
        .map(|i| {
            let x = i.wrapping_mul(2_654_435_761);
            IpAddr::V4(Ipv4Addr::new(
                127,
                (x >> 24) as u8,
                (x >> 16) as u8,
                1 + (i % 250) as u8,
            ))
        })
        .collect()
}

#[tokio::test]
async fn consistent_hashing_moves_only_the_clients_of_the_backend_that_went() {
    let mut bs = start(&["a", "b", "c", "d"]).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let mut cfg = config(&addrs);
    cfg.listener().balance = Balance::Consistent;
    checked(&mut cfg);
    let p = spawn_proxy(cfg).await;
    let clients = clients();
    let mut before = Vec::new();
    for &c in &clients {
        before.push(which_backend_from(p.addr, c).await);
    }
    for n in ["a", "b", "c", "d"] {
        let share = before.iter().filter(|b| *b == n).count();
        assert!(share > 30, "{n} has {share} of 300");
    }
    let mut state = p.handle.backend(addrs[3]).unwrap().subscribe();
    bs.remove(3).kill().await;
    assert!(wait_state(&mut state, false, WAIT).await);
    let mut moved = 0;
    for (c, b) in clients.iter().zip(&before) {
        let now = which_backend_from(p.addr, *c).await;
        if now != *b {
            assert_eq!(b, "d", "{c} moved from a live backend {b} to {now}");
            moved += 1;
        } else {
            assert_ne!(b, "d");
        }
    }
    let on_d = before.iter().filter(|b| *b == "d").count();
    assert_eq!(moved, on_d);
    // About 1/N = 75 of 300; the ring's spread allows some more.
    assert!(moved <= 105, "{moved} of 300 moved");
}

#[tokio::test]
async fn source_keeps_a_client_on_one_backend() {
    let bs = start(&["a", "b", "c"]).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let mut cfg = config(&addrs);
    cfg.listener().balance = Balance::Source;
    let p = spawn_proxy(cfg).await;
    let mut seen = Vec::new();
    for c in clients().into_iter().take(8) {
        let first = which_backend_from(p.addr, c).await;
        for _ in 1..20 {
            assert_eq!(which_backend_from(p.addr, c).await, first, "client {c}");
        }
        seen.push(first);
    }
    seen.sort();
    seen.dedup();
    assert!(seen.len() > 1, "every client on one backend: {seen:?}");
}

#[tokio::test]
async fn weights_three_to_one_give_three_quarters() {
    let bs = start(&["heavy", "light"]).await;
    let mut cfg = config(&[]);
    cfg.listener().backends = vec![
        BackendConfig::parse(&format!("{},weight=3", bs[0].addr)).unwrap(),
        BackendConfig::parse(&format!("{},weight=1", bs[1].addr)).unwrap(),
    ];
    let p = spawn_proxy(cfg).await;
    let m = count(p.addr, 400).await;
    let heavy = m.get("heavy").copied().unwrap_or(0);
    assert!((280..=320).contains(&heavy), "{m:?}");
    assert_eq!(bs[0].served() + bs[1].served(), 400);
}

#[tokio::test]
async fn a_backup_takes_traffic_only_while_every_primary_is_down() {
    let mut bs = start(&["p1", "p2", "spare"]).await;
    let mut cfg = config(&[]);
    cfg.listener().backends = vec![
        BackendConfig::new(bs[0].addr),
        BackendConfig::new(bs[1].addr),
        BackendConfig::parse(&format!("{},backup", bs[2].addr)).unwrap(),
    ];
    checked(&mut cfg);
    let p = spawn_proxy(cfg).await;
    let m = count(p.addr, 6).await;
    assert_eq!(m.get("spare"), None, "{m:?}");

    // One primary down: the other takes everything, still no backup.
    let mut s1 = p.handle.backend(bs[0].addr).unwrap().subscribe();
    let p1 = bs.remove(0).kill().await;
    assert!(wait_state(&mut s1, false, WAIT).await);
    assert_eq!(count(p.addr, 4).await.get("p2"), Some(&4));

    // Both down: the backup.
    let mut s2 = p.handle.backend(bs[0].addr).unwrap().subscribe();
    bs.remove(0).kill().await;
    assert!(wait_state(&mut s2, false, WAIT).await);
    assert_eq!(count(p.addr, 4).await.get("spare"), Some(&4));

    // A primary back: the backup gets nothing again.
    let _back = TestBackend::start_on(p1, "p1").await;
    assert!(wait_state(&mut s1, true, WAIT).await);
    assert_eq!(count(p.addr, 4).await.get("p1"), Some(&4));
}

#[tokio::test]
async fn maxconn_queues_a_client_and_refuses_beyond_the_queue() {
    let a = TestBackend::start("a").await;
    let mut cfg = config(&[]);
    cfg.listener().backends = vec![BackendConfig::parse(&format!("{},maxconn=1", a.addr)).unwrap()];
    cfg.max_queue = 1;
    let p = spawn_proxy(cfg).await;
    let mut first = LineClient::connect(p.addr).await;
    assert_eq!(first.reply("1").await.as_deref(), Some("a:1"));

    // The second waits in the queue...
    let addr = p.addr;
    let second = tokio::spawn(async move {
        let mut c = LineClient::connect(addr).await;
        c.reply("2").await
    });
    let stats = p.handle.stats();
    assert!(eventually(|| stats.queued.load(Ordering::Relaxed) == 1).await);
    // ...the third finds the queue full and is closed; the others are untouched.
    let mut third = LineClient::connect(p.addr).await;
    assert!(third.closed().await);
    assert!(eventually(|| stats.queue_full.load(Ordering::Relaxed) == 1).await);
    assert_eq!(first.reply("1b").await.as_deref(), Some("a:1b"));
    assert!(!second.is_finished());

    drop(first);
    let reply = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert_eq!(reply.as_deref(), Some("a:2"));
}

#[tokio::test]
async fn drain_keeps_the_established_stream_and_sends_no_new_connection() {
    let bs = start(&["a", "b"]).await;
    let mut cfg = config(&[bs[0].addr, bs[1].addr]);
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    cfg.drain_timeout = Duration::from_secs(1);
    let p = spawn_proxy(cfg).await;
    let admin = p.handle.admin_addr().unwrap();
    let mut long = LineClient::connect(p.addr).await;
    assert_eq!(long.reply("0").await.as_deref(), Some("a:0"));
    let a = p.handle.backend(bs[0].addr).unwrap();

    let (code, body) = http(admin, "POST", &format!("/backends/{}/drain", a.id()), "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(a.admin_state(), AdminState::Draining);
    let served_a = bs[0].served();
    assert_eq!(count(p.addr, 6).await.get("b"), Some(&6));
    assert_eq!(
        bs[0].served(),
        served_a,
        "a drained backend got a new connection"
    );
    for i in 1..=5 {
        let line = format!("still {i}");
        assert_eq!(long.reply(&line).await, Some(format!("a:{line}")));
    }

    let (code, body) = http(admin, "GET", "/backends", "").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == a.id().0)
        .unwrap();
    assert_eq!(row["state"], "draining");
    assert_eq!(row["active"], 1);
    assert_eq!(row["weight"], 1);
    assert_eq!(row["listener"], p.addr.to_string());

    // At the drain timeout what is left is closed.
    assert!(long.closed().await, "not closed at the drain timeout");

    let (code, _) = http(admin, "POST", &format!("/backends/{}/enable", a.id()), "").await;
    assert_eq!(code, 200);
    let m = count(p.addr, 4).await;
    assert_eq!(m.get("a"), Some(&2), "{m:?}");
}

#[tokio::test]
async fn admin_add_remove_and_bad_requests() {
    let bs = start(&["a", "b"]).await;
    let mut cfg = config(&[bs[0].addr]);
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    let p = spawn_proxy(cfg).await;
    let admin = p.handle.admin_addr().unwrap();
    // A client that must not notice any of the below.
    let mut other = LineClient::connect(p.addr).await;
    assert_eq!(other.reply("x").await.as_deref(), Some("a:x"));

    for (method, path, body, want) in [
        ("POST", "/backends/999/drain", "", 404),
        ("POST", "/backends/127.0.0.9:1/disable", "", 404),
        ("DELETE", "/backends/999", "", 404),
        ("POST", "/backends/1/reboot", "", 404),
        (
            "POST",
            "/backends",
            r#"{"addr": "127.0.0.1:1", "weight": 0}"#,
            400,
        ),
        (
            "POST",
            "/backends",
            r#"{"addr": "127.0.0.1:1", "weight": -1}"#,
            400,
        ),
        (
            "POST",
            "/backends",
            r#"{"addr": "127.0.0.1:1", "weight": 257}"#,
            400,
        ),
        (
            "POST",
            "/backends",
            r#"{"addr": "127.0.0.1:1", "maxconn": 0}"#,
            400,
        ),
        (
            "POST",
            "/backends",
            r#"{"addr": "127.0.0.1:1", "colour": 1}"#,
            422,
        ),
        ("POST", "/backends", r#"{"addr": "#, 400),
        (
            "POST",
            "/backends",
            r#"{"addr": "127.0.0.1:1", "listener": "7"}"#,
            404,
        ),
        (
            "POST",
            "/backends",
            &format!(r#"{{"addr": "{}"}}"#, bs[0].addr),
            409,
        ),
    ] {
        let (code, text) = http(admin, method, path, body).await;
        assert_eq!(code, want, "{method} {path} {body}: {text}");
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "error": text }));
        assert!(v["error"].is_string(), "{text}");
    }
    assert_eq!(other.reply("y").await.as_deref(), Some("a:y"));

    // Add b with weight 3: it takes 3 of every 4 new connections.
    let body = format!(r#"{{"addr": "{}", "weight": 3}}"#, bs[1].addr);
    let (code, text) = http(admin, "POST", "/backends", &body).await;
    assert_eq!(code, 201, "{text}");
    let m = count(p.addr, 8).await;
    assert_eq!(m.get("b"), Some(&6), "{m:?}");

    // Remove a: it drains (the other client's stream goes on), then leaves once idle.
    let a = p.handle.backend(bs[0].addr).unwrap();
    let (code, _) = http(admin, "DELETE", &format!("/backends/{}", a.id()), "").await;
    assert_eq!(code, 202);
    assert_eq!(count(p.addr, 3).await.get("b"), Some(&3));
    assert_eq!(other.reply("z").await.as_deref(), Some("a:z"));
    assert!(p.handle.backend(bs[0].addr).is_some());
    drop(other);
    assert!(eventually(|| p.handle.backend(bs[0].addr).is_none()).await);
}

/// A backend that reads the PROXY v1 line the proxy sends and answers it back.
async fn header_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut lines = BufReader::new(r).lines();
                if let Ok(Some(header)) = lines.next_line().await
                    && let Ok(Some(first)) = lines.next_line().await
                {
                    let _ = w.write_all(format!("{header}|{first}\n").as_bytes()).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn accept_proxy_passes_the_original_address_on_and_refuses_bad_headers() {
    let backend = header_echo().await;
    let mut cfg = config(&[backend]);
    cfg.listener().accept_proxy = true;
    cfg.listener().proxy_protocol = Some(ProxyProtocol::V1);
    let p = spawn_proxy(cfg).await;
    let src: SocketAddr = "203.0.113.7:4242".parse().unwrap();
    let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();

    let send = |bytes: Vec<u8>| async move {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        LineClient::from_stream(s)
    };
    let mut header = prise_proxy::proxy_protocol::encode(ProxyProtocol::V2.into(), src, dst);
    header.extend_from_slice(b"hello\n");
    let mut good = send(header.clone()).await;
    // Nothing more is sent: the reply proves the line after the header reached the backend.
    let mut reply = String::new();
    let n = tokio::time::timeout(WAIT, good_read(&mut good, &mut reply))
        .await
        .unwrap();
    assert!(n > 0);
    assert_eq!(
        reply.trim_end(),
        "PROXY TCP4 203.0.113.7 198.51.100.1 4242 443|hello"
    );

    // Malformed headers: closed, counted; a good client right after still works.
    for bad in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\nhello\n".to_vec(),
        [
            &prise_proxy::proxy_protocol::V2_SIGNATURE[..],
            &[0x21, 0x11, 0xff, 0xff],
        ]
        .concat(),
        format!("PROXY TCP4 {}\r\n", "9".repeat(200)).into_bytes(),
    ] {
        let mut c = send(bad).await;
        assert!(c.closed().await);
    }
    // Counted just after the socket is closed, so wait for it (bounded).
    let stats = p.handle.stats();
    assert!(eventually(|| stats.bad_proxy_header.load(Ordering::Relaxed) == 4).await);
    let mut again = send(header).await;
    let mut reply = String::new();
    tokio::time::timeout(WAIT, good_read(&mut again, &mut reply))
        .await
        .unwrap();
    assert!(reply.starts_with("PROXY TCP4 203.0.113.7 "), "{reply}");
}

async fn good_read(c: &mut LineClient, out: &mut String) -> usize {
    c.reader.read_line(out).await.unwrap_or(0)
}

#[tokio::test]
async fn accept_proxy_address_is_what_source_hashes_on() {
    let bs = start(&["a", "b", "c"]).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let mut cfg = config(&addrs);
    cfg.listener().accept_proxy = true;
    cfg.listener().balance = Balance::Source;
    let p = spawn_proxy(cfg).await;
    let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
    let mut seen = Vec::new();
    for i in 1..=6u8 {
        let src = SocketAddr::from(([192, 0, 2, i], 1000));
        let mut names = Vec::new();
        for port in 0..5u16 {
            let src = SocketAddr::new(src.ip(), 1000 + port);
            let mut s = TcpStream::connect(p.addr).await.unwrap();
            s.write_all(&prise_proxy::proxy_protocol::encode(
                ProxyProtocol::V1.into(),
                src,
                dst,
            ))
            .await
            .unwrap();
            let mut c = LineClient::from_stream(s);
            let r = c.reply("hi").await.unwrap();
            names.push(r.split(':').next().unwrap().to_owned());
        }
        names.dedup();
        assert_eq!(names.len(), 1, "client {src} moved: {names:?}");
        seen.push(names.remove(0));
    }
    seen.sort();
    seen.dedup();
    // All connections come from 127.0.0.1: only the header's addresses can spread them.
    assert!(seen.len() > 1, "{seen:?}");
}

#[tokio::test]
async fn several_listeners_each_with_its_own_backends() {
    let bs = start(&["red", "blue", "green"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[check]\nkind = \"none\"\n\n\
             [[listener]]\nlisten = \"127.0.0.1:0\"\nbackends = [\"{}\"]\n\n\
             [[listener]]\nlisten = \"127.0.0.1:0\"\nbalance = \"leastconn\"\n\
             backends = [{{ addr = \"{}\", weight = 2 }}, \"{},backup\"]\n",
            bs[0].addr, bs[1].addr, bs[2].addr
        ),
    )
    .unwrap();
    let mut args = prise_proxy::ProxyArgs::default();
    args.config = Some(file);
    let cfg = ProxyConfig::from_args(&args).unwrap();
    assert_eq!(cfg.listeners.len(), 2);
    assert_eq!(cfg.listeners[1].backends[0].weight, 2);
    assert!(cfg.listeners[1].backends[1].backup);
    let p = spawn_proxy(cfg).await;
    let listens = p.handle.local_addrs();
    assert_eq!(count(listens[0], 3).await.get("red"), Some(&3));
    assert_eq!(count(listens[1], 3).await.get("blue"), Some(&3));
    assert_eq!(p.handle.pool_backends(1).len(), 2);
}

#[test]
fn bad_weights_are_clear_errors() {
    for spec in [
        "127.0.0.1:1,weight=0",
        "127.0.0.1:1,weight=-1",
        "127.0.0.1:1,weight=300",
        "127.0.0.1:1,weight=x",
        "127.0.0.1:1,maxconn=0",
        "127.0.0.1:1,colour=red",
    ] {
        let e = BackendConfig::parse(spec).unwrap_err().to_string();
        assert!(e.contains("backend 127.0.0.1:1"), "{spec}: {e}");
    }
    let e = BackendConfig::parse("127.0.0.1:1,weight=-1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("weight -1 is out of range (1 to 256)"), "{e}");
}
