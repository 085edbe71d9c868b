//! `prise send FILE URL` / `prise recv URL --out DIR`: file transfer with a
//! header (name, size, file id), resume from the receiver's offset, and a
//! trailer carrying the BLAKE3 hash of the whole file, checked by the
//! receiver (protocol in `prise_proto::transfer`).
//!
//! ```text
//! send: Header ─▶ ◀─ Resume{offset} ─▶ bytes[offset..size) ─▶ Trailer{hash} ─▶ ◀─ Verdict
//!       hashing thread: bytes[0..size) of the file, from the start, beside the sending
//! recv: Header ─▶ sanitise name ─▶ .NAME.ID.part (its length = offset)
//!       socket ─▶ file (append) ─▶ Trailer ─▶ compare ─▶ rename to NAME
//!       hashing thread: the part file's prefix, then the new bytes as they land
//! ```
//!
//! Data paths. Over plain TCP and Unix sockets (Linux) the sender moves the
//! file with `sendfile(2)` and the receiver with `splice(2)` through a pipe
//! (see [`crate::zerocopy`]). The sender's hashing thread maps the file
//! (no copy out of the page cache); the receiver's reads the part file back
//! from the page cache with positioned reads into one bounded buffer. Over TLS,
//! or when the receiver cannot create its pipe, bytes go through bounded
//! queues of [`CHUNK`]-sized buffers instead: the sender reads the file on a
//! thread, the receiver writes it on one and hashes the same buffers on
//! another.
//!
//! The receiver writes only inside `--out`: names are reduced to one path
//! component, and data goes to a hidden `.part` file keyed by the file id, so
//! a transfer of another file under the same name does not resume from its
//! prefix. The id is cheap and not a proof: the trailer's hash covers the
//! whole file, the resumed prefix included, so a prefix that no longer
//! matches is caught there. A transfer cut short keeps its `.part` file;
//! sending again resumes there. A hash mismatch deletes it and fails with
//! exit code 8.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prise_proto::transfer::{
    Header, Resume, Trailer, TransferError, TransferLimits, VERDICT_MAGIC, Verdict,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::echo::report_listening;
use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::tls::{ClientTlsArgs, ServerTlsArgs, server_config};
use crate::transport::{self, BoxStream, Conn, ConnectOptions, Listener, SocketArgs};
pub use crate::zerocopy::{PlainSocket, TransferStream};
pub use digest::file_id;
use digest::{Finish, Watermark, hash_behind, hash_file, hash_queue, shrank};

mod digest;

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

fn part_path(out: &Path, header: &Header) -> PathBuf {
    let tag: String = header.id[..8].iter().map(|b| format!("{b:02x}")).collect();
    out.join(format!(".{}.{tag}.part", header.name))
}

/// What a data path made of bytes `[offset, size)`.
struct Landed {
    /// The hash of bytes `[0, end)` of the part file.
    hasher: blake3::Hasher,
    /// Whether every byte arrived.
    complete: bool,
    /// How many bytes the part file now holds.
    end: u64,
}

