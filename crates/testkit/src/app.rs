//! `TestApp`: one service built from a real configuration, bound to a free port, served in
//! this process, stopped when dropped.

use crate::{TestDatabase, TestDocuments, amqp_url, redis_url, require};
use flick_kit::{BoundService, Config, ServerOptions, Service};
use flick_platform::Shared;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// Which side of every port a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files, in-memory cache, in-process bus, local objects.
    Embedded,
    /// PostgreSQL+pgvector, Redis, RabbitMQ, the S3 server (and MongoDB, `with_documents`).
    Real,
}

/// The adapters of one test: a configuration and what must live as long as it.
pub struct TestInfra {
    pub config: Config,
    _database: Option<std::sync::Arc<TestDatabase>>,
    _documents: Option<std::sync::Arc<TestDocuments>>,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

impl TestInfra {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
        config.telemetry.log_level = "warn".into();
        let mut database = None;
        if backend == Backend::Real {
            require("Redis", &redis_url(), 6379).await;
            require("RabbitMQ", &amqp_url(), 5672).await;
            let db = TestDatabase::create().await;
            config.database.url = Some(db.url.clone());
            config.cache.url = Some(redis_url());
            config.bus.url = Some(amqp_url());
            let s3 = crate::s3();
            require("the S3 server", &s3.endpoint, 9000).await;
            config.storage.url = Some(format!("s3://{}", s3.bucket));
            config.storage.s3.endpoint = Some(s3.endpoint);
            config.storage.s3.access_key_id = Some(s3.access_key);
            config.storage.s3.secret_access_key = flick_kit::config::Secret::new(s3.secret_key);
            // A broker shared by parallel tests: each gets its own exchange and queues.
            let run = crate::unique("t");
            config.bus.exchange = format!("flick.{run}");
            config.bus.queue_prefix = format!("{run}.");
            config.cache.key_prefix = format!("{run}:");
            database = Some(std::sync::Arc::new(db));
        }
        Self { config, _database: database, _documents: None, _dir: std::sync::Arc::new(dir) }
    }

    /// The document store too: on the real side a fresh MongoDB database (the embedded side
    /// is a SQLite file in the data directory already). Only services with documents need it.
    pub async fn with_documents(mut self) -> Self {
        if self._database.is_some() {
            let docs = TestDocuments::create().await;
            self.config.documents.url = Some(docs.url.clone());
            self._documents = Some(std::sync::Arc::new(docs));
        }
        self
    }

    /// Another replica's view: the same stores, its own process-local state.
    pub fn replica(&self) -> Self {
        Self {
            config: self.config.clone(),
            _database: self._database.clone(),
            _documents: self._documents.clone(),
            _dir: self._dir.clone(),
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub shared: Shared,
    shutdown: CancellationToken,
    _infra: TestInfra,
}

impl TestApp {
    /// Builds a service with `build` on `infra` and serves it on a free port. Once it returns
    /// the service's consumers are consuming (they start during `build`), so an event published
    /// after it is kept for them: no settling wait is needed.
    pub async fn start<F, Fut>(infra: TestInfra, build: F) -> Self
    where
        F: FnOnce(Shared) -> Fut,
        Fut: Future<Output = anyhow::Result<Service>>,
    {
        // TEST_LOG=1 shows the service's logs (hidden by default, like zero-to-production).
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = flick_kit::telemetry::init(
                &flick_kit::config::TelemetryConfig {
                    log_format: flick_kit::config::LogFormat::Pretty,
                    log_level: "info".into(),
                    ..Default::default()
                },
                "test",
            );
        }
        let shared = Shared::connect(infra.config.clone()).await.expect("adapters connect");
        Self::start_on(infra, shared, build).await
    }

    /// Another service of the same process as `beside`: it shares that app's cache, bus and
    /// object storage (as `flick serve` shares them), with `infra`'s configuration (e.g.
    /// `beside`'s infra's replica with `endpoints` pointing at it). On the embedded backend
    /// this is how services see each other's events.
    pub async fn start_beside<F, Fut>(infra: TestInfra, beside: &TestApp, build: F) -> Self
    where
        F: FnOnce(Shared) -> Fut,
        Fut: Future<Output = anyhow::Result<Service>>,
    {
        let shared = Shared {
            config: std::sync::Arc::new(infra.config.clone()),
            cache: beside.shared.cache.clone(),
            bus: beside.shared.bus.clone(),
            storage: beside.shared.storage.clone(),
        };
        Self::start_on(infra, shared, build).await
    }

    async fn start_on<F, Fut>(infra: TestInfra, shared: Shared, build: F) -> Self
    where
        F: FnOnce(Shared) -> Fut,
        Fut: Future<Output = anyhow::Result<Service>>,
    {
        flick_kit::telemetry::metrics_handle();
        let service = build(shared.clone()).await.expect("service builds");
        let bound =
            BoundService::bind(service, "127.0.0.1:0".parse().unwrap(), ServerOptions::from(&infra.config.server))
                .await
                .expect("bind");
        let addr = bound.local_addr();
        let shutdown = CancellationToken::new();
        tokio::spawn(bound.run_until_stopped(shutdown.clone()));
        Self { addr, shared, shutdown, _infra: infra }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Statements `service` has run so far (`db_queries_total` of the app's `/metrics`). The
    /// recorder is process-wide: callers compare a before and an after around requests they
    /// make, and rely on nextest running each test in its own process so that no other test's
    /// statements land in between.
    pub async fn db_queries(&self, service: &str) -> u64 {
        crate::metric(&format!("db_queries_total{{service=\"{service}\"}}")) as u64
    }
}

/// Runs each scenario `async fn name(backend: Backend)` twice: `embedded::name` on SQLite + the
/// in-memory cache + the in-process bus, `real::name` on PostgreSQL + Redis + RabbitMQ.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test] async fn $scenario() { super::$scenario($crate::app::Backend::Embedded).await; })*
        }
        mod real {
            $(#[tokio::test] async fn $scenario() { super::$scenario($crate::app::Backend::Real).await; })*
        }
    };
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
