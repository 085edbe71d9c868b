//! The toolkit against the programs of the classic socket examples (Python,
//! as they are written there) and `prise ss` against sockets the test opens.
//! Everything on loopback; every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::{PRISE, eventually, python, run, spawn, text};

/// The examples' sender: the size as 8 bytes big-endian, then the file.
const SEED_SEND: &str = r#"
import os, socket, sys
def send_file(sock, file_path):
    file_size = os.path.getsize(file_path)
    sock.sendall(file_size.to_bytes(8, byteorder='big'))
    with open(file_path, 'rb') as f:
        sent = 0
        while sent < file_size:
            chunk = f.read(4096)
            if not chunk:
                break
            sock.sendall(chunk)
            sent += len(chunk)
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.connect(('127.0.0.1', int(sys.argv[2])))
send_file(client, sys.argv[1])
client.close()
"#;

/// A receiver of the same format, printing the size and SHA-256 it got.
const SEED_RECV: &str = r#"
import hashlib, socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
def recv_exact(n):
    b = b''
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b
size = int.from_bytes(recv_exact(8), 'big')
h = hashlib.sha256(); got = 0
while got < size:
    d = c.recv(min(65536, size - got))
    if not d:
        break
    h.update(d); got += len(d)
print(got, h.hexdigest(), flush=True)
c.close()
"#;

