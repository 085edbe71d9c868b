//! Backend hooks: before it acts, the hub asks the application's backend
//! (any language, over HTTP) whether and how. Each hook is a
//! `POST <hook URL>` of a JSON object
//!
//! ```text
//! {"hook": "connect" | "refresh" | "join" | "publish" | "rpc",
//!  "id": "<unique request id>", "node": "<node id>",
//!  "session": {"id", "transport", "remote", "headers", "query", "auth"},
//!  "user": {"id", "name", "info"?} | null, ...the hook's own fields}
//! ```
//!
//! signed `X-Prise-Signature: sha256=<hex HMAC-SHA256 of the body>` when a
//! secret is set. The answer is a JSON object: `{"error": {"code",
//! "message"}}` refuses (the client sees that code); anything else is the
//! hook's answer. A backend that cannot answer (no connection, a timeout,
//! a non-2xx status, a body that is not a JSON object, the breaker open)
//! refuses with `HOOK_UNAVAILABLE`, unless `--hook-fail-open` names the
//! hook. The request layer (`transport::client`) makes the calls;
//! docs/HOOKS.md is the contract.

mod args;
mod cache;
mod gate;
pub(crate) mod http;
pub(crate) mod sign;

pub use args::{
    DEFAULT_HOOK_CACHE_TTL, DEFAULT_HOOK_CONCURRENCY, DEFAULT_HOOK_TIMEOUT, HookArgs, HookKind,
    HookSet,
};
pub(crate) use http::Failure;

use crate::transport::reply::Refusal;
use ::http::{HeaderName, HeaderValue};
use bytes::Bytes;
use prise_hub::policy::Policies;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) use cache::key as cache_key;
#[cfg(test)]
pub(crate) use gate::TRIP_AFTER;

/// The signature header value of `body` with `secret`, as a backend computes it.
#[cfg(test)]
pub(crate) fn sign_for_tests(secret: &str, body: &[u8]) -> String {
    sign::Signer::new(secret.as_bytes()).header(body)
}

/// Longest error code taken from a backend's answer.
pub const MAX_CODE: usize = 64;
/// Longest error message taken from a backend's answer, in bytes.
pub const MAX_MESSAGE: usize = 512;

/// Why the hook settings could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A hook URL that cannot be used.
    #[error("hook URL {0}")]
    Url(String),
    /// The secret file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What the backend said.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Go on, with this answer.
    Answer(Map<String, Value>),
    /// Refused: by the backend (its code), or `HOOK_UNAVAILABLE`.
    Refused(Refusal),
    /// The backend could not answer and the hook fails open: go on as if
    /// there were no hook.
    Open,
}

/// The hooks of a server; [`Hooks::off`] when no hook URL is set.
#[derive(Debug, Default)]
pub struct Hooks {
    backend: Option<Backend>,
}

#[derive(Debug)]
struct Backend {
    default: Option<Arc<http::Endpoint>>,
    namespaces: HashMap<String, Arc<http::Endpoint>>,
    on: HookSet,
    fail_open: HookSet,
    signer: Option<sign::Signer>,
    timeout: Duration,
    node: String,
    gate: gate::Gate,
    cache: cache::ConnectCache,
    next_id: AtomicU64,
}

impl Hooks {
    /// No hooks.
    pub fn off() -> Self {
        Self::default()
    }

    /// The hooks of `args`, with the namespaces' `hook_url` overrides of
    /// `policies`; `node` names this node in each call.
    ///
    /// # Errors
    /// A hook URL that is not http(s), an unreadable secret file.
    pub fn build(args: &HookArgs, policies: &Policies, node: &str) -> Result<Self, HookError> {
        let max_idle = args.hook_concurrency.max(1);
        let endpoint = |url: &str| {
            http::Endpoint::new(url, max_idle)
                .map(Arc::new)
                .map_err(HookError::Url)
        };
        let default = args.hook_url.as_deref().map(endpoint).transpose()?;
        let mut namespaces = HashMap::new();
        for ns in policies.namespaces() {
            if let Some(url) = &ns.hook_url {
                namespaces.insert(ns.name.clone(), endpoint(url)?);
            }
        }
        if default.is_none() && namespaces.is_empty() {
            return Ok(Self::off());
        }
        let secret = secret(args)?;
        if secret.is_none() {
            tracing::warn!(
                "hooks are not signed: set --hook-secret-file so the backend can check them"
            );
        }
        let on = if args.hooks.is_empty() {
            HookSet::all()
        } else {
            HookSet::from_kinds(&args.hooks)
        };
        Ok(Self {
            backend: Some(Backend {
                default,
                namespaces,
                on,
                fail_open: HookSet::from_kinds(&args.hook_fail_open),
                signer: secret.map(|s| sign::Signer::new(s.as_bytes())),
                timeout: args.hook_timeout,
                node: node.to_owned(),
                gate: gate::Gate::new(args.hook_concurrency),
                cache: cache::ConnectCache::new(args.hook_cache_ttl),
                next_id: AtomicU64::new(0),
            }),
        })
    }

