//! The toolkit commands as a user runs them, against real peers: netcat
//! (openbsd), socat, openssl s_client/s_server, and prise itself. Every
//! socket is on loopback; every wait is on an event with a bound.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use prise_testkit::process::{PROCESS_WAIT, run_to_end as run};
use prise_testkit::{ChildProcess, TestDir, free_tcp_port, free_udp_port};

const PRISE: &str = env!("CARGO_BIN_EXE_prise");
const WAIT: Duration = PROCESS_WAIT;
/// Quick retries while a peer started just before is still getting ready.
const FAST_RETRY: [&str; 6] = [
    "--retry",
    "50",
    "--retry-base",
    "10ms",
    "--retry-cap",
    "50ms",
];

/// Starts `program` with stdout and stderr read line by line.
fn spawn(program: &str, args: &[&str], stdin: Stdio) -> ChildProcess {
    ChildProcess::spawn(
        Command::new(program)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

fn prise(args: &[&str]) -> ChildProcess {
    spawn(PRISE, args, Stdio::null())
}

/// `prise connect` with `flags`, [`FAST_RETRY`] and `url`.
fn connect_args<'a>(flags: &[&'a str], url: &'a str) -> Vec<&'a str> {
    let mut args = vec!["connect"];
    args.extend_from_slice(flags);
    args.extend(FAST_RETRY);
    args.push(url);
    args
}

/// `prise discover` succeeded and listed `entry`.
fn assert_discovered(o: &Output, entry: &str) {
    assert!(o.status.success(), "{o:?}");
    let text = stdout(o);
    assert!(text.contains(entry), "{text}");
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A test CA and a certificate it signed for localhost and 127.0.0.1:
/// returns (ca.pem, cert.pem, key.pem).
fn make_cert(dir: &Path) -> (String, String, String) {
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=prise test CA"];
    ca.extend(ec);
    let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    openssl(&ca);
    let (key, csr, cert, ext) = (p("key.pem"), p("leaf.csr"), p("cert.pem"), p("leaf.ext"));
    let mut leaf = vec!["req", "-subj", "/CN=localhost"];
    leaf.extend(ec);
    leaf.extend(["-keyout", &key, "-out", &csr]);
    openssl(&leaf);
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (ca_pem, cert, key)
}

/// `openssl s_server -rev` (each line answered reversed) with `flags`, on a
/// free port: (port, server).
fn s_server_rev(flags: &[&str], cert: &str, key: &str) -> (u16, ChildProcess) {
    let port = free_tcp_port();
    let accept = format!("127.0.0.1:{port}");
    let mut args = vec!["s_server", "-rev"];
    args.extend_from_slice(flags);
    args.extend(["-accept", &accept, "-cert", cert, "-key", key]);
    (port, spawn("openssl", &args, Stdio::null()))
}

#[test]
fn connect_to_prise_echo_over_tcp_udp_ws() {
    let tcp = prise(&["echo", "tcp://127.0.0.1:0"]);
    let udp = prise(&["echo", "udp://127.0.0.1:0"]);
    let ws = prise(&["echo", "ws://127.0.0.1:0"]);
    let url = format!("tcp://127.0.0.1:{}", tcp.listening_port());
    let o = run(PRISE, &["connect", &url], b"hello\nworld\n");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "hello\nworld\n");

    let url = format!("udp://127.0.0.1:{}", udp.listening_port());
    let o = run(
        PRISE,
        &["connect", "--udp-wait", "300ms", &url],
        b"one\ntwo\n",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "one\ntwo\n");

    let url = format!("ws://127.0.0.1:{}/echo", ws.listening_port());
    let o = run(PRISE, &["connect", &url], "é\nsecond line\n".as_bytes());
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "é\nsecond line\n");
    // Binary messages, and events as JSON lines.
    let o = run(PRISE, &["connect", "--binary", "--json", &url], b"bin\n");
    let events: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let recv = events.iter().find(|e| e["event"] == "recv").unwrap();
    assert_eq!(
        (recv["kind"].as_str(), recv["text"].as_str()),
        (Some("binary"), Some("bin"))
    );
    let close = events.iter().find(|e| e["event"] == "close").unwrap();
    assert_eq!(close["code"], 1000);
}

