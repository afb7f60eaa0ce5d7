//! Each signed-in viewer's likes and followed channels, kept whole in the cache port so a
//! page's `viewerHasLiked` and `viewerIsSubscribed` cost no statement: the rows, counts and
//! comments of a page are shared by every viewer, and these sets were what was left per
//! request.
//!
//! Staleness: the viewer's like, unlike, subscribe or unsubscribe drops their set at once on
//! the replica that took it and, over the cache's invalidation channel, on the others (see
//! [`crate::shared`]); [`TTL`] bounds a lost invalidation. A viewer with more than [`MOST`]
//! members is marked as such and asked of the database per request, so an entry stays small.

use crate::shared::Shared;
use flick_platform::cache::Cache;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

/// How long an entry is served without the viewer's own change dropping it.
pub const TTL: Duration = Duration::from_secs(30);
/// The most members one entry holds.
pub const MOST: u64 = 500;

#[derive(Serialize, Deserialize)]
struct Entry {
    /// `None`: more than `MOST`, not kept.
    members: Option<Vec<String>>,
}

/// One kind of set per viewer (`likes`: video ids, `follows`: channel ids).
#[derive(Clone)]
pub struct ViewerSets {
    shared: Shared,
}

/// What the cache knows of a viewer's set.
pub enum Known {
    All(HashSet<String>),
    /// Too many to keep: ask the database for the ids at hand.
    TooMany,
}

impl ViewerSets {
    pub fn new(cache: Cache, kind: &'static str) -> Self {
        Self { shared: Shared::new(cache, kind, TTL) }
    }

    /// The viewer's set; `read_all(n)` reads at most `n` members from the database on a miss.
    pub async fn of<F, Fut, E>(&self, viewer: &str, read_all: F) -> Result<Known, E>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Vec<String>, E>>,
    {
        let entry: Entry = self
            .shared
            .get(viewer, || async {
                let rows = read_all(MOST + 1).await?;
                Ok(Entry { members: (rows.len() as u64 <= MOST).then_some(rows) })
            })
            .await?;
        Ok(match entry.members {
            Some(ids) => Known::All(ids.into_iter().collect()),
            None => Known::TooMany,
        })
    }

    /// Of `ids`, those in the viewer's set: from the cached set, or `among(ids)` (the
    /// database) for a viewer with too many to keep.
    pub async fn among<A, AFut, F, Fut, E>(
        &self,
        viewer: &str,
        ids: &[String],
        read_all: F,
        among: A,
    ) -> Result<Vec<String>, E>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Vec<String>, E>>,
        A: FnOnce() -> AFut,
        AFut: Future<Output = Result<Vec<String>, E>>,
    {
        match self.of(viewer, read_all).await? {
            Known::All(set) => Ok(ids.iter().filter(|id| set.contains(*id)).cloned().collect()),
            Known::TooMany => among().await,
        }
    }

    /// Drops the viewer's entry on every replica: they changed their set.
    pub async fn changed(&self, viewer: &str) {
        self.shared.changed(viewer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    async fn of(sets: &ViewerSets, viewer: &str, stored: u64, reads: &AtomicU64) -> Known {
        sets.of(viewer, |most| async move {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>((0..stored.min(most)).map(|i| format!("v{i}")).collect())
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_viewer_with_too_many_members_is_marked_and_the_rest_kept_whole() {
        let sets = ViewerSets::new(Cache::memory(), "likes");
        let reads = AtomicU64::new(0);
        for _ in 0..2 {
            let Known::All(few) = of(&sets, "few", 3, &reads).await else { panic!("three members are kept") };
            assert_eq!(few.len(), 3);
            assert!(matches!(of(&sets, "many", MOST + 1, &reads).await, Known::TooMany));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2, "each viewer read once, the marker kept too");
        sets.changed("few").await;
        of(&sets, "few", 4, &reads).await;
        assert_eq!(reads.load(Ordering::SeqCst), 3, "a change drops the entry");
    }
}
