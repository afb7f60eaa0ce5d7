//! Segment-parallel jobs: a long video's job is split into parts that any worker takes from
//! the queue (`transcode.part`): spans of the ladder, the whole file's audio, and the
//! thumbnails; the part that finishes last queues `transcode.assemble`, which writes the
//! playlists and the DASH manifest over the stored segments and marks the video READY.
//!
//! Workers share nothing but the queue, the database and the object store. A part runs
//! again from scratch when its delivery comes back (worker killed, retry); a part done twice
//! stores the same keys twice and is counted once (`finish_part`). A part's run stops when
//! its video leaves this job (a new upload, a deletion, another part failed the video).

use super::sources::CachedSource;
use super::{JobError, scratch, transient};
use crate::domain::{Playback, Stage, Transcoder, VideoStatus, media_prefix, now_ms};
use crate::pipeline::{self, Span, TrackSegments};
use crate::store;
use flick_platform::bus::{Delivery, HandlerError, envelope};
use flick_platform::db::sea_orm::TransactionTrait;
use flick_platform::outbox;
use flick_platform::storage::Seekable;
use flick_proto::events::v1 as events;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a part stored, kept on its row for the assembly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PartResult {
    /// The rungs' segments (a span), or the audio's (the audio part; none for a silent video;
    /// none for the thumbnails part).
    tracks: Vec<TrackSegments>,
    /// Every file stored, relative to the video's media prefix.
    files: Vec<String>,
    #[serde(default)]
    thumbnails: Option<Thumbs>,
    /// The ladder the span was encoded with (the master of an early playlist needs it).
    #[serde(default)]
    rungs: Vec<pipeline::Rung>,
    /// The source as probed: the assembly needs it, not the source itself.
    #[serde(default)]
    source: Option<pipeline::SourceInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Thumbs {
    poster: String,
    storyboard: String,
    storyboard_vtt: String,
}

/// After the spans `0..parts`: part `parts` is the audio of the whole file, `parts + 1` the
/// thumbnails.
const AUDIO_PART: u32 = 0;
const THUMBNAILS_PART: u32 = 1;

/// What a part does, from its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Span,
    Audio,
    Thumbnails,
}

impl PartKind {
    fn of(p: &events::TranscodePart) -> Self {
        match p.part.checked_sub(p.parts) {
            None => PartKind::Span,
            Some(AUDIO_PART) => PartKind::Audio,
            Some(_) => PartKind::Thumbnails,
        }
    }

    /// The metrics' `kind` label.
    fn label(self) -> &'static str {
        match self {
            PartKind::Span => "span",
            PartKind::Audio => "audio",
            PartKind::Thumbnails => "thumbnails",
        }
    }
}

/// How long a part's presigned URL of the source lasts (a part runs minutes; its reads are
/// spread over that time).
const READ_URL_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// How often a running part checks that its video is still on its job.
const STILL_WANTED_EVERY: Duration = Duration::from_secs(2);

impl Transcoder {
    /// Whether a source of this length is split into parts, and into which spans.
    pub(super) fn split_spans(&self, duration_seconds: f64) -> Option<Vec<Span>> {
        let min = self.config.chunk_min_seconds;
        if min == 0 || duration_seconds < f64::from(min) {
            return None;
        }
        let c = &self.config;
        let spans = pipeline::spans(duration_seconds, c.chunk_first_seconds, c.chunk_seconds, c.segment_seconds);
        (spans.len() > 1).then_some(spans)
    }

