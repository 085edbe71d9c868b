//! Certificates and keys from PEM files, for every TLS setup in prise: the
//! hub's listeners (`prise serve --tls-cert`), the toolkit's clients and
//! listeners (`--ca`, `--cert`, `--tls-cert`) and the proxy's termination and
//! backend roots.
//!
//! # Design
//!
//! Loading is the only part these setups share; each builds its own rustls
//! configuration from what is loaded here, since their providers, ALPN and
//! verification differ. One loader keeps one set of error messages: every
//! [`PemError`] names the file and what it was expected to hold, so a user
//! who swapped `--tls-cert` and `--tls-key` reads which file is wrong.
//!
//! ```text
//! path ─▶ read PEM sections ─▶ keep those of the wanted kind ─▶ DER (owned)
//!                 │                        │
//!           PemError::Read          PemError::Missing
//!           PemError::Malformed
//! ```
#![warn(clippy::unwrap_used)]

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What a PEM file was expected to hold; named in every [`PemError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemKind {
    /// A certificate chain, leaf first.
    CertificateChain,
    /// One private key (PKCS#8, PKCS#1 or SEC1).
    PrivateKey,
    /// CA certificates to trust.
    CaBundle,
}

impl PemKind {
    /// The item a file of this kind holds at least one of.
    fn item(self) -> &'static str {
        match self {
            Self::CertificateChain | Self::CaBundle => "certificate",
            Self::PrivateKey => "private key",
        }
    }
}

impl fmt::Display for PemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CertificateChain => "certificate chain",
            Self::PrivateKey => "private key",
            Self::CaBundle => "CA bundle",
        })
    }
}

/// Why a PEM file could not be loaded. Each message names the file and what
/// it was expected to hold.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be opened or read.
    #[error("cannot read {kind} from {}: {source}", path.display())]
    Read {
        /// What the file was expected to hold.
        kind: PemKind,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{kind} {} is not valid PEM: {reason}", path.display())]
    Malformed {
        /// What the file was expected to hold.
        kind: PemKind,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is well-formed but holds nothing of the expected kind.
    #[error("no {} found in {}", kind.item(), path.display())]
    Missing {
        /// What the file was expected to hold.
        kind: PemKind,
        /// The file.
        path: PathBuf,
    },
}

impl PemError {
    fn new(kind: PemKind, path: &Path, e: pem::Error) -> Self {
        let path = path.to_owned();
        match e {
            pem::Error::Io(source) => Self::Read { kind, path, source },
            pem::Error::NoItemsFound => Self::Missing { kind, path },
            other => Self::Malformed {
                kind,
                path,
                reason: other.to_string(),
            },
        }
    }
}

fn certificates(path: &Path, kind: PemKind) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PemError::new(kind, path, e))?;
    if certs.is_empty() {
        return Err(PemError::Missing {
            kind,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads a certificate chain (leaf first, as rustls wants it) from a PEM file.
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn certificate_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    certificates(path, PemKind::CertificateChain)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) from a PEM file.
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no private key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PemError::new(PemKind::PrivateKey, path, e))
}

/// Reads the CA certificates to trust from a PEM file.
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn ca_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    certificates(path, PemKind::CaBundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn loads_a_generated_pair() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write(dir.path(), "cert.pem", &ck.cert.pem());
        let key = write(dir.path(), "key.pem", &ck.signing_key.serialize_pem());
        assert_eq!(certificate_chain(&cert).unwrap().len(), 1);
        assert_eq!(ca_bundle(&cert).unwrap().len(), 1);
        assert!(matches!(
            private_key(&key).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.pem");
        let e = certificate_chain(&path).unwrap_err();
        assert!(matches!(e, PemError::Read { .. }));
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot read certificate chain from "),
            "{msg}"
        );
        assert!(msg.contains("absent.pem"), "{msg}");
    }

    #[test]
    fn swapped_files_say_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write(dir.path(), "cert.pem", &ck.cert.pem());
        let key = write(dir.path(), "key.pem", &ck.signing_key.serialize_pem());
        let e = certificate_chain(&key).unwrap_err();
        assert!(matches!(e, PemError::Missing { .. }));
        assert_eq!(
            e.to_string(),
            format!("no certificate found in {}", key.display())
        );
        let e = private_key(&cert).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("no private key found in {}", cert.display())
        );
        let e = ca_bundle(&key).unwrap_err();
        assert!(e.to_string().starts_with("no certificate found in "));
    }

    #[test]
    fn broken_pem_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all\n",
        );
        let e = certificate_chain(&path).unwrap_err();
        assert!(matches!(e, PemError::Malformed { .. }), "{e:?}");
        assert!(e.to_string().contains("is not valid PEM"), "{e}");
    }
}
