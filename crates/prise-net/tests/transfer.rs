//! File transfer over real loopback sockets: a large file verified, a
//! transfer cut short and resumed, a corrupted one detected, and names that
//! try to leave the output directory.

use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use indicatif::ProgressBar;
use prise_net::NetError;
use prise_net::transfer::{receive_file, send_file};
use prise_proto::transfer::{Header, Resume, TransferLimits, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(60);

/// Writes a file of `len` bytes: a pseudo-random 1 MiB block (xorshift),
/// repeated with each copy stamped by its index, so no two blocks are equal.
fn make_file(path: &Path, len: usize) {
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    let mut data = Vec::with_capacity(len);
    let mut i = 0u64;
    while data.len() < len {
        block[..8].copy_from_slice(&i.to_le_bytes());
        let take = block.len().min(len - data.len());
        data.extend_from_slice(&block[..take]);
        i += 1;
    }
    std::fs::write(path, data).unwrap();
}

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    (c.unwrap(), s.unwrap().0)
}

fn hidden() -> ProgressBar {
    ProgressBar::hidden()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_arrives_verified() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let len = 300 << 20;
    make_file(&src, len);
    let (c, s) = pair().await;
    let recv = tokio::spawn({
        let out = out.clone();
        async move { receive_file(s, &out, &TransferLimits::default(), "sender", &hidden()).await }
    });
    let sent = tokio::time::timeout(BOUND, send_file(c, &src, "big.bin", "receiver", &hidden()))
        .await
        .unwrap()
        .unwrap();
    let got = recv.await.unwrap().unwrap();
    assert_eq!((sent.size, sent.resumed_from), (len as u64, 0));
    assert_eq!(got.path, out.join("big.bin"));
    let (a, b) = (
        std::fs::read(&src).unwrap(),
        std::fs::read(&got.path).unwrap(),
    );
    assert!(a == b, "content differs");
    // No partial file left behind.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

/// Sends a header and only the first `cut` bytes, then drops the connection.
async fn send_partial(mut c: TcpStream, data: &[u8], name: &str, cut: usize) {
    let mut buf = BytesMut::new();
    Header {
        name: name.into(),
        size: data.len() as u64,
        hash: *blake3::hash(data).as_bytes(),
    }
    .encode(&mut buf)
    .unwrap();
    c.write_all(&buf).await.unwrap();
    let mut resume = [0u8; Resume::LEN];
    c.read_exact(&mut resume).await.unwrap();
    c.write_all(&data[..cut]).await.unwrap();
    c.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_interrupted_transfer_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("data.bin");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    make_file(&src, 3 << 20);
    let data = std::fs::read(&src).unwrap();
    let cut = 1_234_567;

    // First attempt: the sender goes away after `cut` bytes.
    let (c, s) = pair().await;
    let recv = tokio::spawn({
        let out = out.clone();
        async move { receive_file(s, &out, &TransferLimits::default(), "sender", &hidden()).await }
    });
    send_partial(c, &data, "data.bin", cut).await;
    let err = recv.await.unwrap().unwrap_err();
    assert!(matches!(err, NetError::Transfer(_)), "{err}");
    assert!(err.to_string().contains("incomplete"), "{err}");
    assert!(!out.join("data.bin").exists());

    // Second attempt: the receiver asks to resume at `cut`.
    let (c, s) = pair().await;
    let recv = tokio::spawn({
        let out = out.clone();
        async move { receive_file(s, &out, &TransferLimits::default(), "sender", &hidden()).await }
    });
    let sent = send_file(c, &src, "data.bin", "receiver", &hidden())
        .await
        .unwrap();
    let got = recv.await.unwrap().unwrap();
    assert_eq!(sent.resumed_from, cut as u64);
    assert_eq!(got.resumed_from, cut as u64);
    assert!(std::fs::read(out.join("data.bin")).unwrap() == data);
}

#[tokio::test]
async fn a_corrupted_transfer_is_detected_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_path_buf();
    let data = b"the right content, forty bytes in length".to_vec();
    let (mut c, s) = pair().await;
    let recv = tokio::spawn({
        let out = out.clone();
        async move { receive_file(s, &out, &TransferLimits::default(), "sender", &hidden()).await }
    });
    let mut buf = BytesMut::new();
    Header {
        name: "x.txt".into(),
        size: data.len() as u64,
        hash: *blake3::hash(&data).as_bytes(),
    }
    .encode(&mut buf)
    .unwrap();
    c.write_all(&buf).await.unwrap();
    let mut resume = [0u8; Resume::LEN];
    c.read_exact(&mut resume).await.unwrap();
    // One bit flipped on the way.
    let mut bad = data.clone();
    bad[7] ^= 0x01;
    c.write_all(&bad).await.unwrap();
    let mut verdict = BytesMut::new();
    while verdict.len() < Verdict::LEN {
        assert!(c.read_buf(&mut verdict).await.unwrap() > 0);
    }
    assert_eq!(
        Verdict::decode(&mut verdict).unwrap(),
        Some(Verdict::HashMismatch)
    );
    let err = recv.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("hash mismatch"), "{err}");
    assert_eq!(err.exit_code(), prise_net::error::exit_code::TRANSFER);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing kept");
}

#[tokio::test]
async fn names_are_sanitised_and_sizes_capped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let data = b"payload".to_vec();
    let (mut c, s) = pair().await;
    let recv = tokio::spawn({
        let out = out.clone();
        async move { receive_file(s, &out, &TransferLimits::default(), "sender", &hidden()).await }
    });
    let mut buf = BytesMut::new();
    Header {
        name: "../../escape.txt".into(),
        size: data.len() as u64,
        hash: *blake3::hash(&data).as_bytes(),
    }
    .encode(&mut buf)
    .unwrap();
    c.write_all(&buf).await.unwrap();
    let mut resume = [0u8; Resume::LEN];
    c.read_exact(&mut resume).await.unwrap();
    c.write_all(&data).await.unwrap();
    let got = recv.await.unwrap().unwrap();
    assert_eq!(got.path, out.join("escape.txt"));
    assert!(!dir.path().join("escape.txt").exists());

    // A size over the receiver's cap is refused before any data.
    let (mut c, s) = pair().await;
    let recv = tokio::spawn({
        let out = out.clone();
        async move {
            receive_file(
                s,
                &out,
                &TransferLimits { max_file_size: 4 },
                "sender",
                &hidden(),
            )
            .await
        }
    });
    let mut buf = BytesMut::new();
    Header {
        name: "big".into(),
        size: 5,
        hash: [0; 32],
    }
    .encode(&mut buf)
    .unwrap();
    c.write_all(&buf).await.unwrap();
    let mut verdict = BytesMut::new();
    while verdict.len() < Verdict::LEN {
        assert!(c.read_buf(&mut verdict).await.unwrap() > 0);
    }
    assert_eq!(
        Verdict::decode(&mut verdict).unwrap(),
        Some(Verdict::Refused)
    );
    assert!(recv.await.unwrap().is_err());
}
