//! Socket.IO long-polling across the nodes of a Redis cluster, without
//! sticky sessions: a request naming a session another node holds is
//! forwarded to that node over HTTP.
//!
//! ```text
//!  client ─▶ balancer ─▶ node B: GET/POST /socket.io/?sid=S   (S not held by B)
//!                          │ Redis: sio:S → node A, node:A → "10.0.0.1:7878" (alive)
//!                          └─▶ HTTP/1.1 to A, same method, path, query, body (≤ maxPayload),
//!                              + prise-hop (never forwarded twice) + prise-client (the peer)
//!                          ◀── A's answer, streamed back as is
//!  WebSocket upgrade of S on B ─▶ the same request to A; after A's 101, bytes are
//!                                 copied both ways until either side closes
//! ```
//!
//! No live owner (never claimed, ended, or its node's heartbeat expired),
//! an owner that cannot be reached, or a request that was already forwarded
//! once: the engine answers `Session ID unknown` (400) and the client opens
//! a new session, recovering its rooms and missed messages through Redis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Limited;
use hyper_util::rt::TokioIo;
use prise_hub::redis_broker::{Owner, RedisCluster};
use prise_sio::{BoxFuture, SessionCluster};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::security::ratelimit::{IpLimiter, IpPermit};

/// Marks a forwarded request; its value is the forwarding node's id. A node
/// never forwards a request carrying it, so a request makes one hop at most.
pub(crate) const HOP_HEADER: HeaderName = HeaderName::from_static("prise-hop");
/// The address of the client a forwarded request came from, for the owner's
/// logs (informational: any client can send it).
pub(crate) const CLIENT_HEADER: HeaderName = HeaderName::from_static("prise-client");
/// Longest wait for a TCP connection to the owner.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Added to the long-poll timeout to bound a forwarded exchange.
const EXCHANGE_MARGIN: Duration = Duration::from_secs(10);

/// Longest wait for the name of a peer's advertised address to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Request headers that belong to one connection, not to the request.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The Redis cluster as the Socket.IO engine of one node sees it.
pub(crate) struct ClusterLink {
    cluster: RedisCluster,
    /// Largest body forwarded (the engine's `maxPayload`).
    max_payload: usize,
    /// Longest a forwarded exchange (up to the response head and its body)
    /// may take: the long-poll timeout plus a margin.
    exchange_timeout: Duration,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl ClusterLink {
    pub(crate) fn new(
        cluster: RedisCluster,
        max_payload: usize,
        poll_timeout: Duration,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        Self {
            cluster,
            max_payload,
            exchange_timeout: poll_timeout + EXCHANGE_MARGIN,
            shutdown,
            tracker,
        }
    }
}

fn counted(result: &'static str) {
    metrics::counter!("prise_sio_forwarded_total", "result" => result).increment(1);
}

impl SessionCluster for ClusterLink {
    fn claim<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.cluster.claim_session(sid).await {
                tracing::warn!(sid, error = %e, "cannot register the session in redis; \
                    its requests reaching other nodes will fail");
            }
        })
    }

    fn release<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.cluster.release_session(sid).await {
                tracing::debug!(sid, error = %e, "cannot unregister the session in redis");
            }
        })
    }

    fn forward(&self, sid: &str, req: Request<Body>) -> BoxFuture<'static, Option<Response<Body>>> {
        let sid = sid.to_owned();
        let cluster = self.cluster.clone();
        let link = Forward {
            node: self.cluster.node_id().to_owned(),
            max_payload: self.max_payload,
            exchange_timeout: self.exchange_timeout,
            shutdown: self.shutdown.clone(),
            tracker: self.tracker.clone(),
        };
        Box::pin(async move {
            if req.headers().contains_key(&HOP_HEADER) {
                counted("hop");
                return None;
            }
            let owner = match cluster.session_owner(&sid).await {
                Ok(Some(o)) if o.node != link.node => o,
                Ok(_) => {
                    counted("no_owner");
                    return None;
                }
                Err(e) => {
                    tracing::debug!(sid, error = %e, "cannot look up the session's owner");
                    counted("redis_error");
                    return None;
                }
            };
            let span = tracing::debug_span!("forward", sid, owner = %owner.address);
            link.send(owner, req).instrument(span).await
        })
    }
}

