//! The transcoder's domain: its states as types (a video's status and visibility, an
//! upload's state, a job's stages), videos and uploads as the rest of the crate sees them,
//! the playback description, what clients see of a video, and the service handle
//! [`Transcoder`]. Its operations are split by responsibility: `videos` (processing state,
//! playback access, retry, deletion), `uploads` (tus), `events` (media's events), `worker`
//! (the transcode job). Text forms of the states exist only at the store boundary (`store`)
//! and in the transports' own names.

use crate::config::TranscoderConfig;
use flick_kit::AppError;
use flick_kit::telemetry::{TracedChannel, traced};
use flick_platform::bus::Bus;
use flick_platform::db::sea_orm::{DatabaseConnection, DbErr};
use flick_platform::outbox::Relay;
use flick_platform::storage::{ObjectStorage, StorageError};
use flick_proto::media::v1::media_service_client::MediaServiceClient;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::transport::Endpoint;

/// Declares a state enum with its one text form (the database's and the transports').
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text form (stored, and shown by the transports).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The state named `text`, if it is one.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Where a video is between its upload and playback:
    /// `AWAITING_UPLOAD → QUEUED → PROCESSING → READY | FAILED` (a retry queues a failed
    /// video again; a new upload queues any video; deleting its media awaits an upload again).
    /// A video's job has no state of its own: the job is the video's current source, and its
    /// state is this status.
    pub enum VideoStatus {
        AwaitingUpload = "AWAITING_UPLOAD",
        Queued = "QUEUED",
        Processing = "PROCESSING",
        Ready = "READY",
        Failed = "FAILED",
    }
}

text_enum! {
    /// Who may watch a video (media decides; the transcoder keeps a copy).
    pub enum Visibility {
        Public = "PUBLIC",
        Unlisted = "UNLISTED",
        Private = "PRIVATE",
    }
}

text_enum! {
    /// A tus upload: `UPLOADING`, then `COMPLETED` (the video's source) or dropped as
    /// `REJECTED` (not a video), `TERMINATED` (by its owner, or with its video), `EXPIRED`;
    /// a completed one is `REPLACED` by the next completed upload of its video.
    pub enum UploadState {
        Uploading = "UPLOADING",
        Completed = "COMPLETED",
        Rejected = "REJECTED",
        Terminated = "TERMINATED",
        Expired = "EXPIRED",
        Replaced = "REPLACED",
    }
}

text_enum! {
    /// What an upload is to the tus concatenation extension: a `SINGLE` upload is a video's
    /// source by itself; a `PARTIAL` one holds a range of a file and is a source only as part
    /// of a `FINAL` upload, which holds no bytes of its own: its source is its partials'
    /// objects read in order.
    pub enum UploadKind {
        Single = "SINGLE",
        Partial = "PARTIAL",
        Final = "FINAL",
    }
}

text_enum! {
    /// A job's stages as published in `transcode.progress` (and `videoProgress.stage`),
    /// with the stages a video's status maps to when no job reports.
    pub enum Stage {
        AwaitingUpload = "awaiting_upload",
        Queued = "queued",
        Processing = "processing",
        Downloading = "downloading",
        Probing = "probing",
        Encoding = "encoding",
        Playable = "playable",
        Thumbnails = "thumbnails",
        Uploading = "uploading",
        Ready = "ready",
        Failed = "failed",
    }
}

impl VideoStatus {
    /// The stage and percent a client is shown for a video in this status, from the job's
    /// last stored percent while it runs: the one mapping behind gRPC `GetProcessing` and
    /// the first message of `videoProgress`.
    pub fn progress(self, stored_percent: f64) -> (Stage, f64) {
        match self {
            VideoStatus::Ready => (Stage::Ready, 100.0),
            VideoStatus::Failed => (Stage::Failed, 0.0),
            VideoStatus::AwaitingUpload => (Stage::AwaitingUpload, 0.0),
            VideoStatus::Queued => (Stage::Queued, 0.0),
            VideoStatus::Processing => (Stage::Processing, stored_percent.clamp(0.0, 100.0)),
        }
    }

    /// Whether the video's job is done, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(self, VideoStatus::Ready | VideoStatus::Failed)
    }
}

impl Stage {
    /// The last message of a job's progress.
    pub fn is_final(self) -> bool {
        matches!(self, Stage::Ready | Stage::Failed)
    }
}

