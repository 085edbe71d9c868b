//! `prise echo URL`: echo servers for TCP, TLS, Unix, UDP and WebSocket,
//! serving many clients at once.
//!
//! ```text
//! accept (permit from a Semaphore of --max-conns) ─▶ task per client:
//!   stream: read ─▶ write back (64 KiB buffer)
//!   ws:     message ─▶ same message back; pings answered; close drained
//! udp: one loop, datagram ─▶ same datagram back to its sender
//! ```
//!
//! The WebSocket echo runs on the shared stack (prise-ws), and keeps
//! reading after a Close frame until the stream ends so that the close
//! handshake completes (what the Autobahn suite checks).

use std::io::Write as _;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use prise_ws::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::discover::{AnnounceArgs, Announcement, spawn_announcer};
use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::tls::{ServerTlsArgs, server_config};
use crate::transport::{Conn, Listener, SocketArgs};

/// Default cap on concurrent clients.
pub const DEFAULT_MAX_CONNS: usize = 1024;
/// Default cap on one WebSocket message: 16 MiB (Autobahn sends up to 16 MiB).
pub const DEFAULT_MAX_WS_MESSAGE: usize = 16 << 20;

/// Arguments of `prise echo`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct EchoArgs {
    /// Where to listen: tcp://, tls://, udp://, ws://, wss://host:port, or unix:/path.
    #[arg(value_name = "URL")]
    pub url: Endpoint,
    /// Most clients served at once; more wait to be accepted.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNS, value_name = "N")]
    pub max_conns: usize,
    /// Largest WebSocket message echoed (bytes).
    #[arg(long, default_value_t = DEFAULT_MAX_WS_MESSAGE, value_name = "BYTES")]
    pub max_message: usize,
    /// WebSocket: accept permessage-deflate (RFC 7692) when a client offers it.
    #[arg(long)]
    pub deflate: bool,
    #[command(flatten)]
    /// TLS certificate.
    pub tls: ServerTlsArgs,
    #[command(flatten)]
    /// Discovery.
    pub announce: AnnounceArgs,
}

/// Limits of an echo server.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct EchoConfig {
    /// Most clients at once.
    pub max_conns: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            max_conns: DEFAULT_MAX_CONNS,
        }
    }
}

/// Serves echo on `listener` until `shutdown`, then waits for clients in
/// flight to finish.
///
/// # Errors
/// Accepting failed in a way that will not recover.
pub async fn serve(
    listener: Listener,
    config: EchoConfig,
    shutdown: CancellationToken,
) -> Result<(), NetError> {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(config.max_conns.max(1)));
    match listener {
        Listener::Udp(sock) => {
            let mut buf = vec![0u8; 65_536];
            loop {
                let (n, from) = tokio::select! {
                    () = shutdown.cancelled() => break,
                    r = sock.recv_from(&mut buf) => match r {
                        Ok(x) => x,
                        // ICMP errors from earlier replies surface here; keep serving.
                        Err(_) => continue,
                    },
                };
                let _ = sock.send_to(&buf[..n], from).await;
            }
        }
        Listener::Tcp(tcp, upgrader) => loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p.map_err(|_| NetError::Usage("closed".into()))?,
            };
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                r = tcp.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let upgrader = upgrader.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                let _permit = permit;
                match upgrader.upgrade(stream, peer).await {
                    Ok(conn) => echo_conn(conn, shutdown).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "handshake failed"),
                }
            });
        },
        Listener::Unix(unix) => loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p.map_err(|_| NetError::Usage("closed".into()))?,
            };
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                r = unix.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                let _permit = permit;
                echo_conn(Conn::Stream(Box::new(stream)), shutdown).await;
            });
        },
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn echo_conn(conn: Conn, shutdown: CancellationToken) {
    match conn {
        Conn::Stream(mut s) => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = tokio::select! {
                    () = shutdown.cancelled() => break,
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    },
                };
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            let _ = s.shutdown().await;
        }
        Conn::Ws(mut ws, _) => {
            let mut closing = false;
            loop {
                let msg = tokio::select! {
                    () = shutdown.cancelled(), if !closing => {
                        closing = true;
                        let close = prise_ws::close_message(prise_ws::close_code::GOING_AWAY, "shutdown");
                        if ws.send(close).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    m = ws.next() => m,
                };
                match msg {
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                    // Pings are answered and close replies queued by the stack; keep polling.
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
            let _ = ws.flush().await;
            // A TLS stream ends with close_notify, so clients see a clean end.
            let _ = ws.get_mut().shutdown().await;
        }
        // UDP is served by the listener loop.
        Conn::Udp(_) => {}
    }
}

/// Resolves `--announce` for a bound listener and starts answering discovery.
///
/// # Errors
/// The discovery port could not be bound.
pub fn start_announcer(
    args: &AnnounceArgs,
    service: &str,
    ep: &Endpoint,
    listener: &Listener,
    shutdown: &CancellationToken,
) -> Result<(), NetError> {
    let (Some(name), Some(local)) = (&args.announce, listener.local_addr()) else {
        return Ok(());
    };
    let a = Announcement::new(name, service, ep, local);
    spawn_announcer(a, args.discovery_port, shutdown.clone())?;
    Ok(())
}

/// Prints where a listener is bound, on stderr (tests and scripts read it).
pub fn report_listening(what: &str, ep: &Endpoint, listener: &Listener) {
    let shown = match listener.local_addr() {
        Some(addr) => {
            let mut bound = ep.clone();
            bound.host = addr.ip().to_string();
            bound.port = addr.port();
            bound.to_string()
        }
        None => ep.to_string(),
    };
    let _ = writeln!(std::io::stderr().lock(), "{what} listening on {shown}");
}

/// A token cancelled on Ctrl-C (and SIGTERM on Unix).
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = term => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        t.cancel();
    });
    token
}

/// Runs `prise echo` until Ctrl-C or SIGTERM.
///
/// # Errors
/// Binding, TLS setup or discovery failed.
pub async fn run(args: EchoArgs) -> Result<(), NetError> {
    let tls = if args.url.scheme.is_tls() {
        Some(server_config(&args.tls)?)
    } else {
        None
    };
    let ws = prise_ws::WsConfig::capped(
        args.max_message,
        args.deflate.then(prise_ws::DeflateConfig::default),
    );
    let listener = Listener::bind(&args.url, tls, SocketArgs::default(), ws).await?;
    let shutdown = shutdown_on_signal();
    report_listening("echo", &args.url, &listener);
    start_announcer(&args.announce, "echo", &args.url, &listener, &shutdown)?;
    if args.url.scheme == Scheme::Unix {
        let path = args.url.unix_path();
        let r = serve(
            listener,
            EchoConfig {
                max_conns: args.max_conns,
            },
            shutdown,
        )
        .await;
        let _ = std::fs::remove_file(path);
        return r;
    }
    serve(
        listener,
        EchoConfig {
            max_conns: args.max_conns,
        },
        shutdown,
    )
    .await
}
