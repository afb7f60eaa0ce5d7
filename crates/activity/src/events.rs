//! What the activity service follows: media's videos (owner, visibility; a deletion removes
//! the video's activity and takes it out of every playlist), the transcoder's durations, and
//! accounts' deletions (a user's sessions, views, history, settings and playlists go;
//! aggregates hold no viewer and stay).
//!
//! Consumed without an inbox: every change is idempotent by itself (videos apply only a newer
//! version, durations and deletions are the same when repeated), so a redelivery changes
//! nothing.

use crate::domain::{Activity, Visibility};
use crate::store;
use flick_platform::bus::{Delivery, Envelope, HandlerError};
use flick_platform::documents::DocError;
use flick_proto::events::v1 as events;

pub const EVENT_PATTERNS: &[&str] =
    &["video.created", "video.updated", "video.published", "video.deleted", "transcode.completed", "user.deleted"];

fn retry(e: DocError) -> HandlerError {
    HandlerError::Retry(e.to_string())
}

fn decode<M: prost::Message + Default>(e: &Envelope) -> Result<M, HandlerError> {
    M::decode(e.payload.as_slice())
        .map_err(|err| HandlerError::Reject(format!("undecodable {} payload: {err}", e.r#type)))
}

impl Activity {
    pub async fn apply_event(&self, d: Delivery) -> Result<(), HandlerError> {
        let e = &d.envelope;
        let docs = self.documents();
        match e.r#type.as_str() {
            "video.created" | "video.updated" | "video.published" => {
                let v: events::VideoChanged = decode(e)?;
                let Some(visibility) = Visibility::parse(&v.visibility) else {
                    return Err(HandlerError::Reject(format!("unknown visibility {:?}", v.visibility)));
                };
                store::save_video(docs, &v.video_id, &v.owner_id, visibility, v.version).await.map_err(retry)?;
            }
            "video.deleted" => {
                let v: events::VideoChanged = decode(e)?;
                store::tombstone_video(docs, &v.video_id).await.map_err(retry)?;
                self.forget_totals(&v.video_id);
                let mut removed = store::delete_video_activity(docs, &v.video_id).await.map_err(retry)?;
                removed += store::remove_video_everywhere(docs, &v.video_id).await.map_err(retry)?;
                tracing::info!(video.id = %v.video_id, removed, "a deleted video's activity removed");
            }
            "transcode.completed" => {
                let t: events::TranscodeCompleted = decode(e)?;
                if t.duration_seconds.is_finite() && t.duration_seconds > 0.0 {
                    store::set_duration(docs, &t.video_id, t.duration_seconds).await.map_err(retry)?;
                }
            }
            "user.deleted" => {
                let u: events::UserDeleted = decode(e)?;
                let mut removed = store::delete_user_activity(docs, &u.user_id).await.map_err(retry)?;
                removed += store::delete_playlists_of(docs, &u.user_id).await.map_err(retry)?;
                tracing::info!(user.id = %u.user_id, removed, "a deleted user's activity removed");
            }
            _ => {}
        }
        if e.r#type.starts_with("video.") || e.r#type == "transcode.completed" {
            // The subject is the video: heartbeats read it again after this change.
            self.forget_video(&e.subject).await;
        }
        Ok(())
    }
}
