//! `kill -9` of the real binary during publish load, then a restart on the
//! same `--data`: no acknowledged message is lost, offsets stay continuous,
//! and a subscriber that reconnects with backoff and `JOIN room SINCE n`
//! recovers everything it missed, with no duplicates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use prise_testkit::process::PROCESS_WAIT;
use prise_testkit::{ChildProcess, LineClient, TestDir};
use tokio::sync::mpsc;

/// The bound on each wait: a process and a restart take their time.
const WAIT: Duration = PROCESS_WAIT;
const ROOM: &str = "load";
const PUBLISHERS: usize = 3;
/// Acknowledged messages to wait for before the kill (under the 1000
/// messages one replay returns).
const BEFORE_KILL: usize = 240;

struct Hub {
    process: ChildProcess,
    tcp: SocketAddr,
}

/// Starts `prise serve` on `data` and waits for its listening lines.
fn start(data: &Path, tcp: &str) -> Hub {
    let process = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_prise"))
            .args(["serve", "--http", "127.0.0.1:0", "--tcp", tcp, "--data"])
            .arg(data)
            .args(["--rate-messages", "0", "--log", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .with_wait(WAIT);
    let tcp = process.serve_addrs().tcp;
    Hub { process, tcp }
}

/// A line client past the hub's greeting; an error while the hub is down.
async fn connect(addr: SocketAddr) -> std::io::Result<LineClient> {
    LineClient::try_connect(addr)
        .await?
        .with_wait(WAIT)
        .try_hello("HELLO")
        .await
}

/// `MSG room offset user text` → (offset, text).
fn parse_msg(l: &str) -> Option<(u64, String)> {
    let mut it = l.splitn(5, ' ');
    (it.next()? == "MSG" && it.next()? == ROOM).then_some(())?;
    let offset = it.next()?.parse().ok()?;
    let _user = it.next()?;
    Some((offset, it.next()?.to_owned()))
}

/// Publishes until the connection dies; reports every acknowledgement.
async fn publisher(addr: SocketAddr, id: usize, acks: mpsc::UnboundedSender<(u64, String)>) {
    let mut c = connect(addr).await.unwrap();
    assert!(c.try_send(&format!("JOIN {ROOM}")).await);
    loop {
        match c.line().await {
            Some(l) if l.starts_with(&format!("OK {ROOM}")) => break,
            Some(_) => {}
            None => return,
        }
    }
    for i in 0.. {
        let text = format!("p{id}-{i}");
        if !c.try_send(&format!("SAY {ROOM} {text}")).await {
            return;
        }
        loop {
            match c.line().await {
                Some(l) => {
                    if let Some(n) = l.strip_prefix("OK ").and_then(|n| n.parse().ok()) {
                        let _ = acks.send((n, text));
                        break;
                    }
                    assert!(!l.starts_with("ERR"), "{l}");
                }
                None => return,
            }
        }
    }
}

/// Reads MSG pushes until the connection dies or `max` arrived.
async fn subscribe(c: &mut LineClient, seen: &mut Vec<(u64, String)>, max: usize) {
    while seen.len() < max {
        let Some(l) = c.line().await else { return };
        if let Some(m) = parse_msg(&l) {
            seen.push(m);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_publish_load_loses_no_acknowledged_message() {
    let dir = TestDir::new();
    let mut hub = start(dir.path(), "127.0.0.1:0");
    let addr = hub.tcp;

    let mut sub = connect(addr).await.unwrap();
    sub.send(&format!("JOIN {ROOM}")).await;
    assert!(sub.line().await.unwrap().starts_with("OK load offset=0"));
    let subscriber = tokio::spawn(async move {
        // It drops out after 100 messages, so it surely misses some.
        let mut seen = Vec::new();
        subscribe(&mut sub, &mut seen, 100).await;
        seen
    });

    let (tx, mut rx) = mpsc::unbounded_channel();
    let pubs: Vec<_> = (0..PUBLISHERS)
        .map(|i| tokio::spawn(publisher(addr, i, tx.clone())))
        .collect();
    drop(tx);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    while acked.len() < BEFORE_KILL {
        let (n, text) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("acknowledgements arrive")
            .expect("publishers running");
        assert!(
            acked.insert(n, text).is_none(),
            "offset {n} acknowledged twice"
        );
    }
    // SIGKILL while the publishers are still sending.
    hub.process.kill();
    for p in pubs {
        tokio::time::timeout(WAIT, p).await.unwrap().unwrap();
    }
    while let Ok((n, text)) = rx.try_recv() {
        assert!(
            acked.insert(n, text).is_none(),
            "offset {n} acknowledged twice"
        );
    }
    let before = tokio::time::timeout(WAIT, subscriber)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.len(), 100);
    let last_seen = before.last().map_or(0, |m| m.0);

    // Restart on the same data and the same TCP port; the subscriber comes
    // back with exponential backoff and asks for what it missed.
    let restarted = tokio::task::spawn_blocking({
        let data = dir.path().to_owned();
        move || start(&data, &addr.to_string())
    });
    let mut backoff = Duration::from_millis(10);
    let mut sub = tokio::time::timeout(WAIT, async {
        loop {
            match connect(addr).await {
                Ok(c) => return c,
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    })
    .await
    .expect("reconnects after the restart");
    let hub2 = restarted.await.unwrap();
    assert!(
        sub.try_send(&format!("JOIN {ROOM} SINCE {last_seen}"))
            .await
    );
    let ok = sub.line().await.unwrap();
    let head: u64 = ok
        .split(' ')
        .find_map(|w| w.strip_prefix("offset="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("join answer: {ok}"));
    let mut after = Vec::new();
    while after.len() < (head - last_seen) as usize {
        let l = sub.line().await.expect("replay");
        if let Some(m) = parse_msg(&l) {
            after.push(m);
        }
    }

    assert!(
        after.len() >= BEFORE_KILL - 100,
        "the subscriber missed messages"
    );
    // Every acknowledged message survived, with its offset and text.
    let max_acked = *acked.keys().last().unwrap();
    assert!(
        head >= max_acked,
        "head {head} < last acknowledged {max_acked}"
    );
    let all: Vec<(u64, String)> = before.iter().chain(after.iter()).cloned().collect();
    let offsets: Vec<u64> = all.iter().map(|m| m.0).collect();
    assert_eq!(
        offsets,
        (1..=head).collect::<Vec<_>>(),
        "continuous offsets, each exactly once"
    );
    for (n, text) in &acked {
        assert_eq!(&all[(*n - 1) as usize].1, text, "acknowledged offset {n}");
    }

    // Publishing continues after the last stored offset.
    let mut p = connect(addr).await.unwrap();
    p.send(&format!("JOIN {ROOM}")).await;
    p.send(&format!("SAY {ROOM} after-restart")).await;
    loop {
        let l = p.line().await.expect("answer");
        assert!(!l.starts_with("ERR"), "{l}");
        if let Some(n) = l.strip_prefix("OK ").and_then(|n| n.parse::<u64>().ok()) {
            assert_eq!(n, head + 1);
            break;
        }
    }
    drop(hub2);
}
