//! `prise listen URL`: the listening side of `connect` — accept one peer (or
//! one after another with `--keep-open`) and relay it with stdin/stdout.
//!
//! Without `--keep-open`, one peer is served and the command ends with it.
//! With `--keep-open`, peers are served concurrently (at most
//! `--max-peers`): what arrives from each goes to stdout, and standard input
//! is broadcast to every peer connected at the time. A peer that falls more
//! than [`BROADCAST_QUEUE`] chunks behind is reported and gets end of input.
//! A UDP listener answers the last peer it heard from.

use std::net::SocketAddr;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tokio::io::AsyncWrite;
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_util::task::TaskTracker;

use crate::bridge::side::SideOptions;
use crate::bridge::{self, Settings, Target};
use crate::codec::{FrameCodec, Framing};
use crate::discover::AnnounceArgs;
use crate::echo::{report_listening, shutdown_on_signal, start_announcer};
use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::relay::{
    Events, INPUT_QUEUE, Input, MAX_DATAGRAM, OutFraming, RelayArgs, RelayOptions, deliver,
    read_chunks, relay,
};
use crate::tls::{ServerTlsArgs, server_config};
use crate::transport::{Conn, Listener, SocketArgs, Upgrader};

/// Default cap on peers served at once with `--keep-open`.
pub const DEFAULT_MAX_PEERS: usize = 64;
/// Chunks of input a `--keep-open` peer may fall behind before it is cut off.
pub const BROADCAST_QUEUE: usize = 64;

/// Arguments of `prise listen`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct ListenArgs {
    /// Where to listen: tcp://, tls://, udp://, ws://, wss://host:port, or unix:/path
    /// (an empty host, as in tcp://:9000, binds 127.0.0.1).
    #[arg(value_name = "URL")]
    pub url: Endpoint,
    /// Serve many peers (at once) instead of exiting after the first.
    #[arg(long, short = 'k')]
    pub keep_open: bool,
    /// With --keep-open: most peers served at once.
    #[arg(long, default_value_t = DEFAULT_MAX_PEERS, value_name = "N")]
    pub max_peers: usize,
    #[command(flatten)]
    /// Framing and output.
    pub relay: RelayArgs,
    #[command(flatten)]
    /// TLS certificate.
    pub tls: ServerTlsArgs,
    #[command(flatten)]
    /// TCP socket options for accepted peers.
    pub socket: SocketArgs,
    #[command(flatten)]
    /// Discovery.
    pub announce: AnnounceArgs,
    /// Run `sh -c CMD` for each peer, its stdin and stdout wired to the socket
    /// (instead of prise's own stdin and stdout).
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
}

/// Runs `prise listen`.
///
/// # Errors
/// Binding or TLS setup failed; without `--keep-open`, the peer's failure.
pub async fn run(args: ListenArgs) -> Result<(), NetError> {
    let tls = if args.url.scheme.is_tls() {
        Some(server_config(&args.tls)?)
    } else {
        None
    };
    let ws = prise_ws::WsConfig::capped(
        args.relay.max_message,
        args.relay.deflate.then(prise_ws::DeflateConfig::default),
    );
    let listener = Listener::bind(&args.url, tls, args.socket.clone(), ws).await?;
    let shutdown = shutdown_on_signal();
    report_listening("prise", &args.url, &listener);
    start_announcer(&args.announce, "listen", &args.url, &listener, &shutdown)?;
    let events = Arc::new(Events::new(args.relay.json, args.relay.hex));
    let result = if let Some(command) = &args.exec {
        let settings = exec_settings(&args.relay, args.url.scheme);
        let target = Arc::new(Target::Exec(command.clone()));
        let (max_peers, keep_open) = (args.max_peers, args.keep_open);
        let r = tokio::select! {
            r = bridge::serve(listener, target, settings, max_peers, keep_open, &args.url) => r,
            () = shutdown.cancelled() => Ok(()),
        };
        crate::exec::terminate_all();
        r
    } else if args.keep_open && !matches!(listener, Listener::Udp(_)) {
        let chunks = read_chunks(tokio::io::stdin());
        tokio::select! {
            r = serve_many(&listener, &args, &events, chunks) => r,
            () = shutdown.cancelled() => Ok(()),
        }
    } else {
        let mut input = Input::stdin();
        let mut stdout = tokio::io::stdout();
        tokio::select! {
            r = serve(&listener, &args, &events, &mut input, &mut stdout) => r,
            () = shutdown.cancelled() => Ok(()),
        }
    };
    if args.url.scheme == Scheme::Unix {
        let _ = std::fs::remove_file(args.url.unix_path());
    }
    result
}

/// The two sides of an `--exec` session: the socket (first) and the
/// process (second), framed as `relay` would frame the socket and stdio.
pub fn exec_settings(relay: &RelayArgs, scheme: Scheme) -> Settings {
    let stream = !(scheme.is_ws() || scheme == Scheme::Udp);
    let (socket, local) = if stream {
        let wire = relay.framing.unwrap_or(Framing::Raw);
        let local = if wire == Framing::Length {
            Framing::Lines
        } else {
            wire
        };
        (wire, local)
    } else {
        (Framing::Raw, relay.framing.unwrap_or(Framing::Lines))
    };
    let side = |framing| SideOptions {
        framing,
        max_message: relay.max_message,
        text: !relay.binary,
    };
    let mut settings = Settings::new(&[], relay.max_message, !relay.binary, relay.idle_timeout);
    settings.first = side(socket);
    settings.second = side(local);
    settings
}

