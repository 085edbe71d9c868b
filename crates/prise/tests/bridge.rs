//! `prise bridge`, `--exec` and `--reconnect` with real peers: a browser's
//! WebSocket API (Node's), netcat, shell pipelines, and TCP servers on
//! threads of the test.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Stdio;
use std::thread;

use support::*;

/// The browser's WebSocket API: text and binary messages through a bridge
/// to a TCP echo, each answer awaited before the next, then a clean close.
const BROWSER_CLIENT: &str = r#"
const ws = new WebSocket(process.argv[1]);
ws.binaryType = "arraybuffer";
const got = [];
const next = () => new Promise((ok) => (ws.onmessage = (e) => ok(e.data)));
ws.onerror = () => { console.log("error"); process.exit(1); };
ws.onopen = async () => {
  ws.send("hello bridge");
  const a = await next();
  got.push(typeof a === "string" ? "text:" + a : "binary:" + Buffer.from(a).toString());
  ws.send(new Uint8Array([0, 1, 2, 255]));
  const b = await next();
  got.push("binary-bytes:" + Array.from(new Uint8Array(b)).join(","));
  ws.onclose = (e) => { got.push("close:" + e.code); console.log(got.join("\n")); };
  ws.close(1000);
};
"#;

#[test]
fn a_browser_websocket_reaches_a_tcp_echo_through_the_bridge() {
    let echo = tcp_echo(1);
    let bridge = prise(&[
        "bridge",
        "ws://127.0.0.1:0",
        &format!("tcp://127.0.0.1:{echo}"),
    ]);
    let url = format!("ws://127.0.0.1:{}/", bridge.port());
    let o = run(
        "node",
        &[
            "--no-warnings",
            "--experimental-websocket",
            "-e",
            BROWSER_CLIENT,
            &url,
        ],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o),
        "binary:hello bridge\nbinary-bytes:0,1,2,255\nclose:1000\n",
        "{}",
        stderr(&o)
    );
}

#[test]
fn bridge_text_frames_and_framing_per_side() {
    // tcp (lines) ⇄ ws echo: each line becomes one text message and back.
    let echo = prise(&["echo", "ws://127.0.0.1:0"]);
    let bridge = prise(&[
        "bridge",
        "--text",
        "--framing",
        "listen=lines",
        "tcp://127.0.0.1:0",
        &format!("ws://127.0.0.1:{}/", echo.port()),
    ]);
    let port = bridge.port().to_string();
    let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"one\ntwo\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    for want in ["one\n", "two\n"] {
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, want);
    }
    // Half-close: the bridge closes the WebSocket, and then our stream.
    s.shutdown(Shutdown::Write).unwrap();
    line.clear();
    assert_eq!(r.read_line(&mut line).unwrap(), 0);
}

#[test]
fn listen_exec_runs_a_shell_pipeline_per_connection() {
    let listen = prise(&[
        "listen",
        "--keep-open",
        "--exec",
        "tr a-z A-Z | rev",
        "tcp://127.0.0.1:0",
    ]);
    let port = listen.port().to_string();
    for word in ["abc", "hello"] {
        // netcat half-closes after its input; the answer still comes back.
        let o = run(
            "nc",
            &["-N", "127.0.0.1", &port],
            format!("{word}\n").as_bytes(),
        );
        let want: String = word.to_uppercase().chars().rev().collect();
        assert_eq!(stdout(&o), format!("{want}\n"), "{o:?}");
    }
    // Each pipeline ended with its connection: no child is left.
    let pid = listen.child.id();
    wait_until("the pipelines to be reaped", || children(pid).is_empty());
}

/// Direct children of `pid`, started by any of its threads (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn exec_children_are_killed_when_the_peer_resets() {
    let listen = prise(&[
        "listen",
        "--exec",
        "echo started; sleep 60; echo never",
        "tcp://127.0.0.1:0",
    ]);
    let port = listen.port();
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let shell = children(listen.child.id());
    assert_eq!(shell.len(), 1, "one shell per connection");
    let group: Vec<u32> = std::iter::once(shell[0])
        .chain(children(shell[0]))
        .collect();
    // Close with a reset: the connection fails, the process group goes.
    socket2::SockRef::from(&s)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop((s, r));
    wait_until("the process group to be killed", || {
        !group.iter().any(|&p| is_running(p))
    });
}

