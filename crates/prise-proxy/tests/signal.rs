//! The command's signal handling, in its own test binary because signals reach the whole
//! process: SIGHUP re-reads the TOML file without dropping connections, SIGTERM drains.
#![cfg(target_os = "linux")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use prise_proxy::ProxyArgs;
use prise_testkit::listener::free_tcp_addr;
use prise_testkit::{TestDir, wait_until_accepting};
use rustix::process::{Signal, getpid, kill_process};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::test]
async fn sighup_reloads_the_file_and_sigterm_drains() {
    // Catch both signals process-wide first, so a signal sent before the proxy installs its
    // own handlers cannot end the test process.
    let _hup = signal(SignalKind::hangup()).unwrap();
    let _term = signal(SignalKind::terminate()).unwrap();

    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    // Free now, and only this test uses it next.
    let listen = free_tcp_addr();
    let dir = TestDir::new();
    let file = dir.join("proxy.toml");
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
    wait_until_accepting(listen).await;
    let mut in_flight = LineClient::connect(listen).await;
    assert_eq!(in_flight.reply("1").await.as_deref(), Some("a:1"));

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
    assert_eq!(in_flight.reply("2").await.as_deref(), Some("a:2"));

    kill_process(getpid(), Signal::TERM).unwrap();
    // Draining: the established connection still works, and the command returns once it
    // closes.
    assert_eq!(in_flight.reply("3").await.as_deref(), Some("a:3"));
    drop(in_flight);
    tokio::time::timeout(WAIT, run)
        .await
        .expect("drained")
        .unwrap()
        .unwrap();
}