    /// Is any hook on anywhere? (Transports keep what a hook is sent, the
    /// request headers among it, only then.)
    pub fn is_active(&self) -> bool {
        self.backend.is_some()
    }

    /// Is `kind` on for namespace `ns`?
    pub fn is_on(&self, kind: HookKind, ns: &str) -> bool {
        self.backend
            .as_ref()
            .is_some_and(|b| b.on.contains(kind) && b.endpoint(ns).is_some())
    }

    /// Calls hook `kind` for namespace `ns` with the hook's own fields in
    /// `body` (`session`, `user` and the rest); `hook`, `id` and `node` are
    /// added here. `Verdict::Open` when the hook is off.
    pub(crate) async fn call(&self, kind: HookKind, ns: &str, body: Map<String, Value>) -> Verdict {
        let Some(b) = &self.backend else {
            return Verdict::Open;
        };
        let Some(endpoint) = b.endpoint(ns).filter(|_| b.on.contains(kind)) else {
            return Verdict::Open;
        };
        b.call(kind, endpoint, body).await
    }

    /// The `connect` hook, answered from the cache when the same
    /// credentials (`key`, see [`cache_key`]) were answered moments ago.
    pub(crate) async fn connect(
        &self,
        ns: &str,
        key: cache::Key,
        body: Map<String, Value>,
    ) -> Verdict {
        let Some(b) = &self.backend else {
            return Verdict::Open;
        };
        if let Some(answer) = b.cache.get(&key) {
            metrics::counter!("prise_hook_cache_hits_total").increment(1);
            return b.verdict(answer);
        }
        let verdict = self.call(HookKind::Connect, ns, body).await;
        if let Verdict::Answer(a) = &verdict {
            b.cache.put(key, a.clone());
        } else if let Verdict::Refused(r) = &verdict
            && r.code != UNAVAILABLE
        {
            b.cache.put(key, refusal_answer(r));
        }
        verdict
    }

    /// The hook timeout (zero when hooks are off).
    pub fn timeout(&self) -> Duration {
        self.backend.as_ref().map_or(Duration::ZERO, |b| b.timeout)
    }
}

/// The hook secret, from the flag or its file.
///
/// # Errors
/// An unreadable secret file.
pub(crate) fn secret(args: &HookArgs) -> Result<Option<String>, HookError> {
    read_secret(
        args.hook_secret.as_deref(),
        args.hook_secret_file.as_deref(),
    )
}

