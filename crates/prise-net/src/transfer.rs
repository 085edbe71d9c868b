//! `prise send FILE URL` / `prise recv URL --out DIR`: file transfer with a
//! header (name, size, BLAKE3 hash), resume from the receiver's offset, and
//! verification at the end (protocol in `prise_proto::transfer`).
//!
//! ```text
//! send: hash file ─▶ Header ─▶ ◀─ Resume{offset} ─▶ bytes[offset..] ─▶ ◀─ Verdict
//! recv: Header ─▶ sanitise name ─▶ .NAME.HASH.part (its length = offset)
//!       socket ─▶ bounded queue ─▶ writer thread (append + hash) ─▶ rename to NAME
//! ```
//!
//! The receiver writes only inside `--out`: names are reduced to one path
//! component, and data goes to a hidden `.part` file keyed by the hash, so a
//! transfer of different content under the same name never resumes from a
//! wrong prefix. A transfer cut short keeps its `.part` file; sending again
//! resumes there. A hash mismatch deletes it and fails with exit code 8.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prise_proto::transfer::{Header, Resume, TransferError, TransferLimits, Verdict};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::echo::report_listening;
use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::tls::{ClientTlsArgs, ServerTlsArgs, server_config};
use crate::transport::{self, Conn, ConnectOptions, Listener, SocketArgs};

/// Size of each read and write of file data.
pub const CHUNK: usize = 1 << 20;
/// Chunks queued between the socket and the receiver's writer thread.
pub const WRITE_QUEUE: usize = 8;
/// Most bytes buffered while waiting for a handshake message.
const MAX_HANDSHAKE: usize = 4096;

/// Arguments of `prise send`.
#[derive(Debug, Clone, clap::Args)]
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
    #[command(flatten)]
    /// TLS options.
    pub tls: ClientTlsArgs,
    #[command(flatten)]
    /// TCP socket options.
    pub socket: SocketArgs,
}

/// Arguments of `prise recv`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecvArgs {
    /// Where to listen: tcp://host:port or tls://host:port.
    #[arg(value_name = "URL")]
    pub url: Endpoint,
    /// Directory to write received files into (nothing is written outside it).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Keep receiving files after the first.
    #[arg(long, short = 'k')]
    pub keep_open: bool,
    /// Refuse files larger than this many bytes.
    #[arg(long, default_value_t = prise_proto::transfer::DEFAULT_MAX_FILE_SIZE, value_name = "BYTES")]
    pub max_size: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    /// TLS certificate.
    pub tls: ServerTlsArgs,
}

/// What a completed send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// File size.
    pub size: u64,
    /// Where the receiver asked to resume (0 for a fresh transfer).
    pub resumed_from: u64,
}

/// What a completed receive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvReport {
    /// Where the file now is.
    pub path: PathBuf,
    /// File size.
    pub size: u64,
    /// Bytes that were already there from an earlier attempt.
    pub resumed_from: u64,
}

fn proto_err(e: TransferError) -> NetError {
    NetError::Protocol(e.to_string())
}

fn progress(len: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Reads from `stream` into `buf` until `decode` yields a message.
async fn read_msg<S, T>(
    stream: &mut S,
    buf: &mut BytesMut,
    peer: &str,
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, TransferError>,
) -> Result<T, NetError>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some(msg) = decode(buf).map_err(proto_err)? {
            return Ok(msg);
        }
        if buf.len() > MAX_HANDSHAKE {
            return Err(NetError::Protocol("handshake message too large".into()));
        }
        buf.reserve(MAX_HANDSHAKE);
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|e| NetError::from_io(e, peer))?;
        if n == 0 {
            return Err(NetError::Transfer(format!(
                "{peer} closed during the handshake"
            )));
        }
    }
}

/// Hashes the first `len` bytes of `path` (all of it when `None`) on a blocking thread.
async fn hash_file(path: PathBuf, len: Option<u64>) -> Result<(blake3::Hasher, u64), NetError> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let mut hasher = blake3::Hasher::new();
        let n = match len {
            Some(len) => std::io::copy(&mut file.take(len), &mut hasher)?,
            None => {
                drop(file);
                // Memory-mapped and spread over every core: the sender hashes
                // before it can send, so this time is on the critical path.
                hasher.update_mmap_rayon(&path)?;
                hasher.count()
            }
        };
        Ok::<_, std::io::Error>((hasher, n))
    })
    .await
    .map_err(|e| NetError::io("hashing", std::io::Error::other(e)))?
    .map_err(|e| NetError::io(format!("reading {shown}"), e))
}

