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
//!
//! `--plain` on both sides speaks the simplest transfer instead (see
//! [`plain`]): an 8-byte big-endian size, then the bytes.

use bytes::BytesMut;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prise_proto::transfer::TransferError;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
pub use crate::zerocopy::{PlainSocket, TransferStream};
pub use digest::file_id;
pub use plain::{PlainReport, receive_plain, send_plain};
pub use receive::{RecvArgs, RecvReport, receive_file, recv_run};
pub use send::{SendArgs, SendReport, send_file, send_run};

mod digest;
pub mod plain;
mod receive;
mod send;

/// Size of each read and write of file data.
pub const CHUNK: usize = 1 << 20;
/// Chunks queued between the socket and the receiver's writer thread.
pub const WRITE_QUEUE: usize = 8;
/// Most bytes buffered while waiting for a handshake message.
const MAX_HANDSHAKE: usize = 4096;

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

fn check_scheme(ep: &Endpoint) -> Result<(), NetError> {
    match ep.scheme {
        Scheme::Tcp | Scheme::Tls | Scheme::Unix => Ok(()),
        _ => Err(NetError::Usage(format!(
            "file transfer runs over tcp://, tls:// or unix:, not {}",
            ep.scheme.as_str()
        ))),
    }
}
