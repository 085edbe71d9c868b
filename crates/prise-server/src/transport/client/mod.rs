//! A client of the hub on any transport, and [`Client::apply`]: the one
//! path from a decoded [`Request`] to a hub call and its [`Reply`].
//!
//! Every check lives here once, in this order: the connection's rate,
//! authentication (anonymous access, token, refresh), the room permission
//! of the token, the room's policy (who may publish) and the namespace's
//! (whether Socket.IO events are relayed), then the hub's own checks
//! (names, sizes, membership, member caps, personal rooms). Each refusal is
//! counted once, under one reason.
//!
//! With hooks on ([`crate::hooks`]), the backend is asked inside these
//! steps: `connect` in [`Client::connect`] before the hub session exists,
//! `join` before the hub's join, `publish` before the message takes an
//! offset (its answer may rewrite the content), `rpc` for the requests
//! only the backend answers, and `refresh` in [`Client::deadline_passed`]
//! before a backend session's `expires_at`.
//!
//! A Socket.IO socket names the rooms of its namespace (`a` in `/game`);
//! [`Client::apply`] qualifies them into the hub's names (`/game:a`)
//! first. TCP and WebSocket clients use the hub's names as they are.

mod hooks;

use super::DEFAULT_HISTORY;
use super::reply::{Refusal, Reply};
use super::request::{Request, Target};
use crate::hooks::{HookKind, Hooks};
use crate::security::Security;
use crate::security::auth::{AuthError, Claims, Denied, Identity};
use crate::security::ratelimit::MessageLimiter;
use hooks::{connect_hook, instant_of, refresh_point, session_object};
use prise_hub::policy::{PERSONAL_PREFIX, ROOT_NAMESPACE, Relay, full_room, personal_owner};
use prise_hub::{Event, Hub, HubError, Outbound, Session, Transport};
use prise_proto::presence::Cursor;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most rooms a `rooms` request lists.
const ROOMS_LISTED: usize = 1000;
/// Most rooms a `connect` answer may grant.
const MAX_GRANTED_ROOMS: usize = 256;
/// A backend session this close to its `expires_at` is not refreshed.
const REFRESH_MARGIN: Duration = Duration::from_millis(50);
/// Later than any `expires_at` that matters (about 30 years).
const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// What the request layer needs of the server.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) hub: &'a Hub,
    pub(crate) security: &'a Security,
    pub(crate) hooks: &'a Hooks,
}

/// What a client presents when it connects.
#[derive(Debug, Default)]
pub(crate) struct Credentials {
    /// A token (`/ws?token=`, Socket.IO `auth.token`, `/sse` `Authorization`).
    pub(crate) token: Option<String>,
    /// A display name for an anonymous session (Socket.IO `auth.name`).
    pub(crate) name: Option<String>,
    /// The Socket.IO namespace whose rooms the client names (`None`: the
    /// hub's own names, as TCP and WebSocket clients use them).
    pub(crate) namespace: Option<String>,
    /// The client's address (behind a trusted balancer, the one it named;
    /// also the `remote` of hooks).
    pub(crate) remote: Option<SocketAddr>,
    /// The headers of the request that opened the connection (cookies
    /// among them); kept for hooks only.
    pub(crate) headers: http::HeaderMap,
    /// Its query string, without `?`.
    pub(crate) query: String,
    /// The Socket.IO handshake's `auth` payload (`null` elsewhere).
    pub(crate) auth: Value,
}

/// When a client without a token must have authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// At the handshake itself: no token, no session (Socket.IO, SSE).
    Now,
    /// Within the listener's auth timeout, by a request (TCP, WebSocket).
    Later,
}

/// How a client's deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// The token expired: the session is closed with
    /// [`prise_hub::CloseReason::AuthExpired`].
    Expired,
    /// No token in time where one is required.
    AuthTimeout,
    /// The backend's `refresh` hook was asked: the session goes on, with a
    /// new [`Client::deadline`].
    Extended,
}

/// One client's session and its request state.
pub(crate) struct Client {
    session: Arc<Session>,
    identity: Identity,
    anonymous_ok: bool,
    limiter: MessageLimiter,
    /// When the token expires, or (without one, where one is required)
    /// when the time to authenticate runs out.
    deadline: Option<Instant>,
    /// The room of the single-room API (`joinRoom`).
    current: Option<Arc<str>>,
    /// The Socket.IO namespace the client's room names belong to.
    namespace: Option<String>,
    /// The `session` object of hook calls, when hooks are on.
    hook_session: Option<Box<Value>>,
}

