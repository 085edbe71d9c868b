//! File transfer over real loopback sockets: a large file verified over
//! TCP (sendfile and splice), Unix and TLS (buffered paths), a transfer cut
//! short and resumed, a stale resumed prefix and a corrupted transfer
//! detected, a version 1 header refused, and names that try to leave the
//! output directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use indicatif::ProgressBar;
use prise_net::NetError;
use prise_net::transfer::{TransferStream, file_id, receive_file, send_file};
use prise_proto::transfer::{Header, Resume, Trailer, TransferLimits, Verdict};
use prise_testkit::TestDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

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

/// A directory with `data.bin` of `len` bytes (see [`make_file`]) and an
/// empty `out`: (directory, source, out, the source's bytes).
fn source_and_out(len: usize) -> (TestDir, PathBuf, PathBuf, Vec<u8>) {
    let dir = TestDir::new();
    let src = dir.join("data.bin");
    let out = dir.mkdir("out");
    make_file(&src, len);
    let data = std::fs::read(&src).unwrap();
    (dir, src, out, data)
}

/// An encoded header for `name`: `size` bytes, file id `id`.
fn header(name: &str, size: u64, id: [u8; 16]) -> BytesMut {
    let mut buf = BytesMut::new();
    Header {
        name: name.into(),
        size,
        id,
    }
    .encode(&mut buf)
    .unwrap();
    buf
}

/// Appends `bytes` and a trailer with the hash of `hashed`.
fn push_body(buf: &mut BytesMut, bytes: &[u8], hashed: &[u8]) {
    buf.extend_from_slice(bytes);
    Trailer {
        hash: *blake3::hash(hashed).as_bytes(),
    }
    .encode(buf);
}

