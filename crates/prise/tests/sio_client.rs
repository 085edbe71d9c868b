//! `prise connect sio://` against `prise serve`: two clients in one room,
//! over WebSocket and over long-polling, emitting, acknowledging and
//! receiving; a refused namespace.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::*;

/// `prise serve` on free ports; returns the process and its HTTP port.
fn serve(data: &std::path::Path) -> (Proc, u16) {
    let mut child = Command::new(PRISE)
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .args(["--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prise serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("listening http ")
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let stdout = lines(out);
    let stderr = lines(child.stderr.take().unwrap());
    (
        Proc {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        },
        port,
    )
}

fn field(line: &str, event: &str) -> serde_json::Value {
    let rest = line
        .strip_prefix(event)
        .unwrap_or_else(|| panic!("{line:?} is not a {event} line"));
    serde_json::Deserializer::from_str(rest.trim())
        .into_iter::<serde_json::Value>()
        .next()
        .unwrap()
        .unwrap()
}

#[test]
fn two_clients_emit_ack_and_receive_over_websocket_and_polling() {
    let data = prise_testkit::TestDir::new();
    let (_hub, port) = serve(data.path());
    let url = format!("sio://127.0.0.1:{port}");
    let mut listener = spawn_with(PRISE, &["connect", "--ack", &url], Stdio::piped());
    listener.send(b"join \"lobby\"\n");
    let ack = listener.line();
    assert_eq!(field(&ack, "ack")["room"], "lobby", "{ack}");

    let o = run(
        PRISE,
        &["connect", "--ack", "--transport", "polling", &url],
        b"join \"lobby\"\npublish {\"room\":\"lobby\",\"content\":\"hi from polling\"}\n",
    );
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let acks: Vec<&str> = out.lines().filter(|l| l.starts_with("ack ")).collect();
    assert_eq!(acks.len(), 2, "{out}");
    assert_eq!(field(acks[1], "ack")["room"], "lobby", "{out}");

    // The websocket client sees the other join, then the message.
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("message ")) {
        seen.push(listener.line());
    }
    let msg = seen.last().unwrap();
    assert_eq!(
        field(msg, "message")["content"],
        "hi from polling",
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("userJoined ")),
        "{seen:?}"
    );

    // End of input: the client leaves and exits by itself.
    drop(listener.stdin.take());
    let status = listener.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_refused_namespace_and_bad_input_have_exit_codes() {
    let data = prise_testkit::TestDir::new();
    let (_hub, port) = serve(data.path());
    let o = run(
        PRISE,
        &["connect", &format!("sio://127.0.0.1:{port}/nope")],
        b"",
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(stderr(&o).contains("Invalid namespace"), "{o:?}");
    let url = format!("sio://127.0.0.1:{port}");
    let o = run(PRISE, &["connect", &url], b"say hello world\n");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = run(PRISE, &["connect", "--auth", "[1]", &url], b"");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    // Nothing listening.
    let o = run(
        PRISE,
        &["connect", &format!("sio://127.0.0.1:{}", free_tcp_port())],
        b"",
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
}
