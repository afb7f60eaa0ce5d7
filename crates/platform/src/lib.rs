//! Builds the adapters a service runs on from the configuration: the shared ones (cache,
//! bus, object storage) once per process, the database once per service; and the one shape
//! of a service's bus consumers ([`consumers`]).

mod consumers;

use flick_bus::{Bus, BusOptions};
use flick_cache::Cache;
use flick_db::MigrationSet;
use flick_db::sea_orm::DatabaseConnection;
use flick_kit::server::{BackgroundTask, ReadyCheck};
use flick_kit::{Config, config::redact_url};
use flick_outbox::Relay;
use flick_storage::{ObjectStorage, StorageOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use consumers::{EventApplier, EventError};

pub use flick_bus as bus;
pub use flick_cache as cache;
pub use flick_db as db;
pub use flick_documents as documents;
pub use flick_outbox as outbox;
pub use flick_storage as storage;

/// The cache denylist of revoked access tokens and sessions: accounts writes it at logout
/// (members are the `revocation_keys` VerifyToken answers), holders of long-lived
/// connections watch it.
pub const REVOKED_TOKENS: &str = "accounts:revoked";

/// [`flick_kit::identity::RevocationFeed`] over the cache's mirrored denylist.
struct DenylistFeed(flick_cache::Denylist);

impl std::fmt::Debug for DenylistFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DenylistFeed")
    }
}

impl flick_kit::identity::RevocationFeed for DenylistFeed {
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.changes()
    }

    fn is_revoked<'a>(
        &'a self,
        keys: &'a [String],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<bool>> + Send + 'a>> {
        Box::pin(async move {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.0.contains_any(&keys).await.ok()
        })
    }
}

/// Adapters shared by every service of one process.
#[derive(Clone, Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    pub cache: Cache,
    pub bus: Bus,
    pub storage: ObjectStorage,
}

impl Shared {
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let cache = Cache::connect_with_prefix(config.cache.url.as_deref(), &config.cache.key_prefix).await?;
        let bus = Bus::connect(config.bus.url.as_deref(), bus_options(&config))?;
        let storage = ObjectStorage::open(&storage_options(&config))?;
        tracing::info!(
            cache = %config.cache.url.as_deref().map(redact_url).unwrap_or_else(|| "memory://".into()),
            bus = %config.bus.url.as_deref().map(redact_url).unwrap_or_else(|| "memory://".into()),
            storage = ?storage,
            "adapters ready"
        );
        Ok(Self { config: Arc::new(config), cache, bus, storage })
    }

    /// Checks bearer tokens with accounts (`endpoints.accounts`), watching the shared
    /// revocation list so a logout ends open subscriptions at once; `None` when this process
    /// knows no accounts endpoint.
    pub fn token_verifier(&self) -> anyhow::Result<Option<flick_kit::identity::TokenVerifier>> {
        let Some(url) = self.config.endpoints.accounts.as_deref() else { return Ok(None) };
        let feed = std::sync::Arc::new(DenylistFeed(self.cache.denylist(REVOKED_TOKENS)));
        Ok(Some(flick_kit::identity::TokenVerifier::connect_lazy(url)?.with_revocations(feed)))
    }

    /// Connects `service`'s own database and applies its migrations when configured to
    /// (always for SQLite, where nobody else would).
    pub async fn service(&self, name: &'static str, migrations: &[MigrationSet]) -> anyhow::Result<ServiceInfra> {
        let db = connect_db(&self.config, name).await?;
        let is_sqlite = db.get_database_backend() == flick_db::sea_orm::DatabaseBackend::Sqlite;
        if self.config.database.migrate_on_start || is_sqlite {
            flick_db::migrate(&db, migrations).await?;
        }
        let relay = Relay::new(db.clone(), self.bus.clone());
        Ok(ServiceInfra { name, db, shared: self.clone(), relay, stopping: CancellationToken::new() })
    }
}

