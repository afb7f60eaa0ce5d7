//! Configuration: built-in defaults < TOML file < `FLICK_*` environment variables
//! (`__` separates nesting levels: `FLICK_DATABASE__URL`). Unknown keys are errors.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// Top-level keys that are single words; every other `FLICK_*` variable without `__`
/// (`FLICK_TOOLS_DIR`, `FLICK_TEST_PG_URL`, `FLICK_BIN`, …) belongs to scripts and tests.
const TOP_LEVEL_SCALARS: &[&str] = &["data_dir"];

/// The whole effective configuration of a Flick process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where embedded adapters keep their data (SQLite files, objects).
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub bus: BusConfig,
    pub storage: StorageConfig,
    pub telemetry: TelemetryConfig,
    pub graphql: GraphqlConfig,
    pub documents: DocumentsConfig,
    pub accounts: AccountsConfig,
    pub media: MediaConfig,
    pub transcoder: TranscoderConfig,
    pub recommender: RecommenderConfig,
    pub endpoints: EndpointsConfig,
    pub identity: IdentityConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            cache: CacheConfig::default(),
            bus: BusConfig::default(),
            storage: StorageConfig::default(),
            telemetry: TelemetryConfig::default(),
            graphql: GraphqlConfig::default(),
            documents: DocumentsConfig::default(),
            accounts: AccountsConfig::default(),
            media: MediaConfig::default(),
            transcoder: TranscoderConfig::default(),
            endpoints: EndpointsConfig::default(),
            identity: IdentityConfig::default(),
            recommender: RecommenderConfig::default(),
        }
    }
}

/// The document store (views, watch history): SQLite by default, MongoDB in production.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentsConfig {
    /// `mongodb://…`; empty: the service's SQLite database.
    #[serde(serialize_with = "redact_url_password")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// Directory of Ed25519 signing keys (current and previous); empty: generated under
    /// `data_dir/keys` on first start.
    pub jwt_keys_dir: Option<PathBuf>,
    pub access_token_ttl_seconds: u64,
    /// A session (refresh-token family) ends this long after its login; refreshing does not
    /// extend it.
    pub session_lifetime_seconds: u64,
    /// Login attempts allowed in one window per account from one client address,
    pub login_failures_per_account_address: u64,
    /// per account from all addresses together (distributed guessing),
    pub login_failures_per_account: u64,
    /// and per address: past it, an address gets only a first attempt per account per window
    /// (so other people's failures never lock out a correct password).
    pub login_failures_per_address: u64,
    pub login_failure_window_seconds: u64,
    /// Memory argon2id hashing may use at once: each hash takes 19 MiB, so this / 19 hashes
    /// run in parallel (at least one); the rest wait `password_hash_wait_ms`, then get 503.
    pub password_hash_memory_mib: u64,
    pub password_hash_wait_ms: u64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            jwt_keys_dir: None,
            access_token_ttl_seconds: 900,
            session_lifetime_seconds: 30 * 24 * 3600,
            login_failures_per_account_address: 5,
            login_failures_per_account: 20,
            login_failures_per_address: 30,
            login_failure_window_seconds: 900,
            // 8 hashes at once.
            password_hash_memory_mib: 152,
            password_hash_wait_ms: 500,
        }
    }
}

/// How services know a request's identity headers come from the mesh.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Shared by the edge, the router and the services: `x-user-id` counts only beside
    /// `x-flick-mesh` with this value. Empty: trusted by network position alone.
    pub mesh_secret: Secret,
}

/// Where services reach each other over gRPC (`http://transcoder:8083`). Empty: `flick serve`
/// fills in the local port of each service it runs; a service that is neither is not called.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointsConfig {
    pub accounts: Option<String>,
    pub media: Option<String>,
    pub transcoder: Option<String>,
    pub recommender: Option<String>,
}

/// Media's counters (likes, comments, views): cached, with the database as truth.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// How often the reconciler recomputes changed videos' counts from their rows and
    /// flushes pending views into the database.
    pub reconcile_interval_seconds: u64,
    /// How long a cached count lives without being refreshed.
    pub counter_ttl_seconds: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self { reconcile_interval_seconds: 30, counter_ttl_seconds: 3600 }
    }
}

