//! The transcode job: from `upload.completed` (or a retry) to renditions in the object store
//! and `transcode.completed`, or `transcode.failed` with a readable reason.
//!
//! A job is acknowledged only after its outputs are stored and its completion committed, so
//! a worker killed mid-job loses nothing: the broker hands the job to another worker, which
//! writes the same keys again. Broken input fails at once (and goes to the dead-letter
//! queue); other failures are retried with backoff, up to `job_attempts`.

use crate::domain::{Playback, Rendition, Transcoder, media_prefix, now_ms};
use crate::pipeline::{self, EncodeSettings, MediaError, RungSpec, Tools};
use crate::store::{self, Claim};
use flick_platform::bus::{Delivery, HandlerError, envelope};
use flick_platform::db::sea_orm::TransactionTrait;
use flick_platform::outbox;
use flick_proto::events::v1 as events;
use prost::Message as _;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The durable work queue of transcode jobs, fed by these events.
pub const JOBS_QUEUE: &str = "transcoder.jobs";
pub const JOB_EVENTS: &[&str] = &["upload.completed", "transcode.requested"];

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
        if video.state == "READY" {
            tracing::info!(video.id = %video_id, job.id = %job_id, "job already completed; nothing to do");
            return Ok(());
        }
        if video.state == "FAILED" {
            // A stale copy (a duplicate delivery that waited while the job failed): failed is
            // final until the owner retries, which queues the job again.
            tracing::info!(video.id = %video_id, job.id = %job_id, "job already failed; dropped");
            return Ok(());
        }
        let Some(source_key) = video.source_key.clone() else {
            return Err(HandlerError::Reject("the video has no source".into()));
        };
        let retry = |e: flick_platform::db::sea_orm::DbErr| HandlerError::Retry(e.to_string());

        // At most one run of a job at a time, whoever holds its delivery: a lease in the
        // database, renewed by a heartbeat while the job runs.
        let holder = uuid::Uuid::now_v7().to_string();
        let lease = Duration::from_secs(self.config.job_lease_seconds.max(3));
        let lease_ms = lease.as_millis() as i64;
        let cap = i64::from(self.config.user_jobs_in_flight);
        let claim = store::claim_job(&self.db, &video_id, &job_id, &video.owner_id, &holder, now_ms(), lease_ms, cap)
            .await
            .map_err(retry)?;
        let runs = match claim {
            Claim::Claimed { runs } => runs,
            Claim::Held => {
                // A second delivery of a running job (the broker's consumer timeout, a dropped
                // connection): it waits, and takes over only if the lease lapses.
                metrics::counter!("transcode_jobs_deferred_total", "reason" => "held").increment(1);
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
            Ok(Some(v))
                if !matches!(v.state.as_str(), "READY" | "FAILED") && v.job_id.as_deref() == Some(job_id.as_str()) => {}
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
            self.fail(&video_id, &video.owner_id, &job_id, &holder, lease_ms, &reason)
                .await
                .map_err(HandlerError::Retry)?;
            release(false).await;
            metrics::counter!("transcode_jobs_total", "outcome" => "crashed").increment(1);
            return Err(HandlerError::Reject(reason));
        }
        if let Err(e) = store::set_state(&self.db, &video_id, &job_id, "PROCESSING", None, None, now_ms()).await {
            release(true).await;
            return Err(HandlerError::Retry(e.to_string()));
        }

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
            self.transcode(&video_id, &video.owner_id, &job_id, &source_key, job.clone()),
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
            let _ = store::set_state(&self.db, &video_id, &job_id, "QUEUED", None, None, now_ms()).await;
            release(true).await;
            return Err(HandlerError::Requeue("the worker is shutting down".into()));
        }
        let outcome_label = match &outcome {
            Ok(_) => "completed",
            Err(JobError::Invalid(_)) => "invalid",
            Err(JobError::Transient(_)) => "retried",
        };
        metrics::counter!("transcode_jobs_total", "outcome" => outcome_label).increment(1);
        metrics::histogram!("transcode_job_duration_seconds", "outcome" => outcome_label)
            .record(started.elapsed().as_secs_f64());
        let settled = match outcome {
            Ok(playback) => {
                self.complete(&video_id, &job_id, &holder, lease_ms, &playback).await.map_err(HandlerError::Retry).map(|()| {
                    tracing::info!(video.id = %video_id, duration_ms = started.elapsed().as_millis() as u64, "transcode completed");
                })
            }
            Err(JobError::Invalid(reason)) => self
                .fail(&video_id, &video.owner_id, &job_id, &holder, lease_ms, &reason)
                .await
                .map_err(HandlerError::Retry)
                .and(Err(HandlerError::Reject(reason))),
            Err(JobError::Transient(error)) if attempt >= attempts => {
                let reason = format!("transcoding failed {attempts} times; last error: {error}");
                self.fail(&video_id, &video.owner_id, &job_id, &holder, lease_ms, &reason)
                    .await
                    .map_err(HandlerError::Retry)
                    .and(Err(HandlerError::Reject(error)))
            }
            Err(JobError::Transient(error)) => {
                self.progress(&video_id, &video.owner_id, "queued", 0.0, Some(&error));
                Err(HandlerError::Retry(error))
            }
        };
        release(false).await;
        settled
    }

    /// Downloads, probes, encodes and stores; returns the playback description.
    async fn transcode(
        &self,
        video_id: &str,
        owner_id: &str,
        job_id: &str,
        source_key: &str,
        shutdown: CancellationToken,
    ) -> Result<Playback, JobError> {
        let root = self.config.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&root).map_err(|e| transient("work dir")(e.to_string()))?;
        sweep_stale_scratch(&root);
        let work = tempfile::Builder::new()
            .prefix(SCRATCH_PREFIX)
            .tempdir_in(&root)
            .map_err(|e| transient("work dir")(e.to_string()))?;
        // Held while the job runs: the lock dies with the process, however it dies.
        let _alive = std::fs::File::create(work.path().join(SCRATCH_LOCK))
            .and_then(|f| f.try_lock().map(|()| f).map_err(std::io::Error::other))
            .map_err(|e| transient("locking the work dir")(e.to_string()))?;
        let source = work.path().join("source");
        let out = work.path().join("out");
        std::fs::create_dir_all(&out).map_err(|e| transient("work dir")(e.to_string()))?;

        self.progress(video_id, owner_id, "downloading", 0.0, None);
        self.download(source_key, &source).await?;
        let tools = self.tools();
        self.progress(video_id, owner_id, "probing", 0.0, None);
        let info = pipeline::probe(&tools, &source).await?;
        let specs: Vec<RungSpec> = self
            .config
            .rungs
            .iter()
            .map(|r| RungSpec {
                name: r.name.clone(),
                height: r.height,
                video_bitrate_kbps: r.video_bitrate_kbps,
                max_bitrate_kbps: r.max_bitrate_kbps,
            })
            .collect();
        let rungs = pipeline::ladder(&info, &specs);
        let settings = EncodeSettings {
            preset: self.config.preset.clone(),
            segment_seconds: self.config.segment_seconds,
            audio_bitrate_kbps: self.config.audio_bitrate_kbps,
            timeout: Duration::from_secs(self.config.job_timeout_seconds),
        };
        let ladder_names = rungs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(",");
        let reporter = self.clone();
        let (vid, owner) = (video_id.to_string(), owner_id.to_string());
        let encode = pipeline::encode(
            &tools,
            &source,
            &info,
            &rungs,
            &settings,
            &out,
            move |p| {
                // Encoding is 90% of the job; thumbnails and uploading share the rest.
                reporter.publish_progress(events::TranscodeProgress {
                    video_id: vid.clone(),
                    owner_id: owner.clone(),
                    stage: "encoding".into(),
                    percent: p.percent * 0.9,
                    rendition: Some(ladder_names.clone()),
                    fps: p.fps,
                    eta_seconds: p.eta_seconds,
                    error: None,
                });
            },
            shutdown.child_token(),
        );
        let min_early = f64::from(self.config.early_playback_min_seconds);
        let mut early = (min_early > 0.0 && info.duration_seconds >= min_early).then(|| {
            let mut tracks: Vec<String> = rungs.iter().map(|r| r.name.clone()).collect();
            if info.has_audio {
                tracks.push("audio".into());
            }
            Early {
                video_id: video_id.to_string(),
                job_id: job_id.to_string(),
                out: out.clone(),
                tracks,
                duration_seconds: info.duration_seconds,
                ..Early::default()
            }
        });
        tokio::pin!(encode);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let packaged = loop {
            tokio::select! {
                done = &mut encode => break done?,
                _ = tick.tick(), if early.is_some() => {
                    if let Some(e) = early.as_mut()
                        && let Err(err) = e.sync(self).await
                    {
                        // Early playback is a bonus: the job goes on and stores everything at the end.
                        tracing::warn!(video.id = %video_id, error = %err, "early playback paused");
                    }
                }
            }
        };
        self.progress(video_id, owner_id, "thumbnails", 90.0, None);
        let thumbs = self.thumbnails(&tools, &source, &info, &out, &packaged).await?;
        self.progress(video_id, owner_id, "uploading", 95.0, None);
        let already = early.map(|e| e.uploaded).unwrap_or_default();
        self.store_outputs(video_id, &out, &already).await?;
        let path = |p: &Path| p.to_string_lossy().replace('\\', "/");
        Ok(Playback {
            duration_seconds: packaged.duration_seconds,
            renditions: packaged
                .renditions
                .iter()
                .map(|r| Rendition { name: r.name.clone(), width: r.width, height: r.height, bitrate: r.bandwidth })
                .collect(),
            has_audio: info.has_audio,
            poster: Some(path(&thumbs.poster)),
            storyboard: Some(path(&thumbs.storyboard)),
            storyboard_vtt: Some(path(&thumbs.storyboard_vtt)),
        })
    }

    /// ffmpeg and ffprobe with their limits: `ffmpeg_memory_bytes`, and `ffmpeg_cpu_seconds`
    /// (unset: the job's time limit on every CPU).
    fn tools(&self) -> Tools {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let cpu_seconds = match self.config.ffmpeg_cpu_seconds {
            0 => self.config.job_timeout_seconds.saturating_mul(cpus),
            n => n,
        };
        Tools {
            ffmpeg: self.config.ffmpeg.clone().into(),
            ffprobe: self.config.ffprobe.clone().into(),
            limits: pipeline::Limits { memory_bytes: self.config.ffmpeg_memory_bytes, cpu_seconds },
        }
    }

    /// Poster, stills and storyboard from the renditions just made (no third decode of the
    /// source); from the source if that fails.
    async fn thumbnails(
        &self,
        tools: &Tools,
        source: &Path,
        info: &pipeline::SourceInfo,
        out: &Path,
        packaged: &pipeline::Packaged,
    ) -> Result<pipeline::Thumbnails, JobError> {
        if let (Some(top), Some(low)) = (packaged.renditions.first(), packaged.renditions.last()) {
            let rendition = pipeline::SourceInfo { video_stream: 0, ..info.clone() };
            // Beside `out`, never in it: these are scratch files, not outputs.
            let scratch = out.parent().unwrap_or(out);
            let joined = async {
                let pictures = join_fragments(out, &top.name, &scratch.join("pictures.mp4")).await?;
                let tiles = join_fragments(out, &low.name, &scratch.join("tiles.mp4")).await?;
                Ok::<_, std::io::Error>((pictures, tiles))
            };
            match joined.await {
                Ok((pictures, tiles)) => {
                    match pipeline::thumbnails_from(tools, &pictures, &tiles, &rendition, out).await {
                        Ok(t) => return Ok(t),
                        Err(e) => tracing::warn!(error = %e, "thumbnails from the renditions failed; from the source"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "joining a rendition failed; thumbnails from the source"),
            }
        }
        Ok(pipeline::thumbnails(tools, source, info, out).await?)
    }

    async fn download(&self, key: &str, to: &Path) -> Result<(), JobError> {
        use futures::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let mut stream =
            self.storage.get_stream(key).await.map_err(|e| transient("reading the source")(e.to_string()))?;
        let mut file = tokio::fs::File::create(to).await.map_err(|e| transient("writing the source")(e.to_string()))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transient("reading the source")(e.to_string()))?;
            file.write_all(&chunk).await.map_err(|e| transient("writing the source")(e.to_string()))?;
        }
        file.flush().await.map_err(|e| transient("writing the source")(e.to_string()))?;
        Ok(())
    }

    /// Uploads every output under the video's media prefix (same keys on every run), then
    /// removes keys a previous run left that this one did not write.
    async fn store_outputs(&self, video_id: &str, out: &Path, already: &HashSet<String>) -> Result<(), JobError> {
        let prefix = media_prefix(video_id);
        let mut written = HashSet::new();
        let mut stack = vec![out.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let mut entries =
                tokio::fs::read_dir(&dir).await.map_err(|e| transient("listing outputs")(e.to_string()))?;
            while let Some(entry) =
                entries.next_entry().await.map_err(|e| transient("listing outputs")(e.to_string()))?
            {
                let path = entry.path();
                if entry.file_type().await.map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(path);
                    continue;
                }
                let relative = path.strip_prefix(out).expect("under out").to_string_lossy().replace('\\', "/");
                let key = format!("{prefix}/{relative}");
                // Segments published early are final; playlists are rewritten at the end.
                if !already.contains(&relative) {
                    let data =
                        tokio::fs::read(&path).await.map_err(|e| transient("reading an output")(e.to_string()))?;
                    self.storage
                        .put(&key, data.into())
                        .await
                        .map_err(|e| transient("storing an output")(e.to_string()))?;
                }
                written.insert(key);
            }
        }
        for stale in self.storage.list(&prefix).await.map_err(|e| transient("listing stored outputs")(e.to_string()))? {
            if !written.contains(&stale) {
                self.storage.delete(&stale).await.map_err(|e| transient("removing a stale output")(e.to_string()))?;
            }
        }
        Ok(())
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

    /// Records READY with the playback description and `transcode.completed`, atomically.
    async fn complete(
        &self,
        video_id: &str,
        job_id: &str,
        holder: &str,
        lease_ms: i64,
        playback: &Playback,
    ) -> Result<(), String> {
        let json = serde_json::to_string(playback).map_err(|e| e.to_string())?;
        let txn = self.db.begin().await.map_err(|e| e.to_string())?;
        if !self.still_holds(&txn, video_id, holder, lease_ms).await? {
            return Ok(());
        }
        if !store::set_state(&txn, video_id, job_id, "READY", None, Some(&json), now_ms())
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
        self.progress(video_id, &owner, "ready", 100.0, None);
        Ok(())
    }

    /// Records FAILED with the reason and `transcode.failed`, atomically.
    async fn fail(
        &self,
        video_id: &str,
        owner_id: &str,
        job_id: &str,
        holder: &str,
        lease_ms: i64,
        reason: &str,
    ) -> Result<(), String> {
        let txn = self.db.begin().await.map_err(|e| e.to_string())?;
        if !self.still_holds(&txn, video_id, holder, lease_ms).await? {
            return Ok(());
        }
        tracing::warn!(video.id = %video_id, reason = %reason, "transcode failed");
        if store::set_state(&txn, video_id, job_id, "FAILED", Some(reason), None, now_ms())
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
        self.progress(video_id, owner_id, "failed", 0.0, Some(reason));
        Ok(())
    }

    /// Publishes a stage change on the transient exchange, without waiting for it.
    fn progress(&self, video_id: &str, owner_id: &str, stage: &str, percent: f64, error: Option<&str>) {
        self.publish_progress(events::TranscodeProgress {
            video_id: video_id.to_string(),
            owner_id: owner_id.to_string(),
            stage: stage.to_string(),
            percent,
            error: error.map(str::to_owned),
            ..Default::default()
        });
    }

    fn publish_progress(&self, mut payload: events::TranscodeProgress) {
        payload.percent = (payload.percent * 10.0).round() / 10.0;
        let message = envelope("transcode.progress", &payload.video_id, crate::NAME, payload.encode_to_vec());
        let bus = self.bus.clone();
        tokio::spawn(async move {
            if let Err(e) = bus.publish_transient(&message).await {
                tracing::debug!(error = %e, "progress not published");
            }
        });
    }
}