    /// Splits the job: records its parts and queues them, atomically.
    /// The downloaded source stays in this process's cache for the parts it takes.
    pub(super) async fn split(
        &self,
        video_id: &str,
        job_id: &str,
        spans: &[Span],
        source: Arc<CachedSource>,
    ) -> Result<(), JobError> {
        // Other workers read the stored source with this probe's demuxer instead of a copy.
        let source_info = serde_json::to_string(&source.info).unwrap_or_default();
        self.sources.keep(video_id, job_id, source).await;
        let parts = spans.len() as u32;
        let db = |e: flick_platform::db::sea_orm::DbErr| JobError::Transient(format!("recording the parts: {e}"));
        let txn = self.db.begin().await.map_err(db)?;
        if !store::parts(&txn, video_id, job_id).await.map_err(db)?.is_empty() {
            // A redelivered job split before (its parts are queued already): nothing to add.
            txn.commit().await.map_err(db)?;
            return Ok(());
        }
        let rows = i64::from(parts + THUMBNAILS_PART + 1);
        store::plan_parts(&txn, video_id, job_id, rows, now_ms()).await.map_err(db)?;
        let part = |part: u32, span: Option<&Span>| events::TranscodePart {
            video_id: video_id.to_string(),
            job_id: job_id.to_string(),
            part,
            parts,
            start_seconds: span.map_or(0.0, |s| s.start_seconds),
            duration_seconds: span.map_or(0.0, |s| s.duration_seconds),
            first_segment: span.map_or(0, |s| s.first_segment),
            source_info: source_info.clone(),
        };
        // In the order the video needs them to play early: the audio, the spans from the
        // start; the thumbnails last (nothing waits for them but the assembly).
        let mut jobs = vec![part(parts + AUDIO_PART, None)];
        jobs.extend(spans.iter().enumerate().map(|(k, s)| part(k as u32, Some(s))));
        jobs.push(part(parts + THUMBNAILS_PART, None));
        for job in jobs {
            outbox::record(&txn, &envelope("transcode.part", video_id, crate::NAME, job.encode_to_vec()))
                .await
                .map_err(db)?;
        }
        txn.commit().await.map_err(db)?;
        self.relay.notify();
        tracing::info!(video.id = %video_id, job.id = %job_id, parts, "long video split into parts");
        Ok(())
    }

