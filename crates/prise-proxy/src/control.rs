//! Runtime control of backends, as the admin API and `prise proxy ctl` use it: drain,
//! enable, disable, add and remove, without a reload.
//!
//! A drained backend takes no new connection; its established ones go on until they end or
//! the drain timeout passes, when they are closed. Disabling closes them at once. Removing
//! drains, then takes the backend out of its pool when its last connection ends (or at the
//! drain timeout). Changes made here last until the next reload, which rebuilds the pools
//! from the configuration (keeping the state of backends that stay).

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::{AdminState, Backend, BackendStatus};
use crate::config::{BackendConfig, BackendSpec, ConfigError};
use crate::pool::{JoinError, Pool};
use crate::server::{ProxyHandle, start_checks};

/// Error of a control operation.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No backend has this id (or address).
    #[error("no backend {0}")]
    UnknownBackend(String),
    /// No listener has this index or address.
    #[error("no listener {0}")]
    UnknownListener(String),
    /// Several listeners are configured and the request did not say which.
    #[error("several listeners: give \"listener\" (its index or address)")]
    ListenerRequired,
    /// The address is ambiguous: several listeners have a backend there.
    #[error("several backends have address {0}: use the id")]
    Ambiguous(String),
    /// The backend could not join its pool.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The backend's settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The body of `POST /backends`: the same settings as a backend table of the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBackend {
    /// `host:port`; a name is resolved (all addresses of its first family join).
    pub addr: String,
    /// Weight (1 to 256) [default: 1].
    pub weight: Option<i64>,
    /// Used only while no primary can take connections.
    #[serde(default)]
    pub backup: bool,
    /// Most connections at once.
    pub maxconn: Option<i64>,
    /// Slow-start period, e.g. `"10s"`.
    pub slowstart: Option<String>,
    /// The listener (index from 0, or address); required when there are several.
    pub listener: Option<String>,
}

/// A backend with the listener it serves, as `GET /backends` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolMember {
    /// The listener's address.
    pub listener: SocketAddr,
    /// The backend.
    #[serde(flatten)]
    pub backend: BackendStatus,
}

impl ProxyHandle {
    /// Every backend of every listener.
    pub fn members(&self) -> Vec<PoolMember> {
        let state = self.shared.current();
        let listens = self.local_addrs();
        state
            .pools
            .iter()
            .zip(listens)
            .flat_map(|(p, listener)| {
                p.backends().into_iter().map(move |b| PoolMember {
                    listener,
                    backend: b.status(),
                })
            })
            .collect()
    }

    /// The backend `id` (its number, or its address when only one backend has it) and its
    /// pool.
    ///
    /// # Errors
    /// No such backend, or an address that several backends share.
    pub fn find(&self, id: &str) -> Result<(Arc<Pool>, Arc<Backend>), ControlError> {
        let state = self.shared.current();
        let all = state
            .pools
            .iter()
            .flat_map(|p| p.backends().into_iter().map(move |b| (Arc::clone(p), b)));
        let found: Vec<_> = if let Ok(n) = id.parse::<u64>() {
            all.filter(|(_, b)| b.id().0 == n).collect()
        } else if let Ok(addr) = id.parse::<SocketAddr>() {
            all.filter(|(_, b)| b.addr() == addr).collect()
        } else {
            Vec::new()
        };
        match found.len() {
            0 => Err(ControlError::UnknownBackend(id.to_owned())),
            1 => Ok(found.into_iter().next().ok_or_else(|| {
                // Not reached: the length is 1.
                ControlError::UnknownBackend(id.to_owned())
            })?),
            _ => Err(ControlError::Ambiguous(id.to_owned())),
        }
    }

    /// Drains backend `id`: no new connection; established ones go on until they end or
    /// the drain timeout.
    ///
    /// # Errors
    /// No such backend.
    pub fn drain(&self, id: &str) -> Result<BackendStatus, ControlError> {
        let (pool, b) = self.find(id)?;
        self.start_drain(pool, &b, AdminState::Draining);
        Ok(b.status())
    }

