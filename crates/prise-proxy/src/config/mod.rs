//! Proxy configuration: command-line flags, an optional TOML file, and the validated
//! [`ProxyConfig`] built from both.
//!
//! Flags override the file. On reload (SIGHUP) the file is read again and the same flags are
//! laid over it, so a flag given at start stays in force.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod backend;

use backend::FileBackend;
pub(crate) use backend::same_family;
pub use backend::{BackendConfig, BackendSpec, ListenerConfig, resolve_all};

/// Default health-check interval (HAProxy's `inter`).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Default number of consecutive successful checks that bring a backend up (HAProxy's `rise`).
pub const DEFAULT_RISE: u32 = 2;
/// Default number of consecutive failures that take a backend down (HAProxy's `fall`).
pub const DEFAULT_FALL: u32 = 3;
/// Default time allowed for a TCP connect to a backend.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default number of other backends tried after a failed connect.
pub const DEFAULT_RETRIES: u32 = 2;
/// Default time a connection may stay without any byte moving in either direction.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default cap on client connections handled at once; further clients wait in the backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default deadline for draining connections on shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default per-direction buffer (copy path) or pipe size (splice path), in bytes.
pub const DEFAULT_BUFFER_SIZE: usize = 256 * 1024;
/// Smallest buffer accepted.
pub const MIN_BUFFER_SIZE: usize = 4 * 1024;
/// Largest buffer accepted (the kernel's default `pipe-max-size`).
pub const MAX_BUFFER_SIZE: usize = 1024 * 1024;
/// Most relay threads accepted by `--threads`.
pub const MAX_THREADS: usize = 256;
/// Most bytes a send/expect health check reads while looking for its expected answer.
pub const MAX_EXPECT_READ: usize = 16 * 1024;
/// Default time between two resolutions of a backend given by name.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default number of clients that may wait, per listener, for a backend below its `maxconn`.
pub const DEFAULT_MAX_QUEUE: usize = 1024;
/// Default time a client may wait in that queue before it is closed.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most listeners accepted.
pub const MAX_LISTENERS: usize = 64;
/// Most backends accepted per listener (configured, resolved and added at run time).
pub const MAX_BACKENDS: usize = 1024;

/// How a new connection chooses its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Each healthy backend in turn.
    #[value(name = "roundrobin")]
    RoundRobin,
    /// The healthy backend with the fewest open connections (ties in turn).
    #[value(name = "leastconn")]
    LeastConn,
    /// A hash of the client's address over the healthy backends: a client stays on one
    /// backend while the set of healthy backends does not change.
    #[value(name = "source")]
    Source,
    /// A consistent-hash ring of the client's address: when one of N backends goes, only its
    /// clients (about 1/N) move.
    #[value(name = "consistent")]
    Consistent,
}

/// What an active health check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// No active checks: every backend is taken as up.
    None,
    /// A TCP connect that succeeds within the check timeout.
    Tcp,
    /// A TCP connect and a full TLS handshake (with the backend TLS settings).
    Tls,
    /// Connect, send the `send` bytes, and read until the `expect` bytes appear.
    Expect,
}

/// Which PROXY protocol header is sent to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// The human-readable v1 line.
    V1,
    /// The binary v2 header.
    V2,
}

impl From<ProxyProtocol> for prise_proto::proxy_header::Version {
    fn from(v: ProxyProtocol) -> Self {
        match v {
            ProxyProtocol::V1 => Self::V1,
            ProxyProtocol::V2 => Self::V2,
        }
    }
}

