//! The hook flags of `prise serve` ([`HookArgs`]) and the hooks they name
//! ([`HookKind`]).

use std::path::PathBuf;
use std::time::Duration;

/// Default time a backend has to answer a hook.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of hook calls in flight at once, over every hook.
pub const DEFAULT_HOOK_CONCURRENCY: usize = 64;
/// Default time a `connect` answer is reused for the same credentials.
pub const DEFAULT_HOOK_CACHE_TTL: Duration = Duration::from_secs(5);

/// A hook: a point where the hub asks the backend before it acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum HookKind {
    /// Before a client is admitted.
    Connect,
    /// Before a session admitted by `connect` with an `expires_at` expires.
    Refresh,
    /// Before a client joins a room.
    Join,
    /// Before a client's message takes an offset.
    Publish,
    /// A client's request that only the backend answers.
    Rpc,
}

impl HookKind {
    /// Every hook, in the order of a session's life.
    pub const ALL: [Self; 5] = [
        Self::Connect,
        Self::Refresh,
        Self::Join,
        Self::Publish,
        Self::Rpc,
    ];

    /// The name in the `hook` field of a call, in flags and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Refresh => "refresh",
            Self::Join => "join",
            Self::Publish => "publish",
            Self::Rpc => "rpc",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of hooks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookSet(u8);

impl HookSet {
    /// Every hook.
    pub fn all() -> Self {
        Self::from_kinds(&HookKind::ALL)
    }

    /// The hooks listed.
    pub fn from_kinds(kinds: &[HookKind]) -> Self {
        Self(kinds.iter().fold(0, |acc, k| acc | k.bit()))
    }

    /// Is `kind` in the set?
    pub fn contains(self, kind: HookKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

/// Hook flags of `prise serve` (each also a `PRISE_*` variable).
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct HookArgs {
    /// Backend URL (http:// or https://) every hook is POSTed to; a
    /// namespace's `hook_url` in the configuration file overrides it for the
    /// rooms and Socket.IO sockets of that namespace.
    #[arg(long, env = "PRISE_HOOK_URL")]
    pub hook_url: Option<String>,
    /// The hooks that are on (comma-separated); without this flag every hook
    /// is on wherever a hook URL is set.
    #[arg(long, env = "PRISE_HOOKS", value_enum, value_delimiter = ',')]
    pub hooks: Vec<HookKind>,
    /// Secret that signs each call (X-Prise-Signature: sha256= and the hex
    /// HMAC-SHA256 of the body); prefer --hook-secret-file: flags show in `ps`.
    #[arg(long, env = "PRISE_HOOK_SECRET", hide_env_values = true)]
    pub hook_secret: Option<String>,
    /// File holding the hook secret (trailing newline ignored).
    #[arg(long, env = "PRISE_HOOK_SECRET_FILE")]
    pub hook_secret_file: Option<PathBuf>,
    /// Time the backend has to answer a hook, connection included; past it
    /// the hook fails (closed, unless --hook-fail-open names it).
    #[arg(long, env = "PRISE_HOOK_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub hook_timeout: Duration,
    /// Hooks that let the request through when the backend cannot answer
    /// (comma-separated; `rpc` always fails closed).
    #[arg(long, env = "PRISE_HOOK_FAIL_OPEN", value_enum, value_delimiter = ',')]
    pub hook_fail_open: Vec<HookKind>,
    /// Most hook calls in flight at once; beyond it a call waits, within
    /// its timeout, for a free slot.
    #[arg(long, env = "PRISE_HOOK_CONCURRENCY", default_value_t = DEFAULT_HOOK_CONCURRENCY)]
    pub hook_concurrency: usize,
    /// How long a `connect` answer is reused for the same credentials (a
    /// reconnect storm stays off the backend); 0s: never.
    #[arg(long, env = "PRISE_HOOK_CACHE_TTL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub hook_cache_ttl: Duration,
}

impl Default for HookArgs {
    fn default() -> Self {
        Self {
            hook_url: None,
            hooks: Vec::new(),
            hook_secret: None,
            hook_secret_file: None,
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            hook_fail_open: Vec::new(),
            hook_concurrency: DEFAULT_HOOK_CONCURRENCY,
            hook_cache_ttl: DEFAULT_HOOK_CACHE_TTL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_what_they_list() {
        let s = HookSet::from_kinds(&[HookKind::Join, HookKind::Rpc]);
        assert!(s.contains(HookKind::Join) && s.contains(HookKind::Rpc));
        assert!(!s.contains(HookKind::Connect) && !s.contains(HookKind::Publish));
        assert!(HookKind::ALL.iter().all(|k| HookSet::all().contains(*k)));
        assert!(!HookSet::default().contains(HookKind::Refresh));
    }
}
