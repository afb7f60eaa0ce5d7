//! Sources of split jobs kept by a process while it works on their parts: the worker that
//! split a job keeps the copy it downloaded and probed for the parts it takes; other workers
//! read the stored source where it is, only what their part needs (`part_source` in `parts`), or
//! download it once when they cannot (an older part message, a source in several objects).

use crate::pipeline::{Input, SourceInfo};
use std::sync::Arc;

/// Sources kept at most (beside any a running part still holds); the oldest goes first, and
/// copies of jobs that are over go before a new download.
const KEEP: usize = 2;

/// A probed source: a copy in its own scratch directory (removed when the last user drops
/// it; its lock keeps other workers' sweeps away meanwhile), or the stored object itself.
pub(crate) struct CachedSource {
    pub(crate) input: Input,
    pub(crate) info: SourceInfo,
    pub(super) _copy: Option<(tempfile::TempDir, std::fs::File)>,
}

#[derive(Default)]
pub(crate) struct SourceCache {
    entries: tokio::sync::Mutex<Vec<(String, Arc<CachedSource>)>>,
    /// One download at a time per process: two parts of one video wait for one copy.
    pub(super) downloading: tokio::sync::Mutex<()>,
}

fn key(video_id: &str, job_id: &str) -> String {
    format!("{video_id}/{job_id}")
}

impl SourceCache {
    pub(super) async fn get(&self, video_id: &str, job_id: &str) -> Option<Arc<CachedSource>> {
        let key = key(video_id, job_id);
        self.entries.lock().await.iter().find(|(k, _)| *k == key).map(|(_, s)| s.clone())
    }

    pub(super) async fn keep(&self, video_id: &str, job_id: &str, source: Arc<CachedSource>) {
        let key = key(video_id, job_id);
        let mut entries = self.entries.lock().await;
        entries.retain(|(k, _)| *k != key);
        entries.push((key, source));
        let excess = entries.len().saturating_sub(KEEP);
        entries.drain(..excess);
    }

    /// `(video_id, job_id)` of every copy kept.
    pub(super) async fn keys(&self) -> Vec<(String, String)> {
        self.entries
            .lock()
            .await
            .iter()
            .filter_map(|(k, _)| k.split_once('/').map(|(v, j)| (v.to_string(), j.to_string())))
            .collect()
    }

    pub(super) async fn forget(&self, video_id: &str, job_id: &str) {
        let key = key(video_id, job_id);
        self.entries.lock().await.retain(|(k, _)| *k != key);
    }
}