/// Uploads, transcode workers and playback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TranscoderConfig {
    /// Largest accepted upload (`Tus-Max-Size`).
    pub max_upload_bytes: u64,
    /// Bytes of uploads (in progress and kept sources) one user may hold.
    pub user_quota_bytes: u64,
    /// An upload not finished within this time expires and its parts are dropped.
    pub upload_expiry_seconds: u64,
    /// Unfinished uploads one user may have open at once.
    pub max_open_uploads_per_user: u32,
    /// A PATCH body that sends nothing for this long is cut off: what arrived is kept and
    /// the upload is free for the next request.
    pub upload_idle_timeout_seconds: u64,
    /// Playback trusts the local copy of a video's visibility for this long after media last
    /// confirmed it (an event or a check); older copies are checked with media over gRPC.
    pub visibility_max_age_seconds: u64,
    /// Jobs one process transcodes at once (`flick worker` and `flick serve`); 0: no worker.
    pub workers: usize,
    /// Attempts of a failing job before it is dead-lettered.
    pub job_attempts: u32,
    pub ffmpeg: String,
    pub ffprobe: String,
    /// x264 preset of every rung.
    pub preset: String,
    pub segment_seconds: u32,
    pub audio_bitrate_kbps: u32,
    /// A job whose encode runs longer than this is killed and retried.
    pub job_timeout_seconds: u64,
    /// Videos at least this long play before their ladder finishes: finished segments are
    /// published as they come (a growing playlist). 0: only when the ladder is done.
    pub early_playback_min_seconds: u32,
    /// Where workers keep a job's source and outputs while they work; empty: the system's.
    pub work_dir: Option<PathBuf>,
    /// The ladder: rungs above the source's size are skipped (never upscaled).
    pub rungs: Vec<RungConfig>,
    /// Public origin that playback URLs start with (the edge).
    pub public_base_url: String,
    /// A running job's lease in the database: renewed by its worker every third of this, so a
    /// second delivery of the job (RabbitMQ redelivers after its consumer timeout, or after the
    /// worker's connection dropped) waits while the job runs, and takes over once a dead
    /// worker's lease lapses.
    pub job_lease_seconds: u64,
    /// Jobs of one user running at once while another user's job waits (fair scheduling
    /// across workers); the excess waits in the queue. 0: no cap.
    pub user_jobs_in_flight: u32,
    /// Retries (`PATCH /video/{id}`) of one uploaded source; a new upload starts the count again.
    pub video_retries: u32,
    /// ffmpeg's and ffprobe's address-space limit (RLIMIT_AS), bytes; 0: none. Address space,
    /// not resident memory: every encoder thread reserves a stack, so many-core hosts need more.
    pub ffmpeg_memory_bytes: u64,
    /// ffmpeg's CPU-time limit (RLIMIT_CPU, all its threads), seconds; 0: the job timeout
    /// times the CPUs.
    pub ffmpeg_cpu_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RungConfig {
    pub name: String,
    pub height: u32,
    pub video_bitrate_kbps: u32,
    pub max_bitrate_kbps: u32,
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        let rung = |name: &str, height, video_bitrate_kbps, max_bitrate_kbps| RungConfig {
            name: name.into(),
            height,
            video_bitrate_kbps,
            max_bitrate_kbps,
        };
        Self {
            max_upload_bytes: 10 * 1024 * 1024 * 1024,
            user_quota_bytes: 50 * 1024 * 1024 * 1024,
            upload_expiry_seconds: 24 * 3600,
            max_open_uploads_per_user: 10,
            upload_idle_timeout_seconds: 30,
            visibility_max_age_seconds: 60,
            workers: 1,
            job_attempts: 3,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            preset: "veryfast".into(),
            segment_seconds: 4,
            audio_bitrate_kbps: 128,
            job_timeout_seconds: 3600,
            early_playback_min_seconds: 60,
            work_dir: None,
            rungs: vec![
                rung("1080p", 1080, 5000, 5350),
                rung("720p", 720, 2800, 3000),
                rung("480p", 480, 1400, 1500),
                rung("360p", 360, 800, 856),
                rung("240p", 240, 400, 428),
            ],
            public_base_url: "http://127.0.0.1:8080".into(),
            job_lease_seconds: 60,
            user_jobs_in_flight: 2,
            video_retries: 5,
            ffmpeg_memory_bytes: 16 * 1024 * 1024 * 1024,
            ffmpeg_cpu_seconds: 0,
        }
    }
}