/// The transcoder's copy of one of media's videos, with its processing.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    pub id: String,
    pub owner_id: String,
    pub visibility: Visibility,
    pub status: VideoStatus,
    pub error: Option<String>,
    pub source_key: Option<String>,
    /// A source made by concatenation: the objects whose bytes, in this order, are the
    /// source (`source_key` then names it but holds nothing). Empty: `source_key` is the one
    /// object.
    pub source_parts: Vec<String>,
    pub source_bytes: Option<i64>,
    /// The current source's job (the id of the upload that made it).
    pub job_id: Option<String>,
    /// Set at READY (kept, unused, while a new source is processed).
    pub playback: Option<Playback>,
    /// Set while PROCESSING once the renditions' first segments can be played.
    pub playable_at_ms: Option<i64>,
    pub source_duration_seconds: Option<f64>,
    /// The highest version of media's events applied (0: none carried one).
    pub media_version: i64,
    /// When media last confirmed owner and visibility (an event's time, a gRPC check).
    pub synced_at_ms: i64,
    /// The running job's progress (0–100) as last stored by its worker.
    pub progress_percent: f64,
}

impl Video {
    pub fn is_owned_by(&self, user: Option<uuid::Uuid>) -> bool {
        user.map(|u| u.to_string()).as_deref() == Some(self.owner_id.as_str())
    }

    /// Ready, or far enough into processing that its first segments play (long videos).
    pub fn playable(&self) -> bool {
        self.status == VideoStatus::Ready || (self.status == VideoStatus::Processing && self.playable_at_ms.is_some())
    }

    /// The objects whose bytes, in order, are the current source.
    pub fn source_objects(&self) -> Vec<String> {
        match (&self.source_key, self.source_parts.is_empty()) {
            (_, false) => self.source_parts.clone(),
            (Some(key), true) => vec![key.clone()],
            (None, true) => Vec::new(),
        }
    }
}

/// A tus upload: bytes go to an object-store multipart upload whose id and finished parts
/// are kept; bytes after the last full part wait in a tail object. A final upload
/// (concatenation) has no bytes, object or multipart upload of its own: its `partials` hold
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub id: String,
    pub video_id: String,
    pub owner_id: String,
    /// `None`: deferred until a PATCH says it.
    pub length: Option<i64>,
    pub offset: i64,
    /// The raw `Upload-Metadata` header.
    pub metadata: String,
    pub object_key: String,
    pub multipart_id: String,
    pub parts: Vec<String>,
    pub tail_key: Option<String>,
    pub tail_bytes: i64,
    pub state: UploadState,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub kind: UploadKind,
    /// A final upload's partial uploads, in the order their bytes are joined.
    pub partials: Vec<String>,
    /// A partial upload's final upload, once one joined it (a partial joins one final only).
    pub final_id: Option<String>,
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn db_error(e: DbErr) -> AppError {
    AppError::internal(format!("transcoder database: {e}"))
}

pub(crate) fn storage_error(e: StorageError) -> AppError {
    match e {
        StorageError::NotFound(_) => AppError::not_found("no such object"),
        other => AppError::unavailable(format!("object storage: {other}")),
    }
}

/// The playback description of a READY video (kept as JSON in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Playback {
    pub duration_seconds: f64,
    pub renditions: Vec<Rendition>,
    pub has_audio: bool,
    /// Paths under the video's media prefix.
    pub poster: Option<String>,
    pub storyboard: Option<String>,
    pub storyboard_vtt: Option<String>,
}

