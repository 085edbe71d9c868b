//! The receiving side: `prise recv`, and [`receive_file`] over any stream.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use indicatif::ProgressBar;
use prise_proto::transfer::{Header, Resume, Trailer, TransferLimits, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[cfg(target_os = "linux")]
use super::PlainSocket;
use super::digest::{Finish, Watermark, hash_behind, hash_queue};
use super::plain::receive_plain;
use super::{CHUNK, TransferStream, WRITE_QUEUE, check_scheme, progress, read_msg};
use crate::echo::report_listening;
use crate::endpoint::Endpoint;
use crate::error::NetError;
use crate::tls::{ServerTlsArgs, server_config};
use crate::transport::{BoxStream, Conn, Listener, SocketArgs};

/// Arguments of `prise recv`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
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
    /// Speak the plain transfer: an 8-byte big-endian size, then the bytes
    /// (no name, no resume); the SHA-256 of what arrived is printed.
    #[arg(long)]
    pub plain: bool,
    /// With --plain: the name to write the file under inside --out.
    #[arg(long, value_name = "NAME", default_value = super::plain::DEFAULT_PLAIN_NAME, requires = "plain")]
    pub name: String,
    #[command(flatten)]
    /// TLS certificate.
    pub tls: ServerTlsArgs,
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
        if args.plain {
            let name = plain_name(&args.name)?;
            let r = match stream {
                Accepted::Tcp(s) => {
                    receive_plain(s, &args.out, &name, args.max_size, &peer, &bar).await
                }
                Accepted::Unix(s) => {
                    receive_plain(s, &args.out, &name, args.max_size, &peer, &bar).await
                }
                Accepted::Other(s) => {
                    receive_plain(s, &args.out, &name, args.max_size, &peer, &bar).await
                }
            };
            bar.finish_and_clear();
            match r {
                Ok(report) => {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "received {} ({} bytes, sha256 {})",
                        report.path.display(),
                        report.size,
                        report.sha256
                    );
                    if !args.keep_open {
                        return Ok(());
                    }
                }
                Err(e) if args.keep_open => tracing::warn!(%peer, error = %e, "transfer failed"),
                Err(e) => return Err(e),
            }
            continue;
        }
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

/// The `--name` of a plain receive, reduced to one path component.
fn plain_name(name: &str) -> Result<String, NetError> {
    match Path::new(name).file_name().and_then(|n| n.to_str()) {
        Some(n) if !n.starts_with('.') => Ok(n.to_owned()),
        _ => Err(NetError::Usage(format!(
            "--name '{name}' is not a file name"
        ))),
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
