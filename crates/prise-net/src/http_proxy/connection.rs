//! One client connection of the proxy: requests one after another
//! (keep-alive), each forwarded to its origin or turned into a tunnel.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::{BodyFraming, ChunkedScanner};
use super::head::{self, Head, HeadError, Target};
use super::{AccessLog, Entry, HttpProxyConfig, tunnel};

/// Size of each read from a client or a target.
pub(super) const READ_CHUNK: usize = 64 << 10;

/// Why reading a head or relaying a body stopped.
#[derive(Debug, thiserror::Error)]
pub(super) enum Stop {
    /// The head broke the syntax or a cap.
    #[error(transparent)]
    Head(HeadError),
    /// Nothing arrived in time; `partial` when part of a message had.
    #[error("timed out")]
    Timeout { partial: bool },
    /// The stream ended inside a message.
    #[error("the stream ended inside a message")]
    Truncated,
    /// A chunked body broke the grammar.
    #[error(transparent)]
    Chunk(super::body::ChunkError),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(std::io::Error),
}

/// Reads into `buf`, bounded by `limit`; `Ok(0)` at end of stream.
async fn fill<R: AsyncRead + Unpin>(
    from: &mut R,
    buf: &mut BytesMut,
    limit: Duration,
    partial: bool,
) -> Result<usize, Stop> {
    buf.reserve(READ_CHUNK);
    match tokio::time::timeout(limit, from.read_buf(buf)).await {
        Err(_) => Err(Stop::Timeout { partial }),
        Ok(Err(e)) => Err(Stop::Io(e)),
        Ok(Ok(n)) => Ok(n),
    }
}

type Parse = fn(&[u8], usize) -> Result<Option<(Head, usize)>, HeadError>;

/// Reads one head: `Ok(None)` when the stream ends cleanly before it.
pub(super) async fn read_head<R: AsyncRead + Unpin>(
    from: &mut R,
    buf: &mut BytesMut,
    max: usize,
    limit: Duration,
    parse: Parse,
) -> Result<Option<Head>, Stop> {
    loop {
        // Empty lines before a request are allowed (RFC 9112 §2.2).
        while buf.starts_with(b"\r\n") {
            buf.advance(2);
        }
        if let Some((h, n)) = parse(buf, max).map_err(Stop::Head)? {
            buf.advance(n);
            return Ok(Some(h));
        }
        if fill(from, buf, limit, !buf.is_empty()).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(Stop::Truncated)
            };
        }
    }
}

/// Relays one body framed by `framing` from `from` (after the bytes already
/// in `buf`) to `to`; bytes past the body stay in `buf`. Returns the body's
/// length on the wire.
pub(super) async fn relay_body<R, W>(
    from: &mut R,
    buf: &mut BytesMut,
    to: &mut W,
    framing: BodyFraming,
    limit: Duration,
) -> Result<u64, Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut moved = 0u64;
    let mut chunked = ChunkedScanner::default();
    loop {
        let take = match framing {
            BodyFraming::Empty => return Ok(0),
            BodyFraming::Length(n) => {
                usize::try_from(n - moved).map_or(buf.len(), |left| left.min(buf.len()))
            }
            BodyFraming::Chunked => chunked.scan(buf).map_err(Stop::Chunk)?,
            BodyFraming::UntilClose => buf.len(),
        };
        if take > 0 {
            to.write_all(&buf[..take]).await.map_err(Stop::Io)?;
            buf.advance(take);
            moved += take as u64;
        }
        let done = match framing {
            BodyFraming::Length(n) => moved == n,
            BodyFraming::Chunked => chunked.done(),
            _ => false,
        };
        if done {
            to.flush().await.map_err(Stop::Io)?;
            return Ok(moved);
        }
        if fill(from, buf, limit, true).await? == 0 {
            to.flush().await.map_err(Stop::Io)?;
            return match framing {
                BodyFraming::UntilClose => Ok(moved),
                _ => Err(Stop::Truncated),
            };
        }
    }
}

/// An answer of the proxy itself, and the log entry for it.
struct Refusal {
    status: u16,
    reason: &'static str,
    detail: String,
}

impl Refusal {
    fn new(status: u16, detail: impl Into<String>) -> Self {
        let reason = match status {
            400 => "Bad Request",
            403 => "Forbidden",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            502 => "Bad Gateway",
            504 => "Gateway Timeout",
            _ => "Error",
        };
        Self {
            status,
            reason,
            detail: detail.into(),
        }
    }

