//! The request layer's calls to the backend's hooks ([`crate::hooks`]):
//! `connect` (the answer read into the client's identity, granted rooms and
//! `expires_at`), `refresh` at the deadline, and `join`, `publish` and `rpc`
//! from [`Client::apply`]. Each call's body is the session, the user and
//! the hook's own fields.

use super::{Client, Credentials, Ctx, Deadline, FAR, MAX_GRANTED_ROOMS};
use crate::hooks::{HookKind, Hooks, Verdict};
use crate::security::auth::{BackendUser, Identity};
use crate::transport::reply::{Refusal, Reply};
use prise_hub::Transport;
use prise_hub::policy::ROOT_NAMESPACE;
use prise_proto::message::User;
use serde_json::{Map, Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

impl Client {
    /// Asks the `refresh` hook before `expires_at`: `None` when the session
    /// must end now (the backend refused).
    pub(super) async fn refresh(&mut self, ctx: Ctx<'_>, expires_at: u64) -> Option<Deadline> {
        let ns = self.hook_namespace(None).to_owned();
        let end = instant_of(expires_at);
        if !ctx.hooks.is_on(HookKind::Refresh, &ns) {
            self.deadline = Some(end);
            return Some(Deadline::Extended);
        }
        let mut fields = Map::new();
        fields.insert("expires_at".into(), json!(expires_at));
        let verdict = ctx
            .hooks
            .call(HookKind::Refresh, &ns, self.hook_body(fields))
            .await;
        let new = match verdict {
            Verdict::Answer(a) => a.get("expires_at").and_then(Value::as_u64),
            Verdict::Refused(r) if r.code == crate::hooks::UNAVAILABLE => None,
            Verdict::Refused(r) => {
                tracing::debug!(code = %r.code, "refresh refused: session ends");
                return None;
            }
            Verdict::Open => {
                // Fails open: the session no longer expires.
                if let Identity::Backend(b) = &mut self.identity {
                    b.expires_at = None;
                }
                self.deadline = None;
                return Some(Deadline::Extended);
            }
        };
        match new {
            Some(at) if instant_of(at) > Instant::now() => {
                if let Identity::Backend(b) = &mut self.identity {
                    b.expires_at = Some(at);
                }
                self.deadline = Some(refresh_point(ctx.hooks, &ns, instant_of(at)));
            }
            // No usable answer: not extended; the session ends when it
            // expires.
            _ => self.deadline = Some(end),
        }
        Some(Deadline::Extended)
    }

    /// The namespace whose hook URL serves this client's request about
    /// `room` (the client's own namespace without a room).
    pub(super) fn hook_namespace<'r>(&'r self, room: Option<&'r str>) -> &'r str {
        match room.and_then(prise_hub::policy::split_room) {
            Some((ns, _)) => ns,
            None => self.namespace.as_deref().unwrap_or(ROOT_NAMESPACE),
        }
    }

    /// A hook's body: the session, the user and the hook's own fields.
    pub(super) fn hook_body(&self, mut fields: Map<String, Value>) -> Map<String, Value> {
        let user = self.session.user();
        let mut u = Map::new();
        u.insert("id".into(), Value::String(user.id));
        u.insert("name".into(), Value::String(user.name));
        if let Identity::Backend(BackendUser { info: Some(i), .. }) = &self.identity {
            u.insert("info".into(), i.clone());
        }
        u.insert("authenticated".into(), Value::Bool(self.is_authenticated()));
        fields.insert(
            "session".into(),
            self.hook_session.as_deref().cloned().unwrap_or(Value::Null),
        );
        fields.insert("user".into(), Value::Object(u));
        fields
    }

    /// Asks hook `kind` about `room` (or the client's namespace): the
    /// answer, empty when the hook is off or fails open.
    pub(super) async fn ask(
        &self,
        ctx: Ctx<'_>,
        kind: HookKind,
        room: Option<&str>,
        fields: Map<String, Value>,
    ) -> Result<Map<String, Value>, Refusal> {
        let ns = self.hook_namespace(room);
        if !ctx.hooks.is_on(kind, ns) {
            return Ok(Map::new());
        }
        match ctx.hooks.call(kind, ns, self.hook_body(fields)).await {
            Verdict::Answer(a) => Ok(a),
            Verdict::Open => Ok(Map::new()),
            Verdict::Refused(r) => Err(r),
        }
    }

    /// The `publish` hook for `data` sent as `event` in `room`: the content
    /// to publish (the backend's rewrite, or `data` as it was).
    pub(super) async fn ask_publish(
        &self,
        ctx: Ctx<'_>,
        room: &str,
        event: &str,
        data: Value,
    ) -> Result<Value, Refusal> {
        if !ctx
            .hooks
            .is_on(HookKind::Publish, self.hook_namespace(Some(room)))
        {
            return Ok(data);
        }
        let mut fields = Map::new();
        fields.insert("room".into(), Value::String(room.to_owned()));
        fields.insert("event".into(), Value::String(event.to_owned()));
        fields.insert("content".into(), data.clone());
        let mut answer = self.ask(ctx, HookKind::Publish, Some(room), fields).await?;
        Ok(answer.remove("content").unwrap_or(data))
    }

    /// An RPC: the `rpc` hook's `result`.
    pub(super) async fn rpc(&self, ctx: Ctx<'_>, method: String, data: Value) -> Reply {
        if !ctx.hooks.is_on(HookKind::Rpc, self.hook_namespace(None)) {
            return Reply::Refused(Refusal::no_rpc_hook());
        }
        let mut fields = Map::new();
        fields.insert("method".into(), Value::String(method));
        fields.insert("data".into(), data);
        match self.ask(ctx, HookKind::Rpc, None, fields).await {
            Ok(mut a) => Reply::RpcResult(a.remove("result").unwrap_or(Value::Null)),
            Err(r) => Reply::Refused(r),
        }
    }
}

/// What a `connect` answer admits.
pub(super) struct Admitted {
    pub(super) identity: Identity,
    pub(super) rooms: Vec<String>,
}

/// The `session` object of hook calls (its `id` is set once the hub
/// session exists).
pub(super) fn session_object(transport: Transport, c: &Credentials) -> Value {
    let mut headers = Map::new();
    for (name, value) in &c.headers {
        let Ok(v) = value.to_str() else { continue };
        match headers.get_mut(name.as_str()) {
            Some(Value::String(s)) => {
                s.push_str(", ");
                s.push_str(v);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(v.to_owned()));
            }
        }
    }
    json!({
        "id": null,
        "transport": transport.as_str(),
        "remote": c.remote.map(|a| a.to_string()),
        "headers": headers,
        "query": c.query,
        "auth": c.auth,
    })
}

