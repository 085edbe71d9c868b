//! `--proxy` with real proxies: microsocks (Debian's SOCKS5 server), a
//! minimal HTTP CONNECT proxy on a thread, and misbehaving SOCKS5 servers.
//! Every failure must give its documented exit code, and nothing may hang.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use support::*;

fn microsocks(extra: &[&str]) -> (Proc, u16) {
    let port = free_tcp_port();
    let port_s = port.to_string();
    let mut args = vec!["-i", "127.0.0.1", "-p", &port_s];
    args.extend(extra);
    let p = spawn_with("microsocks", &args, std::process::Stdio::null());
    wait_until("microsocks to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (p, port)
}

#[test]
fn connect_probe_and_send_through_microsocks() {
    let (_socks, sport) = microsocks(&[]);
    let proxy = format!("socks5://127.0.0.1:{sport}");
    let echo = tcp_echo(2);
    // The name goes to the proxy, which resolves it. microsocks closes both
    // directions at the first end of stream, so each client keeps its
    // input open until the answer is back.
    let roundtrip = |url: &str, extra: &[&str], line: &str| {
        let mut args = vec!["connect", "--proxy", &proxy];
        args.extend(extra);
        args.push(url);
        let mut c = spawn_with(PRISE, &args, std::process::Stdio::piped());
        c.send(format!("{line}\n").as_bytes());
        c.line()
    };
    let url = format!("tcp://localhost:{echo}");
    assert_eq!(roundtrip(&url, &[], "through socks"), "through socks");
    // TLS and WebSocket through the tunnel.
    // The generated certificate goes to a temporary folder, not the checkout.
    let certs = prise_testkit::TestDir::new();
    let cert = certs.path().join("echo.pem").to_string_lossy().into_owned();
    let tls = prise(&[
        "echo",
        "tls://127.0.0.1:0",
        "--self-signed",
        "--cert-out",
        &cert,
    ]);
    let url = format!("tls://localhost:{}", tls.port());
    assert_eq!(roundtrip(&url, &["--insecure"], "tls"), "tls");
    let ws = prise(&["echo", "ws://127.0.0.1:0"]);
    let url = format!("ws://localhost:{}/", ws.port());
    assert_eq!(roundtrip(&url, &[], "ws"), "ws");

    let o = run(
        PRISE,
        &[
            "probe",
            "--proxy",
            &proxy,
            &format!("tcp://127.0.0.1:{echo}"),
        ],
        b"",
    );
    assert!(o.status.success(), "{o:?}");

    let dir = prise_testkit::TestDir::new();
    let out = dir.path().join("in");
    std::fs::create_dir(&out).unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let recv = prise(&[
        "recv",
        "tcp://127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let o = run(
        PRISE,
        &[
            "send",
            "--quiet",
            "--proxy",
            &proxy,
            file.to_str().unwrap(),
            &format!("tcp://127.0.0.1:{}", recv.port()),
        ],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    wait_until("the file to arrive", || {
        std::fs::read(out.join("f.bin")).is_ok_and(|d| d.len() == 300_000)
    });
}

#[test]
fn socks5_refusals_have_documented_exit_codes() {
    let (_socks, sport) = microsocks(&["-u", "alice", "-P", "secret"]);
    let echo = tcp_echo(1);
    let target = format!("tcp://127.0.0.1:{echo}");
    let connect = |proxy: &str, target: &str| {
        run(
            PRISE,
            &["connect", "--timeout", "5s", "--proxy", proxy, target],
            b"x\n",
        )
    };
    // No credentials: the proxy accepts none of our methods.
    let o = connect(&format!("socks5://127.0.0.1:{sport}"), &target);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        stderr(&o).contains("refused: the proxy accepts none"),
        "{o:?}"
    );
    // Wrong password.
    let o = connect(&format!("socks5://alice:wrong@127.0.0.1:{sport}"), &target);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        stderr(&o).contains("rejected the user name and password"),
        "{o:?}"
    );
    // Right password, closed target port: the target refused, via the proxy.
    let closed = free_tcp_port();
    let o = connect(
        &format!("socks5://alice:secret@127.0.0.1:{sport}"),
        &format!("tcp://127.0.0.1:{closed}"),
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        stderr(&o).contains(&format!(
            "connection refused by 127.0.0.1:{closed} (via socks5://alice@"
        )),
        "{o:?}"
    );
    assert!(
        !stderr(&o).contains("secret"),
        "the password never shows: {o:?}"
    );
    // Right password, open target (input kept open until the answer: see above).
    let proxy = format!("socks5://alice:secret@127.0.0.1:{sport}");
    let mut c = spawn_with(
        PRISE,
        &["connect", "--proxy", &proxy, &target],
        std::process::Stdio::piped(),
    );
    c.send(b"x\n");
    assert_eq!(c.line(), "x");
    // No proxy listening at all.
    let o = connect(&format!("socks5://127.0.0.1:{}", free_tcp_port()), &target);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(stderr(&o).contains("connection refused by proxy"), "{o:?}");
}

/// A fake proxy answering every connection with `answer` after reading
/// `read` bytes (and then holding the connection until the peer goes).
fn fake_proxy(read: usize, answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in listener.incoming().take(4) {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                s.set_read_timeout(Some(WAIT)).unwrap();
                let mut buf = vec![0u8; read];
                if s.read_exact(&mut buf).is_ok() {
                    let _ = s.write_all(answer);
                    let _ = s.read(&mut [0u8; 64]);
                }
            });
        }
    });
    port
}