fn until(claims: &Claims) -> Instant {
    Instant::now() + claims.remaining(SystemTime::now())
}

impl Client {
    /// Admits a client: asks the backend's `connect` hook or checks its
    /// token, opens its hub session, takes its display name and joins the
    /// rooms the backend granted.
    ///
    /// # Errors
    /// The refusal to send before closing: a bad token, no token where the
    /// handshake needs one, a backend's refusal, a full server, a bad name.
    pub(crate) async fn connect(
        ctx: Ctx<'_>,
        transport: Transport,
        credentials: Credentials,
        handshake: Handshake,
    ) -> Result<(Self, mpsc::Receiver<Outbound>), Refusal> {
        let security = ctx.security;
        let mut anonymous_ok = match transport {
            Transport::Tcp => security.anonymous_tcp,
            Transport::Ws | Transport::SocketIo | Transport::Sse => security.anonymous_http,
        };
        let ns = credentials
            .namespace
            .clone()
            .unwrap_or_else(|| ROOT_NAMESPACE.to_owned());
        let mut hook_session = ctx
            .hooks
            .is_active()
            .then(|| Box::new(session_object(transport, &credentials)));
        // A token is checked by the configured key; without one (or
        // without a key), the backend decides when its hook is on.
        let jwt = credentials.token.is_some() && security.auth.is_configured();
        let mut granted = Vec::new();
        let mut identity = None;
        if !jwt && ctx.hooks.is_on(HookKind::Connect, &ns) {
            let session = hook_session.as_deref().cloned().unwrap_or(Value::Null);
            if let Some(admitted) = connect_hook(ctx, &ns, &credentials, session).await? {
                if matches!(admitted.identity, Identity::Anonymous) {
                    // The backend admits a guest.
                    anonymous_ok = true;
                }
                identity = Some(admitted.identity);
                granted = admitted.rooms;
            }
        }
        let identity = match (identity, credentials.token) {
            (Some(identity), _) => identity,
            (None, Some(token)) => match security.auth.verify(&token) {
                Ok(claims) => Identity::Token(claims),
                Err(e) => return Err(auth_failed(&e)),
            },
            (None, None) if anonymous_ok || handshake == Handshake::Later => Identity::Anonymous,
            (None, None) => {
                crate::security::ratelimit::refused("auth_failed");
                return Err(Refusal::token_required());
            }
        };
        let (session, rx) = ctx
            .hub
            .connect_from(transport, identity.user(), credentials.remote)
            .map_err(|e| Refusal::hub(&e))?;
        let deadline = match &identity {
            Identity::Token(c) => Some(until(c)),
            Identity::Backend(b) => b
                .expires_at
                .map(|at| refresh_point(ctx.hooks, &ns, instant_of(at))),
            Identity::Anonymous if anonymous_ok => None,
            Identity::Anonymous => Some(Instant::now() + security.auth_timeout),
        };
        if let Some(Value::Object(m)) = hook_session.as_deref_mut() {
            m.insert("id".into(), json!(session.id.0));
        }
        let mut client = Self {
            session,
            identity,
            anonymous_ok,
            limiter: MessageLimiter::new(&security.rate),
            deadline,
            current: None,
            namespace: credentials.namespace,
            hook_session,
        };
        if let Some(name) = credentials.name
            && client.identity.user().is_none()
            && let Err(e) = ctx.hub.rename(&client.session, &name)
        {
            ctx.hub.disconnect(&client.session);
            return Err(Refusal::hub(&e));
        }
        client.join_granted(ctx, granted).await;
        Ok((client, rx))
    }

    /// Joins the rooms the backend's `connect` answer lists (server-side
    /// joins: no `join` hook, no permission check). A room that cannot be
    /// joined is logged and skipped.
    async fn join_granted(&mut self, ctx: Ctx<'_>, rooms: Vec<String>) {
        for mut room in rooms {
            if self.qualify(&mut room).is_err() {
                tracing::info!(room, "granted room refused: namespace prefix");
                continue;
            }
            if let Err(e) = ctx.hub.join(&self.session, &room, None, None).await {
                tracing::info!(room, error = %e, "granted room not joined");
            }
        }
    }

