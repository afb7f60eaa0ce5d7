//! A job's progress: every report goes out on the transient exchange (`transcode.progress`,
//! for `videoProgress`), and the running job's percent is stored on the video's row, at
//! most about once a second and at each stage, where `GetProcessing` reads it on any replica.

use crate::domain::{Stage, Transcoder};
use crate::pipeline::EncodeProgress;
use crate::store;
use flick_platform::bus::envelope;
use flick_proto::events::v1 as events;
use prost::Message as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a running job's percent is written at most (stages are written as they start).
const STORE_EVERY: Duration = Duration::from_secs(1);

/// Encoding is this share of the job; thumbnails and uploading share the rest.
const ENCODING_SHARE: f64 = 0.9;

/// Reports one run of a job.
#[derive(Clone)]
pub(super) struct Reporter {
    t: Transcoder,
    video_id: String,
    owner_id: String,
    job_id: String,
    last_stored: Arc<Mutex<Option<Instant>>>,
}

impl Reporter {
    pub(super) fn new(t: &Transcoder, video_id: &str, owner_id: &str, job_id: &str) -> Self {
        Reporter {
            t: t.clone(),
            video_id: video_id.to_string(),
            owner_id: owner_id.to_string(),
            job_id: job_id.to_string(),
            last_stored: Arc::default(),
        }
    }

    /// A stage of the run starts at `percent` of the job.
    pub(super) fn stage(&self, stage: Stage, percent: f64) {
        self.t.publish_stage(&self.video_id, &self.owner_id, stage, percent, None);
        self.store(round(percent), true);
    }

    /// ffmpeg's report while it encodes `rendition` (the ladder's names).
    pub(super) fn encoding(&self, p: &EncodeProgress, rendition: &str) {
        let percent = p.percent * ENCODING_SHARE;
        self.t.publish_progress(events::TranscodeProgress {
            video_id: self.video_id.clone(),
            owner_id: self.owner_id.clone(),
            stage: Stage::Encoding.to_string(),
            percent,
            rendition: Some(rendition.to_string()),
            fps: p.fps,
            eta_seconds: p.eta_seconds,
            error: None,
        });
        self.store(round(percent), false);
    }

    /// Writes the percent without waiting for it, if a write is due (or `now`).
    fn store(&self, percent: f64, now: bool) {
        {
            let mut last = self.last_stored.lock().expect("progress clock");
            if !now && last.is_some_and(|at| at.elapsed() < STORE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let (db, video_id, job_id) = (self.t.db.clone(), self.video_id.clone(), self.job_id.clone());
        tokio::spawn(async move {
            // Writes may land out of order: the store keeps the highest figure.
            if let Err(e) = store::set_progress(&db, &video_id, &job_id, percent).await {
                tracing::debug!(video.id = %video_id, error = %e, "progress not stored");
            }
        });
    }
}

fn round(percent: f64) -> f64 {
    (percent * 10.0).round() / 10.0
}

impl Transcoder {
    /// Publishes a stage change on the transient exchange, without waiting for it.
    pub(crate) fn publish_stage(
        &self,
        video_id: &str,
        owner_id: &str,
        stage: Stage,
        percent: f64,
        error: Option<&str>,
    ) {
        self.publish_progress(events::TranscodeProgress {
            video_id: video_id.to_string(),
            owner_id: owner_id.to_string(),
            stage: stage.to_string(),
            percent,
            error: error.map(str::to_owned),
            ..Default::default()
        });
    }

    pub(crate) fn publish_progress(&self, mut payload: events::TranscodeProgress) {
        payload.percent = round(payload.percent);
        let message = envelope("transcode.progress", &payload.video_id, crate::NAME, payload.encode_to_vec());
        let bus = self.bus.clone();
        tokio::spawn(async move {
            if let Err(e) = bus.publish_transient(&message).await {
                tracing::debug!(error = %e, "progress not published");
            }
        });
    }
}
