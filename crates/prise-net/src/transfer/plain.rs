//! `--plain`: the transfer of the classic socket examples — the size as 8
//! bytes big-endian, then the file's bytes, then the sender closes. No name,
//! no resume, no verdict: each side prints the SHA-256 of what it sent or
//! received, so the two can be compared (`sha256sum` prints the same hex).
//!
//! ```text
//! sender ── size (u64 BE) ── bytes[0, size) ── FIN ──▶ receiver
//!                                                      writes .NAME.part, renames it to NAME
//! ```
//!
//! The receiver refuses a size over `--max-size` before writing anything,
//! and a stream that ends before `size` bytes is an incomplete transfer
//! (exit code 8; the part file is removed, as there is no resume). Bytes
//! after the file are not read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::CHUNK;
use crate::error::NetError;

/// Length of the size prefix.
pub const SIZE_LEN: usize = 8;
/// Default name of a file received with `--plain` (the wire carries none).
pub const DEFAULT_PLAIN_NAME: &str = "received.bin";
/// How long a sender waits for the receiver to close after the last byte.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// What a plain transfer moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainReport {
    /// The file written (receiver) or read (sender).
    pub path: PathBuf,
    /// Bytes of file data.
    pub size: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes the size prefix: `Ok(None)` when fewer than 8 bytes are there.
pub fn decode_size(src: &[u8]) -> Option<u64> {
    let prefix: [u8; SIZE_LEN] = src.get(..SIZE_LEN)?.try_into().ok()?;
    Some(u64::from_be_bytes(prefix))
}

/// Receives one plain transfer from `stream` into `out/name`.
///
/// # Errors
/// The stream ends before the size prefix or the data; the size is over
/// `max_size`; the file cannot be written.
pub async fn receive_plain<S>(
    mut stream: S,
    out: &Path,
    name: &str,
    max_size: u64,
    peer: &str,
    bar: &ProgressBar,
) -> Result<PlainReport, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut prefix = [0u8; SIZE_LEN];
    stream
        .read_exact(&mut prefix)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                NetError::Transfer(format!("{peer} closed before sending the size"))
            }
            _ => NetError::from_io(e, peer),
        })?;
    let size = u64::from_be_bytes(prefix);
    if size > max_size {
        return Err(NetError::Protocol(format!(
            "{peer} announced {size} bytes, over --max-size {max_size}"
        )));
    }
    let path = out.join(name);
    let part = out.join(format!(".{name}.part"));
    let shown = part.display().to_string();
    let mut file = tokio::fs::File::create(&part)
        .await
        .map_err(|e| NetError::io(format!("creating {shown}"), e))?;
    bar.set_length(size);
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let n = stream
            .read(&mut buf[..want])
            .await
            .map_err(|e| NetError::from_io(e, peer))?;
        if n == 0 {
            drop(file);
            let _ = tokio::fs::remove_file(&part).await;
            return Err(NetError::Transfer(format!(
                "{peer} closed after {} of {size} bytes",
                size - left
            )));
        }
        hash.update(&buf[..n]);
        file.write_all(&buf[..n])
            .await
            .map_err(|e| NetError::io(format!("writing {shown}"), e))?;
        left -= n as u64;
        bar.inc(n as u64);
    }
    file.flush()
        .await
        .map_err(|e| NetError::io(format!("writing {shown}"), e))?;
    drop(file);
    tokio::fs::rename(&part, &path)
        .await
        .map_err(|e| NetError::io(format!("renaming {shown}"), e))?;
    let _ = stream.shutdown().await;
    Ok(PlainReport {
        path,
        size,
        sha256: hex(hash.finish().as_ref()),
    })
}

/// Sends the file at `path` as a plain transfer over `stream`, half-closes,
/// and waits (at most [`CLOSE_WAIT`]) for the receiver to close.
///
/// # Errors
/// The file cannot be read, or the connection fails.
pub async fn send_plain<S>(
    mut stream: S,
    path: &Path,
    peer: &str,
    bar: &ProgressBar,
) -> Result<PlainReport, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shown = path.display().to_string();
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| NetError::io(format!("opening {shown}"), e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| NetError::io(format!("reading {shown}"), e))?;
    if !meta.is_file() {
        return Err(NetError::Usage(format!("{shown} is not a regular file")));
    }
    let size = meta.len();
    let io = |e| NetError::from_io(e, peer);
    stream.write_all(&size.to_be_bytes()).await.map_err(io)?;
    bar.set_length(size);
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let n = file
            .read(&mut buf[..want])
            .await
            .map_err(|e| NetError::io(format!("reading {shown}"), e))?;
        if n == 0 {
            return Err(NetError::io(
                format!("reading {shown}"),
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file shrank"),
            ));
        }
        hash.update(&buf[..n]);
        stream.write_all(&buf[..n]).await.map_err(io)?;
        left -= n as u64;
        bar.inc(n as u64);
    }
    stream.shutdown().await.map_err(io)?;
    // The receiver closes once it has everything; whatever it says is not
    // part of the protocol and is dropped.
    let drain = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    if tokio::time::timeout(CLOSE_WAIT, drain).await.is_err() {
        tracing::warn!(%peer, "the receiver did not close within {}", humantime::format_duration(CLOSE_WAIT));
    }
    Ok(PlainReport {
        path: path.to_owned(),
        size,
        sha256: hex(hash.finish().as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_prefix_is_eight_bytes_big_endian() {
        assert_eq!(decode_size(b"\0\0\0\0\0\0\x01\x02rest"), Some(258));
        assert_eq!(decode_size(b"\0\0\0"), None);
    }

    #[tokio::test]
    async fn a_plain_transfer_round_trips_and_a_short_one_fails() {
        let dir = prise_testkit::TestDir::new();
        let src = dir.path().join("src.bin");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let (a, b) = tokio::io::duplex(64 << 10);
        let bar = ProgressBar::hidden();
        let (sent, got) = tokio::join!(
            send_plain(a, &src, "peer", &bar),
            receive_plain(b, &out, "f.bin", 1 << 20, "peer", &bar)
        );
        let (sent, got) = (sent.unwrap(), got.unwrap());
        assert_eq!(sent.sha256, got.sha256);
        assert_eq!(std::fs::read(out.join("f.bin")).unwrap(), data);

        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&10u64.to_be_bytes()).await.unwrap();
        a.write_all(b"abc").await.unwrap();
        drop(a);
        let e = receive_plain(b, &out, "short", 100, "peer", &bar)
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), crate::error::exit_code::TRANSFER);
        assert!(!out.join(".short.part").exists());

        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&1000u64.to_be_bytes()).await.unwrap();
        let e = receive_plain(b, &out, "big", 100, "peer", &bar)
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), crate::error::exit_code::PROTOCOL);
    }
}
