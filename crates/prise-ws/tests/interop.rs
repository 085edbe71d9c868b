//! permessage-deflate against an independent peer: a client written with
//! Python's standard library (`socket`, `zlib`), in `zlib_peer.py`.

use futures_util::{SinkExt, StreamExt};
use prise_ws::{DeflateConfig, WsConfig};
use tokio::net::TcpListener;

#[tokio::test]
async fn python_zlib_client_round_trips_compressed_messages() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let config = WsConfig::default().with_deflate(DeflateConfig::default());
        let mut ws = prise_ws::accept(stream, config).await.unwrap();
        assert!(ws.get_ref().is_deflate());
        let mut echoed = 0;
        while let Some(m) = ws.next().await {
            let m = m.unwrap();
            if m.is_text() || m.is_binary() {
                ws.send(m).await.unwrap();
                echoed += 1;
            }
        }
        echoed
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zlib_peer.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    assert_eq!(server.await.unwrap(), 5);
}
