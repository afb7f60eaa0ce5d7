//! The transcoder's section of the configuration (`[transcoder]`, `FLICK_TRANSCODER__*`).
//! Loaded, checked and printed with the rest by `flick_kit::config` once the binary registers
//! it (`SectionSpec::of`): a key it does not have is an error, in a file or in a variable.

use flick_kit::Config;
use flick_kit::config::ConfigSection;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Uploads, transcode workers and playback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TranscoderConfig {
    /// Largest accepted upload (`Tus-Max-Size`).
    pub max_upload_bytes: u64,
    /// Bytes of uploads (in progress and kept sources) one user may hold.
    pub user_quota_bytes: u64,
    /// An upload not finished within this time expires and its parts are dropped.
    pub upload_expiry_seconds: u64,
    /// Unfinished uploads one user may have open at once.
    pub max_open_uploads_per_user: u32,
    /// A PATCH body that sends nothing for this long is cut off: what arrived is kept and
    /// the upload is free for the next request.
    pub upload_idle_timeout_seconds: u64,
    /// Playback trusts the local copy of a video's visibility for this long after media last
    /// confirmed it (an event or a check); older copies are checked with media over gRPC.
    pub visibility_max_age_seconds: u64,
    /// Jobs one process transcodes at once (`flick worker` and `flick serve`); 0: no worker.
    pub workers: usize,
    /// Attempts of a failing job before it is dead-lettered.
    pub job_attempts: u32,
    pub ffmpeg: String,
    pub ffprobe: String,
    /// x264 preset of every rung.
    pub preset: String,
    pub segment_seconds: u32,
    pub audio_bitrate_kbps: u32,
    /// A job whose encode runs longer than this is killed and retried.
    pub job_timeout_seconds: u64,
    /// Videos at least this long play before their ladder finishes: finished segments are
    /// published as they come (a growing playlist). 0: only when the ladder is done.
    pub early_playback_min_seconds: u32,
    /// Sources at least this long are split into parts that several workers encode at once
    /// (segment-parallel jobs); 0: every video is one job.
    pub chunk_min_seconds: u32,
    /// The length of a split job's parts, rounded up to whole segments.
    pub chunk_seconds: u32,
    /// The first part's length (rounded up likewise): short, so the video plays early; x264's
    /// rate control restarts in every part, which costs its first seconds a little quality.
    pub chunk_first_seconds: u32,
    /// Where workers keep a job's source and outputs while they work; empty: the system's.
    pub work_dir: Option<PathBuf>,
    /// The ladder: rungs above the source's size are skipped (never upscaled).
    pub rungs: Vec<RungConfig>,
    /// Public origin that playback URLs start with (the edge).
    pub public_base_url: String,
    /// A running job's lease in the database: renewed by its worker every third of this, so a
    /// second delivery of the job (RabbitMQ redelivers after its consumer timeout, or after the
    /// worker's connection dropped) waits while the job runs, and takes over once a dead
    /// worker's lease lapses. Short, so a killed worker's job is taken over within seconds
    /// (the heartbeat is one small UPDATE); a database outage longer than this stops running
    /// jobs, which are then retried.
    pub job_lease_seconds: u64,
    /// Jobs of one user running at once while another user's job waits (fair scheduling
    /// across workers); the excess waits in the queue. 0: no cap.
    pub user_jobs_in_flight: u32,
    /// Retries (`PATCH /video/{id}`) of one uploaded source; a new upload starts the count again.
    pub video_retries: u32,
    /// ffmpeg's and ffprobe's address-space limit (RLIMIT_AS), bytes; 0: none. Address space,
    /// not resident memory: every encoder thread reserves a stack, so many-core hosts need more.
    pub ffmpeg_memory_bytes: u64,
    /// ffmpeg's CPU-time limit (RLIMIT_CPU, all its threads), seconds; 0: the job timeout
    /// times the CPUs.
    pub ffmpeg_cpu_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RungConfig {
    pub name: String,
    pub height: u32,
    pub video_bitrate_kbps: u32,
    pub max_bitrate_kbps: u32,
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        let rung = |name: &str, height, video_bitrate_kbps, max_bitrate_kbps| RungConfig {
            name: name.into(),
            height,
            video_bitrate_kbps,
            max_bitrate_kbps,
        };
        Self {
            max_upload_bytes: 10 * 1024 * 1024 * 1024,
            user_quota_bytes: 50 * 1024 * 1024 * 1024,
            upload_expiry_seconds: 24 * 3600,
            max_open_uploads_per_user: 10,
            upload_idle_timeout_seconds: 30,
            visibility_max_age_seconds: 60,
            workers: 1,
            job_attempts: 3,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            preset: "veryfast".into(),
            segment_seconds: 4,
            audio_bitrate_kbps: 128,
            job_timeout_seconds: 3600,
            early_playback_min_seconds: 60,
            chunk_min_seconds: 120,
            chunk_seconds: 60,
            chunk_first_seconds: 12,
            work_dir: None,
            rungs: vec![
                rung("1080p", 1080, 5000, 5350),
                rung("720p", 720, 2800, 3000),
                rung("480p", 480, 1400, 1500),
                rung("360p", 360, 800, 856),
                rung("240p", 240, 400, 428),
            ],
            public_base_url: "http://127.0.0.1:8080".into(),
            job_lease_seconds: 10,
            user_jobs_in_flight: 2,
            video_retries: 5,
            ffmpeg_memory_bytes: 16 * 1024 * 1024 * 1024,
            ffmpeg_cpu_seconds: 0,
        }
    }
}

impl ConfigSection for TranscoderConfig {
    const NAME: &'static str = "transcoder";
}

/// `config.transcoder()` reads this section (its defaults when the configuration has none),
/// `config.transcoder_mut()` changes it (tests).
pub trait TranscoderConfigExt {
    fn transcoder(&self) -> TranscoderConfig;
    fn transcoder_mut(&mut self) -> &mut TranscoderConfig;
}

impl TranscoderConfigExt for Config {
    fn transcoder(&self) -> TranscoderConfig {
        self.section::<TranscoderConfig>()
    }

    fn transcoder_mut(&mut self) -> &mut TranscoderConfig {
        self.section_mut::<TranscoderConfig>()
    }
}
