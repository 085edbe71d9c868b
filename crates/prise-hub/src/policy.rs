//! Policies: what a namespace and a room allow, chosen by name and by
//! pattern, with defaults that equal the hub's behaviour without any.
//!
//! # Room names and namespaces
//!
//! Namespaces are room spaces. A room of namespace `/` is named as it is
//! (`general`); a room `a` of namespace `/game` is named `/game:a` in the
//! hub, on every transport that addresses rooms by name (TCP lines,
//! WebSocket JSON, the HTTP API) and in every store. A Socket.IO socket of
//! `/game` says `a`; the transport adds the prefix. `/` always exists; any
//! other namespace only when a policy names it.
//!
//! # Room policies
//!
//! `[[rooms]]` rules are tried in order against the full room name (a glob:
//! `*` any run of characters, `?` one character); the first match wins, and
//! a room no rule matches gets [`RoomPolicy::default`]: stored, tracked,
//! announced, open to clients, without a member cap.
//!
//! # Personal rooms
//!
//! `user:<id>` (in any namespace) is the personal room of user `<id>`: only
//! that user's sessions join it, and the HTTP API publishes to it like to
//! any room, so a backend reaches one user on all their devices.

use serde::Deserialize;

/// The namespace every server serves.
pub const ROOT_NAMESPACE: &str = "/";
/// The prefix of a personal room's name.
pub const PERSONAL_PREFIX: &str = "user:";
/// The placeholder of `auto_join` for the user's id (`"user:{user}"`).
pub const USER_PLACEHOLDER: &str = "{user}";
/// The epoch of every ephemeral room: it has no history to resume.
pub const EPHEMERAL_EPOCH: &str = "none";
/// Longest namespace name, in bytes.
pub const MAX_NAMESPACE: usize = 64;

/// What a namespace does with a Socket.IO event outside the hub's own
/// vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relay {
    /// Refuse it (`BAD_REQUEST unknown event`): the default.
    #[default]
    Deny,
    /// Broadcast it to the rooms the sender is in, name and arguments
    /// unchanged.
    Rooms,
    /// An RPC answered by the backend's `rpc` hook when the event asks for
    /// an ack (`socket.emitWithAck`); without an ack it is refused.
    Hook,
}

/// Whether a room's messages are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum History {
    /// Stored, with offsets, replayed and recovered: the default.
    #[default]
    Durable,
    /// Ephemeral: never stored, no offset; a member whose queue is full
    /// misses the message (it is not disconnected).
    None,
}

/// The policy of one namespace (`[[namespaces]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NamespacePolicy {
    /// `/` or `/name`.
    pub name: String,
    /// Socket.IO events outside the vocabulary (default [`Relay::Deny`]).
    #[serde(default)]
    pub relay: Relay,
    /// Whether the sender of a relayed or emitted event gets it too
    /// (`io.emit` semantics, the default) or not (`socket.to(room)`).
    #[serde(default = "yes")]
    pub echo: bool,
    /// Rooms every Socket.IO socket of the namespace joins on connect;
    /// `{user}` stands for the user's id (`"user:{user}"`: the personal room).
    #[serde(default)]
    pub auto_join: Vec<String>,
    /// The backend URL of this namespace's hooks (overrides `--hook-url`).
    #[serde(default)]
    pub hook_url: Option<String>,
}

impl NamespacePolicy {
    /// A namespace with the default policy.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            relay: Relay::default(),
            echo: true,
            auto_join: Vec::new(),
            hook_url: None,
        }
    }
}

/// The policy of the rooms one `[[rooms]]` rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomPolicy {
    /// Stored or ephemeral (default [`History::Durable`]).
    pub history: History,
    /// Members tracked and listed (default true): false lists no members in
    /// join answers and presence, and announces no joins and leaves.
    pub presence: bool,
    /// Joins and leaves announced to the members (default true).
    pub join_leave: bool,
    /// Clients may publish and emit (default true); false: only the HTTP API.
    pub client_publish: bool,
    /// Most distinct users in the room on this node; 0 (the default): no
    /// limit. A join beyond it is refused `ROOM_FULL`.
    pub max_members: usize,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            history: History::default(),
            presence: true,
            join_leave: true,
            client_publish: true,
            max_members: 0,
        }
    }
}

impl RoomPolicy {
    /// Are the room's messages stored?
    pub fn durable(&self) -> bool {
        self.history == History::Durable
    }

    /// Are joins and leaves announced?
    pub fn announces(&self) -> bool {
        self.presence && self.join_leave
    }
}

