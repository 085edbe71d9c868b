//! UDP broadcast service discovery: `prise discover`, and `--announce` on
//! `listen`, `echo` (and `serve`, through [`spawn_announcer`]).
//!
//! ```text
//! discover ── {"prise":"discover"} ──▶ broadcast:PORT     (one datagram)
//! announcer ◀─────────────────────────┘
//! announcer ── {"prise":"announce", name, service, scheme, host, port, path, version}
//!           ──▶ discover (unicast, to the query's source address)
//! ```
//!
//! The URL printed is `scheme://host:port` followed by `path` (the
//! WebSocket endpoint, e.g. `/ws` for a hub), so `prise connect` opens it
//! as it is.
//!
//! Announcers only answer queries, so an idle LAN carries no traffic, and
//! `discover` is bounded by `--wait`. The discoverer takes the host of each
//! service from the source address of its answer unless the announcer was
//! bound to a specific address. Datagrams over [`MAX_DATAGRAM`] bytes or not
//! in this format are ignored.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::endpoint::Endpoint;
use crate::error::NetError;

/// Default UDP port of discovery.
pub const DEFAULT_PORT: u16 = 47_474;
/// Largest discovery datagram read; larger ones are dropped.
pub const MAX_DATAGRAM: usize = 1024;
/// Most distinct services one `discover` run collects.
pub const MAX_SERVICES: usize = 1024;
/// The version announced by this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What an announcer says about its service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Instance name chosen by the operator.
    pub name: String,
    /// What runs there: `echo`, `listen`, `serve`…
    pub service: String,
    /// URL scheme of the service (`tcp`, `ws`…).
    pub scheme: String,
    /// Host the service is bound to; empty when bound to every address.
    #[serde(default)]
    pub host: String,
    /// Port of the service.
    pub port: u16,
    /// Path of a WebSocket service (`/ws` for a hub); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// prise version.
    pub version: String,
}

impl Announcement {
    /// An announcement for a service bound at `local` behind endpoint `ep`.
    pub fn new(name: &str, service: &str, ep: &Endpoint, local: SocketAddr) -> Self {
        let host = if local.ip().is_unspecified() {
            String::new()
        } else {
            local.ip().to_string()
        };
        Self {
            name: name.to_owned(),
            service: service.to_owned(),
            scheme: ep.scheme.as_str().to_owned(),
            host,
            port: local.port(),
            path: if ep.scheme.is_ws() {
                ep.path.clone()
            } else {
                String::new()
            },
            version: VERSION.to_owned(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "prise", rename_all = "lowercase")]
enum Packet {
    Discover,
    Announce(Announcement),
}

/// `--announce` on servers.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct AnnounceArgs {
    /// Answer `prise discover` on the LAN under this name.
    #[arg(long, value_name = "NAME")]
    pub announce: Option<String>,
    /// UDP port of discovery.
    #[arg(long, default_value_t = DEFAULT_PORT, value_name = "PORT")]
    pub discovery_port: u16,
}

fn udp_socket(bind: SocketAddr, broadcast: bool) -> Result<UdpSocket, NetError> {
    let err = |e| NetError::io(format!("binding discovery socket {bind}"), e);
    let sock =
        Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    #[cfg(unix)]
    sock.set_reuse_port(true).map_err(err)?;
    if broadcast {
        sock.set_broadcast(true).map_err(err)?;
    }
    sock.set_nonblocking(true).map_err(err)?;
    sock.bind(&bind.into()).map_err(err)?;
    UdpSocket::from_std(sock.into()).map_err(err)
}

/// Answers discovery queries on `port` until `shutdown`.
///
/// Several announcers on one host share the port (SO_REUSEPORT); broadcast
/// queries reach them all.
///
/// # Errors
/// The discovery port could not be bound.
pub async fn announce(
    announcement: Announcement,
    port: u16,
    shutdown: CancellationToken,
) -> Result<(), NetError> {
    let sock = udp_socket((Ipv4Addr::UNSPECIFIED, port).into(), false)?;
    answer_queries(sock, &announcement, shutdown).await;
    Ok(())
}

async fn answer_queries(sock: UdpSocket, announcement: &Announcement, shutdown: CancellationToken) {
    let reply = match serde_json::to_vec(&Packet::Announce(announcement.clone())) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode the announcement");
            return;
        }
    };
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let (n, from) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "discovery receive failed");
                    continue;
                }
            },
        };
        if n > MAX_DATAGRAM {
            continue;
        }
        if let Ok(Packet::Discover) = serde_json::from_slice(&buf[..n])
            && let Err(e) = sock.send_to(&reply, from).await
        {
            tracing::debug!(error = %e, %from, "discovery reply failed");
        }
    }
}

