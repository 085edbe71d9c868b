//! Reading a room's history: up to what this node has delivered when the
//! room is in memory, up to the store's head otherwise; and deleting it
//! (the control API).

use super::Hub;
use crate::HubError;
use crate::policy::EPHEMERAL_EPOCH;
use crate::store::{HistoryPage, HistoryQuery};
use prise_proto::message::{Epoch, Offset};

impl Hub {
    /// Deletes a room's stored messages (every node's, the store being
    /// shared in a cluster). The room keeps its epoch and offsets: the next
    /// message takes the next offset, and a client resuming from before the
    /// deletion is told its replay is not complete. Answers how many
    /// messages were deleted (none in an ephemeral room).
    ///
    /// # Errors
    /// A bad name, an unknown namespace, a store failure.
    pub async fn clear_history(&self, room: &str) -> Result<usize, HubError> {
        let policy = self.room_policy(room)?;
        if !policy.durable() {
            return Ok(0);
        }
        Ok(self.inner.store.clear(room).await?)
    }

    /// A room's history: the last `count` messages, or those after `since`.
    /// An ephemeral room has none: an empty, complete page.
    ///
    /// # Errors
    /// [`HubError::NoRoom`] for a room that never existed; a bad name or
    /// an unknown namespace; a store failure.
    pub async fn history(
        &self,
        room: &str,
        since: Option<Offset>,
        count: usize,
    ) -> Result<(Epoch, HistoryPage), HubError> {
        if !self.room_policy(room)?.durable() {
            let page = HistoryPage {
                messages: Vec::new(),
                complete: true,
            };
            return Ok((Epoch(EPHEMERAL_EPOCH.to_owned()), page));
        }
        let count = count.min(self.inner.config.limits.max_history);
        let known = {
            let shard = self.shard(room);
            shard
                .rooms
                .get(room)
                .map(|r| (r.epoch.clone(), r.delivered))
        };
        let (epoch, until) = match known {
            Some(k) => k,
            None => {
                let head = self
                    .inner
                    .store
                    .room_head(room, false)
                    .await?
                    .ok_or_else(|| HubError::NoRoom(room.to_owned()))?;
                (head.epoch, head.last)
            }
        };
        let query = match since {
            Some(after) => HistoryQuery::After {
                after,
                until,
                limit: count,
            },
            None => HistoryQuery::Last { count, until },
        };
        let page = self.inner.store.read(room, query).await?;
        Ok((epoch, page))
    }
}
