//! The security flags of `prise serve` ([`SecurityArgs`]) and the state built
//! from them ([`Security`]): token authentication, the anonymous policy, API
//! keys, rate limits, the origin allow-list, TLS and HTTP timeouts.
//!
//! Safe defaults: anonymous clients only on a loopback listener, limits on,
//! browser origins other than the page's own refused.

pub mod auth;
pub mod ratelimit;
pub mod tls;
pub mod trust;

use auth::{Authenticator, KeyError, KeySource};
use ratelimit::{IpLimiter, RateConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tls::{TlsAcceptors, TlsError};
use trust::{Cidr, TrustedProxies};

/// Default time to send the HTTP request head (slowloris guard).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an unauthenticated client has to authenticate where
/// anonymous access is refused.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest HTTP API request body: 256 KiB.
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

/// Who may use the hub without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnonymousPolicy {
    /// Anonymous clients only on listeners bound to a loopback address.
    Auto,
    /// Anonymous clients on every listener.
    Allow,
    /// Every client must authenticate.
    Deny,
}

/// Security flags of `prise serve` (each also a `PRISE_*` variable).
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct SecurityArgs {
    /// HS256 shared secret for JWTs (prefer --jwt-secret-file: flags show in `ps`).
    #[arg(long, env = "PRISE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the HS256 shared secret (trailing newline ignored).
    #[arg(long, env = "PRISE_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM public key for RS256 (RSA) or ES256 (EC P-256) JWTs.
    #[arg(long, env = "PRISE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS file ({"keys":[…]}); keys chosen by `kid`.
    #[arg(long, env = "PRISE_JWKS")]
    pub jwks: Option<PathBuf>,
    /// Accepted JWT issuers (`iss`), comma-separated; empty: not checked.
    #[arg(long, env = "PRISE_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,
    /// Accepted JWT audiences (`aud`), comma-separated; empty: not checked.
    #[arg(long, env = "PRISE_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// Clock skew allowed on `exp`/`nbf` (e.g. 30s).
    #[arg(long, env = "PRISE_JWT_LEEWAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,
    /// Anonymous clients: auto (only on loopback listeners), allow, deny.
    #[arg(long, env = "PRISE_ANONYMOUS", value_enum, default_value_t = AnonymousPolicy::Auto)]
    pub anonymous: AnonymousPolicy,
    /// Same as --anonymous allow.
    #[arg(long, env = "PRISE_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// Time a client has to authenticate where anonymous access is refused.
    #[arg(long, env = "PRISE_AUTH_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub auth_timeout: Duration,
    /// API keys for /api (comma-separated); without one, /api answers 401.
    #[arg(
        long = "api-key",
        env = "PRISE_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// File with one API key per line.
    #[arg(long, env = "PRISE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Requests per second per connection (0: unlimited).
    #[arg(long, env = "PRISE_RATE_MESSAGES", default_value_t = ratelimit::DEFAULT_MESSAGE_RATE)]
    pub rate_messages: f64,
    /// Request burst per connection.
    #[arg(long, env = "PRISE_RATE_BURST", default_value_t = ratelimit::DEFAULT_MESSAGE_BURST)]
    pub rate_burst: u32,
    /// New connections per second per client IP (0: unlimited).
    #[arg(long, env = "PRISE_IP_CONNECT_RATE", default_value_t = ratelimit::DEFAULT_IP_CONNECT_RATE)]
    pub ip_connect_rate: f64,
    /// New-connection burst per client IP.
    #[arg(long, env = "PRISE_IP_CONNECT_BURST", default_value_t = ratelimit::DEFAULT_IP_CONNECT_BURST)]
    pub ip_connect_burst: u32,
    /// Concurrent connections per client IP (0: unlimited).
    #[arg(long, env = "PRISE_MAX_CONNECTIONS_PER_IP", default_value_t = ratelimit::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// Browser origins allowed on /ws and /sse (comma-separated, `*` for any); the
    /// page's own origin and clients sending no Origin are always allowed.
    #[arg(long, env = "PRISE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Time to send an HTTP request head, and to finish a TLS handshake.
    #[arg(long, env = "PRISE_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Largest HTTP API request body in bytes.
    #[arg(long, env = "PRISE_MAX_BODY", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Balancers whose word on the client's address is taken (comma-separated
    /// networks or addresses, like `10.0.0.0/8,127.0.0.1`): from them both
    /// listeners read a PROXY protocol v1/v2 header (required on the TCP
    /// listener) and the HTTP listener reads `X-Forwarded-For`.
    #[arg(
        long,
        env = "PRISE_TRUST_PROXY",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trust_proxy: Vec<Cidr>,
    /// TLS certificate chain (PEM) for both listeners.
    #[arg(long, env = "PRISE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "PRISE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a generated self-signed certificate (development);
    /// its PEM is written to DATA/self-signed.crt.
    #[arg(long, env = "PRISE_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub self_signed: bool,
}

/// Why the security settings could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A JWT key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The origin allow-list for browser clients.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    any: bool,
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// From the `--allowed-origins` list.
    pub fn new(list: &[String]) -> Self {
        Self {
            any: list.iter().any(|o| o == "*"),
            allowed: list
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Is a request with this `Origin` (and `Host`) allowed? No Origin (not a
    /// browser), the page's own origin, and listed origins are.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        if self.any {
            return true;
        }
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if let Some(host) = host {
            let host = host.to_ascii_lowercase();
            let authority = origin.split_once("://").map_or("", |(_, a)| a);
            if authority == host {
                return true;
            }
        }
        self.allowed.contains(&origin)
    }
}