/// Opens `service`'s database as configured.
pub async fn connect_db(config: &Config, service: &str) -> anyhow::Result<DatabaseConnection> {
    let url = flick_db::service_url(config.database.url.as_deref(), &config.data_dir, service)?;
    Ok(flick_db::connect(&url, service, config.database.max_connections).await?)
}

pub fn bus_options(config: &Config) -> BusOptions {
    BusOptions {
        exchange: config.bus.exchange.clone(),
        prefetch: config.bus.prefetch,
        max_attempts: config.bus.max_attempts,
        retry_base: Duration::from_millis(config.bus.retry_base_ms),
        queue_prefix: config.bus.queue_prefix.clone(),
        ..BusOptions::default()
    }
}

pub fn storage_options(config: &Config) -> StorageOptions {
    StorageOptions {
        url: config.storage.url.clone(),
        data_dir: config.data_dir.clone(),
        s3_endpoint: config.storage.s3.endpoint.clone(),
        s3_region: config.storage.s3.region.clone(),
        s3_access_key_id: config.storage.s3.access_key_id.clone(),
        s3_secret_access_key: config.storage.s3.secret_access_key.expose().map(str::to_owned),
        signing_key: config.storage.signing_key.expose().map(str::to_owned),
        public_base_url: config.storage.public_base_url.clone(),
    }
}

/// What one service runs on.
#[derive(Clone)]
pub struct ServiceInfra {
    pub name: &'static str,
    pub db: DatabaseConnection,
    pub shared: Shared,
    pub relay: Relay,
    /// Cancelled when the service's shutdown reaches its consumers (see [`consumers`]).
    stopping: CancellationToken,
}

impl ServiceInfra {
    /// Cancelled once the service is stopping (its shutdown has begun, or it was dropped
    /// without running): a consumer's handler watches it to give back the message in hand.
    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// Readiness checks of every adapter this service uses: shared ones, reported, never
    /// taking a replica out of the pool (see [`ReadyCheck::shared`]).
    pub fn checks(&self) -> Vec<ReadyCheck> {
        let db = self.db.clone();
        let cache = self.shared.cache.clone();
        let bus = self.shared.bus.clone();
        let storage = self.shared.storage.clone();
        vec![
            ReadyCheck::shared("database", move || {
                let db = db.clone();
                async move { flick_db::ping(&db).await }
            }),
            ReadyCheck::shared("cache", move || {
                let cache = cache.clone();
                async move { cache.ping().await }
            }),
            ReadyCheck::shared("bus", move || {
                let bus = bus.clone();
                async move { bus.ping().await }
            }),
            ReadyCheck::shared("storage", move || {
                let storage = storage.clone();
                async move { storage.ping().await }
            }),
        ]
    }

    /// This service's document store (`documents.url`), its migrations applied (index
    /// creation is idempotent, so every start applies what is missing), and its readiness
    /// check (shared, as the database's: every replica sees the same store).
    pub async fn documents(
        &self,
        migrations: &[flick_documents::Migration],
    ) -> anyhow::Result<(flick_documents::Documents, ReadyCheck)> {
        let config = &self.shared.config;
        let docs =
            flick_documents::Documents::connect(config.documents.url.as_deref(), &config.data_dir, self.name).await?;
        let applied = docs.migrate(self.name, migrations).await?;
        tracing::info!(
            service = self.name,
            backend = docs.backend_name(),
            url = %config.documents.url.as_deref().map(redact_url).unwrap_or_else(|| "sqlite (data dir)".into()),
            migrations_applied = applied.len(),
            "document store ready"
        );
        let pinged = docs.clone();
        let check = ReadyCheck::shared("documents", move || {
            let docs = pinged.clone();
            async move { docs.ping().await }
        });
        Ok((docs, check))
    }

    /// The outbox relay as a background task (flushes at shutdown).
    pub fn relay_task(&self) -> BackgroundTask {
        let relay = self.relay.clone();
        Box::new(move |shutdown| Box::pin(relay.run(shutdown)))
    }
}