#[test]
fn echo_serves_netcat_and_socat_clients() {
    let tcp = prise(&["echo", "tcp://127.0.0.1:0"]);
    let udp = prise(&["echo", "udp://127.0.0.1:0"]);
    let port = tcp.listening_port().to_string();
    let o = run("nc", &["-N", "127.0.0.1", &port], b"from nc\n");
    assert_eq!(stdout(&o), "from nc\n");
    let o = run(
        "socat",
        &["-", &format!("TCP:127.0.0.1:{port}")],
        b"from socat\n",
    );
    assert_eq!(stdout(&o), "from socat\n");
    let target = format!("UDP:127.0.0.1:{}", udp.listening_port());
    let o = run("socat", &["-t", "0.5", "-", &target], b"datagram\n");
    assert_eq!(stdout(&o), "datagram\n");
}

#[test]
fn listen_takes_a_netcat_peer_and_exits_when_it_leaves() {
    // Standard input at its end: the session ends with the peer's.
    let mut l = spawn(PRISE, &["listen", "tcp://127.0.0.1:0"], Stdio::null());
    let port = l.listening_port().to_string();
    let o = run("nc", &["-N", "127.0.0.1", &port], b"line one\nline two\n");
    assert!(o.status.success());
    assert_eq!(l.rest_of_stdout(), "line one\nline two\n");
    assert!(l.wait().success());
}

#[test]
fn connect_half_closes_and_reads_the_reply() {
    // The server answers only after it has read everything (end of stream).
    let port = free_tcp_port();
    let _server = spawn(
        "socat",
        &[
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
            "SYSTEM:'wc -c'",
        ],
        Stdio::null(),
    );
    let url = format!("tcp://127.0.0.1:{port}");
    let o = run(PRISE, &connect_args(&[], &url), b"12345\n");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), "6");
}

#[test]
fn length_framing_on_the_wire() {
    // A socat peer dumps what it receives to a file: 4-byte prefixes.
    let dir = TestDir::new();
    let dump = dir.path().join("wire");
    let port = free_tcp_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut server = spawn(
        "socat",
        &[
            "-u",
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
            &format!("CREATE:{}", dump.display()),
        ],
        Stdio::null(),
    );
    let o = run(
        PRISE,
        &connect_args(&["--framing", "length"], &url),
        b"hi\nabc\n",
    );
    assert!(o.status.success(), "{o:?}");
    assert!(server.wait().success());
    assert_eq!(std::fs::read(&dump).unwrap(), b"\0\0\0\x02hi\0\0\0\x03abc");
}