/// Asks the `connect` hook (or its cache): `None` when the hook fails open.
pub(super) async fn connect_hook(
    ctx: Ctx<'_>,
    ns: &str,
    c: &Credentials,
    session: Value,
) -> Result<Option<Admitted>, Refusal> {
    let header = |name: http::header::HeaderName| {
        c.headers
            .get(name)
            .map_or(&[][..], http::HeaderValue::as_bytes)
    };
    let auth = c.auth.to_string();
    let ip = c.remote.map(|a| a.ip().to_string()).unwrap_or_default();
    let key = crate::hooks::cache_key(&[
        ns.as_bytes(),
        auth.as_bytes(),
        c.token.as_deref().unwrap_or("").as_bytes(),
        header(http::header::COOKIE),
        header(http::header::AUTHORIZATION),
        c.query.as_bytes(),
        ip.as_bytes(),
    ]);
    let mut fields = Map::new();
    fields.insert("session".into(), session);
    fields.insert("user".into(), Value::Null);
    fields.insert("namespace".into(), Value::String(ns.to_owned()));
    match ctx.hooks.connect(ns, key, fields).await {
        Verdict::Answer(a) => admitted(a).map(Some),
        Verdict::Refused(r) => {
            crate::security::ratelimit::refused("hook_connect");
            Err(r)
        }
        Verdict::Open => Ok(None),
    }
}

fn bad_answer(what: &str) -> Refusal {
    Refusal::new(
        crate::hooks::UNAVAILABLE,
        format!("the backend's connect answer is not usable: {what}"),
    )
}

/// Reads a `connect` answer: `{"user": {"id", "name"?, "info"?}, "rooms"?,
/// "expires_at"?}`; without a `user`, a guest.
fn admitted(mut a: Map<String, Value>) -> Result<Admitted, Refusal> {
    let max = prise_proto::limits::Limits::default().max_name;
    let rooms = match a.remove("rooms") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_GRANTED_ROOMS => list
            .into_iter()
            .map(|r| match r {
                Value::String(s) => Ok(s),
                _ => Err(bad_answer("rooms must be strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad_answer("rooms must be a list of at most 256 names")),
    };
    let expires_at = match a.remove("expires_at") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad_answer("expires_at must be seconds since the Unix epoch"))?,
        ),
    };
    if expires_at.is_some_and(|at| instant_of(at) <= Instant::now()) {
        return Err(Refusal::new(
            "AUTH_EXPIRED",
            "the backend's expires_at is past",
        ));
    }
    let user = match a.remove("user") {
        None | Some(Value::Null) => {
            return Ok(Admitted {
                identity: Identity::Anonymous,
                rooms,
            });
        }
        Some(Value::Object(u)) => u,
        Some(_) => return Err(bad_answer("user must be an object")),
    };
    let id = match user.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(bad_answer("user.id is missing")),
    };
    let name = match user.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => id.clone(),
    };
    if prise_proto::limits::check_name(&id, max).is_err()
        || prise_proto::limits::check_name(&name, max).is_err()
    {
        return Err(bad_answer(
            "user.id and user.name are 1-64 bytes without whitespace",
        ));
    }
    Ok(Admitted {
        identity: Identity::Backend(BackendUser {
            user: User { id, name },
            info: user.get("info").cloned(),
            expires_at,
        }),
        rooms,
    })
}

/// The instant of `at`, seconds since the Unix epoch.
pub(super) fn instant_of(at: u64) -> Instant {
    let now = SystemTime::now();
    let Some(then) = UNIX_EPOCH.checked_add(Duration::from_secs(at)) else {
        return Instant::now() + FAR;
    };
    match then.duration_since(now) {
        Ok(left) => {
            let now = Instant::now();
            now.checked_add(left).unwrap_or(now + FAR)
        }
        Err(_) => Instant::now(),
    }
}

/// When to ask the `refresh` hook for a session ending at `end`: early
/// enough for the answer to land first (the hook timeout, or half the time
/// left); at `end` itself when the hook is off.
pub(super) fn refresh_point(hooks: &Hooks, ns: &str, end: Instant) -> Instant {
    if !hooks.is_on(HookKind::Refresh, ns) {
        return end;
    }
    let left = end.saturating_duration_since(Instant::now());
    end - hooks.timeout().min(left / 2)
}
