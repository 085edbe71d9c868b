//! Abuse over real sockets, bounded in count and time: oversize lines,
//! frames and bodies, invalid UTF-8, slowloris, thousands of idle
//! connections. The hub stays up, its memory stays bounded, other clients
//! are unaffected.

use prise_testkit::server::*;
use prise_testkit::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Checks that the hub still serves a fresh client on both transports.
async fn still_serves(server: &TestServer) {
    let mut c = server.line().await;
    assert_eq!(c.ask("PING alive", "PONG").await, "PONG alive");
    let mut ws = server.ws().await;
    ws.send_json(json!({"type": "ping", "timestamp": 1})).await;
    assert_eq!(ws.until("pong").await["timestamp"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_line_is_skipped_and_the_connection_stays_usable() {
    let server = spawn_server(&["--max-line", "1024"]).await;
    let mut c = server.line().await;
    // 4 MiB without a newline, then a newline and a command.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..64 {
        c.writer.write_all(&chunk).await.unwrap();
    }
    c.writer.write_all(b"\nPING after\n").await.unwrap();
    assert!(c.until("ERR").await.starts_with("ERR LINE_TOO_LONG"));
    assert_eq!(c.until("PONG").await, "PONG after");
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_closes_1009_and_invalid_utf8_closes_1007() {
    let server = spawn_server(&["--max-frame", "4096"]).await;
    let mut ws = server.ws().await;
    ws.send_json(json!({"type": "message", "room": "r", "content": "x".repeat(10_000)}))
        .await;
    assert_eq!(ws.close_code().await, Some(1009));

    // A raw text frame with invalid UTF-8 (the client library refuses to
    // send one, so the handshake and frame are written by hand).
    let (mut s, head) = raw_upgrade(server.bound.http, "/ws", "").await;
    assert!(head.starts_with("HTTP/1.1 101"));
    let payload = [0xffu8, 0xfe, 0xfd];
    let frame = masked_frame(&[0x81, 0x80 | payload.len() as u8], [1, 2, 3, 4], &payload);
    s.write_all(&frame).await.unwrap();
    let (first, body) = read_frame(&mut s).await;
    assert_eq!(first, 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([body[0], body[1]]), 1007);
    still_serves(&server).await;
    server.stop().await;
}

/// A masked client frame: `head` (the first byte and the length bytes,
/// mask bit set), the mask, and the payload masked with it.
fn masked_frame(head: &[u8], mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut frame = head.to_vec();
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The next server frame: its first byte and its payload.
async fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut hdr = [0u8; 2];
    tokio::time::timeout(WAIT, s.read_exact(&mut hdr))
        .await
        .expect("a frame in time")
        .expect("a frame header");
    let len = match hdr[1] & 0x7f {
        126 => u64::from(s.read_u16().await.unwrap()),
        127 => s.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut body = vec![0u8; usize::try_from(len).unwrap()];
    s.read_exact(&mut body).await.unwrap();
    (hdr[0], body)
}

/// Reads frames until a close frame and returns its code, skipping others.
async fn raw_close_code(s: &mut TcpStream) -> u16 {
    loop {
        let (first, body) = read_frame(s).await;
        if first & 0x0f == 0x8 {
            return u16::from_be_bytes([body[0], body[1]]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_bomb_closes_1009_and_the_hub_stays_up() {
    let server = spawn_server(&["--ws-deflate", "--max-frame", "65536"]).await;
    // A compressing client in the same room, to show others are unaffected.
    let config = prise_ws::WsConfig::default().with_deflate(prise_ws::DeflateConfig::default());
    let mut other = WsClient::connect_with(server.bound.http, "/ws", config).await;
    assert!(other.get_ref().is_deflate());

    // 16 MiB of spaces compresses to about 16 KiB: made with zlib directly, not
    // with prise's own compressor.
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut payload = Vec::with_capacity(64 * 1024);
    c.compress_vec(
        &vec![b' '; 16 << 20],
        &mut payload,
        flate2::FlushCompress::Sync,
    )
    .unwrap();
    assert!(payload.len() < 20 * 1024, "{}", payload.len());
    payload.truncate(payload.len() - 4);

    let (mut s, head) = raw_upgrade(
        server.bound.http,
        "/ws",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate"),
        "{head}"
    );
    // One masked text frame with RSV1 set.
    let mut head = vec![0xc1, 0xff];
    head.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    let frame = masked_frame(&head, [9, 8, 7, 6], &payload);
    let before = rss_kib();
    // The server may close before reading all of it.
    let _ = s.write_all(&frame).await;
    assert_eq!(raw_close_code(&mut s).await, 1009);
    // Inflation stopped at the cap: nowhere near 16 MiB more memory.
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "rss grew by {grown} KiB");

    // The compressing client still works, and so does everyone else.
    other
        .send_json(json!({"type": "ping", "timestamp": 7}))
        .await;
    assert_eq!(other.until("pong").await["timestamp"], 7);
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off_at_the_header_timeout() {
    let server = spawn_server(&["--header-timeout", "400ms"]).await;
    let mut slow = TcpStream::connect(server.bound.http).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Trickle a header line every 100 ms; the server must close before the
    // head is ever complete.
    let trickle = async {
        for i in 0..200 {
            if slow
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return true;
            }
            let mut b = [0u8; 512];
            match tokio::time::timeout(std::time::Duration::from_millis(100), slow.read(&mut b))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) | Err(_) => {}
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(WAIT, trickle).await.unwrap(),
        "the server closed the trickling connection"
    );
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_keep_memory_bounded() {
    const SOURCES: u8 = 20;
    const PER_SOURCE: usize = 100;
    let server = spawn_server(&[]).await;
    still_serves(&server).await;
    let before = rss_kib();
    let mut idle = Vec::with_capacity(usize::from(SOURCES) * PER_SOURCE);
    for src in 0..SOURCES {
        for _ in 0..PER_SOURCE {
            let sock = TcpSocket::new_v4().unwrap();
            sock.bind(([127, 0, 0, 2 + src], 0).into()).unwrap();
            let s = tokio::time::timeout(WAIT, sock.connect(server.bound.tcp))
                .await
                .unwrap()
                .unwrap();
            idle.push(s);
        }
    }
    // Every one is a session on the hub (the greeting reaches each socket).
    let mut greeted = 0;
    for s in idle.iter_mut().step_by(97) {
        let mut b = [0u8; 5];
        tokio::time::timeout(WAIT, s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        greeted += usize::from(&b == b"HELLO");
    }
    assert_eq!(greeted, idle.len().div_ceil(97));
    still_serves(&server).await;
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 96 * 1024,
        "2000 idle connections grew RSS by {grown} KiB"
    );
    drop(idle);
    still_serves(&server).await;
    server.stop().await;
}