/// One `[[rooms]]` rule: a pattern and the policy of the rooms it matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawRule")]
#[non_exhaustive]
pub struct RoomRule {
    /// A glob on the full room name (`cursor:*`, `/game:*`), the `match`
    /// key.
    pub pattern: String,
    /// The policy.
    pub policy: RoomPolicy,
}

/// A `[[rooms]]` table as written: `match` beside the policy's keys, every
/// other key refused (serde cannot refuse unknown keys of a flattened
/// struct).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    pattern: String,
    #[serde(default)]
    history: History,
    #[serde(default = "yes")]
    presence: bool,
    #[serde(default = "yes")]
    join_leave: bool,
    #[serde(default = "yes")]
    client_publish: bool,
    #[serde(default)]
    max_members: usize,
}

impl From<RawRule> for RoomRule {
    fn from(r: RawRule) -> Self {
        Self {
            pattern: r.pattern,
            policy: RoomPolicy {
                history: r.history,
                presence: r.presence,
                join_leave: r.join_leave,
                client_publish: r.client_publish,
                max_members: r.max_members,
            },
        }
    }
}

impl RoomRule {
    /// A rule: rooms matching `pattern` get `policy`.
    pub fn new(pattern: impl Into<String>, policy: RoomPolicy) -> Self {
        Self {
            pattern: pattern.into(),
            policy,
        }
    }
}

/// Why a set of policies was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A namespace name that is not `/` or `/name`.
    #[error(
        "namespace `{0}`: must be / or /name (at most {MAX_NAMESPACE} bytes, no `:` or spaces)"
    )]
    BadNamespace(String),
    /// Two tables for one namespace.
    #[error("namespace `{0}` is configured twice")]
    DuplicateNamespace(String),
    /// A room rule with an empty pattern.
    #[error("a [[rooms]] rule needs a non-empty `match`")]
    EmptyPattern,
    /// An `auto_join` room that is not a room name.
    #[error("namespace `{namespace}`: auto_join room `{room}` is not a room name")]
    BadAutoJoin {
        /// The namespace.
        namespace: String,
        /// The room.
        room: String,
    },
}

/// Every namespace and room policy of a server. The default has namespace
/// `/` only and no room rules: the hub's behaviour without a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    namespaces: Vec<NamespacePolicy>,
    rooms: Vec<RoomRule>,
    default_room: RoomPolicy,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            namespaces: vec![NamespacePolicy::new(ROOT_NAMESPACE)],
            rooms: Vec::new(),
            default_room: RoomPolicy::default(),
        }
    }
}

fn yes() -> bool {
    true
}

fn valid_namespace(name: &str) -> bool {
    name == ROOT_NAMESPACE
        || (name.len() > 1
            && name.len() <= MAX_NAMESPACE
            && name.starts_with('/')
            && !name[1..].contains(['/', ':'])
            && !name.chars().any(|c| c.is_whitespace() || c.is_control()))
}

impl Policies {
    /// Checks and builds a set of policies. Namespace `/` exists whether
    /// or not it has a table.
    ///
    /// # Errors
    /// A [`PolicyError`] naming the bad entry.
    pub fn new(
        namespaces: Vec<NamespacePolicy>,
        rooms: Vec<RoomRule>,
    ) -> Result<Self, PolicyError> {
        let mut all: Vec<NamespacePolicy> = Vec::with_capacity(namespaces.len() + 1);
        for ns in namespaces {
            if !valid_namespace(&ns.name) {
                return Err(PolicyError::BadNamespace(ns.name));
            }
            if all.iter().any(|n| n.name == ns.name) {
                return Err(PolicyError::DuplicateNamespace(ns.name));
            }
            for room in &ns.auto_join {
                let bad = room.is_empty()
                    || room.starts_with('/')
                    || room.chars().any(|c| c.is_whitespace() || c.is_control());
                if bad {
                    return Err(PolicyError::BadAutoJoin {
                        namespace: ns.name.clone(),
                        room: room.clone(),
                    });
                }
            }
            all.push(ns);
        }
        if !all.iter().any(|n| n.name == ROOT_NAMESPACE) {
            all.insert(0, NamespacePolicy::new(ROOT_NAMESPACE));
        }
        if rooms.iter().any(|r| r.pattern.is_empty()) {
            return Err(PolicyError::EmptyPattern);
        }
        Ok(Self {
            namespaces: all,
            rooms,
            default_room: RoomPolicy::default(),
        })
    }

