//! The transcode job: from `upload.completed` (or a retry) to renditions in the object store
//! and `transcode.completed`, or `transcode.failed` with a readable reason. This module takes
//! a delivery, holds the job's lease (`lease`) and settles the outcome; the run itself
//! (download, probe, encode, thumbnails, store) is in `transcode`, with its scratch directory
//! (`scratch`), segments published while it encodes (`early`) and its progress (`progress`).
//!
//! A job is acknowledged only after its outputs are stored and its completion committed, so
//! a worker killed mid-job loses nothing: the broker hands the job to another worker, which
//! writes the same keys again. Broken input fails at once (and goes to the dead-letter
//! queue); other failures are retried with backoff, up to `job_attempts`.

mod early;
mod lease;
mod parts;
mod progress;
mod scratch;
mod sources;
mod transcode;

pub(crate) use sources::SourceCache;

use crate::domain::{Playback, Stage, Transcoder, VideoStatus, now_ms};
use crate::pipeline::MediaError;
use crate::store::{self, Claim};
use flick_platform::bus::{Delivery, HandlerError, envelope};
use flick_platform::db::sea_orm::TransactionTrait;
use flick_platform::outbox;
use flick_proto::events::v1 as events;
use lease::{Heartbeat, LeaseEnd, heartbeat};
use prost::Message as _;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The durable work queue of transcode jobs, fed by these events.
pub const JOBS_QUEUE: &str = "transcoder.jobs";
/// A video's job (`upload.completed`, `transcode.requested`), the parts of a long video's
/// job and their assembly (see `parts`).
pub const JOB_EVENTS: &[&str] = &["upload.completed", "transcode.requested", "transcode.part", "transcode.assemble"];

/// Why a job did not finish.
enum JobError {
    /// The input cannot be transcoded: fail the video now, dead-letter the job.
    Invalid(String),
    /// Anything else: retry; fail the video when attempts run out.
    Transient(String),
}

impl From<MediaError> for JobError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Invalid(reason) => JobError::Invalid(reason),
            other => JobError::Transient(other.to_string()),
        }
    }
}

fn transient(context: &str) -> impl Fn(String) -> JobError + '_ {
    move |e| JobError::Transient(format!("{context}: {e}"))
}

