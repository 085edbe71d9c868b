//! A client that stops reading is disconnected; the others are unaffected.

mod common;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn stats(server: &TestServer) -> serde_json::Value {
    let mut s = TcpStream::connect(server.bound.http).await.unwrap();
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    let json = body.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_others_get_everything() {
    // The publisher outruns the default per-connection rate limit on purpose.
    let server = spawn_server(&["--queue-depth", "16", "--rate-messages", "0"]).await;

    // The slow client: a tiny receive buffer, joins, then never reads again.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.bound.tcp).await.unwrap();
    let mut slow = LineClient::from_stream(stream).await;
    slow.ask("JOIN busy", "OK").await;

    let mut fast = ws_connect(&server).await;
    ws_send(&mut fast, json!({"type": "join", "room": "busy"})).await;
    ws_until(&mut fast, "ack").await;

    let mut publisher = LineClient::connect(&server).await;
    publisher.ask("JOIN busy", "OK").await;
    let payload = "p".repeat(2000);
    let mut sent = 0u64;
    let mut received = 0u64;
    // Publish until the hub reports the slow consumer (bounded).
    while stats(&server).await["slowConsumerDisconnects"] == 0 {
        assert!(
            sent < 20_000,
            "no slow-consumer disconnect after {sent} messages"
        );
        for _ in 0..50 {
            sent += 1;
            assert_eq!(
                publisher
                    .ask(&format!("SAY busy {sent} {payload}"), "OK")
                    .await,
                format!("OK {sent}")
            );
        }
        // The fast client keeps up and sees every message in order.
        while received < sent {
            let m = ws_until(&mut fast, "message").await;
            received += 1;
            assert_eq!(m["message"]["offset"], received);
        }
    }
    // The hub stays healthy for the others.
    sent += 1;
    assert_eq!(
        publisher.ask(&format!("SAY busy {sent} after"), "OK").await,
        format!("OK {sent}")
    );
    loop {
        let m = ws_until(&mut fast, "message").await;
        if m["message"]["offset"] == sent {
            break;
        }
    }
    // The slow client's connection was closed: reading drains to the end.
    let mut lines = 0;
    while slow.line().await.is_some() {
        lines += 1;
    }
    assert!(
        (lines as u64) < sent,
        "the slow client did not get everything"
    );
    let s = stats(&server).await;
    assert_eq!(s["slowConsumerDisconnects"], 1);
    assert_eq!(
        s["connections"]["tcp"], 1,
        "only the publisher is left on tcp"
    );
    server.stop().await;
}
