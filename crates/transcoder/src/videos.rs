//! Videos' processing state and playback access, for every transport: who may see and watch
//! a video, what they see of it, views, registration (gRPC `CreateUpload`), retry and
//! deletion of its media.

use crate::domain::{
    MEDIA_RETRY_MS, Playback, Transcoder, UploadState, Video, VideoStatus, VideoView, Visibility, db_error, now_ms,
    storage_error,
};
use crate::store;
use flick_kit::{AppError, Caller};
use flick_platform::bus::envelope;
use flick_platform::db::sea_orm::TransactionTrait;
use flick_platform::outbox;
use flick_proto::events::v1 as events;
use flick_proto::media::v1::GetVideoRequest;
use prost::Message as _;
use uuid::Uuid;

impl Transcoder {
    /// The video, if the caller owns it: NOT_FOUND when it does not exist or is not theirs
    /// and private (no existence leak), FORBIDDEN when visible but someone else's.
    pub async fn owned_video(&self, caller: &Caller, id: &str) -> Result<Video, AppError> {
        let me = caller.require_user()?;
        let not_found = || AppError::not_found("no such video (create it with createVideo first)");
        if Uuid::parse_str(id).is_err() {
            return Err(not_found());
        }
        let video = store::video(&self.db, id).await.map_err(db_error)?.ok_or_else(not_found)?;
        if !video.is_owned_by(Some(me)) {
            return Err(if video.visibility == Visibility::Private {
                not_found()
            } else {
                AppError::forbidden("only the owner may do this")
            });
        }
        Ok(video)
    }

    /// The video if `caller` may watch it: its owner always; others when it is public or
    /// unlisted (by id) and ready.
    pub async fn watchable(&self, caller: &Caller, id: &str) -> Result<Option<Video>, AppError> {
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
    async fn fresh(&self, mut video: Video) -> Result<Option<Video>, AppError> {
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
                let Some(visibility) = Visibility::parse(&answer.visibility) else {
                    tracing::warn!(video.id = %video.id, visibility = %answer.visibility,
                        "media answered an unknown visibility; serving the local copy");
                    return Ok(Some(video));
                };
                let result = if visibility != video.visibility { "changed" } else { "confirmed" };
                metrics::counter!("transcoder_visibility_checks_total", "result" => result).increment(1);
                if store::confirm_video(&self.db, &video.id, visibility, video.media_version, now)
                    .await
                    .map_err(db_error)?
                {
                    video.visibility = visibility;
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

    pub fn may_watch(video: &Video, caller: &Caller) -> bool {
        video.is_owned_by(caller.user_id) || (video.visibility != Visibility::Private && video.playable())
    }

    /// What a client sees of the video: processing state for everyone allowed to see it,
    /// the error only for its owner.
    pub fn view(&self, video: &Video, caller: &Caller) -> VideoView {
        let owner = video.is_owned_by(caller.user_id);
        let playback: Option<&Playback> = video.playback.as_ref().filter(|_| video.status == VideoStatus::Ready);
        let base = format!("{}/video/{}", self.config.public_base_url.trim_end_matches('/'), video.id);
        let url = |path: &Option<String>| path.as_ref().map(|p| format!("{base}/hls/{p}"));
        let playable = video.playable();
        VideoView {
            id: video.id.clone(),
            state: video.status,
            error: if owner {
                video.error.clone()
            } else {
                video.error.as_ref().map(|_| "processing failed".to_string())
            },
            hls_url: playable.then(|| format!("{base}/hls/master.m3u8")),
            playable,
            dash_url: playback.map(|_| format!("{base}/dash/manifest.mpd")),
            thumbnail_url: playback.and_then(|p| url(&p.poster)),
            storyboard_url: playback.and_then(|p| url(&p.storyboard)),
            storyboard_vtt_url: playback.and_then(|p| url(&p.storyboard_vtt)),
            duration_seconds: playback
                .map(|p| p.duration_seconds)
                .or(video.source_duration_seconds.filter(|_| playable)),
            renditions: playback.map(|p| p.renditions.clone()).unwrap_or_default(),
            percent: video.status.progress(video.progress_percent).1,
        }
    }

    pub async fn videos_by_ids(&self, ids: &[String]) -> Result<Vec<Video>, AppError> {
        store::videos_by_ids(&self.db, ids).await.map_err(db_error)
    }

    /// Registers a video for uploads (gRPC `CreateUpload` from media, before its event).
    pub async fn register_video(&self, caller: &Caller, video_id: &str, visibility: &str) -> Result<(), AppError> {
        let me = caller.require_user()?;
        if Uuid::parse_str(video_id).is_err() {
            return Err(AppError::bad_input("video_id is not a UUID"));
        }
        let visibility = match visibility {
            "" => Visibility::Private,
            v => Visibility::parse(v)
                .ok_or_else(|| AppError::bad_input("visibility must be PUBLIC, UNLISTED or PRIVATE"))?,
        };
        if let Some(existing) = store::video(&self.db, video_id).await.map_err(db_error)?
            && !existing.is_owned_by(Some(me))
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
    pub async fn retry(&self, caller: &Caller, id: &str) -> Result<Video, AppError> {
        let video = self.owned_video(caller, id).await?;
        if video.status != VideoStatus::Failed {
            return Err(AppError::conflict(format!(
                "only a failed video can be retried; this one is {}",
                video.status
            )));
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
        store::set_status(&txn, &video.id, job, VideoStatus::Queued, None, None, now_ms()).await.map_err(db_error)?;
        // A split job starts over: its parts are planned and queued again.
        store::drop_parts(&txn, &video.id).await.map_err(db_error)?;
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
        store::clear_media(&self.db, &video.id, now_ms()).await.map_err(db_error)?;
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
        let uploads = store::uploads_of_video(&self.db, video_id).await.map_err(db_error)?;
        // Each upload on its own (the partials of the video's finals are among them): unfinished
        // ones aborted, completed partials' objects deleted; other sources go with the prefix.
        for upload in &uploads {
            self.drop_one(upload, UploadState::Terminated).await?;
            store::delete_upload(&self.db, &upload.id).await.map_err(db_error)?;
        }
        self.storage.delete_prefix(&format!("videos/{video_id}")).await.map_err(storage_error)?;
        Ok(())
    }
}
