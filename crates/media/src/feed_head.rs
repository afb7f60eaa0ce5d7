//! The feed's first page, shared by every viewer: the newest public, ready videos are the same
//! rows for everyone (only `viewerHasLiked` is personal, and counts are live), so they are
//! read once and kept in the cache port under one key: each replica's near cache answers
//! from memory, and every write that can change the list drops the key on every replica.
//! Each process keeps the rows decoded beside the bytes they came from, so a request that
//! finds the same bytes clones its page's rows instead of parsing all of them.
//!
//! Staleness: a write that changes the list (publish, edit, delete, visibility, processing
//! state, an owner's deletion) drops the head at once, here and on the other replicas (the
//! cache's invalidation channel); the persisted view counts the reconciler flushes are at
//! most [`TTL`] old. A fill whose read began before a drop is refused by the cache, so a slow
//! read never brings an old list back.

use crate::shared::{Memo, Shared};
use crate::video::Video;
use flick_platform::cache::Cache;
use std::sync::Arc;
use std::time::Duration;

/// Rows kept: pages of up to `ROWS - 1` videos (the extra row says whether more follow).
pub const ROWS: u64 = 51;
/// How long the head is served without a write dropping it.
pub const TTL: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct FeedHead {
    shared: Shared,
    decoded: Arc<Memo<Vec<Video>>>,
}

impl FeedHead {
    pub fn new(cache: Cache) -> Self {
        Self { shared: Shared::new(cache, "feed", TTL), decoded: Default::default() }
    }

    /// The first `limit + 1` rows of the feed, from the shared head when `limit` fits in it;
    /// `read(n)` reads `n` rows from the database otherwise (and on a miss, `ROWS` of them).
    pub async fn first_rows<F, Fut, E>(&self, limit: u64, read: F) -> Result<Vec<Video>, E>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Vec<Video>, E>>,
    {
        if limit + 1 > ROWS {
            return read(limit + 1).await;
        }
        let rows = self.shared.get_decoded("head", &self.decoded, || read(ROWS)).await?;
        Ok(rows.iter().take(limit as usize + 1).cloned().collect())
    }

    /// Drops the head on every replica: the list may have changed.
    pub async fn changed(&self) {
        self.shared.changed("head").await;
    }
}