    /// Takes backend `id` back into service (it gets connections while healthy).
    ///
    /// # Errors
    /// No such backend.
    pub fn enable(&self, id: &str) -> Result<BackendStatus, ControlError> {
        let (_, b) = self.find(id)?;
        b.set_admin(AdminState::Enabled);
        tracing::info!(backend = %b.addr(), id = %b.id(), "backend enabled");
        Ok(b.status())
    }

    /// Disables backend `id`: no new connection, and its open connections are closed now.
    ///
    /// # Errors
    /// No such backend.
    pub fn disable(&self, id: &str) -> Result<BackendStatus, ControlError> {
        let (_, b) = self.find(id)?;
        b.set_admin(AdminState::Disabled);
        b.cut_connections();
        tracing::info!(backend = %b.addr(), id = %b.id(), "backend disabled");
        Ok(b.status())
    }

    /// Drains backend `id`, then removes it from its pool once its last connection ends
    /// (or at the drain timeout, closing what is left).
    ///
    /// # Errors
    /// No such backend.
    pub fn remove(&self, id: &str) -> Result<BackendStatus, ControlError> {
        let (pool, b) = self.find(id)?;
        self.start_drain(pool, &b, AdminState::Removing);
        Ok(b.status())
    }

    /// Adds a backend at run time. With active checks on it starts down and takes
    /// connections once `rise` checks pass.
    ///
    /// # Errors
    /// Bad settings, a name that does not resolve, an unknown or unspecified listener, an
    /// address already in the pool, or a full pool.
    pub fn add(&self, req: AddBackend) -> Result<Vec<BackendStatus>, ControlError> {
        let state = self.shared.current();
        let index = match req.listener.as_deref() {
            None if state.pools.len() == 1 => 0,
            None => return Err(ControlError::ListenerRequired),
            Some(l) => self.listener_index(l)?,
        };
        let spec = BackendConfig::from_spec(BackendSpec {
            addr: req.addr,
            weight: req.weight,
            backup: req.backup,
            maxconn: req.maxconn,
            slowstart: req.slowstart,
        })?;
        let pool = &state.pools[index];
        let mut added = Vec::new();
        let mut refused = None;
        for &addr in &spec.addrs {
            let b = self.shared.new_backend(&state, &spec, addr);
            match pool.join(Arc::clone(&b)) {
                Ok(()) => {
                    start_checks(&state, &b);
                    tracing::info!(backend = %addr, id = %b.id(), "backend added");
                    added.push(b.status());
                }
                // A name with several addresses: those that can join do.
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        if let (true, Some(e)) = (added.is_empty(), refused) {
            return Err(e.into());
        }
        Ok(added)
    }

    fn listener_index(&self, l: &str) -> Result<usize, ControlError> {
        let listens = self.local_addrs();
        if let Ok(i) = l.parse::<usize>() {
            return (i < listens.len())
                .then_some(i)
                .ok_or_else(|| ControlError::UnknownListener(l.to_owned()));
        }
        let addr: Option<SocketAddr> = l.parse().ok();
        listens
            .iter()
            .position(|a| Some(*a) == addr)
            .ok_or_else(|| ControlError::UnknownListener(l.to_owned()))
    }

    /// Sets `state` (draining or removing) and starts the timer that closes what is left
    /// at the drain timeout and, when removing, takes the backend out of `pool`.
    pub(crate) fn start_drain(&self, pool: Arc<Pool>, b: &Arc<Backend>, state: AdminState) {
        let epoch = b.set_admin(state);
        tracing::info!(backend = %b.addr(), id = %b.id(), ?state, "backend draining");
        let timeout = self.shared.current().config.drain_timeout;
        let closed = self.shared.closed.clone();
        let b = Arc::clone(b);
        tokio::spawn(async move {
            let ended = tokio::select! {
                () = closed.cancelled() => return,
                r = tokio::time::timeout(timeout, b.wait_idle()) => r.is_ok(),
            };
            if b.epoch() != epoch {
                return; // enabled, disabled or drained again meanwhile
            }
            if !ended {
                tracing::info!(backend = %b.addr(), open = b.active(), "drain timeout, closing");
                b.cut_connections();
            }
            if state == AdminState::Removing {
                pool.leave(b.id());
                b.retire();
                tracing::info!(backend = %b.addr(), id = %b.id(), "backend removed");
            }
        });
    }
}
