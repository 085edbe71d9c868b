//! `prise listen URL`: the listening side of `connect` — accept one peer (or
//! one after another with `--keep-open`) and relay it with stdin/stdout.
//!
//! Standard input is read once for the whole run, so with `--keep-open`
//! each peer gets what is typed while it is connected. A UDP listener
//! answers the last peer it heard from.

use std::net::SocketAddr;

use serde_json::json;
use tokio::io::AsyncWrite;

use crate::codec::{FrameCodec, Framing};
use crate::discover::AnnounceArgs;
use crate::echo::{report_listening, shutdown_on_signal, start_announcer};
use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::relay::{Events, Input, MAX_DATAGRAM, RelayArgs, RelayOptions, deliver, relay};
use crate::tls::{ServerTlsArgs, server_config};
use crate::transport::{Conn, Listener, SocketArgs};

/// Arguments of `prise listen`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Where to listen: tcp://, tls://, udp://, ws://, wss://host:port, or unix:/path
    /// (an empty host, as in tcp://:9000, binds 127.0.0.1).
    #[arg(value_name = "URL")]
    pub url: Endpoint,
    /// After a peer leaves, accept the next one instead of exiting.
    #[arg(long, short = 'k')]
    pub keep_open: bool,
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
    let ws = prise_ws::WsConfig {
        max_message_size: args.relay.max_message,
        max_frame_size: args.relay.max_message,
        ..prise_ws::WsConfig::default()
    };
    let listener = Listener::bind(&args.url, tls, args.socket.clone(), ws).await?;
    let shutdown = shutdown_on_signal();
    report_listening("prise", &args.url, &listener);
    start_announcer(&args.announce, "listen", &args.url, &listener, &shutdown)?;
    let events = Events::new(args.relay.json, args.relay.hex);
    let mut input = Input::stdin();
    let mut stdout = tokio::io::stdout();
    let result = tokio::select! {
        r = serve(&listener, &args, &events, &mut input, &mut stdout) => r,
        () = shutdown.cancelled() => Ok(()),
    };
    if args.url.scheme == Scheme::Unix {
        let _ = std::fs::remove_file(args.url.unix_path());
    }
    result
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
                return relay_udp_listener(sock, framing, &args.relay, events, input, output).await;
            }
            Listener::Tcp(tcp, upgrader) => {
                let (stream, peer) = tcp
                    .accept()
                    .await
                    .map_err(|e| NetError::io("accepting", e))?;
                match upgrader.upgrade(stream, peer).await {
                    Ok(conn) => (conn, peer.to_string()),
                    Err(e) if args.keep_open => {
                        tracing::warn!(%peer, error = %e, "handshake failed");
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            Listener::Unix(unix) => {
                let (s, _) = unix
                    .accept()
                    .await
                    .map_err(|e| NetError::io("accepting", e))?;
                (Conn::Stream(Box::new(s)), args.url.path.clone())
            }
        };
        events.emit("accepted", json!({ "peer": peer }));
        let opts = RelayOptions::new(&args.relay, &conn);
        let r = relay(conn, &peer, input, output, events, &opts).await;
        if !args.keep_open {
            return r;
        }
        if let Err(e) = r {
            tracing::warn!(%peer, error = %e, "peer failed");
        }
    }
}

async fn relay_udp_listener<W: AsyncWrite + Unpin + Send>(
    sock: &tokio::net::UdpSocket,
    framing: Framing,
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
                deliver(output, events, framing, &buf[..n], None).await?;
            }
        }
    }
}
