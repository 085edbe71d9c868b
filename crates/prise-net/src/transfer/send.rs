//! The sending side: `prise send`, and [`send_file`] over any stream.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indicatif::ProgressBar;
use prise_proto::transfer::{Header, Resume, Trailer, TransferError, VERDICT_MAGIC, Verdict};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::digest::{file_id, hash_file, shrank};
use super::{CHUNK, TransferStream, WRITE_QUEUE, check_scheme, progress, read_msg};
use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::proxy_client::{ProxyUrl, dial};
use crate::tls::ClientTlsArgs;
use crate::transport::{self, Conn, ConnectOptions, SocketArgs};

/// Arguments of `prise send`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct SendArgs {
    /// The file to send.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The receiver: tcp://host:port or tls://host:port.
    #[arg(value_name = "URL")]
    pub url: Endpoint,
    /// Name announced to the receiver (default: the file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Give up connecting after this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Speak the plain transfer: an 8-byte big-endian size, then the bytes
    /// (no name, no resume); the SHA-256 of what was sent is printed.
    #[arg(long, conflicts_with = "name")]
    pub plain: bool,
    #[command(flatten)]
    /// TLS options.
    pub tls: ClientTlsArgs,
    #[command(flatten)]
    /// TCP socket options.
    pub socket: SocketArgs,
    /// Connect through a proxy: socks5://host:port (user:pass@ before the host to authenticate) or http://host:port (CONNECT).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<ProxyUrl>,
}

/// What a completed send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// File size.
    pub size: u64,
    /// Where the receiver asked to resume (0 for a fresh transfer).
    pub resumed_from: u64,
}

/// The receiver's answer to a header: where to resume, or (from a receiver
/// that refused the header) a verdict.
enum Answer {
    Resume(Resume),
    Refused(Verdict),
}

fn decode_answer(src: &mut BytesMut) -> Result<Option<Answer>, TransferError> {
    if src.len() >= 4 && src[..4] == VERDICT_MAGIC {
        return Ok(Verdict::decode(src)?.map(Answer::Refused));
    }
    Ok(Resume::decode(src)?.map(Answer::Resume))
}

async fn join<T>(
    task: tokio::task::JoinHandle<std::io::Result<T>>,
    what: &str,
) -> Result<T, NetError> {
    task.await
        .map_err(|e| NetError::io(what.to_owned(), std::io::Error::other(e)))?
        .map_err(|e| NetError::io(what.to_owned(), e))
}

/// Sends the file at `path` under `name` over `stream`.
///
/// The whole file is hashed on a blocking thread while its bytes are sent;
/// the hash goes out in the trailer. Over a plain socket the bytes move with
/// `sendfile(2)`, otherwise through a reader thread and a bounded queue.
///
/// # Errors
/// The file cannot be read or is not a regular file, the peer breaks the
/// protocol or the connection, or the receiver refuses the file or reports a
/// mismatch ([`NetError::Transfer`]).
pub async fn send_file<S>(
    mut stream: S,
    path: &Path,
    name: &str,
    peer: &str,
    bar: &ProgressBar,
) -> Result<SendReport, NetError>
where
    S: TransferStream,
{
    let shown = path.display().to_string();
    let file =
        std::fs::File::open(path).map_err(|e| NetError::io(format!("opening {shown}"), e))?;
    let meta = file
        .metadata()
        .map_err(|e| NetError::io(format!("reading {shown}"), e))?;
    if !meta.is_file() {
        return Err(NetError::Usage(format!("{shown} is not a regular file")));
    }
    let size = meta.len();
    let id = file_id(&file, name).map_err(|e| NetError::io(format!("reading {shown}"), e))?;
    let mut buf = BytesMut::new();
    Header {
        name: name.to_owned(),
        size,
        id,
    }
    .encode(&mut buf)
    .map_err(|e| NetError::Usage(format!("cannot send '{name}': {e}")))?;
    stream
        .write_all(&buf)
        .await
        .map_err(|e| NetError::from_io(e, peer))?;
    buf.clear();

    // Hashing starts now, so it also overlaps the round trip of the handshake.
    let hashing = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || hash_file(&path, size))
    };
    let resume = match read_msg(&mut stream, &mut buf, peer, decode_answer).await? {
        Answer::Resume(r) => r,
        Answer::Refused(v) => {
            return Err(NetError::Transfer(format!(
                "receiver refused the file ({v:?}): its name, its size over the receiver's limit, or another transfer version; see the receiver's log"
            )));
        }
    };
    if resume.offset > size {
        return Err(NetError::Protocol(format!(
            "receiver asked to resume at {} past the end ({size})",
            resume.offset
        )));
    }
    if resume.offset > 0 {
        tracing::info!(offset = resume.offset, "resuming");
    }
    bar.set_length(size);
    bar.set_position(resume.offset);
    let sent = match stream.plain_socket() {
        #[cfg(target_os = "linux")]
        Some(sock) => crate::zerocopy::send_range(sock, &file, resume.offset, size, |n| {
            bar.inc(n);
        })
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => NetError::io(format!("reading {shown}"), e),
            _ => NetError::from_io(e, peer),
        }),
        _ => send_buffered(&mut stream, file, resume.offset, size, &shown, peer, bar).await,
    };
    sent?;
    let hash = join(hashing, &format!("hashing {shown}")).await?;
    Trailer { hash }.encode(&mut buf);
    stream
        .write_all(&buf)
        .await
        .map_err(|e| NetError::from_io(e, peer))?;
    buf.clear();
    stream
        .flush()
        .await
        .map_err(|e| NetError::from_io(e, peer))?;
    let verdict = read_msg(&mut stream, &mut buf, peer, Verdict::decode).await?;
    let _ = stream.shutdown().await;
    match verdict {
        Verdict::Verified => Ok(SendReport {
            size,
            resumed_from: resume.offset,
        }),
        other => Err(NetError::Transfer(format!("receiver reports {other:?}"))),
    }
}

