//! The feed's first page, shared by every viewer: the newest public, ready videos are the same
//! rows for everyone (only `viewerHasLiked` is personal, and counts are live), so they are
//! read once and kept in the cache port under one key: each replica's near cache answers
//! from memory, and every write that can change the list drops the key on every replica.
//!
//! Staleness: a write that changes the list (publish, edit, delete, visibility, processing
//! state, an owner's deletion) drops the head at once, here and on the other replicas (the
//! cache's invalidation channel); the persisted view counts the reconciler flushes are at
//! most [`TTL`] old. A fill whose read began before a drop is refused by the cache, so a slow
//! read never brings an old list back.

use crate::video::Video;
use flick_platform::cache::{Cache, Lookup};
use std::time::Duration;

const KEY: &str = "media:feed:head";
/// Rows kept: pages of up to `ROWS - 1` videos (the extra row says whether more follow).
pub const ROWS: u64 = 51;
/// How long the head is served without a write dropping it.
pub const TTL: Duration = Duration::from_secs(2);

fn count(result: &'static str) {
    metrics::counter!("media_feed_head_total", "result" => result).increment(1);
}

#[derive(Clone)]
pub struct FeedHead {
    cache: Cache,
}

impl FeedHead {
    pub fn new(cache: Cache) -> Self {
        Self { cache }
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
        let seen = match self.cache.lookup(KEY).await {
            Ok(Lookup::Hit(bytes)) => match serde_json::from_slice::<Vec<Video>>(&bytes) {
                Ok(mut rows) => {
                    count("hit");
                    rows.truncate(limit as usize + 1);
                    return Ok(rows);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "feed head undecodable; read again");
                    None
                }
            },
            Ok(Lookup::Miss(token)) => Some(token),
            Err(e) => {
                tracing::debug!(error = %e, "cache unavailable: feed read from the database");
                None
            }
        };
        count("miss");
        let mut rows = read(ROWS).await?;
        if let Some(token) = seen
            && let Ok(bytes) = serde_json::to_vec(&rows)
            && let Err(e) = self.cache.fill(KEY, &token, &bytes, TTL).await
        {
            tracing::debug!(error = %e, "feed head not cached");
        }
        rows.truncate(limit as usize + 1);
        Ok(rows)
    }

    /// Drops the head on every replica: the list may have changed.
    pub async fn changed(&self) {
        if let Err(e) = self.cache.invalidate(KEY).await {
            // Bounded by the TTL: the next fill after it reads the database again.
            tracing::warn!(error = %e, "feed head not dropped; it expires within {} s", TTL.as_secs());
        }
    }
}