/// Error building a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// An address did not parse or resolve.
    #[error("invalid address {0}")]
    Address(String),
    /// A duration did not parse.
    #[error("invalid duration {0}")]
    Duration(String),
    /// A required setting is absent.
    #[error("missing setting: {0}")]
    Missing(&'static str),
    /// A setting is out of range or inconsistent.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Command-line arguments of `prise proxy`.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct ProxyArgs {
    /// Runtime control of a running proxy through its admin endpoint.
    #[command(subcommand)]
    pub command: Option<ProxyCommand>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (repeat for several listeners, each with
    /// the --backend list).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Backend `host:port` with options, e.g. `10.0.0.1:80,weight=3`, `host:80,backup`,
    /// `host:80,maxconn=100,slowstart=10s` (repeat for each backend).
    #[arg(long = "backend", value_name = "ADDR[,OPT...]")]
    pub backends: Vec<String>,
    /// TOML file with the settings (re-read on SIGHUP); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Load-balancing algorithm [default: roundrobin].
    #[arg(long)]
    pub balance: Option<Balance>,
    /// Active health check [default: tcp].
    #[arg(long)]
    pub check: Option<CheckKind>,
    /// Bytes sent by the `expect` check (escapes \r \n \t \\ \xHH).
    #[arg(long)]
    pub check_send: Option<String>,
    /// Bytes the `expect` check waits for in the reply (same escapes).
    #[arg(long)]
    pub check_expect: Option<String>,
    /// Time between health checks [default: 2s].
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// Time one health check may take [default: the interval].
    #[arg(long, value_name = "DURATION")]
    pub check_timeout: Option<String>,
    /// Consecutive good checks to bring a backend up [default: 2].
    #[arg(long)]
    pub rise: Option<u32>,
    /// Consecutive failures (checks or connects) to take a backend down [default: 3].
    #[arg(long)]
    pub fall: Option<u32>,
    /// Time allowed to connect to a backend [default: 2s].
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Other backends tried after a failed connect [default: 2].
    #[arg(long)]
    pub retries: Option<u32>,
    /// Close a connection after this long without traffic; 0 disables [default: 10m].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Client connections handled at once [default: 10000].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Deadline for draining connections on SIGTERM/SIGINT [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// Per-direction buffer or pipe size in bytes [default: 262144].
    #[arg(long)]
    pub buffer_size: Option<usize>,
    /// Copy through user-space buffers instead of splice(2).
    #[arg(long)]
    pub no_splice: bool,
    /// Relay threads, each with its own event loop [default: the number of CPUs].
    #[arg(long)]
    pub threads: Option<usize>,
    /// PEM certificate chain: terminate TLS on the listener.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Speak TLS to the backends.
    #[arg(long)]
    pub backend_tls: bool,
    /// PEM CA bundle trusted for backend certificates [default: the system store].
    #[arg(long, value_name = "FILE")]
    pub backend_ca: Option<PathBuf>,
    /// Server name sent to and verified on backends [default: the backend's IP].
    #[arg(long)]
    pub backend_sni: Option<String>,
    /// Send a PROXY protocol header to backends.
    #[arg(long)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Read a PROXY protocol header (v1 or v2) from every client: the address it carries is
    /// the client's (for `source`, `consistent` and --proxy-protocol).
    #[arg(long)]
    pub accept_proxy: bool,
    /// Time between two resolutions of backends given by name; 0 resolves only at load
    /// [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub resolve_interval: Option<String>,
    /// Clients that may wait per listener while every backend is at its maxconn
    /// [default: 1024].
    #[arg(long)]
    pub max_queue: Option<usize>,
    /// Time a client may wait in that queue [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub queue_timeout: Option<String>,
    /// Serve /metrics, /status and the /backends control API on this address.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
}

/// Subcommands of `prise proxy`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ProxyCommand {
    /// Control a running proxy through its admin endpoint.
    Ctl(crate::ctl::CtlArgs),
}

/// The TOML file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    #[serde(default)]
    backends: Vec<FileBackend>,
    #[serde(default, rename = "listener")]
    listeners: Vec<FileListener>,
    balance: Option<Balance>,
    accept_proxy: Option<bool>,
    resolve_interval: Option<String>,
    max_queue: Option<usize>,
    queue_timeout: Option<String>,
    connect_timeout: Option<String>,
    retries: Option<u32>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    drain_timeout: Option<String>,
    buffer_size: Option<usize>,
    splice: Option<bool>,
    threads: Option<usize>,
    proxy_protocol: Option<ProxyProtocol>,
    admin: Option<String>,
    #[serde(default)]
    check: FileCheck,
    tls: Option<FileTls>,
    backend_tls: Option<FileBackendTls>,
}

/// One `[[listener]]` table: its own address and backends; unset keys take the top level's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    listen: String,
    backends: Vec<FileBackend>,
    balance: Option<Balance>,
    accept_proxy: Option<bool>,
    proxy_protocol: Option<ProxyProtocol>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCheck {
    kind: Option<CheckKind>,
    interval: Option<String>,
    timeout: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
    send: Option<String>,
    expect: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackendTls {
    ca: Option<PathBuf>,
    server_name: Option<String>,
}

/// Active health-check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckConfig {
    /// What a check does.
    pub kind: CheckKind,
    /// Time between two checks of one backend.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
    /// Bytes sent by an `expect` check.
    pub send: Vec<u8>,
    /// Bytes an `expect` check waits for (at most [`MAX_EXPECT_READ`] bytes are read).
    pub expect: Vec<u8>,
}

