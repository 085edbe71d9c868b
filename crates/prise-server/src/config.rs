//! `prise serve` settings: every key is a flag and a `PRISE_*` variable, with
//! safe defaults (loopback binds, limits on).

use prise_hub::HubConfig;
use prise_hub::store::Retention;
use prise_proto::limits::{self, Limits};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default HTTP listener (page, `/ws`, `/socket.io/`, metrics).
pub const DEFAULT_HTTP: &str = "127.0.0.1:7878";
/// Default TCP line-protocol listener.
pub const DEFAULT_TCP: &str = "127.0.0.1:7879";
/// Default data directory of the SQLite store.
pub const DEFAULT_DATA: &str = "./prise-data";
/// Default interval of the keep-alive comments on `/sse` streams.
pub const DEFAULT_SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Default time given to connections to close on shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where history lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// A SQLite file under `--data` (durable; the default).
    Sqlite,
    /// Memory only (lost at exit).
    Memory,
}

/// Arguments of `prise serve`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct ServeArgs {
    /// HTTP listener: the page, /ws, /socket.io/, /metrics, /healthz, /readyz (port 0 picks one).
    #[arg(long, env = "PRISE_HTTP", default_value = DEFAULT_HTTP)]
    pub http: SocketAddr,
    /// TCP line-protocol listener (port 0 picks one).
    #[arg(long, env = "PRISE_TCP", default_value = DEFAULT_TCP)]
    pub tcp: SocketAddr,
    /// History store.
    #[arg(long, env = "PRISE_STORE", value_enum, default_value_t = StoreKind::Sqlite)]
    pub store: StoreKind,
    /// Directory of the SQLite store (created if missing).
    #[arg(long, env = "PRISE_DATA", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// Messages kept per room.
    #[arg(long, env = "PRISE_RETAIN_COUNT", default_value_t = prise_hub::store::DEFAULT_RETAIN_COUNT)]
    pub retain_count: usize,
    /// Age after which messages are dropped (e.g. 7d, 12h).
    #[arg(long, env = "PRISE_RETAIN_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub retain_age: Duration,
    /// Longest TCP line in bytes.
    #[arg(long, env = "PRISE_MAX_LINE", default_value_t = limits::DEFAULT_MAX_LINE)]
    pub max_line: usize,
    /// Largest message content (encoded JSON) in bytes.
    #[arg(long, env = "PRISE_MAX_MESSAGE", default_value_t = limits::DEFAULT_MAX_MESSAGE)]
    pub max_message: usize,
    /// Largest WebSocket frame or message in bytes.
    #[arg(long, env = "PRISE_MAX_FRAME", default_value_t = limits::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// Accept permessage-deflate (RFC 7692) on `/ws` and on Socket.IO's
    /// websocket transport when a client offers it. Off by default: each
    /// compressed connection holds about 300 KiB of compression state.
    #[arg(long, env = "PRISE_WS_DEFLATE")]
    pub ws_deflate: bool,
    /// Most rooms one session may be in.
    #[arg(long, env = "PRISE_MAX_ROOMS_PER_SESSION", default_value_t = limits::DEFAULT_MAX_ROOMS_PER_SESSION)]
    pub max_rooms_per_session: usize,
    /// Most concurrent connections over all transports.
    #[arg(long, env = "PRISE_MAX_CONNECTIONS", default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Outbound queue depth per session; a full queue disconnects a slow consumer.
    #[arg(long, env = "PRISE_QUEUE_DEPTH", default_value_t = limits::DEFAULT_QUEUE_DEPTH)]
    pub queue_depth: usize,
    /// Most other members of a room on this node that one join or leave is
    /// pushed to at once; larger rooms coalesce joins and leaves into one
    /// presence diff per --presence-interval. 0: no limit.
    #[arg(long, env = "PRISE_MAX_PRESENCE_FANOUT", default_value_t = limits::DEFAULT_MAX_PRESENCE_FANOUT)]
    pub max_presence_fanout: usize,
    /// How often a large room (above --max-presence-fanout) pushes its
    /// presence diff, at most (e.g. 1s).
    #[arg(long, env = "PRISE_PRESENCE_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub presence_interval: Duration,
    /// How long a disconnected Socket.IO session can be resumed (e.g. 2m).
    #[arg(long, env = "PRISE_RECOVERY_WINDOW", default_value = "2m", value_parser = humantime::parse_duration)]
    pub recovery_window: Duration,
    /// Interval of the keep-alive comments on `/sse` streams (e.g. 15s);
    /// they keep proxies from closing an idle stream and find dead peers.
    #[arg(long, env = "PRISE_SSE_KEEPALIVE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub sse_keepalive: Duration,
    /// Redis URL (redis://HOST:PORT[/DB]): run as one node of a cluster sharing
    /// rooms, history, presence and recovery through Redis (replaces --store).
    #[arg(long, env = "PRISE_REDIS")]
    pub redis: Option<String>,
    /// Prefix of every Redis key and channel (clusters sharing one Redis use different ones).
    #[arg(long, env = "PRISE_REDIS_PREFIX", default_value = prise_hub::store::redis::DEFAULT_PREFIX)]
    pub redis_prefix: String,
    /// With --redis: a node silent for this long has its members removed from presence (e.g. 10s).
    #[arg(long, env = "PRISE_PRESENCE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub presence_ttl: Duration,
    /// With --redis: the HTTP address (HOST:PORT) other nodes reach this one
    /// at, to forward Socket.IO long-polling requests of the sessions it
    /// holds (default: the bound --http address).
    #[arg(long, env = "PRISE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Time given to connections to close on SIGINT/SIGTERM (e.g. 10s).
    #[arg(long, env = "PRISE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// TOML file with these settings (keys are the flag names with `_`; see
    /// `prise config default`); flags and variables override it.
    #[arg(long, env = "PRISE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Backend hooks: connect, refresh, join, publish, rpc.
    #[command(flatten)]
    pub hooks: Box<crate::hooks::HookArgs>,
    /// Webhooks: the hub's events, sent to the backend.
    #[command(flatten)]
    pub webhooks: Box<crate::webhooks::WebhookArgs>,
    /// Authentication, rate limits, origins, TLS and HTTP timeouts.
    #[command(flatten)]
    pub security: Box<crate::security::SecurityArgs>,
    /// Namespaces and room policies: the `[[namespaces]]` and `[[rooms]]`
    /// tables of the `--config` file (no flag of their own).
    #[arg(skip)]
    pub policies: std::sync::Arc<prise_hub::policy::Policies>,
}

