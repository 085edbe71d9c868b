//! Echo servers with many real clients at once, socket options seen from
//! the peer, and retries against a listener that appears later.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prise_net::backoff::{Backoff, BackoffConfig};
use prise_net::connect::connect_with_retry;
use prise_net::echo::{EchoConfig, serve};
use prise_net::relay::Events;
use prise_net::transport::{Conn, ConnectOptions, Listener, SocketArgs, connect};
use prise_net::{Endpoint, NetError};
use prise_ws::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const BOUND: Duration = Duration::from_secs(20);

/// Starts an echo server on `url` (port 0) and returns its endpoint.
async fn spawn_echo(
    url: &str,
    shutdown: &CancellationToken,
) -> (Endpoint, tokio::task::JoinHandle<()>) {
    spawn_echo_with(url, prise_ws::WsConfig::default(), shutdown).await
}

/// [`spawn_echo`] with a WebSocket configuration.
async fn spawn_echo_with(
    url: &str,
    ws: prise_ws::WsConfig,
    shutdown: &CancellationToken,
) -> (Endpoint, tokio::task::JoinHandle<()>) {
    let mut ep: Endpoint = url.parse().unwrap();
    let listener = Listener::bind(&ep, None, SocketArgs::default(), ws)
        .await
        .unwrap();
    if let Some(addr) = listener.local_addr() {
        ep.port = addr.port();
    }
    let shutdown = shutdown.clone();
    let mut config = EchoConfig::default();
    config.max_conns = 64;
    let task = tokio::spawn(async move { serve(listener, config, shutdown).await.unwrap() });
    (ep, task)
}

/// `n` clients of `ep`, each connected with `opts` and run as
/// `client(i, conn)` on a task of its own.
fn clients<F, Fut>(
    ep: &Endpoint,
    opts: &ConnectOptions,
    n: usize,
    client: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn(usize, Conn) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    (0..n)
        .map(|i| {
            let (ep, opts, client) = (ep.clone(), opts.clone(), client.clone());
            tokio::spawn(async move {
                let conn = connect(&ep, &opts).await.unwrap();
                client(i, conn).await
            })
        })
        .collect()
}

/// Waits (bounded) for every client, then stops the server and waits for it.
async fn join_then_stop(
    clients: Vec<tokio::task::JoinHandle<()>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
) {
    for c in clients {
        tokio::time::timeout(BOUND, c).await.unwrap().unwrap();
    }
    shutdown.cancel();
    tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
}

