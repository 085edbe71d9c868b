//! A child process whose output is read line by line on threads, so that a
//! test can wait (bounded) for a line, such as the `listening` lines of the
//! `prise` binary, without blocking on a pipe.

use std::io::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long [`ChildProcess`] waits for a line or an exit by default: a
/// process starts slower than a task.
pub const PROCESS_WAIT: Duration = Duration::from_secs(20);

/// How often [`ChildProcess::wait`] looks for the exit.
const EXIT_POLL: Duration = Duration::from_millis(5);

/// A process started by a test; killed (by its pid) and reaped when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    stdout: Option<mpsc::Receiver<String>>,
    stderr: Option<mpsc::Receiver<String>>,
    wait: Duration,
}

/// The addresses `prise serve` reports once it listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeAddrs {
    /// From `listening http ADDR`.
    pub http: SocketAddr,
    /// From `listening tcp ADDR`.
    pub tcp: SocketAddr,
}

impl ChildProcess {
    /// Spawns `cmd`; whichever of its stdout and stderr were set to
    /// `Stdio::piped()` are read line by line.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()));
        let stdout = child.stdout.take().map(lines);
        let stderr = child.stderr.take().map(lines);
        Self {
            child,
            stdout,
            stderr,
            wait: PROCESS_WAIT,
        }
    }

    /// The same process with another bound on each wait.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The next line of stdout.
    ///
    /// # Panics
    /// When none arrives within the wait, or stdout is not piped.
    pub fn stdout_line(&self) -> String {
        self.stdout
            .as_ref()
            .expect("stdout piped")
            .recv_timeout(self.wait)
            .expect("no output line")
    }

    /// Waits for a stdout line that contains `marker`; returns what follows
    /// it.
    ///
    /// # Panics
    /// When none arrives within the wait.
    pub fn stdout_after(&self, marker: &str) -> String {
        self.after(&self.stdout, marker)
    }

    /// Waits for a stderr line that contains `marker`; returns what follows
    /// it.
    ///
    /// # Panics
    /// When none arrives within the wait.
    pub fn stderr_after(&self, marker: &str) -> String {
        self.after(&self.stderr, marker)
    }

    fn after(&self, lines: &Option<mpsc::Receiver<String>>, marker: &str) -> String {
        let lines = lines.as_ref().expect("the stream is piped");
        after(lines, marker, Instant::now() + self.wait)
    }

    /// For `prise serve`: waits (both within one wait) for its
    /// `listening http` and `listening tcp` lines on stdout.
    pub fn serve_addrs(&self) -> ServeAddrs {
        let deadline = Instant::now() + self.wait;
        let stdout = self.stdout.as_ref().expect("stdout piped");
        let http = after(stdout, "listening http ", deadline);
        let tcp = after(stdout, "listening tcp ", deadline);
        ServeAddrs {
            http: http.parse().expect("http address"),
            tcp: tcp.parse().expect("tcp address"),
        }
    }

    /// For the toolkit commands (`echo`, `listen`, `recv`): waits for the
    /// `NAME listening on URL` line on stderr and returns the URL's port.
    pub fn listening_port(&self) -> u16 {
        let url = self.stderr_after("listening on ");
        let port = url.trim_end_matches('/').rsplit(':').next().unwrap_or("");
        port.parse().unwrap_or_else(|_| panic!("a port in {url:?}"))
    }

    /// Stdout from here to its end (bounded per line), each line ending in
    /// a newline.
    pub fn rest_of_stdout(&mut self) -> String {
        let rx = self.stdout.take().expect("stdout piped");
        let mut s = String::new();
        while let Ok(l) = rx.recv_timeout(self.wait) {
            s.push_str(&l);
            s.push('\n');
        }
        s
    }

    /// Its standard input.
    ///
    /// # Panics
    /// When stdin is not piped.
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("stdin piped")
    }

    /// Closes its standard input: the process reads the end of its input.
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits (bounded) for it to exit.
    ///
    /// # Panics
    /// When it is still running at the deadline.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            thread::sleep(EXIT_POLL);
        }
    }

    /// Kills it with SIGKILL, as `kill -9` would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends each line of `r` to the returned channel, from a thread.
pub fn lines<R: Read + Send + 'static>(r: R) -> mpsc::Receiver<String> {
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

/// What follows `marker` in the first line of `rx` that has it.
fn after(rx: &mpsc::Receiver<String>, marker: &str, deadline: Instant) -> String {
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no line with {marker:?} in time"));
        if let Some(rest) = line.split_once(marker).map(|(_, r)| r) {
            return rest.to_owned();
        }
    }
}

/// Runs `program` to completion with `input` on its stdin, bounded by
/// [`PROCESS_WAIT`] (killed by its pid past it).
///
/// # Panics
/// When it cannot be started or does not finish in time.
pub fn run_to_end(program: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin piped");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(PROCESS_WAIT) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{program}: {e}")),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{program} {args:?} did not finish");
        }
    };
    let _ = writer.join();
    out
}
