//! Rate limits, the origin allow-list, the HTTP API for backends and TLS,
//! over real sockets.

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
async fn http_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // A server may answer (e.g. 413) before reading a large body.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("response in time");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked bodies: keep the JSON line only.
    let body = body
        .lines()
        .find(|l| l.starts_with('{') || l.starts_with("RATE_LIMITED"))
        .unwrap_or(body)
        .to_owned();
    (status, body)
}

async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let s = TcpStream::connect(server.bound.http).await.unwrap();
    http_on(s, method, path, headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_rate_are_refused_and_counted() {
    let server = spawn_server(&["--rate-messages", "0.01", "--rate-burst", "5"]).await;
    let mut c = LineClient::connect(&server).await;
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

    let mut ws = ws_connect(&server).await;
    for i in 0..8 {
        ws_send(&mut ws, json!({"type": "ping", "timestamp": i})).await;
    }
    let mut codes = Vec::new();
    for _ in 0..8 {
        let v = ws_recv(&mut ws).await;
        codes.push(v["type"].as_str().unwrap().to_owned() + v["code"].as_str().unwrap_or(""));
    }
    assert_eq!(codes.iter().filter(|c| *c == "pong").count(), 5);
    assert_eq!(
        codes.iter().filter(|c| *c == "errorRATE_LIMITED").count(),
        3
    );

    let (status, _) = http(&server, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 200);
    let mut s = TcpStream::connect(server.bound.http).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut m = String::new();
    s.read_to_string(&mut m).await.unwrap();
    assert!(
        m.contains("prise_refused_total{reason=\"rate_limited\"}"),
        "{m}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_capped_on_both_listeners() {
    let server = spawn_server(&["--max-connections-per-ip", "2"]).await;
    let a = LineClient::connect(&server).await;
    let _b = LineClient::connect(&server).await;
    let mut c = TcpStream::connect(server.bound.tcp).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, c.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        text,
        "ERR RATE_LIMITED too many open connections from your address\nBYE rate limited\n"
    );
    // HTTP: the refusal is written before any request is read.
    let mut h = TcpStream::connect(server.bound.http).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, h.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(
        text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nRATE_LIMITED too many open connections from your address\n"));
    // A slot comes back when a connection ends.
    drop(a);
    let status = tokio::time::timeout(WAIT, async {
        loop {
            let s = TcpStream::connect(server.bound.http).await.unwrap();
            let r = http_on(s, "GET", "/healthz", &[], b"").await;
            if r.0 == 200 {
                return r.0;
            }
        }
    })
    .await
    .expect("a slot frees up");
    assert_eq!(status, 200);
    server.stop().await;

    let server = spawn_server(&["--ip-connect-rate", "0.001", "--ip-connect-burst", "2"]).await;
    let _a = LineClient::connect(&server).await;
    let _b = LineClient::connect(&server).await;
    let mut c = TcpStream::connect(server.bound.tcp).await.unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).await.unwrap();
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
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut head = [0u8; 12];
            tokio::time::timeout(WAIT, s.read_exact(&mut head))
                .await
                .unwrap()
                .unwrap();
            String::from_utf8_lossy(&head[9..12])
                .parse::<u16>()
                .unwrap()
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

    let mut member = LineClient::connect(&server).await;
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

fn tls_files(dir: &std::path::Path) -> (String, String, rustls::RootCertStore) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
        roots,
    )
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    roots: &rustls::RootCertStore,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.expect("tls handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_wss_and_tcp_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, roots) = tls_files(dir.path());
    let server = spawn_server(&["--tls-cert", &cert, "--tls-key", &key]).await;

    // HTTPS.
    let s = tls_connect(server.bound.http, &roots, &[b"http/1.1"]).await;
    let (status, _) = http_on(s, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 200);

    // TCP lines over TLS.
    let mut s = tls_connect(server.bound.tcp, &roots, &[]).await;
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
    let s = tls_connect(server.bound.http, &roots, &[b"http/1.1"]).await;
    let url = format!("wss://localhost:{}/ws", server.bound.http.port());
    let (mut ws, _) = prise_ws::connect(s, &url, &Default::default(), Default::default())
        .await
        .expect("wss handshake");
    use futures_util::{SinkExt, StreamExt};
    ws.send(prise_ws::Message::text(
        json!({"type": "ping", "timestamp": 7}).to_string(),
    ))
    .await
    .unwrap();
    let m = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
    assert_eq!(v, json!({"type": "pong", "timestamp": 7}));

    // Plain text on the TLS port is dropped; the server stays up.
    let s = TcpStream::connect(server.bound.http).await.unwrap();
    let (status, _) = http_on(s, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 0);
    let s = tls_connect(server.bound.http, &roots, &[b"http/1.1"]).await;
    assert_eq!(http_on(s, "GET", "/healthz", &[], b"").await.0, 200);
    server.stop().await;
}
