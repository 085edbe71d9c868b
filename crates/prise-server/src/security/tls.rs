//! TLS on the hub's listeners (rustls with aws-lc-rs): a certificate chain
//! and key from PEM files (`--tls-cert`, `--tls-key`), or a self-signed
//! certificate for development (`--self-signed`, for `localhost`,
//! `127.0.0.1` and `::1`, its PEM written to `--data`).
//!
//! One certificate serves both listeners: HTTP (ALPN `h2`, `http/1.1`) and
//! the TCP line protocol (no ALPN). Handshakes have the header timeout as
//! their deadline, so a client that opens a socket and says nothing is
//! dropped.

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error(transparent)]
    Pem(#[from] prise_tls::PemError),
    /// Only one of `--tls-cert` and `--tls-key` was given.
    #[error("--tls-cert and --tls-key go together")]
    Incomplete,
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The self-signed certificate could not be generated or written.
    #[error("self-signed certificate: {0}")]
    SelfSigned(String),
}

/// Acceptors for the two listeners.
#[derive(Clone)]
pub struct TlsAcceptors {
    /// HTTP listener (ALPN h2 and http/1.1).
    pub http: TlsAcceptor,
    /// TCP line-protocol listener.
    pub tcp: TlsAcceptor,
}

impl std::fmt::Debug for TlsAcceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptors")
    }
}

/// Reads a certificate chain and a private key from PEM files.
///
/// # Errors
/// A file that cannot be read or holds no certificate / key.
pub fn load_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = prise_tls::certificate_chain(cert)?;
    let key = prise_tls::private_key(key)?;
    Ok((certs, key))
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`, as
/// (chain, key, certificate PEM).
///
/// # Errors
/// When generation fails.
pub fn self_signed()
-> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String), TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let pem = ck.cert.pem();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    Ok((vec![cert], key, pem))
}

/// Builds the acceptors from a chain and key.
///
/// # Errors
/// rustls refused the certificate or key.
pub fn acceptors(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsAcceptors, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tcp = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key.clone_key())?;
    let mut http = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptors {
        http: TlsAcceptor::from(Arc::new(http)),
        tcp: TlsAcceptor::from(Arc::new(tcp)),
    })
}

/// A server-side stream, plain or TLS.
#[derive(Debug)]
pub enum MaybeTls {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// Accepts: a TLS handshake within `deadline` when `acceptor` is set.
    ///
    /// # Errors
    /// The handshake failed or timed out.
    pub async fn accept(
        stream: TcpStream,
        acceptor: Option<&TlsAcceptor>,
        deadline: std::time::Duration,
    ) -> io::Result<Self> {
        match acceptor {
            None => Ok(Self::Plain(stream)),
            Some(a) => match tokio::time::timeout(deadline, a.accept(stream)).await {
                Ok(Ok(s)) => Ok(Self::Tls(Box::new(s))),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                )),
            },
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_builds_acceptors() {
        let (certs, key, pem) = self_signed().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        acceptors(certs, key).unwrap();
    }
}
