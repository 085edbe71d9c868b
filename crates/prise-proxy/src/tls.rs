//! TLS settings: the listener's certificate (termination) and the client configuration used
//! toward backends (for relayed connections and `tls` health checks).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::ServerName;

use crate::config::{BackendTls, ListenerTls};

/// Error loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error(transparent)]
    Pem(#[from] prise_tls::PemError),
    /// rustls refused the material.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The backend server name is not a valid DNS name or IP address.
    #[error("invalid backend server name {0}")]
    ServerName(String),
}

/// Builds the listener's server configuration from PEM files.
///
/// # Errors
/// Unreadable or empty PEM files, or a key that does not match the certificate.
pub fn server_config(tls: &ListenerTls) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = prise_tls::certificate_chain(&tls.cert)?;
    let key = prise_tls::private_key(&tls.key)?;
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(cfg))
}

/// What is needed to open TLS to a backend.
#[derive(Clone)]
pub struct BackendConnector {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for BackendConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl BackendConnector {
    /// Builds the client configuration: the CA file's roots, or the system store.
    ///
    /// # Errors
    /// An unreadable CA file, or a server name that is neither a DNS name nor an IP.
    pub fn new(tls: &BackendTls) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        match &tls.ca {
            Some(path) => {
                for c in prise_tls::ca_bundle(path)? {
                    roots.add(c)?;
                }
            }
            None => {
                // Unreadable entries in the system store are skipped; an empty store only
                // means that verification fails, which the checks then report.
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = match &tls.server_name {
            Some(n) => {
                Some(ServerName::try_from(n.clone()).map_err(|_| TlsError::ServerName(n.clone()))?)
            }
            None => None,
        };
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            server_name,
        })
    }

    /// Opens TLS over `stream` to the backend at `addr`.
    ///
    /// # Errors
    /// The handshake or certificate verification failed.
    pub async fn connect<IO>(
        &self,
        addr: SocketAddr,
        stream: IO,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        self.connector.connect(name, stream).await
    }
}
