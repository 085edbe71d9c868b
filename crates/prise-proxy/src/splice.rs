//! The zero-copy data path on Linux: `splice(2)` from one socket into a pipe and from the
//! pipe into the other socket, so payload pages move inside the kernel and never cross into
//! user space.
//!
//! No `unsafe` is needed: `rustix` wraps `pipe2`, `splice` and `F_SETPIPE_SZ` safely over
//! borrowed file descriptors, and tokio's `try_io` ties each non-blocking call to the
//! socket's readiness (a `WouldBlock` clears it, so the next `readable()`/`writable()` waits
//! for epoll).
//!
//! Small messages are cheaper to copy than to splice, so each direction starts by reading
//! into a 16 KiB buffer and switches to splicing once a read fills it (a bulk stream), and
//! back once a splice returns less.
//!
//! Each direction owns one pipe. It fills the pipe from its source socket, then drains the
//! pipe completely into the destination before reading again, so the pipe never blocks and
//! holds at most `pipe_size` bytes. End of stream on the source shuts down writing on the
//! destination (half-close), like the buffered path.
//!
//! If the pipe cannot be created (file descriptor limit), [`Pipes::new`] fails and the
//! caller falls back to the buffered path.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::relay::{Activity, RelayError, Transferred, supervise};
use crate::stats::Stats;

/// Reads below this size go through a small user-space buffer: for request/response
/// traffic a plain read and write cost less than two splices. A read that fills it switches
/// the direction to splice until a splice returns less.
const SPLICE_MIN: usize = 16 * 1024;

const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// One pipe: a read end and a write end.
#[derive(Debug)]
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

impl Pipe {
    fn new(size: usize) -> io::Result<Self> {
        let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // A larger pipe means fewer system calls per megabyte; when the kernel refuses the
        // size (limits on pipe memory), the default pipe still works.
        let size = fcntl_setpipe_size(&w, size).unwrap_or(64 * 1024);
        Ok(Self { r, w, size })
    }
}

/// The two pipes of one connection.
#[derive(Debug)]
pub(crate) struct Pipes {
    up: Pipe,
    down: Pipe,
}

impl Pipes {
    /// Creates both pipes with (up to) `size` bytes each.
    ///
    /// # Errors
    /// `pipe2` failed (usually the file descriptor limit).
    pub(crate) fn new(size: usize) -> io::Result<Self> {
        Ok(Self {
            up: Pipe::new(size)?,
            down: Pipe::new(size)?,
        })
    }
}

/// Relays between `client` and `backend` with `splice(2)`.
///
/// # Errors
/// The first I/O error of either direction, [`RelayError::Idle`] or [`RelayError::Stopped`].
pub(crate) async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    pipes: Pipes,
    idle: Option<Duration>,
    stop: &CancellationToken,
    stats: &Arc<Stats>,
) -> Result<Transferred, RelayError> {
    let activity = Activity::new();
    let body = async {
        let (upstream, downstream) = tokio::try_join!(
            direction(
                client,
                backend,
                &pipes.up,
                &activity,
                &stats.bytes_up,
                stats
            ),
            direction(
                backend,
                client,
                &pipes.down,
                &activity,
                &stats.bytes_down,
                stats
            ),
        )?;
        Ok(Transferred {
            upstream,
            downstream,
        })
    };
    supervise(body, &activity, idle, stop).await
}

async fn direction(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    activity: &Activity,
    counter: &AtomicU64,
    stats: &Stats,
) -> io::Result<u64> {
    let mut small = vec![0u8; SPLICE_MIN];
    let mut bulk = false;
    let mut total = 0u64;
    loop {
        let n = if bulk {
            let n = splice_in(from, pipe).await?;
            if n > 0 {
                splice_out(pipe, to, n).await?;
                stats.bytes_spliced.fetch_add(n as u64, Ordering::Relaxed);
            }
            // A short read means the stream is not (or no longer) bulk.
            bulk = n >= SPLICE_MIN;
            n
        } else {
            let n = read(from, &mut small).await?;
            if n > 0 {
                write_all(to, &small[..n]).await?;
            }
            // A read that fills the small buffer means more is streaming: splice it.
            bulk = n == small.len();
            n
        };
        if n == 0 {
            // Source finished writing: pass the half-close on. The destination may already
            // be closed, which does not fail this direction.
            let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
            return Ok(total);
        }
        activity.touch();
        total += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Runs one non-blocking call on `sock` for `interest`, waiting for readiness as needed.
///
/// `call` returns the byte count; a count below `full` means the socket's queue is drained
/// (read) or full (write), so tokio is told WouldBlock to clear the readiness now instead of
/// after one more failing system call, and the count is kept. Tokio only clears readiness
/// that no newer epoll event has refreshed, so no wake-up is lost. `full` = 0 never takes
/// the shortcut, for calls whose short count says nothing about the socket.
async fn nonblocking(
    sock: &TcpStream,
    interest: Interest,
    full: usize,
    mut call: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        let mut done = None;
        let r = sock.try_io(interest, || {
            let n = call()?;
            done = Some(n);
            if n > 0 && n < full {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match (r, done) {
            (_, Some(n)) => return Ok(n),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => {
                if interest == Interest::READABLE {
                    sock.readable().await?;
                } else {
                    sock.writable().await?;
                }
            }
            (Err(e), None) => return Err(e),
            // Not produced: the closure sets `done` whenever it returns Ok.
            (Ok(()), None) => {}
        }
    }
}

async fn read(from: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let full = buf.len();
    nonblocking(from, Interest::READABLE, full, || {
        Ok(rustix::io::read(from, &mut *buf)?)
    })
    .await
}

async fn write_all(to: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let full = buf.len();
        let m = nonblocking(to, Interest::WRITABLE, full, || {
            Ok(rustix::io::write(to, buf)?)
        })
        .await?;
        if m == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[m..];
    }
    Ok(())
}

/// Fills the (empty) pipe from the socket.
///
/// A short count here does not mean the socket is drained: the pipe holds a
/// fixed number of page slots, and the socket's data may sit in fragments
/// that fill them before `pipe.size` bytes. Clearing readiness then could
/// wait forever for an edge that never comes (the peer blocked on a full
/// window), so only a real `WouldBlock` clears it (`full` = 0).
async fn splice_in(from: &TcpStream, pipe: &Pipe) -> io::Result<usize> {
    nonblocking(from, Interest::READABLE, 0, || {
        Ok(splice(from, None, &pipe.w, None, pipe.size, FLAGS)?)
    })
    .await
}

/// Drains `n` bytes from the pipe into the socket.
async fn splice_out(pipe: &Pipe, to: &TcpStream, mut n: usize) -> io::Result<()> {
    while n > 0 {
        let left = n;
        let m = nonblocking(to, Interest::WRITABLE, left, || {
            Ok(splice(&pipe.r, None, to, None, left, FLAGS)?)
        })
        .await?;
        if m == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        n -= m;
    }
    Ok(())
}
