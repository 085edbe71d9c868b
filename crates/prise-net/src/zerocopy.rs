//! The kernel-side data paths of `prise send` / `prise recv` over plain TCP
//! and Unix sockets: `sendfile(2)` from the file into the socket on the
//! sending side, `splice(2)` from the socket through a pipe into the file on
//! the receiving side. File pages never cross into user space on the way;
//! the hashing threads read them back from the page cache.
//!
//! No `unsafe` is needed: `rustix` wraps `sendfile`, `pipe2`, `splice` and
//! `F_SETPIPE_SZ` over borrowed file descriptors, and tokio's `try_io` ties
//! each non-blocking call to the socket's readiness (a `WouldBlock` clears
//! it, so the next wait goes to epoll), as the proxy's splice relay does.
//!
//! TLS streams have no such path: rustls needs the bytes in user space.
//! [`TransferStream::plain_socket`] says which streams qualify.

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::OwnedFd;
use std::os::fd::{AsFd, BorrowedFd};

use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::{TcpStream, UnixStream};

use crate::transport::BoxStream;

/// A byte stream a transfer runs over. Plain sockets also lend their
/// descriptor, so that file bytes can move inside the kernel.
pub trait TransferStream: AsyncRead + AsyncWrite + Unpin {
    /// The socket under this stream when the bytes on the wire are the
    /// file's bytes (plain TCP or Unix); `None` for anything that transforms
    /// them (TLS) or hides the socket (a boxed stream).
    fn plain_socket(&self) -> Option<PlainSocket<'_>> {
        None
    }
}

impl TransferStream for TcpStream {
    fn plain_socket(&self) -> Option<PlainSocket<'_>> {
        Some(PlainSocket::Tcp(self))
    }
}

impl TransferStream for UnixStream {
    fn plain_socket(&self) -> Option<PlainSocket<'_>> {
        Some(PlainSocket::Unix(self))
    }
}

impl TransferStream for BoxStream {}

impl<S: AsyncRead + AsyncWrite + Unpin> TransferStream for tokio_rustls::client::TlsStream<S> {}

impl<S: AsyncRead + AsyncWrite + Unpin> TransferStream for tokio_rustls::server::TlsStream<S> {}

impl TransferStream for tokio::io::DuplexStream {}

/// A plain socket borrowed from a [`TransferStream`].
#[derive(Debug, Clone, Copy)]
pub enum PlainSocket<'a> {
    /// A TCP stream.
    Tcp(&'a TcpStream),
    /// A Unix domain stream.
    Unix(&'a UnixStream),
}

impl AsFd for PlainSocket<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(s) => s.as_fd(),
            Self::Unix(s) => s.as_fd(),
        }
    }
}

impl PlainSocket<'_> {
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match self {
            Self::Tcp(s) => s.try_io(interest, f),
            Self::Unix(s) => s.try_io(interest, f),
        }
    }

    async fn ready(&self, interest: Interest) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.ready(interest).await.map(drop),
            Self::Unix(s) => s.ready(interest).await.map(drop),
        }
    }

    /// Runs one non-blocking call for `interest`, waiting for readiness as
    /// needed.
    ///
    /// Readiness is only cleared by a real `WouldBlock` from `call`. A short
    /// count is not taken as a sign that the socket is drained or full: a
    /// splice into a pipe can stop early (a pipe has a fixed number of buffer
    /// slots) while the socket still holds data, and once the sender waits
    /// for window space no new epoll event would come to wake a reader that
    /// cleared its readiness then.
    async fn nonblocking(
        &self,
        interest: Interest,
        mut call: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            match self.try_io(interest, &mut call) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready(interest).await?,
                r => return r,
            }
        }
    }
}

/// Most bytes handed to one `sendfile` call; the socket takes what fits.
#[cfg(target_os = "linux")]
const SENDFILE_MAX: usize = 4 << 20;

/// Sends bytes `[from, to)` of `file` into `sock` with `sendfile(2)`,
/// calling `sent` with each count.
///
/// # Errors
/// The socket failed, or the file ended before `to` (it shrank).
#[cfg(target_os = "linux")]
pub(crate) async fn send_range(
    sock: PlainSocket<'_>,
    file: &std::fs::File,
    mut from: u64,
    to: u64,
    mut sent: impl FnMut(u64),
) -> io::Result<()> {
    while from < to {
        let count = usize::try_from(to - from)
            .unwrap_or(usize::MAX)
            .min(SENDFILE_MAX);
        let n = sock
            .nonblocking(Interest::WRITABLE, || {
                Ok(rustix::fs::sendfile(sock, file, Some(&mut from), count)?)
            })
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
        sent(n as u64);
    }
    Ok(())
}

/// Size asked of the kernel for the receiving pipe (the unprivileged
/// default of `/proc/sys/fs/pipe-max-size`).
#[cfg(target_os = "linux")]
const PIPE_SIZE: usize = 1 << 20;

/// The pipe a receiver splices through: a read end and a write end.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

#[cfg(target_os = "linux")]
impl Pipe {
    /// Creates a non-blocking pipe of up to [`PIPE_SIZE`] bytes.
    ///
    /// # Errors
    /// `pipe2` failed (usually the file descriptor limit): the caller falls
    /// back to reading into buffers.
    pub(crate) fn new() -> io::Result<Self> {
        use rustix::pipe::{PipeFlags, fcntl_setpipe_size, pipe_with};
        let (r, w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // When the kernel refuses the size (limits on pipe memory), the
        // default pipe still works, with more calls per megabyte.
        let size = fcntl_setpipe_size(&w, PIPE_SIZE).unwrap_or(64 * 1024);
        Ok(Self { r, w, size })
    }
}

/// How a splice into a file ended.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) enum Spliced {
    /// Every byte asked for is in the file.
    All,
    /// The peer closed (or the socket failed) first; the bytes before are in
    /// the file.
    Short(Option<io::Error>),
}

/// Moves up to `len` bytes from `sock` into `file` at `pos` through `pipe`,
/// calling `written` with the file's new end after each step. Never reads
/// past `len`: what follows on the socket (the trailer) stays there.
///
/// # Errors
/// Writing the file failed; socket failures end the splice as
/// [`Spliced::Short`] instead, like an early close.
#[cfg(target_os = "linux")]
pub(crate) async fn splice_to_file(
    sock: PlainSocket<'_>,
    pipe: &Pipe,
    file: &std::fs::File,
    mut pos: u64,
    mut len: u64,
    mut written: impl FnMut(u64),
) -> io::Result<Spliced> {
    use rustix::pipe::{SpliceFlags, splice};
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    while len > 0 {
        let want = usize::try_from(len).unwrap_or(usize::MAX).min(pipe.size);
        let n = match sock
            .nonblocking(Interest::READABLE, || {
                Ok(splice(sock, None, &pipe.w, None, want, flags)?)
            })
            .await
        {
            Ok(0) => return Ok(Spliced::Short(None)),
            Ok(n) => n,
            Err(e) => return Ok(Spliced::Short(Some(e))),
        };
        // Drain the pipe completely before reading again, so it never holds
        // more than `pipe.size` bytes and the next fill cannot block on it.
        let mut left = n;
        while left > 0 {
            let m = splice(&pipe.r, None, file, Some(&mut pos), left, SpliceFlags::MOVE)?;
            if m == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= m;
        }
        len -= n as u64;
        written(pos);
    }
    Ok(Spliced::All)
}
