//! What the toolkit tests of this crate share: processes killed (by pid)
//! and reaped when dropped, their output as lines with a bound, bounded
//! runs, peers (Python, openssl, a TCP echo). Every socket is on loopback;
//! every wait has a bound.

#![allow(dead_code)]

use std::io::{Read, Write};
// Each test binary uses its own part of these.
#[allow(unused_imports)]
pub(crate) use prise_testkit::free_tcp_port;
#[allow(unused_imports)]
pub(crate) use prise_testkit::process::{lines, run_to_end as run};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub(crate) const PRISE: &str = env!("CARGO_BIN_EXE_prise");
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A process started by a test; killed (by its pid) when dropped.
pub(crate) struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` with piped stdin, stdout and stderr.
pub(crate) fn spawn(program: &str, args: &[&str]) -> Proc {
    spawn_with(program, args, Stdio::piped())
}

/// Starts `program` with `stdin` as given, stdout and stderr piped.
pub(crate) fn spawn_with(program: &str, args: &[&str], stdin: Stdio) -> Proc {
    let mut child = Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    Proc {
        stdin: child.stdin.take(),
        stdout: lines(child.stdout.take().unwrap()),
        stderr: lines(child.stderr.take().unwrap()),
        child,
    }
}

/// `prise` with `args`, stdin at its end.
pub(crate) fn prise(args: &[&str]) -> Proc {
    spawn_with(PRISE, args, Stdio::null())
}

/// Starts a Python 3 script given as text, with `args`.
pub(crate) fn python(script: &str, args: &[&str]) -> Proc {
    let mut all = vec!["-c", script];
    all.extend(args);
    spawn("python3", &all)
}

impl Proc {
    /// The next line on stdout.
    pub(crate) fn line(&self) -> String {
        self.stdout.recv_timeout(WAIT).expect("no output line")
    }

    /// The first stderr line containing `needle`.
    pub(crate) fn err_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no stderr line with '{needle}'"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits for the "listening on ADDR" line and returns the port.
    pub(crate) fn port(&self) -> u16 {
        let line = self.err_line("listening on ");
        let url = line.split("listening on ").nth(1).unwrap();
        url.trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Writes to stdin.
    pub(crate) fn send(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin closed");
        stdin.write_all(data).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin (end of input).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the exit code, bounded.
    pub(crate) fn exit_code(&mut self) -> i32 {
        self.close_stdin();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "process did not exit");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A self-signed certificate as `openssl req -x509 -subj /CN=localhost`
/// makes it (a CA-marked certificate), optionally with a subject
/// alternative name: returns (cert.pem, key.pem).
pub(crate) fn openssl_self_signed(dir: &std::path::Path, san: bool) -> (String, String) {
    let cert = dir.join("c.pem").to_string_lossy().into_owned();
    let key = dir.join("k.pem").to_string_lossy().into_owned();
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key,
        "-out",
        &cert,
    ];
    if san {
        args.extend(["-addext", "subjectAltName=DNS:localhost"]);
    }
    openssl(&args);
    (cert, key)
}

/// Polls `f` until it returns `Some`, for at most [`WAIT`].
pub(crate) fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not reached in time");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Standard output of a finished run, as text.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error of a finished run, as text.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        thread::sleep(Duration::from_millis(20));
    }
}
