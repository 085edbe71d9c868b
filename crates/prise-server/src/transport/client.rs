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
//! A Socket.IO socket names the rooms of its namespace (`a` in `/game`);
//! [`Client::apply`] qualifies them into the hub's names (`/game:a`)
//! first. TCP and WebSocket clients use the hub's names as they are.

use super::DEFAULT_HISTORY;
use super::reply::{Refusal, Reply};
use super::request::{Request, Target};
use crate::security::Security;
use crate::security::auth::{AuthError, Claims, Denied, Identity};
use crate::security::ratelimit::MessageLimiter;
use prise_hub::policy::{PERSONAL_PREFIX, ROOT_NAMESPACE, Relay, full_room, personal_owner};
use prise_hub::{Event, Hub, HubError, Outbound, Session, Transport};
use prise_proto::presence::Cursor;
use serde_json::Value;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most rooms a `rooms` request lists.
const ROOMS_LISTED: usize = 1000;

/// What the request layer needs of the server.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) hub: &'a Hub,
    pub(crate) security: &'a Security,
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
    /// The client's address (behind a trusted balancer, the one it named).
    pub(crate) remote: Option<std::net::SocketAddr>,
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
}

fn until(claims: &Claims) -> Instant {
    Instant::now() + claims.remaining(SystemTime::now())
}

impl Client {
    /// Admits a client: checks its token, opens its hub session and takes
    /// its display name.
    ///
    /// # Errors
    /// The refusal to send before closing: a bad token, no token where the
    /// handshake needs one, a full server, a bad name.
    pub(crate) fn connect(
        ctx: Ctx<'_>,
        transport: Transport,
        credentials: Credentials,
        handshake: Handshake,
    ) -> Result<(Self, mpsc::Receiver<Outbound>), Refusal> {
        let security = ctx.security;
        let anonymous_ok = match transport {
            Transport::Tcp => security.anonymous_tcp,
            Transport::Ws | Transport::SocketIo | Transport::Sse => security.anonymous_http,
        };
        let identity = match credentials.token {
            Some(token) => match security.auth.verify(&token) {
                Ok(claims) => Identity::Token(claims),
                Err(e) => return Err(auth_failed(&e)),
            },
            None if anonymous_ok || handshake == Handshake::Later => Identity::Anonymous,
            None => {
                crate::security::ratelimit::refused("auth_failed");
                return Err(Refusal::token_required());
            }
        };
        let (session, rx) = ctx
            .hub
            .connect_from(
                transport,
                identity.claims().map(Claims::user),
                credentials.remote,
            )
            .map_err(|e| Refusal::hub(&e))?;
        let deadline = match &identity {
            Identity::Token(c) => Some(until(c)),
            Identity::Anonymous if anonymous_ok => None,
            Identity::Anonymous => Some(Instant::now() + security.auth_timeout),
        };
        let client = Self {
            session,
            identity,
            anonymous_ok,
            limiter: MessageLimiter::new(&security.rate),
            deadline,
            current: None,
            namespace: credentials.namespace,
        };
        if let Some(name) = credentials.name
            && client.identity.claims().is_none()
            && let Err(e) = ctx.hub.rename(&client.session, &name)
        {
            ctx.hub.disconnect(&client.session);
            return Err(Refusal::hub(&e));
        }
        Ok((client, rx))
    }

    /// The hub session.
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Authenticated with a token?
    pub(crate) fn is_authenticated(&self) -> bool {
        self.identity.claims().is_some()
    }

    /// When the transport must call [`Client::deadline_passed`].
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The deadline passed: an expired token closes the session.
    pub(crate) fn deadline_passed(&self) -> Deadline {
        if self.is_authenticated() {
            self.session.close(prise_hub::CloseReason::AuthExpired);
            Deadline::Expired
        } else {
            Deadline::AuthTimeout
        }
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
            Request::Relay { event, .. } => {
                let ns = self.namespace.as_deref().unwrap_or(ROOT_NAMESPACE);
                let relay = ctx.hub.config().policies.namespace(ns).map(|n| n.relay);
                return match relay {
                    Some(Relay::Rooms) => Ok(()),
                    Some(Relay::Hook) => Err(Refusal::relay_hook()),
                    Some(Relay::Deny) | None => Err(Refusal::unknown_event(event)),
                };
            }
            _ => Ok(()),
        };
        check.map_err(|(d, room)| self.denied(d, room))
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
                Reply::Published(hub.publish(session, room, content).await?)
            }
            Request::Emit { room, event, data } => Reply::Published(
                hub.publish_event(session, &room, Event::named(event, data))
                    .await?,
            ),
            Request::Relay { event, args } => self.relay(ctx, event, args).await?,
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
        let event = if args.len() == 1 {
            Event::named(event, args.pop().unwrap_or_default())
        } else {
            let mut e = Event::named(event, Value::Array(args));
            e.args = true;
            e
        };
        let mut sent = Vec::with_capacity(open.len());
        for room in open {
            sent.push(
                hub.publish_event(&self.session, room, event.clone())
                    .await?,
            );
        }
        Ok(Reply::Relayed(sent))
    }

    /// A first authentication, or a refresh of the session's token.
    fn authenticate(&mut self, ctx: Ctx<'_>, token: &str) -> Reply {
        let auth = &ctx.security.auth;
        let result = match &self.identity {
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
