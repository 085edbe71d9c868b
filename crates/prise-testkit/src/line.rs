//! A client of line protocols: the hub's TCP protocol, a line-echo backend,
//! or a process such as `nc` spoken to through its standard streams.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::WAIT;

/// Lines out through `writer`, lines in through `reader`; every read is
/// bounded by the client's wait ([`WAIT`] unless [`LineClient::with_wait`]).
///
/// The halves are public so that a test can write bytes that are not a
/// line (oversize, invalid UTF-8) or close one side.
#[derive(Debug)]
pub struct LineClient<R = OwnedReadHalf, W = OwnedWriteHalf> {
    /// Where lines come from.
    pub reader: BufReader<R>,
    /// Where lines go.
    pub writer: W,
    greeting: Option<String>,
    wait: Duration,
}

impl LineClient {
    /// Connects over TCP (bounded by [`WAIT`]).
    ///
    /// # Panics
    /// When the connection fails or takes longer.
    pub async fn connect(addr: SocketAddr) -> Self {
        tokio::time::timeout(WAIT, Self::try_connect(addr))
            .await
            .unwrap_or_else(|_| panic!("tcp connect to {addr} in time"))
            .unwrap_or_else(|e| panic!("tcp connect to {addr}: {e}"))
    }

    /// Connects over TCP.
    ///
    /// # Errors
    /// When the connection fails, as in a reconnect loop.
    pub async fn try_connect(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self::from_stream(TcpStream::connect(addr).await?))
    }

    /// Connects over TCP from source address `src` (any of 127.0.0.0/8 on
    /// Linux loopback), bounded by [`WAIT`].
    ///
    /// # Panics
    /// When the socket cannot be bound or the connection fails in time.
    pub async fn connect_from(addr: SocketAddr, src: std::net::IpAddr) -> Self {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(SocketAddr::new(src, 0))
            .unwrap_or_else(|e| panic!("bind {src}: {e}"));
        let stream = tokio::time::timeout(WAIT, sock.connect(addr))
            .await
            .unwrap_or_else(|_| panic!("tcp connect to {addr} in time"))
            .unwrap_or_else(|e| panic!("tcp connect to {addr}: {e}"));
        Self::from_stream(stream)
    }

    /// A client on a connected stream (for one made with socket options).
    pub fn from_stream(stream: TcpStream) -> Self {
        let (r, w) = stream.into_split();
        Self::new(r, w)
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> LineClient<R, W> {
    /// A client over any pair of byte streams.
    pub fn new(reader: R, writer: W) -> Self {
        Self {
            reader: BufReader::new(reader),
            writer,
            greeting: None,
            wait: WAIT,
        }
    }

    /// The same client with another bound on each read.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Reads the greeting line the server sends first and checks that it
    /// starts with `prefix`; it is kept for [`LineClient::greeting`].
    ///
    /// # Panics
    /// When no such greeting arrives.
    pub async fn hello(self, prefix: &str) -> Self {
        let mut c = self;
        let greeting = c.line().await.expect("a greeting");
        assert!(greeting.starts_with(prefix), "{greeting}");
        c.greeting = Some(greeting);
        c
    }

    /// [`LineClient::hello`] for a server that may not be ready yet.
    ///
    /// # Errors
    /// `ConnectionReset` when the stream ends without the greeting.
    pub async fn try_hello(self, prefix: &str) -> io::Result<Self> {
        let mut c = self;
        let greeting = c
            .line()
            .await
            .filter(|l| l.starts_with(prefix))
            .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionReset, "no greeting"))?;
        c.greeting = Some(greeting);
        Ok(c)
    }

    /// The greeting read by [`LineClient::hello`].
    ///
    /// # Panics
    /// When no greeting was read.
    pub fn greeting(&self) -> &str {
        self.greeting.as_deref().expect("hello() read a greeting")
    }

    /// Sends `line` and a newline.
    ///
    /// # Panics
    /// When the write fails.
    pub async fn send(&mut self, line: &str) {
        assert!(self.try_send(line).await, "write of {line:?}");
    }

    /// Sends `line` and a newline; false when the connection is gone.
    pub async fn try_send(&mut self, line: &str) -> bool {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_ok()
    }

    /// The next line without its line ending, or `None` at the end of the
    /// stream (or on a read error, as when the peer resets).
    ///
    /// # Panics
    /// When no line and no end arrive within the wait.
    pub async fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        let n = tokio::time::timeout(self.wait, self.reader.read_line(&mut s))
            .await
            .expect("a line arrives in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        Some(s.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Reads lines until one starts with `prefix`; returns it.
    ///
    /// # Panics
    /// When the stream ends first, or a line takes longer than the wait.
    pub async fn until(&mut self, prefix: &str) -> String {
        loop {
            let l = self
                .line()
                .await
                .unwrap_or_else(|| panic!("stream ended before {prefix}"));
            if l.starts_with(prefix) {
                return l;
            }
        }
    }

    /// Sends `line` and returns the first line that starts with `prefix`.
    pub async fn ask(&mut self, line: &str, prefix: &str) -> String {
        self.send(line).await;
        self.until(prefix).await
    }

    /// Sends `line`, reads until a line that starts with the first word of
    /// `start`, and checks that it starts with all of `start`; returns it.
    ///
    /// # Panics
    /// When the answer starts otherwise.
    pub async fn expect(&mut self, line: &str, start: &str) -> String {
        let first = start.split(' ').next().unwrap_or(start);
        let answer = self.ask(line, first).await;
        assert!(answer.starts_with(start), "{line} → {answer}, not {start}…");
        answer
    }

    /// Sends `line` and returns the next line, or `None` when the
    /// connection is closed either way.
    pub async fn reply(&mut self, line: &str) -> Option<String> {
        if !self.try_send(line).await {
            return None;
        }
        self.line().await
    }

    /// Every line until the peer closes.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(l) = self.line().await {
            v.push(l);
        }
        v
    }

    /// Waits (within the wait) for the peer to close; false when data
    /// arrives instead or nothing happens in time.
    pub async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(self.wait, self.reader.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}
