//! Transactional outbox and idempotent consumption.
//!
//! - [`record`] writes an event into the `outbox` table inside the caller's transaction, so
//!   the event exists exactly when the change it describes was committed.
//! - [`Relay`] publishes unpublished rows in order, waits for the broker's confirm, then marks
//!   them published. A broker outage delays events; it never loses them. A crash between
//!   publish and mark means the event is published again: delivery is at least once.
//! - [`apply_once`] runs a consumer's change in a transaction that also records the event id
//!   in `inbox`; a second delivery of the same event finds the id and does nothing.

use flick_bus::{Bus, Envelope};
use flick_db::sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, Statement, TransactionTrait,
};
use flick_db::{Migration, MigrationSet, placeholders};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The outbox and inbox tables; include this set in every service that uses them.
pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: "outbox",
    migrations: &[
        Migration {
            version: 1,
            name: "outbox_and_inbox",
            sqlite: "CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL,
                subject TEXT NOT NULL,
                producer TEXT NOT NULL,
                payload BLOB NOT NULL,
                occurred_at_ms BIGINT NOT NULL,
                published_at_ms BIGINT,
                attempts INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at_ms IS NULL;
            CREATE TABLE inbox (
                consumer TEXT NOT NULL,
                event_id TEXT NOT NULL,
                applied_at_ms BIGINT NOT NULL,
                PRIMARY KEY (consumer, event_id));",
            postgres: "CREATE TABLE outbox (
                seq BIGSERIAL PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL,
                subject TEXT NOT NULL,
                producer TEXT NOT NULL,
                payload BYTEA NOT NULL,
                occurred_at_ms BIGINT NOT NULL,
                published_at_ms BIGINT,
                attempts INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at_ms IS NULL;
            CREATE TABLE inbox (
                consumer TEXT NOT NULL,
                event_id TEXT NOT NULL,
                applied_at_ms BIGINT NOT NULL,
                PRIMARY KEY (consumer, event_id));",
        },
        Migration {
            version: 2,
            name: "outbox_trace_context",
            // The producing request's W3C trace context (JSON object), published with the event.
            sqlite: "ALTER TABLE outbox ADD COLUMN trace_context TEXT;",
            postgres: "ALTER TABLE outbox ADD COLUMN trace_context TEXT;",
        },
    ],
};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Bus(#[from] flick_bus::BusError),
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Records `envelope` in the outbox as part of `txn`.
pub async fn record<C: ConnectionTrait>(txn: &C, envelope: &Envelope) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let trace_context: Option<String> = (!envelope.trace_context.is_empty())
        .then(|| serde_json::to_string(&envelope.trace_context).unwrap_or_default());
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        placeholders(
            backend,
            "INSERT INTO outbox (id, event_type, subject, producer, payload, occurred_at_ms, trace_context) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        ),
        [
            envelope.id.clone().into(),
            envelope.r#type.clone().into(),
            envelope.subject.clone().into(),
            envelope.producer.clone().into(),
            envelope.payload.clone().into(),
            envelope.occurred_at_ms.into(),
            trace_context.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Outcome of [`apply_once`]: the change's result when this call applied the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied<T = ()> {
    Now(T),
    AlreadyApplied,
}

/// Runs `change` and records `event_id` for `consumer` in one transaction, unless the event
/// was applied before. Concurrent duplicates are resolved by the inbox's primary key. The
/// change's error type is the caller's (anything a database error converts into), so a
/// change can tell a bad event from a failed database.
pub async fn apply_once<F, T, E>(
    db: &DatabaseConnection,
    consumer: &str,
    event_id: &str,
    change: F,
) -> Result<Applied<T>, E>
where
    F: for<'t> FnOnce(&'t DatabaseTransaction) -> futures_like::BoxFuture<'t, Result<T, E>>,
    E: From<DbErr>,
{
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "INSERT INTO inbox (consumer, event_id, applied_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        }
        _ => "INSERT OR IGNORE INTO inbox (consumer, event_id, applied_at_ms) VALUES (?, ?, ?)",
    };
    let inserted = txn
        .execute_raw(Statement::from_sql_and_values(backend, sql, [consumer.into(), event_id.into(), now_ms().into()]))
        .await?
        .rows_affected();
    if inserted == 0 {
        txn.rollback().await?;
        return Ok(Applied::AlreadyApplied);
    }
    let result = change(&txn).await?;
    txn.commit().await?;
    Ok(Applied::Now(result))
}

/// Boxed futures without pulling `futures` into every caller's signature.
pub mod futures_like {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;
}

/// Publishes outbox rows to the bus.
#[derive(Clone)]
pub struct Relay {
    db: DatabaseConnection,
    bus: Bus,
    wake: Arc<Notify>,
    batch: u64,
    idle_poll: Duration,
    retention: Duration,
    prune_every: Duration,
}

