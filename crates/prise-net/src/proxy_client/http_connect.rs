//! Runs the HTTP `CONNECT` exchange of [`prise_proto::http_connect`] over
//! a stream, never reading past the blank line that ends the answer's head.

use prise_proto::http_connect::{
    ConnectError, END, MAX_RESPONSE_HEAD, parse_response, request, safe_read_len,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