/// Sends a close with code 1000 and checks that the server answers with one.
async fn close_normally(ws: &mut prise_net::transport::WebSocket) {
    ws.send(prise_ws::close_message(1000, "bye")).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_echo_serves_many_clients_at_once() {
    let shutdown = CancellationToken::new();
    let (ep, task) = spawn_echo("tcp://127.0.0.1:0", &shutdown).await;
    let clients = clients(&ep, &ConnectOptions::default(), 50, |i, conn| async move {
        let Conn::Stream(s) = conn else {
            panic!("not a stream");
        };
        // 256 KiB each way: more than socket buffers hold, so the echo
        // must read and write concurrently.
        let msg: Vec<u8> = (0..256 * 1024).map(|j| ((i + j) % 251) as u8).collect();
        let (mut r, mut w) = tokio::io::split(s);
        let expected = msg.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&msg).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        writer.await.unwrap();
        assert!(back == expected, "client {i} got other bytes");
    });
    join_then_stop(clients, shutdown, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_echo_serves_many_clients_and_closes_cleanly() {
    let shutdown = CancellationToken::new();
    let (ep, task) = spawn_echo("ws://127.0.0.1:0", &shutdown).await;
    let clients = clients(&ep, &ConnectOptions::default(), 20, |i, conn| async move {
        let Conn::Ws(mut ws, _) = conn else {
            panic!("not a websocket");
        };
        for k in 0..10 {
            let text = format!("client {i} message {k}");
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
        }
        let big = vec![i as u8; 200_000];
        ws.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
        close_normally(&mut ws).await;
        // The server answered the close; then the stream ends.
        assert!(ws.next().await.is_none());
    });
    join_then_stop(clients, shutdown, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_echo_with_deflate_compresses_both_ways() {
    let deflate = prise_ws::WsConfig::default().with_deflate(prise_ws::DeflateConfig::default());
    let shutdown = CancellationToken::new();
    let (ep, task) = spawn_echo_with("ws://127.0.0.1:0", deflate, &shutdown).await;
    let mut opts = ConnectOptions::default();
    opts.ws_config = deflate;
    let clients = clients(&ep, &opts, 8, |i, conn| async move {
        let Conn::Ws(mut ws, _) = conn else {
            panic!("not a websocket");
        };
        assert!(ws.get_ref().is_deflate());
        // Compressible text, then bytes that do not compress.
        let text = format!("client {i} ").repeat(10_000);
        let noise: Vec<u8> = (0..200_000u32)
            .map(|j| (j.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for _ in 0..3 {
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::text(text.clone())
            );
            ws.send(Message::binary(noise.clone())).await.unwrap();
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::binary(noise.clone())
            );
        }
        close_normally(&mut ws).await;
    });
    join_then_stop(clients, shutdown, task).await;
}

#[tokio::test]
async fn udp_and_unix_echo() {
    let shutdown = CancellationToken::new();
    let (ep, udp_task) = spawn_echo("udp://127.0.0.1:0", &shutdown).await;
    let Conn::Udp(sock) = connect(&ep, &ConnectOptions::default()).await.unwrap() else {
        panic!("not udp");
    };
    let mut buf = [0u8; 64];
    for msg in [&b"first"[..], b"second"] {
        sock.send(msg).await.unwrap();
        let n = tokio::time::timeout(BOUND, sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], msg);
    }

    let dir = prise_testkit::TestDir::new();
    let url = format!("unix:{}", dir.join("echo.sock").display());
    let (ep, unix_task) = spawn_echo(&url, &shutdown).await;
    let Conn::Stream(mut s) = connect(&ep, &ConnectOptions::default()).await.unwrap() else {
        panic!("not a stream");
    };
    s.write_all(b"over unix").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = String::new();
    s.read_to_string(&mut back).await.unwrap();
    assert_eq!(back, "over unix");
    shutdown.cancel();
    udp_task.await.unwrap();
    unix_task.await.unwrap();
}

#[tokio::test]
async fn linger0_closes_with_a_reset() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ep: Endpoint = format!("tcp://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let mut opts = ConnectOptions::default();
    opts.socket.linger0 = true;
    opts.socket.nodelay = true;
    opts.socket.keepalive = Some(prise_net::transport::Keepalive {
        idle: Duration::from_secs(30),
        interval: Some(Duration::from_secs(5)),
        count: Some(3),
    });
    let (conn, accepted) = tokio::join!(connect(&ep, &opts), listener.accept());
    let (mut server_side, _) = accepted.unwrap();
    drop(conn.unwrap());
    let mut buf = [0u8; 8];
    let err = server_side.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(
        NetError::from_io(err, "peer").exit_code(),
        prise_net::error::exit_code::RESET
    );
}

#[tokio::test(start_paused = true)]
async fn retries_wait_with_backoff_until_the_listener_appears() {
    // Reserve a port, then free it so that connecting is refused.
    let port = prise_testkit::free_tcp_port();
    let ep: Endpoint = format!("tcp://127.0.0.1:{port}").parse().unwrap();
    let mut config = BackoffConfig::default();
    config.base = Duration::from_millis(100);
    config.cap = Duration::from_secs(1);
    config.max_retries = None;
    let events = Events::new(false, false);
    let start = tokio::time::Instant::now();
    let client = async {
        connect_with_retry(
            &ep,
            &ConnectOptions::default(),
            Backoff::new(config, StdRng::seed_from_u64(3)),
            &events,
        )
        .await
    };
    // The listener appears after 3 s of (paused, virtual) time.
    let server = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        l.accept().await.unwrap()
    };
    let (conn, _) = tokio::join!(client, server);
    assert!(matches!(conn.unwrap(), Conn::Stream(_)));
    // It connected after the listener appeared, within one capped delay.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited <= Duration::from_secs(4),
        "{waited:?}"
    );
}