/// A secret given on the command line, or read from its file (trailing
/// newline ignored).
///
/// # Errors
/// An unreadable file.
pub(crate) fn read_secret(
    flag: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, HookError> {
    match (flag, file) {
        (Some(s), _) => Ok(Some(s.to_owned())),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|source| HookError::Read {
                path: p.to_owned(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

/// The code of a refusal for a backend that could not answer.
pub const UNAVAILABLE: &str = "HOOK_UNAVAILABLE";

fn refusal_answer(r: &Refusal) -> Map<String, Value> {
    let mut error = Map::new();
    error.insert("code".into(), Value::String(r.code.to_string()));
    error.insert("message".into(), Value::String(r.message.clone()));
    let mut m = Map::new();
    m.insert("error".into(), Value::Object(error));
    m
}

impl Backend {
    fn endpoint(&self, ns: &str) -> Option<&Arc<http::Endpoint>> {
        self.namespaces.get(ns).or(self.default.as_ref())
    }

    async fn call(
        &self,
        kind: HookKind,
        endpoint: &http::Endpoint,
        mut body: Map<String, Value>,
    ) -> Verdict {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        body.insert("hook".into(), Value::String(kind.as_str().into()));
        body.insert("id".into(), Value::String(format!("{}-{n}", self.node)));
        body.insert("node".into(), Value::String(self.node.clone()));
        let bytes = Bytes::from(Value::Object(body).to_string());
        let mut headers = vec![(
            HeaderName::from_static("x-prise-hook"),
            HeaderValue::from_static(kind.as_str()),
        )];
        if let Some(s) = &self.signer
            && let Ok(v) = HeaderValue::from_str(&s.header(&bytes))
        {
            headers.push((HeaderName::from_static(sign::SIGNATURE_HEADER), v));
        }
        let started = Instant::now();
        let deadline = started + self.timeout;
        let result = match self.gate.enter(deadline).await {
            Ok(pass) => {
                let r =
                    match tokio::time::timeout_at(deadline, endpoint.post(&headers, bytes)).await {
                        Ok(r) => r,
                        Err(_) => Err(Failure::Timeout),
                    };
                let r = r.and_then(|answer| parse(&answer));
                pass.done(r.is_ok());
                r
            }
            Err(f) => Err(f),
        };
        metrics::histogram!("prise_hook_duration_seconds", "hook" => kind.as_str())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(answer) => {
                let v = self.verdict(answer);
                let outcome = if matches!(v, Verdict::Refused(_)) {
                    "refused"
                } else {
                    "ok"
                };
                metrics::counter!("prise_hook_calls_total", "hook" => kind.as_str(), "outcome" => outcome)
                    .increment(1);
                v
            }
            Err(f) => {
                metrics::counter!("prise_hook_calls_total", "hook" => kind.as_str(), "outcome" => "unavailable")
                    .increment(1);
                tracing::warn!(hook = kind.as_str(), url = %endpoint.uri(), error = %f, "hook failed");
                if self.fail_open.contains(kind) && kind != HookKind::Rpc {
                    Verdict::Open
                } else {
                    Verdict::Refused(Refusal::new(
                        UNAVAILABLE,
                        format!("the backend could not answer the {} hook", kind.as_str()),
                    ))
                }
            }
        }
    }

    fn verdict(&self, answer: Map<String, Value>) -> Verdict {
        match answer.get("error") {
            Some(e) if !e.is_null() => Verdict::Refused(backend_refusal(e)),
            _ => Verdict::Answer(answer),
        }
    }
}

fn parse(answer: &[u8]) -> Result<Map<String, Value>, Failure> {
    if answer.iter().all(u8::is_ascii_whitespace) {
        // An empty 2xx answer says yes.
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(answer) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Failure::Answer("not an object".into())),
        Err(e) => Err(Failure::Answer(e.to_string())),
    }
}

/// The refusal a backend's `error` stands for: its code when it is one
/// (letters, digits, `_`; upper-cased), `HOOK_REFUSED` otherwise; its
/// message, on one line and capped.
pub(crate) fn backend_refusal(error: &Value) -> Refusal {
    let (code, message) = match error {
        Value::Object(e) => (
            e.get("code").and_then(Value::as_str),
            e.get("message").and_then(Value::as_str),
        ),
        Value::String(s) => (None, Some(s.as_str())),
        _ => (None, None),
    };
    let code = code
        .filter(|c| {
            !c.is_empty()
                && c.len() <= MAX_CODE
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .map_or_else(|| "HOOK_REFUSED".to_owned(), str::to_ascii_uppercase);
    let message: String = message
        .unwrap_or("refused by the backend")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Refusal::new(
        code,
        prise_proto::limits::clip(&message, MAX_MESSAGE).to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backend_errors_become_clean_refusals() {
        let r = backend_refusal(&json!({"code": "banned", "message": "no\nway"}));
        assert_eq!((&*r.code, r.message.as_str()), ("BANNED", "no way"));
        let r = backend_refusal(&json!({"code": "has space", "message": "x"}));
        assert_eq!(&*r.code, "HOOK_REFUSED");
        let r = backend_refusal(&json!("just words"));
        assert_eq!(
            (&*r.code, r.message.as_str()),
            ("HOOK_REFUSED", "just words")
        );
        let long = "é".repeat(MAX_MESSAGE);
        assert!(backend_refusal(&json!({"message": long})).message.len() <= MAX_MESSAGE);
    }

    #[test]
    fn answers_must_be_objects() {
        assert_eq!(parse(b"").unwrap(), Map::new());
        assert_eq!(parse(b"{\"a\":1}").unwrap()["a"], 1);
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"{").is_err());
    }
}