fn sha256_of(path: &std::path::Path) -> String {
    let o = run("sha256sum", &[&path.to_string_lossy()], b"");
    text(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn test_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("data.bin");
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn recv_plain_takes_the_examples_file_transfer() {
    let dir = prise_testkit::TestDir::new();
    let file = test_file(dir.path());
    let out = dir.path().join("in");
    let mut recv = spawn(
        PRISE,
        &[
            "recv",
            "--plain",
            "tcp://127.0.0.1:0",
            "--out",
            &out.to_string_lossy(),
            "--name",
            "got.bin",
            "--quiet",
        ],
    );
    let port = recv.port().to_string();
    let o = run(
        "python3",
        &["-c", SEED_SEND, &file.to_string_lossy(), &port],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    let line = recv.err_line("received");
    assert!(
        line.contains(&format!("sha256 {}", sha256_of(&file))),
        "{line}"
    );
    assert_eq!(recv.exit_code(), 0);
    assert_eq!(
        std::fs::read(out.join("got.bin")).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

#[test]
fn send_plain_reaches_the_examples_receiver() {
    let dir = prise_testkit::TestDir::new();
    let file = test_file(dir.path());
    let receiver = python(SEED_RECV, &[]);
    let url = format!("tcp://127.0.0.1:{}", receiver.line());
    let o = run(
        PRISE,
        &["send", "--plain", "--quiet", &file.to_string_lossy(), &url],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    let hash = sha256_of(&file);
    assert_eq!(receiver.line(), format!("1500000 {hash}"));
    assert!(text(&o.stderr).contains(&format!("sha256 {hash}")), "{o:?}");
}

#[test]
fn recv_plain_reports_a_short_transfer() {
    let dir = prise_testkit::TestDir::new();
    let out = dir.path().join("in");
    let mut recv = spawn(
        PRISE,
        &[
            "recv",
            "--plain",
            "tcp://127.0.0.1:0",
            "--out",
            &out.to_string_lossy(),
            "--quiet",
        ],
    );
    let mut s = TcpStream::connect(("127.0.0.1", recv.port())).unwrap();
    s.write_all(&100u64.to_be_bytes()).unwrap();
    s.write_all(b"only a few").unwrap();
    drop(s);
    assert_eq!(recv.exit_code(), 8);
    assert!(recv.err_line("closed after").contains("10 of 100 bytes"));
}

#[test]
fn discover_returns_a_url_that_connects() {
    let dport = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let hub = spawn(
        PRISE,
        &[
            "serve",
            "--store",
            "memory",
            "--http",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--announce",
            "lab-hub",
            "--discovery-port",
            &dport,
        ],
    );
    let http = eventually(|| {
        let l = hub.stdout.recv_timeout(support::WAIT).ok()?;
        l.strip_prefix("listening http ").map(str::to_owned)
    });
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
    let found = text(&o.stdout);
    let url = format!("ws://{http}/ws");
    assert!(
        found.contains(&format!("lab-hub\tserve\t{url}\t")),
        "{found}"
    );
    // The URL as printed opens a WebSocket session with the hub.
    let o = run(PRISE, &["probe", &url], b"");
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn self_signed_certificate_is_written_and_trusted_by_python() {
    let dir = prise_testkit::TestDir::new();
    let cert = dir.path().join("server.pem");
    let echo = spawn(
        PRISE,
        &[
            "echo",
            "tls://127.0.0.1:0",
            "--self-signed",
            "--cert-out",
            &cert.to_string_lossy(),
        ],
    );
    let line = echo.err_line("self-signed certificate in");
    let port = echo.port();
    let o = run(
        "openssl",
        &[
            "x509",
            "-in",
            &cert.to_string_lossy(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        b"",
    );
    let fp = text(&o.stdout)
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .to_owned();
    assert!(line.contains(&format!("SHA-256 {fp}")), "{line} / {fp}");
    let client = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(('127.0.0.1', int(sys.argv[2]))) as raw:
    with ctx.wrap_socket(raw, server_hostname='localhost') as s:
        s.sendall(b'verified hello\n')
        print(s.recv(1024).decode().strip(), flush=True)
"#;
    let o = run(
        "python3",
        &["-c", client, &cert.to_string_lossy(), &port.to_string()],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o.stdout).trim(), "verified hello");
}

#[test]
fn ca_accepts_an_openssl_self_signed_server_certificate() {
    let dir = prise_testkit::TestDir::new();
    // As most guides make it: no subject alternative name, CA:TRUE.
    let (cert, key) = support::openssl_self_signed(dir.path(), false);
    let server = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
t = ctx.wrap_socket(c, server_side=True)
t.sendall(b'reply to ' + t.recv(1024))
try:
    t.unwrap()  # close_notify: a clean end of the TLS stream
except (OSError, ssl.SSLError):
    pass
"#;
    let py = python(server, &[&cert, &key]);
    let url = format!("tls://localhost:{}", py.line());
    let o = run(PRISE, &["connect", "--ca", &cert, &url], b"hello\n");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o.stdout), "reply to hello\n");
    // The pin does not stand in for the name.
    let py = python(server, &[&cert, &key]);
    let url = format!("tls://127.0.0.1:{}", py.line());
    let o = run(PRISE, &["connect", "--ca", &cert, &url], b"hello\n");
    assert_eq!(o.status.code(), Some(6), "{o:?}");
}

#[test]
fn listen_answers_a_peer_that_shut_down_its_write_side() {
    let mut listen = spawn(PRISE, &["listen", "tcp://127.0.0.1:0"]);
    let port = listen.port().to_string();
    // The examples' pattern: send, shutdown(SHUT_WR), then wait for the reply.
    let client = r#"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(b'question\n')
s.shutdown(socket.SHUT_WR)
reply = b''
while True:
    d = s.recv(1024)
    if not d:
        break
    reply += d
print(reply.decode().strip(), flush=True)
"#;
    let py = python(client, &[&port]);
    assert_eq!(listen.line(), "question");
    listen.send(b"the answer\n");
    listen.close_stdin();
    assert_eq!(py.line(), "the answer");
    assert_eq!(listen.exit_code(), 0);
}

#[test]
fn connect_keeps_sending_after_the_server_half_closes() {
    let server = r#"
import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.sendall(b'greeting\n')
c.shutdown(socket.SHUT_WR)
got = b''
while True:
    d = c.recv(1024)
    if not d:
        break
    got += d
print(got.decode().strip(), flush=True)
"#;
    let py = python(server, &[]);
    let url = format!("tcp://127.0.0.1:{}", py.line());
    let mut connect = spawn(
        PRISE,
        &[
            "connect",
            "--keepalive",
            "10s,2s,3",
            "--sndbuf",
            "65536",
            "--rcvbuf",
            "65536",
            &url,
        ],
    );
    assert_eq!(connect.line(), "greeting");
    connect.send(b"sent after the server's FIN\n");
    connect.close_stdin();
    assert_eq!(py.line(), "sent after the server's FIN");
    assert_eq!(connect.exit_code(), 0);
}

#[test]
fn linger0_resets_when_input_ends() {
    let server = r#"
import socket
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
data = b''
try:
    while True:
        d = c.recv(1024)
        if not d:
            print('fin', data.decode().strip(), flush=True)
            break
        data += d
except ConnectionResetError:
    print('reset', data.decode().strip(), flush=True)
"#;
    let py = python(server, &[]);
    let url = format!("tcp://127.0.0.1:{}", py.line());
    let o = run(PRISE, &["connect", "--linger0", &url], b"bye\n");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(py.line(), "reset bye");
}

#[test]
fn length_frames_with_newlines_print_as_hex_or_length_prefixed() {
    let server = r#"
import socket, struct
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(2)
print(s.getsockname()[1], flush=True)
for _ in range(2):
    c, _ = s.accept()
    for m in (b'a\nb', b'second'):
        c.sendall(struct.pack('>I', len(m)) + m)
    c.close()
"#;
    let py = python(server, &[]);
    let url = format!("tcp://127.0.0.1:{}", py.line());
    let o = run(PRISE, &["connect", "--framing", "length", &url], b"");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&o.stdout), "610a62\n7365636f6e64\n");
    let o = run(
        PRISE,
        &[
            "connect",
            "--framing",
            "length",
            "--out-framing",
            "length",
            &url,
        ],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(o.stdout, b"\0\0\0\x03a\nb\0\0\0\x06second");
}

/// `prise ss --summary --json` restricted to one port, over netlink or /proc.
fn summary(port: u16, proc: bool) -> serde_json::Value {
    let p = port.to_string();
    let mut args = vec!["ss", "--summary", "--json", "--tcp", "--port", &p];
    if proc {
        args.push("--proc");
    }
    let o = run(PRISE, &args, b"");
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn ss_summary_counts_the_connections_the_test_opened() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Two open connections: four ESTABLISHED ends.
    let open: Vec<_> = (0..2)
        .map(|_| {
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            (c, listener.accept().unwrap().0)
        })
        .collect();
    // The client closes, the server does not: FIN_WAIT2 and CLOSE_WAIT.
    let half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (server_half, _) = listener.accept().unwrap();
    drop(half);
    // The client closes first, then the server: TIME_WAIT on the client side.
    let done = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server_done, _) = listener.accept().unwrap();
    drop(done);
    server_done
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(server_done.read(&mut [0u8; 8]).unwrap(), 0);
    drop(server_done);
    let want = serde_json::json!({
        "LISTEN": 1, "ESTABLISHED": 4, "FIN_WAIT2": 1, "CLOSE_WAIT": 1, "TIME_WAIT": 1,
    });
    // An earlier connection of another test on the same port number may
    // still linger in TIME_WAIT: that state counts at least ours.
    let fits = |got: &serde_json::Value| {
        let (Some(got), Some(want)) = (got["tcp"].as_object(), want.as_object()) else {
            return false;
        };
        got.keys().all(|k| want.contains_key(k))
            && want.iter().all(|(k, n)| match k.as_str() {
                "TIME_WAIT" => got.get(k).and_then(|g| g.as_u64()) >= n.as_u64(),
                _ => got.get(k) == Some(n),
            })
    };
    for proc in [false, true] {
        eventually(|| fits(&summary(port, proc)).then_some(()));
    }
    // The listing has TCP figures from netlink.
    let o = run(
        PRISE,
        &[
            "ss",
            "--json",
            "--tcp",
            "--state",
            "established",
            "--port",
            &port.to_string(),
        ],
        b"",
    );
    let rows: Vec<serde_json::Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r["tcp"]["cwnd"].as_u64().unwrap() > 0),
        "{rows:?}"
    );
    drop((open, server_half));
}
