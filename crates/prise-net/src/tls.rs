//! TLS for clients and listeners, on rustls with the aws-lc-rs provider.
//!
//! Clients verify by default: against the system's roots, or only against
//! `--ca FILE` when given. `--insecure` turns verification off (signatures
//! are still checked, so the handshake itself stays sound) and is never the
//! default. Listeners take a PEM certificate chain and key, or generate a
//! self-signed certificate for `localhost`, `127.0.0.1` and `::1`, written
//! to `--cert-out` with its SHA-256 fingerprint printed, so that a client
//! can trust exactly it.
//!
//! A certificate in the `--ca` file is also accepted as the server's own
//! certificate (a pinned certificate), byte for byte: that is what
//! `openssl req -x509 … -subj /CN=localhost` makes, a self-signed
//! certificate marked as a CA, which the path validation of webpki refuses
//! as an end entity (`CaUsedAsEndEntity`). The name is still checked:
//! against its subject alternative names, or, when it has none, its common
//! name (as OpenSSL does). Its validity period is not checked on that path:
//! the user handed over this very certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
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
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct ServerTlsArgs {
    /// Certificate chain (PEM) for tls:// and wss:// listeners.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for tls:// and wss:// listeners.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Generate a self-signed certificate for localhost, 127.0.0.1 and ::1
    /// (written to --cert-out, its SHA-256 fingerprint printed on stderr).
    #[arg(long, conflicts_with = "tls_cert")]
    pub self_signed: bool,
    /// With --self-signed: where to write the certificate (PEM), for clients' --ca.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CERT_OUT, requires = "self_signed")]
    pub cert_out: PathBuf,
}

impl Default for ServerTlsArgs {
    fn default() -> Self {
        Self {
            tls_cert: None,
            tls_key: None,
            self_signed: false,
            cert_out: PathBuf::from(DEFAULT_CERT_OUT),
        }
    }
}

/// Where `--self-signed` writes its certificate by default: the working directory.
pub const DEFAULT_CERT_OUT: &str = "prise-self-signed.pem";

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
            let pinned = prise_tls::ca_bundle(ca)?;
            for cert in &pinned {
                roots
                    .add(cert.clone())
                    .map_err(|e| NetError::Tls(format!("bad CA in {}: {e}", ca.display())))?;
            }
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| NetError::Tls(format!("CA in {}: {e}", ca.display())))?;
            let verifier = Arc::new(PinnedOrChain { inner, pinned });
            return finish_client(
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier),
                args,
                alpn,
            );
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
    finish_client(builder, args, alpn)
}

fn finish_client(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    args: &ClientTlsArgs,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, NetError> {
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
        (_, _, true) => {
            let (certs, key) = self_signed()?;
            write_certificate(&args.cert_out, &certs[0])?;
            (certs, key)
        }
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

/// Writes `cert` as PEM to `path` and says on stderr where, with its
/// SHA-256 fingerprint.
///
/// # Errors
/// The file cannot be written.
pub fn write_certificate(path: &Path, cert: &CertificateDer<'_>) -> Result<(), NetError> {
    use base64::Engine as _;
    use std::io::Write as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    std::fs::write(path, pem)
        .map_err(|e| NetError::io(format!("writing the certificate to {}", path.display()), e))?;
    let _ = writeln!(
        std::io::stderr().lock(),
        "prise: self-signed certificate in {} (SHA-256 {})",
        path.display(),
        fingerprint(cert)
    );
    Ok(())
}

/// The SHA-256 fingerprint of a certificate, as `openssl x509 -fingerprint
/// -sha256` prints it: upper-case hex bytes joined by colons.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Verifies against the `--ca` roots; failing that, accepts a certificate
/// found byte for byte in the `--ca` file when it is valid for the name.
#[derive(Debug)]
struct PinnedOrChain {
    inner: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chained =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        if chained.is_ok()
            || !self
                .pinned
                .iter()
                .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return chained;
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        match rustls::client::verify_server_name(&parsed, server_name) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { presented, .. },
            )) if presented.is_empty() && common_name_matches(end_entity.as_ref(), server_name) => {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The DER encoding of the common-name attribute type (OID 2.5.4.3).
const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];

/// Does a common name in `der` equal `name` (ASCII case-insensitive)?
///
/// Only used for a pinned self-signed certificate without alternative
/// names, whose issuer and subject are the same name, so any common-name
/// attribute found is the subject's. Values are UTF8String, PrintableString
/// or IA5String with a short length, as OpenSSL writes them.
fn common_name_matches(der: &[u8], name: &ServerName<'_>) -> bool {
    let ServerName::DnsName(dns) = name else {
        return false;
    };
    let want = dns.as_ref().as_bytes();
    der.windows(CN_OID.len() + 2)
        .enumerate()
        .filter(|(_, w)| w[..CN_OID.len()] == CN_OID && matches!(w[5], 0x0c | 0x13 | 0x16))
        .any(|(i, w)| {
            let len = usize::from(w[6]);
            let start = i + CN_OID.len() + 2;
            len < 0x80
                && der
                    .get(start..start + len)
                    .is_some_and(|v| v.eq_ignore_ascii_case(want))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_is_found_in_der() {
        // SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, UTF8String "localhost" } } }
        let mut der = vec![0x30, 0x14, 0x31, 0x12, 0x30, 0x10];
        der.extend_from_slice(&CN_OID);
        der.extend_from_slice(&[0x0c, 9]);
        der.extend_from_slice(b"localhost");
        let name = |n: &str| ServerName::try_from(n.to_owned()).unwrap();
        assert!(common_name_matches(&der, &name("LOCALHOST")));
        assert!(!common_name_matches(&der, &name("example.test")));
        assert!(!common_name_matches(
            &der[..der.len() - 1],
            &name("localhost")
        ));
        assert!(!common_name_matches(&der, &name("127.0.0.1")));
    }

    #[test]
    fn fingerprint_is_colon_separated_hex() {
        let f = fingerprint(&CertificateDer::from(b"abc".to_vec()));
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("BA:78:16:BF"));
    }
}