#[test]
fn hex_dump_on_stderr() {
    let tcp = prise(&["echo", "tcp://127.0.0.1:0"]);
    let url = format!("tcp://127.0.0.1:{}", tcp.listening_port());
    let o = run(PRISE, &["connect", "--hex", &url], b"Hi!\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("> sent 4 bytes"), "{err}");
    assert!(err.contains("00000000  48 69 21 0a"), "{err}");
    assert!(err.contains("< received 4 bytes"), "{err}");
    assert!(err.contains("|Hi!.|"), "{err}");
}

#[test]
fn tls_interop_with_openssl() {
    let dir = TestDir::new();
    let (ca, cert, key) = make_cert(dir.path());
    // prise connect -> openssl s_server (-rev answers each line reversed).
    let (port, _server) = s_server_rev(&[], &cert, &key);
    let url = format!("tls://localhost:{port}");
    let args = connect_args(&["--ca", &ca, "--idle-timeout", "2s"], &url);
    let o = run(PRISE, &args, b"hello\n");
    assert!(stdout(&o).contains("olleh"), "{o:?}");

    // Verification is on by default: the system roots do not know this CA.
    let o = run(PRISE, &["connect", &url], b"");
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("certificate invalid"));

    // openssl s_client -> prise listen tls://
    // Standard input stays open: a TLS close_notify from the listener
    // would make s_client quit before it sends.
    let mut l = spawn(
        PRISE,
        &[
            "listen",
            "tls://127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        Stdio::piped(),
    );
    let port = l.listening_port();
    let o = run(
        "openssl",
        &[
            "s_client",
            "-quiet",
            "-no_ign_eof",
            "-verify_return_error",
            "-CAfile",
            &ca,
            "-servername",
            "localhost",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ],
        b"over tls\n",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(l.stdout_line(), "over tls");
    // The peer has gone; the session ends once input ends too.
    l.close_stdin();
    assert!(l.wait().success());
}

#[test]
fn self_signed_tls_and_wss_echo() {
    let dir = TestDir::new();
    let (a, b) = (dir.arg("a.pem"), dir.arg("b.pem"));
    let tls = prise(&[
        "echo",
        "tls://127.0.0.1:0",
        "--self-signed",
        "--cert-out",
        &a,
    ]);
    let wss = prise(&[
        "echo",
        "wss://127.0.0.1:0",
        "--self-signed",
        "--cert-out",
        &b,
    ]);
    let url = format!("tls://127.0.0.1:{}", tls.listening_port());
    let o = run(PRISE, &["connect", "--insecure", &url], b"secret\n");
    assert_eq!(stdout(&o), "secret\n", "{o:?}");
    let url = format!("wss://127.0.0.1:{}/", wss.listening_port());
    let o = run(PRISE, &["connect", "--insecure", &url], b"ws secret\n");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "ws secret\n");
}

#[test]
fn retry_reaches_a_port_that_opens_later() {
    let port = free_tcp_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut c = spawn(
        PRISE,
        &[
            "connect",
            "--json",
            "--retry-forever",
            "--retry-base",
            "20ms",
            "--retry-cap",
            "100ms",
            &url,
        ],
        Stdio::null(),
    );
    // Wait until the client has failed at least twice, then open the port.
    let mut retries = 0;
    while retries < 2 {
        let e: serde_json::Value = serde_json::from_str(&c.stdout_line()).unwrap();
        if e["event"] == "retry" {
            assert!(e["error"].as_str().unwrap().contains("refused"));
            retries += 1;
        }
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.write_all(b"welcome\n").unwrap();
    drop(peer);
    let mut seen = Vec::new();
    loop {
        let e: serde_json::Value = serde_json::from_str(&c.stdout_line()).unwrap();
        seen.push(e["event"].as_str().unwrap().to_owned());
        if e["event"] == "recv" {
            assert_eq!(e["text"], "welcome\n");
            break;
        }
    }
    assert!(seen.contains(&"connected".to_owned()), "{seen:?}");
    assert!(c.wait().success());
}

#[test]
fn backoff_delays_stay_within_jittered_bounds() {
    let port = free_tcp_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let start = Instant::now();
    let o = run(
        PRISE,
        &[
            "connect",
            "--json",
            "--retry",
            "6",
            "--retry-base",
            "20ms",
            "--retry-cap",
            "80ms",
            &url,
        ],
        b"",
    );
    let wall = start.elapsed();
    assert_eq!(o.status.code(), Some(3), "refused: {o:?}");
    let events: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let attempts: Vec<f64> = events
        .iter()
        .filter(|e| e["event"] == "attempt")
        .map(|e| e["t_ms"].as_f64().unwrap())
        .collect();
    let delays: Vec<f64> = events
        .iter()
        .filter(|e| e["event"] == "retry")
        .map(|e| e["delay_ms"].as_f64().unwrap())
        .collect();
    assert_eq!((attempts.len(), delays.len()), (7, 6));
    for (n, d) in delays.iter().enumerate() {
        let ceiling = (20.0 * f64::from(1u32 << n)).min(80.0);
        assert!(*d >= 1.0 && *d <= ceiling, "retry {n}: {d} ms > {ceiling}");
        // The next attempt really waited at least that long.
        assert!(attempts[n + 1] - attempts[n] >= *d, "retry {n} came early");
    }
    // Measured from outside: the run took at least the sum of the delays.
    assert!(wall.as_secs_f64() * 1000.0 >= delays.iter().sum::<f64>());
}

#[test]
fn failures_have_one_line_and_an_exit_code() {
    let port = free_tcp_port();
    let o = run(PRISE, &["connect", &format!("tcp://127.0.0.1:{port}")], b"");
    assert_eq!(o.status.code(), Some(3));
    // The failure is the last line of stderr, and a single one.
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.lines().last().unwrap(),
        format!("prise: connection refused by 127.0.0.1:{port}")
    );
    assert!(err.ends_with('\n'));
    let o = run(PRISE, &["connect", "tcp://no-such-host.invalid:80"], b"");
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let o = run(PRISE, &["connect", "http://x:1"], b"");
    assert_eq!(o.status.code(), Some(2));
    // A server that accepts but never answers the WebSocket handshake.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://127.0.0.1:{}/", silent.local_addr().unwrap().port());
    let o = run(PRISE, &["connect", "--timeout", "200ms", &url], b"");
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines().last().unwrap().starts_with("prise: timed out"),
        "{err}"
    );
}