/// Everything the listeners and transports consult.
#[derive(Debug)]
pub struct Security {
    /// Token verification (see [`Authenticator::verify`]).
    pub auth: Authenticator,
    /// Anonymous clients accepted on the HTTP listener (WebSocket, Socket.IO).
    pub anonymous_http: bool,
    /// Anonymous clients accepted on the TCP listener.
    pub anonymous_tcp: bool,
    /// Time to authenticate where anonymous access is refused.
    pub auth_timeout: Duration,
    /// API keys for `/api`.
    pub api_keys: Vec<String>,
    /// Rate limits.
    pub rate: RateConfig,
    /// Per-IP limits.
    pub ips: Arc<IpLimiter>,
    /// Browser origins allowed.
    pub origins: OriginPolicy,
    /// TLS acceptors, when TLS is on.
    pub tls: Option<TlsAcceptors>,
    /// HTTP request head (and TLS handshake) deadline.
    pub header_timeout: Duration,
    /// Largest `/api` body.
    pub max_body: usize,
    /// Balancers whose PROXY headers and `X-Forwarded-For` are believed.
    pub trusted: TrustedProxies,
}

fn read_file(path: &PathBuf) -> Result<String, SecurityError> {
    std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
        path: path.clone(),
        source,
    })
}

impl Security {
    /// Builds the state for listeners bound at `http` and `tcp`; `data` is
    /// where a self-signed certificate is written.
    ///
    /// # Errors
    /// A key, key file or certificate that cannot be loaded.
    pub fn build(
        args: &SecurityArgs,
        http: SocketAddr,
        tcp: SocketAddr,
        data: &std::path::Path,
    ) -> Result<Self, SecurityError> {
        let secret = match (&args.jwt_secret, &args.jwt_secret_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(p)) => Some(read_file(p)?.trim_end_matches(['\r', '\n']).to_owned()),
            (None, None) => None,
        };
        let auth = Authenticator::load(&KeySource {
            secret,
            public_key: args.jwt_public_key.clone(),
            jwks: args.jwks.clone(),
            issuers: args.jwt_issuer.clone(),
            audiences: args.jwt_audience.clone(),
            leeway: args.jwt_leeway,
        })?;
        let policy = if args.allow_anonymous {
            AnonymousPolicy::Allow
        } else {
            args.anonymous
        };
        let anon = |addr: SocketAddr| match policy {
            AnonymousPolicy::Allow => true,
            AnonymousPolicy::Deny => false,
            AnonymousPolicy::Auto => addr.ip().is_loopback(),
        };
        let mut api_keys: Vec<String> = args
            .api_keys
            .iter()
            .filter(|k| !k.is_empty())
            .cloned()
            .collect();
        if let Some(p) = &args.api_keys_file {
            api_keys.extend(
                read_file(p)?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        let tls = match (&args.tls_cert, &args.tls_key, args.self_signed) {
            (Some(c), Some(k), _) => {
                let (certs, key) = tls::load_pem(c, k)?;
                Some(tls::acceptors(certs, key)?)
            }
            (None, None, true) => {
                let (certs, key, pem) = tls::self_signed()?;
                std::fs::create_dir_all(data)
                    .and_then(|()| std::fs::write(data.join("self-signed.crt"), pem))
                    .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
                tracing::warn!(
                    cert = %data.join("self-signed.crt").display(),
                    "serving TLS with a self-signed certificate (development only)"
                );
                Some(tls::acceptors(certs, key)?)
            }
            (None, None, false) => None,
            _ => return Err(TlsError::Incomplete.into()),
        };
        let rate = RateConfig {
            message_rate: args.rate_messages,
            message_burst: args.rate_burst,
            ip_connect_rate: args.ip_connect_rate,
            ip_connect_burst: args.ip_connect_burst,
            max_connections_per_ip: args.max_connections_per_ip,
        };
        let s = Self {
            auth,
            anonymous_http: anon(http),
            anonymous_tcp: anon(tcp),
            auth_timeout: args.auth_timeout,
            api_keys,
            rate,
            ips: IpLimiter::new(rate),
            origins: OriginPolicy::new(&args.allowed_origins),
            tls,
            header_timeout: args.header_timeout,
            max_body: args.max_body,
            trusted: TrustedProxies::new(args.trust_proxy.clone()),
        };
        if !s.trusted.is_empty() {
            let nets: Vec<String> = args.trust_proxy.iter().map(ToString::to_string).collect();
            tracing::info!(
                trusted = %nets.join(","),
                "client addresses taken from these balancers (PROXY protocol, X-Forwarded-For)"
            );
        }
        if !(s.auth.is_configured() || s.anonymous_http && s.anonymous_tcp) {
            tracing::warn!(
                "anonymous access is refused on a listener but no JWT key is configured: \
                 clients there cannot do anything (set --jwt-secret, --jwt-public-key or --jwks)"
            );
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let p = OriginPolicy::new(&["https://app.example".into()]);
        assert!(p.allows(None, Some("hub:7878")));
        assert!(p.allows(Some("http://hub:7878"), Some("hub:7878")));
        assert!(p.allows(Some("https://APP.example/"), Some("hub:7878")));
        assert!(!p.allows(Some("https://evil.example"), Some("hub:7878")));
        assert!(!p.allows(Some("null"), Some("hub:7878")));
        assert!(OriginPolicy::new(&["*".into()]).allows(Some("https://x"), None));
    }
}
