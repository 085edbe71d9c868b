//! Request and response heads: parsing (over `httparse`, capped), the
//! request target a forward proxy accepts, how each body is framed, and the
//! heads forwarded with hop-by-hop fields removed. No I/O.

use super::body::BodyFraming;

/// Most header fields in one head.
pub const MAX_HEADERS: usize = 100;

/// Why a head could not be used; each maps to one answer of the proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not HTTP/1.x, or broken syntax (400).
    #[error("malformed head: {0}")]
    Malformed(String),
    /// The head is over the size cap or has too many fields (431).
    #[error("head over {0} bytes or {MAX_HEADERS} fields")]
    TooLarge(usize),
    /// The target is not `http://…` (absolute form) nor a CONNECT authority (400).
    #[error("bad target: {0}")]
    BadTarget(String),
}

/// A parsed head: request line or status line, and the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Request method, or empty for a response.
    pub method: String,
    /// Request target, or empty for a response.
    pub target: String,
    /// Response status, or 0 for a request.
    pub status: u16,
    /// Response reason phrase.
    pub reason: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Fields in order, names as sent.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of a field (names compare case-insensitively).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Does a comma-separated field (Connection, Transfer-Encoding) list `token`?
    pub fn lists(&self, name: &str, token: &str) -> bool {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Does the sender want the connection kept after this message?
    pub fn keep_alive(&self) -> bool {
        if self.lists("connection", "close") {
            return false;
        }
        self.minor >= 1 || self.lists("connection", "keep-alive")
    }

    /// How the body of this request is framed.
    ///
    /// # Errors
    /// A transfer coding other than chunked, both framings at once (a
    /// request smuggling vector), or a bad length.
    pub fn request_framing(&self) -> Result<BodyFraming, HeadError> {
        match self.message_framing()? {
            BodyFraming::UntilClose => Ok(BodyFraming::Empty),
            f => Ok(f),
        }
    }

    /// How the body of this response to a `method` request is framed.
    ///
    /// # Errors
    /// As [`Head::request_framing`].
    pub fn response_framing(&self, method: &str) -> Result<BodyFraming, HeadError> {
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return Ok(BodyFraming::Empty);
        }
        self.message_framing()
    }

    fn message_framing(&self) -> Result<BodyFraming, HeadError> {
        let te = self.field("transfer-encoding").is_some();
        let cl = self.field("content-length");
        match (te, cl) {
            (true, Some(_)) => Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length".into(),
            )),
            (true, None) if self.lists("transfer-encoding", "chunked") => Ok(BodyFraming::Chunked),
            (true, None) => Err(HeadError::Malformed(
                "a transfer coding other than chunked".into(),
            )),
            (false, Some(v)) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(BodyFraming::Length)
                .ok_or_else(|| HeadError::Malformed("bad Content-Length".into())),
            (false, None) => Ok(BodyFraming::UntilClose),
        }
    }
}

fn fields(raw: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    raw.iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

fn map_err(e: httparse::Error, cap: usize) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge(cap),
        other => HeadError::Malformed(other.to_string()),
    }
}

/// Parses a request head at the start of `src`: `Ok(None)` when more bytes
/// are needed, else the head and its length in bytes.
///
/// # Errors
/// Broken syntax, or over `max_bytes` without an end.
pub fn parse_request(src: &[u8], max_bytes: usize) -> Result<Option<(Head, usize)>, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(src).map_err(|e| map_err(e, max_bytes))? {
        httparse::Status::Partial if src.len() > max_bytes => Err(HeadError::TooLarge(max_bytes)),
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) if n > max_bytes => Err(HeadError::TooLarge(max_bytes)),
        httparse::Status::Complete(n) => Ok(Some((
            Head {
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                status: 0,
                reason: String::new(),
                minor: req.version.unwrap_or(1),
                fields: fields(req.headers),
            },
            n,
        ))),
    }
}

/// Parses a response head at the start of `src` (see [`parse_request`]).
///
/// # Errors
/// Broken syntax, or over `max_bytes` without an end.
pub fn parse_response(src: &[u8], max_bytes: usize) -> Result<Option<(Head, usize)>, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(src).map_err(|e| map_err(e, max_bytes))? {
        httparse::Status::Partial if src.len() > max_bytes => Err(HeadError::TooLarge(max_bytes)),
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) if n > max_bytes => Err(HeadError::TooLarge(max_bytes)),
        httparse::Status::Complete(n) => Ok(Some((
            Head {
                method: String::new(),
                target: String::new(),
                status: resp.code.unwrap_or(0),
                reason: resp.reason.unwrap_or_default().to_owned(),
                minor: resp.version.unwrap_or(1),
                fields: fields(resp.headers),
            },
            n,
        ))),
    }
}

/// Where a request goes: the origin's host and port, and (for a forwarded
/// request) the origin-form path to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (no brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `/path?query` for forwarded requests; empty for CONNECT.
    pub path: String,
}