/// Receives one file from `stream` into `out`.
///
/// Over a plain socket the bytes are spliced into the part file and hashed
/// by a thread that reads them back; otherwise a writer thread and a hashing
/// thread share a bounded queue of buffers. Either way the prefix of a
/// resumed file is hashed first, beside the transfer.
///
/// # Errors
/// A bad header (the sender is told `Refused`), a local write error, a short
/// stream or a missing trailer (the `.part` file is kept for resuming) or a
/// hash mismatch (the `.part` file is removed).
pub async fn receive_file<S>(
    mut stream: S,
    out: &Path,
    limits: &TransferLimits,
    peer: &str,
    bar: &ProgressBar,
) -> Result<RecvReport, NetError>
where
    S: TransferStream,
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
    let part_shown = part.display().to_string();
    let existing = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let offset = if existing <= header.size { existing } else { 0 };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(offset == 0)
        .open(&part)
        .and_then(|f| f.set_len(offset).map(|()| f))
        .map_err(|e| NetError::io(format!("creating {part_shown}"), e))?;
    let mut msg = BytesMut::new();
    Resume { offset }.encode(&mut msg);
    stream
        .write_all(&msg)
        .await
        .map_err(|e| NetError::from_io(e, peer))?;
    tracing::info!(name = %header.name, size = header.size, offset, "receiving");
    bar.set_length(header.size);
    bar.set_position(offset);

    // Bytes that arrived with the header belong to the file (up to its
    // size); any after them are the start of the trailer.
    let left = header.size - offset;
    let early = buf.split_to(buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)));
    #[cfg(target_os = "linux")]
    let pipe = match stream.plain_socket() {
        Some(_) => crate::zerocopy::Pipe::new()
            .inspect_err(|e| tracing::debug!(error = %e, "no pipe; receiving through buffers"))
            .ok(),
        None => None,
    };
    #[cfg(target_os = "linux")]
    let landed = match (stream.plain_socket(), pipe) {
        (Some(sock), Some(pipe)) => {
            receive_spliced(sock, &pipe, &file, offset, left, early, bar).await
        }
        _ => receive_buffered(&mut stream, &mut buf, file, offset, left, early, bar).await,
    };
    #[cfg(not(target_os = "linux"))]
    let landed = receive_buffered(&mut stream, &mut buf, file, offset, left, early, bar).await;
    let landed = landed.map_err(|e| NetError::io(format!("writing {part_shown}"), e))?;

    let reply = |v: Verdict| {
        let mut m = BytesMut::new();
        v.encode(&mut m);
        m
    };
    let incomplete = |why: &str| {
        NetError::Transfer(format!(
            "{} incomplete: {} of {} bytes{why}; send again to resume",
            header.name, landed.end, header.size
        ))
    };
    if !landed.complete {
        let _ = stream.write_all(&reply(Verdict::SizeMismatch)).await;
        return Err(incomplete(""));
    }
    let trailer = match read_msg(&mut stream, &mut buf, peer, Trailer::decode).await {
        Ok(t) => t,
        Err(e) => {
            let _ = stream.write_all(&reply(Verdict::SizeMismatch)).await;
            return Err(incomplete(&format!(", no trailer ({e})")));
        }
    };
    if landed.hasher.finalize().as_bytes() != &trailer.hash {
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

/// Splices `left` bytes from `sock` into `file` at `offset` (after writing
/// `early`), while a thread hashes the file from its start behind the writes.
#[cfg(target_os = "linux")]
async fn receive_spliced(
    sock: PlainSocket<'_>,
    pipe: &crate::zerocopy::Pipe,
    file: &std::fs::File,
    offset: u64,
    left: u64,
    early: BytesMut,
    bar: &ProgressBar,
) -> std::io::Result<Landed> {
    use crate::zerocopy::{Spliced, splice_to_file};
    let mark = Arc::new(Watermark::new(offset));
    let hashing = {
        let file = file.try_clone()?;
        let mark = Arc::clone(&mark);
        tokio::task::spawn_blocking(move || hash_behind(&file, &mark))
    };
    let written = async {
        let _finish = Finish(&mark);
        file.write_all_at(&early, offset)?;
        let start = offset + early.len() as u64;
        mark.advance(start);
        bar.set_position(start);
        let spliced = splice_to_file(sock, pipe, file, start, left - early.len() as u64, |end| {
            mark.advance(end);
            bar.set_position(end);
        })
        .await?;
        if let Spliced::Short(Some(e)) = &spliced {
            tracing::debug!(error = %e, "socket failed during the transfer");
        }
        Ok::<_, std::io::Error>(matches!(spliced, Spliced::All))
    }
    .await;
    let end = mark.end();
    let hasher = hashing.await.map_err(std::io::Error::other)??;
    Ok(Landed {
        hasher,
        complete: written?,
        end,
    })
}

/// Reads `left` bytes from `stream` into buffers (after `early`); a writer
/// thread appends them to `file` at `offset` and a hashing thread hashes the
/// file's prefix and then the same buffers. Bytes read past the file stay
/// in `rest` (the trailer).
async fn receive_buffered<S: TransferStream>(
    stream: &mut S,
    rest: &mut BytesMut,
    file: std::fs::File,
    offset: u64,
    mut left: u64,
    early: BytesMut,
    bar: &ProgressBar,
) -> std::io::Result<Landed> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let (htx, hrx) = std::sync::mpsc::sync_channel::<Bytes>(WRITE_QUEUE);
    let hashing = {
        let file = file.try_clone()?;
        tokio::task::spawn_blocking(move || hash_queue(&file, offset, &hrx))
    };
    let writer = tokio::task::spawn_blocking(move || {
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))?;
        while let Some(chunk) = rx.blocking_recv() {
            // The hasher only stops early if it failed; its join reports it.
            let _ = htx.send(chunk.clone());
            file.write_all(&chunk)?;
        }
        drop(htx);
        file.flush()
    });
    let mut data = early;
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
                Ok(0) => {
                    short = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "socket failed during the transfer");
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
    // What was read past the file is the trailer's beginning.
    data.unsplit(rest.split());
    *rest = data;
    writer.await.map_err(std::io::Error::other)??;
    let hasher = hashing.await.map_err(std::io::Error::other)??;
    let end = hasher.count();
    Ok(Landed {
        hasher,
        complete: left == 0,
        end,
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
    let url = &args.url;
    let peer = url.to_string();
    let bar = progress(0, args.quiet);
    let start = Instant::now();
    // Plain sockets keep their type, so the file can go out with sendfile.
    let report = match url.scheme {
        Scheme::Tcp => {
            let s =
                transport::bounded(url, args.timeout, transport::tcp_connect(url, &opts.socket))
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
        let Some((stream, peer)) = accept(&listener, args.keep_open, &args.url.path).await? else {
            continue;
        };
        let bar = progress(0, args.quiet);
        let r = match stream {
            Accepted::Tcp(s) => receive_file(s, &args.out, &limits, &peer, &bar).await,
            Accepted::Unix(s) => receive_file(s, &args.out, &limits, &peer, &bar).await,
            Accepted::Other(s) => receive_file(s, &args.out, &limits, &peer, &bar).await,
        };
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

/// A stream accepted by `recv`: plain sockets keep their type, so the file
/// can be spliced in.
enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
    Other(BoxStream),
}

/// Accepts the next sender; `None` when a handshake failed and `keep_open`
/// says to go on.
async fn accept(
    listener: &Listener,
    keep_open: bool,
    unix_name: &str,
) -> Result<Option<(Accepted, String)>, NetError> {
    match listener {
        Listener::Tcp(tcp, upgrader) if upgrader.tls.is_none() && upgrader.ws.is_none() => {
            let (s, peer) = tcp
                .accept()
                .await
                .map_err(|e| NetError::io("accepting", e))?;
            upgrader.socket.apply(&s)?;
            Ok(Some((Accepted::Tcp(s), peer.to_string())))
        }
        Listener::Unix(unix) => {
            let (s, _) = unix
                .accept()
                .await
                .map_err(|e| NetError::io("accepting", e))?;
            Ok(Some((Accepted::Unix(s), unix_name.to_owned())))
        }
        Listener::Udp(_) => Err(NetError::Usage("no transfer over udp".into())),
        Listener::Tcp(..) => match listener.accept_stream(keep_open, unix_name).await? {
            Some((Conn::Stream(s), peer)) => Ok(Some((Accepted::Other(s), peer))),
            // A message transport (ws) carries no byte stream to receive.
            Some(_) | None => Ok(None),
        },
    }
}
