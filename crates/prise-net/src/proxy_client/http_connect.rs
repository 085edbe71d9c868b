//! The client side of an HTTP `CONNECT` tunnel (RFC 9110 §9.3.6), without
//! I/O, and a driver that runs it over a stream.
//!
//! ```text
//! CONNECT host:port HTTP/1.1          ─▶
//! Host: host:port
//! Proxy-Authorization: Basic …   (when the proxy URL has a user)
//!                                     ◀─ HTTP/1.1 200 Connection established
//!                                        (headers) \r\n\r\n, then the tunnel
//! ```
//!
//! The answer's head is capped at [`MAX_RESPONSE_HEAD`] bytes and
//! [`MAX_HEADERS`] headers. The driver never reads past the blank line that
//! ends the head, so bytes the target sends first stay in the stream.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response head accepted from a proxy.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Most headers accepted in the response.
pub const MAX_HEADERS: usize = 64;

const END: &[u8] = b"\r\n\r\n";

/// Why a CONNECT exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The proxy answered with something that is not an HTTP response.
    #[error("not an HTTP response")]
    Malformed,
    /// The response head is over [`MAX_RESPONSE_HEAD`] or [`MAX_HEADERS`].
    #[error("response head over {MAX_RESPONSE_HEAD} bytes or {MAX_HEADERS} headers")]
    TooLarge,
    /// The proxy answered with a status other than 2xx.
    #[error("HTTP {status} {reason}")]
    Status {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
}

/// The request asking for a tunnel to `authority` (`host:port`, IPv6 in brackets).
pub fn request(authority: &str, credentials: Option<(&str, &str)>) -> Vec<u8> {
    let mut out = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, pass)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        out.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Bytes that can be read without passing the end of the head: the blank
/// line needs at least this many more bytes.
pub fn safe_read_len(head: &[u8]) -> usize {
    (1..END.len())
        .rev()
        .find(|&k| head.ends_with(&END[..k]))
        .map_or(END.len(), |k| END.len() - k)
}

/// Parses a complete or partial response head. `Ok(None)`: need more bytes.
///
/// # Errors
/// A malformed or oversized head, or a status other than 2xx.
pub fn parse_response(head: &[u8]) -> Result<Option<()>, ConnectError> {
    if head.len() > MAX_RESPONSE_HEAD {
        return Err(ConnectError::TooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let status = response.code.ok_or(ConnectError::Malformed)?;
            if (200..300).contains(&status) {
                Ok(Some(()))
            } else {
                Err(ConnectError::Status {
                    status,
                    reason: response.reason.unwrap_or("").to_owned(),
                })
            }
        }
        Err(httparse::Error::TooManyHeaders) => Err(ConnectError::TooLarge),
        Err(_) => Err(ConnectError::Malformed),
    }
}

/// A failure of the exchange: the protocol, or the stream under it.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The proxy said no, or spoke something else.
    #[error(transparent)]
    Http(#[from] ConnectError),
    /// The stream failed or ended.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Asks the proxy on `stream` for a tunnel to `authority`; on success the
/// stream is the tunnel.
///
/// # Errors
/// See [`HandshakeError`].
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    authority: &str,
    credentials: Option<(&str, &str)>,
) -> Result<(), HandshakeError> {
    stream.write_all(&request(authority, credentials)).await?;
    let mut head = Vec::with_capacity(256);
    loop {
        let start = head.len();
        let want = safe_read_len(&head);
        if start + want > MAX_RESPONSE_HEAD {
            return Err(ConnectError::TooLarge.into());
        }
        head.resize(start + want, 0);
        stream.read_exact(&mut head[start..]).await?;
        if head.ends_with(END) {
            return match parse_response(&head)? {
                Some(()) => Ok(()),
                // A complete head that httparse calls partial is not HTTP.
                None => Err(ConnectError::Malformed.into()),
            };
        }
        // Reject garbage early rather than waiting for 16 KiB of it.
        parse_response(&head)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_host_and_credentials() {
        let r = String::from_utf8(request("[::1]:80", Some(("u", "p")))).unwrap();
        assert_eq!(
            r,
            "CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
    }

    #[test]
    fn reads_never_pass_the_blank_line() {
        assert_eq!(safe_read_len(b""), 4);
        assert_eq!(safe_read_len(b"HTTP/1.1 200 OK"), 4);
        assert_eq!(safe_read_len(b"HTTP/1.1 200 OK\r"), 3);
        assert_eq!(safe_read_len(b"HTTP/1.1 200 OK\r\n"), 2);
        assert_eq!(safe_read_len(b"HTTP/1.1 200 OK\r\nA: b\r\n\r"), 1);
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Ok(Some(()))
        );
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(
            parse_response(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"),
            Err(ConnectError::Status {
                status: 502,
                reason: "Bad Gateway".into()
            })
        );
        assert_eq!(
            parse_response(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(ConnectError::Malformed)
        );
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(parse_response(many.as_bytes()), Err(ConnectError::TooLarge));
    }

    #[tokio::test]
    async fn handshake_stops_at_the_head_and_caps_it() {
        let (mut client, mut proxy) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut buf = vec![0u8; 256];
            let n = proxy.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"CONNECT h:1 HTTP/1.1\r\n"));
            proxy
                .write_all(b"HTTP/1.1 200 OK\r\nVia: x\r\n\r\nbanner")
                .await
                .unwrap();
            proxy
        });
        handshake(&mut client, "h:1", None).await.unwrap();
        let mut banner = [0u8; 6];
        client.read_exact(&mut banner).await.unwrap();
        assert_eq!(&banner, b"banner");
        drop(server.await.unwrap());

        let (mut client, mut proxy) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256];
            let _ = proxy.read(&mut buf).await;
            let endless = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_RESPONSE_HEAD));
            let _ = proxy.write_all(endless.as_bytes()).await;
            proxy
        });
        let err = handshake(&mut client, "h:1", None).await.unwrap_err();
        assert!(
            matches!(err, HandshakeError::Http(ConnectError::TooLarge)),
            "{err}"
        );
    }
}