/// TLS termination on the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl ListenerTls {
    /// Termination with the certificate chain and key in these PEM files.
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self { cert, key }
    }
}

/// TLS toward the backends; the default trusts the system store and verifies the backend's
/// IP address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendTls {
    /// PEM CA bundle; `None` trusts the system store.
    pub ca: Option<PathBuf>,
    /// Server name to send and verify; `None` uses the backend's IP address.
    pub server_name: Option<String>,
}

/// A complete, validated proxy configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Listeners, each with its own backends (at least one).
    pub listeners: Vec<ListenerConfig>,
    /// Time between resolutions of backends given by name; `None` resolves only at load.
    pub resolve_interval: Option<Duration>,
    /// Clients that may wait per listener while every candidate backend is at `maxconn`.
    pub max_queue: usize,
    /// Time a client may wait in that queue.
    pub queue_timeout: Duration,
    /// Active health checks.
    pub check: CheckConfig,
    /// Time allowed to connect (and to complete TLS handshakes).
    pub connect_timeout: Duration,
    /// Other backends tried after a failed connect.
    pub retries: u32,
    /// Idle timeout; `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Client connections handled at once.
    pub max_connections: usize,
    /// Deadline for draining on shutdown, and for a drained backend's connections.
    pub drain_timeout: Duration,
    /// Per-direction buffer or pipe size.
    pub buffer_size: usize,
    /// Use splice(2) where both ends are plain TCP (Linux only).
    pub splice: bool,
    /// Relay threads: connections are spread over this many single-threaded event loops
    /// (fixed at start; a reload does not change it).
    pub threads: usize,
    /// TLS termination on the listener.
    pub tls: Option<ListenerTls>,
    /// TLS toward backends.
    pub backend_tls: Option<BackendTls>,
    /// Admin (metrics, status, backend control) address.
    pub admin: Option<SocketAddr>,
}

impl ProxyConfig {
    /// A configuration with every default and one listener, on `listen` over `backends`.
    pub fn new(listen: SocketAddr, backends: Vec<SocketAddr>) -> Self {
        Self {
            listeners: vec![ListenerConfig::new(listen, &backends)],
            resolve_interval: Some(DEFAULT_RESOLVE_INTERVAL),
            max_queue: DEFAULT_MAX_QUEUE,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            check: CheckConfig {
                kind: CheckKind::Tcp,
                interval: DEFAULT_CHECK_INTERVAL,
                timeout: DEFAULT_CHECK_INTERVAL,
                rise: DEFAULT_RISE,
                fall: DEFAULT_FALL,
                send: Vec::new(),
                expect: Vec::new(),
            },
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            buffer_size: DEFAULT_BUFFER_SIZE,
            splice: cfg!(target_os = "linux"),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            tls: None,
            backend_tls: None,
            admin: None,
        }
    }

    /// The first listener (the only one unless several are configured).
    pub fn listener(&mut self) -> &mut ListenerConfig {
        // `new` creates one and `validate` refuses a configuration without.
        &mut self.listeners[0]
    }

