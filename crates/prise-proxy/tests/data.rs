//! The data path (splice and buffered): half-close both ways, bulk integrity, idle timeout,
//! connection cap and drain.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use prise_testkit::stream::{exchange, read_to_end};
use prise_testkit::wait_until_refusing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A backend that reads the request to end of stream, then sends `reply` and closes.
async fn reply_after_eof(reply: Vec<u8>) -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut req = Vec::new();
        s.read_to_end(&mut req).await.unwrap();
        s.write_all(&reply).await.unwrap();
        s.shutdown().await.unwrap();
        let _ = tx.send(req);
    });
    (addr, rx)
}

async fn client_half_close(splice: bool) {
    let reply = pattern(8 << 20, 7);
    let (backend, got_req) = reply_after_eof(reply.clone()).await;
    let mut cfg = config(&[backend]);
    cfg.splice = splice;
    let p = spawn_proxy(cfg).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let req = pattern(300_000, 3);
    let got = exchange(&mut c, &req).await;
    assert_eq!(got.len(), reply.len());
    assert!(got == reply, "reply corrupted");
    assert!(got_req.await.unwrap() == req, "request corrupted");
}

#[tokio::test]
async fn client_half_close_gets_the_whole_reply_splice() {
    client_half_close(true).await;
}

#[tokio::test]
async fn client_half_close_gets_the_whole_reply_buffered() {
    client_half_close(false).await;
}

async fn backend_half_close(splice: bool) {
    // The backend greets, stops writing, and then still reads the client's whole upload.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"hello, send me everything").await.unwrap();
        s.shutdown().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        let _ = tx.send(all);
    });
    let mut cfg = config(&[backend]);
    cfg.splice = splice;
    let p = spawn_proxy(cfg).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let greeting = read_to_end(&mut c).await;
    assert_eq!(greeting, b"hello, send me everything");
    let upload = pattern(4 << 20, 11);
    c.write_all(&upload).await.unwrap();
    c.shutdown().await.unwrap();
    let got = tokio::time::timeout(WAIT, rx).await.unwrap().unwrap();
    assert!(got == upload, "upload corrupted ({} bytes)", got.len());
}

#[tokio::test]
async fn backend_half_close_still_gets_the_upload_splice() {
    backend_half_close(true).await;
}

#[tokio::test]
async fn backend_half_close_still_gets_the_upload_buffered() {
    backend_half_close(false).await;
}

async fn echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn full_duplex_bulk_is_intact_through_splice() {
    let backend = echo_backend().await;
    let p = spawn_proxy(config(&[backend])).await;
    let c = TcpStream::connect(p.addr).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let data = pattern(32 << 20, 5);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let got = read_to_end(&mut r).await;
    writer.await.unwrap();
    assert!(got == data, "echo corrupted ({} bytes)", got.len());
    let stats = p.handle.stats();
    let up = count(&stats.bytes_up);
    assert_eq!(up, data.len() as u64);
    // A bulk stream goes (mostly) through the pipes, not through user space.
    let spliced = count(&stats.bytes_spliced);
    assert!(spliced > data.len() as u64, "only {spliced} bytes spliced");

    // Request/response traffic stays on the small-buffer path.
    let mut c = LineClient::connect(p.addr).await;
    assert!(c.reply("ping").await.is_some());
    assert_eq!(count(&stats.bytes_spliced), spliced);
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let (_b, mut cfg) = one_backend("a").await;
    cfg.idle_timeout = Some(Duration::from_millis(200));
    let p = spawn_proxy(cfg).await;
    let mut c = LineClient::connect(p.addr).await;
    assert_eq!(c.reply("x").await.as_deref(), Some("a:x"));
    assert!(c.closed().await);
    // Counted by the relay thread just after it closed the sockets.
    assert!(eventually(|| count(&p.handle.stats().idle_closed) == 1).await);
}

#[tokio::test]
async fn max_connections_holds_the_next_client_until_one_closes() {
    let (b, mut cfg) = one_backend("a").await;
    cfg.max_connections = 1;
    let p = spawn_proxy(cfg).await;
    let mut first = LineClient::connect(p.addr).await;
    assert!(first.reply("1").await.is_some());
    // The second client's TCP handshake completes in the backlog, but the proxy does not
    // take it while the first is open.
    let second = TcpStream::connect(p.addr).await.unwrap();
    let mut second_rx = b.served.clone();
    let not_served =
        tokio::time::timeout(Duration::from_millis(300), second_rx.wait_for(|n| *n >= 2));
    let (mut sr, mut sw) = second.into_split();
    sw.write_all(b"2\n").await.unwrap();
    assert!(
        not_served.await.is_err(),
        "second client served while at the cap"
    );
    drop(first);
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, sr.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"a:2\n");
}

#[tokio::test]
async fn shutdown_drains_open_connections_and_refuses_new_ones() {
    let b = TestBackend::start("a").await;
    let p = spawn_proxy(config(&[b.addr])).await;
    let mut c = LineClient::connect(p.addr).await;
    assert!(c.reply("before").await.is_some());
    p.shutdown.cancel();
    // The listener closes: a new client is refused (bounded wait for the close to land).
    wait_until_refusing(p.addr).await;
    // The established connection keeps working through the drain.
    assert_eq!(c.reply("during").await.as_deref(), Some("a:during"));
    assert!(!p.task.is_finished());
    drop(c);
    tokio::time::timeout(WAIT, p.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn drain_deadline_cuts_remaining_connections() {
    let (_b, mut cfg) = one_backend("a").await;
    cfg.drain_timeout = Duration::from_millis(200);
    let p = spawn_proxy(cfg).await;
    let mut c = LineClient::connect(p.addr).await;
    assert!(c.reply("x").await.is_some());
    p.shutdown.cancel();
    tokio::time::timeout(WAIT, p.task).await.unwrap().unwrap();
    assert!(c.closed().await);
}