    fn from_head(e: &HeadError) -> Self {
        match e {
            HeadError::TooLarge(_) => Self::new(431, e.to_string()),
            _ => Self::new(400, e.to_string()),
        }
    }
}

/// Dials `target`: a refusal of 502 (unreachable) or 504 (too slow) on failure.
pub(super) async fn dial(target: &Target, limit: Duration) -> Result<TcpStream, (u16, String)> {
    let authority = target.authority();
    let attempt = TcpStream::connect((target.host.as_str(), target.port));
    match tokio::time::timeout(limit, attempt).await {
        Err(_) => Err((
            504,
            format!(
                "no connection to {authority} within {}",
                humantime::format_duration(limit)
            ),
        )),
        Ok(Err(e)) => {
            let why = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ if e.to_string().contains("lookup") || e.to_string().contains("resolve") => {
                    "name not found".to_owned()
                }
                _ => e.to_string(),
            };
            Err((502, format!("{authority}: {why}")))
        }
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// A target connection kept for the client's next request to the same origin.
struct Upstream {
    authority: String,
    stream: TcpStream,
    buf: BytesMut,
}

/// Serves one client until it closes, breaks the protocol or idles out.
pub(super) async fn handle(
    mut client: TcpStream,
    peer: SocketAddr,
    config: &HttpProxyConfig,
    log: &AccessLog,
) {
    let _ = client.set_nodelay(true);
    let allowed = config.allow.allows(peer.ip());
    let mut buf = BytesMut::new();
    let mut upstream: Option<Upstream> = None;
    loop {
        let head = match read_head(
            &mut client,
            &mut buf,
            config.max_header,
            config.idle_timeout,
            head::parse_request,
        )
        .await
        {
            Ok(Some(h)) => h,
            Ok(None) | Err(Stop::Io(_)) | Err(Stop::Timeout { partial: false }) => return,
            Err(stop) => {
                let refusal = match &stop {
                    Stop::Head(e) => Refusal::from_head(e),
                    Stop::Timeout { .. } => Refusal::new(408, "request head not finished in time"),
                    _ => Refusal::new(400, "the request ended inside its head"),
                };
                refuse(&mut client, peer, None, refusal, Instant::now(), log).await;
                return;
            }
        };
        let start = Instant::now();
        if !allowed {
            let r = Refusal::new(
                403,
                format!("{} is not allowed to use this proxy", peer.ip()),
            );
            refuse(&mut client, peer, Some(&head), r, start, log).await;
            return;
        }
        if head.method.eq_ignore_ascii_case("CONNECT") {
            let target = match Target::connect(&head.target) {
                Ok(t) => t,
                Err(e) => {
                    refuse(
                        &mut client,
                        peer,
                        Some(&head),
                        Refusal::from_head(&e),
                        start,
                        log,
                    )
                    .await;
                    return;
                }
            };
            let entry = |status, bytes, bytes_up| Entry {
                client: peer.to_string(),
                method: head.method.clone(),
                target: head.target.clone(),
                status,
                bytes,
                bytes_up,
                duration_ms: 0.0,
            };
            match dial(&target, config.connect_timeout).await {
                Err((status, detail)) => {
                    refuse(
                        &mut client,
                        peer,
                        Some(&head),
                        Refusal::new(status, detail),
                        start,
                        log,
                    )
                    .await;
                }
                Ok(target_stream) => {
                    let (down, up) =
                        tunnel::run(client, buf, target_stream, config.idle_timeout).await;
                    log.write(&entry(200, down, up).duration(start.elapsed()));
                }
            }
            return;
        }
        match forward(&mut client, &mut buf, &head, &mut upstream, config).await {
            Ok((entry, keep)) => {
                log.write(
                    &Entry {
                        client: peer.to_string(),
                        ..entry
                    }
                    .duration(start.elapsed()),
                );
                if !keep {
                    return;
                }
            }
            Err(refusal) => {
                refuse(&mut client, peer, Some(&head), refusal, start, log).await;
                return;
            }
        }
    }
}

/// Answers with `refusal`, closes the write side and logs it.
async fn refuse(
    client: &mut TcpStream,
    peer: SocketAddr,
    head: Option<&Head>,
    refusal: Refusal,
    start: Instant,
    log: &AccessLog,
) {
    tracing::debug!(%peer, status = refusal.status, detail = %refusal.detail, "refused");
    let answer = head::error_response(refusal.status, refusal.reason, &refusal.detail);
    let _ = client.write_all(&answer).await;
    let _ = client.shutdown().await;
    log.write(
        &Entry {
            client: peer.to_string(),
            method: head.map_or_else(|| "-".to_owned(), |h| h.method.clone()),
            target: head.map(|h| h.target.clone()).unwrap_or_default(),
            status: refusal.status,
            bytes: 0,
            bytes_up: 0,
            duration_ms: 0.0,
        }
        .duration(start.elapsed()),
    );
}

/// Forwards one request to its origin and its response back. Returns the
/// log entry (without the client) and whether the client connection goes
/// on; a refusal when nothing was answered yet.
async fn forward(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    head: &Head,
    upstream: &mut Option<Upstream>,
    config: &HttpProxyConfig,
) -> Result<(Entry, bool), Refusal> {
    let target = Target::absolute(&head.target).map_err(|e| Refusal::from_head(&e))?;
    let req_framing = head.request_framing().map_err(|e| Refusal::from_head(&e))?;
    let authority = target.authority();
    let mut up = match upstream.take() {
        Some(u) if u.authority == authority => u,
        _ => Upstream {
            stream: dial(&target, config.connect_timeout)
                .await
                .map_err(|(s, d)| Refusal::new(s, d))?,
            authority: authority.clone(),
            buf: BytesMut::new(),
        },
    };
    let broken =
        |what: &str, stop: &Stop| Refusal::new(502, format!("{authority}: {what}: {stop}"));
    up.stream
        .write_all(&head::origin_request(head, &target))
        .await
        .map_err(|e| broken("sending the request", &Stop::Io(e)))?;
    let bytes_up = match relay_body(
        client,
        buf,
        &mut up.stream,
        req_framing,
        config.idle_timeout,
    )
    .await
    {
        Ok(n) => n,
        // The client broke off its own request: nothing sensible to answer.
        Err(stop) => return Err(Refusal::new(400, format!("request body: {stop}"))),
    };
    let resp = loop {
        let r = read_head(
            &mut up.stream,
            &mut up.buf,
            config.max_header,
            config.response_timeout,
            head::parse_response,
        )
        .await;
        let resp = match r {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(Refusal::new(
                    502,
                    format!("{authority} closed without answering"),
                ));
            }
            Err(Stop::Timeout { .. }) => {
                return Err(Refusal::new(
                    504,
                    format!(
                        "no response from {authority} within {}",
                        humantime::format_duration(config.response_timeout)
                    ),
                ));
            }
            Err(stop) => return Err(broken("bad response", &stop)),
        };
        if resp.status == 101 {
            return Err(Refusal::new(502, "protocol upgrades go through CONNECT"));
        }
        if (100..200).contains(&resp.status) {
            // Interim answers (100 Continue) go to the client as they are.
            client
                .write_all(&head::client_response(&resp, true))
                .await
                .map_err(|e| broken("answering", &Stop::Io(e)))?;
            continue;
        }
        break resp;
    };
    let framing = resp
        .response_framing(&head.method)
        .map_err(|e| broken("bad response framing", &Stop::Head(e)))?;
    let reusable = resp.keep_alive() && framing != BodyFraming::UntilClose;
    let keep = head.keep_alive() && reusable;
    let mut entry = Entry {
        client: String::new(),
        method: head.method.clone(),
        target: head.target.clone(),
        status: resp.status,
        bytes: 0,
        bytes_up,
        duration_ms: 0.0,
    };
    if client
        .write_all(&head::client_response(&resp, keep))
        .await
        .is_err()
    {
        return Ok((entry, false));
    }
    match relay_body(
        &mut up.stream,
        &mut up.buf,
        client,
        framing,
        config.response_timeout,
    )
    .await
    {
        Ok(n) => entry.bytes = n,
        Err(stop) => {
            // The head is out: all that is left is to cut the connection.
            tracing::debug!(target = %authority, %stop, "response body broken off");
            return Ok((entry, false));
        }
    }
    if reusable {
        *upstream = Some(up);
    }
    Ok((entry, keep))
}