async fn serve<W: AsyncWrite + Unpin + Send>(
    listener: &Listener,
    args: &ListenArgs,
    events: &Events,
    input: &mut Input,
    output: &mut W,
) -> Result<(), NetError> {
    loop {
        let (conn, peer) = match listener {
            Listener::Udp(sock) => {
                let framing = args.relay.framing.unwrap_or(Framing::Lines);
                let out = args
                    .relay
                    .out_framing
                    .unwrap_or(OutFraming::default_for(framing, false));
                return relay_udp_listener(sock, framing, out, &args.relay, events, input, output)
                    .await;
            }
            _ => match listener
                .accept_stream(args.keep_open, &args.url.path)
                .await?
            {
                Some(accepted) => accepted,
                None => continue,
            },
        };
        events.emit("accepted", json!({ "peer": peer }));
        let mut opts = RelayOptions::new(&args.relay, &conn);
        opts.reset_on_eof = args.socket.linger0;
        let r = relay(conn, &peer, input, output, events, &opts).await;
        if !args.keep_open {
            return r;
        }
        if let Err(e) = r {
            tracing::warn!(%peer, error = %e, "peer failed");
        }
    }
}

/// Accepts peers and serves each in its own task, broadcasting input.
async fn serve_many(
    listener: &Listener,
    args: &ListenArgs,
    events: &Arc<Events>,
    mut chunks: mpsc::Receiver<Bytes>,
) -> Result<(), NetError> {
    let (btx, template) = broadcast::channel::<Bytes>(BROADCAST_QUEUE);
    tokio::spawn(async move {
        while let Some(chunk) = chunks.recv().await {
            // No receiver (no peer right now) is fine: input is dropped.
            let _ = btx.send(chunk);
        }
    });
    let permits = Arc::new(Semaphore::new(args.max_peers.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NetError::Usage("listener closed".into()))?;
        let (stream, peer): (Result<Conn, (tokio::net::TcpStream, Upgrader)>, String) =
            match listener {
                Listener::Tcp(tcp, upgrader) => {
                    let (s, peer) = tcp
                        .accept()
                        .await
                        .map_err(|e| NetError::io("accepting", e))?;
                    (Err((s, upgrader.clone())), peer.to_string())
                }
                Listener::Unix(unix) => {
                    let (s, _) = unix
                        .accept()
                        .await
                        .map_err(|e| NetError::io("accepting", e))?;
                    (Ok(Conn::Stream(Box::new(s))), args.url.path.clone())
                }
                Listener::Udp(_) => return Err(NetError::Usage("udp has no peers to keep".into())),
            };
        let mut feed = template.resubscribe();
        let events = events.clone();
        let relay_args = args.relay.clone();
        let linger0 = args.socket.linger0;
        tracker.spawn(async move {
            let _permit = permit;
            let conn = match stream {
                Ok(conn) => conn,
                Err((tcp, upgrader)) => {
                    let addr = tcp.peer_addr();
                    let Ok(addr) = addr else { return };
                    match upgrader.upgrade(tcp, addr).await {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "handshake failed");
                            return;
                        }
                    }
                }
            };
            let (ptx, prx) = mpsc::channel(INPUT_QUEUE);
            let forward_peer = peer.clone();
            tokio::spawn(async move {
                loop {
                    match feed.recv().await {
                        Ok(chunk) => {
                            if ptx.send(chunk).await.is_err() {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(peer = %forward_peer, missed = n, "peer fell behind the input; ending its input");
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
            events.emit("accepted", json!({ "peer": peer }));
            let mut opts = RelayOptions::new(&relay_args, &conn);
            // Input is shared: a peer's session ends with its end of stream.
            opts.wait_for_input = false;
            opts.reset_on_eof = linger0;
            let mut input = Input::from_channel(prx);
            let mut stdout = tokio::io::stdout();
            if let Err(e) = relay(conn, &peer, &mut input, &mut stdout, &events, &opts).await {
                tracing::warn!(%peer, error = %e, "peer failed");
            }
        });
    }
}

async fn relay_udp_listener<W: AsyncWrite + Unpin + Send>(
    sock: &tokio::net::UdpSocket,
    framing: Framing,
    out: OutFraming,
    args: &RelayArgs,
    events: &Events,
    input: &mut Input,
    output: &mut W,
) -> Result<(), NetError> {
    let max = args.max_message.min(MAX_DATAGRAM);
    let mut decode = FrameCodec::new(framing, max);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut peer: Option<SocketAddr> = None;
    let mut input_done = false;
    loop {
        tokio::select! {
            msg = input.next(&mut decode), if !input_done => match msg? {
                Some(msg) => match peer {
                    Some(p) => {
                        events.sent(&msg);
                        sock.send_to(&msg, p).await.map_err(|e| NetError::from_io(e, &p.to_string()))?;
                    }
                    None => tracing::warn!("no peer yet; input dropped"),
                },
                None => input_done = true,
            },
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if peer != Some(from) {
                    events.emit("accepted", json!({ "peer": from.to_string() }));
                }
                peer = Some(from);
                deliver(output, events, out, &buf[..n], None).await?;
            }
        }
    }
}