/// Aborts the heartbeat when the job ends, however it ends.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a job's lease ended before the job did (cancelled when it happens).
#[derive(Clone)]
struct LeaseEnd {
    /// Another worker holds it now (ours had lapsed).
    taken: CancellationToken,
    /// It could not be renewed (database errors) before it lapsed.
    stalled: CancellationToken,
}

/// Renews the job's lease every third of its length. A lease that is no longer ours (it
/// lapsed and another worker took it), or that could not be renewed before it lapsed, stops
/// the job: `job` and the matching token of `end` are cancelled.
async fn heartbeat(
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

const SCRATCH_PREFIX: &str = "flick-job-";
const SCRATCH_LOCK: &str = ".alive";

/// Removes job directories whose worker died without cleaning up (SIGKILL, OOM): their lock
/// is free. Removing them also ends an orphaned ffmpeg, which fails opening its next segment.
pub(crate) fn sweep_stale_scratch(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) || !path.is_dir() {
            continue;
        }
        let stale = match std::fs::File::open(path.join(SCRATCH_LOCK)) {
            Ok(lock) => lock.try_lock().is_ok(),
            // No lock yet: a job that is just starting, unless the directory is old.
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(600))),
        };
        if stale {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!(dir = %path.display(), "removed a dead job's scratch directory"),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a dead job's scratch directory")
                }
            }
        }
    }
}

