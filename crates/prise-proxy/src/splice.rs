//! The zero-copy data path on Linux: `splice(2)` from one socket into a pipe and from the
//! pipe into the other socket, so payload pages move inside the kernel and never cross into
//! user space.
//!
//! No `unsafe` is needed: `rustix` wraps `pipe2`, `splice` and `F_SETPIPE_SZ` safely over
//! borrowed file descriptors, and tokio's `try_io` ties each non-blocking call to the
//! socket's readiness (a `WouldBlock` clears it, so the next `readable()`/`writable()` waits
//! for epoll).
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
            direction(client, backend, &pipes.up, &activity, &stats.bytes_up),
            direction(backend, client, &pipes.down, &activity, &stats.bytes_down),
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
) -> io::Result<u64> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let mut total = 0u64;
    loop {
        // Fill the (empty) pipe from the source socket.
        let n = loop {
            // A short splice means the socket's receive queue is empty: report WouldBlock to
            // tokio so it clears the readiness now instead of after one more (failing)
            // system call, and keep the count. Tokio only clears readiness that no newer
            // epoll event has refreshed, so no wake-up is lost.
            let mut got = None;
            let r = from.try_io(Interest::READABLE, || {
                let n = splice(from, None, &pipe.w, None, pipe.size, flags)?;
                got = Some(n);
                if n > 0 && n < pipe.size {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            });
            match (r, got) {
                (_, Some(n)) => break n,
                (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => {
                    from.readable().await?;
                }
                (Err(e), None) => return Err(e),
                // Not produced: the closure sets `got` whenever it returns Ok.
                (Ok(()), None) => {}
            }
        };
        if n == 0 {
            // Source finished writing: pass the half-close on. The destination may already
            // be closed, which does not fail this direction.
            let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
            return Ok(total);
        }
        // Drain the pipe into the destination socket.
        let mut left = n;
        while left > 0 {
            // Likewise, a short write means the send buffer is full.
            let mut put = None;
            let r = to.try_io(Interest::WRITABLE, || {
                let m = splice(&pipe.r, None, to, None, left, flags)?;
                put = Some(m);
                if m > 0 && m < left {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            });
            match (r, put) {
                (_, Some(0)) => return Err(io::ErrorKind::WriteZero.into()),
                (_, Some(m)) => left -= m,
                (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                (Err(e), None) => return Err(e),
                // Not produced: the closure sets `put` whenever it returns Ok.
                (Ok(()), None) => {}
            }
        }
        activity.touch();
        total += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
