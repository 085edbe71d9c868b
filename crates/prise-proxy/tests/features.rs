//! Reload, TLS on both sides, PROXY protocol headers and the admin endpoint.

mod common;

use std::net::SocketAddr;

use common::*;
use prise_proxy::config::{BackendTls, ListenerTls};
use prise_proxy::{Balance, CheckKind, ProxyArgs, ProxyConfig, ProxyProtocol};
use prise_testkit::stream::exchange;
use prise_testkit::tls::TestCert;
use prise_testkit::{TestDir, http};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[tokio::test]
async fn reload_keeps_connections_in_flight_and_switches_new_ones() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let dir = TestDir::new();
    let file = dir.join("proxy.toml");
    let write = |backend: SocketAddr, balance: &str| {
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:0\"\nbackends = [\"{backend}\"]\nbalance = \"{balance}\"\n\
                 [check]\nkind = \"none\"\n"
            ),
        )
        .unwrap();
    };
    write(a.addr, "roundrobin");
    let mut args = ProxyArgs::default();
    args.config = Some(file.clone());
    let p = spawn_proxy(ProxyConfig::from_args(&args).unwrap()).await;
    let mut in_flight = LineClient::connect(p.addr).await;
    assert_eq!(in_flight.reply("1").await.as_deref(), Some("a:1"));

    // What SIGHUP does: re-read the file, apply it.
    write(b.addr, "leastconn");
    p.handle
        .reload(ProxyConfig::from_args(&args).unwrap())
        .unwrap();
    assert_eq!(p.handle.config().listeners[0].balance, Balance::LeastConn);
    assert_eq!(in_flight.reply("2").await.as_deref(), Some("a:2"));
    assert_eq!(which_backend(p.addr).await, "b");

    // A broken file is refused and the configuration in force stays.
    std::fs::write(&file, "backends = [\"nowhere\"").unwrap();
    assert!(ProxyConfig::from_args(&args).is_err());
    assert_eq!(which_backend(p.addr).await, "b");
    assert_eq!(in_flight.reply("3").await.as_deref(), Some("a:3"));
    assert_eq!(count(&p.handle.stats().reloads), 1);
}

#[tokio::test]
async fn tls_on_both_sides_with_half_close() {
    let c = TestCert::self_signed(&["localhost", "127.0.0.1"]);
    // A TLS backend that reads the request to end of stream, answers, and closes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(c.server_config());
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Health checks close after the handshake; only requests are answered.
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut req = Vec::new();
                if s.read_to_end(&mut req).await.is_err() || req.is_empty() {
                    return;
                }
                let reply = format!("got {} bytes", req.len());
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let mut cfg = config(&[backend]);
    cfg.tls = Some(ListenerTls::new(c.cert.clone(), c.key.clone()));
    let mut backend_tls = BackendTls::default();
    backend_tls.ca = Some(c.cert.clone());
    cfg.backend_tls = Some(backend_tls);
    cfg.check.kind = CheckKind::Tls;
    cfg.check.interval = std::time::Duration::from_millis(100);
    let p = spawn_proxy(cfg).await;

    for _ in 0..2 {
        let mut s = c.connect(p.addr, &[]).await;
        let reply = exchange(&mut s, &vec![b'x'; 100_000]).await;
        assert_eq!(reply, b"got 100000 bytes");
    }
    let status = p.handle.backend(backend).unwrap().status();
    assert!(status.up);
    assert_eq!(status.connections, 2);
}

async fn proxy_protocol(version: ProxyProtocol) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut r = BufReader::new(s);
        let header = match version {
            ProxyProtocol::V1 => {
                let mut line = Vec::new();
                r.read_until(b'\n', &mut line).await.unwrap();
                line
            }
            ProxyProtocol::V2 => {
                let mut h = vec![0u8; 28];
                r.read_exact(&mut h).await.unwrap();
                h
            }
        };
        let mut rest = String::new();
        r.read_line(&mut rest).await.unwrap();
        r.get_mut().write_all(rest.as_bytes()).await.unwrap();
        let _ = tx.send(header);
    });
    let mut cfg = config(&[backend]);
    cfg.listener().proxy_protocol = Some(version);
    let p = spawn_proxy(cfg).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let client_addr = c.local_addr().unwrap();
    c.write_all(b"payload\n").await.unwrap();
    let mut echo = [0u8; 8];
    tokio::time::timeout(WAIT, c.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"payload\n");
    let header = rx.await.unwrap();
    assert_eq!(
        header,
        prise_proxy::proxy_protocol::encode(version.into(), client_addr, p.addr)
    );
    if version == ProxyProtocol::V1 {
        let text = String::from_utf8(header).unwrap();
        assert_eq!(
            text,
            format!(
                "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
                client_addr.port(),
                p.addr.port()
            )
        );
    }
}

#[tokio::test]
async fn proxy_protocol_v1_header_precedes_the_data() {
    proxy_protocol(ProxyProtocol::V1).await;
}

#[tokio::test]
async fn proxy_protocol_v2_header_precedes_the_data() {
    proxy_protocol(ProxyProtocol::V2).await;
}

/// `GET path` on the admin listener: (head, body).
async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let r = http::get(addr, path).await;
    let body = r.text().to_owned();
    (r.head, body)
}

#[tokio::test]
async fn admin_serves_metrics_and_status() {
    let a = TestBackend::start("a").await;
    let mut cfg = config(&[a.addr]);
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    let p = spawn_proxy(cfg).await;
    assert_eq!(which_backend(p.addr).await, "a");
    let admin = p.handle.admin_addr().unwrap();

    let (head, body) = http_get(admin, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("prise_proxy_connections_total 1"), "{body}");
    assert!(
        body.contains(&format!(
            "prise_proxy_backend_up{{backend=\"{}\",id=\"{}\"}} 1",
            a.addr,
            p.handle.backend(a.addr).unwrap().id()
        )),
        "{body}"
    );
    assert!(body.contains("prise_proxy_bytes_total{direction=\"upstream\"} 3"));

    let (head, body) = http_get(admin, "/status").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["balance"], "roundrobin");
    assert_eq!(v["backends"][0]["addr"], a.addr.to_string());
    assert_eq!(v["backends"][0]["up"], true);
    assert_eq!(v["backends"][0]["connections"], 1);
}
