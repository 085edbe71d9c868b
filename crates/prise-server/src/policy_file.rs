//! The policy tables of the configuration file: `[[namespaces]]` and
//! `[[rooms]]` (see [`prise_hub::policy`] for what they mean). They have no
//! flags: they are lists of tables, read from the same `--config` file as
//! the settings, checked by `prise config check`, and shown with their
//! defaults by `prise config default`.

use crate::config_file::ConfigFileError;
use prise_hub::policy::{NamespacePolicy, Policies, RoomRule};
use std::path::Path;

/// The keys of the file that hold policies, not settings.
pub const POLICY_KEYS: [&str; 2] = ["namespaces", "rooms"];

/// The policy part of `prise config default`: every key with its default,
/// commented out (without a table, `/` is the only namespace and every
/// room has the default policy).
pub const DEFAULT_POLICIES: &str = r#"
# Namespaces: room spaces. "/" exists without a table (a table changes its
# policy); any other namespace exists only with one. Socket.IO clients
# connect to it (io("http://host/game")); TCP and WebSocket clients name its
# rooms /game:room. Unknown namespaces are refused (UNKNOWN_NAMESPACE).
#
# [[namespaces]]
# name = "/"
# # Socket.IO events outside the hub's vocabulary: "deny" (refused, the
# # default), "rooms" (broadcast to the rooms the sender is in, name and
# # arguments unchanged, acked once committed) or "hook" (an RPC: an event
# # that asks for an ack is answered by the backend's rpc hook).
# relay = "deny"
# # Whether the sender of an event gets it too (io.emit) or not (socket.to).
# echo = true
# # Rooms every Socket.IO socket of the namespace joins on connect;
# # "user:{user}" is the user's personal room.
# auto_join = []
# # The backend URL of this namespace's hooks (overrides --hook-url;
# # unset: --hook-url), e.g.
# # hook_url = "http://127.0.0.1:8000/hooks"

# Room policies, by a glob on the full room name (namespace included for
# rooms not in "/", e.g. "/game:*"); the first rule that matches wins, a
# room no rule matches gets these defaults.
#
# [[rooms]]
# match = "*"
# # "durable" (stored, with offsets) or "none" (ephemeral: never stored, no
# # offset, missed rather than disconnected by a member whose queue is full).
# history = "durable"
# # Members tracked and listed (join answers, presence).
# presence = true
# # Joins and leaves announced to the members.
# join_leave = true
# # Clients may publish and emit here (false: only the HTTP API; clients
# # are refused FORBIDDEN).
# client_publish = true
# # Most distinct users in the room; 0: no limit. Beyond it a join is
# # refused ROOM_FULL.
# max_members = 0
"#;

/// Reads the policies of the file at `path`.
///
/// # Errors
/// An unreadable, oversized or invalid file; a policy table with an
/// unknown key or a bad value.
pub fn policies(path: &Path) -> Result<Policies, ConfigFileError> {
    policies_from_str(&crate::config_file::read_file(path)?, path)
}

/// The policies of a file's text.
///
/// # Errors
/// As [`policies`].
pub fn policies_from_str(text: &str, path: &Path) -> Result<Policies, ConfigFileError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigFileError::Parse {
                path: path.to_owned(),
                message: e.to_string().trim_end().to_owned(),
            })?;
    let bad = |key: &str, e: &dyn std::fmt::Display| ConfigFileError::Policy {
        path: path.to_owned(),
        message: format!("[[{key}]]: {}", e.to_string().trim_end()),
    };
    let namespaces: Vec<NamespacePolicy> = match table.remove("namespaces") {
        Some(v) => v.try_into().map_err(|e| bad("namespaces", &e))?,
        None => Vec::new(),
    };
    let rooms: Vec<RoomRule> = match table.remove("rooms") {
        Some(v) => v.try_into().map_err(|e| bad("rooms", &e))?,
        None => Vec::new(),
    };
    Policies::new(namespaces, rooms).map_err(|e| ConfigFileError::Policy {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prise_hub::policy::{History, Relay};

    fn parse(text: &str) -> Result<Policies, String> {
        policies_from_str(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn tables_become_policies() {
        let p = parse(
            r#"
            http = "127.0.0.1:0"
            [[namespaces]]
            name = "/"
            relay = "rooms"
            echo = false
            auto_join = ["lobby", "user:{user}"]
            [[namespaces]]
            name = "/game"
            relay = "hook"
            [[rooms]]
            match = "cursor:*"
            history = "none"
            [[rooms]]
            match = "news"
            client_publish = false
            max_members = 3
            "#,
        )
        .unwrap();
        let root = p.namespace("/").unwrap();
        assert_eq!((root.relay, root.echo), (Relay::Rooms, false));
        assert_eq!(root.auto_join, ["lobby", "user:{user}"]);
        assert_eq!(p.namespace("/game").unwrap().relay, Relay::Hook);
        assert_eq!(p.room("cursor:9").history, History::None);
        assert!(!p.room("news").client_publish);
        assert_eq!(p.room("news").max_members, 3);
        assert_eq!(p.room("other"), &prise_hub::policy::RoomPolicy::default());
    }

    #[test]
    fn bad_tables_are_refused_with_their_key() {
        let e = parse("[[rooms]]\nmatch = \"a\"\nhistory = \"sometimes\"").unwrap_err();
        assert!(e.contains("[[rooms]]") && e.contains("sometimes"), "{e}");
        let e = parse("[[rooms]]\nmatch = \"a\"\nmax_member = 1").unwrap_err();
        assert!(e.contains("max_member"), "{e}");
        let e = parse("[[namespaces]]\nname = \"game\"").unwrap_err();
        assert!(e.contains("namespace `game`"), "{e}");
        let e = parse("[[namespaces]]\nrelay = \"rooms\"").unwrap_err();
        assert!(e.contains("name"), "{e}");
        let e = parse("rooms = 3").unwrap_err();
        assert!(e.contains("[[rooms]]"), "{e}");
    }

    #[test]
    fn the_defaults_text_is_commented_out_and_equals_no_policy() {
        assert!(
            DEFAULT_POLICIES
                .lines()
                .all(|l| l.is_empty() || l.starts_with('#'))
        );
        let uncommented: String = DEFAULT_POLICIES
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let p = parse(&uncommented).unwrap();
        let d = Policies::default();
        assert_eq!(p.namespace("/"), d.namespace("/"));
        assert_eq!(p.room("anything"), d.room("anything"));
    }
}
