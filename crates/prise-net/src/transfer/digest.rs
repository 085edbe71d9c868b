//! The hashing side of a transfer: the file id a sender announces, the
//! sender's hash of the whole file (memory-mapped), and the receiver's
//! threads that hash the part file from its start while its bytes are
//! written, with positioned reads (the file's offset is left to the data
//! path) into one bounded buffer.

use std::os::unix::fs::FileExt as _;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use prise_proto::transfer::{FILE_ID_LEN, HASH_LEN};

/// Buffer of a hashing thread that reads the file back.
const HASH_CHUNK: usize = 256 << 10;
/// Bytes taken from each end of the file for its id.
const ID_EDGE: u64 = 64 << 10;
/// BLAKE3 key-derivation context of the file id.
const ID_CONTEXT: &str = "prise 2026 transfer v2 file id";

/// The id [`send_file`](super::send_file) announces for `file` under `name`, which picks the
/// partial file a receiver resumes from: BLAKE3 in key-derivation mode
/// (context `"prise 2026 transfer v2 file id"`) over the name (length-prefixed), the size, the
/// modification time in nanoseconds since the epoch, and the first and last
/// 64 KiB, cut to [`FILE_ID_LEN`] bytes. Cheap to compute and not a proof of
/// the content: the trailer's hash is.
///
/// # Errors
/// The file's metadata or ends cannot be read.
pub fn file_id(file: &std::fs::File, name: &str) -> std::io::Result<[u8; FILE_ID_LEN]> {
    let meta = file.metadata()?;
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new_derive_key(ID_CONTEXT);
    h.update(&(name.len() as u64).to_be_bytes());
    h.update(name.as_bytes());
    h.update(&size.to_be_bytes());
    h.update(&mtime.to_be_bytes());
    let edge = ID_EDGE.min(size);
    // Fits: at most ID_EDGE.
    let mut buf = vec![0u8; edge as usize];
    file.read_exact_at(&mut buf, 0)?;
    h.update(&buf);
    file.read_exact_at(&mut buf, size - edge)?;
    h.update(&buf);
    let mut id = [0u8; FILE_ID_LEN];
    id.copy_from_slice(&h.finalize().as_bytes()[..FILE_ID_LEN]);
    Ok(id)
}

pub(super) fn shrank() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "file shrank while being sent",
    )
}

/// Hashes the file at `path`, which must hold `size` bytes, on the calling
/// thread. The file is memory-mapped (no copy out of the page cache, which
/// `sendfile` shares) when it is large enough for that to pay.
///
/// # Errors
/// The file cannot be read, or its length is no longer `size`.
pub(super) fn hash_file(path: &std::path::Path, size: u64) -> std::io::Result<[u8; HASH_LEN]> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap(path)?;
    if hasher.count() != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "file changed size while being sent ({size} then {} bytes)",
                hasher.count()
            ),
        ));
    }
    Ok(*hasher.finalize().as_bytes())
}

/// How far the part file is written: the receiving side moves it forward,
/// the hashing thread waits on it.
#[derive(Debug, Default)]
pub(super) struct Watermark {
    /// End of the written bytes, and whether writing is over.
    state: Mutex<(u64, bool)>,
    moved: Condvar,
}

impl Watermark {
    pub(super) fn new(end: u64) -> Self {
        Self {
            state: Mutex::new((end, false)),
            moved: Condvar::new(),
        }
    }

    pub(super) fn advance(&self, end: u64) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = end;
        self.moved.notify_one();
    }

    pub(super) fn finish(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.moved.notify_one();
    }

    pub(super) fn end(&self) -> u64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// Waits until the end moves past `pos` or writing is over; returns the end
    /// and whether writing is over.
    pub(super) fn wait_past(&self, pos: u64) -> (u64, bool) {
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let guard = self
            .moved
            .wait_while(guard, |(end, done)| *end <= pos && !*done)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// Ends the writing side of a [`Watermark`] however the receive ends.
pub(super) struct Finish<'a>(pub(super) &'a Watermark);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Hashes the part file from its start, following the [`Watermark`]: the
/// prefix already there at once, the new bytes as they are written. Reads
/// go to the page cache; one [`HASH_CHUNK`] buffer.
pub(super) fn hash_behind(
    file: &std::fs::File,
    mark: &Watermark,
) -> std::io::Result<blake3::Hasher> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut pos = 0u64;
    loop {
        let (end, done) = mark.wait_past(pos);
        while pos < end {
            let want = usize::try_from(end - pos).map_or(HASH_CHUNK, |l| l.min(HASH_CHUNK));
            let n = file.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "part file shrank while being written",
                ));
            }
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        if done {
            return Ok(hasher);
        }
    }
}

/// Hashes bytes `[0, prefix)` of the part file, then every chunk that
/// arrives on `chunks`, in order.
pub(super) fn hash_queue(
    file: &std::fs::File,
    prefix: u64,
    chunks: &std::sync::mpsc::Receiver<Bytes>,
) -> std::io::Result<blake3::Hasher> {
    let mark = Watermark::new(prefix);
    mark.finish();
    let mut hasher = hash_behind(file, &mark)?;
    while let Ok(chunk) = chunks.recv() {
        hasher.update(&chunk);
    }
    Ok(hasher)
}