/// Binds the discovery port now and answers queries in a background task
/// until `shutdown`. This is the entry point for servers (`serve --announce`).
/// Must be called within a tokio runtime.
///
/// # Errors
/// The discovery port could not be bound.
pub fn spawn_announcer(
    announcement: Announcement,
    port: u16,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, NetError> {
    // Bound before returning, so a query sent right after is answered.
    let sock = udp_socket((Ipv4Addr::UNSPECIFIED, port).into(), false)?;
    Ok(tokio::spawn(async move {
        answer_queries(sock, &announcement, shutdown).await;
    }))
}

/// A service found by [`discover`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// Instance name.
    pub name: String,
    /// What runs there.
    pub service: String,
    /// URL to reach it.
    pub url: String,
    /// prise version of the announcer.
    pub version: String,
}

/// Broadcasts one query to `broadcast:port` and collects answers for `wait`.
///
/// # Errors
/// No socket could be bound, or the query could not be sent.
pub async fn discover(
    broadcast: IpAddr,
    port: u16,
    wait: Duration,
) -> Result<Vec<Found>, NetError> {
    let sock = udp_socket((Ipv4Addr::UNSPECIFIED, 0).into(), true)?;
    let query =
        serde_json::to_vec(&Packet::Discover).map_err(|e| NetError::Protocol(e.to_string()))?;
    sock.send_to(&query, (broadcast, port))
        .await
        .map_err(|e| NetError::io(format!("sending discovery query to {broadcast}:{port}"), e))?;
    let mut found = BTreeMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let r = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
        let Ok(r) = r else { break };
        let Ok((n, from)) = r else { continue };
        if n > MAX_DATAGRAM || found.len() >= MAX_SERVICES {
            continue;
        }
        if let Ok(Packet::Announce(a)) = serde_json::from_slice(&buf[..n]) {
            let host = if a.host.is_empty() {
                from.ip().to_string()
            } else {
                a.host.clone()
            };
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            let url = format!("{}://{}:{}{}", a.scheme, host, a.port, a.path);
            found.insert(
                (a.name.clone(), url.clone()),
                Found {
                    name: a.name,
                    service: a.service,
                    url,
                    version: a.version,
                },
            );
        }
    }
    Ok(found.into_values().collect())
}

/// Arguments of `prise discover`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct DiscoverArgs {
    /// How long to collect answers.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// UDP port of discovery.
    #[arg(long, default_value_t = DEFAULT_PORT, value_name = "PORT")]
    pub port: u16,
    /// Broadcast address to query (e.g. 192.168.1.255, or 127.255.255.255 on this host only).
    #[arg(long, default_value = "255.255.255.255", value_name = "ADDR")]
    pub broadcast: IpAddr,
    /// One JSON object per service.
    #[arg(long)]
    pub json: bool,
}

/// Runs `prise discover`: prints one line per service found on stdout.
///
/// # Errors
/// See [`discover`].
pub async fn run(args: DiscoverArgs) -> Result<(), NetError> {
    let found = discover(args.broadcast, args.port, args.wait).await?;
    let mut out = std::io::stdout().lock();
    for f in &found {
        let line = if args.json {
            serde_json::to_string(f).unwrap_or_default()
        } else {
            format!("{}\t{}\t{}\t{}", f.name, f.service, f.url, f.version)
        };
        writeln!(out, "{line}").map_err(|e| NetError::io("writing output", e))?;
    }
    if found.is_empty() {
        tracing::info!("no service answered");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn announcer_answers_a_loopback_broadcast() {
        // Find a free UDP port for this test's discovery domain.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shutdown = CancellationToken::new();
        let ep: Endpoint = "tcp://0.0.0.0:7000".parse().unwrap();
        let a = Announcement::new("one", "echo", &ep, "0.0.0.0:7000".parse().unwrap());
        let task = spawn_announcer(a, port, shutdown.clone()).unwrap();
        let found = discover(
            "127.255.255.255".parse().unwrap(),
            port,
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(
            found,
            [Found {
                name: "one".into(),
                service: "echo".into(),
                url: "tcp://127.0.0.1:7000".into(),
                version: VERSION.into(),
            }]
        );
    }

    #[test]
    fn a_websocket_announcement_carries_its_path() {
        let ep: Endpoint = "ws://127.0.0.1:8080/ws".parse().unwrap();
        let a = Announcement::new("hub", "serve", &ep, "127.0.0.1:8080".parse().unwrap());
        let wire = serde_json::to_value(Packet::Announce(a)).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({
                "prise": "announce", "name": "hub", "service": "serve", "scheme": "ws",
                "host": "127.0.0.1", "port": 8080, "path": "/ws", "version": VERSION,
            })
        );
        // An announcer of an older version, without a path, still parses.
        let old = br#"{"prise":"announce","name":"x","service":"echo","scheme":"tcp","port":1,"version":"0"}"#;
        assert!(matches!(
            serde_json::from_slice(old),
            Ok(Packet::Announce(_))
        ));
    }
}
