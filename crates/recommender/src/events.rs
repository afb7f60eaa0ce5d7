//! The recommender's consumer of media's events: each applied once through the inbox
//! (`flick_platform::ServiceInfra::consume_events`), the embedder woken when it queued text.

use crate::Recommender;
use flick_platform::bus::Envelope;
use flick_platform::db::sea_orm::DatabaseTransaction;
use flick_platform::outbox::Applied;
use flick_platform::{EventApplier, EventError};

impl EventApplier for Recommender {
    /// Whether the change queued a video's text to embed.
    type Effects = bool;

    async fn apply(&self, txn: &DatabaseTransaction, event: &Envelope) -> Result<bool, EventError> {
        Ok(Recommender::apply(self, txn, event).await?)
    }

    async fn after_commit(&self, _event: &Envelope, applied: Applied<bool>) -> Result<(), EventError> {
        if applied == Applied::Now(true) {
            self.wake_embedder();
        }
        Ok(())
    }
}
