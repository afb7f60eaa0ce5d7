//! Each signed-in viewer's likes, kept whole in the cache port so a page's `viewerHasLiked`
//! costs no statement: the feed head and a video's counts are shared by every viewer, and a
//! viewer's likes were what was left per request.
//!
//! Staleness: a like or unlike drops the viewer's entry at once on the replica that took it
//! and, over the cache's invalidation channel, on the others (a fill whose read began before
//! the drop is refused, so a slow read never brings the old set back); [`TTL`] bounds it when
//! an invalidation is lost. A viewer with more than [`MOST`] likes is marked as such and asked
//! of the database per request, so an entry stays small.

use flick_platform::cache::{Cache, Lookup};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

/// How long an entry is served without a like or unlike dropping it.
pub const TTL: Duration = Duration::from_secs(30);
/// The most likes one entry holds.
pub const MOST: u64 = 500;

fn key(viewer: &str) -> String {
    format!("media:likes:{viewer}")
}

fn count(result: &'static str) {
    metrics::counter!("media_viewer_likes_total", "result" => result).increment(1);
}

#[derive(Serialize, Deserialize)]
struct Entry {
    /// `None`: more than `MOST`, not kept.
    liked: Option<Vec<String>>,
}

#[derive(Clone)]
pub struct ViewerLikes {
    cache: Cache,
}

/// What the cache knows of a viewer's likes.
pub enum Known {
    All(HashSet<String>),
    /// Too many to keep: ask the database for the ids at hand.
    TooMany,
}

impl ViewerLikes {
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }

    /// The viewer's likes; `read_all(n)` reads at most `n` of them from the database on a miss.
    pub async fn of<F, Fut, E>(&self, viewer: &str, read_all: F) -> Result<Known, E>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Vec<String>, E>>,
    {
        let key = key(viewer);
        let seen = match self.cache.lookup(&key).await {
            Ok(Lookup::Hit(bytes)) => match serde_json::from_slice::<Entry>(&bytes) {
                Ok(entry) => {
                    count("hit");
                    return Ok(known(entry));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "viewer likes undecodable; read again");
                    None
                }
            },
            Ok(Lookup::Miss(token)) => Some(token),
            Err(e) => {
                tracing::debug!(error = %e, "cache unavailable: likes read from the database");
                None
            }
        };
        count("miss");
        let rows = read_all(MOST + 1).await?;
        let entry = Entry { liked: (rows.len() as u64 <= MOST).then_some(rows) };
        if let Some(token) = seen
            && let Ok(bytes) = serde_json::to_vec(&entry)
            && let Err(e) = self.cache.fill(&key, &token, &bytes, TTL).await
        {
            tracing::debug!(error = %e, "viewer likes not cached");
        }
        Ok(known(entry))
    }

    /// Drops the viewer's entry on every replica: they liked or unliked something.
    pub async fn changed(&self, viewer: &str) {
        if let Err(e) = self.cache.invalidate(&key(viewer)).await {
            tracing::warn!(error = %e, "viewer likes not dropped; they expire within {} s", TTL.as_secs());
        }
    }
}

fn known(entry: Entry) -> Known {
    match entry.liked {
        Some(ids) => Known::All(ids.into_iter().collect()),
        None => Known::TooMany,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    async fn of(likes: &ViewerLikes, viewer: &str, stored: u64, reads: &AtomicU64) -> Known {
        likes
            .of(viewer, |most| async move {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>((0..stored.min(most)).map(|i| format!("v{i}")).collect())
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_viewer_with_too_many_likes_is_marked_and_the_rest_kept_whole() {
        let likes = ViewerLikes::new(Cache::memory());
        let reads = AtomicU64::new(0);
        for _ in 0..2 {
            let Known::All(few) = of(&likes, "few", 3, &reads).await else { panic!("three likes are kept") };
            assert_eq!(few.len(), 3);
            assert!(matches!(of(&likes, "many", MOST + 1, &reads).await, Known::TooMany));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2, "each viewer read once, the marker kept too");
        likes.changed("few").await;
        of(&likes, "few", 4, &reads).await;
        assert_eq!(reads.load(Ordering::SeqCst), 3, "a change drops the entry");
    }
}
