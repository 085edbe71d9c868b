//! A room's distinct users, kept sorted so that a page of them costs
//! O(log n + page) and a count costs O(1), whatever the room's size.
//!
//! Two indexes over the same `Arc<User>`s: by id (membership, renames) and
//! by (name, id) (pages after a [`Cursor`]). A member costs two map entries
//! and shares its user with the session; nothing room-sized is copied per
//! member or per join.

use prise_proto::message::User;
use prise_proto::presence::{Cursor, Page};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// A user ordered by (name, id), bytewise: the order pages are listed in.
#[derive(Debug, Clone)]
struct Sorted(Arc<User>);

impl Sorted {
    fn key(&self) -> (&str, &str) {
        (&self.0.name, &self.0.id)
    }
}

impl PartialEq for Sorted {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Sorted {}

impl PartialOrd for Sorted {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sorted {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Distinct users of a room, by id and in sort order.
#[derive(Debug, Default)]
pub(super) struct Roster {
    by_id: HashMap<String, Arc<User>>,
    sorted: BTreeSet<Sorted>,
}

impl Roster {
    /// Number of users, in O(1).
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Adds `user`, or updates their name; answers whether they are new.
    pub(super) fn insert(&mut self, user: Arc<User>) -> bool {
        let new = match self.by_id.insert(user.id.clone(), Arc::clone(&user)) {
            Some(old) => {
                self.sorted.remove(&Sorted(old));
                false
            }
            None => true,
        };
        self.sorted.insert(Sorted(user));
        new
    }

    /// Removes the user with `id`, answering them if they were here.
    pub(super) fn remove(&mut self, id: &str) -> Option<Arc<User>> {
        let old = self.by_id.remove(id)?;
        self.sorted.remove(&Sorted(Arc::clone(&old)));
        Some(old)
    }

    /// Every user, in no particular order.
    pub(super) fn users(&self) -> impl Iterator<Item = &Arc<User>> {
        self.by_id.values()
    }

    /// At most `limit` users after `after`, in sort order, with the count
    /// and the cursor to the rest. A cursor naming a user who has since left
    /// still works: the page starts after where they sorted.
    pub(super) fn page(&self, after: Option<&Cursor>, limit: usize) -> Page {
        let start = match after {
            Some(c) => Bound::Excluded(Sorted(Arc::new(User {
                id: c.id.clone(),
                name: c.name.clone(),
            }))),
            None => Bound::Unbounded,
        };
        let mut range = self.sorted.range((start, Bound::Unbounded));
        let members: Vec<User> = range
            .by_ref()
            .take(limit)
            .map(|s| User::clone(&s.0))
            .collect();
        let more = range.next().is_some();
        Page {
            next: members.last().filter(|_| more).map(Cursor::after),
            members,
            count: self.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: &str) -> Arc<User> {
        Arc::new(User {
            id: id.into(),
            name: name.into(),
        })
    }

    #[test]
    fn pages_walk_the_sorted_list_once() {
        let mut r = Roster::default();
        for (id, name) in [("3", "carol"), ("1", "alice"), ("2", "bob"), ("0", "bob")] {
            assert!(r.insert(user(id, name)));
        }
        let p = r.page(None, 3);
        let names: Vec<_> = p.members.iter().map(|u| (&*u.name, &*u.id)).collect();
        assert_eq!(names, [("alice", "1"), ("bob", "0"), ("bob", "2")]);
        assert_eq!(p.count, 4);
        let p = r.page(p.next.as_ref(), 3);
        assert_eq!(p.members.len(), 1);
        assert!(p.complete());
        // Exactly one page: no cursor.
        assert!(r.page(None, 4).complete());
    }

    #[test]
    fn renames_move_a_user_and_leaves_keep_cursors_valid() {
        let mut r = Roster::default();
        r.insert(user("1", "alice"));
        r.insert(user("2", "bob"));
        assert!(!r.insert(user("1", "zed")));
        assert_eq!(r.len(), 2);
        let p = r.page(None, 1);
        assert_eq!(p.members[0].name, "bob");
        let cursor = p.next.clone();
        assert_eq!(r.remove("2").map(|u| u.name.clone()), Some("bob".into()));
        let rest = r.page(cursor.as_ref(), 10);
        assert_eq!(rest.members[0].name, "zed");
        assert!(r.remove("2").is_none());
    }
}
