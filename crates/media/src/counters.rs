//! Likes, comments and views of videos. The `likes` and `comments` rows are the truth; the
//! cache holds live counts (`media:likes:{id}`, `media:comments:{id}`), moved by committed
//! writes only while present and otherwise recomputed from the rows on a read. Views have no
//! rows: `videos.view_count` plus the cache's pending delta (`media:views:pending:{id}`).
//! A reconciler recomputes changed ("dirty") videos, writes cache and columns (the persisted,
//! sortable copy) and flushes pending views; a sweep over every video corrects any drift.

use crate::config::MediaConfig;
use crate::store;
use flick_platform::cache::Cache;
use flick_platform::db::sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Videos whose counts changed since the reconciler last looked (a set in the cache, so any
/// replica's reconciler picks them up).
const DIRTY: &str = "media:counters:dirty";
/// Videos reconciled per batch, and checked per sweep step.
const BATCH: usize = 500;

fn likes_key(id: &str) -> String {
    format!("media:likes:{id}")
}

fn comments_key(id: &str) -> String {
    format!("media:comments:{id}")
}

fn pending_views_key(id: &str) -> String {
    format!("media:views:pending:{id}")
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Likes,
    Comments,
}

/// Counts as readers see them now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub likes: i64,
    pub comments: i64,
    /// Views not yet flushed into `videos.view_count`.
    pub pending_views: i64,
}

#[derive(Clone)]
pub struct Counters {
    db: DatabaseConnection,
    cache: Cache,
    ttl: Duration,
    /// Dirty marks the cache could not take; this replica's reconciler retries them.
    local_dirty: Arc<Mutex<HashSet<String>>>,
    /// Where the sweep continues (a video id; empty: from the start).
    sweep_after: Arc<Mutex<String>>,
}

impl Counters {
    pub fn new(db: DatabaseConnection, cache: Cache, cfg: &MediaConfig) -> Self {
        Self {
            db,
            cache,
            ttl: Duration::from_secs(cfg.counter_ttl_seconds.max(1)),
            local_dirty: Arc::default(),
            sweep_after: Arc::default(),
        }
    }

    /// After a like, unlike or comment write has committed: moves the cached count if there
    /// is one (never creates it: a fresh one could miss rows) and marks the video dirty.
    pub async fn changed(&self, video_id: &str, kind: Kind, by: i64) {
        let key = match kind {
            Kind::Likes => likes_key(video_id),
            Kind::Comments => comments_key(video_id),
        };
        if let Err(e) = self.cache.incr_if_present(&key, by).await {
            // The row is written; the reconciler rewrites the cached count once it can.
            tracing::warn!(video.id = video_id, error = %e, "cache unavailable: counter left for the reconciler");
        }
        self.mark_dirty(&[video_id.to_string()]).await;
    }

    /// Drops cached counts that changed in bulk (a deleted user's likes and comments).
    pub async fn invalidate(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let keys: Vec<String> = ids.iter().flat_map(|id| [likes_key(id), comments_key(id)]).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        if let Err(e) = self.cache.take_counters(&keys).await {
            tracing::warn!(error = %e, "cache unavailable: stale counters left for the reconciler");
        }
        self.mark_dirty(ids).await;
    }

    /// One view (`video.viewed`, already deduplicated by the producer). Without the cache it
    /// goes straight into the column.
    pub async fn viewed(&self, video_id: &str) -> Result<(), DbErr> {
        match self.cache.incr(&pending_views_key(video_id), 1).await {
            Ok(_) => {
                self.mark_dirty(&[video_id.to_string()]).await;
                Ok(())
            }
            Err(e) => {
                tracing::debug!(video.id = video_id, error = %e, "cache unavailable: view counted in the database");
                store::add_views(&self.db, video_id, 1).await.map(|_| ())
            }
        }
    }

    async fn mark_dirty(&self, ids: &[String]) {
        let members: Vec<&str> = ids.iter().map(String::as_str).collect();
        if self.cache.set_add(DIRTY, &members).await.is_err() {
            self.local_dirty.lock().expect("dirty lock").extend(ids.iter().cloned());
        }
    }

    fn mark_dirty_locally(&self, ids: impl IntoIterator<Item = String>) {
        self.local_dirty.lock().expect("dirty lock").extend(ids);
    }

    /// Live counts of a page of videos: one cache round trip; misses are counted from the
    /// rows in one statement and cached (set-if-absent, with a TTL). Without the cache, the
    /// rows answer (and views are the column's).
    pub async fn live(&self, ids: &[String]) -> Result<HashMap<String, Live>, DbErr> {
        let keys: Vec<String> =
            ids.iter().flat_map(|id| [likes_key(id), comments_key(id), pending_views_key(id)]).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let cached = match self.cache.counters(&keys).await {
            Ok(values) => values,
            Err(e) => {
                tracing::debug!(error = %e, "cache unavailable: counts from the database");
                let rows = store::count_rows(&self.db, ids).await?;
                return Ok(rows
                    .into_iter()
                    .map(|(id, (likes, comments))| (id, Live { likes, comments, pending_views: 0 }))
                    .collect());
            }
        };
        let mut live = HashMap::new();
        let mut misses = Vec::new();
        for (id, v) in ids.iter().zip(cached.chunks(3)) {
            if let [Some(likes), Some(comments), pending] = v {
                live.insert(
                    id.clone(),
                    Live { likes: *likes, comments: *comments, pending_views: pending.unwrap_or(0) },
                );
            } else {
                misses.push((id.clone(), v[2].unwrap_or(0)));
            }
        }
        if !misses.is_empty() {
            let ids: Vec<String> = misses.iter().map(|(id, _)| id.clone()).collect();
            let rows = store::count_rows(&self.db, &ids).await?;
            let mut entries = Vec::new();
            for (id, pending_views) in misses {
                let (likes, comments) = rows.get(&id).copied().unwrap_or_default();
                entries.push((likes_key(&id), likes));
                entries.push((comments_key(&id), comments));
                live.insert(id, Live { likes, comments, pending_views });
            }
            let entries: Vec<(&str, i64)> = entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            if let Err(e) = self.cache.set_counters_if_absent(&entries, self.ttl).await {
                tracing::debug!(error = %e, "counts not cached");
            }
        }
        Ok(live)
    }