    /// Handles one `transcode.part` delivery.
    pub(super) async fn handle_part(
        &self,
        delivery: Delivery,
        shutdown: CancellationToken,
    ) -> Result<(), HandlerError> {
        let p = events::TranscodePart::decode(delivery.envelope.payload.as_slice())
            .map_err(|e| HandlerError::Reject(format!("undecodable part: {e}")))?;
        let retry = |e: flick_platform::db::sea_orm::DbErr| HandlerError::Retry(e.to_string());
        let Some(video) = self.video_on_job(&p.video_id, &p.job_id).await.map_err(retry)? else {
            tracing::info!(video.id = %p.video_id, part = p.part, "part of a superseded or settled job; dropped");
            return Ok(());
        };
        let rows = store::parts(&self.db, &p.video_id, &p.job_id).await.map_err(retry)?;
        match rows.iter().find(|r| r.part == i64::from(p.part)) {
            None => return Ok(()),
            Some(r) if r.done_at_ms.is_some() => {
                tracing::info!(video.id = %p.video_id, part = p.part, "part done already; dropped");
                return Ok(());
            }
            Some(_) => {}
        }
        let run = shutdown.child_token();
        let watcher =
            tokio::spawn(self.clone().cancel_when_unwanted(p.video_id.clone(), p.job_id.clone(), run.clone()));
        let started = std::time::Instant::now();
        let outcome =
            tokio::time::timeout(Duration::from_secs(self.config.job_timeout_seconds), self.run_part(&p, run.clone()))
                .await
                .unwrap_or_else(|_| Err(JobError::Transient("the part ran past the job's time limit".into())));
        watcher.abort();
        if run.is_cancelled() && !shutdown.is_cancelled() && outcome.is_err() {
            tracing::info!(video.id = %p.video_id, part = p.part, "part stopped: its video left this job");
            return Ok(());
        }
        if shutdown.is_cancelled() && outcome.is_err() {
            return Err(HandlerError::Requeue("the worker is shutting down".into()));
        }
        let label = match &outcome {
            Ok(_) => "completed",
            Err(JobError::Invalid(_)) => "invalid",
            Err(JobError::Transient(_)) => "retried",
        };
        let kind = PartKind::of(&p);
        metrics::counter!("transcode_parts_total", "outcome" => label).increment(1);
        // By kind: where a split job's time (and, on a pinned worker, its CPU) goes.
        metrics::histogram!("transcode_part_duration_seconds", "outcome" => label, "kind" => kind.label())
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(result) => self.settle_part(&p, &video.owner_id, &result).await.map_err(HandlerError::Retry),
            Err(e) => {
                let what = match kind {
                    PartKind::Span => format!("transcoding part {}", p.part + 1),
                    PartKind::Audio => "encoding the audio".into(),
                    PartKind::Thumbnails => "making the thumbnails".into(),
                };
                self.settle_failure(&p, &video.owner_id, delivery.attempt, &what, e).await
            }
        }
    }

    /// A part or an assembly that failed: broken input fails the video now; anything else is
    /// retried, and fails the video naming `what` on the last of `job_attempts`.
    async fn settle_failure(
        &self,
        p: &events::TranscodePart,
        owner_id: &str,
        attempt: u32,
        what: &str,
        error: JobError,
    ) -> Result<(), HandlerError> {
        let attempts = self.config.job_attempts.max(1);
        let (reason, rejected) = match error {
            JobError::Invalid(reason) => (reason.clone(), reason),
            JobError::Transient(error) if attempt >= attempts => {
                (format!("{what} failed {attempts} times; last error: {error}"), error)
            }
            JobError::Transient(error) => return Err(HandlerError::Retry(error)),
        };
        self.fail(&p.video_id, owner_id, &p.job_id, None, 0, &reason).await.map_err(HandlerError::Retry)?;
        Err(HandlerError::Reject(rejected))
    }

    /// The video, if it still runs job `job_id`.
    async fn video_on_job(
        &self,
        video_id: &str,
        job_id: &str,
    ) -> Result<Option<crate::domain::Video>, flick_platform::db::sea_orm::DbErr> {
        Ok(store::video(&self.db, video_id)
            .await?
            .filter(|v| v.job_id.as_deref() == Some(job_id) && v.status == VideoStatus::Processing))
    }

    /// Cancels `run` once the video leaves job `job_id` (a new upload, a deletion, a failure).
    async fn cancel_when_unwanted(self, video_id: String, job_id: String, run: CancellationToken) {
        loop {
            tokio::time::sleep(STILL_WANTED_EVERY).await;
            if let Ok(None) = self.video_on_job(&video_id, &job_id).await {
                run.cancel();
                return;
            }
        }
    }

    /// Encodes and stores one part; returns its result for the row.
    async fn run_part(&self, p: &events::TranscodePart, cancel: CancellationToken) -> Result<String, JobError> {
        let source = self.part_source(p).await?;
        let tools = self.tools();
        let rungs = self.rungs_for(&source.info);
        let settings = self.encode_settings();
        let (work, _alive) =
            scratch::job_dir(&self.scratch_root()).map_err(|e| transient("work dir")(e.to_string()))?;
        let out = work.path().join("out");
        let mut result = PartResult { source: Some(source.info.clone()), ..PartResult::default() };
        let kind = PartKind::of(p);
        if kind == PartKind::Span {
            result.rungs = rungs.clone();
            let span = Span {
                start_seconds: p.start_seconds,
                duration_seconds: p.duration_seconds,
                first_segment: p.first_segment,
            };
            result.tracks =
                pipeline::encode_span(&tools, &source.input, &source.info, &rungs, &settings, &span, &out, cancel)
                    .await?;
            for track in &result.tracks {
                if p.part == 0 {
                    result.files.push(format!("{}/{}", track.name, pipeline::init_name(&track.name)));
                }
                result.files.extend(track.segments.iter().map(|s| format!("{}/{}", track.name, s.uri)));
            }
        } else if kind == PartKind::Audio {
            let audio = pipeline::encode_audio(&tools, &source.input, &source.info, &settings, &out, cancel).await?;
            if let Some(audio) = audio {
                result.files.push(format!("{}/{}", audio.name, pipeline::init_name(&audio.name)));
                result.files.extend(audio.segments.iter().map(|s| format!("{}/{}", audio.name, s.uri)));
                result.tracks.push(audio);
            }
        } else {
            let thumbs = pipeline::thumbnails(&tools, &source.input, &source.info, &out).await?;
            let path = |p: &Path| p.to_string_lossy().replace('\\', "/");
            for file in thumbs.stills.iter().chain([&thumbs.poster, &thumbs.storyboard, &thumbs.storyboard_vtt]) {
                result.files.push(path(file));
            }
            result.thumbnails = Some(Thumbs {
                poster: path(&thumbs.poster),
                storyboard: path(&thumbs.storyboard),
                storyboard_vtt: path(&thumbs.storyboard_vtt),
            });
        }
        result.files.sort();
        result.files.dedup();
        let prefix = media_prefix(&p.video_id);
        for file in &result.files {
            let data =
                tokio::fs::read(out.join(file)).await.map_err(|e| transient("reading an output")(e.to_string()))?;
            self.storage
                .put(&format!("{prefix}/{file}"), data.into())
                .await
                .map_err(|e| transient("storing an output")(e.to_string()))?;
        }
        serde_json::to_string(&result).map_err(|e| JobError::Transient(format!("part result: {e}")))
    }

    /// Counts the part done; the last one queues the assembly. Then reports the share done.
    async fn settle_part(&self, p: &events::TranscodePart, owner_id: &str, result: &str) -> Result<(), String> {
        let txn = self.db.begin().await.map_err(|e| e.to_string())?;
        if !store::lock_video(&txn, &p.video_id).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        let now = now_ms();
        if !store::finish_part(&txn, &p.video_id, &p.job_id, i64::from(p.part), result, now)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(());
        }
        let rows = store::parts(&txn, &p.video_id, &p.job_id).await.map_err(|e| e.to_string())?;
        let done = rows.iter().filter(|r| r.done_at_ms.is_some()).count();
        let mut playable = false;
        let early_from = f64::from(self.config.early_playback_min_seconds);
        if done < rows.len() && early_from > 0.0 && source_seconds(&rows) >= early_from {
            // Under the video's lock, so the playlists only ever grow.
            match self.publish_early(p, &rows).await {
                Ok(now_playable) => playable = now_playable,
                // Early playback is a bonus: the parts go on and the assembly stores everything.
                Err(e) => tracing::warn!(video.id = %p.video_id, error = %e, "early playback paused"),
            }
        }
        if done == rows.len() {
            let assemble = events::TranscodePart { part: 0, ..p.clone() };
            outbox::record(&txn, &envelope("transcode.assemble", &p.video_id, crate::NAME, assemble.encode_to_vec()))
                .await
                .map_err(|e| e.to_string())?;
        }
        let newly_playable = playable
            && store::set_playable(&txn, &p.video_id, &p.job_id, source_seconds(&rows), now)
                .await
                .map_err(|e| e.to_string())?;
        txn.commit().await.map_err(|e| e.to_string())?;
        self.relay.notify();
        if newly_playable {
            tracing::info!(video.id = %p.video_id, "playable before its parts finished");
            self.publish_stage(&p.video_id, owner_id, Stage::Playable, 50.0, None);
        }
        // Encoding is 90% of a job; the parts share it. ETA: the time per part so far.
        let share = done as f64 / rows.len().max(1) as f64;
        let percent = (share * 90.0 * 10.0).round() / 10.0;
        let elapsed = (now - rows.iter().map(|r| r.created_at_ms).min().unwrap_or(now)) as f64 / 1000.0;
        let eta = (share > 0.0).then(|| elapsed / share * (1.0 - share));
        self.publish_progress(events::TranscodeProgress {
            video_id: p.video_id.clone(),
            owner_id: owner_id.to_string(),
            stage: Stage::Encoding.to_string(),
            percent,
            eta_seconds: eta,
            ..Default::default()
        });
        if let Err(e) = store::set_progress(&self.db, &p.video_id, &p.job_id, percent).await {
            tracing::debug!(video.id = %p.video_id, error = %e, "progress not stored");
        }
        tracing::info!(video.id = %p.video_id, part = p.part, done, parts = rows.len(), "part done");
        Ok(())
    }

    /// Early playback of a split job: once the audio part and the spans from the start are
    /// done, growing (EVENT) playlists over those spans and the master go up; each span that
    /// follows on extends them. True when something is published (the video plays).
    async fn publish_early(&self, p: &events::TranscodePart, rows: &[store::PartRow]) -> Result<bool, String> {
        let results: Vec<Option<PartResult>> =
            rows.iter().map(|r| r.result.as_deref().and_then(|json| serde_json::from_str(json).ok())).collect();
        let spans = usize::try_from(p.parts).unwrap_or(usize::MAX).min(results.len());
        let Some(Some(audio)) = results.get(spans + AUDIO_PART as usize) else { return Ok(false) };
        let prefix: Vec<&PartResult> = results[..spans].iter().map_while(Option::as_ref).collect();
        let Some(first) = prefix.first() else { return Ok(false) };
        if prefix.len() == spans {
            return Ok(false); // the assembly writes the whole thing
        }
        let prefix_seconds: f64 =
            prefix.iter().flat_map(|r| r.tracks.first()).flat_map(|t| t.segments.iter().map(|s| s.seconds)).sum();
        let mut tracks: Vec<TrackSegments> = first
            .rungs
            .iter()
            .map(|rung| TrackSegments {
                name: rung.name.clone(),
                segments: prefix
                    .iter()
                    .flat_map(|r| r.tracks.iter().filter(|t| t.name == rung.name))
                    .flat_map(|t| t.segments.iter().cloned())
                    .collect(),
            })
            .collect();
        // The audio is whole already: only as far as the video goes.
        for track in &audio.tracks {
            let mut start = 0.0;
            let segments = track
                .segments
                .iter()
                .take_while(|s| {
                    let before = start < prefix_seconds;
                    start += s.seconds;
                    before
                })
                .cloned()
                .collect();
            tracks.push(TrackSegments { name: track.name.clone(), segments });
        }
        let prefix_key = media_prefix(&p.video_id);
        let mut codecs = Vec::with_capacity(first.rungs.len());
        for rung in &first.rungs {
            let init = self
                .storage
                .get(&format!("{prefix_key}/{}/{}", rung.name, pipeline::init_name(&rung.name)))
                .await
                .map_err(|e| format!("reading an init segment: {e}"))?;
            codecs.push(pipeline::avc_codec(&init).unwrap_or_else(|| "avc1.640028".into()));
        }
        for track in &tracks {
            let playlist = pipeline::media_playlist(track, false);
            self.storage
                .put(&format!("{prefix_key}/{}/{}", track.name, pipeline::PLAYLIST), playlist.into_bytes().into())
                .await
                .map_err(|e| e.to_string())?;
        }
        let has_audio = !audio.tracks.is_empty();
        let master = pipeline::master_playlist(&first.rungs, &codecs, has_audio, self.config.audio_bitrate_kbps);
        self.storage
            .put(&format!("{prefix_key}/{}", pipeline::MASTER), master.into_bytes().into())
            .await
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Handles `transcode.assemble`: playlists, master and manifest over the parts' segments,
    /// stale keys of earlier runs removed, then READY and `transcode.completed`.
    pub(super) async fn handle_assemble(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let p = events::TranscodePart::decode(delivery.envelope.payload.as_slice())
            .map_err(|e| HandlerError::Reject(format!("undecodable assembly: {e}")))?;
        let retry = |e: flick_platform::db::sea_orm::DbErr| HandlerError::Retry(e.to_string());
        let Some(video) = self.video_on_job(&p.video_id, &p.job_id).await.map_err(retry)? else {
            return Ok(());
        };
        let rows = store::parts(&self.db, &p.video_id, &p.job_id).await.map_err(retry)?;
        if rows.is_empty() || rows.iter().any(|r| r.done_at_ms.is_none()) {
            return Err(HandlerError::Reject("assembly of a job whose parts are not all done".into()));
        }
        let results: Vec<PartResult> = rows
            .iter()
            .map(|r| serde_json::from_str(r.result.as_deref().unwrap_or("{}")))
            .collect::<Result<_, _>>()
            .map_err(|e| HandlerError::Reject(format!("a part's result is unreadable: {e}")))?;
        match self.assemble(&p, &results).await {
            Ok(playback) => {
                self.complete(&p.video_id, &p.job_id, None, 0, &playback).await.map_err(HandlerError::Retry)?;
                self.sources.forget(&p.video_id, &p.job_id).await;
                tracing::info!(video.id = %p.video_id, parts = rows.len(), "parts assembled; transcode completed");
                Ok(())
            }
            Err(e) => self.settle_failure(&p, &video.owner_id, delivery.attempt, "assembling the parts", e).await,
        }
    }

    async fn assemble(&self, p: &events::TranscodePart, results: &[PartResult]) -> Result<Playback, JobError> {
        // What the parts recorded: no need for the source itself.
        let missing = || JobError::Invalid("the parts' records lack the probed source; upload again".into());
        let info = results.iter().find_map(|r| r.source.clone()).ok_or_else(missing)?;
        let rungs = results.first().map(|r| r.rungs.clone()).filter(|r| !r.is_empty()).ok_or_else(missing)?;
        let (work, _alive) =
            scratch::job_dir(&self.scratch_root()).map_err(|e| transient("work dir")(e.to_string()))?;
        let out = work.path().join("out");
        let prefix = media_prefix(&p.video_id);
        // Each rung's segments in span order, then the audio's.
        let mut tracks: Vec<TrackSegments> = Vec::new();
        for rung in &rungs {
            let segments = results
                .iter()
                .flat_map(|r| r.tracks.iter().filter(|t| t.name == rung.name))
                .flat_map(|t| t.segments.iter().cloned())
                .collect();
            tracks.push(TrackSegments { name: rung.name.clone(), segments });
        }
        tracks.extend(results.iter().flat_map(|r| r.tracks.iter().filter(|t| t.name == pipeline::AUDIO)).cloned());
        for track in &tracks {
            let init = format!("{}/{}", track.name, pipeline::init_name(&track.name));
            let data = self
                .storage
                .get(&format!("{prefix}/{init}"))
                .await
                .map_err(|e| transient("reading an init segment")(e.to_string()))?;
            let path = out.join(&init);
            tokio::fs::create_dir_all(path.parent().expect("in a track dir"))
                .await
                .map_err(|e| transient("work dir")(e.to_string()))?;
            tokio::fs::write(&path, data).await.map_err(|e| transient("work dir")(e.to_string()))?;
        }
        let packaged = pipeline::assemble(&info, &rungs, &self.encode_settings(), &tracks, &out).await?;
        let mut written: HashSet<String> = results.iter().flat_map(|r| r.files.iter().cloned()).collect();
        let mut made = vec![pipeline::MASTER.to_string(), packaged.manifest.to_string_lossy().into_owned()];
        made.extend(tracks.iter().map(|t| format!("{}/{}", t.name, pipeline::PLAYLIST)));
        for file in made {
            let data =
                tokio::fs::read(out.join(&file)).await.map_err(|e| transient("reading an output")(e.to_string()))?;
            self.storage
                .put(&format!("{prefix}/{file}"), data.into())
                .await
                .map_err(|e| transient("storing an output")(e.to_string()))?;
            written.insert(file);
        }
        // What an earlier run of the video left and this one did not write.
        for key in self.storage.list(&prefix).await.map_err(|e| transient("listing stored outputs")(e.to_string()))? {
            let relative = key.strip_prefix(&format!("{prefix}/")).unwrap_or(&key);
            if !written.contains(relative) {
                self.storage.delete(&key).await.map_err(|e| transient("removing a stale output")(e.to_string()))?;
            }
        }
        let thumbs = results.iter().find_map(|r| r.thumbnails.clone());
        Ok(Playback::of(
            &packaged,
            info.has_audio,
            thumbs.as_ref().map(|t| t.poster.clone()),
            thumbs.as_ref().map(|t| t.storyboard.clone()),
            thumbs.map(|t| t.storyboard_vtt),
        ))
    }

    /// The part's source: this process's copy when it has one, else the stored object read
    /// where it is (only the part's span of it is fetched) with the splitter's probe, else a
    /// copy downloaded and probed once.
    async fn part_source(&self, p: &events::TranscodePart) -> Result<Arc<CachedSource>, JobError> {
        let read = |how: &'static str| metrics::counter!("transcode_part_sources_total", "source" => how).increment(1);
        if let Some(source) = self.sources.get(&p.video_id, &p.job_id).await {
            read("kept");
            return Ok(source);
        }
        let probed =
            serde_json::from_str::<pipeline::SourceInfo>(&p.source_info).ok().filter(|i| !i.demuxer.is_empty());
        if let Some(info) = probed {
            let video = store::video(&self.db, &p.video_id)
                .await
                .map_err(|e| transient("reading the video")(e.to_string()))?
                .ok_or_else(|| JobError::Transient("the video is gone".into()))?;
            if let [key] = video.source_objects().as_slice() {
                let input = match self.storage.seekable(key, READ_URL_LIFETIME).await {
                    Ok(Seekable::File(path)) => pipeline::Input::File(path),
                    Ok(Seekable::Url(url)) => pipeline::Input::Remote { url, demuxer: info.demuxer.clone() },
                    Err(e) => return Err(transient("reading the source")(e.to_string())),
                };
                read("in_place");
                return Ok(Arc::new(CachedSource { input, info, _copy: None }));
            }
        }
        read("downloaded");
        self.cached_source(&p.video_id, &p.job_id).await
    }

    /// The job's source, from this process's cache or downloaded and probed once.
    async fn cached_source(&self, video_id: &str, job_id: &str) -> Result<Arc<CachedSource>, JobError> {
        if let Some(source) = self.sources.get(video_id, job_id).await {
            return Ok(source);
        }
        let _one_download = self.sources.downloading.lock().await;
        if let Some(source) = self.sources.get(video_id, job_id).await {
            return Ok(source);
        }
        // Copies of sources whose jobs are over (assembled elsewhere, failed, replaced) go first.
        for (video, job) in self.sources.keys().await {
            if matches!(self.video_on_job(&video, &job).await, Ok(None)) {
                self.sources.forget(&video, &job).await;
            }
        }
        let video = store::video(&self.db, video_id)
            .await
            .map_err(|e| transient("reading the video")(e.to_string()))?
            .ok_or_else(|| JobError::Transient("the video is gone".into()))?;
        let (dir, alive) = scratch::job_dir(&self.scratch_root()).map_err(|e| transient("work dir")(e.to_string()))?;
        let path = dir.path().join("source");
        self.download(&video.source_objects(), &path).await?;
        let info = pipeline::probe(&self.tools(), &path).await?;
        let source = Arc::new(CachedSource { input: pipeline::Input::File(path), info, _copy: Some((dir, alive)) });
        self.sources.keep(video_id, job_id, source.clone()).await;
        Ok(source)
    }
}

/// The source's probed duration, as the parts recorded it.
fn source_seconds(rows: &[store::PartRow]) -> f64 {
    rows.iter()
        .filter_map(|r| r.result.as_deref())
        .filter_map(|json| serde_json::from_str::<PartResult>(json).ok())
        .filter_map(|r| r.source.map(|s| s.duration_seconds))
        .fold(0.0, f64::max)
}
