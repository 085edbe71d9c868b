//! Whole-stream exchanges on any byte stream, bounded by [`WAIT`].

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::WAIT;

/// Reads `s` to its end.
///
/// # Panics
/// When the read fails or the end does not come within [`WAIT`].
pub async fn read_to_end<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut all))
        .await
        .expect("the end of the stream in time")
        .expect("read to the end");
    all
}

/// Writes `data`, shuts the write side down (a half-close) and reads the
/// answer to its end.
///
/// # Panics
/// When a write or the read fails, or the end does not come within [`WAIT`].
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> Vec<u8> {
    s.write_all(data).await.expect("write");
    s.shutdown().await.expect("half-close");
    read_to_end(s).await
}