    /// The hub session.
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Must the client still authenticate before anything else?
    pub(crate) fn needs_auth(&self) -> bool {
        !self.identity.is_allowed(self.anonymous_ok)
    }

    /// Authenticated, with a token or by the backend?
    pub(crate) fn is_authenticated(&self) -> bool {
        !matches!(self.identity, Identity::Anonymous)
    }

    /// When the transport must call [`Client::deadline_passed`].
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The deadline passed: the backend's `refresh` hook may extend a
    /// session it admitted; otherwise an expired session is closed.
    pub(crate) async fn deadline_passed(&mut self, ctx: Ctx<'_>) -> Deadline {
        let expires_at = match &self.identity {
            Identity::Anonymous => return Deadline::AuthTimeout,
            Identity::Token(_) => None,
            Identity::Backend(b) => b.expires_at,
        };
        if let Some(at) = expires_at
            && Instant::now() + REFRESH_MARGIN < instant_of(at)
            && let Some(extended) = self.refresh(ctx, at).await
        {
            return extended;
        }
        self.session.close(prise_hub::CloseReason::AuthExpired);
        Deadline::Expired
    }

    /// Sets the room of the single-room API (after a recovery).
    pub(crate) fn set_current_room(&mut self, room: Option<Arc<str>>) {
        self.current = room;
    }

    /// The hub's name of a room the client names.
    fn qualify(&self, room: &mut String) -> Result<(), Refusal> {
        let Some(ns) = &self.namespace else {
            return Ok(());
        };
        if room.starts_with('/') {
            return Err(Refusal::prefixed_room(room));
        }
        if ns != ROOT_NAMESPACE {
            *room = full_room(ns, room);
        }
        Ok(())
    }

    /// The session's own personal room: its token's room list does not
    /// apply to it.
    fn is_own_room(&self, room: &str) -> bool {
        personal_owner(room).is_some_and(|owner| owner == self.session.user().id)
    }

    /// The room's policy lets clients publish?
    fn check_client_publish(ctx: Ctx<'_>, room: &str) -> Result<(), Refusal> {
        match ctx.hub.room_policy(room) {
            Ok(p) if !p.client_publish => Err(Refusal::client_publish(room)),
            _ => Ok(()),
        }
    }

    fn denied(&self, d: Denied, room: &str) -> Refusal {
        match d {
            Denied::AuthRequired => Refusal::auth_required(self.session.transport),
            Denied::Forbidden => Refusal::forbidden_room(room),
        }
    }

    /// The checks that come before the hub: rate, authentication, the
    /// token's room permissions, the room's and the namespace's policy.
    /// Synchronous, so a refusal costs no wait.
    fn admit(&mut self, ctx: Ctx<'_>, req: &Request) -> Result<(), Refusal> {
        if !self.limiter.check() {
            return Err(Refusal::rate_limited());
        }
        if !req.is_open() && !self.identity.is_allowed(self.anonymous_ok) {
            return Err(Refusal::auth_required(self.session.transport));
        }
        let anon = self.anonymous_ok;
        let check = match req {
            Request::Join { room, .. }
            | Request::History { room, .. }
            | Request::Presence { room, .. }
                if self.is_own_room(room) =>
            {
                Ok(())
            }
            Request::Join { room, .. }
            | Request::History { room, .. }
            | Request::Presence { room, .. } => self
                .identity
                .check_join(anon, room)
                .map_err(|d| (d, room.as_str())),
            Request::Publish { room, .. } => match self.target(room) {
                Some(r) => {
                    Self::check_client_publish(ctx, r)?;
                    self.identity.check_publish(anon, r).map_err(|d| (d, r))
                }
                None => Ok(()),
            },
            Request::Emit { room, .. } => {
                Self::check_client_publish(ctx, room)?;
                self.identity
                    .check_publish(anon, room)
                    .map_err(|d| (d, room.as_str()))
            }
            Request::Relay {
                event,
                wants_answer,
                ..
            } => {
                return match self.relay_policy(ctx) {
                    Some(Relay::Rooms) => Ok(()),
                    Some(Relay::Hook) if *wants_answer => Ok(()),
                    Some(Relay::Hook) => Err(Refusal::rpc_without_ack(event)),
                    Some(Relay::Deny) | None => Err(Refusal::unknown_event(event)),
                };
            }
            _ => Ok(()),
        };
        check.map_err(|(d, room)| self.denied(d, room))
    }

