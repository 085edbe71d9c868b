//! A raw HTTP/1.1 client of `/sse`: writes the request by hand, reads the
//! status and headers, undoes the chunked encoding and splits the body into
//! events as an `EventSource` does.

use crate::WAIT;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One event block of the stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
    /// Comment lines (without the `:`).
    pub comments: Vec<String>,
    /// The `retry:` field, in milliseconds.
    pub retry: Option<u64>,
}

impl Event {
    /// The data as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }

    /// The id as the hub sequence it is.
    ///
    /// # Panics
    /// When there is no id or it is not a number.
    pub fn seq(&self) -> u64 {
        self.id
            .as_deref()
            .expect("an id")
            .parse()
            .expect("numeric id")
    }
}

/// One open `/sse` request and its stream of events.
pub struct SseClient {
    reader: BufReader<TcpStream>,
    /// The response status.
    pub status: u16,
    /// The response headers, names lowercased.
    pub headers: Vec<(String, String)>,
    chunked: bool,
    /// Decoded body not yet split into events.
    pending: String,
    /// The body ended.
    pub ended: bool,
}

/// What an error answer says.
pub struct Refused {
    /// The response status.
    pub status: u16,
    /// The JSON body (a string when it is not JSON).
    pub body: Value,
}

impl SseClient {
    /// `GET <path>` with extra header lines.
    pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self::request(stream, "GET", path, headers).await
    }

    /// `<method> <path>` on a connected stream.
    pub async fn request(
        mut stream: TcpStream,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Self {
        let addr = stream.peer_addr().expect("peer");
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        tokio::time::timeout(WAIT, reader.read_line(&mut line))
            .await
            .expect("status in time")
            .expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await.expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').expect("header line");
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        Self {
            reader,
            status,
            headers,
            chunked,
            pending: String::new(),
            ended: false,
        }
    }

    /// An SSE stream that must open (200, `text/event-stream`).
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut c = Self::get(addr, path, headers).await;
        if c.status != 200 {
            let body = c.body().await;
            panic!("{path}: status {} {body}", c.status);
        }
        assert!(
            c.header("content-type")
                .is_some_and(|t| t.starts_with("text/event-stream")),
            "{:?}",
            c.headers
        );
        c
    }

    /// An answer that must be an error: its status and JSON body.
    pub async fn refused(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Refused {
        let mut c = Self::get(addr, path, headers).await;
        assert_ne!(c.status, 200, "{path} was accepted");
        let body = c.body().await;
        Refused {
            status: c.status,
            body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
        }
    }

    /// A response header by name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The whole body of a (short) answer.
    async fn body(&mut self) -> String {
        if let Some(n) = self.header("content-length") {
            let mut buf = vec![0; n.parse().expect("length")];
            tokio::time::timeout(WAIT, self.reader.read_exact(&mut buf))
                .await
                .expect("body in time")
                .expect("body");
            return String::from_utf8(buf).expect("utf-8");
        }
        while self.read_more().await {}
        std::mem::take(&mut self.pending)
    }

    /// Reads one more piece of the body into `pending`; false at its end.
    async fn read_more(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let read = async {
            if self.chunked {
                let mut size = String::new();
                if self.reader.read_line(&mut size).await.unwrap_or(0) == 0 {
                    return None;
                }
                let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
                let mut buf = vec![0; n + 2];
                self.reader.read_exact(&mut buf).await.ok()?;
                buf.truncate(n);
                (n > 0).then_some(buf)
            } else {
                let mut buf = vec![0; 4096];
                let n = self.reader.read(&mut buf).await.unwrap_or(0);
                buf.truncate(n);
                (n > 0).then_some(buf)
            }
        };
        match tokio::time::timeout(WAIT, read)
            .await
            .expect("body in time")
        {
            Some(bytes) => {
                self.pending
                    .push_str(std::str::from_utf8(&bytes).expect("utf-8"));
                true
            }
            None => {
                self.ended = true;
                false
            }
        }
    }

    /// The next block (event, comment or retry), or None at the end.
    pub async fn block(&mut self) -> Option<Event> {
        loop {
            if let Some(i) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..i + 2).collect();
                let mut e = Event::default();
                let mut data = Vec::new();
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if let Some(c) = line.strip_prefix(':') {
                        e.comments.push(c.trim().to_owned());
                        continue;
                    }
                    let (k, v) = line.split_once(':').unwrap_or((line, ""));
                    let v = v.strip_prefix(' ').unwrap_or(v);
                    match k {
                        "id" => e.id = Some(v.to_owned()),
                        "event" => e.event = v.to_owned(),
                        "data" => data.push(v),
                        "retry" => e.retry = v.parse().ok(),
                        other => panic!("unknown field {other:?} in {block:?}"),
                    }
                }
                e.data = data.join("\n");
                return Some(e);
            }
            if !self.read_more().await {
                return None;
            }
        }
    }

    /// The next event with a name (keep-alives and `retry` skipped).
    pub async fn next(&mut self) -> Event {
        loop {
            let e = self.block().await.expect("the stream is open");
            if !e.event.is_empty() {
                return e;
            }
        }
    }

    /// Events until one named `name`; returns it.
    pub async fn until(&mut self, name: &str) -> Event {
        loop {
            let e = self.next().await;
            if e.event == name {
                return e;
            }
        }
    }

    /// The next `message` event, skipping presence and typing.
    pub async fn message(&mut self) -> Event {
        self.until("message").await
    }
}
