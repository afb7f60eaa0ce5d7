//! Media's events the transcoder follows: owners and visibility of videos, deletions of
//! videos and users.

use crate::domain::{Transcoder, Visibility, db_error, now_ms};
use crate::store;
use flick_kit::AppError;
use flick_platform::bus::Envelope;
use flick_proto::events::v1 as events;
use prost::Message as _;

impl Transcoder {
    /// Media's events: a created or updated video's owner and visibility; a deleted video's
    /// files; a deleted user's videos.
    pub async fn apply_event(&self, e: &Envelope) -> Result<(), AppError> {
        match e.r#type.as_str() {
            "video.created" | "video.updated" | "video.published" => {
                let v = events::VideoChanged::decode(e.payload.as_slice())
                    .map_err(|err| AppError::bad_input(format!("undecodable {}: {err}", e.r#type)))?;
                let visibility = Visibility::parse(&v.visibility).ok_or_else(|| {
                    AppError::bad_input(format!("{} with an unknown visibility {:?}", e.r#type, v.visibility))
                })?;
                let now = now_ms();
                // True as of when media wrote it: a late event leaves the copy stale, so
                // playback checks with media rather than trusting it for the full bound.
                let as_of = if v.version > 0 { (v.version / 1000).min(now) } else { now };
                let video = store::MediaVideo {
                    id: &v.video_id,
                    owner_id: &v.owner_id,
                    visibility,
                    version: v.version,
                    synced_at_ms: as_of,
                };
                if !store::upsert_video(&self.db, &video, now).await.map_err(db_error)? {
                    tracing::debug!(video.id = %v.video_id, version = v.version, "an older or deleted video's event: ignored");
                }
                Ok(())
            }
            "video.deleted" => {
                let version = events::VideoChanged::decode(e.payload.as_slice()).map(|v| v.version).unwrap_or_default();
                self.forget_video(&e.subject, version).await
            }
            "user.deleted" => {
                let owned = store::video_ids_of_owner(&self.db, &e.subject).await.map_err(db_error)?;
                for id in owned {
                    self.forget_video(&id, 0).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