    fn relay_policy(&self, ctx: Ctx<'_>) -> Option<Relay> {
        let ns = self.namespace.as_deref().unwrap_or(ROOT_NAMESPACE);
        ctx.hub.config().policies.namespace(ns).map(|n| n.relay)
    }

    fn target<'t>(&'t self, target: &'t Target) -> Option<&'t str> {
        match target {
            Target::Room(r) => Some(r),
            Target::Current => self.current.as_deref(),
        }
    }

    /// Answers one request: the checks, then the hub call.
    pub(crate) async fn apply(&mut self, ctx: Ctx<'_>, mut req: Request) -> Reply {
        if let Some(room) = req.room_mut()
            && let Err(r) = self.qualify(room)
        {
            req = Request::Malformed(r);
        }
        if let Err(r) = self.admit(ctx, &req) {
            return Reply::Refused(r);
        }
        match self.call(ctx, req).await {
            Ok(reply) => reply,
            Err(e) => Reply::Refused(Refusal::hub(&e)),
        }
    }

    async fn call(&mut self, ctx: Ctx<'_>, req: Request) -> Result<Reply, HubError> {
        let hub = ctx.hub;
        let session = &self.session;
        Ok(match req {
            Request::Malformed(r) => Reply::Refused(r),
            Request::Ping(token) => Reply::Pong(token),
            Request::Time => Reply::Time(hub.clock().now_ms()),
            Request::Help => Reply::Help,
            Request::Quit => Reply::Bye,
            Request::Authenticate(token) => self.authenticate(ctx, &token),
            Request::Anonymous(Some(_)) | Request::Rename(_) if self.is_authenticated() => {
                Reply::Refused(Refusal::name_from_token())
            }
            Request::Anonymous(_) if !self.anonymous_ok && !self.is_authenticated() => {
                Reply::Ended(auth_failed(&AuthError::BadClaims(
                    "a token is required on this server".into(),
                )))
            }
            Request::Anonymous(None) => Reply::Named(session.user()),
            Request::Anonymous(Some(name)) | Request::Rename(name) => {
                Reply::Named(hub.rename(session, &name)?)
            }
            Request::Join {
                room,
                since,
                epoch,
                name,
                switch,
            } => {
                if !self.is_own_room(&room) {
                    let mut fields = Map::new();
                    fields.insert("room".into(), Value::String(room.clone()));
                    if let Err(r) = self.ask(ctx, HookKind::Join, Some(&room), fields).await {
                        return Ok(Reply::Refused(r));
                    }
                }
                if let Some(n) = name
                    && !self.is_authenticated()
                {
                    hub.rename(session, &n)?;
                }
                if switch
                    && let Some(previous) = self.current.take()
                    && *previous != *room
                {
                    let _ = hub.leave(session, &previous);
                }
                let mut joined = hub.join(session, &room, since, epoch.as_ref()).await?;
                if switch {
                    self.current = Some(Arc::clone(&joined.room));
                }
                if !hub.room_policy(&room).is_ok_and(|p| p.presence) {
                    joined.members = prise_proto::presence::Page::default();
                }
                Reply::Joined(joined)
            }
            Request::Leave(room) => {
                hub.leave(session, &room)?;
                if self.current.as_deref() == Some(room.as_str()) {
                    self.current = None;
                }
                Reply::Left(room)
            }
            Request::Publish { room, content } => {
                let Some(room) = self.target(&room) else {
                    return Err(HubError::NotMember("(none: use joinRoom first)".into()));
                };
                let content = match self.ask_publish(ctx, room, "message", content).await {
                    Ok(c) => c,
                    Err(r) => return Ok(Reply::Refused(r)),
                };
                Reply::Published(hub.publish(&self.session, room, content).await?)
            }
            Request::Emit { room, event, data } => {
                let data = match self.ask_publish(ctx, &room, &event, data).await {
                    Ok(d) => d,
                    Err(r) => return Ok(Reply::Refused(r)),
                };
                Reply::Published(
                    hub.publish_event(&self.session, &room, Event::named(event, data))
                        .await?,
                )
            }
            Request::Relay {
                event, mut args, ..
            } if self.relay_policy(ctx) == Some(Relay::Hook) => {
                let data = if args.len() == 1 {
                    args.pop().unwrap_or_default()
                } else {
                    Value::Array(args)
                };
                self.rpc(ctx, event, data).await
            }
            Request::Relay { event, args, .. } => self.relay(ctx, event, args).await?,
            Request::Rpc { method, data } => self.rpc(ctx, method, data).await,
            Request::Typing { room, on } => {
                if let Some(room) = self.target(&room) {
                    hub.typing(session, room, on)?;
                }
                Reply::Nothing
            }
            Request::Presence { room, after, limit } => {
                let after = match after.as_deref().map(Cursor::decode).transpose() {
                    Ok(c) => c,
                    Err(e) => return Ok(Reply::Refused(Refusal::bad_cursor(e))),
                };
                let page = if hub.room_policy(&room)?.presence {
                    hub.presence_page(&room, after.as_ref(), limit)
                } else {
                    prise_proto::presence::Page::default()
                };
                Reply::Presence { room, page }
            }
            Request::History { room, since, limit } => {
                let limit = limit.unwrap_or(DEFAULT_HISTORY);
                let (epoch, page) = hub.history(&room, since, limit).await?;
                Reply::History { room, epoch, page }
            }
            Request::Rooms => {
                let mut rooms = hub.rooms(ROOMS_LISTED);
                if let Some(c) = self.identity.claims() {
                    rooms.retain(|r| c.may_join(&r.name));
                }
                Reply::Rooms(rooms)
            }
        })
    }