/// Sends the file at `path` under `name` over `stream`.
///
/// # Errors
/// The file cannot be read, the peer breaks the protocol or the connection,
/// or the receiver reports a mismatch ([`NetError::Transfer`]).
pub async fn send_file<S>(
    mut stream: S,
    path: &Path,
    name: &str,
    peer: &str,
    bar: &ProgressBar,
) -> Result<SendReport, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (hasher, size) = hash_file(path.to_owned(), None).await?;
    let header = Header {
        name: name.to_owned(),
        size,
        hash: *hasher.finalize().as_bytes(),
    };
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf)
        .map_err(|e| NetError::Usage(format!("cannot send '{name}': {e}")))?;
    stream
        .write_all(&buf)
        .await
        .map_err(|e| NetError::from_io(e, peer))?;
    buf.clear();
    let resume = read_msg(&mut stream, &mut buf, peer, Resume::decode).await?;
    if resume.offset > size {
        return Err(NetError::Protocol(format!(
            "receiver asked to resume at {} past the end ({size})",
            resume.offset
        )));
    }
    let mut file = std::fs::File::open(path)
        .map_err(|e| NetError::io(format!("opening {}", path.display()), e))?;
    if resume.offset > 0 {
        tracing::info!(offset = resume.offset, "resuming");
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(resume.offset))
            .map_err(|e| NetError::io("seeking", e))?;
    }
    bar.set_length(size);
    bar.set_position(resume.offset);
    let mut left = size - resume.offset;
    // A reader thread keeps the socket fed while the previous chunk is sent.
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(WRITE_QUEUE);
    let reader = tokio::task::spawn_blocking(move || {
        let mut to_read = left;
        while to_read > 0 {
            let want = CHUNK.min(usize::try_from(to_read).unwrap_or(usize::MAX));
            let mut chunk = BytesMut::zeroed(want);
            let r = match file.read(&mut chunk) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                )),
                Ok(n) => {
                    chunk.truncate(n);
                    to_read -= n as u64;
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
            Some(Err(e)) => return Err(NetError::io(format!("reading {}", path.display()), e)),
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

fn part_path(out: &Path, header: &Header) -> PathBuf {
    let tag: String = header.hash[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    out.join(format!(".{}.{tag}.part", header.name))
}

/// Receives one file from `stream` into `out`.
///
/// # Errors
/// A bad header, a local write error, a short stream (the `.part` file is
/// kept for resuming) or a hash mismatch (the `.part` file is removed).
pub async fn receive_file<S>(
    mut stream: S,
    out: &Path,
    limits: &TransferLimits,
    peer: &str,
    bar: &ProgressBar,
) -> Result<RecvReport, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    let header = match read_msg(&mut stream, &mut buf, peer, |b| Header::decode(b, limits)).await {
        Ok(h) => h,
        Err(e) => {
            let mut v = BytesMut::new();
            Verdict::Refused.encode(&mut v);
            let _ = stream.write_all(&v).await;
            return Err(e);
        }
    };
    let part = part_path(out, &header);
    let existing = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let offset = if existing <= header.size { existing } else { 0 };
    let mut msg = BytesMut::new();
    Resume { offset }.encode(&mut msg);
    stream
        .write_all(&msg)
        .await
        .map_err(|e| NetError::from_io(e, peer))?;
    tracing::info!(name = %header.name, size = header.size, offset, "receiving");

    let hasher = if offset > 0 {
        hash_file(part.clone(), Some(offset)).await?.0
    } else {
        blake3::Hasher::new()
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(offset == 0)
        .open(&part)
        .map_err(|e| NetError::io(format!("creating {}", part.display()), e))?;
    let file_len = offset;
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let part_shown = part.display().to_string();
    // Writing and hashing run on their own thread, beside the socket reads.
    // Hashing and writing run on two threads of their own, beside the
    // socket reads; both queues are bounded.
    let (htx, hrx) = std::sync::mpsc::sync_channel::<Bytes>(WRITE_QUEUE);
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hasher = hasher;
        while let Ok(chunk) = hrx.recv() {
            hasher.update(&chunk);
        }
        hasher
    });
    let writer = tokio::task::spawn_blocking(move || {
        file.set_len(file_len)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(file_len))?;
        while let Some(chunk) = rx.blocking_recv() {
            // The hasher only stops early if it panicked; the write error
            // below (or the join) reports it.
            let _ = htx.send(chunk.clone());
            file.write_all(&chunk)?;
        }
        drop(htx);
        file.flush()?;
        Ok::<_, std::io::Error>(())
    });

    bar.set_length(header.size);
    bar.set_position(offset);
    let mut left = header.size - offset;
    // Bytes that arrived with the header belong to the file.
    let mut data = buf;
    let mut short = false;
    while left > 0 {
        // Gather a large chunk before handing it over: fewer, bigger
        // writes and hash updates.
        let want = CHUNK.min(usize::try_from(left).unwrap_or(usize::MAX));
        while data.len() < want {
            if data.capacity() - data.len() < want - data.len() {
                data.reserve(CHUNK);
            }
            match stream.read_buf(&mut data).await {
                Ok(0) | Err(_) => {
                    short = true;
                    break;
                }
                Ok(_) => {}
            }
        }
        let take = data.len().min(want);
        if take == 0 {
            break;
        }
        let chunk = data.split_to(take).freeze();
        left -= take as u64;
        bar.inc(take as u64);
        if tx.send(chunk).await.is_err() || short {
            break;
        }
    }
    drop(tx);
    writer
        .await
        .map_err(|e| NetError::io("writing", std::io::Error::other(e)))?
        .map_err(|e| NetError::io(format!("writing {part_shown}"), e))?;
    let hasher = hashing
        .await
        .map_err(|e| NetError::io("hashing", std::io::Error::other(e)))?;
    let reply = |v: Verdict| {
        let mut m = BytesMut::new();
        v.encode(&mut m);
        m
    };
    if short || left > 0 {
        let _ = stream.write_all(&reply(Verdict::SizeMismatch)).await;
        return Err(NetError::Transfer(format!(
            "{} incomplete: {} of {} bytes; send again to resume",
            header.name,
            header.size - left,
            header.size
        )));
    }
    if hasher.finalize().as_bytes() != &header.hash {
        let _ = tokio::fs::remove_file(&part).await;
        let _ = stream.write_all(&reply(Verdict::HashMismatch)).await;
        return Err(NetError::Transfer(format!(
            "{}: BLAKE3 hash mismatch, file discarded",
            header.name
        )));
    }
    let dest = out.join(&header.name);
    tokio::fs::rename(&part, &dest)
        .await
        .map_err(|e| NetError::io(format!("renaming to {}", dest.display()), e))?;
    stream
        .write_all(&reply(Verdict::Verified))
        .await
        .map_err(|e| NetError::from_io(e, peer))?;
    let _ = stream.shutdown().await;
    bar.finish();
    Ok(RecvReport {
        path: dest,
        size: header.size,
        resumed_from: offset,
    })
}

