//! `prise connect URL`: standard input to a socket and the socket to
//! standard output, with timeouts, retries and framing.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

use crate::backoff::{Backoff, BackoffConfig, DEFAULT_BASE, DEFAULT_CAP};
use crate::endpoint::Endpoint;
use crate::error::NetError;
use crate::relay::{Events, Input, RelayArgs, RelayOptions, relay};
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
        BackoffConfig {
            base: self.retry_base,
            cap: self.retry_cap,
            max_retries: (!self.retry_forever).then_some(self.retry),
        }
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
        ws_config: prise_ws::WsConfig {
            max_message_size: args.relay.max_message,
            max_frame_size: args.relay.max_message,
            deflate: args.relay.deflate.then(prise_ws::DeflateConfig::default),
            ..prise_ws::WsConfig::default()
        },
        timeout: args.timeout,
    };
    let backoff = Backoff::new(args.retry.config(), StdRng::from_os_rng());
    let conn = connect_with_retry(&args.url, &opts, backoff, &events).await?;
    let mut relay_opts = RelayOptions::new(&args.relay, &conn);
    relay_opts.reset_on_eof = args.socket.linger0;
    let mut input = Input::stdin();
    let mut stdout = tokio::io::stdout();
    relay(
        conn,
        &args.url.to_string(),
        &mut input,
        &mut stdout,
        &events,
        &relay_opts,
    )
    .await
}
