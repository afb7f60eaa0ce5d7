//! One shape for every consumer of the bus: [`ServiceInfra::consume_events`] for the events a
//! service follows (each applied once, through the inbox), [`ServiceInfra::consume`] for work
//! queues and for the rare event consumer that is idempotent by itself.
//!
//! Both start consuming when they are called, during the service's `build`: the queue is
//! declared and bound and the consumer registered before they return, so an event published
//! once the service has been built is kept for it, and a consumer that cannot start is an
//! error of `build` (the process does not start) rather than a task that only logs. Losing the
//! broker later is the bus's concern: its consumer reconnects with backoff.
//!
//! The returned [`BackgroundTask`] goes to the service (`Service::task`): it keeps the
//! consumer until the service's shutdown, then lets it finish the message in hand. A task that
//! is dropped without running (the service failed to start) stops its consumer.

use crate::ServiceInfra;
use anyhow::Context as _;
use flick_bus::{Delivery, Envelope, Handler, HandlerError, QueueSpec, handler};
use flick_db::sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use flick_kit::server::BackgroundTask;
use flick_kit::{AppError, ErrorCode};
use flick_outbox::{Applied, Relay, apply_once};
use std::sync::Arc;

/// Why an event was not applied; it decides what the bus does with the message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventError {
    /// The event itself is bad (its payload does not decode, the service refuses its input):
    /// another try cannot help, so it goes to the queue's dead-letter queue at once.
    #[error("bad event: {0}")]
    Bad(String),
    /// Something the change needs failed (the database, the cache): tried again later, with
    /// backoff, up to the queue's attempt limit.
    #[error("{0}")]
    Transient(String),
}

impl From<DbErr> for EventError {
    fn from(e: DbErr) -> Self {
        EventError::Transient(e.to_string())
    }
}

/// Bad input is a bad event; every other failure is worth another try.
impl From<AppError> for EventError {
    fn from(e: AppError) -> Self {
        match e.code() {
            ErrorCode::BadUserInput => EventError::Bad(e.message().to_string()),
            _ => EventError::Transient(e.message().to_string()),
        }
    }
}

impl From<EventError> for HandlerError {
    fn from(e: EventError) -> Self {
        match e {
            EventError::Bad(reason) => HandlerError::Reject(reason),
            EventError::Transient(reason) => HandlerError::Retry(reason),
        }
    }
}

/// A service's reaction to the events it follows, applied once per event
/// ([`ServiceInfra::consume_events`]): its database change commits in the same transaction as
/// the inbox row that marks the event applied, then what the change leaves to do outside the
/// database runs.
pub trait EventApplier: Clone + Send + Sync + 'static {
    /// What an applied change leaves to do after its commit (cache evictions, wake-ups).
    type Effects: Send + 'static;

    /// The change, inside the inbox transaction (events it records in the outbox commit with
    /// it). Unknown or stale events change nothing and succeed.
    fn apply(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> impl Future<Output = Result<Self::Effects, EventError>> + Send;

    /// Runs after the transaction, on every delivery: `Applied::Now(effects)` when this
    /// delivery applied the event, `Applied::AlreadyApplied` for a redelivery of one applied
    /// before. Only effects that are safe to repeat may run for a redelivery (a crash between
    /// the commit and the effect is followed by one). A failure here retries the delivery;
    /// the change is not applied again.
    fn after_commit(
        &self,
        event: &Envelope,
        applied: Applied<Self::Effects>,
    ) -> impl Future<Output = Result<(), EventError>> + Send;
}

/// Applies one delivered event once: the change and the inbox row in one transaction, the
/// relay woken when the change may have recorded events, then the applier's after-commit.
async fn apply_event<A: EventApplier>(
    db: &DatabaseConnection,
    relay: &Relay,
    consumer: &str,
    applier: &A,
    event: Envelope,
) -> Result<(), EventError> {
    let event = Arc::new(event);
    let (change, inside) = (applier.clone(), event.clone());
    let applied =
        apply_once(db, consumer, &event.id, move |txn| Box::pin(async move { change.apply(txn, &inside).await }))
            .await?;
    if matches!(applied, Applied::Now(_)) {
        relay.notify();
    }
    applier.after_commit(&event, applied).await
}

impl ServiceInfra {
    /// Consumes the event queue `queue` with `applier`: every event is applied once through
    /// the inbox (under this service's name), whatever the broker redelivers. A bad event
    /// ([`EventError::Bad`]) is dead-lettered at once, any other failure retried.
    pub async fn consume_events<A: EventApplier>(
        &self,
        queue: QueueSpec,
        applier: A,
    ) -> anyhow::Result<BackgroundTask> {
        let (db, relay, consumer) = (self.db.clone(), self.relay.clone(), self.name);
        let h = handler(move |d: Delivery| {
            let (db, relay, applier) = (db.clone(), relay.clone(), applier.clone());
            async move { apply_event(&db, &relay, consumer, &applier, d.envelope).await.map_err(HandlerError::from) }
        });
        self.consume(queue, h).await
    }

    /// Consumes `queue` with `handler`, without an inbox: for work queues (a job is not an
    /// event; its handler owns its idempotency and its outcome) and for an event consumer
    /// that is idempotent by itself, which says why where it is wired. Handlers that must
    /// give a message back at shutdown watch [`ServiceInfra::stopping`].
    pub async fn consume(&self, queue: QueueSpec, handler: Handler) -> anyhow::Result<BackgroundTask> {
        let name = queue.name.clone();
        let task = self
            .shared
            .bus
            .consume(queue, handler, self.stopping.clone())
            .await
            .with_context(|| format!("{} cannot consume the queue {name}", self.name))?;
        // Stops the consumer if the service never runs this task.
        let stopping = self.stopping.clone().drop_guard();
        Ok(Box::new(move |shutdown| {
            Box::pin(async move {
                shutdown.cancelled().await;
                drop(stopping);
                if let Err(e) = task.await {
                    tracing::error!(queue = %name, error = %e, "consumer ended abnormally");
                }
            })
        }))
    }
}
