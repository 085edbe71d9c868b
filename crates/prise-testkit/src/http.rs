//! One raw HTTP/1.1 request per connection (`Connection: close`), written
//! by hand so that tests see exactly what goes over the wire and can send
//! it over any stream (TLS included).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::WAIT;

/// A request to be sent with [`HttpRequest::send`] or
/// [`HttpRequest::send_on`].
#[derive(Debug, Clone)]
pub struct HttpRequest {
    method: String,
    path: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    wait: Duration,
}

impl HttpRequest {
    /// `method path` with no body.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            host: None,
            headers: Vec::new(),
            body: Vec::new(),
            wait: WAIT,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// `POST path` with `body`.
    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", path).body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds headers.
    pub fn headers(self, headers: &[(&str, &str)]) -> Self {
        headers.iter().fold(self, |r, (k, v)| r.header(k, v))
    }

    /// Sets the body (its length goes in `Content-Length`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets `Host` (by default the address sent to, or `localhost` on a
    /// stream).
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Bounds the wait for the whole response (default [`WAIT`]).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sends the request on a fresh TCP connection to `addr`.
    ///
    /// # Panics
    /// When the connection fails or the response takes longer than the wait.
    pub async fn send(self, addr: SocketAddr) -> HttpResponse {
        let stream = tokio::time::timeout(self.wait, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("http connect to {addr} in time"))
            .unwrap_or_else(|e| panic!("http connect to {addr}: {e}"));
        let host = self.host.clone().unwrap_or_else(|| addr.to_string());
        self.host(&host).send_on(stream).await
    }

    /// Sends the request on `stream` and reads the response to the end of
    /// the stream.
    ///
    /// Write and read errors end the exchange without failing it: a server
    /// may answer (413, 429) before it reads a large body, or drop a
    /// connection it refuses; the response then holds what arrived (status
    /// 0 when nothing did).
    ///
    /// # Panics
    /// When the response does not end within the wait.
    pub async fn send_on<S: AsyncRead + AsyncWrite + Unpin>(self, mut stream: S) -> HttpResponse {
        let mut req = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.method,
            self.path,
            self.host.as_deref().unwrap_or("localhost"),
            self.body.len()
        );
        for (k, v) in &self.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut raw = Vec::new();
        let exchange = async {
            if stream.write_all(req.as_bytes()).await.is_ok() {
                let _ = stream.write_all(&self.body).await;
            }
            let _ = stream.read_to_end(&mut raw).await;
        };
        tokio::time::timeout(self.wait, exchange)
            .await
            .unwrap_or_else(|_| panic!("response to {} {} in time", self.method, self.path));
        HttpResponse::parse(&raw)
    }
}

/// `GET path` on a fresh connection to `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    HttpRequest::get(path).send(addr).await
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code; 0 when no status line arrived.
    pub status: u16,
    /// Status line and headers, without the blank line.
    pub head: String,
    /// The body, with chunked transfer coding removed.
    pub body: Vec<u8>,
}

impl HttpResponse {
    fn parse(raw: &[u8]) -> Self {
        let (head, body) = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => (&raw[..i], &raw[i + 4..]),
            None => (raw, &[][..]),
        };
        let head = String::from_utf8_lossy(head).into_owned();
        let status = head
            .strip_prefix("HTTP/1.")
            .and_then(|h| h.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut r = Self {
            status,
            head,
            body: body.to_vec(),
        };
        if r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            r.body = dechunk(body);
        }
        r
    }

    /// The body as text (`<binary>` when it is not UTF-8).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<binary>")
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("json body ({e}): {}", self.text()))
    }

    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Removes chunked transfer coding; what does not parse is kept as is.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let whole = body;
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return whole.to_vec();
        };
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size else {
            return whole.to_vec();
        };
        body = &body[eol + 2..];
        if size == 0 {
            return out;
        }
        if body.len() < size {
            return whole.to_vec();
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_headers_and_a_chunked_body() {
        let r = HttpResponse::parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.text(), "{\"a\":1}");
    }

    #[test]
    fn nothing_is_status_zero() {
        let r = HttpResponse::parse(b"");
        assert_eq!((r.status, r.text()), (0, ""));
    }
}