impl Transcoder {
    /// Where jobs' scratch directories live.
    fn scratch_root(&self) -> std::path::PathBuf {
        self.config.work_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Clears the scratch directories of jobs whose worker died: called before this
    /// process's workers take their first job.
    pub(crate) fn sweep_dead_jobs_scratch(&self) {
        scratch::sweep_stale_scratch(&self.scratch_root());
    }

    /// Handles one job delivery from the queue.
    pub async fn handle_job(&self, delivery: Delivery, shutdown: CancellationToken) -> Result<(), HandlerError> {
        let e = &delivery.envelope;
        let (video_id, job_id) = match e.r#type.as_str() {
            "upload.completed" => {
                let p = events::UploadCompleted::decode(e.payload.as_slice())
                    .map_err(|err| HandlerError::Reject(format!("undecodable job: {err}")))?;
                (p.video_id, p.upload_id)
            }
            "transcode.requested" => {
                let p = events::TranscodeRequested::decode(e.payload.as_slice())
                    .map_err(|err| HandlerError::Reject(format!("undecodable job: {err}")))?;
                (p.video_id, p.job_id)
            }
            "transcode.part" => return self.handle_part(delivery, shutdown).await,
            "transcode.assemble" => return self.handle_assemble(delivery).await,
            other => return Err(HandlerError::Reject(format!("not a transcode job: {other}"))),
        };
        let Some(video) = store::video(&self.db, &video_id).await.map_err(|e| HandlerError::Retry(e.to_string()))?
        else {
            tracing::info!(video.id = %video_id, "job for a deleted video; dropped");
            return Ok(());
        };
        if video.job_id.as_deref() != Some(job_id.as_str()) {
            tracing::info!(video.id = %video_id, job.id = %job_id, "job superseded by a newer upload; dropped");
            return Ok(());
        }
        if video.status == VideoStatus::Ready {
            tracing::info!(video.id = %video_id, job.id = %job_id, "job already completed; nothing to do");
            return Ok(());
        }
        if video.status == VideoStatus::Failed {
            // A stale copy (a duplicate delivery that waited while the job failed): failed is
            // final until the owner retries, which queues the job again.
            tracing::info!(video.id = %video_id, job.id = %job_id, "job already failed; dropped");
            return Ok(());
        }
        let sources = video.source_objects();
        if sources.is_empty() {
            return Err(HandlerError::Reject("the video has no source".into()));
        }
        let retry = |e: flick_platform::db::sea_orm::DbErr| HandlerError::Retry(e.to_string());

        // At most one run of a job at a time, whoever holds its delivery: a lease in the
        // database, renewed by a heartbeat while the job runs.
        let holder = uuid::Uuid::now_v7().to_string();
        let lease = Duration::from_secs(self.config.job_lease_seconds.max(3));
        let lease_ms = lease.as_millis() as i64;
        let cap = i64::from(self.config.user_jobs_in_flight);
        let claim_now =
            || store::claim_job(&self.db, &video_id, &job_id, &video.owner_id, &holder, now_ms(), lease_ms, cap);
        let mut claim = claim_now().await.map_err(retry)?;
        if let Claim::Held { expires_at_ms } = claim {
            metrics::counter!("transcode_jobs_deferred_total", "reason" => "held").increment(1);
            // A second delivery of a job under a live lease: its worker died (the broker gave
            // the job back when its connection dropped) or still runs it (a consumer timeout).
            // Deferred at once, the job would wait behind the whole queue; instead this
            // delivery waits for the lease to lapse and asks once more, so a dead worker's job
            // runs again within a lease, and a live one's heartbeat keeps the copy out.
            let lapses_in = Duration::from_millis((expires_at_ms - now_ms()).clamp(0, lease_ms) as u64 + 100);
            tokio::select! {
                _ = tokio::time::sleep(lapses_in) => {
                    // The other run may have ended meanwhile: a settled job is dropped, as above.
                    let current = store::video(&self.db, &video_id).await.map_err(retry)?;
                    if !current.is_some_and(|v| {
                        v.job_id.as_deref() == Some(job_id.as_str())
                            && !matches!(v.status, VideoStatus::Ready | VideoStatus::Failed)
                    }) {
                        tracing::info!(video.id = %video_id, job.id = %job_id, "job settled while its copy waited; dropped");
                        return Ok(());
                    }
                    claim = claim_now().await.map_err(retry)?;
                }
                _ = shutdown.cancelled() => {}
            }
        }
        let runs = match claim {
            Claim::Claimed { runs } => runs,
            Claim::Held { .. } => {
                return Err(HandlerError::Defer("the job is running on another worker".into()));
            }
            Claim::OwnerBusy => {
                metrics::counter!("transcode_jobs_deferred_total", "reason" => "owner_busy").increment(1);
                return Err(HandlerError::Defer(
                    "its owner has enough jobs running and another user's job waits".into(),
                ));
            }
        };
        let release = |uncount: bool| {
            let (db, video_id, holder) = (self.db.clone(), video_id.clone(), holder.clone());
            async move {
                if let Err(e) = store::release_job_lease(&db, &video_id, &holder, uncount).await {
                    tracing::warn!(video.id = %video_id, error = %e, "job lease not released; it lapses");
                }
            }
        };
        // Finished by the previous holder between the first look and the claim?
        match store::video(&self.db, &video_id).await {
            Ok(Some(v)) if !v.status.is_final() && v.job_id.as_deref() == Some(job_id.as_str()) => {}
            Ok(_) => {
                release(true).await;
                return Ok(());
            }
            Err(e) => {
                release(true).await;
                return Err(HandlerError::Retry(e.to_string()));
            }
        }
        let attempts = self.config.job_attempts.max(1);
        // Every start counts, a redelivery after a crash too: a job that kills its worker
        // ends after `job_attempts` starts instead of being redelivered for ever.
        let attempt = delivery.attempt.max(u32::try_from(runs).unwrap_or(u32::MAX));
        if runs > i64::from(attempts) {
            let reason = format!(
                "transcoding was started {} times and never finished (its worker crashed or was killed); giving up",
                runs - 1
            );
            self.fail(&video_id, &video.owner_id, &job_id, Some(&holder), lease_ms, &reason)
                .await
                .map_err(HandlerError::Retry)?;
            release(false).await;
            metrics::counter!("transcode_jobs_total", "outcome" => "crashed").increment(1);
            return Err(HandlerError::Reject(reason));
        }
        if let Err(e) =
            store::set_status(&self.db, &video_id, &job_id, VideoStatus::Processing, None, None, now_ms()).await
        {
            release(true).await;
            return Err(HandlerError::Retry(e.to_string()));
        }
        tracing::info!(video.id = %video_id, job.id = %job_id, run = runs, "transcode started");

        let job = shutdown.child_token();
        let lease_end = LeaseEnd { taken: CancellationToken::new(), stalled: CancellationToken::new() };
        let _heartbeat = Heartbeat(tokio::spawn(heartbeat(
            self.db.clone(),
            video_id.clone(),
            holder.clone(),
            lease,
            job.clone(),
            lease_end.clone(),
        )));
        let started = Instant::now();
        // The whole job (download, encode, thumbnails and storyboard, upload) in one budget.
        let budget = Duration::from_secs(self.config.job_timeout_seconds);
        let outcome = match tokio::time::timeout(
            budget,
            self.transcode(&video_id, &video.owner_id, &job_id, &sources, job.clone()),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(JobError::Transient(format!("the job ran past its time limit of {} s", budget.as_secs()))),
        };
        drop(_heartbeat);
        if lease_end.taken.is_cancelled() {
            // Another worker took the lease over (ours lapsed) with its own delivery of the
            // job: the job is its now, and this delivery is done.
            tracing::warn!(video.id = %video_id, job.id = %job_id, "job lease lost to another worker; stopped");
            return Ok(());
        }
        if lease_end.stalled.is_cancelled() {
            // The database took no heartbeat for a whole lease: another delivery may have
            // started the job meanwhile. Not a failure of the job: this delivery goes back to
            // the queue (its next start finds the lease lapsed, or held by that other run).
            tracing::warn!(video.id = %video_id, job.id = %job_id, "job lease not renewed in time; stopped and requeued");
            release(true).await;
            return Err(HandlerError::Requeue("the job's lease could not be renewed".into()));
        }
        if shutdown.is_cancelled() && outcome.is_err() {
            // Stopped by a deploy, not failed: the next worker starts it again, uncounted.
            let _ = store::set_status(&self.db, &video_id, &job_id, VideoStatus::Queued, None, None, now_ms()).await;
            release(true).await;
            return Err(HandlerError::Requeue("the worker is shutting down".into()));
        }
        let outcome_label = match &outcome {
            Ok(Some(_)) => "completed",
            Ok(None) => "split",
            Err(JobError::Invalid(_)) => "invalid",
            Err(JobError::Transient(_)) => "retried",
        };
        metrics::counter!("transcode_jobs_total", "outcome" => outcome_label).increment(1);
        metrics::histogram!("transcode_job_duration_seconds", "outcome" => outcome_label)
            .record(started.elapsed().as_secs_f64());
        let settled = match outcome {
            // Split into parts: the video stays PROCESSING until the last part's assembly.
            Ok(None) => Ok(()),
            Ok(Some(playback)) => {
                self.complete(&video_id, &job_id, Some(&holder), lease_ms, &playback).await.map_err(HandlerError::Retry).map(|()| {
                    tracing::info!(video.id = %video_id, duration_ms = started.elapsed().as_millis() as u64, "transcode completed");
                })
            }
            Err(JobError::Invalid(reason)) => self
                .fail(&video_id, &video.owner_id, &job_id, Some(&holder), lease_ms, &reason)
                .await
                .map_err(HandlerError::Retry)
                .and(Err(HandlerError::Reject(reason))),
            Err(JobError::Transient(error)) if attempt >= attempts => {
                let reason = format!("transcoding failed {attempts} times; last error: {error}");
                self.fail(&video_id, &video.owner_id, &job_id, Some(&holder), lease_ms, &reason)
                    .await
                    .map_err(HandlerError::Retry)
                    .and(Err(HandlerError::Reject(error)))
            }
            Err(JobError::Transient(error)) => {
                self.publish_stage(&video_id, &video.owner_id, Stage::Queued, 0.0, Some(&error));
                Err(HandlerError::Retry(error))
            }
        };
        release(false).await;
        settled
    }

