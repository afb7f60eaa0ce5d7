//! A job's lease while it runs: renewed by a heartbeat, and how it can end before the job.

use crate::domain::now_ms;
use crate::store;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Aborts the heartbeat when the job ends, however it ends.
pub(super) struct Heartbeat(pub(super) tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a job's lease ended before the job did (cancelled when it happens).
#[derive(Clone)]
pub(super) struct LeaseEnd {
    /// Another worker holds it now (ours had lapsed).
    pub(super) taken: CancellationToken,
    /// It could not be renewed (database errors) before it lapsed.
    pub(super) stalled: CancellationToken,
}

/// Renews the job's lease every third of its length. A lease that is no longer ours (it
/// lapsed and another worker took it), or that could not be renewed before it lapsed, stops
/// the job: `job` and the matching token of `end` are cancelled.
pub(super) async fn heartbeat(
    db: flick_platform::db::sea_orm::DatabaseConnection,
    video_id: String,
    holder: String,
    lease: Duration,
    job: CancellationToken,
    end: LeaseEnd,
) {
    let mut renewed = Instant::now();
    let why = loop {
        tokio::time::sleep(lease / 3).await;
        let expires = now_ms() + lease.as_millis() as i64;
        match store::renew_job_lease(&db, &video_id, &holder, expires).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => break end.taken,
            Err(e) if renewed.elapsed() < lease => {
                tracing::warn!(video.id = %video_id, error = %e, "job lease not renewed; will try again");
            }
            Err(_) => break end.stalled,
        }
    };
    why.cancel();
    job.cancel();
}
