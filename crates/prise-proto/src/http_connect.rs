//! The client side of an HTTP `CONNECT` tunnel (RFC 9110 §9.3.6), without
//! I/O.
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
//! [`MAX_HEADERS`] headers. [`safe_read_len`] tells a driver how much it
//! may read without passing the blank line that ends the head, so bytes the
//! target sends first stay in the stream.

use base64::Engine as _;

/// Largest response head accepted from a proxy.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Most headers accepted in the response.
pub const MAX_HEADERS: usize = 64;

/// The blank line that ends a response head.
pub const END: &[u8] = b"\r\n\r\n";

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
}