/// Text embeddings and recommendations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RecommenderConfig {
    /// all-MiniLM-L6-v2's `model.safetensors`, `tokenizer.json` and `config.json`, as
    /// `scripts/models.sh` installs them; empty: `$FLICK_TOOLS_DIR/models/all-MiniLM-L6-v2`
    /// (`/var/cache/flick/tools/...` when `FLICK_TOOLS_DIR` is unset).
    pub model_dir: Option<PathBuf>,
    /// Most texts embedded in one forward pass.
    pub batch_size: usize,
}

impl Default for RecommenderConfig {
    fn default() -> Self {
        Self { model_dir: None, batch_size: 32 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    /// Each service listens on its own port, also when all run in one process.
    pub ports: ServicePorts,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Largest accepted request body for REST and GraphQL (uploads have their own limit).
    pub max_body_bytes: usize,
    /// Per-request timeout for REST and GraphQL handlers.
    pub request_timeout_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            ports: ServicePorts::default(),
            shutdown_grace_seconds: 20,
            max_body_bytes: 1024 * 1024,
            request_timeout_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServicePorts {
    pub accounts: u16,
    pub media: u16,
    pub transcoder: u16,
    pub recommender: u16,
}

impl Default for ServicePorts {
    fn default() -> Self {
        Self { accounts: 8081, media: 8082, transcoder: 8083, recommender: 8084 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://…/{service}.db` or `postgres://…`. `{service}` is replaced by the service
    /// name; on PostgreSQL each service also gets its own schema. Empty: SQLite files in
    /// `data_dir/db/`.
    #[serde(serialize_with = "redact_url_password")]
    pub url: Option<String>,
    pub max_connections: u32,
    /// Run pending migrations when a service starts (always on for SQLite).
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: None, max_connections: 10, migrate_on_start: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory://` (default) or `redis://host:port/db`.
    #[serde(serialize_with = "redact_url_password")]
    pub url: Option<String>,
    /// Prepended to every key (isolates environments sharing one Redis).
    pub key_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `memory://` (default, in-process) or `amqp://user:pass@host:port/vhost`.
    #[serde(serialize_with = "redact_url_password")]
    pub url: Option<String>,
    /// Durable topic exchange for domain events.
    pub exchange: String,
    /// Unacknowledged messages a consumer may hold.
    pub prefetch: u16,
    /// Deliveries of one message before it goes to the dead-letter queue.
    pub max_attempts: u32,
    /// First retry delay; each further retry doubles it.
    pub retry_base_ms: u64,
    /// Prepended to every queue name (isolates environments sharing one broker).
    pub queue_prefix: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: None,
            exchange: "flick.events".into(),
            prefetch: 16,
            max_attempts: 5,
            retry_base_ms: 1000,
            queue_prefix: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `file:///path` or `s3://bucket`. Empty: `data_dir/objects`.
    pub url: Option<String>,
    pub s3: S3Config,
    /// Key for signing URLs of the local-directory backend (random per process if unset).
    pub signing_key: Secret,
    /// Where clients reach locally stored objects (the edge's `/video/objects`).
    pub public_base_url: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: None,
            s3: S3Config::default(),
            signing_key: Secret::default(),
            public_base_url: "http://127.0.0.1:8080/video/objects".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Custom endpoint (MinIO, SeaweedFS); empty for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Secret,
}

impl Default for S3Config {
    fn default() -> Self {
        Self { endpoint: None, region: "us-east-1".into(), access_key_id: None, secret_access_key: Secret::default() }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `tracing` filter directive; `RUST_LOG` overrides it.
    pub log_level: String,
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`. Empty: no trace export.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_format: LogFormat::Json, log_level: "info".into(), otlp_endpoint: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlConfig {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub introspection: bool,
    /// Serve GraphiQL on `GET /graphql`.
    pub graphiql: bool,
    /// How often an open subscription re-checks the token that opened it with accounts (a
    /// revocation the shared list reports ends it at once; expiry ends it on time).
    pub subscription_recheck_seconds: u64,
    /// Subscriptions one user may have open at once in one service process.
    pub max_subscriptions_per_user: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 2000,
            introspection: true,
            graphiql: true,
            subscription_recheck_seconds: 30,
            max_subscriptions_per_user: 16,
        }
    }
}

/// A secret value: usable by code, never printed, logged or serialised in clear.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(Option<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Some(value.into()))
    }
    pub fn expose(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "[redacted]" } else { "[unset]" })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(_) => s.serialize_str("[redacted]"),
            None => s.serialize_none(),
        }
    }
}

fn redact_url_password<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_str(&redact_url(u)),
        None => s.serialize_none(),
    }
}

/// `scheme://user:secret@host` → `scheme://user:REDACTED@host`, for printing and logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed("FLICK_"))
    }

    /// Like [`Config::load`] with an explicit environment provider (tests).
    pub fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = env
            .filter(|key| {
                let k = key.as_str().to_ascii_lowercase();
                k.contains("__") || TOP_LEVEL_SCALARS.contains(&k.as_str())
            })
            .split("__");
        figment = figment.merge(env);
        let mut cfg: Config = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        cfg.normalise();
        Ok(cfg)
    }

    /// Empty strings from the environment mean "unset".
    fn normalise(&mut self) {
        for url in [
            &mut self.database.url,
            &mut self.cache.url,
            &mut self.bus.url,
            &mut self.storage.url,
            &mut self.telemetry.otlp_endpoint,
            &mut self.storage.s3.endpoint,
            &mut self.documents.url,
        ] {
            if url.as_deref().is_some_and(|u| u.trim().is_empty()) {
                *url = None;
            }
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

#[cfg(test)]
#[expect(clippy::result_large_err, reason = "figment's Jail closures must return figment::Error")]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file("flick.toml", "[server]\nhost = \"0.0.0.0\"\n[bus]\nmax_attempts = 3\n")?;
            jail.set_env("FLICK_BUS__MAX_ATTEMPTS", "7");
            jail.set_env("FLICK_SERVER__PORTS__MEDIA", "9999");
            let cfg = Config::load(Some(Path::new("flick.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(cfg.server.host, "0.0.0.0");
            assert_eq!(cfg.bus.max_attempts, 7);
            assert_eq!(cfg.server.ports.media, 9999);
            assert_eq!(cfg.server.ports.accounts, 8081);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_errors_in_files_and_environment() {
        Jail::expect_with(|jail| {
            jail.create_file("flick.toml", "[server]\nhots = \"0.0.0.0\"\n")?;
            let err = Config::load(Some(Path::new("flick.toml"))).unwrap_err().to_string();
            assert!(err.contains("hots"), "{err}");
            jail.clear_env();
            jail.set_env("FLICK_DATABSE__URL", "postgres://x");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("databse"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn script_and_test_variables_are_not_config_keys() {
        Jail::expect_with(|jail| {
            jail.set_env("FLICK_TEST_PG_URL", "postgres://x");
            jail.set_env("FLICK_TOOLS_DIR", "/tmp");
            jail.set_env("FLICK_ROOT", "/work");
            jail.set_env("FLICK_DATA_DIR", "/srv/flick");
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.data_dir, PathBuf::from("/srv/flick"));
            Ok(())
        });
    }

    #[test]
    fn secrets_and_url_passwords_never_print() {
        let mut cfg = Config::default();
        cfg.database.url = Some("postgres://flick:hunter2@db:5432/flick".into());
        cfg.bus.url = Some("amqp://guest:guestpw@mq:5672/%2f".into());
        cfg.storage.s3.secret_access_key = Secret::new("s3cr3t-key");
        let printed = cfg.to_redacted_toml();
        let debugged = format!("{cfg:?}");
        for secret in ["hunter2", "guestpw", "s3cr3t-key"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(!debugged.contains("s3cr3t-key"));
        assert!(printed.contains("postgres://flick:REDACTED@db:5432/flick"), "{printed}");
    }
}
