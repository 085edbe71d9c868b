//! Runs the SOCKS5 client exchange of [`prise_proto::socks5`] over a
//! stream, reading exactly the size of each answer so that no byte of the
//! tunnel is consumed.

use prise_proto::socks5::{
    MAX_REPLY, METHOD_PASSWORD, ReplyProgress, Socks5Error, connect_reply, connect_request,
    greeting, method_choice, password_request, password_status,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A failure of the handshake: the protocol, or the stream under it.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The proxy said no, or spoke something else.
    #[error(transparent)]
    Socks(#[from] Socks5Error),
    /// The stream failed or ended.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs the handshake over `stream` (connected to the proxy) and asks for
/// a tunnel to `host:port`. On success the stream is the tunnel.
///
/// # Errors
/// See [`HandshakeError`].
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    credentials: Option<(&str, &str)>,
    host: &str,
    port: u16,
) -> Result<(), HandshakeError> {
    let request = connect_request(host, port)?;
    let auth = credentials
        .map(|(u, p)| password_request(u, p))
        .transpose()?;
    stream.write_all(&greeting(auth.is_some())).await?;
    let mut two = [0u8; 2];
    stream.read_exact(&mut two).await?;
    if method_choice(two, auth.is_some())? == METHOD_PASSWORD {
        // method_choice only picks the password method when it was offered.
        let auth = auth.unwrap_or_default();
        stream.write_all(&auth).await?;
        stream.read_exact(&mut two).await?;
        password_status(two)?;
    }
    stream.write_all(&request).await?;
    let mut reply = [0u8; MAX_REPLY];
    let mut have = 0;
    loop {
        match connect_reply(&reply[..have])? {
            ReplyProgress::Done(_) => return Ok(()),
            ReplyProgress::Need(n) => {
                // n ≤ MAX_REPLY by construction of connect_reply.
                stream.read_exact(&mut reply[have..n]).await?;
                have = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn handshake_reads_no_byte_of_the_tunnel() {
        let (mut client, mut proxy) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            proxy.read_exact(&mut buf[..3]).await.unwrap();
            proxy.write_all(&[5, 0]).await.unwrap();
            proxy.read_exact(&mut buf[..11]).await.unwrap();
            assert_eq!(&buf[..11], [5, 1, 0, 3, 4, b'h', b'o', b's', b't', 0, 7]);
            // The reply and the first tunnel bytes in one write.
            proxy
                .write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 7, b'h', b'i'])
                .await
                .unwrap();
        });
        handshake(&mut client, None, "host", 7).await.unwrap();
        let mut hi = [0u8; 2];
        client.read_exact(&mut hi).await.unwrap();
        assert_eq!(&hi, b"hi");
        server.await.unwrap();
    }
}
