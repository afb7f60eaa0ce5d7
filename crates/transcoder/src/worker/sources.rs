//! Sources of split jobs kept by a process while it works on their parts: a worker that
//! takes several parts of one video downloads and probes its source once.

use crate::pipeline::SourceInfo;
use std::path::PathBuf;
use std::sync::Arc;

/// Sources kept at most; the oldest goes first (a part still using it keeps its copy).
const KEEP: usize = 3;

/// A downloaded, probed source in its own scratch directory (removed when the last user
/// drops it; its lock keeps other workers' sweeps away meanwhile).
pub(crate) struct CachedSource {
    pub(crate) path: PathBuf,
    pub(crate) info: SourceInfo,
    pub(super) _dir: tempfile::TempDir,
    pub(super) _alive: std::fs::File,
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

    pub(super) async fn forget(&self, video_id: &str, job_id: &str) {
        let key = key(video_id, job_id);
        self.entries.lock().await.retain(|(k, _)| *k != key);
    }
}
