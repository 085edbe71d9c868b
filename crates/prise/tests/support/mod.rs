//! What the bridge, proxy and Socket.IO tests share: processes killed (by
//! pid) when dropped, their output as lines, bounded runs. Every socket is
//! on loopback; every wait has a bound.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub(crate) const PRISE: &str = env!("CARGO_BIN_EXE_prise");
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A process started by a test; killed (by its pid) and reaped when dropped.
pub(crate) struct Proc {
    pub child: Child,
    pub stdout: Option<mpsc::Receiver<String>>,
    pub stderr: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn lines<R: Read + Send + 'static>(r: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub(crate) fn spawn(program: &str, args: &[&str], stdin: Stdio) -> Proc {
    let mut child = Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let stdout = Some(lines(child.stdout.take().unwrap()));
    let stderr = lines(child.stderr.take().unwrap());
    Proc {
        child,
        stdout,
        stderr,
    }
}

pub(crate) fn prise(args: &[&str]) -> Proc {
    spawn(PRISE, args, Stdio::null())
}

impl Proc {
    /// Waits for the "listening on URL" line on stderr and returns the port.
    pub(crate) fn port(&self) -> u16 {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("no 'listening on' line");
            if let Some(url) = line.split("listening on ").nth(1) {
                let port = url.trim_end_matches('/').rsplit(':').next().unwrap();
                return port.parse().unwrap();
            }
        }
    }

    /// The next line of stdout.
    pub(crate) fn next_line(&self) -> String {
        self.stdout
            .as_ref()
            .unwrap()
            .recv_timeout(WAIT)
            .expect("no output line")
    }

    /// Writes to the process's stdin (which must be piped).
    pub(crate) fn send(&mut self, data: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(data).unwrap();
        stdin.flush().unwrap();
    }
}

/// Runs a command to completion with `input` on stdin, bounded in time.
pub(crate) fn run(program: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(WAIT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{program} {args:?} did not finish");
        }
    };
    writer.join().unwrap();
    out
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP echo server on a thread: serves `conns` connections one after
/// another, then stops.
pub(crate) fn tcp_echo(conns: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    port
}

/// Waits until `cond` holds, or panics after [`WAIT`].
pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        thread::sleep(Duration::from_millis(20));
    }
}