/// What one forwarded request needs.
struct Forward {
    node: String,
    max_payload: usize,
    exchange_timeout: Duration,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Forward {
    async fn send(self, owner: Owner, mut req: Request<Body>) -> Option<Response<Body>> {
        let upgrade = prise_ws::is_upgrade_request(&req);
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        // An upgraded tunnel keeps the client's connection slot, as a local
        // WebSocket does.
        let permit = req.extensions().get::<Arc<IpPermit>>().cloned();
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let outgoing = match self.outgoing(&owner, peer, upgrade, req) {
            Some(r) => r,
            None => {
                counted("bad_request");
                return None;
            }
        };
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(owner.address.as_str()))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "owner unreachable");
                    counted("unreachable");
                    return None;
                }
                Err(_) => {
                    tracing::debug!("owner unreachable: connect timed out");
                    counted("unreachable");
                    return None;
                }
            };
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake::<_, Limited<Body>>(TokioIo::new(stream))
                .await
            {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "http handshake with the owner failed");
                    counted("unreachable");
                    return None;
                }
            };
        let limit = self.exchange_timeout;
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::timeout(limit, conn.with_upgrades()) => {}
            }
        });
        let mut response = match tokio::time::timeout(
            self.exchange_timeout,
            sender.send_request(outgoing),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "forwarded request failed");
                counted("error");
                return None;
            }
            Err(_) => {
                tracing::debug!("forwarded request timed out");
                counted("timeout");
                return None;
            }
        };
        tracing::debug!(status = %response.status(), upgrade, "forwarded");
        counted("ok");
        if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, response.status())
        {
            let owner_side = hyper::upgrade::on(&mut response);
            let shutdown = self.shutdown.clone();
            self.tracker.spawn(
                async move {
                    let _permit = permit;
                    let (client, owner_side) = match tokio::join!(client, owner_side) {
                        (Ok(c), Ok(o)) => (c, o),
                        _ => return,
                    };
                    let mut client = TokioIo::new(client);
                    let mut owner_side = TokioIo::new(owner_side);
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        r = tokio::io::copy_bidirectional(&mut client, &mut owner_side) => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "forwarded websocket ended");
                            }
                        }
                    }
                }
                .in_current_span(),
            );
            return Some(response.map(|_| Body::empty()));
        }
        let (mut parts, body) = response.into_parts();
        for h in &HOP_BY_HOP {
            parts.headers.remove(h);
        }
        Some(Response::from_parts(parts, Body::new(body)))
    }

    /// The request sent to the owner: same method, path, query and
    /// end-to-end headers; the body capped at `maxPayload`.
    fn outgoing(
        &self,
        owner: &Owner,
        peer: Option<SocketAddr>,
        upgrade: bool,
        req: Request<Body>,
    ) -> Option<Request<Limited<Body>>> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query()?.as_str().to_owned();
        let mut builder = Request::builder()
            .method(parts.method)
            .uri(path)
            .version(http::Version::HTTP_11);
        let headers = builder.headers_mut()?;
        for (name, value) in &parts.headers {
            if name != header::HOST && !HOP_BY_HOP.contains(name) {
                headers.append(name, value.clone());
            }
        }
        headers.insert(header::HOST, HeaderValue::from_str(&owner.address).ok()?);
        headers.insert(HOP_HEADER, HeaderValue::from_str(&self.node).ok()?);
        if let Some(p) = peer.and_then(|p| HeaderValue::from_str(&p.to_string()).ok()) {
            headers.insert(CLIENT_HEADER, p);
        }
        let body = if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            Limited::new(Body::empty(), 0)
        } else {
            Limited::new(body, self.max_payload)
        };
        builder.body(body).ok()
    }
}

/// Keeps the per-IP limiter's exempt set equal to the addresses of the
/// other live nodes, re-read every `every`: their connections carry
/// forwarded requests and tunnels of many clients.
pub(crate) async fn exempt_peers(
    cluster: RedisCluster,
    limiter: Arc<IpLimiter>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let addresses = match cluster.peer_addresses().await {
            Ok(a) => a,
            Err(e) => {
                // Keep the last known set: peers do not change with an outage.
                tracing::debug!(error = %e, "cannot read the cluster's node addresses");
                continue;
            }
        };
        let mut ips = std::collections::HashSet::new();
        for address in &addresses {
            let resolved =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(address.as_str()))
                    .await;
            match resolved {
                Ok(Ok(found)) => ips.extend(found.map(|a| a.ip())),
                _ => tracing::debug!(%address, "cannot resolve a node's advertised address"),
            }
        }
        limiter.set_exempt(ips);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward() -> Forward {
        Forward {
            node: "N1".into(),
            max_payload: 16,
            exchange_timeout: Duration::from_secs(1),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    #[test]
    fn outgoing_keeps_end_to_end_headers_and_marks_the_hop() {
        let owner = Owner {
            node: "N2".into(),
            address: "127.0.0.1:9".into(),
        };
        let req = Request::post("http://lb/socket.io/?EIO=4&transport=polling&sid=abc")
            .header(header::HOST, "lb")
            .header(header::CONNECTION, "keep-alive")
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::ORIGIN, "http://app")
            .body(Body::from("40"))
            .unwrap();
        let peer: SocketAddr = "10.0.0.7:5000".parse().unwrap();
        let out = forward()
            .outgoing(&owner, Some(peer), false, req)
            .expect("valid request");
        assert_eq!(out.uri(), "/socket.io/?EIO=4&transport=polling&sid=abc");
        let h = out.headers();
        assert_eq!(h[header::HOST], "127.0.0.1:9");
        assert_eq!(h[&HOP_HEADER], "N1");
        assert_eq!(h[&CLIENT_HEADER], "10.0.0.7:5000");
        assert_eq!(h[header::ORIGIN], "http://app");
        assert!(!h.contains_key(header::CONNECTION));
    }

    #[test]
    fn an_upgrade_is_forwarded_as_an_upgrade_without_a_body() {
        let owner = Owner {
            node: "N2".into(),
            address: "127.0.0.1:9".into(),
        };
        let req = Request::get("/socket.io/?EIO=4&transport=websocket&sid=abc")
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .body(Body::empty())
            .unwrap();
        let out = forward()
            .outgoing(&owner, None, true, req)
            .expect("valid request");
        let h = out.headers();
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(!h.contains_key(&CLIENT_HEADER));
    }
}
