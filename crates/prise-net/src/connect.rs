//! `prise connect URL`: standard input to a socket and the socket to
//! standard output, with timeouts, retries and framing.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

use crate::backoff::{Backoff, BackoffConfig, DEFAULT_BASE, DEFAULT_CAP};
use crate::bridge::{UrlTarget, url_session};
use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::exec;
use crate::listen::exec_settings;
use crate::proxy_client::ProxyUrl;
use crate::relay::{Events, Input, RelayArgs, RelayOptions, relay};
use crate::sio_client::{self, SioArgs};
use crate::tls::ClientTlsArgs;
use crate::transport::{self, Conn, ConnectOptions, SocketArgs, WsClientArgs};

/// Arguments of `prise connect`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct ConnectArgs {
    /// Where to connect: tcp://, tls://, udp://, ws://, wss://host:port, or unix:/path.
    #[arg(value_name = "URL")]
    pub url: Endpoint,
    /// Give up connecting (including TLS and WebSocket handshakes) after this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    /// Retry policy.
    pub retry: RetryArgs,
    #[command(flatten)]
    /// Framing and output.
    pub relay: RelayArgs,
    #[command(flatten)]
    /// TCP socket options.
    pub socket: SocketArgs,
    #[command(flatten)]
    /// TLS options.
    pub tls: ClientTlsArgs,
    #[command(flatten)]
    /// WebSocket options.
    pub ws: WsClientArgs,
    /// Connect through a proxy: socks5://host:port (user:pass@ before the host to authenticate) or http://host:port (CONNECT).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<ProxyUrl>,
    /// Run `sh -c CMD` with its stdin and stdout wired to the socket (instead
    /// of prise's own stdin and stdout).
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// When the connection drops while input is still open, dial again
    /// (backoff of --retry-base and --retry-cap, until it answers).
    #[arg(long)]
    pub reconnect: bool,
    #[command(flatten)]
    /// Socket.IO options (sio:// URLs).
    pub sio: SioArgs,
}

/// `--retry` and its backoff.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct RetryArgs {
    /// Retry a failed connect this many times.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retry: u32,
    /// Retry a failed connect until it succeeds.
    #[arg(long, conflicts_with = "retry")]
    pub retry_forever: bool,
    /// First backoff ceiling; doubles at each retry (full jitter below it).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub retry_base: Duration,
    /// Largest backoff ceiling.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub retry_cap: Duration,
}

impl Default for RetryArgs {
    fn default() -> Self {
        Self {
            retry: 0,
            retry_forever: false,
            retry_base: DEFAULT_BASE,
            retry_cap: DEFAULT_CAP,
        }
    }
}

impl RetryArgs {
    /// The backoff configuration.
    pub fn config(&self) -> BackoffConfig {
        BackoffConfig::new(
            self.retry_base,
            self.retry_cap,
            (!self.retry_forever).then_some(self.retry),
        )
    }
}