/// A long video's segments, published while ffmpeg still encodes: each finished segment is
/// stored once, then each track's growing (EVENT) playlist as it stood when read, so a
/// playlist never names a segment that is not stored yet; the master goes up once every
/// track has a segment, and the video becomes playable.
#[derive(Default)]
struct Early {
    video_id: String,
    job_id: String,
    out: std::path::PathBuf,
    tracks: Vec<String>,
    /// The source's probed duration (what players show before the ladder's is known).
    duration_seconds: f64,
    /// Paths relative to `out` that are stored already.
    uploaded: HashSet<String>,
    published: bool,
}

impl Early {
    async fn sync(&mut self, t: &Transcoder) -> Result<(), String> {
        let prefix = media_prefix(&self.video_id);
        let mut playlists = Vec::new();
        for track in &self.tracks {
            let relative = format!("{track}/index.m3u8");
            let Ok(text) = tokio::fs::read_to_string(self.out.join(&relative)).await else {
                return Ok(());
            };
            let mut files = Vec::new();
            for line in text.lines().map(str::trim) {
                if let Some(uri) = line.split("URI=\"").nth(1) {
                    files.push(format!("{track}/{}", uri.trim_end_matches('"')));
                } else if !line.is_empty() && !line.starts_with('#') {
                    files.push(format!("{track}/{line}"));
                }
            }
            if !files.iter().any(|f| f.ends_with(".m4s")) {
                return Ok(());
            }
            for file in files {
                if self.uploaded.contains(&file) {
                    continue;
                }
                let data = tokio::fs::read(self.out.join(&file)).await.map_err(|e| format!("reading {file}: {e}"))?;
                t.storage.put(&format!("{prefix}/{file}"), data.into()).await.map_err(|e| e.to_string())?;
                self.uploaded.insert(file);
            }
            playlists.push((relative, text));
        }
        for (relative, text) in playlists {
            t.storage
                .put(&format!("{prefix}/{relative}"), text.into_bytes().into())
                .await
                .map_err(|e| e.to_string())?;
        }
        if !self.published {
            let master =
                tokio::fs::read(self.out.join("master.m3u8")).await.map_err(|e| format!("reading master.m3u8: {e}"))?;
            t.storage.put(&format!("{prefix}/master.m3u8"), master.into()).await.map_err(|e| e.to_string())?;
            store::set_playable(&t.db, &self.video_id, &self.job_id, self.duration_seconds, now_ms())
                .await
                .map_err(|e| e.to_string())?;
            self.published = true;
            tracing::info!(video.id = %self.video_id, "playable before the ladder finished");
            let owner =
                store::video(&t.db, &self.video_id).await.ok().flatten().map(|v| v.owner_id).unwrap_or_default();
            t.progress(&self.video_id, &owner, "playable", 50.0, None);
        }
        Ok(())
    }
}

