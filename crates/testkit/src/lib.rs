//! Test support shared by the adapter and service tests.
//!
//! The real services are started by `scripts/services.sh up` (which `make test` runs first).
//! Their addresses can be overridden with `FLICK_TEST_*` variables. A service that is not
//! reachable fails the test with a message saying how to start it: nothing is skipped.

pub mod app;

use sea_orm::{ConnectionTrait, Database};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// PostgreSQL 18 with pgvector (not the machine's PostgreSQL 15 on 5432).
pub fn pg_admin_url() -> String {
    env_or("FLICK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5433/postgres")
}
pub fn redis_url() -> String {
    env_or("FLICK_TEST_REDIS_URL", "redis://127.0.0.1:6379/")
}
/// The MongoDB-compatible server (secantusdb locally, MongoDB in Compose and GitHub Actions).
pub fn mongo_url() -> String {
    env_or("FLICK_TEST_MONGO_URL", "mongodb://127.0.0.1:27017")
}
pub fn amqp_url() -> String {
    env_or("FLICK_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

/// S3 test server (SeaweedFS locally, MinIO in GitHub Actions).
#[derive(Debug, Clone)]
pub struct S3 {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
}

pub fn s3() -> S3 {
    S3 {
        endpoint: env_or("FLICK_TEST_S3_ENDPOINT", "http://127.0.0.1:9000"),
        access_key: env_or("FLICK_TEST_S3_ACCESS_KEY", "flick"),
        secret_key: env_or("FLICK_TEST_S3_SECRET_KEY", "flicksecret"),
        bucket: env_or("FLICK_TEST_S3_BUCKET", "flick-test"),
    }
}

fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.contains(':') { host.to_string() } else { format!("{host}:{default_port}") }
}

/// Fails the test, with instructions, when `what` does not accept connections.
pub async fn require(what: &str, url: &str, default_port: u16) {
    let addr = host_port(url, default_port);
    let reachable = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(&addr)).await;
    if !matches!(reachable, Ok(Ok(_))) {
        panic!(
            "{what} is not reachable at {addr}. Start the test services with `scripts/services.sh up` \
             (`make test` does it), or point FLICK_TEST_* at running ones."
        );
    }
}

/// A fresh, empty PostgreSQL database for one test, dropped when the guard goes.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin = pg_admin_url();
        require("PostgreSQL+pgvector", &admin, 5432).await;
        let name = format!("flick_test_{}", uuid::Uuid::new_v4().simple());
        let conn = Database::connect(admin.as_str()).await.expect("connect to the admin database");
        conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        conn.close().await.ok();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Self { url: format!("{base}/{name}"), name }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = pg_admin_url();
        let name = self.name.clone();
        // Drop runs outside any async context we can borrow: use a private runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let conn = Database::connect(admin.as_str()).await.ok()?;
                conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()?;
                conn.close().await.ok()
            })
        })
        .join();
    }
}

/// A fresh MongoDB database for one test (`documents.url`), dropped when the guard goes.
pub struct TestDocuments {
    pub url: String,
}

impl TestDocuments {
    pub async fn create() -> Self {
        let base = mongo_url();
        require("the MongoDB-compatible server", &base, 27017).await;
        Self { url: format!("{}/flick_test_{}", base.trim_end_matches('/'), uuid::Uuid::new_v4().simple()) }
    }
}

impl Drop for TestDocuments {
    fn drop(&mut self) {
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let docs = flick_platform::documents::Documents::connect(Some(&url), std::path::Path::new("/"), "test")
                    .await
                    .ok()?;
                docs.drop_all().await.ok()
            })
        })
        .join();
    }
}

/// A unique name for queues, exchanges, keys and buckets of one test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A TCP proxy in front of a real service; `cut()` severs every connection and refuses new
/// ones (an outage), `restore()` lets them through again.
pub struct TcpProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl TcpProxy {
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let target = target.to_string();
        let (flag, gen_tx) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut cut = gen_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, up, generation }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// `scheme://user:pass@host:port/rest` with host:port replaced by the proxy's.
    pub fn rewrite(&self, url: &str) -> String {
        let original = host_port(url, 0);
        url.replacen(&original, &self.addr.to_string(), 1)
    }
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
/// The value of one series of this process's metrics (`name{label="value",…}` exactly as
/// rendered), 0 when it has not been recorded. Tests run one to a process (nextest), so no
/// other test's figures land in between.
pub fn metric(series: &str) -> f64 {
    let rendered = flick_kit::telemetry::metrics_handle().render();
    rendered
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0)
}

pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