impl ServeArgs {
    /// The limits these arguments set (others at their defaults).
    pub fn limits(&self) -> Limits {
        let mut l = Limits::default();
        l.max_line = self.max_line;
        l.max_message = self.max_message;
        l.max_frame = self.max_frame;
        l.max_rooms_per_session = self.max_rooms_per_session;
        l.max_connections = self.max_connections;
        l.queue_depth = self.queue_depth;
        l.max_presence_fanout = self.max_presence_fanout;
        l
    }

    /// The permessage-deflate settings of the hub's WebSockets, with `--ws-deflate`.
    pub fn ws_deflate(&self) -> Option<prise_ws::DeflateConfig> {
        self.ws_deflate.then(prise_ws::DeflateConfig::default)
    }

    /// The hub settings.
    pub fn hub_config(&self) -> HubConfig {
        let mut c = HubConfig::default();
        c.limits = self.limits();
        c.recovery_window = self.recovery_window;
        c.policies = std::sync::Arc::clone(&self.policies);
        c.presence_interval = self.presence_interval.max(Duration::from_millis(10));
        c
    }

    /// The Redis engine settings, with `--redis`.
    pub fn redis_config(&self) -> Option<prise_hub::redis_broker::RedisConfig> {
        self.redis.as_ref().map(|url| {
            let mut c = prise_hub::redis_broker::RedisConfig::new(url);
            c.prefix = self.redis_prefix.clone();
            c.presence_ttl = self.presence_ttl;
            c.retention = self.retention();
            c.webhooks = self.webhooks.webhook_url.is_some();
            c
        })
    }

    /// The retention settings.
    pub fn retention(&self) -> Retention {
        Retention {
            count: self.retain_count,
            age: self.retain_age,
        }
    }
}

#[derive(clap::Parser)]
#[command(no_binary_name = true)]
struct Flags {
    #[command(flatten)]
    args: ServeArgs,
}

impl ServeArgs {
    /// Parses `prise serve` flags (without the command name), e.g. for tests
    /// and embedding: `ServeArgs::from_flags(["--http", "127.0.0.1:0"])`.
    ///
    /// # Errors
    /// A clap error describing the bad flag.
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory as _, Parser as _};
        let argv: Vec<std::ffi::OsString> = flags.into_iter().map(Into::into).collect();
        let args = Flags::try_parse_from(argv.clone())?.args;
        let Some(path) = args.config.clone() else {
            return Ok(args);
        };
        let bad = |e| Flags::command().error(clap::error::ErrorKind::InvalidValue, e);
        let argv = crate::config_file::with_file(&Flags::command(), argv, 0, &path).map_err(bad)?;
        let mut args = Flags::try_parse_from(argv)?.args;
        args.policies = std::sync::Arc::new(crate::policy_file::policies(&path).map_err(bad)?);
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn documented_defaults_are_the_flags_defaults() {
        let args = ServeArgs::from_flags(["--store", "memory"]).unwrap();
        assert_eq!(args.sse_keepalive, DEFAULT_SSE_KEEPALIVE);
        assert_eq!(args.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    }

    #[test]
    fn the_default_file_gives_the_default_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prise.toml");
        std::fs::write(&path, crate::config_file::default_file(&Flags::command())).unwrap();
        let mut from_file = ServeArgs::from_flags(["--config", path.to_str().unwrap()]).unwrap();
        from_file.config = None;
        let defaults = ServeArgs::from_flags(std::iter::empty::<&str>()).unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prise.toml");
        std::fs::write(
            &path,
            "store = \"memory\"\nmax_line = 100\nrate_messages = 0\nself_signed = true\n\
             allowed_origins = [\"https://a.example\", \"https://b.example\"]\n",
        )
        .unwrap();
        let args = ServeArgs::from_flags(["--config", path.to_str().unwrap(), "--max-line", "20"])
            .unwrap();
        assert_eq!(args.store, StoreKind::Memory);
        assert_eq!(args.max_line, 20);
        assert!(args.security.rate_messages.abs() < f64::EPSILON);
        assert!(args.security.self_signed);
        assert_eq!(
            args.security.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        std::fs::write(&path, "max_lines = 1\n").unwrap();
        let e = ServeArgs::from_flags(["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("unknown key `max_lines`"), "{e}");
    }
}