#[test]
fn misbehaving_socks5_servers_fail_cleanly() {
    let target = "tcp://example.invalid:80";
    let run_via = |port: u16, timeout: &str| {
        run(
            PRISE,
            &[
                "connect",
                "--timeout",
                timeout,
                "--proxy",
                &format!("socks5://127.0.0.1:{port}"),
                target,
            ],
            b"",
        )
    };
    // Refuses by its rules (reply 2) after a normal greeting.
    let rules = fake_proxy(3, &[5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
    let o = run_via(rules, "5s");
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        stderr(&o).contains("connection not allowed by ruleset"),
        "{o:?}"
    );
    // Speaks HTTP instead: a protocol error.
    let http = fake_proxy(3, b"HTTP/1.1 400 Bad Request\r\n\r\n");
    let o = run_via(http, "5s");
    assert_eq!(o.status.code(), Some(9), "{o:?}");
    // Says nothing: the connect timeout ends it.
    let silent = fake_proxy(3, b"");
    let o = run_via(silent, "500ms");
    assert_eq!(o.status.code(), Some(4), "{o:?}");
}

/// A minimal HTTP CONNECT proxy: 200 and a relay, or 502 when the target
/// refuses.
fn connect_proxy() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in listener.incoming().take(8) {
            let Ok(client) = s else { return };
            thread::spawn(move || {
                let mut r = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let target = line.split(' ').nth(1).unwrap().to_owned();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap() <= 2 {
                        break;
                    }
                }
                let mut client = client;
                match TcpStream::connect(&target) {
                    Err(_) => {
                        let _ = client
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
                    }
                    Ok(upstream) => {
                        client
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .unwrap();
                        let (mut up_w, mut up_r) = (upstream.try_clone().unwrap(), upstream);
                        let mut c_w = client.try_clone().unwrap();
                        thread::spawn(move || {
                            let _ = std::io::copy(&mut r, &mut up_w);
                            let _ = up_w.shutdown(std::net::Shutdown::Write);
                        });
                        let _ = std::io::copy(&mut up_r, &mut c_w);
                    }
                }
            });
        }
    });
    port
}

#[test]
fn http_connect_proxy_tunnels_and_reports_a_closed_port() {
    let proxy = format!("http://127.0.0.1:{}", connect_proxy());
    let echo = tcp_echo(1);
    let o = run(
        PRISE,
        &[
            "connect",
            "--proxy",
            &proxy,
            &format!("tcp://127.0.0.1:{echo}"),
        ],
        b"through CONNECT\n",
    );
    assert_eq!(stdout(&o), "through CONNECT\n", "{o:?}");
    let closed = free_tcp_port();
    let o = run(
        PRISE,
        &[
            "connect",
            "--timeout",
            "5s",
            "--proxy",
            &proxy,
            &format!("tcp://127.0.0.1:{closed}"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(stderr(&o).contains("HTTP 502 Bad Gateway"), "{o:?}");
    // A proxy URL prise cannot use, and a transport no proxy carries.
    let o = run(
        PRISE,
        &["connect", "--proxy", "ftp://h:1", "tcp://127.0.0.1:1"],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = run(
        PRISE,
        &["connect", "--proxy", &proxy, "udp://127.0.0.1:1"],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}
