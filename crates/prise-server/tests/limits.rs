//! Rate limits, the origin allow-list, the HTTP API for backends and TLS,
//! over real sockets.

use prise_testkit::server::*;
use prise_testkit::tls::TestCert;
use prise_testkit::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request to the server: (status, body).
async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let r = HttpRequest::new(method, path)
        .headers(headers)
        .body(body)
        .send(server.bound.http)
        .await;
    (r.status, r.text().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_rate_are_refused_and_counted() {
    let server = spawn_server(&["--rate-messages", "0.01", "--rate-burst", "5"]).await;
    let mut c = server.line().await;
    let mut batch = String::new();
    for i in 0..10 {
        batch.push_str(&format!("PING {i}\n"));
    }
    c.writer.write_all(batch.as_bytes()).await.unwrap();
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..10 {
        let l = c.line().await.unwrap();
        if l.starts_with("PONG") {
            pongs += 1;
        } else if l.starts_with("ERR RATE_LIMITED") {
            limited += 1;
        }
    }
    assert_eq!((pongs, limited), (5, 5));

    let mut ws = server.ws().await;
    for i in 0..8 {
        ws.send_json(json!({"type": "ping", "timestamp": i})).await;
    }
    let mut codes = Vec::new();
    for _ in 0..8 {
        let v = ws.recv_json().await;
        codes.push(v["type"].as_str().unwrap().to_owned() + v["code"].as_str().unwrap_or(""));
    }
    assert_eq!(codes.iter().filter(|c| *c == "pong").count(), 5);
    assert_eq!(
        codes.iter().filter(|c| *c == "errorRATE_LIMITED").count(),
        3
    );

    let (status, _) = http(&server, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 200);
    let m = http::get(server.bound.http, "/metrics").await;
    let m = m.text();
    assert!(
        m.contains("prise_refused_total{reason=\"rate_limited\"}"),
        "{m}"
    );
    server.stop().await;
}

/// What a listener writes on a fresh connection before it closes it.
async fn refusal(addr: std::net::SocketAddr) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    String::from_utf8(stream::read_to_end(&mut c).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_capped_on_both_listeners() {
    let server = spawn_server(&["--max-connections-per-ip", "2"]).await;
    let a = server.line().await;
    let _b = server.line().await;
    let text = refusal(server.bound.tcp).await;
    assert_eq!(
        text,
        "ERR RATE_LIMITED too many open connections from your address\nBYE rate limited\n"
    );
    // HTTP: the refusal is written before any request is read.
    let text = refusal(server.bound.http).await;
    assert!(
        text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nRATE_LIMITED too many open connections from your address\n"));
    // A slot comes back when a connection ends.
    drop(a);
    let status = tokio::time::timeout(WAIT, async {
        loop {
            let r = http::get(server.bound.http, "/healthz").await;
            if r.status == 200 {
                return r.status;
            }
        }
    })
    .await
    .expect("a slot frees up");
    assert_eq!(status, 200);
    server.stop().await;

    let server = spawn_server(&["--ip-connect-rate", "0.001", "--ip-connect-burst", "2"]).await;
    let _a = server.line().await;
    let _b = server.line().await;
    let text = refusal(server.bound.tcp).await;
    assert!(
        text.starts_with("ERR RATE_LIMITED too many new connections"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origins_outside_the_allow_list_are_refused() {
    let server = spawn_server(&["--allowed-origins", "https://app.example"]).await;
    let upgrade = |origin: &'static str| {
        let addr = server.bound.http;
        async move {
            let (_, head) = raw_upgrade(addr, "/ws", &format!("Origin: {origin}\r\n")).await;
            head[9..12].parse::<u16>().unwrap()
        }
    };
    assert_eq!(upgrade("https://evil.example").await, 403);
    assert_eq!(upgrade("https://app.example").await, 101);
    assert_eq!(
        upgrade("http://localhost").await,
        101,
        "same origin as Host"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_publishes_and_reads_with_an_api_key() {
    let server = spawn_server(&["--api-key", "k-123", "--max-body", "2048"]).await;
    let key = [("Authorization", "Bearer k-123")];

    let (s, b) = http(&server, "GET", "/api/rooms", &[], b"").await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = http(&server, "GET", "/api/rooms", &[("X-API-Key", "nope")], b"").await;
    assert_eq!(s, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        "AUTH_FAILED"
    );

    let mut member = server.line().await;
    member.ask("NICK bob", "OK").await;
    member.ask("JOIN news", "OK").await;

    let body = json!({"room": "news", "content": "from the backend", "user": {"id": "svc", "name": "backend"}});
    let (s, b) = http(
        &server,
        "POST",
        "/api/publish",
        &key,
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (v["room"].as_str(), v["offset"].as_u64()),
        (Some("news"), Some(1))
    );
    assert_eq!(
        member.until("MSG").await,
        "MSG news 1 backend from the backend"
    );

    let (s, b) = http(&server, "GET", "/api/rooms", &key, b"").await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        v["rooms"],
        json!([{"name": "news", "members": 1, "offset": 1}])
    );

    let (s, b) = http(&server, "GET", "/api/rooms/news/history?since=0", &key, b"").await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["messages"][0]["content"], "from the backend");
    assert_eq!(v["complete"], true);

    let (s, b) = http(&server, "GET", "/api/rooms/news/presence", &key, b"").await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["members"][0]["name"], "bob");
    assert_eq!(
        (v["count"].as_u64(), v["complete"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(v.get("next").is_none());
    let path = "/api/rooms/news/presence?limit=0&after=";
    let (s, b) = http(&server, "GET", path, &key, b"").await;
    assert_eq!(s, 400, "an empty cursor is not one: {b}");
    let (s, b) = http(
        &server,
        "GET",
        "/api/rooms/news/presence?limit=-1",
        &key,
        b"",
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = http(
        &server,
        "GET",
        "/api/rooms/news/presence?limit=99999999",
        &key,
        b"",
    )
    .await;
    assert_eq!(s, 200, "a large limit is cut: {b}");

    let (s, _) = http(&server, "GET", "/api/rooms/nowhere/history", &key, b"").await;
    assert_eq!(s, 404);
    let (s, b) = http(&server, "POST", "/api/publish", &key, b"{not json").await;
    assert_eq!(
        (
            s,
            serde_json::from_str::<Value>(&b).unwrap()["error"]["code"].as_str()
        ),
        (400, Some("BAD_REQUEST"))
    );
    let big = json!({"room": "news", "content": "x".repeat(10_000)}).to_string();
    let (s, b) = http(&server, "POST", "/api/publish", &key, big.as_bytes()).await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        "TOO_LARGE"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_wss_and_tcp_lines() {
    let tls = TestCert::self_signed(&["localhost"]);
    let (cert, key) = (tls.cert_arg(), tls.key_arg());
    let server = spawn_server(&["--tls-cert", &cert, "--tls-key", &key]).await;

    // HTTPS.
    let s = tls.connect(server.bound.http, &[b"http/1.1"]).await;
    let status = HttpRequest::get("/healthz").send_on(s).await.status;
    assert_eq!(status, 200);

    // TCP lines over TLS.
    let mut s = tls.connect(server.bound.tcp, &[]).await;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HELLO prise/"));
    s.write_all(b"PING tls\n").await.unwrap();
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"PONG tls\n");

    // WSS.
    let s = tls.connect(server.bound.http, &[b"http/1.1"]).await;
    let url = format!("wss://localhost:{}/ws", server.bound.http.port());
    let mut ws = WsClient::handshake(s, &url, Default::default())
        .await
        .expect("wss handshake");
    ws.send_json(json!({"type": "ping", "timestamp": 7})).await;
    let v: Value = serde_json::from_str(&ws.text().await).unwrap();
    assert_eq!(v, json!({"type": "pong", "timestamp": 7}));

    // Plain text on the TLS port is dropped; the server stays up.
    assert_eq!(http::get(server.bound.http, "/healthz").await.status, 0);
    let s = tls.connect(server.bound.http, &[b"http/1.1"]).await;
    assert_eq!(HttpRequest::get("/healthz").send_on(s).await.status, 200);
    server.stop().await;
}
