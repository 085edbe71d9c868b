//! The command's signal handling, in its own test binary because signals reach the whole
//! process: SIGHUP re-reads the TOML file without dropping connections, SIGTERM drains.
#![cfg(target_os = "linux")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use prise_proxy::ProxyArgs;
use rustix::process::{Signal, getpid, kill_process};
use tokio::signal::unix::{SignalKind, signal};

fn free_port() -> SocketAddr {
    // Bound and released at once: free now, and only this test uses it next.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn sighup_reloads_the_file_and_sigterm_drains() {
    // Catch both signals process-wide first, so a signal sent before the proxy installs its
    // own handlers cannot end the test process.
    let _hup = signal(SignalKind::hangup()).unwrap();
    let _term = signal(SignalKind::terminate()).unwrap();

    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let listen = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let write = |backend: SocketAddr| {
        std::fs::write(
            &file,
            format!(
                "listen = \"{listen}\"\nbackends = [\"{backend}\"]\n[check]\nkind = \"none\"\n"
            ),
        )
        .unwrap();
    };
    write(a.addr);
    let mut args = ProxyArgs::default();
    args.config = Some(file.clone());
    args.drain_timeout = Some("5s".into());
    let run = tokio::spawn(prise_proxy::run(args));

    // Wait (bounded) for the listener.
    let mut in_flight = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(s) = tokio::net::TcpStream::connect(listen).await {
                drop(s);
                break LineClient::connect(listen).await;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(in_flight.ask("1").await.as_deref(), Some("a:1"));

    write(b.addr);
    // Send SIGHUP until the new backend is in use (the first one may arrive before the
    // proxy has installed its handler).
    tokio::time::timeout(WAIT, async {
        loop {
            kill_process(getpid(), Signal::HUP).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            if which_backend(listen).await == "b" {
                break;
            }
        }
    })
    .await
    .expect("reload by SIGHUP");
    assert_eq!(in_flight.ask("2").await.as_deref(), Some("a:2"));

    kill_process(getpid(), Signal::TERM).unwrap();
    // Draining: the established connection still works, and the command returns once it
    // closes.
    assert_eq!(in_flight.ask("3").await.as_deref(), Some("a:3"));
    drop(in_flight);
    tokio::time::timeout(WAIT, run)
        .await
        .expect("drained")
        .unwrap()
        .unwrap();
}
