//! The real `nc` (netcat-openbsd) as a client of the line protocol.

use prise_testkit::server::*;
use prise_testkit::*;
use serde_json::json;
use std::process::Stdio;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// `nc` connected to the server, spoken to through its standard streams.
struct Nc {
    child: Child,
    lines: LineClient<ChildStdout, ChildStdin>,
}

impl Nc {
    fn spawn(server: &TestServer) -> Nc {
        let addr = server.bound.tcp;
        let mut child = Command::new("nc")
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nc (netcat-openbsd) is installed by scripts/setup.sh");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        Nc {
            child,
            lines: LineClient::new(stdout, stdin),
        }
    }

    async fn send(&mut self, line: &str) {
        self.lines.send(line).await;
    }

    async fn until(&mut self, prefix: &str) -> String {
        self.lines.until(prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_netcat_clients_and_a_websocket_chat() {
    let server = spawn_server(&[]).await;
    let mut a = Nc::spawn(&server);
    let mut b = Nc::spawn(&server);
    a.until("HELLO prise/").await;
    b.until("HELLO prise/").await;
    a.send("NICK ann").await;
    a.send("JOIN lobby").await;
    a.until("OK lobby").await;
    b.send("NICK bea").await;
    b.send("JOIN lobby").await;
    b.until("OK lobby").await;
    let mut web = server.ws().await;
    web.send_json(json!({"type": "join", "room": "lobby", "name": "web"}))
        .await;
    web.until("ack").await;

    a.send("SAY lobby hi from netcat").await;
    assert_eq!(b.until("MSG").await, "MSG lobby 1 ann hi from netcat");
    assert_eq!(
        web.until("message").await["message"]["content"],
        "hi from netcat"
    );
    web.send_json(json!({"type": "message", "room": "lobby", "content": "hi nc"}))
        .await;
    assert_eq!(a.until("MSG lobby 2").await, "MSG lobby 2 web hi nc");
    assert_eq!(b.until("MSG lobby 2").await, "MSG lobby 2 web hi nc");

    a.send("PING").await;
    assert_eq!(a.until("PONG").await, "PONG");
    a.send("TIME").await;
    assert!(a.until("TIME ").await.ends_with('Z'));
    a.send("NOPE").await;
    assert!(a.until("ERR").await.starts_with("ERR UNKNOWN_COMMAND"));
    a.send(&"y".repeat(20_000)).await;
    assert!(a.until("ERR").await.starts_with("ERR LINE_TOO_LONG"));
    a.send("QUIT").await;
    assert_eq!(a.until("BYE").await, "BYE");
    // The server closed its side; nc exits once its own input ends too.
    let Nc { mut child, lines } = a;
    let (mut stdout, stdin) = (lines.reader, lines.writer);
    drop(stdin);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    assert_eq!(
        stdout.read_line(&mut rest).await.unwrap(),
        0,
        "nothing after BYE: {rest:?}"
    );
    drop(b);
    server.stop().await;
}