impl Playback {
    /// A packaged ladder's description, with its thumbnails' paths (under the media prefix).
    pub(crate) fn of(
        packaged: &crate::pipeline::Packaged,
        has_audio: bool,
        poster: Option<String>,
        storyboard: Option<String>,
        storyboard_vtt: Option<String>,
    ) -> Self {
        Playback {
            duration_seconds: packaged.duration_seconds,
            renditions: packaged
                .renditions
                .iter()
                .map(|r| Rendition { name: r.name.clone(), width: r.width, height: r.height, bitrate: r.bandwidth })
                .collect(),
            has_audio,
            poster,
            storyboard,
            storyboard_vtt,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate: u64,
}

/// What clients see of a video's processing and playback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoView {
    pub id: String,
    pub state: VideoStatus,
    pub error: Option<String>,
    /// Set once the video plays: at READY, or earlier for long videos (a growing playlist).
    pub hls_url: Option<String>,
    pub dash_url: Option<String>,
    pub playable: bool,
    pub thumbnail_url: Option<String>,
    pub storyboard_url: Option<String>,
    pub storyboard_vtt_url: Option<String>,
    pub duration_seconds: Option<f64>,
    pub renditions: Vec<Rendition>,
    /// The job's progress (not part of the REST body, which predates it).
    #[serde(skip)]
    pub percent: f64,
}

/// After a failed visibility check, media is not asked again for this long.
pub(crate) const MEDIA_RETRY_MS: i64 = 5_000;

/// Where a video's renditions and thumbnails live in the object store.
pub fn media_prefix(video_id: &str) -> String {
    format!("videos/{video_id}/media")
}

#[derive(Clone)]
pub struct Transcoder {
    pub(crate) db: DatabaseConnection,
    pub(crate) storage: ObjectStorage,
    pub(crate) bus: Bus,
    pub(crate) relay: Relay,
    pub(crate) config: Arc<TranscoderConfig>,
    /// One PATCH at a time per upload in this process (the database guards across replicas).
    pub(crate) upload_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Bytes of PATCHes still streaming in this process, per user: counted against the quota
    /// beside what the database holds.
    pub(crate) upload_bytes_in_flight: Arc<Mutex<HashMap<String, i64>>>,
    /// Media, asked when a local copy of a video's visibility is older than
    /// `visibility_max_age_seconds` (none configured: the local copy is trusted).
    pub(crate) media: Option<MediaServiceClient<TracedChannel>>,
    /// Until when (ms) media counts as unreachable after a failed check: playback serves the
    /// local copy meanwhile instead of waiting on a timeout per request.
    pub(crate) media_down_until_ms: Arc<std::sync::atomic::AtomicI64>,
    /// Sources of split jobs this process works on (downloaded once per process).
    pub(crate) sources: Arc<crate::worker::SourceCache>,
    /// Upload parts being stored at once by this process, whatever the number of PATCHes:
    /// the memory they hold is bounded per process, not per client stream.
    pub(crate) part_slots: Arc<tokio::sync::Semaphore>,
}

impl Transcoder {
    pub fn new(
        db: DatabaseConnection,
        storage: ObjectStorage,
        bus: Bus,
        relay: Relay,
        config: TranscoderConfig,
    ) -> Self {
        Self {
            db,
            storage,
            bus,
            relay,
            config: Arc::new(config),
            upload_locks: Arc::default(),
            upload_bytes_in_flight: Arc::default(),
            media: None,
            media_down_until_ms: Arc::default(),
            sources: Arc::default(),
            part_slots: Arc::new(tokio::sync::Semaphore::new(crate::uploads::PART_SLOTS)),
        }
    }

    /// Checks stale local copies of videos' visibility with media at `url` (gRPC), connecting
    /// on first use.
    pub fn with_media(mut self, url: &str) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_string())?
            .connect_timeout(std::time::Duration::from_secs(1))
            .timeout(std::time::Duration::from_secs(2));
        self.media = Some(MediaServiceClient::new(traced(endpoint.connect_lazy())));
        Ok(self)
    }

    pub fn config(&self) -> &TranscoderConfig {
        &self.config
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn storage(&self) -> &ObjectStorage {
        &self.storage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_one_text_and_other_texts_name_none() {
        for s in VideoStatus::ALL {
            assert_eq!(VideoStatus::parse(s.as_str()), Some(*s));
        }
        for s in Visibility::ALL {
            assert_eq!(Visibility::parse(s.as_str()), Some(*s));
        }
        for s in UploadState::ALL {
            assert_eq!(UploadState::parse(s.as_str()), Some(*s));
        }
        for s in UploadKind::ALL {
            assert_eq!(UploadKind::parse(s.as_str()), Some(*s));
        }
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.as_str()), Some(*s));
        }
        assert_eq!(VideoStatus::parse("ready"), None, "exact text only");
        assert_eq!(Visibility::parse(""), None);
        assert_eq!(serde_json::to_value(VideoStatus::AwaitingUpload).unwrap(), "AWAITING_UPLOAD");
    }

    #[test]
    fn a_status_maps_to_one_stage_and_percent() {
        assert_eq!(VideoStatus::Ready.progress(0.0), (Stage::Ready, 100.0));
        assert_eq!(VideoStatus::Failed.progress(55.0), (Stage::Failed, 0.0));
        assert_eq!(VideoStatus::AwaitingUpload.progress(0.0), (Stage::AwaitingUpload, 0.0));
        assert_eq!(VideoStatus::Queued.progress(30.0), (Stage::Queued, 0.0));
        assert_eq!(VideoStatus::Processing.progress(37.5), (Stage::Processing, 37.5));
        assert_eq!(VideoStatus::Processing.progress(120.0), (Stage::Processing, 100.0));
    }
}