/// Sends bytes `[from, size)` of `file` through user-space buffers: a reader
/// thread keeps a bounded queue of chunks full while the previous one is
/// written (TLS needs the bytes in user space).
async fn send_buffered<S: TransferStream>(
    stream: &mut S,
    file: std::fs::File,
    from: u64,
    size: u64,
    shown: &str,
    peer: &str,
    bar: &ProgressBar,
) -> Result<(), NetError> {
    let mut left = size - from;
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(WRITE_QUEUE);
    let reader = tokio::task::spawn_blocking(move || {
        let mut pos = from;
        while pos < size {
            let want = usize::try_from(size - pos).map_or(CHUNK, |l| l.min(CHUNK));
            let mut chunk = BytesMut::zeroed(want);
            let r = match file.read_at(&mut chunk, pos) {
                Ok(0) => Err(shrank()),
                Ok(n) => {
                    chunk.truncate(n);
                    pos += n as u64;
                    Ok(chunk.freeze())
                }
                Err(e) => Err(e),
            };
            let failed = r.is_err();
            if tx.blocking_send(r).is_err() || failed {
                break;
            }
        }
    });
    while left > 0 {
        let chunk = match rx.recv().await {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(NetError::io(format!("reading {shown}"), e)),
            None => return Err(NetError::Transfer("file reader stopped".into())),
        };
        stream
            .write_all(&chunk)
            .await
            .map_err(|e| NetError::from_io(e, peer))?;
        left -= chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    drop(rx);
    let _ = reader.await;
    Ok(())
}

/// Runs `prise send`.
///
/// # Errors
/// See [`send_file`] and [`transport::connect`].
pub async fn send_run(args: SendArgs) -> Result<(), NetError> {
    check_scheme(&args.url)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| NetError::Usage("the file has no usable name; pass --name".into()))?,
    };
    let opts = ConnectOptions {
        socket: args.socket.clone(),
        tls: args.tls.clone(),
        timeout: args.timeout,
        proxy: args.proxy.clone(),
        ..ConnectOptions::default()
    };
    let url = &args.url;
    crate::proxy_client::check_scheme(url, opts.proxy.as_ref())?;
    let peer = url.to_string();
    let bar = progress(0, args.quiet);
    let start = Instant::now();
    if args.plain {
        let Conn::Stream(s) = transport::connect(url, &opts).await? else {
            return Err(NetError::Usage("file transfer needs a stream".into()));
        };
        let report = super::plain::send_plain(s, &args.file, &peer, &bar).await?;
        bar.finish_and_clear();
        let _ = writeln!(
            std::io::stderr().lock(),
            "sent {} ({} bytes, sha256 {})",
            report.path.display(),
            report.size,
            report.sha256
        );
        return Ok(());
    }
    // Plain sockets keep their type, so the file can go out with sendfile.
    let report = match url.scheme {
        Scheme::Tcp => {
            let s = transport::bounded(
                url,
                args.timeout,
                dial(url, &opts.socket, opts.proxy.as_ref()),
            )
            .await?;
            send_file(s, &args.file, &name, &peer, &bar).await?
        }
        Scheme::Unix => {
            let s = transport::bounded(url, args.timeout, transport::unix_connect(url)).await?;
            send_file(s, &args.file, &name, &peer, &bar).await?
        }
        _ => {
            let Conn::Stream(s) = transport::connect(url, &opts).await? else {
                return Err(NetError::Usage("file transfer needs a stream".into()));
            };
            send_file(s, &args.file, &name, &peer, &bar).await?
        }
    };
    bar.finish();
    let secs = start.elapsed().as_secs_f64();
    let sent = report.size - report.resumed_from;
    tracing::info!(
        bytes = sent,
        resumed_from = report.resumed_from,
        mib_per_s = sent as f64 / secs / 1048576.0,
        "sent and verified"
    );
    Ok(())
}
