//! Events media follows from other services (transcoder, accounts, the view beacon), applied
//! once through the inbox.

use crate::domain::{Media, PRODUCER, event_version, now_ms};
use crate::store;
use crate::video::{VideoStatus, Visibility};
use flick_platform::bus::{Envelope, envelope};
use flick_platform::db::sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};
use flick_platform::outbox::{self, Applied};
use flick_platform::{EventApplier, EventError};
use flick_proto::events::v1 as events;
use prost::Message;

/// What an applied event changes outside the database, done once its transaction commits.
#[derive(Debug, Default)]
pub struct Effects {
    /// Videos whose counts changed in bulk (and comments may be gone).
    recounted: Vec<String>,
    /// Videos deleted with their owner.
    deleted: Vec<String>,
    /// A video watched once more.
    viewed: Option<String>,
}

/// Media's consumer of other services' events (`flick_platform::ServiceInfra::consume_events`
/// applies each once, through the inbox).
impl EventApplier for Media {
    type Effects = Effects;

    async fn apply(&self, txn: &DatabaseTransaction, event: &Envelope) -> Result<Effects, EventError> {
        Ok(Media::apply(self, txn, event).await?)
    }

    async fn after_commit(&self, event: &Envelope, applied: Applied<Effects>) -> Result<(), EventError> {
        // Processing states, publication and an owner's deletion change which videos the
        // feed lists.
        if matches!(
            event.r#type.as_str(),
            "upload.completed" | "transcode.requested" | "transcode.failed" | "transcode.completed" | "user.deleted"
        ) {
            self.feed_head.changed().await;
        }
        if matches!(
            event.r#type.as_str(),
            "upload.completed" | "transcode.requested" | "transcode.failed" | "transcode.completed"
        ) {
            self.rows_changed(std::slice::from_ref(&event.subject)).await;
        }
        if let Applied::Now(fx) = applied {
            // Their rows (counts rewritten, or gone) and first comments; the subscriber counts
            // of channels they followed are at most the shared TTL old.
            self.rows_changed(&fx.deleted).await;
            self.rows_changed(&fx.recounted).await;
            for video in &fx.recounted {
                self.comment_heads.changed(video).await;
            }
            self.counters.invalidate(&fx.recounted).await;
            if let Some(video) = fx.viewed {
                self.counters.viewed(&video).await?;
            }
        }
        // Whatever the inbox says (a redelivery may follow a crash before the eviction).
        if matches!(event.r#type.as_str(), "user.updated" | "user.deleted")
            && let Err(e) = self.users.invalidate(&event.subject).await
        {
            // Retried: a stale entry would outlive the outage.
            return Err(EventError::Transient(format!("evicting user {} from the cache: {e}", event.subject)));
        }
        Ok(())
    }
}

impl Media {
    /// Applies an event from other services inside `txn` (the consumer's inbox transaction,
    /// so the change and "applied" commit together). Unknown or stale events do nothing.
    pub async fn apply<C: ConnectionTrait>(&self, txn: &C, e: &Envelope) -> Result<Effects, DbErr> {
        let now = now_ms();
        let mut effects = Effects::default();
        match e.r#type.as_str() {
            // A new source or a retry: processing again (also after a failure).
            "upload.completed" | "transcode.requested" => {
                store::start_processing(txn, &e.subject, now).await?;
            }
            "transcode.failed" => {
                let reason =
                    events::TranscodeFailed::decode(e.payload.as_slice()).map(|f| f.reason).unwrap_or_default();
                store::set_status(txn, &e.subject, VideoStatus::Failed, Some(&reason), None, now).await?;
            }
            "transcode.completed" => {
                let Some(v) = store::video(txn, &e.subject).await? else { return Ok(effects) };
                let public = v.visibility == Visibility::Public;
                store::set_status(txn, &v.id, VideoStatus::Ready, None, public.then_some(now), now).await?;
                if public && v.published_at_ms.is_none() {
                    let mut ready = v.clone();
                    ready.status = VideoStatus::Ready;
                    outbox::record(txn, &envelope("video.published", &v.id, PRODUCER, Self::video_event(&ready)))
                        .await?;
                }
            }
            // Counted after the commit: the pending delta lives in the cache.
            "video.viewed" => effects.viewed = Some(e.subject.clone()),
            "user.deleted" => {
                let forgotten = store::forget_user(txn, &e.subject).await?;
                effects.recounted = forgotten.recounted;
                effects.deleted = forgotten.videos.clone();
                for id in forgotten.videos {
                    let payload = events::VideoChanged {
                        video_id: id.clone(),
                        owner_id: e.subject.clone(),
                        version: event_version(),
                        ..Default::default()
                    };
                    outbox::record(txn, &envelope("video.deleted", &id, PRODUCER, payload.encode_to_vec())).await?;
                }
            }
            _ => {}
        }
        Ok(effects)
    }
}
