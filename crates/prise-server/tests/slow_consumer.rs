//! A client that stops reading is disconnected; the others are unaffected.

use prise_testkit::server::*;
use prise_testkit::*;
use serde_json::json;
use tokio::net::TcpSocket;

async fn stats(server: &TestServer) -> serde_json::Value {
    http::get(server.bound.http, "/stats").await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_others_get_everything() {
    // The publisher outruns the default per-connection rate limit on purpose.
    let server = spawn_server(&["--queue-depth", "16", "--rate-messages", "0"]).await;

    // The slow client: a tiny receive buffer, joins, then never reads again.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.bound.tcp).await.unwrap();
    let mut slow = LineClient::from_stream(stream).hello(HUB_GREETING).await;
    slow.ask("JOIN busy", "OK").await;

    let mut fast = server.ws().await;
    fast.send_json(json!({"type": "join", "room": "busy"}))
        .await;
    fast.until("ack").await;

    let mut publisher = server.line().await;
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
            let m = fast.until("message").await;
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
        let m = fast.until("message").await;
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
