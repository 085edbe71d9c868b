//! `prise http-proxy` with real peers: curl as the client, Python's
//! http.server as the origin (plain and behind TLS through CONNECT), and
//! raw sockets for the bad requests. Everything on loopback, bounded.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::{PRISE, Proc, run, spawn, text};

/// An origin: Python's http.server over a directory, optionally with TLS.
const ORIGIN: &str = r#"
import functools, http.server, ssl, sys
http.server.SimpleHTTPRequestHandler.protocol_version = 'HTTP/1.1'
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

fn origin(dir: &std::path::Path, tls: Option<(&str, &str)>) -> (Proc, u16) {
    let d = dir.to_string_lossy().into_owned();
    let mut args = vec![d.as_str()];
    if let Some((c, k)) = tls {
        args.extend([c, k]);
    }
    let p = support::python(ORIGIN, &args);
    let port = p.line().parse().unwrap();
    (p, port)
}

fn proxy(extra: &[&str]) -> (Proc, u16) {
    let mut args = vec!["http-proxy", "--listen", "127.0.0.1:0"];
    args.extend(extra);
    let p = spawn(PRISE, &args);
    let port = p.port();
    (p, port)
}

fn site() -> prise_testkit::TestDir {
    let dir = prise_testkit::TestDir::new();
    std::fs::write(dir.path().join("index.txt"), "hello from origin\n").unwrap();
    dir
}

/// Sends `raw` to the proxy and reads its whole answer (it closes after an error).
fn raw_exchange(port: u16, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(support::WAIT)).unwrap();
    s.write_all(raw).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    text(&answer)
}

#[test]
fn curl_through_the_proxy_with_an_access_log_line() {
    let dir = site();
    let (_origin, oport) = origin(dir.path(), None);
    let (p, pport) = proxy(&[]);
    let url = format!("http://127.0.0.1:{oport}/index.txt");
    let o = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-x",
            &format!("http://127.0.0.1:{pport}"),
            &url,
        ],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o.stdout), "hello from origin\n");
    // client method target status bytes duration
    let line = p.line();
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 6, "{line}");
    assert!(f[0].starts_with("127.0.0.1:"), "{line}");
    assert_eq!(&f[1..5], ["GET", url.as_str(), "200", "18"], "{line}");
    assert!(f[5].ends_with("ms"), "{line}");
}

#[test]
fn json_access_log_and_keep_alive_with_the_client() {
    let dir = site();
    let (_origin, oport) = origin(dir.path(), None);
    let (p, pport) = proxy(&["--json"]);
    // Two requests on one client connection, the second asking to close.
    let mut s = TcpStream::connect(("127.0.0.1", pport)).unwrap();
    s.set_read_timeout(Some(support::WAIT)).unwrap();
    let req = format!("GET http://127.0.0.1:{oport}/index.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !text(&first).ends_with("hello from origin\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after the first response");
        first.extend_from_slice(&buf[..n]);
    }
    let first = text(&first);
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(first.contains("Connection: keep-alive\r\n"), "{first}");
    let req = format!(
        "GET http://127.0.0.1:{oport}/index.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let answer = text(&answer);
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(answer.ends_with("hello from origin\n"));
    for _ in 0..2 {
        let v: serde_json::Value = serde_json::from_str(&p.line()).unwrap();
        assert_eq!(v["method"], "GET");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 18);
        assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
}

#[test]
fn connect_tunnels_raw_and_tls() {
    let dir = site();
    let (cert, key) = support::openssl_self_signed(dir.path(), true);
    let (_plain, oport) = origin(dir.path(), None);
    let (_tls, tport) = origin(dir.path(), Some((&cert, &key)));
    let (p, pport) = proxy(&[]);
    let px = format!("http://127.0.0.1:{pport}");
    // A raw tunnel: curl speaks plain HTTP inside it.
    let o = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-p",
            "-x",
            &px,
            &format!("http://127.0.0.1:{oport}/index.txt"),
        ],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o.stdout), "hello from origin\n");
    assert!(
        p.line()
            .contains(&format!(" CONNECT 127.0.0.1:{oport} 200 "))
    );
    // TLS end to end through the tunnel, verified against the origin's certificate.
    let o = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            &cert,
            "-x",
            &px,
            &format!("https://localhost:{tport}/index.txt"),
        ],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o.stdout), "hello from origin\n");
    let line = p.line();
    assert!(
        line.contains(&format!(" CONNECT localhost:{tport} 200 ")),
        "{line}"
    );
}

#[test]
fn bad_requests_get_clear_answers() {
    let (p, pport) = proxy(&["--max-header", "1024"]);
    // Malformed request line.
    let a = raw_exchange(pport, b"NOT AN HTTP REQUEST\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");
    assert!(p.line().contains(" 400 "));
    // A request meant for a server, not a proxy.
    let a = raw_exchange(pport, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(a.starts_with("HTTP/1.1 400 "), "{a}");
    assert!(a.contains("absolute http:// URL"), "{a}");
    assert!(p.line().contains(" 400 "));
    // An over-long header.
    let long = format!(
        "GET http://127.0.0.1:1/ HTTP/1.1\r\nX-Long: {}\r\n\r\n",
        "a".repeat(4096)
    );
    let a = raw_exchange(pport, long.as_bytes());
    assert!(a.starts_with("HTTP/1.1 431 "), "{a}");
    assert!(p.line().contains(" 431 "));
    // CONNECT to a closed port: 502, and curl reports the failed tunnel.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = raw_exchange(
        pport,
        format!("CONNECT 127.0.0.1:{closed} HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert!(a.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{a}");
    assert!(a.contains("connection refused"), "{a}");
    assert!(
        p.line()
            .contains(&format!(" CONNECT 127.0.0.1:{closed} 502 "))
    );
    let o = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-p",
            "-x",
            &format!("http://127.0.0.1:{pport}"),
            &format!("http://127.0.0.1:{closed}/"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(56), "{o:?}");
    assert!(text(&o.stderr).contains("502"), "{o:?}");
}

#[test]
fn slow_targets_get_504_and_silent_clients_408() {
    let (_p, pport) = proxy(&["--response-timeout", "300ms", "--idle-timeout", "300ms"]);
    // A target that accepts and never answers.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let mport = mute.local_addr().unwrap().port();
    let a = raw_exchange(
        pport,
        format!("GET http://127.0.0.1:{mport}/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert!(a.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{a}");
    // A client that stops in the middle of its head.
    let a = raw_exchange(pport, b"GET http://127.0.0.1/ HTTP/1.1\r\nHost:");
    assert!(a.starts_with("HTTP/1.1 408 "), "{a}");
    // A client that sends nothing is closed without an answer.
    let a = raw_exchange(pport, b"");
    assert_eq!(a, "");
    drop(mute);
}

#[test]
fn clients_outside_allow_get_403() {
    let (p, pport) = proxy(&["--allow", "10.0.0.0/8"]);
    let a = raw_exchange(
        pport,
        b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{a}");
    assert!(p.line().contains(" 403 "));
    let (_q, qport) = proxy(&["--allow", "127.0.0.0/8", "--connect-timeout", "2s"]);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = raw_exchange(
        qport,
        format!("GET http://127.0.0.1:{closed}/ HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert!(a.starts_with("HTTP/1.1 502 "), "{a}");
    let _ = Duration::ZERO;
}