/// One rendition as a single fragmented MP4 (its init segment, then its media segments in
/// playlist order): a file ffmpeg seeks in cheaply, unlike 5.1's HLS reader over fMP4.
async fn join_fragments(out: &Path, rung: &str, to: &Path) -> std::io::Result<std::path::PathBuf> {
    use tokio::io::AsyncWriteExt as _;
    let playlist = tokio::fs::read_to_string(out.join(rung).join("index.m3u8")).await?;
    let mut file = tokio::fs::File::create(to).await?;
    for line in playlist.lines().map(str::trim) {
        let name = match line.split("URI=\"").nth(1) {
            Some(uri) => uri.trim_end_matches('"'),
            None if !line.is_empty() && !line.starts_with('#') => line,
            None => continue,
        };
        file.write_all(&tokio::fs::read(out.join(rung).join(name)).await?).await?;
    }
    file.flush().await?;
    Ok(to.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scratch_directories_of_dead_jobs_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let dead = root.path().join(format!("{SCRATCH_PREFIX}dead"));
        let alive = root.path().join(format!("{SCRATCH_PREFIX}alive"));
        let starting = root.path().join(format!("{SCRATCH_PREFIX}starting"));
        let other = root.path().join("someone-elses");
        for d in [&dead, &alive, &starting, &other] {
            std::fs::create_dir_all(d.join("out")).unwrap();
        }
        std::fs::File::create(dead.join(SCRATCH_LOCK)).unwrap();
        let held = std::fs::File::create(alive.join(SCRATCH_LOCK)).unwrap();
        held.lock().unwrap();
        sweep_stale_scratch(root.path());
        assert!(!dead.exists(), "a free lock: its worker is gone");
        assert!(alive.exists(), "a held lock: its worker runs");
        assert!(starting.exists(), "no lock yet, and young");
        assert!(other.exists(), "not ours");
    }
}