    /// Whether this run still holds the job's lease, renewed in `txn` so a take-over waits for
    /// it: a run whose lease lapsed and was taken over must not settle the job (the run that
    /// took it over does).
    async fn still_holds(
        &self,
        txn: &impl flick_platform::db::sea_orm::ConnectionTrait,
        video_id: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<bool, String> {
        let held =
            store::renew_job_lease(txn, video_id, holder, now_ms() + lease_ms).await.map_err(|e| e.to_string())?;
        if !held {
            tracing::warn!(video.id = %video_id, "job lease taken over by another run; this run's result is dropped");
        }
        Ok(held)
    }

    /// Records READY with the playback description and `transcode.completed`, atomically;
    /// `holder`: the run's lease, which it must still hold (none for a split job's assembly).
    async fn complete(
        &self,
        video_id: &str,
        job_id: &str,
        holder: Option<&str>,
        lease_ms: i64,
        playback: &Playback,
    ) -> Result<(), String> {
        let txn = self.db.begin().await.map_err(|e| e.to_string())?;
        if let Some(holder) = holder
            && !self.still_holds(&txn, video_id, holder, lease_ms).await?
        {
            return Ok(());
        }
        if !store::set_status(&txn, video_id, job_id, VideoStatus::Ready, None, Some(playback), now_ms())
            .await
            .map_err(|e| e.to_string())?
        {
            // Superseded meanwhile (a newer upload or a deletion): its own job takes over.
            return Ok(());
        }
        let base = format!("/video/{video_id}");
        let payload = events::TranscodeCompleted {
            video_id: video_id.to_string(),
            duration_seconds: playback.duration_seconds,
            renditions: playback
                .renditions
                .iter()
                .map(|r| events::Rendition {
                    name: r.name.clone(),
                    width: r.width,
                    height: r.height,
                    bitrate: r.bitrate,
                })
                .collect(),
            hls_path: format!("{base}/hls/master.m3u8"),
            dash_path: format!("{base}/dash/manifest.mpd"),
            thumbnail_path: playback.poster.as_ref().map(|p| format!("{base}/hls/{p}")).unwrap_or_default(),
            storyboard_path: playback.storyboard.as_ref().map(|p| format!("{base}/hls/{p}")).unwrap_or_default(),
        };
        outbox::record(&txn, &envelope("transcode.completed", video_id, crate::NAME, payload.encode_to_vec()))
            .await
            .map_err(|e| e.to_string())?;
        txn.commit().await.map_err(|e| e.to_string())?;
        self.relay.notify();
        let owner = store::video(&self.db, video_id).await.ok().flatten().map(|v| v.owner_id).unwrap_or_default();
        self.publish_stage(video_id, &owner, Stage::Ready, 100.0, None);
        Ok(())
    }

    /// Records FAILED with the reason and `transcode.failed`, atomically (`holder` as for
    /// `complete`).
    async fn fail(
        &self,
        video_id: &str,
        owner_id: &str,
        job_id: &str,
        holder: Option<&str>,
        lease_ms: i64,
        reason: &str,
    ) -> Result<(), String> {
        let txn = self.db.begin().await.map_err(|e| e.to_string())?;
        if let Some(holder) = holder
            && !self.still_holds(&txn, video_id, holder, lease_ms).await?
        {
            return Ok(());
        }
        tracing::warn!(video.id = %video_id, reason = %reason, "transcode failed");
        if store::set_status(&txn, video_id, job_id, VideoStatus::Failed, Some(reason), None, now_ms())
            .await
            .map_err(|e| e.to_string())?
        {
            let payload = events::TranscodeFailed { video_id: video_id.to_string(), reason: reason.to_string() };
            outbox::record(&txn, &envelope("transcode.failed", video_id, crate::NAME, payload.encode_to_vec()))
                .await
                .map_err(|e| e.to_string())?;
        }
        txn.commit().await.map_err(|e| e.to_string())?;
        self.relay.notify();
        self.publish_stage(video_id, owner_id, Stage::Failed, 0.0, Some(reason));
        Ok(())
    }
}