    /// Every namespace served, `/` included.
    pub fn namespaces(&self) -> impl Iterator<Item = &NamespacePolicy> {
        self.namespaces.iter()
    }

    /// The room rules, in the order they are tried.
    pub fn room_rules(&self) -> &[RoomRule] {
        &self.rooms
    }

    /// The policy of a namespace, `None` when it is not served.
    pub fn namespace(&self, name: &str) -> Option<&NamespacePolicy> {
        self.namespaces.iter().find(|n| n.name == name)
    }

    /// The policy of a room, by its full name: the first rule that matches,
    /// else the default.
    pub fn room(&self, room: &str) -> &RoomPolicy {
        self.rooms
            .iter()
            .find(|r| glob(&r.pattern, room))
            .map_or(&self.default_room, |r| &r.policy)
    }

    /// The namespace of a full room name, `None` when the name starts with
    /// `/` but names no namespace that is served (`/nope:a`, `/x`).
    pub fn namespace_of(&self, room: &str) -> Option<&NamespacePolicy> {
        let (ns, _) = split_room(room)?;
        self.namespace(ns)
    }
}

/// A full room name's namespace and its name within it: `general` is
/// (`/`, `general`), `/game:a` is (`/game`, `a`). `None` for a name that
/// starts with `/` without a `:` after the namespace.
pub fn split_room(room: &str) -> Option<(&str, &str)> {
    if !room.starts_with('/') {
        return Some((ROOT_NAMESPACE, room));
    }
    let colon = room.find(':')?;
    Some((&room[..colon], &room[colon + 1..]))
}

/// The full name of room `local` of namespace `ns`.
pub fn full_room(ns: &str, local: &str) -> String {
    if ns == ROOT_NAMESPACE {
        local.to_owned()
    } else {
        format!("{ns}:{local}")
    }
}

/// The user a personal room belongs to (`user:<id>` in any namespace).
pub fn personal_owner(room: &str) -> Option<&str> {
    split_room(room)?.1.strip_prefix(PERSONAL_PREFIX)
}

/// Does `text` match `pattern` (see [`prise_proto::glob`])?
pub fn glob(pattern: &str, text: &str) -> bool {
    prise_proto::glob::matches(pattern, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_split_into_namespace_and_name() {
        assert_eq!(split_room("general"), Some(("/", "general")));
        assert_eq!(split_room("/game:a"), Some(("/game", "a")));
        assert_eq!(split_room("/game:a:b"), Some(("/game", "a:b")));
        assert_eq!(split_room("/game"), None);
        assert_eq!(full_room("/", "a"), "a");
        assert_eq!(full_room("/game", "a"), "/game:a");
        assert_eq!(personal_owner("user:42"), Some("42"));
        assert_eq!(personal_owner("/game:user:42"), Some("42"));
        assert_eq!(personal_owner("lobby"), None);
    }

    #[test]
    fn the_first_matching_rule_wins_and_defaults_are_todays() {
        let none = RoomPolicy {
            history: History::None,
            ..RoomPolicy::default()
        };
        let full = RoomPolicy {
            max_members: 2,
            ..RoomPolicy::default()
        };
        let p = Policies::new(
            vec![NamespacePolicy::new("/game")],
            vec![
                RoomRule {
                    pattern: "cursor:*".into(),
                    policy: none.clone(),
                },
                RoomRule {
                    pattern: "*".into(),
                    policy: full.clone(),
                },
            ],
        )
        .unwrap();
        assert_eq!(p.room("cursor:1"), &none);
        assert_eq!(p.room("other"), &full);
        assert!(p.namespace("/").is_some() && p.namespace("/game").is_some());
        assert!(p.namespace_of("/nope:a").is_none());
        assert!(p.namespace_of("/game:a").is_some());
        let d = Policies::default();
        assert_eq!(d.room("x"), &RoomPolicy::default());
        assert!(d.room("x").durable() && d.room("x").announces());
        let root = d.namespace("/").unwrap();
        assert_eq!((root.relay, root.echo), (Relay::Deny, true));
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in ["game", "/a:b", "/a/b", "/", "/a b"] {
            let r = Policies::new(
                vec![NamespacePolicy::new(bad), NamespacePolicy::new(bad)],
                vec![],
            );
            assert!(r.is_err(), "{bad}");
        }
        let mut ns = NamespacePolicy::new("/g");
        ns.auto_join = vec!["a b".into()];
        assert!(matches!(
            Policies::new(vec![ns], vec![]),
            Err(PolicyError::BadAutoJoin { .. })
        ));
    }
}