fn check_scheme(ep: &Endpoint) -> Result<(), NetError> {
    match ep.scheme {
        Scheme::Tcp | Scheme::Tls | Scheme::Unix => Ok(()),
        _ => Err(NetError::Usage(format!(
            "file transfer runs over tcp://, tls:// or unix:, not {}",
            ep.scheme.as_str()
        ))),
    }
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
        ..ConnectOptions::default()
    };
    let Conn::Stream(stream) = transport::connect(&args.url, &opts).await? else {
        return Err(NetError::Usage("file transfer needs a stream".into()));
    };
    let bar = progress(0, args.quiet);
    let start = Instant::now();
    let report = send_file(stream, &args.file, &name, &args.url.to_string(), &bar).await?;
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

/// Runs `prise recv`.
///
/// # Errors
/// See [`receive_file`]; with `--keep-open`, only binding errors end it.
pub async fn recv_run(args: RecvArgs) -> Result<(), NetError> {
    check_scheme(&args.url)?;
    tokio::fs::create_dir_all(&args.out)
        .await
        .map_err(|e| NetError::io(format!("creating {}", args.out.display()), e))?;
    let tls = if args.url.scheme.is_tls() {
        Some(server_config(&args.tls)?)
    } else {
        None
    };
    let listener = Listener::bind(
        &args.url,
        tls,
        SocketArgs::default(),
        prise_ws::WsConfig::default(),
    )
    .await?;
    report_listening("recv", &args.url, &listener);
    let limits = TransferLimits {
        max_file_size: args.max_size,
    };
    loop {
        let (stream, peer) = match &listener {
            Listener::Udp(_) => return Err(NetError::Usage("no transfer over udp".into())),
            _ => match listener
                .accept_stream(args.keep_open, &args.url.path)
                .await?
            {
                Some((Conn::Stream(s), peer)) => (s, peer),
                // A message transport (ws) carries no byte stream to receive.
                Some(_) | None => continue,
            },
        };
        let bar = progress(0, args.quiet);
        let r = receive_file(stream, &args.out, &limits, &peer, &bar).await;
        match r {
            Ok(report) => {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "received {} ({} bytes, verified)",
                    report.path.display(),
                    report.size
                );
                if !args.keep_open {
                    return Ok(());
                }
            }
            Err(e) if args.keep_open => tracing::warn!(%peer, error = %e, "transfer failed"),
            Err(e) => return Err(e),
        }
    }
}