    /// Relays a Socket.IO event to every room the session is in where
    /// clients may publish, its personal rooms excepted (those are for the
    /// API). One argument is the event's data; zero or several are kept as
    /// a list. Answered once every message is committed.
    async fn relay(
        &mut self,
        ctx: Ctx<'_>,
        event: String,
        mut args: Vec<Value>,
    ) -> Result<Reply, HubError> {
        let hub = ctx.hub;
        let rooms: Vec<Arc<str>> = self
            .session
            .rooms()
            .into_iter()
            .filter(|r| {
                !prise_hub::policy::split_room(r)
                    .is_some_and(|(_, local)| local.starts_with(PERSONAL_PREFIX))
            })
            .collect();
        let open: Vec<&Arc<str>> = rooms
            .iter()
            .filter(|r| hub.room_policy(r).is_ok_and(|p| p.client_publish))
            .collect();
        if open.is_empty() {
            return Ok(Reply::Refused(match rooms.first() {
                Some(r) => Refusal::client_publish(r),
                None => Refusal::no_rooms(),
            }));
        }
        let several = args.len() != 1;
        let data = if several {
            Value::Array(args)
        } else {
            args.pop().unwrap_or_default()
        };
        let mut sent = Vec::with_capacity(open.len());
        for room in open {
            let data = match self.ask_publish(ctx, room, &event, data.clone()).await {
                Ok(d) => d,
                Err(r) => return Ok(Reply::Refused(r)),
            };
            let mut e = Event::named(event.clone(), data);
            e.args = several;
            sent.push(hub.publish_event(&self.session, room, e).await?);
        }
        Ok(Reply::Relayed(sent))
    }

    /// A first authentication, or a refresh of the session's token.
    fn authenticate(&mut self, ctx: Ctx<'_>, token: &str) -> Reply {
        let auth = &ctx.security.auth;
        let result = match &self.identity {
            Identity::Backend(_) => Err(AuthError::BadClaims(
                "admitted by the backend: its refresh hook extends the connection".into(),
            )),
            Identity::Token(current) => auth.refresh(current, token),
            Identity::Anonymous if !self.session.rooms().is_empty() => Err(AuthError::BadClaims(
                "authenticate before joining rooms".into(),
            )),
            Identity::Anonymous => auth.verify(token),
        };
        match result {
            Ok(claims) => {
                let user = claims.user();
                if !self.is_authenticated() {
                    ctx.hub.set_user(&self.session, user.clone());
                }
                self.deadline = Some(until(&claims));
                let exp = claims.exp;
                self.identity = Identity::Token(claims);
                Reply::Authenticated { user, exp }
            }
            Err(e) => Reply::Ended(auth_failed(&e)),
        }
    }
}

/// A refused token, counted once.
fn auth_failed(e: &AuthError) -> Refusal {
    crate::security::ratelimit::refused("auth_failed");
    Refusal::auth(e)
}