#[test]
fn send_and_recv_a_file() {
    let dir = TestDir::new();
    let src = dir.path().join("notes.txt");
    std::fs::write(&src, b"some content\n".repeat(1000)).unwrap();
    let out = dir.path().join("in");
    let out_s = out.to_string_lossy().into_owned();
    let mut r = prise(&["recv", "tcp://127.0.0.1:0", "--out", &out_s]);
    let url = format!("tcp://127.0.0.1:{}", r.listening_port());
    let o = run(PRISE, &["send", src.to_str().unwrap(), &url], b"");
    assert!(o.status.success(), "{o:?}");
    assert!(r.wait().success());
    assert_eq!(
        std::fs::read(out.join("notes.txt")).unwrap(),
        std::fs::read(&src).unwrap()
    );
}

#[test]
fn send_and_recv_a_file_over_tls() {
    let dir = TestDir::new();
    let src = dir.path().join("data.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let out = dir.path().join("in");
    let out_s = out.to_string_lossy().into_owned();
    let cert = dir.path().join("recv.pem").to_string_lossy().into_owned();
    let mut r = prise(&[
        "recv",
        "tls://127.0.0.1:0",
        "--self-signed",
        "--cert-out",
        &cert,
        "--out",
        &out_s,
        "--quiet",
    ]);
    let url = format!("tls://127.0.0.1:{}", r.listening_port());
    let o = run(
        PRISE,
        &["send", src.to_str().unwrap(), &url, "--insecure", "--quiet"],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    assert!(r.wait().success());
    assert!(std::fs::read(out.join("data.bin")).unwrap() == data);
}

#[test]
fn probe_reports_up_and_down() {
    let ws = prise(&["echo", "ws://127.0.0.1:0"]);
    let up = format!("ws://127.0.0.1:{}/", ws.listening_port());
    let o = run(
        PRISE,
        &["probe", "--json", "-c", "3", "-i", "10ms", &up],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    let r: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!((r["up"].as_bool(), r["ok"].as_u64()), (Some(true), Some(3)));
    assert!(r["ws_ms"]["p99"].as_f64().unwrap() >= r["ws_ms"]["min"].as_f64().unwrap());
    let down = format!("tcp://127.0.0.1:{}", free_tcp_port());
    let o = run(PRISE, &["probe", &up, &down], b"");
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains(" up 1/1") && text.contains(" DOWN 0/1"),
        "{text}"
    );
}

#[test]
fn discover_finds_an_announced_echo_server() {
    let dport = free_udp_port().to_string();
    let echo = prise(&[
        "echo",
        "tcp://127.0.0.1:0",
        "--announce",
        "lab-echo",
        "--discovery-port",
        &dport,
    ]);
    let port = echo.listening_port();
    let o = run(
        PRISE,
        &[
            "discover",
            "--port",
            &dport,
            "--broadcast",
            "127.255.255.255",
            "--wait",
            "500ms",
        ],
        b"",
    );
    assert_discovered(&o, &format!("lab-echo\techo\ttcp://127.0.0.1:{port}\t"));
}

/// Two network namespaces joined by a veth pair (10.213.7.1 and .2/24),
/// created for one test and deleted when dropped.
struct NetnsPair {
    a: String,
    b: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

impl NetnsPair {
    fn new(tag: &str) -> Self {
        let id = std::process::id();
        let pair = Self {
            a: format!("prise-{tag}-{id}-a"),
            b: format!("prise-{tag}-{id}-b"),
        };
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "link", "add", "veth-a", "netns", &pair.a, "type", "veth", "peer", "name", "veth-b",
            "netns", &pair.b,
        ]);
        for (ns, dev, addr) in [
            (&pair.a, "veth-a", "10.213.7.1/24"),
            (&pair.b, "veth-b", "10.213.7.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "brd", "+", "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn discover_across_two_network_namespaces() {
    let pair = NetnsPair::new("disc");
    let echo = spawn(
        "ip",
        &[
            "netns",
            "exec",
            &pair.a,
            PRISE,
            "echo",
            "tcp://0.0.0.0:0",
            "--announce",
            "ns-echo",
        ],
        Stdio::null(),
    );
    let port = echo.listening_port();
    let o = run(
        "ip",
        &[
            "netns",
            "exec",
            &pair.b,
            PRISE,
            "discover",
            "--broadcast",
            "10.213.7.255",
            "--wait",
            "1s",
        ],
        b"",
    );
    // The host comes from the answer's source address, across the link.
    assert_discovered(&o, &format!("ns-echo\techo\ttcp://10.213.7.1:{port}\t"));
    // And the announced service is reachable from the other namespace.
    let url = format!("tcp://10.213.7.1:{port}");
    let o = run(
        "ip",
        &["netns", "exec", &pair.b, PRISE, "connect", &url],
        b"across\n",
    );
    assert_eq!(stdout(&o), "across\n", "{o:?}");
    drop(echo);
}

#[test]
fn client_certificate_for_openssl_s_server() {
    let dir = TestDir::new();
    let (ca, cert, key) = make_cert(dir.path());
    // -Verify: the server demands a client certificate signed by the CA.
    let verify = ["-Verify", "1", "-verify_return_error", "-CAfile", &ca];
    let (port, _server) = s_server_rev(&verify, &cert, &key);
    let url = format!("tls://localhost:{port}");
    let flags = [
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--idle-timeout",
        "2s",
    ];
    let o = run(PRISE, &connect_args(&flags, &url), b"mutual\n");
    assert!(stdout(&o).contains("lautum"), "{o:?}");
}

#[test]
fn keep_open_serves_peers_at_once_and_broadcasts_input() {
    let mut l = spawn(
        PRISE,
        &["listen", "--keep-open", "--json", "tcp://127.0.0.1:0"],
        Stdio::piped(),
    );
    let port = l.listening_port();
    let mut a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    a.write_all(b"from a\n").unwrap();
    b.write_all(b"from b\n").unwrap();
    let mut accepted = 0;
    let mut texts = Vec::new();
    while accepted < 2 || texts.len() < 2 {
        let e: serde_json::Value = serde_json::from_str(&l.stdout_line()).unwrap();
        match e["event"].as_str().unwrap() {
            "accepted" => accepted += 1,
            "recv" => texts.push(e["text"].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
    texts.sort();
    assert_eq!(texts, ["from a\n", "from b\n"]);
    // What is typed goes to every connected peer.
    l.stdin().write_all(b"to all\n").unwrap();
    for peer in [&mut a, &mut b] {
        peer.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = [0u8; 7];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"to all\n");
    }
}
