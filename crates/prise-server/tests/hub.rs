//! The hub over real sockets: TCP lines and WebSocket JSON in one room space.

use prise_testkit::server::*;
use prise_testkit::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nc_clients_and_a_websocket_share_a_room() {
    let server = spawn_server(&[]).await;
    let mut alice = server.line().await;
    let mut bob = server.line().await;
    let mut web = server.ws().await;

    assert_eq!(alice.ask("NICK alice", "OK").await, "OK alice");
    assert_eq!(bob.ask("nick bob", "OK").await, "OK bob");
    alice
        .expect("JOIN general", "OK general offset=0 members=1")
        .await;
    bob.expect("JOIN general", "OK general offset=0 members=2")
        .await;
    assert_eq!(alice.until("JOINED").await, "JOINED general bob");

    web.send_json(json!({"type": "join", "room": "general", "name": "carol", "id": 1}))
        .await;
    let ack = web.until("ack").await;
    assert_eq!(ack["id"], 1);
    assert_eq!(ack["room"], "general");
    let names: Vec<&str> = ack["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    assert_eq!(alice.until("JOINED").await, "JOINED general carol");

    // nc -> everyone.
    assert_eq!(alice.ask("SAY general hello from nc", "OK").await, "OK 1");
    assert_eq!(bob.until("MSG").await, "MSG general 1 alice hello from nc");
    let m = web.until("message").await;
    assert_eq!(m["message"]["content"], "hello from nc");
    assert_eq!(m["message"]["userName"], "alice");
    assert_eq!(m["message"]["offset"], 1);
    assert_eq!(m["message"]["roomId"], "general");

    // WebSocket -> nc.
    web.send_json(
        json!({"type": "message", "room": "general", "content": "hi from the web", "id": "m1"}),
    )
    .await;
    let ack = web.until("ack").await;
    assert_eq!(ack["id"], "m1");
    assert_eq!(ack["offset"], 2);
    assert_eq!(
        alice.until("MSG").await,
        "MSG general 1 alice hello from nc",
        "the sender gets its own message too"
    );
    assert_eq!(
        alice.until("MSG").await,
        "MSG general 2 carol hi from the web"
    );
    assert_eq!(
        bob.until("MSG general 2").await,
        "MSG general 2 carol hi from the web"
    );

    // Typing and presence.
    bob.send("TYPING general on").await;
    let t = web.until("typing").await;
    assert_eq!(
        t,
        json!({"type": "typing", "roomId": "general", "userId": t["userId"], "userName": "bob", "typing": true})
    );
    assert_eq!(
        alice.ask("WHO general", "MEMBERS").await,
        "MEMBERS general 3 alice bob carol"
    );
    // By pages: a NEXT line with the cursor while more follow.
    assert_eq!(
        alice.ask("WHO general 2", "MEMBERS").await,
        "MEMBERS general 3 alice bob"
    );
    let next = alice.until("NEXT").await;
    let cursor = next.strip_prefix("NEXT general ").expect("a cursor");
    assert_eq!(
        alice
            .ask(&format!("WHO general {cursor} 2"), "MEMBERS")
            .await,
        "MEMBERS general 3 carol"
    );
    assert!(
        alice
            .ask("WHO general nonsense", "ERR")
            .await
            .starts_with("ERR BAD_REQUEST")
    );

    // Leaving is seen by the others.
    bob.send("LEAVE general").await;
    let left = web.until("left").await;
    assert_eq!(left["user"]["name"], "bob");
    assert_eq!(alice.until("LEFT").await, "LEFT general bob");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_basics_and_errors_never_crash() {
    let server = spawn_server(&["--max-line", "64"]).await;
    let mut c = server.line().await;
    assert_eq!(c.ask("PING", "PONG").await, "PONG");
    assert_eq!(c.ask("ping abc 123", "PONG").await, "PONG abc 123");
    let time = c.ask("TIME", "TIME").await;
    let stamp = time.strip_prefix("TIME ").unwrap();
    assert!(humantime_like(stamp), "RFC 3339: {stamp}");
    assert_eq!(
        c.ask("FROB x", "ERR").await,
        "ERR UNKNOWN_COMMAND unknown command FROB, try HELP"
    );
    let long = "SAY general ".to_owned() + &"x".repeat(500);
    c.expect(&long, "ERR LINE_TOO_LONG").await;
    assert_eq!(c.ask("PING still-alive", "PONG").await, "PONG still-alive");
    c.expect("SAY nowhere hi", "ERR NO_ROOM").await;
    c.expect("JOIN bad\u{7}name", "ERR BAD_REQUEST").await;
    c.writer.try_write(b"\xff\xfe\n").unwrap();
    assert_eq!(c.until("ERR").await, "ERR BAD_UTF8 line is not valid UTF-8");
    assert!(c.ask("HELP", "OK").await == "OK");
    assert_eq!(c.ask("QUIT", "BYE").await, "BYE");
    assert_eq!(c.line().await, None, "closed after BYE");
    server.stop().await;
}

fn humantime_like(s: &str) -> bool {
    s.len() == 24 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.ends_with('Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_auth_ping_and_errors() {
    let server = spawn_server(&["--max-frame", "1024", "--max-message", "256"]).await;
    let mut ws = server.ws().await;
    ws.send_json(json!({"type": "auth", "name": "dana"})).await;
    let ok = ws.until("auth_success").await;
    assert_eq!(ok["user"]["name"], "dana");
    ws.send_json(json!({"type": "ping", "timestamp": 1234}))
        .await;
    assert_eq!(
        ws.until("pong").await,
        json!({"type": "pong", "timestamp": 1234})
    );
    ws.send_json(json!({"type": "frobnicate", "id": 9})).await;
    let e = ws.until("error").await;
    assert_eq!(
        (e["id"].clone(), e["code"].clone()),
        (json!(9), json!("BAD_REQUEST"))
    );
    ws.send_json(json!({"type": "message", "room": "r", "content": "x", "id": 10}))
        .await;
    let e = ws.until("error").await;
    assert_eq!(e["code"], "NO_ROOM");
    ws.send_json(json!({"type": "join", "room": "r"})).await;
    ws.until("ack").await;
    ws.send_json(json!({"type": "message", "room": "r", "content": "y".repeat(300), "id": 11}))
        .await;
    let e = ws.until("error").await;
    assert_eq!(
        (e["id"].clone(), e["code"].clone()),
        (json!(11), json!("TOO_LARGE"))
    );
    // A frame over the cap closes with 1009; the hub stays healthy.
    ws.send_json(json!({"type": "message", "room": "r", "content": "z".repeat(4000)}))
        .await;
    assert_eq!(ws.close_code().await, Some(1009));

    let mut ws = server.ws().await;
    ws.send_json(json!({"type": "auth", "token": "not-a-valid-token"}))
        .await;
    assert_eq!(ws.until("auth_failed").await["type"], "auth_failed");
    assert_eq!(ws.close_code().await, Some(4001));

    let mut c = server.line().await;
    assert_eq!(c.ask("PING", "PONG").await, "PONG");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_offsets_survive_a_restart() {
    let dir = TestDir::new();
    let server = spawn_sqlite_server(dir.path(), &[]).await;
    let mut c = server.line().await;
    c.ask("NICK erin", "OK").await;
    c.ask("JOIN general", "OK").await;
    for i in 1..=3 {
        assert_eq!(
            c.ask(&format!("SAY general message {i}"), "OK").await,
            format!("OK {i}")
        );
    }
    let mut ws = server.ws().await;
    ws.send_json(json!({"type": "join", "room": "general"}))
        .await;
    let epoch = ws.until("ack").await["epoch"].clone();
    drop(ws);
    server.stop().await;

    let server = spawn_sqlite_server(dir.path(), &[]).await;
    let mut c = server.line().await;
    c.send("HISTORY general 10").await;
    for i in 1..=3 {
        assert_eq!(
            c.until("MSG").await,
            format!("MSG general {i} erin message {i}")
        );
    }
    assert_eq!(c.until("OK").await, "OK 3");
    // A WebSocket client resumes after offset 1 in the same epoch.
    let mut ws = server.ws().await;
    ws.send_json(json!({"type": "join", "room": "general", "since": 1, "epoch": epoch, "id": "j"}))
        .await;
    let ack = ws.until("ack").await;
    assert_eq!(ack["epoch"], epoch, "same epoch after restart");
    assert_eq!(ack["offset"], 3);
    assert_eq!(ack["recovered"], true);
    for i in 2..=3 {
        let m = ws.until("message").await;
        assert_eq!(m["message"]["offset"], i);
        assert_eq!(m["message"]["content"], format!("message {i}"));
    }
    // New messages continue the offsets.
    c.ask("NICK erin", "OK").await;
    c.ask("JOIN general", "OK").await;
    assert_eq!(c.ask("SAY general after restart", "OK").await, "OK 4");
    assert_eq!(ws.until("message").await["message"]["offset"], 4);
    // JOIN ... SINCE on the line protocol replays too.
    let mut d = server.line().await;
    d.send("JOIN general SINCE 2").await;
    assert!(d.until("OK").await.starts_with("OK general offset=4"));
    assert_eq!(d.until("MSG").await, "MSG general 3 erin message 3");
    assert_eq!(d.until("MSG").await, "MSG general 4 erin after restart");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_goodbye_on_every_transport() {
    let server = spawn_server(&[]).await;
    let mut c = server.line().await;
    let mut ws = server.ws().await;
    ws.send_json(json!({"type": "ping"})).await;
    ws.until("pong").await;
    let stop = tokio::spawn(server.stop());
    assert_eq!(c.until("BYE").await, "BYE server shutting down");
    assert_eq!(ws.close_code().await, Some(1001));
    stop.await.unwrap();
}
