//! Client driver for the Autobahn|Testsuite fuzzing server: runs every case
//! against prise's WebSocket client with permessage-deflate offered.
//!
//! ```text
//! AUTOBAHN_URL=ws://127.0.0.1:9001 AUTOBAHN_AGENT=prise-client \
//!     cargo run --release -p prise-ws --example autobahn_client
//! ```
//!
//! It reads the case count from `/getCaseCount`, then for each case connects
//! to `/runCase?case=N&agent=AGENT` and echoes every text and binary message
//! until the connection ends, and finally asks for `/updateReports`.
//! `scripts/autobahn.sh` runs it through the shared harness.

use futures_util::{SinkExt, StreamExt};
use prise_ws::{ClientOptions, DeflateConfig, Message, WebSocket, WsConfig, WsError};
use tokio::net::TcpStream;

/// Autobahn sends messages of up to 16 MiB.
const MAX_MESSAGE: usize = 16 << 20;

fn config() -> WsConfig {
    WsConfig::capped(MAX_MESSAGE, Some(DeflateConfig::default()))
}

async fn open(url: &str) -> Result<WebSocket<TcpStream>, Box<dyn std::error::Error>> {
    let uri: http::Uri = url.parse()?;
    let authority = uri.authority().ok_or("url without host")?;
    let stream = TcpStream::connect(authority.as_str()).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = prise_ws::connect(stream, url, &ClientOptions::default(), config()).await?;
    Ok(ws)
}

/// Echoes data messages until the connection ends; the stack answers pings
/// and completes the close handshake as long as it is polled.
async fn echo(mut ws: WebSocket<TcpStream>) -> Result<(), WsError> {
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    ws.flush().await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("AUTOBAHN_URL").unwrap_or_else(|_| "ws://127.0.0.1:9001".into());
    let agent = std::env::var("AUTOBAHN_AGENT").unwrap_or_else(|_| "prise-client".into());

    let mut ws = open(&format!("{base}/getCaseCount")).await?;
    let count: u32 = match ws.next().await {
        Some(Ok(Message::Text(t))) => t.as_str().trim().parse()?,
        other => return Err(format!("no case count: {other:?}").into()),
    };
    drop(ws);
    eprintln!("running {count} cases as {agent}");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        match open(&url).await {
            Ok(ws) => {
                if let Err(e) = echo(ws).await {
                    eprintln!("case {case}: {e}");
                }
            }
            Err(e) => eprintln!("case {case}: connect failed: {e}"),
        }
    }

    let mut ws = open(&format!("{base}/updateReports?agent={agent}")).await?;
    let _ = ws.close(None).await;
    while ws.next().await.is_some() {}
    Ok(())
}
