//! A backend given by name whose address changes is followed without a reload.
//!
//! The test needs a resolver whose answer it controls: it runs itself again inside a user
//! and mount namespace (`unshare -rm`) where a file of its own is bind-mounted over
//! `/etc/hosts`, and rewrites that file while the proxy runs. Nothing outside the child's
//! namespace sees the change.
#![cfg(target_os = "linux")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use prise_proxy::{BackendConfig, CheckKind};

const CHILD: &str = "PRISE_PROXY_TEST_HOSTS";
const NAME: &str = "fleet-member.test";

#[test]
fn a_name_whose_address_changes_is_followed_without_a_reload() {
    if let Some(hosts) = std::env::var_os(CHILD) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(in_namespace(Path::new(&hosts)));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("unshare")
        .args([
            "-rm",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$1\" --exact \"$2\" --test-threads=1",
        ])
        .arg(&hosts)
        .arg(&exe)
        .arg("a_name_whose_address_changes_is_followed_without_a_reload")
        .env(CHILD, &hosts)
        .status()
        .expect("unshare (util-linux) runs");
    assert!(status.success(), "the test inside the namespace failed");
}

async fn in_namespace(hosts: &Path) {
    // Two backends on the same port at two loopback addresses; the name points at one.
    let old = TestBackend::start_on("127.0.0.2:0".parse().unwrap(), "old").await;
    let port = old.addr.port();
    let new_addr = SocketAddr::from(([127, 0, 0, 3], port));
    let new = TestBackend::start_on(new_addr, "new").await;
    let point = |ip: &str| std::fs::write(hosts, format!("127.0.0.1 localhost\n{ip} {NAME}\n"));
    // Written in place: the bind mount follows the file, not a replacement of it.
    point("127.0.0.2").unwrap();

    let mut cfg = config(&[]);
    cfg.listener().backends = vec![BackendConfig::parse(&format!("{NAME}:{port}")).unwrap()];
    cfg.check.kind = CheckKind::Tcp;
    cfg.check.interval = Duration::from_millis(50);
    cfg.check.rise = 2;
    cfg.resolve_interval = Some(Duration::from_millis(100));
    let p = spawn_proxy(cfg).await;
    for _ in 0..3 {
        assert_eq!(which_backend(p.addr).await, "old");
    }
    let mut held = LineClient::connect(p.addr).await;
    assert_eq!(held.reply("h").await.as_deref(), Some("old:h"));

    point("127.0.0.3").unwrap();
    // The new address joins once its checks pass; the old one drains and leaves when its
    // last connection ends.
    assert!(
        eventually(|| p.handle.backend(new_addr).is_some_and(|b| b.is_available())).await,
        "new address never joined"
    );
    for _ in 0..3 {
        assert_eq!(which_backend(p.addr).await, "new");
    }
    assert_eq!(held.reply("h2").await.as_deref(), Some("old:h2"));
    drop(held);
    assert!(eventually(|| p.handle.backend(old.addr).is_none()).await);
    assert_eq!(new.served(), 3);
    assert_eq!(
        p.handle
            .stats()
            .reloads
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