/// How long published outbox rows and inbox rows are kept by default: a redelivery older than
/// this would be applied again, and no broker holds a message that long here.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deletes published outbox rows published more than `retention` ago and inbox rows applied
/// more than `retention` ago; unpublished rows stay whatever their age. Returns the numbers of
/// outbox and inbox rows deleted.
pub async fn prune(db: &DatabaseConnection, retention: Duration) -> Result<(u64, u64), DbErr> {
    let backend = db.get_database_backend();
    let before = now_ms() - retention.as_millis() as i64;
    let outbox = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            placeholders(backend, "DELETE FROM outbox WHERE published_at_ms IS NOT NULL AND published_at_ms < ?"),
            [before.into()],
        ))
        .await?
        .rows_affected();
    let inbox = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            placeholders(backend, "DELETE FROM inbox WHERE applied_at_ms < ?"),
            [before.into()],
        ))
        .await?
        .rows_affected();
    Ok((outbox, inbox))
}

impl Relay {
    pub fn new(db: DatabaseConnection, bus: Bus) -> Self {
        Self {
            db,
            bus,
            wake: Arc::new(Notify::new()),
            batch: 100,
            idle_poll: Duration::from_millis(500),
            retention: DEFAULT_RETENTION,
            prune_every: Duration::from_secs(3600),
        }
    }

    /// Keeps published outbox rows and inbox rows for `retention`, pruning every `every` while
    /// [`Relay::run`] runs (the defaults: 7 days, hourly).
    pub fn with_retention(mut self, retention: Duration, every: Duration) -> Self {
        self.retention = retention;
        self.prune_every = every;
        self
    }

    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.idle_poll = every;
        self
    }

    /// Call after committing a transaction that recorded events: publishes without waiting
    /// for the next poll.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Publishes everything pending, oldest first; stops at the first failure (the broker is
    /// down) so order is kept. Returns how many events were published.
    pub async fn flush(&self) -> Result<usize, OutboxError> {
        let mut total = 0;
        loop {
            let published = self.publish_batch().await?;
            total += published;
            if published < self.batch as usize {
                return Ok(total);
            }
        }
    }

    async fn publish_batch(&self) -> Result<usize, OutboxError> {
        let backend = self.db.get_database_backend();
        if backend == DatabaseBackend::Postgres {
            // Replicas share the outbox: each locks its own batch and skips the others'.
            let txn = self.db.begin().await?;
            let result = self.publish_rows(&txn, " FOR UPDATE SKIP LOCKED").await;
            txn.commit().await?;
            result
        } else {
            // SQLite has one writer: holding a transaction across a slow publish would block
            // every request that writes, so each row is marked on its own.
            self.publish_rows(&self.db, "").await
        }
    }

    async fn publish_rows<C: ConnectionTrait>(&self, conn: &C, lock: &str) -> Result<usize, OutboxError> {
        let backend = conn.get_database_backend();
        let rows = conn
            .query_all_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT seq, id, event_type, subject, producer, payload, occurred_at_ms, trace_context FROM outbox \
                     WHERE published_at_ms IS NULL ORDER BY seq LIMIT {}{lock}",
                    self.batch
                ),
            ))
            .await?;
        let mut published = 0;
        for row in &rows {
            let seq: i64 = row.try_get("", "seq")?;
            let envelope = Envelope {
                id: row.try_get("", "id")?,
                r#type: row.try_get("", "event_type")?,
                subject: row.try_get("", "subject")?,
                producer: row.try_get("", "producer")?,
                payload: row.try_get("", "payload")?,
                occurred_at_ms: row.try_get("", "occurred_at_ms")?,
                // Unreadable context (never written so) only loses the link between traces.
                trace_context: row
                    .try_get::<Option<String>>("", "trace_context")?
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_default(),
            };
            if let Err(e) = self.bus.publish(&envelope).await {
                conn.execute_raw(Statement::from_sql_and_values(
                    backend,
                    placeholders(backend, "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?"),
                    [seq.into()],
                ))
                .await?;
                return Err(e.into());
            }
            conn.execute_raw(Statement::from_sql_and_values(
                backend,
                placeholders(backend, "UPDATE outbox SET published_at_ms = ? WHERE seq = ?"),
                [now_ms().into(), seq.into()],
            ))
            .await?;
            published += 1;
        }
        Ok(published)
    }

    /// Number of events not yet published.
    pub async fn pending(&self) -> Result<u64, DbErr> {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT COUNT(*) AS n FROM outbox WHERE published_at_ms IS NULL",
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0) as u64)
    }

    /// Relays until `shutdown`, then makes a last attempt to flush what is pending.
    /// Old published and applied rows are pruned as it goes ([`Relay::with_retention`]).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_prune {
                next_prune = tokio::time::Instant::now() + self.prune_every;
                match prune(&self.db, self.retention).await {
                    Ok((0, 0)) => {}
                    Ok((outbox, inbox)) => tracing::info!(outbox, inbox, "pruned old outbox and inbox rows"),
                    Err(e) => tracing::warn!(error = %e, "outbox and inbox pruning failed; will retry"),
                }
            }
            let wait = match self.flush().await {
                Ok(_) => {
                    backoff = Duration::from_millis(200);
                    self.idle_poll
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox relay cannot publish; will retry");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), self.flush()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(published = n, "outbox flushed at shutdown"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "outbox not flushed at shutdown; it will be on next start")
            }
            _ => {}
        }
    }
}
