//! Backends given by name are resolved again every `--resolve-interval`, so a fleet whose
//! addresses change (containers, DNS-based service discovery) is followed without a reload.
//!
//! A new address joins its pool as a new backend with the name's settings; with active
//! checks on it starts down and takes connections once its checks pass. An address that is
//! no longer returned is drained and then removed (its established connections go on until
//! they end or the drain timeout). A failed or empty resolution changes nothing: a resolver
//! outage must not empty the pool.
//!
//! One task per configuration generation does every name in turn, through the system
//! resolver (`getaddrinfo`, on tokio's blocking pool), each lookup bounded in time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::backend::AdminState;
use crate::config::{BackendConfig, same_family};
use crate::server::{ProxyHandle, State, start_checks};

/// Longest time one lookup may take.
const MAX_LOOKUP_TIME: Duration = Duration::from_secs(5);

/// Starts the resolver of `state`'s generation, if a backend is given by name and
/// re-resolution is on. It ends when the generation is replaced or the proxy ends.
pub(crate) fn spawn(handle: ProxyHandle, state: Arc<State>) {
    let Some(every) = state.config.resolve_interval else {
        return;
    };
    let named: Vec<(usize, BackendConfig)> = state
        .config
        .listeners
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            l.backends
                .iter()
                .filter(|b| !b.is_literal())
                .map(move |b| (i, b.clone()))
        })
        .collect();
    if named.is_empty() {
        return;
    }
    let cancel = state.checks.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate: the names were resolved at load.
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (index, bc) in &named {
                let found = tokio::select! {
                    () = cancel.cancelled() => return,
                    r = lookup(&bc.name, every.min(MAX_LOOKUP_TIME)) => r,
                };
                match found {
                    Ok(addrs) if !addrs.is_empty() => apply(&handle, &state, *index, bc, &addrs),
                    Ok(_) => tracing::warn!(name = %bc.name, "name resolved to nothing; kept"),
                    Err(e) => {
                        tracing::warn!(name = %bc.name, error = %e, "cannot resolve; kept");
                    }
                }
            }
        }
    });
}

async fn lookup(name: &str, bound: Duration) -> io::Result<Vec<SocketAddr>> {
    let all: Vec<SocketAddr> = tokio::time::timeout(bound, tokio::net::lookup_host(name))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??
        .collect();
    Ok(match all.first() {
        Some(first) => same_family(first.ip(), all.clone()),
        None => Vec::new(),
    })
}

/// Brings pool `index`'s backends of name `bc` in line with `resolved`.
fn apply(
    handle: &ProxyHandle,
    state: &State,
    index: usize,
    bc: &BackendConfig,
    resolved: &[SocketAddr],
) {
    let pool = &state.pools[index];
    let current: Vec<_> = pool
        .backends()
        .into_iter()
        .filter(|b| b.name() == bc.name && b.admin_state() != AdminState::Removing)
        .collect();
    let addrs: Vec<SocketAddr> = current.iter().map(|b| b.addr()).collect();
    let (added, vanished) = diff(&addrs, resolved);
    for addr in added {
        let b = handle.shared.new_backend(state, bc, addr);
        match pool.join(Arc::clone(&b)) {
            Ok(()) => {
                start_checks(state, &b);
                tracing::info!(name = %bc.name, backend = %addr, id = %b.id(), "address joined");
            }
            Err(e) => tracing::warn!(name = %bc.name, backend = %addr, error = %e, "not added"),
        }
    }
    for addr in vanished {
        if let Some(b) = current.iter().find(|b| b.addr() == addr) {
            tracing::info!(name = %bc.name, backend = %addr, "address vanished; draining");
            handle.start_drain(Arc::clone(pool), b, AdminState::Removing);
        }
    }
}

/// The addresses of `resolved` not in `current`, and those of `current` not in `resolved`.
fn diff(current: &[SocketAddr], resolved: &[SocketAddr]) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let added = resolved
        .iter()
        .filter(|a| !current.contains(a))
        .copied()
        .collect();
    let vanished = current
        .iter()
        .filter(|a| !resolved.contains(a))
        .copied()
        .collect();
    (added, vanished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_new_and_vanished() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:80".parse().unwrap();
        assert_eq!(diff(&[a, b], &[b, c]), (vec![c], vec![a]));
        assert_eq!(diff(&[a], &[a]), (vec![], vec![]));
    }
}