impl Target {
    /// `host:port`, with brackets around an IPv6 literal.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The target of a CONNECT request: `host:port` (authority form).
    ///
    /// # Errors
    /// Anything else.
    pub fn connect(target: &str) -> Result<Self, HeadError> {
        let bad = || HeadError::BadTarget(format!("CONNECT needs host:port, not '{target}'"));
        let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(bad)?;
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: String::new(),
        })
    }

    /// The target of a forwarded request: `http://host[:port]/path?query`.
    ///
    /// # Errors
    /// Origin form (`/path`, a request meant for a server, not a proxy),
    /// another scheme, or user information in the URL.
    pub fn absolute(target: &str) -> Result<Self, HeadError> {
        let url = url::Url::parse(target).map_err(|_| {
            HeadError::BadTarget(format!(
                "a proxy needs an absolute http:// URL, not '{target}'"
            ))
        })?;
        if url.scheme() != "http" {
            return Err(HeadError::BadTarget(format!(
                "only http:// is forwarded ('{}://' goes through CONNECT)",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HeadError::BadTarget("user information in the URL".into()));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(HeadError::BadTarget("no host in the URL".into())),
        };
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Self {
            host,
            port: url.port_or_known_default().unwrap_or(80),
            path,
        })
    }
}

/// Fields that concern one connection only and are never forwarded
/// (RFC 9110 §7.6.1), besides those the Connection field names.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

fn forwarded_fields(head: &Head, out: &mut Vec<u8>) {
    for (name, value) in &head.fields {
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) || head.lists("connection", name)
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// The request sent to the origin: origin-form target, the client's fields
/// less hop-by-hop ones, a `Host` when the client sent none, and `Via`.
pub fn origin_request(head: &Head, target: &Target) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", head.method, target.path).as_bytes());
    if head.field("host").is_none() {
        let host = if target.port == 80 {
            target.host.clone()
        } else {
            target.authority()
        };
        out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    }
    forwarded_fields(head, &mut out);
    out.extend_from_slice(format!("Via: 1.{} prise\r\n\r\n", head.minor).as_bytes());
    out
}

/// The response head sent to the client: the origin's status and fields
/// less hop-by-hop ones, and whether the connection stays open.
pub fn client_response(head: &Head, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", head.status, head.reason).as_bytes());
    forwarded_fields(head, &mut out);
    if !(100..200).contains(&head.status) {
        let conn = if keep_alive { "keep-alive" } else { "close" };
        out.extend_from_slice(format!("Connection: {conn}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// An answer of the proxy itself: a status, a one-line reason in a plain
/// text body, and the connection closed.
pub fn error_response(status: u16, reason: &str, detail: &str) -> Vec<u8> {
    let body = format!("prise http-proxy: {detail}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_request_is_parsed_and_forwarded_in_origin_form() {
        let raw = b"GET http://example.test:8080/a/b?x=1 HTTP/1.1\r\nHost: example.test:8080\r\nProxy-Connection: keep-alive\r\nConnection: X-Drop\r\nX-Drop: 1\r\nAccept: */*\r\n\r\nrest";
        assert_eq!(parse_request(&raw[..20], 1024), Ok(None));
        let (head, n) = parse_request(raw, 1024).unwrap().unwrap();
        assert_eq!(&raw[n..], b"rest");
        assert_eq!(head.request_framing(), Ok(BodyFraming::Empty));
        assert!(head.keep_alive());
        let t = Target::absolute(&head.target).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("example.test", 8080, "/a/b?x=1")
        );
        let sent = String::from_utf8(origin_request(&head, &t)).unwrap();
        assert_eq!(
            sent,
            "GET /a/b?x=1 HTTP/1.1\r\nHost: example.test:8080\r\nAccept: */*\r\nVia: 1.1 prise\r\n\r\n"
        );
    }

    #[test]
    fn targets_are_checked() {
        assert!(matches!(
            Target::absolute("/index.html"),
            Err(HeadError::BadTarget(_))
        ));
        assert!(matches!(
            Target::absolute("https://x/"),
            Err(HeadError::BadTarget(_))
        ));
        assert!(matches!(
            Target::absolute("http://u:p@x/"),
            Err(HeadError::BadTarget(_))
        ));
        assert_eq!(
            Target::absolute("http://[::1]/").unwrap().authority(),
            "[::1]:80"
        );
        let c = Target::connect("[::1]:443").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 443));
        assert!(Target::connect("example.test").is_err());
        assert!(Target::connect("example.test:0").is_err());
        assert!(Target::connect("http://x:80").is_err());
    }

    #[test]
    fn heads_are_capped_and_checked() {
        let long = format!("GET http://x/ HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            parse_request(long.as_bytes(), 64),
            Err(HeadError::TooLarge(64))
        );
        assert_eq!(
            parse_request(&long.as_bytes()[..80], 64),
            Err(HeadError::TooLarge(64))
        );
        assert!(matches!(
            parse_request(b"\x16\x03\x01junk\r\n\r\n", 64),
            Err(HeadError::Malformed(_))
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET http://x/ HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse_request(req.as_bytes(), 1 << 20),
            Err(HeadError::TooLarge(_))
        ));
        let (smuggle, _) = parse_request(
            b"POST http://x/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            1024,
        )
        .unwrap()
        .unwrap();
        assert!(smuggle.request_framing().is_err());
    }

    #[test]
    fn response_framing_follows_the_rules() {
        let resp = |raw: &[u8]| parse_response(raw, 1024).unwrap().unwrap().0;
        let r = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.response_framing("GET"), Ok(BodyFraming::Length(5)));
        assert_eq!(r.response_framing("HEAD"), Ok(BodyFraming::Empty));
        let r = resp(b"HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(r.response_framing("GET"), Ok(BodyFraming::UntilClose));
        assert!(!r.keep_alive());
        let r = resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(r.response_framing("GET"), Ok(BodyFraming::Chunked));
        let r = resp(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.response_framing("GET"), Ok(BodyFraming::Empty));
        let out = String::from_utf8(client_response(
            &resp(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nX: y\r\n\r\n"),
            false,
        ))
        .unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\n");
    }
}
