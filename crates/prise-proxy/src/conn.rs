//! One client connection from accept to close: the PROXY header in, TLS,
//! the backend choice with queueing and retries, the PROXY header out, and
//! the relay.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{ActiveGuard, Backend, BackendId};
use crate::config::CheckKind;
use crate::pool::{Pick, Pool};
use crate::proxy_protocol::{self, Addresses, Decoded, HeaderError};
use crate::relay::{RelayError, Transferred, copy_halves};
use crate::server::State;
use crate::stats::Stats;
use crate::stream::Stream;

/// One accepted client and what it needs.
pub(crate) struct Conn {
    pub(crate) stats: Arc<Stats>,
    pub(crate) state: Arc<State>,
    pub(crate) listener: usize,
    pub(crate) stop: CancellationToken,
    pub(crate) peer: SocketAddr,
    pub(crate) _permit: OwnedSemaphorePermit,
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("proxy protocol header: {0}")]
    ProxyHeader(#[from] HeaderError),
    #[error("reading the proxy protocol header: {0}")]
    ProxyHeaderIo(io::Error),
    #[error("proxy protocol header timed out")]
    ProxyHeaderTimeout,
    #[error("client tls handshake: {0}")]
    ClientTls(io::Error),
    #[error("client tls handshake timed out")]
    ClientTlsTimeout,
    #[error("no backend available")]
    NoBackend,
    #[error("every backend is at its maxconn and the queue is full")]
    QueueFull,
    #[error("waited too long for a backend below its maxconn")]
    QueueTimeout,
    #[error("backend setup: {0}")]
    Backend(io::Error),
    #[error(transparent)]
    Relay(#[from] RelayError),
}

impl Conn {
    /// Handles the client from accept to close.
    pub(crate) async fn run(self, sock: TcpStream) {
        let stats = Arc::clone(&self.stats);
        let peer = self.peer;
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.active.fetch_add(1, Ordering::Relaxed);
        let result = self.serve(sock).await;
        stats.active.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(t) => tracing::debug!(%peer, up = t.upstream, down = t.downstream, "closed"),
            Err(e) => {
                if let ConnError::Relay(RelayError::Idle) = e {
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        }
    }

    /// Counts a client refused before its relay started; called while the client socket is
    /// still open, so the count is there once the client sees the close.
    fn refused(&self, e: ConnError) -> ConnError {
        let counter = match &e {
            ConnError::NoBackend => &self.stats.no_backend,
            ConnError::QueueFull => &self.stats.queue_full,
            ConnError::QueueTimeout => &self.stats.queue_timeouts,
            ConnError::ProxyHeader(_)
            | ConnError::ProxyHeaderIo(_)
            | ConnError::ProxyHeaderTimeout => &self.stats.bad_proxy_header,
            _ => return e,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        e
    }

    async fn serve(&self, mut sock: TcpStream) -> Result<Transferred, ConnError> {
        let state = &*self.state;
        let cfg = &state.config;
        let lcfg = &cfg.listeners[self.listener];
        let pool = &state.pools[self.listener];
        let stats = &self.stats;
        let _ = sock.set_nodelay(true);
        let local = sock.local_addr().unwrap_or(lcfg.listen);
        let (src, dst) = if lcfg.accept_proxy {
            let read = tokio::time::timeout(cfg.connect_timeout, read_proxy_header(&mut sock));
            match read.await {
                Ok(Ok(Addresses::Proxied { src, dst })) => (src, dst),
                Ok(Ok(Addresses::Local)) => (self.peer, local),
                Ok(Err(e)) => return Err(self.refused(e)),
                Err(_) => return Err(self.refused(ConnError::ProxyHeaderTimeout)),
            }
        } else {
            (self.peer, local)
        };
        let client = match &state.acceptor {
            Some(acc) => match tokio::time::timeout(cfg.connect_timeout, acc.accept(sock)).await {
                Ok(Ok(s)) => Stream::Server(Box::new(s)),
                Ok(Err(e)) => {
                    stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(ConnError::ClientTls(e));
                }
                Err(_) => {
                    stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(ConnError::ClientTlsTimeout);
                }
            },
            None => Stream::Plain(sock),
        };
        let (backend, mut bsock, _guard) = self
            .connect_backend(pool, src.ip())
            .await
            .map_err(|e| self.refused(e))?;
        if let Some(version) = lcfg.proxy_protocol {
            let header = proxy_protocol::encode(version.into(), src, dst);
            bsock.write_all(&header).await.map_err(ConnError::Backend)?;
        }
        let upstream = match &state.connector {
            Some(conn) => {
                match tokio::time::timeout(cfg.connect_timeout, conn.connect(backend.addr(), bsock))
                    .await
                {
                    Ok(Ok(s)) => Stream::Client(Box::new(s)),
                    Ok(Err(e)) => {
                        stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                        return Err(ConnError::Backend(e));
                    }
                    Err(_) => {
                        stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                        return Err(ConnError::Backend(io::ErrorKind::TimedOut.into()));
                    }
                }
            }
            None => Stream::Plain(bsock),
        };
        // Ends with the proxy's hard stop, or when the backend is disabled or its drain
        // times out.
        let stop = backend.connection_token();
        let idle = cfg.idle_timeout;
        let size = cfg.buffer_size;
        let t = match (client, upstream) {
            (Stream::Plain(mut c), Stream::Plain(mut b)) => {
                #[cfg(target_os = "linux")]
                if cfg.splice {
                    match crate::splice::Pipes::new(size) {
                        Ok(pipes) => {
                            return Ok(
                                crate::splice::relay(&c, &b, pipes, idle, &stop, stats).await?
                            );
                        }
                        Err(e) => tracing::debug!(error = %e, "no pipes, copying through buffers"),
                    }
                }
                let (cr, cw) = c.split();
                let (br, bw) = b.split();
                copy_halves(cr, cw, br, bw, size, idle, &stop, stats).await?
            }
            (c, b) => {
                let (cr, cw) = tokio::io::split(c);
                let (br, bw) = tokio::io::split(b);
                copy_halves(cr, cw, br, bw, size, idle, &stop, stats).await?
            }
        };
        Ok(t)
    }

    /// Connects to a backend chosen for `client`, trying up to `retries` others after a
    /// failure. A failed connect counts against the backend's `fall` (passive marking) when
    /// checks are on, so the checks bring it back once it recovers.
    async fn connect_backend(
        &self,
        pool: &Pool,
        client: IpAddr,
    ) -> Result<(Arc<Backend>, TcpStream, ActiveGuard), ConnError> {
        let cfg = &self.state.config;
        let mut tried: Vec<BackendId> = Vec::new();
        for _ in 0..=cfg.retries {
            // Counted as active from the choice on, so that concurrent least-connections
            // choices and maxconn see it.
            let (backend, guard) = self.acquire(pool, client, &tried).await?;
            match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(backend.addr()))
                .await
            {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok((backend, s, guard));
                }
                Ok(Err(e)) => {
                    tracing::debug!(backend = %backend.addr(), error = %e, "connect failed");
                }
                Err(_) => tracing::debug!(backend = %backend.addr(), "connect timed out"),
            }
            self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            if cfg.check.kind != CheckKind::None {
                backend.record_failure(cfg.check.fall, None);
            }
            tried.push(backend.id());
        }
        Err(ConnError::NoBackend)
    }

    /// Picks a backend; while every candidate is at its `maxconn`, waits in the pool's
    /// bounded queue (at most `queue_timeout`) for a connection to end.
    async fn acquire(
        &self,
        pool: &Pool,
        client: IpAddr,
        tried: &[BackendId],
    ) -> Result<(Arc<Backend>, ActiveGuard), ConnError> {
        let cfg = &self.state.config;
        let deadline = Instant::now() + cfg.queue_timeout;
        let mut slot = None;
        loop {
            // Registered before the pick, so a slot freed in between is not missed.
            let freed = pool.freed().notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match pool.pick(client, tried) {
                Pick::Chosen(b, g) => return Ok((b, g)),
                Pick::None => return Err(ConnError::NoBackend),
                Pick::Full => {}
            }
            if slot.is_none() {
                slot = Some(
                    pool.enter_queue(cfg.max_queue)
                        .ok_or(ConnError::QueueFull)?,
                );
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep_until(deadline) => return Err(ConnError::QueueTimeout),
                () = self.stop.cancelled() => return Err(RelayError::Stopped.into()),
            }
        }
    }
}

/// Reads a PROXY protocol header, exactly, so the client's own bytes stay in the socket.
async fn read_proxy_header(sock: &mut TcpStream) -> Result<Addresses, ConnError> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match proxy_protocol::decode(&buf)? {
            Decoded::Header { addrs, .. } => return Ok(addrs),
            Decoded::Need(n) => {
                let old = buf.len();
                buf.resize(old + n, 0);
                sock.read_exact(&mut buf[old..])
                    .await
                    .map_err(ConnError::ProxyHeaderIo)?;
            }
        }
    }
}
