//! Reload, TLS on both sides, PROXY protocol headers and the admin endpoint.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use prise_proxy::config::{BackendTls, ListenerTls};
use prise_proxy::{Balance, CheckKind, ProxyArgs, ProxyConfig, ProxyProtocol};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[tokio::test]
async fn reload_keeps_connections_in_flight_and_switches_new_ones() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
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
    assert_eq!(in_flight.ask("1").await.as_deref(), Some("a:1"));

    // What SIGHUP does: re-read the file, apply it.
    write(b.addr, "leastconn");
    p.handle
        .reload(ProxyConfig::from_args(&args).unwrap())
        .unwrap();
    assert_eq!(p.handle.config().listeners[0].balance, Balance::LeastConn);
    assert_eq!(in_flight.ask("2").await.as_deref(), Some("a:2"));
    assert_eq!(which_backend(p.addr).await, "b");

    // A broken file is refused and the configuration in force stays.
    std::fs::write(&file, "backends = [\"nowhere\"").unwrap();
    assert!(ProxyConfig::from_args(&args).is_err());
    assert_eq!(which_backend(p.addr).await, "b");
    assert_eq!(in_flight.ask("3").await.as_deref(), Some("a:3"));
    assert_eq!(
        p.handle
            .stats()
            .reloads
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

struct Certs {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn certs() -> Certs {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Certs {
        _dir: dir,
        cert,
        key,
    }
}

fn server_config(c: &Certs) -> Arc<rustls::ServerConfig> {
    let chain = vec![CertificateDer::from_pem_file(&c.cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&c.key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

#[tokio::test]
async fn tls_on_both_sides_with_half_close() {
    let c = certs();
    // A TLS backend that reads the request to end of stream, answers, and closes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&c));
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

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&c.cert).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    for _ in 0..2 {
        let tcp = TcpStream::connect(p.addr).await.unwrap();
        let mut s = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        s.write_all(&vec![b'x'; 100_000]).await.unwrap();
        s.shutdown().await.unwrap();
        let mut reply = String::new();
        tokio::time::timeout(WAIT, s.read_to_string(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, "got 100000 bytes");
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
        prise_proxy::proxy_protocol::encode(version, client_addr, p.addr)
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

async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut all = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut all))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
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
