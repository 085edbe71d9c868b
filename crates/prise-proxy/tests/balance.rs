//! Balancing and health: real backends on loopback behind a real proxy.

mod common;

use std::time::{Duration, Instant};

use common::*;
use prise_proxy::{Balance, CheckKind};

#[tokio::test]
async fn round_robin_spreads_exactly() {
    let backends = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let p = spawn_proxy(config(&addrs)).await;
    let mut order = Vec::new();
    for _ in 0..30 {
        order.push(which_backend(p.addr).await);
    }
    for (i, name) in order.iter().enumerate() {
        assert_eq!(name, ["a", "b", "c"][i % 3], "order {order:?}");
    }
    for b in &backends {
        assert_eq!(b.served(), 10);
    }
}

#[tokio::test]
async fn least_connections_prefers_the_idle_backend() {
    let (a, b, mut cfg) = two_backends("a", "b").await;
    cfg.listener().balance = Balance::LeastConn;
    let p = spawn_proxy(cfg).await;

    // One long-lived connection makes its backend busy: every short connection opened
    // and closed meanwhile goes to the other one.
    let mut long = LineClient::connect(p.addr).await;
    let busy = long.reply("hold").await.unwrap();
    let busy = busy.split(':').next().unwrap().to_owned();
    let busy_addr = if busy == "a" { a.addr } else { b.addr };
    for _ in 0..6 {
        assert_ne!(which_backend(p.addr).await, busy);
        // The short connection is closed; wait until the proxy has seen it close, so the
        // next choice sees 1 open connection on the busy backend and 0 on the idle one.
        let idle_backend = p
            .handle
            .backends()
            .into_iter()
            .find(|x| x.addr() != busy_addr)
            .unwrap();
        assert!(
            eventually(|| idle_backend.active() == 0).await,
            "close not seen by the proxy"
        );
    }

    // With all connections held, each new one goes to the backend with fewer.
    let mut held = vec![long];
    for _ in 0..8 {
        let (na, nb) = (
            p.handle.backend(a.addr).unwrap().active(),
            p.handle.backend(b.addr).unwrap().active(),
        );
        let mut c = LineClient::connect(p.addr).await;
        let name = c.reply("x").await.unwrap();
        if na < nb {
            assert!(name.starts_with("a:"), "{na} vs {nb}: {name}");
        } else if nb < na {
            assert!(name.starts_with("b:"), "{na} vs {nb}: {name}");
        }
        held.push(c);
    }
    let (na, nb) = (
        p.handle.backend(a.addr).unwrap().active(),
        p.handle.backend(b.addr).unwrap().active(),
    );
    assert_eq!(na + nb, 9);
    assert!(na.abs_diff(nb) <= 1, "{na} vs {nb}");
}

#[tokio::test]
async fn killed_backend_goes_down_within_fall_intervals_and_comes_back_after_rise() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let interval = Duration::from_millis(100);
    let mut cfg = config(&[a.addr, b.addr]);
    cfg.check.kind = CheckKind::Tcp;
    cfg.check.interval = interval;
    cfg.check.timeout = interval;
    cfg.check.rise = 2;
    cfg.check.fall = 3;
    let p = spawn_proxy(cfg).await;
    let backend_a = p.handle.backend(a.addr).unwrap();
    let mut state = backend_a.subscribe();
    assert!(backend_a.is_up());

    let a_addr = a.kill().await;
    let killed = Instant::now();
    // fall × interval, plus one interval of phase and a margin for a loaded machine.
    let bound = interval * 3 + interval + Duration::from_secs(1);
    assert!(
        wait_state(&mut state, false, WAIT).await,
        "never marked down"
    );
    let took = killed.elapsed();
    assert!(took <= bound, "marked down after {took:?}, bound {bound:?}");

    // Down: every new connection goes to b, and none fails.
    let before = b.served();
    for _ in 0..8 {
        assert_eq!(which_backend(p.addr).await, "b");
    }
    assert_eq!(b.served(), before + 8);
    let failures = count(&p.handle.stats().connect_failures);

    // Back on the same address: up again after `rise` good checks.
    let back = Instant::now();
    let a = TestBackend::start_on(a_addr, "a").await;
    assert!(wait_state(&mut state, true, WAIT).await, "never came back");
    assert!(back.elapsed() >= interval, "came back before two checks");
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(which_backend(p.addr).await);
    }
    names.sort();
    assert_eq!(names, ["a", "a", "b", "b"]);
    assert_eq!(a.served(), 2);
    // While it was down no client connection was even attempted on it.
    assert_eq!(count(&p.handle.stats().connect_failures), failures);
}

#[tokio::test]
async fn failed_connects_retry_elsewhere_and_mark_the_backend_down() {
    let (a, _b, mut cfg) = two_backends("a", "b").await;
    // Active checks run once at start and then rarely: only passive marking can act.
    cfg.check.kind = CheckKind::Tcp;
    cfg.check.interval = Duration::from_secs(3600);
    cfg.check.fall = 2;
    let p = spawn_proxy(cfg).await;
    let backend_a = p.handle.backend(a.addr).unwrap();
    let mut state = backend_a.subscribe();
    a.kill().await;
    for _ in 0..6 {
        assert_eq!(which_backend(p.addr).await, "b");
    }
    assert!(wait_state(&mut state, false, WAIT).await);
    // At most `fall` failed connects (the start-up check may have counted one), and none
    // once it is down.
    let failures = || count(&p.handle.stats().connect_failures);
    let after_down = failures();
    assert!((1..=2).contains(&after_down), "{after_down}");
    for _ in 0..4 {
        assert_eq!(which_backend(p.addr).await, "b");
    }
    assert_eq!(failures(), after_down);
}

#[tokio::test]
async fn expect_check_takes_a_wrong_answer_down_and_it_gets_no_connection() {
    // Both backends accept connections; only `good` answers the check as expected.
    let (good, bad, mut cfg) = two_backends("good", "bad").await;
    cfg.check.kind = CheckKind::Expect;
    cfg.check.send = b"PING\n".to_vec();
    cfg.check.expect = b"good:PING".to_vec();
    cfg.check.interval = Duration::from_millis(50);
    cfg.check.timeout = Duration::from_millis(500);
    cfg.check.fall = 2;
    let p = spawn_proxy(cfg).await;
    let mut state = p.handle.backend(bad.addr).unwrap().subscribe();
    assert!(wait_state(&mut state, false, WAIT).await);
    for _ in 0..6 {
        assert_eq!(which_backend(p.addr).await, "good");
    }
    // (The backend's own count includes the checks; the proxy's counts client connections.)
    let bad_status = p.handle.backend(bad.addr).unwrap().status();
    assert_eq!(bad_status.connections, 0, "a down backend got a connection");
    assert!(p.handle.backend(good.addr).unwrap().is_up());
}

#[tokio::test]
async fn no_healthy_backend_closes_the_client() {
    let (a, mut cfg) = one_backend("a").await;
    cfg.retries = 1;
    let p = spawn_proxy(cfg).await;
    a.kill().await;
    let mut c = LineClient::connect(p.addr).await;
    assert!(c.closed().await);
    assert_eq!(count(&p.handle.stats().no_backend), 1);
}
