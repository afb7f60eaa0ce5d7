//! The transcoder's operations, once, for every transport: videos' processing state and
//! playback, retry and deletion, and media's events. Uploads are in `uploads`, the job in
//! `worker`.

use crate::store::{self, VideoRow};
use flick_kit::config::TranscoderConfig;
use flick_kit::{AppError, Caller};
use flick_platform::bus::{Bus, envelope};
use flick_platform::cache::Cache;
use flick_platform::db::sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use flick_platform::outbox::{self, Relay};
use flick_platform::storage::{ObjectStorage, StorageError};
use flick_proto::events::v1 as events;
use flick_proto::media::v1::GetVideoRequest;
use flick_proto::media::v1::media_service_client::MediaServiceClient;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

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

/// The playback description of a READY video, kept as JSON in `videos.playback`.
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
    pub state: String,
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
}

/// After a failed visibility check, media is not asked again for this long.
const MEDIA_RETRY_MS: i64 = 5_000;

/// One viewer counts as one view of a video per this window.
pub const VIEW_WINDOW: std::time::Duration = std::time::Duration::from_secs(30 * 60);

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
    /// Deduplicates views (`video.viewed`).
    pub(crate) cache: Cache,
    pub(crate) config: Arc<TranscoderConfig>,
    /// One PATCH at a time per upload in this process (the database guards across replicas).
    pub(crate) upload_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Bytes of PATCHes still streaming in this process, per user: counted against the quota
    /// beside what the database holds.
    pub(crate) upload_bytes_in_flight: Arc<Mutex<HashMap<String, i64>>>,
    /// Media, asked when a local copy of a video's visibility is older than
    /// `visibility_max_age_seconds` (none configured: the local copy is trusted).
    pub(crate) media: Option<MediaServiceClient<Channel>>,
    /// Until when (ms) media counts as unreachable after a failed check: playback serves the
    /// local copy meanwhile instead of waiting on a timeout per request.
    pub(crate) media_down_until_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Transcoder {
    pub fn new(
        db: DatabaseConnection,
        storage: ObjectStorage,
        bus: Bus,
        relay: Relay,
        cache: Cache,
        config: TranscoderConfig,
    ) -> Self {
        Self {
            db,
            storage,
            bus,
            relay,
            cache,
            config: Arc::new(config),
            upload_locks: Arc::default(),
            upload_bytes_in_flight: Arc::default(),
            media: None,
            media_down_until_ms: Arc::default(),
        }
    }

    /// Checks stale local copies of videos' visibility with media at `url` (gRPC), connecting
    /// on first use.
    pub fn with_media(mut self, url: &str) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_string())?
            .connect_timeout(std::time::Duration::from_secs(1))
            .timeout(std::time::Duration::from_secs(2));
        self.media = Some(MediaServiceClient::new(endpoint.connect_lazy()));
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

    /// The video, if the caller owns it: NOT_FOUND when it does not exist or is not theirs
    /// and private (no existence leak), FORBIDDEN when visible but someone else's.
    pub async fn owned_video(&self, caller: &Caller, id: &str) -> Result<VideoRow, AppError> {
        let me = caller.require_user()?;
        let not_found = || AppError::not_found("no such video (create it with createVideo first)");
        if Uuid::parse_str(id).is_err() {
            return Err(not_found());
        }
        let video = store::video(&self.db, id).await.map_err(db_error)?.ok_or_else(not_found)?;
        if video.owner_id != me.to_string() {
            return Err(if video.visibility == "PRIVATE" {
                not_found()
            } else {
                AppError::forbidden("only the owner may do this")
            });
        }
        Ok(video)
    }

    /// The video if `caller` may watch it: its owner always; others when it is public or
    /// unlisted (by id) and ready.
    pub async fn watchable(&self, caller: &Caller, id: &str) -> Result<Option<VideoRow>, AppError> {
        if Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        let Some(video) = store::video(&self.db, id).await.map_err(db_error)? else { return Ok(None) };
        let Some(video) = self.fresh(video).await? else { return Ok(None) };
        Ok(Self::may_watch(&video, caller).then_some(video))
    }

    /// The video with a visibility media confirmed within `visibility_max_age_seconds`: an
    /// older local copy (events late, or lost in a reordering) is checked with media first.
    /// `None`: media does not show it (deleted, as far as this process can tell). Media
    /// unreachable: the local copy, with a warning.
    async fn fresh(&self, mut video: VideoRow) -> Result<Option<VideoRow>, AppError> {
        let now = now_ms();
        let max_age = self.config.visibility_max_age_seconds as i64 * 1000;
        let Some(media) = &self.media else { return Ok(Some(video)) };
        let down_until = self.media_down_until_ms.load(std::sync::atomic::Ordering::Relaxed);
        if now - video.synced_at_ms <= max_age || now < down_until {
            return Ok(Some(video));
        }
        // Asked as the owner, media answers whatever the video's state: NOT_FOUND is a deletion.
        let owner = Caller { user_id: Uuid::parse_str(&video.owner_id).ok(), ..Caller::anonymous() };
        let mut request = tonic::Request::new(GetVideoRequest { id: video.id.clone() });
        owner.to_grpc(&mut request);
        match media.clone().get_video(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                let result = if answer.visibility != video.visibility { "changed" } else { "confirmed" };
                metrics::counter!("transcoder_visibility_checks_total", "result" => result).increment(1);
                if store::confirm_video(&self.db, &video.id, &answer.visibility, video.media_version, now)
                    .await
                    .map_err(db_error)?
                {
                    video.visibility = answer.visibility;
                    video.synced_at_ms = now;
                    Ok(Some(video))
                } else {
                    // An event moved the row while media answered: it is newer still.
                    store::video(&self.db, &video.id).await.map_err(db_error)
                }
            }
            // Hidden, never forgotten here: NOT_FOUND is also what media answers when it did not
            // take our identity (a mesh secret being rotated), and forgetting drops the files for
            // good. Deleting is left to media's `video.deleted` event.
            Err(status) if status.code() == tonic::Code::NotFound => {
                metrics::counter!("transcoder_visibility_checks_total", "result" => "deleted").increment(1);
                tracing::info!(video.id = %video.id, "media does not show the video: hidden until its event");
                Ok(None)
            }
            Err(status) => {
                metrics::counter!("transcoder_visibility_checks_total", "result" => "unavailable").increment(1);
                self.media_down_until_ms.store(now + MEDIA_RETRY_MS, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(video.id = %video.id, error = %status.message(), code = ?status.code(),
                    "media did not confirm a stale visibility; serving the local copy");
                Ok(Some(video))
            }
        }
    }

    pub fn may_watch(video: &VideoRow, caller: &Caller) -> bool {
        let owner = caller.user_id.map(|u| u.to_string()).as_deref() == Some(video.owner_id.as_str());
        owner || (video.visibility != "PRIVATE" && Self::playable(video))
    }

    /// Ready, or far enough into processing that its first segments play (long videos).
    pub fn playable(video: &VideoRow) -> bool {
        video.state == "READY" || (video.state == "PROCESSING" && video.playable_at_ms.is_some())
    }

    /// What a client sees of the video: processing state for everyone allowed to see it,
    /// the error only for its owner.
    pub fn view(&self, video: &VideoRow, caller: &Caller) -> VideoView {
        let owner = caller.user_id.map(|u| u.to_string()).as_deref() == Some(video.owner_id.as_str());
        let playback: Option<Playback> =
            video.playback.as_deref().and_then(|p| serde_json::from_str(p).ok()).filter(|_| video.state == "READY");
        let base = format!("{}/video/{}", self.config.public_base_url.trim_end_matches('/'), video.id);
        let url = |path: &Option<String>| path.as_ref().map(|p| format!("{base}/hls/{p}"));
        VideoView {
            id: video.id.clone(),
            state: video.state.clone(),
            error: if owner {
                video.error.clone()
            } else {
                video.error.as_ref().map(|_| "processing failed".to_string())
            },
            hls_url: Self::playable(video).then(|| format!("{base}/hls/master.m3u8")),
            playable: Self::playable(video),
            dash_url: playback.as_ref().map(|_| format!("{base}/dash/manifest.mpd")),
            thumbnail_url: playback.as_ref().and_then(|p| url(&p.poster)),
            storyboard_url: playback.as_ref().and_then(|p| url(&p.storyboard)),
            storyboard_vtt_url: playback.as_ref().and_then(|p| url(&p.storyboard_vtt)),
            duration_seconds: playback
                .as_ref()
                .map(|p| p.duration_seconds)
                .or(video.source_duration_seconds.filter(|_| Self::playable(video))),
            renditions: playback.map(|p| p.renditions).unwrap_or_default(),
        }
    }

    /// A playback start by `viewer` ("user:<id>" or "addr:<address>"): `video.viewed` through
    /// the outbox, at most once per viewer and video per [`VIEW_WINDOW`]. Without the cache
    /// the view still counts (an outage must not lose views; it may count a repeat).
    pub async fn record_view(&self, video_id: &str, viewer: &str) -> Result<(), AppError> {
        let key = format!("transcoder:viewed:{video_id}:{viewer}");
        match self.cache.rate_limit(&key, 1, VIEW_WINDOW).await {
            Ok(d) if !d.allowed => return Ok(()),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cache unavailable: view not deduplicated"),
        }
        let payload = events::VideoViewed { video_id: video_id.into(), viewer: viewer.into() };
        outbox::record(&self.db, &envelope("video.viewed", video_id, crate::NAME, payload.encode_to_vec()))
            .await
            .map_err(db_error)?;
        self.relay.notify();
        Ok(())
    }

    pub async fn videos_by_ids(&self, ids: &[String]) -> Result<Vec<VideoRow>, AppError> {
        store::videos_by_ids(&self.db, ids).await.map_err(db_error)
    }

    /// Registers a video for uploads (gRPC `CreateUpload` from media, before its event).
    pub async fn register_video(&self, caller: &Caller, video_id: &str, visibility: &str) -> Result<(), AppError> {
        let me = caller.require_user()?;
        if Uuid::parse_str(video_id).is_err() {
            return Err(AppError::bad_input("video_id is not a UUID"));
        }
        let visibility = match visibility {
            "" => "PRIVATE",
            v @ ("PUBLIC" | "UNLISTED" | "PRIVATE") => v,
            _ => return Err(AppError::bad_input("visibility must be PUBLIC, UNLISTED or PRIVATE")),
        };
        if let Some(existing) = store::video(&self.db, video_id).await.map_err(db_error)?
            && existing.owner_id != me.to_string()
        {
            return Err(AppError::forbidden("the video belongs to someone else"));
        }
        let now = now_ms();
        let owner = me.to_string();
        // Version 0: an event media already sent about the video outranks this call.
        let v = store::MediaVideo { id: video_id, owner_id: &owner, visibility, version: 0, synced_at_ms: now };
        store::upsert_video(&self.db, &v, now).await.map_err(db_error)?;
        Ok(())
    }

    /// Retries a failed transcode of the current source (REST `PATCH /video/{id}`).
    pub async fn retry(&self, caller: &Caller, id: &str) -> Result<VideoRow, AppError> {
        let video = self.owned_video(caller, id).await?;
        if video.state != "FAILED" {
            return Err(AppError::conflict(format!("only a failed video can be retried; this one is {}", video.state)));
        }
        let (Some(job), Some(_)) = (&video.job_id, &video.source_key) else {
            return Err(AppError::conflict("the video has no uploaded source to transcode; upload one"));
        };
        let txn = self.db.begin().await.map_err(db_error)?;
        let max = i64::from(self.config.video_retries);
        if !store::count_video_retry(&txn, &video.id, job, &video.owner_id, max).await.map_err(db_error)? {
            return Err(AppError::conflict(format!(
                "this video was retried {max} times already; upload its source again to start over"
            )));
        }
        store::set_state(&txn, &video.id, job, "QUEUED", None, None, now_ms()).await.map_err(db_error)?;
        let payload = events::TranscodeRequested { video_id: video.id.clone(), job_id: job.clone() };
        outbox::record(&txn, &envelope("transcode.requested", &video.id, crate::NAME, payload.encode_to_vec()))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        store::video(&self.db, id).await.map_err(db_error)?.ok_or_else(|| AppError::not_found("no such video"))
    }

    /// Removes the video's renditions, thumbnails and sources (REST `DELETE /video/{id}`).
    /// The metadata stays with media; the video goes back to awaiting an upload.
    pub async fn delete_media(&self, caller: &Caller, id: &str) -> Result<(), AppError> {
        let video = self.owned_video(caller, id).await?;
        self.remove_everything(&video.id).await?;
        store::exec(
            &self.db,
            "UPDATE videos SET state = 'AWAITING_UPLOAD', error = NULL, source_key = NULL, source_bytes = NULL,
             job_id = NULL, playback = NULL, playable_at_ms = NULL, updated_at_ms = ? WHERE id = ?",
            vec![now_ms().into(), video.id.clone().into()],
        )
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Media deleted the video: it is remembered as deleted (so no late `video.updated`
    /// brings it back), then its objects, uploads and row go.
    pub(crate) async fn forget_video(&self, video_id: &str, version: i64) -> Result<(), AppError> {
        store::tombstone(&self.db, video_id, version, now_ms()).await.map_err(db_error)?;
        self.remove_everything(video_id).await?;
        store::delete_video(&self.db, video_id).await.map_err(db_error)
    }

    /// Drops every object of the video and its unfinished uploads.
    async fn remove_everything(&self, video_id: &str) -> Result<(), AppError> {
        let uploads =
            store::uploads_where(&self.db, "WHERE video_id = ?", vec![video_id.into()]).await.map_err(db_error)?;
        for upload in &uploads {
            if upload.state == "UPLOADING" {
                self.drop_upload(upload, "TERMINATED").await?;
            }
            store::delete_upload(&self.db, &upload.id).await.map_err(db_error)?;
        }
        self.storage.delete_prefix(&format!("videos/{video_id}")).await.map_err(storage_error)?;
        Ok(())
    }
}