/// The receiver's answer to a header: where to resume.
async fn read_resume(c: &mut TcpStream) -> [u8; Resume::LEN] {
    let mut resume = [0u8; Resume::LEN];
    c.read_exact(&mut resume).await.unwrap();
    resume
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

/// Sends a file of `len` bytes from `c` to `s` and checks it arrived whole.
async fn round_trip<C, S>(c: C, s: S, len: usize)
where
    C: TransferStream + Send + 'static,
    S: TransferStream + Send + 'static,
{
    let dir = TestDir::new();
    let src = dir.join("big.bin");
    let out = dir.mkdir("out");
    make_file(&src, len);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_arrives_verified() {
    let (c, s) = pair().await;
    round_trip(c, s, 300 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_verified_over_a_unix_socket() {
    let (c, s) = UnixStream::pair().unwrap();
    round_trip(c, s, (5 << 20) + 12345).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_verified_over_tls() {
    use prise_net::tls::{ClientTlsArgs, ServerTlsArgs, client_config, server_config};
    let cert_dir = prise_testkit::TestDir::new();
    let mut server_args = ServerTlsArgs::default();
    server_args.self_signed = true;
    server_args.cert_out = cert_dir.path().join("server.pem");
    let server = server_config(&server_args).unwrap();
    let mut client_args = ClientTlsArgs::default();
    client_args.insecure = true;
    let client = client_config(&client_args, &[]).unwrap();
    let (c, s) = pair().await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let (c, s) = tokio::join!(
        tokio_rustls::TlsConnector::from(client).connect(name, c),
        tokio_rustls::TlsAcceptor::from(server).accept(s),
    );
    round_trip(c.unwrap(), s.unwrap(), (7 << 20) + 1).await;
}

#[tokio::test]
async fn an_empty_file_arrives_verified() {
    let (c, s) = pair().await;
    round_trip(c, s, 0).await;
}

/// Sends the header `send_file` would send for `src`, then `body` (which
/// may differ from the file) from where the receiver asks, then drops the
/// connection without a trailer.
async fn send_partial(mut c: TcpStream, src: &Path, name: &str, body: &[u8]) {
    let file = std::fs::File::open(src).unwrap();
    let size = file.metadata().unwrap().len();
    let buf = header(name, size, file_id(&file, name).unwrap());
    c.write_all(&buf).await.unwrap();
    read_resume(&mut c).await;
    c.write_all(body).await.unwrap();
    c.shutdown().await.unwrap();
}

type Receiving = tokio::task::JoinHandle<Result<prise_net::transfer::RecvReport, NetError>>;

/// A connection to a receiver (default limits) writing into `out`.
async fn to_receiver(out: &Path) -> (TcpStream, Receiving) {
    let (c, s) = pair().await;
    let out = out.to_owned();
    let recv = tokio::spawn(async move {
        receive_file(s, &out, &TransferLimits::default(), "sender", &hidden()).await
    });
    (c, recv)
}

#[tokio::test]
async fn an_interrupted_transfer_resumes_where_it_stopped() {
    let (_dir, src, out, data) = source_and_out(3 << 20);
    let cut = 1_234_567;

    // First attempt: the sender goes away after `cut` bytes.
    let (c, recv) = to_receiver(&out).await;
    send_partial(c, &src, "data.bin", &data[..cut]).await;
    let err = recv.await.unwrap().unwrap_err();
    assert!(matches!(err, NetError::Transfer(_)), "{err}");
    assert!(err.to_string().contains("incomplete"), "{err}");
    assert!(!out.join("data.bin").exists());

    // Second attempt: the receiver asks to resume at `cut`, hashes the
    // prefix it kept and the rest, and checks the trailer.
    let (c, recv) = to_receiver(&out).await;
    let sent = send_file(c, &src, "data.bin", "receiver", &hidden())
        .await
        .unwrap();
    let got = recv.await.unwrap().unwrap();
    assert_eq!(sent.resumed_from, cut as u64);
    assert_eq!(got.resumed_from, cut as u64);
    assert!(std::fs::read(out.join("data.bin")).unwrap() == data);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[tokio::test]
async fn a_complete_part_file_is_verified_by_the_trailer_alone() {
    let (_dir, src, out, data) = source_and_out(100_000);
    // Every byte arrived, then the connection dropped before the trailer.
    let (c, recv) = to_receiver(&out).await;
    send_partial(c, &src, "data.bin", &data).await;
    let err = recv.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("no trailer"), "{err}");
    // Sending again sends no file bytes, only the trailer.
    let (c, recv) = to_receiver(&out).await;
    let sent = send_file(c, &src, "data.bin", "receiver", &hidden())
        .await
        .unwrap();
    assert_eq!(sent.resumed_from, data.len() as u64);
    recv.await.unwrap().unwrap();
    assert!(std::fs::read(out.join("data.bin")).unwrap() == data);
}

#[tokio::test]
async fn a_stale_resumed_prefix_is_caught_by_the_hash() {
    let (_dir, src, out, data) = source_and_out(2 << 20);
    // A first attempt left a prefix under the file's id whose middle no
    // longer matches the file (changed in place, same size, time and ends).
    let mut stale = data[..1 << 20].to_vec();
    stale[300_000] ^= 0x80;
    let (c, recv) = to_receiver(&out).await;
    send_partial(c, &src, "data.bin", &stale).await;
    assert!(recv.await.unwrap().is_err());

    let (c, recv) = to_receiver(&out).await;
    let err = send_file(c, &src, "data.bin", "receiver", &hidden())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("HashMismatch"), "{err}");
    let err = recv.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("hash mismatch"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "part removed");

    // The next attempt starts from scratch and succeeds.
    let (c, recv) = to_receiver(&out).await;
    let sent = send_file(c, &src, "data.bin", "receiver", &hidden())
        .await
        .unwrap();
    assert_eq!(sent.resumed_from, 0);
    recv.await.unwrap().unwrap();
    assert!(std::fs::read(out.join("data.bin")).unwrap() == data);
}

async fn read_verdict(c: &mut TcpStream) -> Verdict {
    let mut verdict = BytesMut::new();
    while verdict.len() < Verdict::LEN {
        assert!(c.read_buf(&mut verdict).await.unwrap() > 0);
    }
    Verdict::decode(&mut verdict).unwrap().unwrap()
}

#[tokio::test]
async fn a_corrupted_transfer_is_detected_and_discarded() {
    let dir = TestDir::new();
    let out = dir.path().to_path_buf();
    let data = b"the right content, forty bytes in length".to_vec();
    let (mut c, recv) = to_receiver(&out).await;
    // Header, bytes with one bit flipped on the way, and the trailer with
    // the hash of the right bytes, all in one write: the receiver finds the
    // file bytes and the trailer in what it read with the header.
    let mut buf = header("x.txt", data.len() as u64, [1; 16]);
    let mut bad = data.clone();
    bad[7] ^= 0x01;
    push_body(&mut buf, &bad, &data);
    c.write_all(&buf).await.unwrap();
    assert_eq!(&read_resume(&mut c).await, b"PRSR\0\0\0\0\0\0\0\0");
    assert_eq!(read_verdict(&mut c).await, Verdict::HashMismatch);
    let err = recv.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("hash mismatch"), "{err}");
    assert_eq!(err.exit_code(), prise_net::error::exit_code::TRANSFER);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing kept");
}

#[tokio::test]
async fn a_corrupted_large_transfer_is_detected() {
    // The same over the spliced path: the flipped byte arrives well after
    // the header.
    let dir = TestDir::new();
    let out = dir.path().to_path_buf();
    let src = dir.join("src.bin");
    make_file(&src, 4 << 20);
    let data = std::fs::read(&src).unwrap();
    let (mut c, recv) = to_receiver(&out).await;
    c.write_all(&header("y.bin", data.len() as u64, [2; 16]))
        .await
        .unwrap();
    read_resume(&mut c).await;
    let mut bad = data.clone();
    bad[3_000_000] ^= 0x10;
    let mut tail = BytesMut::new();
    push_body(&mut tail, &bad, &data);
    c.write_all(&tail).await.unwrap();
    assert_eq!(read_verdict(&mut c).await, Verdict::HashMismatch);
    let err = recv.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("hash mismatch"), "{err}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "only the source"
    );
}

#[tokio::test]
async fn a_version_1_header_is_refused() {
    let dir = TestDir::new();
    let (mut c, recv) = to_receiver(dir.path()).await;
    // What prise sent before the hash moved to the trailer.
    let mut v1 = b"PRSF\x01\x00\x05a.txt\x00\x00\x00\x00\x00\x00\x00\x07".to_vec();
    v1.extend_from_slice(&[9; 32]);
    c.write_all(&v1).await.unwrap();
    assert_eq!(read_verdict(&mut c).await, Verdict::Refused);
    let err = recv.await.unwrap().unwrap_err();
    assert!(
        err.to_string().contains("unsupported transfer version 1"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_sender_told_refused_says_so() {
    let dir = TestDir::new();
    let src = dir.join("f.txt");
    std::fs::write(&src, b"hello").unwrap();
    let (c, mut s) = pair().await;
    let peer = tokio::spawn(async move {
        let mut header = [0u8; 4];
        s.read_exact(&mut header).await.unwrap();
        let mut v = BytesMut::new();
        Verdict::Refused.encode(&mut v);
        s.write_all(&v).await.unwrap();
    });
    let err = send_file(c, &src, "f.txt", "receiver", &hidden())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("receiver refused"), "{err}");
    peer.await.unwrap();
}

#[tokio::test]
async fn names_are_sanitised_and_sizes_capped() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let data = b"payload".to_vec();
    let (mut c, recv) = to_receiver(&out).await;
    c.write_all(&header("../../escape.txt", data.len() as u64, [3; 16]))
        .await
        .unwrap();
    read_resume(&mut c).await;
    let mut buf = BytesMut::new();
    push_body(&mut buf, &data, &data);
    c.write_all(&buf).await.unwrap();
    assert_eq!(read_verdict(&mut c).await, Verdict::Verified);
    let got = recv.await.unwrap().unwrap();
    assert_eq!(got.path, out.join("escape.txt"));
    assert!(!dir.join("escape.txt").exists());

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
    c.write_all(&header("big", 5, [0; 16])).await.unwrap();
    assert_eq!(read_verdict(&mut c).await, Verdict::Refused);
    assert!(recv.await.unwrap().is_err());
}
