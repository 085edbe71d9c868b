//! A self-signed certificate on disk, and a TLS client that trusts it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::TestDir;

/// A certificate and its key, written as `cert.pem` and `key.pem` to a
/// temporary directory that lives as long as this value.
#[derive(Debug)]
pub struct TestCert {
    _dir: TestDir,
    /// `cert.pem`.
    pub cert: PathBuf,
    /// `key.pem`.
    pub key: PathBuf,
    roots: RootCertStore,
}

impl TestCert {
    /// A self-signed certificate for `names` (DNS names or IP addresses).
    ///
    /// # Panics
    /// When generating or writing it fails.
    pub fn self_signed(names: &[&str]) -> Self {
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let ck = rcgen::generate_simple_self_signed(names).expect("a certificate");
        let dir = TestDir::new();
        let cert = dir.write("cert.pem", ck.cert.pem());
        let key = dir.write("key.pem", ck.signing_key.serialize_pem());
        let mut roots = RootCertStore::empty();
        roots.add(ck.cert.der().clone()).expect("a root");
        Self {
            _dir: dir,
            cert,
            key,
            roots,
        }
    }

    /// `cert.pem` as a flag value.
    pub fn cert_arg(&self) -> String {
        self.cert.to_string_lossy().into_owned()
    }

    /// `key.pem` as a flag value.
    pub fn key_arg(&self) -> String {
        self.key.to_string_lossy().into_owned()
    }

    /// A root store holding just this certificate.
    pub fn roots(&self) -> RootCertStore {
        self.roots.clone()
    }

    /// A client configuration that trusts this certificate and offers `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default protocol versions")
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection to `addr` for the name `localhost`, offering `alpn`.
    ///
    /// # Panics
    /// When the connection or the handshake fails.
    pub async fn connect(&self, addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let connector = tokio_rustls::TlsConnector::from(self.client_config(alpn));
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        let name = ServerName::try_from("localhost").expect("a server name");
        connector.connect(name, tcp).await.expect("tls handshake")
    }
}

impl TestCert {
    /// A server configuration that presents this certificate.
    ///
    /// # Panics
    /// When the files do not parse.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let chain = vec![CertificateDer::from_pem_file(&self.cert).expect("cert.pem")];
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("key.pem");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("default protocol versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("a certificate and its key"),
        )
    }
}