#[test]
fn connect_exec_wires_a_process_to_the_socket() {
    let echo = tcp_echo(1);
    let o = run(
        PRISE,
        &[
            "connect",
            "--exec",
            r#"echo ping; read answer; echo "got $answer" >&2"#,
            &format!("tcp://127.0.0.1:{echo}"),
        ],
        b"",
    );
    assert!(o.status.success(), "{o:?}");
    assert!(stderr(&o).contains("got ping"), "{o:?}");
}

/// A server that answers each of its first connections with one line and
/// closes it; the last connection is answered and kept until the peer ends.
fn dropping_server(answers: &'static [&'static str]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for (i, answer) in answers.iter().enumerate() {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let _ = s.write_all(answer.as_bytes());
            if i + 1 == answers.len() {
                s.set_read_timeout(Some(WAIT)).unwrap();
                let _ = s.read(&mut [0u8; 64]);
            }
        }
    });
    port
}

#[test]
fn bridge_reconnect_redials_a_dropped_target() {
    let target = dropping_server(&["one\n", "two\n", "three\n"]);
    let bridge = prise(&[
        "bridge",
        "--reconnect",
        "--retry-base",
        "20ms",
        "tcp://127.0.0.1:0",
        &format!("tcp://127.0.0.1:{target}"),
    ]);
    let s = TcpStream::connect(("127.0.0.1", bridge.port())).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = BufReader::new(s);
    let mut got = String::new();
    for _ in 0..3 {
        r.read_line(&mut got).unwrap();
    }
    assert_eq!(got, "one\ntwo\nthree\n");
}

#[test]
fn connect_reconnect_keeps_stdin_across_drops() {
    let target = dropping_server(&["one\n", "two\n"]);
    let mut c = spawn_with(
        PRISE,
        &[
            "connect",
            "--reconnect",
            "--retry-base",
            "20ms",
            &format!("tcp://127.0.0.1:{target}"),
        ],
        Stdio::piped(),
    );
    assert_eq!(c.line(), "one");
    assert_eq!(c.line(), "two");
    // End of input ends the session; no redial after that.
    drop(c.stdin.take());
    let status = c.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn bridge_udp_sessions_per_peer() {
    let echo = prise(&["echo", "tcp://127.0.0.1:0"]);
    let bridge = prise(&[
        "bridge",
        "udp://127.0.0.1:0",
        &format!("tcp://127.0.0.1:{}", echo.port()),
    ]);
    let port = bridge.port();
    let mut socks = Vec::new();
    for name in ["a", "b"] {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.send_to(format!("datagram {name}").as_bytes(), ("127.0.0.1", port))
            .unwrap();
        socks.push((name, s));
    }
    for (name, s) in &socks {
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("datagram {name}").as_bytes());
    }
}

#[test]
fn bridge_refuses_bad_usage_and_reports_an_unreachable_target() {
    let o = run(
        PRISE,
        &["bridge", "tcp://127.0.0.1:0", "sio://127.0.0.1:1"],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = run(
        PRISE,
        &[
            "bridge",
            "--framing",
            "side=lines",
            "tcp://127.0.0.1:0",
            "tcp://127.0.0.1:1",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    // A target that refuses: the client's connection is closed, the bridge stays.
    let closed = free_tcp_port();
    let bridge = prise(&[
        "bridge",
        "tcp://127.0.0.1:0",
        &format!("tcp://127.0.0.1:{closed}"),
    ]);
    let port = bridge.port();
    for _ in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(s.read(&mut [0u8; 8]).unwrap_or(0), 0);
    }
}

#[test]
fn exec_children_end_when_listen_is_terminated() {
    let mut listen = prise(&[
        "listen",
        "--keep-open",
        "--exec",
        "echo started; sleep 60",
        "tcp://127.0.0.1:0",
    ]);
    let s = TcpStream::connect(("127.0.0.1", listen.port())).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let shell = children(listen.child.id());
    let group: Vec<u32> = shell.iter().copied().chain(children(shell[0])).collect();
    let pid = listen.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = listen.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    wait_until("the process group to end", || {
        !group.iter().any(|&p| is_running(p))
    });
}
