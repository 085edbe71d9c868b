//! Errors of the toolkit, their one-line messages and their exit codes.
//!
//! Every command ends in one [`NetError`]; the binary prints it as a single
//! line on stderr and exits with [`NetError::exit_code`]. Low-level I/O
//! errors are classified by [`NetError::from_io`] so that a user sees
//! "connection refused" rather than an errno.

use std::io;

/// Exit codes of the toolkit, documented in `docs/toolkit.md`.
pub mod exit_code {
    /// Success.
    pub const OK: u8 = 0;
    /// A failure without a more specific code; `probe`: a target is down.
    pub const FAILURE: u8 = 1;
    /// Bad usage: a malformed URL or an impossible option combination.
    pub const USAGE: u8 = 2;
    /// The peer refused the connection.
    pub const REFUSED: u8 = 3;
    /// A connect, handshake or idle timeout expired.
    pub const TIMED_OUT: u8 = 4;
    /// The host name did not resolve.
    pub const NAME_NOT_FOUND: u8 = 5;
    /// TLS failed: an invalid or untrusted certificate, or a failed handshake.
    pub const TLS: u8 = 6;
    /// The peer reset the connection.
    pub const RESET: u8 = 7;
    /// A file transfer arrived corrupted or incomplete.
    pub const TRANSFER: u8 = 8;
    /// The peer broke the protocol (bad handshake, frame over a limit).
    pub const PROTOCOL: u8 = 9;
}

/// One failure of a toolkit command.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The URL or an option could not be used.
    #[error("{0}")]
    Usage(String),
    /// The peer refused the connection (nothing listening).
    #[error("connection refused by {0}")]
    Refused(String),
    /// A timeout expired.
    #[error("timed out {0}")]
    TimedOut(String),
    /// DNS found no address for the host.
    #[error("name not found: {0}")]
    NameNotFound(String),
    /// The peer's certificate is not valid for the name or not trusted.
    #[error("certificate invalid for {host}: {reason}")]
    CertificateInvalid {
        /// The name that was verified.
        host: String,
        /// Why verification failed.
        reason: String,
    },
    /// TLS failed for another reason (alert, protocol, local files).
    #[error("tls: {0}")]
    Tls(String),
    /// A proxy (`--proxy`) refused the tunnel: authentication, its rules,
    /// or an answer that is not a plain refusal of the target.
    #[error("proxy {proxy} refused: {reason}")]
    ProxyRefused {
        /// The proxy URL, without its password.
        proxy: String,
        /// What the proxy answered.
        reason: String,
    },
    /// The peer reset the connection.
    #[error("connection reset by {0}")]
    Reset(String),
    /// The peer spoke something other than the expected protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The file transfer failed its verification.
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// `probe`: some targets were down.
    #[error("{down} of {total} targets down")]
    TargetsDown {
        /// Targets that failed.
        down: usize,
        /// Targets probed.
        total: usize,
    },
    /// Any other I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// A certificate or key file that cannot be loaded is a TLS failure (exit code 6).
impl From<prise_tls::PemError> for NetError {
    fn from(e: prise_tls::PemError) -> Self {
        Self::Tls(e.to_string())
    }
}

impl NetError {
    /// The process exit code for this error (see [`exit_code`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => exit_code::USAGE,
            Self::Refused(_) | Self::ProxyRefused { .. } => exit_code::REFUSED,
            Self::TimedOut(_) => exit_code::TIMED_OUT,
            Self::NameNotFound(_) => exit_code::NAME_NOT_FOUND,
            Self::CertificateInvalid { .. } | Self::Tls(_) => exit_code::TLS,
            Self::Reset(_) => exit_code::RESET,
            Self::Protocol(_) => exit_code::PROTOCOL,
            Self::Transfer(_) => exit_code::TRANSFER,
            Self::TargetsDown { .. } | Self::Io { .. } => exit_code::FAILURE,
        }
    }

    /// Classifies an I/O error met while talking to `peer`.
    ///
    /// TLS errors surface from tokio-rustls as I/O errors wrapping a
    /// [`rustls::Error`]; they are recognised here too.
    pub fn from_io(err: io::Error, peer: &str) -> Self {
        if let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            return match tls {
                rustls::Error::InvalidCertificate(reason) => Self::CertificateInvalid {
                    host: peer.to_owned(),
                    reason: reason.to_string(),
                },
                other => Self::Tls(format!("{peer}: {other}")),
            };
        }
        match err.kind() {
            io::ErrorKind::ConnectionRefused => Self::Refused(peer.to_owned()),
            io::ErrorKind::TimedOut => Self::TimedOut(format!("talking to {peer}")),
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Self::Reset(peer.to_owned())
            }
            _ => Self::Io {
                context: peer.to_owned(),
                source: err,
            },
        }
    }

    /// An I/O error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Is this failure worth another attempt (`--retry`)? Refusals,
    /// timeouts, resets and unresolved names are (the peer may come up);
    /// bad usage and certificate errors are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Refused(_)
                | Self::TimedOut(_)
                | Self::Reset(_)
                | Self::NameNotFound(_)
                | Self::Io { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified() {
        let e = NetError::from_io(io::ErrorKind::ConnectionRefused.into(), "127.0.0.1:1");
        assert_eq!(e.exit_code(), exit_code::REFUSED);
        assert_eq!(e.to_string(), "connection refused by 127.0.0.1:1");
        let e = NetError::from_io(io::ErrorKind::ConnectionReset.into(), "p");
        assert_eq!(e.exit_code(), exit_code::RESET);
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = NetError::from_io(tls, "example.test");
        assert_eq!(e.exit_code(), exit_code::TLS);
        assert_eq!(
            e.to_string(),
            "certificate invalid for example.test: UnknownIssuer"
        );
        assert!(!e.is_retryable());
    }
}
