//! Test support: a real `redis-server` on a free loopback port, in its own
//! temporary directory, killed by pid when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a `redis-server` gets to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    /// Its loopback port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    append_only: bool,
}

impl RedisServer {
    /// Starts a server without persistence (`--save ''`).
    ///
    /// # Panics
    /// When `redis-server` is missing or does not start.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a server; with `append_only`, every write is fsynced to an
    /// append-only file in its directory, so a restart keeps the data.
    ///
    /// # Panics
    /// When `redis-server` is missing or does not start.
    pub fn start_with(append_only: bool) -> Self {
        let mut dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let mut s = Self {
                port,
                dir,
                child: None,
                append_only,
            };
            if s.spawn() {
                return s;
            }
            dir = s.take_dir();
        }
        panic!("redis-server did not start on a free port");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    /// Spawns the process on `self.port`; true once it accepts connections.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--logfile", "", "--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if self.append_only {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let mut child = cmd.spawn().expect("redis-server is installed");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(true);
                } else if line.contains("Address already in use") {
                    let _ = tx.send(false);
                }
            }
        });
        let ok = rx.recv_timeout(START_TIMEOUT).unwrap_or(false);
        self.child = Some(child);
        if !ok {
            self.kill();
        }
        ok
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process with SIGKILL (by its pid) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts it again on the same port and directory.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "redis-server restarts on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