    /// One reconciler run: every dirty video (in batches), then one sweep step. Returns the
    /// videos reconciled or corrected (their rows' counts were rewritten).
    pub async fn reconcile(&self) -> Result<Vec<String>, DbErr> {
        let mut done = Vec::new();
        loop {
            let ids = self.reconcile_dirty().await?;
            let n = ids.len();
            done.extend(ids);
            if n < BATCH {
                break;
            }
        }
        done.extend(self.sweep().await?);
        Ok(done)
    }

    /// Recomputes a batch of dirty videos from their rows, writes the columns (adding the
    /// pending views, read and reset in the cache: each delta is taken once) and the cache.
    async fn reconcile_dirty(&self) -> Result<Vec<String>, DbErr> {
        let mut ids: HashSet<String> = std::mem::take(&mut *self.local_dirty.lock().expect("dirty lock"));
        match self.cache.set_pop(DIRTY, BATCH).await {
            Ok(popped) => ids.extend(popped),
            Err(e) => tracing::debug!(error = %e, "cache unavailable: reconciling this replica's marks only"),
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.into_iter().collect();
        let pending_keys: Vec<String> = ids.iter().map(|id| pending_views_key(id)).collect();
        let pending_keys: Vec<&str> = pending_keys.iter().map(String::as_str).collect();
        // None: the cache is down, views stay pending until it is back.
        let pending = self.cache.take_counters(&pending_keys).await.ok();
        let views = |i: usize| pending.as_ref().and_then(|p| p[i]).unwrap_or(0);
        let written = async {
            let txn = self.db.begin().await?;
            let counts = store::count_rows(&txn, &ids).await?;
            for (i, id) in ids.iter().enumerate() {
                let (likes, comments) = counts.get(id).copied().unwrap_or_default();
                store::save_counts(&txn, id, likes, comments, views(i)).await?;
            }
            txn.commit().await?;
            Ok::<_, DbErr>(counts)
        }
        .await;
        let counts = match written {
            Ok(counts) => counts,
            Err(e) => {
                // Put the views back for the next run; they were taken, not counted.
                for (i, id) in ids.iter().enumerate() {
                    let n = views(i);
                    if n != 0 && self.cache.incr(&pending_views_key(id), n).await.is_err() {
                        tracing::error!(video.id = %id, views = n, "views lost: neither the database nor the cache took them");
                    }
                }
                self.mark_dirty_locally(ids);
                return Err(e);
            }
        };
        if pending.is_none() || self.cache_counts(&counts).await.is_err() {
            self.mark_dirty_locally(ids.clone());
        }
        Ok(ids)
    }

    async fn cache_counts(
        &self,
        counts: &HashMap<String, (i64, i64)>,
    ) -> Result<(), flick_platform::cache::CacheError> {
        let entries: Vec<(String, i64)> =
            counts.iter().flat_map(|(id, (l, c))| [(likes_key(id), *l), (comments_key(id), *c)]).collect();
        let entries: Vec<(&str, i64)> = entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.cache.set_counters(&entries, self.ttl).await
    }

    /// The next slice of all videos: counts from the rows, compared with the columns and with
    /// cached counts; what differs is rewritten (anti-entropy for anything a dirty mark
    /// missed, e.g. a replica that died before reconciling, or a corrupted cache entry).
    async fn sweep(&self) -> Result<Vec<String>, DbErr> {
        let after = self.sweep_after.lock().expect("sweep lock").clone();
        let slice = store::persisted_counts(&self.db, &after, BATCH as u64).await?;
        let next =
            if slice.len() < BATCH { String::new() } else { slice.last().map(|s| s.0.clone()).unwrap_or_default() };
        *self.sweep_after.lock().expect("sweep lock") = next;
        if slice.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = slice.iter().map(|s| s.0.clone()).collect();
        let counts = store::count_rows(&self.db, &ids).await?;
        let mut fixed = HashSet::new();
        for (id, likes, comments) in &slice {
            let truth = counts.get(id).copied().unwrap_or_default();
            if (*likes, *comments) != truth {
                store::save_counts(&self.db, id, truth.0, truth.1, 0).await?;
                fixed.insert(id.clone());
            }
        }
        let keys: Vec<String> = ids.iter().flat_map(|id| [likes_key(id), comments_key(id)]).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        if let Ok(cached) = self.cache.counters(&keys).await {
            let mut wrong = HashMap::new();
            for (id, v) in ids.iter().zip(cached.chunks(2)) {
                let truth = counts.get(id).copied().unwrap_or_default();
                // Only cached counts are corrected: an absent one is computed on its next read.
                if v[0].is_some_and(|l| l != truth.0) || v[1].is_some_and(|c| c != truth.1) {
                    wrong.insert(id.clone(), truth);
                }
            }
            if !wrong.is_empty() && self.cache_counts(&wrong).await.is_ok() {
                fixed.extend(wrong.into_keys());
            }
        }
        Ok(fixed.into_iter().collect())
    }
}