    /// Builds the configuration from the flags and, if `--config` is given, the TOML file.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, an address or duration that does not parse, a
    /// missing listener or backend list, or an out-of-range value.
    pub fn from_args(args: &ProxyArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut cfg = Self::new(SocketAddr::from(([127, 0, 0, 1], 0)), Vec::new());
        cfg.listeners = listeners(args, &file)?;
        if let Some(k) = args.check.or(file.check.kind) {
            cfg.check.kind = k;
        }
        if let Some(i) = pick(&args.interval, &file.check.interval) {
            cfg.check.interval = duration(i)?;
        }
        cfg.check.timeout = match pick(&args.check_timeout, &file.check.timeout) {
            Some(t) => duration(t)?,
            None => cfg.check.interval,
        };
        if let Some(r) = args.rise.or(file.check.rise) {
            cfg.check.rise = r;
        }
        if let Some(f) = args.fall.or(file.check.fall) {
            cfg.check.fall = f;
        }
        if let Some(s) = pick(&args.check_send, &file.check.send) {
            cfg.check.send = unescape(s)?;
        }
        if let Some(e) = pick(&args.check_expect, &file.check.expect) {
            cfg.check.expect = unescape(e)?;
        }
        if let Some(t) = pick(&args.connect_timeout, &file.connect_timeout) {
            cfg.connect_timeout = duration(t)?;
        }
        if let Some(r) = args.retries.or(file.retries) {
            cfg.retries = r;
        }
        if let Some(t) = pick(&args.idle_timeout, &file.idle_timeout) {
            let d = duration(t)?;
            cfg.idle_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(m) = args.max_connections.or(file.max_connections) {
            cfg.max_connections = m;
        }
        if let Some(t) = pick(&args.drain_timeout, &file.drain_timeout) {
            cfg.drain_timeout = duration(t)?;
        }
        if let Some(b) = args.buffer_size.or(file.buffer_size) {
            cfg.buffer_size = b;
        }
        if let Some(t) = args.threads.or(file.threads) {
            cfg.threads = t;
        }
        if args.no_splice {
            cfg.splice = false;
        } else if let Some(s) = file.splice {
            cfg.splice = s && cfg!(target_os = "linux");
        }
        cfg.tls = match (&args.tls_cert, &args.tls_key, file.tls) {
            (Some(cert), Some(key), _) => Some(ListenerTls {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (_, _, Some(t)) => Some(ListenerTls {
                cert: t.cert,
                key: t.key,
            }),
            _ => None,
        };
        let file_btls = file.backend_tls;
        if args.backend_tls || file_btls.is_some() {
            let f = file_btls.unwrap_or_default();
            cfg.backend_tls = Some(BackendTls {
                ca: args.backend_ca.clone().or(f.ca),
                server_name: args.backend_sni.clone().or(f.server_name),
            });
        }
        if let Some(t) = pick(&args.resolve_interval, &file.resolve_interval) {
            let d = duration(t)?;
            cfg.resolve_interval = (!d.is_zero()).then_some(d);
        }
        if let Some(q) = args.max_queue.or(file.max_queue) {
            cfg.max_queue = q;
        }
        if let Some(t) = pick(&args.queue_timeout, &file.queue_timeout) {
            cfg.queue_timeout = duration(t)?;
        }
        if let Some(a) = args.admin.as_deref().or(file.admin.as_deref()) {
            cfg.admin = Some(resolve(a)?);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and consistency.
    ///
    /// # Errors
    /// The first setting found out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.listeners.is_empty() {
            return Err(ConfigError::Missing("listen address (--listen)"));
        }
        if self.listeners.len() > MAX_LISTENERS {
            return Err(ConfigError::Invalid(format!(
                "at most {MAX_LISTENERS} listeners"
            )));
        }
        for l in &self.listeners {
            if l.backends.is_empty() {
                return Err(ConfigError::Missing("at least one backend (--backend)"));
            }
            if l.backends.len() > MAX_BACKENDS {
                return Err(ConfigError::Invalid(format!(
                    "at most {MAX_BACKENDS} backends per listener"
                )));
            }
            for b in &l.backends {
                if !(1..=crate::balance::MAX_WEIGHT).contains(&b.weight) {
                    return Err(ConfigError::Invalid(format!(
                        "backend {}: weight out of range",
                        b.name
                    )));
                }
            }
        }
        if self.queue_timeout.is_zero() {
            return bad("queue timeout must be positive");
        }
        if self.check.rise == 0 || self.check.fall == 0 {
            return bad("rise and fall must be at least 1");
        }
        if self.check.interval.is_zero() || self.check.timeout.is_zero() {
            return bad("check interval and timeout must be positive");
        }
        if self.check.kind == CheckKind::Expect && self.check.expect.is_empty() {
            return bad("the expect check needs --check-expect");
        }
        if self.check.expect.len() > MAX_EXPECT_READ {
            return bad("check expect string is too long");
        }
        if self.check.kind == CheckKind::Tls && self.backend_tls.is_none() {
            return bad("the tls check needs --backend-tls");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect timeout must be positive");
        }
        if self.max_connections == 0 {
            return bad("max connections must be at least 1");
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(ConfigError::Invalid(format!(
                "threads must be between 1 and {MAX_THREADS}"
            )));
        }
        if !(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&self.buffer_size) {
            return Err(ConfigError::Invalid(format!(
                "buffer size must be between {MIN_BUFFER_SIZE} and {MAX_BUFFER_SIZE}"
            )));
        }
        Ok(())
    }
}

fn pick<'a>(flag: &'a Option<String>, file: &'a Option<String>) -> Option<&'a str> {
    flag.as_deref().or(file.as_deref())
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

/// The listeners: every `--listen` with the `--backend` list (or the file's top-level
/// backends); without `--listen`, the file's top-level `listen` and its `[[listener]]`
/// tables.
fn listeners(args: &ProxyArgs, file: &FileConfig) -> Result<Vec<ListenerConfig>, ConfigError> {
    let top_backends = || -> Result<Vec<BackendConfig>, ConfigError> {
        if args.backends.is_empty() {
            file.backends
                .iter()
                .cloned()
                .map(BackendConfig::from_file)
                .collect()
        } else {
            args.backends
                .iter()
                .map(|b| BackendConfig::parse(b))
                .collect()
        }
    };
    let balance = args.balance.or(file.balance).unwrap_or(Balance::RoundRobin);
    let accept_proxy = args.accept_proxy || file.accept_proxy.unwrap_or(false);
    let proxy_protocol = args.proxy_protocol.or(file.proxy_protocol);
    let mut out = Vec::new();
    let top: Vec<&str> = if args.listen.is_empty() {
        file.listen.as_deref().into_iter().collect()
    } else {
        args.listen.iter().map(String::as_str).collect()
    };
    for l in top {
        out.push(ListenerConfig {
            listen: resolve(l)?,
            backends: top_backends()?,
            balance,
            accept_proxy,
            proxy_protocol,
        });
    }
    if args.listen.is_empty() {
        for l in &file.listeners {
            out.push(ListenerConfig {
                listen: resolve(&l.listen)?,
                backends: l
                    .backends
                    .iter()
                    .cloned()
                    .map(BackendConfig::from_file)
                    .collect::<Result<_, _>>()?,
                balance: args.balance.or(l.balance).unwrap_or(balance),
                accept_proxy: args.accept_proxy || l.accept_proxy.unwrap_or(accept_proxy),
                proxy_protocol: args.proxy_protocol.or(l.proxy_protocol).or(proxy_protocol),
            });
        }
    }
    Ok(out)
}

/// Parses `ip:port`, or resolves `host:port` to its first address.
fn resolve(s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| ConfigError::Address(s.to_owned()))
}

fn duration(s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s).map_err(|_| ConfigError::Duration(s.to_owned()))
}

/// Turns `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` escapes into bytes.
///
/// # Errors
/// An unknown escape or a bad hex pair.
pub fn unescape(s: &str) -> Result<Vec<u8>, ConfigError> {
    let bad = || ConfigError::Invalid(format!("bad escape in {s}"));
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next().ok_or_else(bad)? {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hi = bytes.next().ok_or_else(bad)?;
                let lo = bytes.next().ok_or_else(bad)?;
                let hex = [hi, lo];
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_handles_escapes() {
        assert_eq!(unescape(r"PING\r\n").unwrap(), b"PING\r\n");
        assert_eq!(unescape(r"a\x41\\").unwrap(), b"aA\\");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:1000"
backends = ["127.0.0.1:1", "127.0.0.1:2"]
balance = "leastconn"
idle_timeout = "0s"
[check]
kind = "expect"
send = "PING\\r\n"
expect = "+PONG"
interval = "500ms"
"#,
        )
        .unwrap();
        let args = ProxyArgs {
            config: Some(path),
            listen: vec!["127.0.0.1:2000".into()],
            rise: Some(5),
            ..Default::default()
        };
        let cfg = ProxyConfig::from_args(&args).unwrap();
        assert_eq!(cfg.listeners.len(), 1);
        assert_eq!(cfg.listeners[0].listen.port(), 2000);
        assert_eq!(cfg.listeners[0].backends.len(), 2);
        assert_eq!(cfg.listeners[0].balance, Balance::LeastConn);
        assert_eq!(cfg.idle_timeout, None);
        assert_eq!(cfg.check.kind, CheckKind::Expect);
        assert_eq!(cfg.check.send, b"PING\r\n");
        assert_eq!(cfg.check.interval, Duration::from_millis(500));
        assert_eq!(cfg.check.timeout, Duration::from_millis(500));
        assert_eq!(cfg.check.rise, 5);
        assert_eq!(cfg.check.fall, DEFAULT_FALL);
    }

    #[test]
    fn rejects_bad_settings() {
        let args = ProxyArgs {
            listen: vec!["127.0.0.1:0".into()],
            ..Default::default()
        };
        assert!(matches!(
            ProxyConfig::from_args(&args),
            Err(ConfigError::Missing(_))
        ));
        let args = ProxyArgs {
            listen: vec!["127.0.0.1:0".into()],
            backends: vec!["127.0.0.1:1".into()],
            buffer_size: Some(10),
            ..Default::default()
        };
        assert!(matches!(
            ProxyConfig::from_args(&args),
            Err(ConfigError::Invalid(_))
        ));
    }
}
