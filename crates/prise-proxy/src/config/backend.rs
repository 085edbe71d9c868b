//! Backend and listener settings: the `host:port,option=value` form, the file's tables, and
//! resolution of names into addresses.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;

use super::{Balance, ConfigError, ProxyProtocol, duration};

/// A backend in the file: the flag's string form, or a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum FileBackend {
    Spec(String),
    Table(BackendSpec),
}

/// A backend's settings as written, before validation and resolution: a backend table of
/// the TOML file, the body of `POST /backends`, or the parsed flag form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// `host:port`.
    pub addr: String,
    /// Weight, 1 to 256 [default: 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Used only while no primary can take connections.
    #[serde(default)]
    pub backup: bool,
    /// Most connections at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxconn: Option<i64>,
    /// Slow-start period, e.g. `10s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowstart: Option<String>,
}

impl BackendSpec {
    /// Parses the flag form `host:port[,weight=N][,backup][,maxconn=N][,slowstart=D]`
    /// (values are checked by [`BackendConfig::from_spec`]).
    ///
    /// # Errors
    /// An unknown option or a value that is not a number.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let mut parts = spec.split(',').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let mut out = Self {
            addr: name.to_owned(),
            ..Self::default()
        };
        for opt in parts {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (opt, None),
            };
            let int = |v: Option<&str>| -> Result<i64, ConfigError> {
                v.and_then(|v| v.parse().ok()).ok_or_else(|| {
                    ConfigError::Invalid(format!("backend {name}: {key} needs an integer"))
                })
            };
            match (key, value) {
                ("weight", v) => out.weight = Some(int(v)?),
                ("maxconn", v) => out.maxconn = Some(int(v)?),
                ("slowstart", Some(v)) => out.slowstart = Some(v.to_owned()),
                ("backup", None) => out.backup = true,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "backend {name}: unknown option {opt} (weight=N, backup, maxconn=N, \
                         slowstart=DURATION)"
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// One backend as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// `host:port` as written; a name (not an IP literal) is resolved again every
    /// resolve interval.
    pub name: String,
    /// The addresses it resolved to at load (all of the first address family returned).
    pub addrs: Vec<SocketAddr>,
    /// Share of new connections relative to the other backends (1 to
    /// [`MAX_WEIGHT`](crate::balance::MAX_WEIGHT)).
    pub weight: u32,
    /// Used only while no primary (non-backup) backend can take connections.
    pub backup: bool,
    /// Most connections open to it at once; further clients wait in the listener's queue.
    pub maxconn: Option<usize>,
    /// After it comes up, its weight grows from almost nothing to `weight` over this time.
    pub slowstart: Option<Duration>,
}

impl BackendConfig {
    /// A backend at one address with weight 1 and no options.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            name: addr.to_string(),
            addrs: vec![addr],
            weight: 1,
            backup: false,
            maxconn: None,
            slowstart: None,
        }
    }

    /// Parses the flag form: `host:port` followed by comma-separated options `weight=N`,
    /// `backup`, `maxconn=N`, `slowstart=DURATION`. The name is resolved.
    ///
    /// # Errors
    /// An unknown option, a value out of range, or a name that does not resolve.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        Self::from_spec(BackendSpec::parse(spec)?)
    }

    pub(super) fn from_file(b: FileBackend) -> Result<Self, ConfigError> {
        match b {
            FileBackend::Spec(s) => Self::parse(&s),
            FileBackend::Table(t) => Self::from_spec(t),
        }
    }

    /// Validates `t` and resolves its name.
    ///
    /// # Errors
    /// A weight outside 1–256, a maxconn below 1, a bad duration, or a name that does not
    /// resolve.
    pub fn from_spec(t: BackendSpec) -> Result<Self, ConfigError> {
        let name = t.addr;
        let max = crate::balance::MAX_WEIGHT;
        let weight = match t.weight {
            None => 1,
            Some(w) => u32::try_from(w)
                .ok()
                .filter(|w| (1..=max).contains(w))
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "backend {name}: weight {w} is out of range (1 to {max})"
                    ))
                })?,
        };
        let maxconn = match t.maxconn {
            None => None,
            Some(m) => Some(usize::try_from(m).ok().filter(|m| *m >= 1).ok_or_else(|| {
                ConfigError::Invalid(format!("backend {name}: maxconn {m} must be at least 1"))
            })?),
        };
        let slowstart = match t.slowstart.as_deref() {
            None => None,
            Some(s) => Some(duration(s)?).filter(|d| !d.is_zero()),
        };
        let addrs = resolve_all(&name)?;
        Ok(Self {
            name,
            addrs,
            weight,
            backup: t.backup,
            maxconn,
            slowstart,
        })
    }

    /// Whether the name is an IP literal (never re-resolved).
    pub fn is_literal(&self) -> bool {
        self.name.parse::<SocketAddr>().is_ok()
    }
}

/// One listener and the backends behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address (fixed for the life of the process: a reload keeps the listener).
    pub listen: SocketAddr,
    /// Backends, in order.
    pub backends: Vec<BackendConfig>,
    /// Load-balancing algorithm.
    pub balance: Balance,
    /// Read a PROXY protocol header from every client before anything else.
    pub accept_proxy: bool,
    /// PROXY protocol header toward backends.
    pub proxy_protocol: Option<ProxyProtocol>,
}

impl ListenerConfig {
    /// A round-robin listener on `listen` over `backends` (weight 1 each).
    pub fn new(listen: SocketAddr, backends: &[SocketAddr]) -> Self {
        Self {
            listen,
            backends: backends.iter().map(|&a| BackendConfig::new(a)).collect(),
            balance: Balance::RoundRobin,
            accept_proxy: false,
            proxy_protocol: None,
        }
    }
}

/// Resolves `host:port` to all its addresses of the first family returned (a name such as
/// `localhost` gives 127.0.0.1 and ::1, of which a backend usually listens on one).
///
/// # Errors
/// The name does not resolve.
pub fn resolve_all(s: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    if let Ok(a) = s.parse() {
        return Ok(vec![a]);
    }
    let all: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|_| ConfigError::Address(s.to_owned()))?
        .collect();
    let first = all
        .first()
        .ok_or_else(|| ConfigError::Address(s.to_owned()))?;
    Ok(same_family(first.ip(), all))
}

/// Keeps the addresses of `family`'s family, in order and without duplicates.
pub(crate) fn same_family(family: IpAddr, all: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(all.len());
    for a in all {
        if a.is_ipv4() == family.is_ipv4() && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}