/// Connects to `ep`, retrying retryable failures with `backoff`.
///
/// Emits `attempt`, `retry` and `connected` events.
///
/// # Errors
/// The last failure once retries are exhausted, or the first one that is
/// not worth retrying (bad URL, invalid certificate).
pub async fn connect_with_retry<R: Rng>(
    ep: &Endpoint,
    opts: &ConnectOptions,
    mut backoff: Backoff<R>,
    events: &Events,
) -> Result<Conn, NetError> {
    loop {
        events.emit(
            "attempt",
            json!({ "attempt": backoff.attempt(), "url": ep.to_string() }),
        );
        match transport::connect(ep, opts).await {
            Ok(conn) => {
                let protocol = match &conn {
                    Conn::Ws(_, p) => p.clone(),
                    _ => None,
                };
                events.emit(
                    "connected",
                    json!({ "url": ep.to_string(), "protocol": protocol }),
                );
                return Ok(conn);
            }
            Err(e) if e.is_retryable() => {
                let Some(delay) = backoff.next_delay() else {
                    return Err(e);
                };
                tracing::info!(error = %e, delay = ?delay, "retrying");
                events.emit(
                    "retry",
                    json!({
                        "attempt": backoff.attempt(),
                        "delay_ms": delay.as_secs_f64() * 1000.0,
                        "error": e.to_string(),
                    }),
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs `prise connect`.
///
/// # Errors
/// See [`NetError`]; each maps to an exit code.
pub async fn run(args: ConnectArgs) -> Result<(), NetError> {
    let events = Events::new(args.relay.json, args.relay.hex);
    let opts = ConnectOptions {
        socket: args.socket.clone(),
        tls: args.tls.clone(),
        ws: args.ws.clone(),
        ws_config: prise_ws::WsConfig::capped(
            args.relay.max_message,
            args.relay.deflate.then(prise_ws::DeflateConfig::default),
        ),
        timeout: args.timeout,
        proxy: args.proxy.clone(),
    };
    if args.url.scheme == Scheme::Sio {
        if args.exec.is_some() || args.reconnect {
            return Err(NetError::Usage(
                "sio:// takes neither --exec nor --reconnect".into(),
            ));
        }
        return sio_client::run(&args.url, &opts, &args.sio, args.relay.max_message).await;
    }
    if let Some(command) = &args.exec {
        return run_exec(command, &args, opts).await;
    }
    let backoff = Backoff::new(args.retry.config(), StdRng::from_os_rng());
    let mut conn = connect_with_retry(&args.url, &opts, backoff, &events).await?;
    let mut input = Input::stdin();
    let mut stdout = tokio::io::stdout();
    let redial = args.retry.config().forever();
    let mut redials = Backoff::new(redial, StdRng::from_os_rng());
    loop {
        let mut relay_opts = RelayOptions::new(&args.relay, &conn);
        relay_opts.reset_on_eof = args.socket.linger0;
        // With --reconnect the peer's end of stream is a drop to redial
        // after, not a half-close to keep sending into.
        relay_opts.wait_for_input = !args.reconnect;
        let up_since = tokio::time::Instant::now();
        let result = relay(
            conn,
            &args.url.to_string(),
            &mut input,
            &mut stdout,
            &events,
            &relay_opts,
        )
        .await;
        let worth_redialling = match &result {
            Ok(()) => true,
            Err(e) => e.is_retryable(),
        };
        if !args.reconnect || input.ended() || !worth_redialling {
            return result;
        }
        if up_since.elapsed() >= args.retry.retry_cap {
            redials = Backoff::new(redial, StdRng::from_os_rng());
        }
        // The redial backoff has no retry limit.
        let delay = redials.next_delay().unwrap_or(crate::backoff::MIN_DELAY);
        tracing::info!(url = %args.url, delay = ?delay, "connection dropped; redialling");
        events.emit(
            "reconnect",
            json!({ "delay_ms": delay.as_secs_f64() * 1000.0 }),
        );
        tokio::time::sleep(delay).await;
        conn = connect_with_retry(
            &args.url,
            &opts,
            Backoff::new(redial, StdRng::from_os_rng()),
            &events,
        )
        .await?;
    }
}

/// `connect --exec`: the process's pipes in place of stdin and stdout.
async fn run_exec(command: &str, args: &ConnectArgs, opts: ConnectOptions) -> Result<(), NetError> {
    // exec_settings names the socket "first"; here the process comes first.
    let mut settings = exec_settings(&args.relay, args.url.scheme);
    std::mem::swap(&mut settings.first, &mut settings.second);
    let (mut process, child) = exec::spawn(command, &args.url.to_string(), settings.first)?;
    let target = UrlTarget::new(args.url.clone(), opts, &args.retry, args.reconnect);
    let shutdown = crate::echo::shutdown_on_signal();
    let result = tokio::select! {
        r = url_session(&mut process, &target, settings) => r,
        () = shutdown.cancelled() => Ok(()),
    };
    drop(process);
    child.end().await;
    result
}
