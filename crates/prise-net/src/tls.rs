//! TLS for clients and listeners, on rustls with the aws-lc-rs provider.
//!
//! Clients verify by default: against the system's roots, or only against
//! `--ca FILE` when given. `--insecure` turns verification off (signatures
//! are still checked, so the handshake itself stays sound) and is never the
//! default. Listeners take a PEM certificate chain and key, or generate a
//! self-signed certificate for `localhost`, `127.0.0.1` and `::1`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use crate::error::NetError;

/// The crypto provider of every TLS config in the toolkit.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// How a client verifies and authenticates itself.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct ClientTlsArgs {
    /// Trust only this CA bundle (PEM) instead of the system roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Name to send in SNI and to verify the certificate against (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// Client certificate chain (PEM), for servers that ask for one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Do not verify the server's certificate (dangerous; only when asked).
    #[arg(long)]
    pub insecure: bool,
}

/// Where a listener gets its certificate.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct ServerTlsArgs {
    /// Certificate chain (PEM) for tls:// and wss:// listeners.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for tls:// and wss:// listeners.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Generate a self-signed certificate for localhost, 127.0.0.1 and ::1.
    #[arg(long, conflicts_with = "tls_cert")]
    pub self_signed: bool,
}

/// Builds the client config for these arguments.
///
/// # Errors
/// Unreadable PEM files, no usable root, or a key that does not match.
pub fn client_config(args: &ClientTlsArgs, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, NetError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(e.to_string()))?;
    let builder = if args.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        if let Some(ca) = &args.ca {
            for cert in prise_tls::ca_bundle(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| NetError::Tls(format!("bad CA in {}: {e}", ca.display())))?;
            }
        } else {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(NetError::Tls(
                    "no system root certificates found (install ca-certificates or pass --ca)"
                        .into(),
                ));
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                prise_tls::certificate_chain(cert)?,
                prise_tls::private_key(key)?,
            )
            .map_err(|e| NetError::Tls(format!("client certificate: {e}")))?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The server name to verify: `--sni` or the URL's host.
///
/// # Errors
/// A name that is neither a DNS name nor an IP address.
pub fn server_name(args: &ClientTlsArgs, host: &str) -> Result<ServerName<'static>, NetError> {
    let name = args.sni.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|_| NetError::Usage(format!("invalid TLS server name '{name}'")))
}

/// Builds the listener config for these arguments.
///
/// # Errors
/// Neither a certificate nor `--self-signed` given, unreadable PEM files, or
/// a key that does not match the certificate.
pub fn server_config(args: &ServerTlsArgs) -> Result<Arc<ServerConfig>, NetError> {
    let (certs, key) = match (&args.tls_cert, &args.tls_key, args.self_signed) {
        (Some(cert), Some(key), _) => (
            prise_tls::certificate_chain(cert)?,
            prise_tls::private_key(key)?,
        ),
        (_, _, true) => self_signed()?,
        _ => {
            return Err(NetError::Usage(
                "a TLS listener needs --tls-cert and --tls-key, or --self-signed".into(),
            ));
        }
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| NetError::Tls(format!("certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

/// A fresh self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
///
/// # Errors
/// Key generation failed.
pub fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), NetError> {
    let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| NetError::Tls(format!("self-signed certificate: {e}")))?;
    let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    Ok((vec![ck.cert.der().clone()], key.into()))
}

/// Accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
