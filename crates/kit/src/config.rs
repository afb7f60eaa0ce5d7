//! Configuration: built-in defaults < TOML file < `FLICK_*` environment variables
//! (`__` separates nesting levels: `FLICK_DATABASE__URL`). Unknown keys are errors.
//!
//! The platform's sections (server, database, cache, bus, storage, …) are typed here. Each
//! service's own section (`[media]`, `FLICK_MEDIA__*`) is typed in its crate as a
//! [`ConfigSection`]; the binary registers them ([`SectionSpec::of`]) when it loads the
//! configuration, so their keys are checked and printed with the rest, and a service reads its
//! section with [`Config::section`].

use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// Top-level keys that are single words; every other `FLICK_*` variable without `__`
/// (`FLICK_TOOLS_DIR`, `FLICK_TEST_PG_URL`, `FLICK_BIN`, …) belongs to scripts and tests.
const TOP_LEVEL_SCALARS: &[&str] = &["data_dir"];

/// The platform section the services' sections come before, in `flick config` and in the list
/// of known sections an unknown one's error gives.
const SERVICES_BEFORE: &str = "endpoints";

/// The whole effective configuration of a Flick process.
///
/// `Deserialize` reads the platform's sections only; [`Config::load`] reads the services' too.
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
    pub endpoints: EndpointsConfig,
    pub identity: IdentityConfig,
    /// The services' own sections, in the order they were registered or first set; read with
    /// [`Config::section`], changed with [`Config::section_mut`].
    #[serde(skip)]
    pub services: ServiceSections,
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
            endpoints: EndpointsConfig::default(),
            identity: IdentityConfig::default(),
            services: ServiceSections::default(),
        }
    }
}

/// The platform's sections printed before the services' ones (`flick config`'s order).
#[derive(Serialize)]
struct Head<'a> {
    data_dir: &'a PathBuf,
    server: &'a ServerConfig,
    database: &'a DatabaseConfig,
    cache: &'a CacheConfig,
    bus: &'a BusConfig,
    storage: &'a StorageConfig,
    telemetry: &'a TelemetryConfig,
    graphql: &'a GraphqlConfig,
    documents: &'a DocumentsConfig,
}

/// The platform's sections printed after the services' ones, from [`SERVICES_BEFORE`] on.
#[derive(Serialize)]
struct Tail<'a> {
    endpoints: &'a EndpointsConfig,
    identity: &'a IdentityConfig,
}

impl<'a> Head<'a> {
    fn of(c: &'a Config) -> Self {
        Self {
            data_dir: &c.data_dir,
            server: &c.server,
            database: &c.database,
            cache: &c.cache,
            bus: &c.bus,
            storage: &c.storage,
            telemetry: &c.telemetry,
            graphql: &c.graphql,
            documents: &c.documents,
        }
    }
}

impl<'a> Tail<'a> {
    fn of(c: &'a Config) -> Self {
        Self { endpoints: &c.endpoints, identity: &c.identity }
    }
}

/// A service's own section of the configuration, defined in the service's crate (kit knows no
/// service). Its keys follow the same rules as the platform's: `[NAME]` in the file,
/// `FLICK_NAME__KEY` in the environment, `#[serde(default, deny_unknown_fields)]`, secrets as
/// [`Secret`].
pub trait ConfigSection:
    Serialize + DeserializeOwned + Default + Clone + fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// The section's top-level key.
    const NAME: &'static str;
}

/// Reads one section out of the whole configuration.
type Extract = fn(&Figment) -> Result<Box<dyn Section>, Box<figment::Error>>;

/// A service section the configuration loads: the binary passes one for every service it has
/// to [`Config::load`], also for services it does not run, so every section is checked.
#[derive(Clone, Copy)]
pub struct SectionSpec {
    name: &'static str,
    defaults: fn(Figment) -> Figment,
    extract: Extract,
}

impl SectionSpec {
    pub fn of<T: ConfigSection>() -> Self {
        Self {
            name: T::NAME,
            defaults: |figment| figment.merge(Serialized::defaults(Named(&T::default()))),
            extract: |figment| Ok(Box::new(figment.extract::<Only<T>>().map_err(Box::new)?.0)),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Debug for SectionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SectionSpec").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A [`ConfigSection`] with its type erased, so [`Config`] can hold any service's.
trait Section: Any + fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;
    fn clone_box(&self) -> Box<dyn Section>;
    fn equals(&self, other: &dyn Section) -> bool;
    /// `[NAME]` and its keys, as `toml::to_string_pretty` prints them inside the whole file.
    fn to_toml(&self) -> Result<String, toml::ser::Error>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: ConfigSection> Section for T {
    fn name(&self) -> &'static str {
        T::NAME
    }
    fn clone_box(&self) -> Box<dyn Section> {
        Box::new(self.clone())
    }
    fn equals(&self, other: &dyn Section) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
    fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(&Named(self))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A section under its name: `{ NAME = section }`.
struct Named<'a, T>(&'a T);

impl<T: ConfigSection> Serialize for Named<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut state = s.serialize_struct("Config", 1)?;
        state.serialize_field(T::NAME, self.0)?;
        state.end()
    }
}

/// The section `T::NAME` read out of the whole configuration, every other key skipped (the
/// platform's part and the other sections are checked by their own readers). Read inside the
/// whole configuration so its errors name the full key (`media.nope`) and where it came from.
struct Only<T>(T);

impl<'de, T: ConfigSection> Deserialize<'de> for Only<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Sections<T>(PhantomData<T>);

        impl<'de, T: ConfigSection> Visitor<'de> for Sections<T> {
            type Value = Only<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a configuration with a `{}` section", T::NAME)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Only<T>, A::Error> {
                let mut section = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == T::NAME {
                        section = Some(map.next_value::<T>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Only(section.unwrap_or_default()))
            }
        }

        d.deserialize_map(Sections(PhantomData))
    }
}

/// The services' sections of a [`Config`], at most one of each type.
#[derive(Default)]
pub struct ServiceSections(Vec<Box<dyn Section>>);

impl ServiceSections {
    fn get<T: ConfigSection>(&self) -> Option<&T> {
        self.0.iter().find_map(|s| s.as_any().downcast_ref::<T>())
    }

    fn get_or_insert_default<T: ConfigSection>(&mut self) -> &mut T {
        let at = match self.0.iter().position(|s| s.as_any().is::<T>()) {
            Some(at) => at,
            None => {
                self.0.push(Box::new(T::default()));
                self.0.len() - 1
            }
        };
        self.0[at].as_any_mut().downcast_mut::<T>().expect("the section found or pushed is a T")
    }

    /// Adds or replaces the section of `section`'s type.
    fn put(&mut self, section: Box<dyn Section>) {
        let type_id = section.as_any().type_id();
        match self.0.iter_mut().find(|s| s.as_any().type_id() == type_id) {
            Some(slot) => *slot = section,
            None => self.0.push(section),
        }
    }
}

impl Clone for ServiceSections {
    fn clone(&self) -> Self {
        Self(self.0.iter().map(|s| s.clone_box()).collect())
    }
}

impl PartialEq for ServiceSections {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().all(|s| other.0.iter().any(|o| s.equals(o.as_ref())))
    }
}

impl fmt::Debug for ServiceSections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter().map(|s| (s.name(), s))).finish()
    }
}

/// A provider with the services' sections taken out: the platform's part of a file or of the
/// environment, with the provider's own metadata (errors still name the file or variable).
struct Without<P> {
    provider: P,
    sections: Vec<&'static str>,
}

impl<P: Provider> Provider for Without<P> {
    fn metadata(&self) -> Metadata {
        self.provider.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.provider.data()?;
        for dict in data.values_mut() {
            for name in &self.sections {
                dict.remove(*name);
            }
        }
        Ok(data)
    }

    fn profile(&self) -> Option<Profile> {
        self.provider.profile()
    }
}

/// The document store (views, watch history): SQLite by default, MongoDB in production.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentsConfig {
    /// `mongodb://host:27017/{service}` (the database is the URL's path, `{service}` replaced;
    /// without a path, the service's name); empty: a SQLite file per service,
    /// `<data_dir>/db/<service>-documents.sqlite`.
    #[serde(serialize_with = "redact_url_password")]
    pub url: Option<String>,
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
    pub activity: Option<String>,
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
    pub activity: u16,
}

impl Default for ServicePorts {
    fn default() -> Self {
        Self { accounts: 8081, media: 8082, transcoder: 8083, recommender: 8084, activity: 8086 }
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
    /// Share of new traces recorded (0.0–1.0) when a request arrives without a sampling
    /// decision; a request whose `traceparent` says sampled (or not) keeps that decision.
    pub trace_sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_format: LogFormat::Json, log_level: "info".into(), otlp_endpoint: None, trace_sample_ratio: 1.0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlConfig {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub introspection: bool,
    /// Serve async-graphql's GraphiQL on each subgraph's own `GET /graphql` (a developer's
    /// tool: its scripts come from a CDN). Off by default: the edge's `/graphql` serves the web
    /// app's bundled GraphiQL over the whole supergraph, with no outside asset.
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
            graphiql: false,
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
    /// Loads defaults, then `file` if given, then the process environment; `sections` are the
    /// services' sections there may be (each is checked, also when its service does not run).
    pub fn load(file: Option<&Path>, sections: &[SectionSpec]) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed("FLICK_"), sections)
    }

    /// Like [`Config::load`] with an explicit environment provider (tests).
    pub fn load_from(file: Option<&Path>, env: Env, sections: &[SectionSpec]) -> Result<Self, ConfigError> {
        let names: Vec<&'static str> = sections.iter().map(|s| s.name).collect();
        let defaults = Config::default();
        let platform_defaults =
            Figment::from(Serialized::defaults(Head::of(&defaults))).merge(Serialized::defaults(Tail::of(&defaults)));
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(ConfigError(format!("the section {name} is registered twice")));
            }
            if platform_defaults.contains(name) {
                return Err(ConfigError(format!("the service section {name} has a platform section's name")));
            }
        }
        let file = match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            Some(path) => Some(Toml::file_exact(path)),
            None => None,
        };
        let env = env
            .filter(|key| {
                let k = key.as_str().to_ascii_lowercase();
                k.contains("__") || TOP_LEVEL_SCALARS.contains(&k.as_str())
            })
            .split("__");

        // The services' sections, each read by its own type out of the whole configuration,
        let mut whole = sections.iter().fold(platform_defaults.clone(), |figment, s| (s.defaults)(figment));
        if let Some(file) = &file {
            whole = whole.merge(file);
        }
        whole = whole.merge(env.clone());
        // and the platform's part, which has every other key: an unknown one is an error.
        let mut platform = platform_defaults;
        if let Some(file) = file {
            platform = platform.merge(Without { provider: file, sections: names.clone() });
        }
        platform = platform.merge(Without { provider: env, sections: names.clone() });

        let mut errors = Vec::new();
        let mut cfg = platform.extract::<Config>().unwrap_or_else(|e| {
            errors.push(with_sections_known(e, &names));
            Config::default()
        });
        for spec in sections {
            match (spec.extract)(&whole) {
                Ok(section) => cfg.services.put(section),
                Err(e) => errors.push(*e),
            }
        }
        // One reader fails at its first bad key; the first in key order is the one a single
        // reader of the whole would have reported.
        if let Some(e) = errors.into_iter().min_by(|a, b| a.path.first().cmp(&b.path.first())) {
            return Err(ConfigError(e.to_string()));
        }
        cfg.normalise();
        Ok(cfg)
    }

    /// A copy of the service section `T`; its defaults when this configuration has none.
    pub fn section<T: ConfigSection>(&self) -> T {
        self.services.get::<T>().cloned().unwrap_or_default()
    }

    /// The service section `T`, added with its defaults when this configuration has none.
    pub fn section_mut<T: ConfigSection>(&mut self) -> &mut T {
        self.services.get_or_insert_default::<T>()
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

    /// The effective configuration as TOML, secrets redacted; the services' sections between
    /// `documents` and `endpoints`.
    pub fn to_redacted_toml(&self) -> String {
        self.render().unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Each part printed alone and joined by the blank line the printer puts between tables:
    /// the same text as printing them all as one struct.
    fn render(&self) -> Result<String, toml::ser::Error> {
        let mut parts = vec![toml::to_string_pretty(&Head::of(self))?];
        for section in &self.services.0 {
            parts.push(section.to_toml()?);
        }
        parts.push(toml::to_string_pretty(&Tail::of(self))?);
        Ok(parts.join("\n"))
    }
}

/// An unknown top-level key's error lists the services' sections among the known ones.
fn with_sections_known(mut error: figment::Error, sections: &[&'static str]) -> figment::Error {
    if let Kind::UnknownField(_, expected) = &mut error.kind
        && error.path.len() == 1
    {
        let mut known = expected.to_vec();
        let at = known.iter().position(|k| *k == SERVICES_BEFORE).unwrap_or(known.len());
        known.splice(at..at, sections.iter().copied());
        // serde's expected names are `'static`; this runs once, on the way to a start-up error.
        *expected = Box::leak(known.into_boxed_slice());
    }
    error
}

#[cfg(test)]
#[expect(clippy::result_large_err, reason = "figment's Jail closures must return figment::Error")]
mod tests {
    use super::*;
    use figment::Jail;

    /// A service's section as a service crate defines one.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Widgets {
        count: u32,
        token: Secret,
        rungs: Vec<Rung>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Rung {
        name: String,
        height: u32,
    }

    impl Default for Widgets {
        fn default() -> Self {
            Self { count: 3, token: Secret::default(), rungs: vec![Rung { name: "low".into(), height: 240 }] }
        }
    }

    impl ConfigSection for Widgets {
        const NAME: &'static str = "widgets";
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Gadgets {
        size: u64,
    }

    impl ConfigSection for Gadgets {
        const NAME: &'static str = "gadgets";
    }

    fn specs() -> [SectionSpec; 2] {
        [SectionSpec::of::<Widgets>(), SectionSpec::of::<Gadgets>()]
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file("flick.toml", "[server]\nhost = \"0.0.0.0\"\n[bus]\nmax_attempts = 3\n")?;
            jail.set_env("FLICK_BUS__MAX_ATTEMPTS", "7");
            jail.set_env("FLICK_SERVER__PORTS__MEDIA", "9999");
            let cfg = Config::load(Some(Path::new("flick.toml")), &[]).map_err(|e| e.to_string())?;
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
            let err = Config::load(Some(Path::new("flick.toml")), &[]).unwrap_err().to_string();
            assert!(err.contains("hots"), "{err}");
            jail.clear_env();
            jail.set_env("FLICK_DATABSE__URL", "postgres://x");
            let err = Config::load(None, &[]).unwrap_err().to_string();
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
            let cfg = Config::load(None, &[]).map_err(|e| e.to_string())?;
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

    #[test]
    fn service_sections_take_defaults_then_file_then_environment() {
        Jail::expect_with(|jail| {
            jail.create_file("flick.toml", "[widgets]\ncount = 5\n[[widgets.rungs]]\nname = \"hi\"\nheight = 1080\n")?;
            jail.set_env("FLICK_GADGETS__SIZE", "9");
            let cfg = Config::load(Some(Path::new("flick.toml")), &specs()).map_err(|e| e.to_string())?;
            let widgets = cfg.section::<Widgets>();
            assert_eq!(widgets.count, 5);
            assert_eq!(widgets.rungs, [Rung { name: "hi".into(), height: 1080 }]);
            assert_eq!(cfg.section::<Gadgets>().size, 9);
            jail.set_env("FLICK_WIDGETS__COUNT", "7");
            let cfg = Config::load(Some(Path::new("flick.toml")), &specs()).map_err(|e| e.to_string())?;
            assert_eq!(cfg.section::<Widgets>().count, 7);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_in_service_sections_are_errors_that_name_the_full_key() {
        Jail::expect_with(|jail| {
            jail.set_env("FLICK_WIDGETS__NOPE", "1");
            let err = Config::load(None, &specs()).unwrap_err().to_string();
            assert!(err.contains("found `nope`") && err.contains(r#"for key "WIDGETS.NOPE""#), "{err}");
            jail.clear_env();
            jail.create_file("flick.toml", "[[widgets.rungs]]\nname = \"x\"\nheight = 1\nwidth = 2\n")?;
            let err = Config::load(Some(Path::new("flick.toml")), &specs()).unwrap_err().to_string();
            assert!(
                err.contains("found `width`") && err.contains(r#""default.widgets.rungs.0.width" in flick.toml"#),
                "{err}"
            );
            jail.create_file("flick.toml", "widgets = 3\n")?;
            let err = Config::load(Some(Path::new("flick.toml")), &specs()).unwrap_err().to_string();
            assert!(err.contains("expected struct Widgets"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_section_is_an_error_listing_the_services_sections_too() {
        Jail::expect_with(|jail| {
            jail.set_env("FLICK_WIDGTES__COUNT", "1");
            let err = Config::load(None, &specs()).unwrap_err().to_string();
            assert!(err.contains("found `widgtes`"), "{err}");
            assert!(err.contains("`documents`, `widgets`, `gadgets`, `endpoints`"), "{err}");
            // A section not registered is unknown.
            let err = Config::load(None, &[]).unwrap_err().to_string();
            assert!(err.contains("found `widgtes`"), "{err}");
            jail.clear_env();
            jail.set_env("FLICK_WIDGETS__COUNT", "1");
            let err = Config::load(None, &[SectionSpec::of::<Gadgets>()]).unwrap_err().to_string();
            assert!(err.contains("found `widgets`"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_first_bad_key_in_key_order_is_the_one_reported() {
        Jail::expect_with(|jail| {
            jail.set_env("FLICK_WIDGETS__NOPE", "1");
            jail.set_env("FLICK_DATABSE__URL", "x");
            let err = Config::load(None, &specs()).unwrap_err().to_string();
            assert!(err.contains("found `databse`"), "{err}");
            jail.set_env("FLICK_GADGETS__NOPE", "1");
            let err = Config::load(None, &specs()).unwrap_err().to_string();
            assert!(err.contains("found `databse`"), "{err}");
            jail.clear_env();
            jail.set_env("FLICK_WIDGETS__NOPE", "1");
            jail.set_env("FLICK_GADGETS__NOPE", "1");
            let err = Config::load(None, &specs()).unwrap_err().to_string();
            assert!(err.contains("GADGETS.NOPE"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_section_registered_twice_or_named_like_a_platform_one_is_an_error() {
        #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
        struct Server {}
        impl ConfigSection for Server {
            const NAME: &'static str = "server";
        }
        let err = Config::load_from(
            None,
            Env::raw().only(&[]),
            &[SectionSpec::of::<Gadgets>(), SectionSpec::of::<Gadgets>()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("gadgets is registered twice"), "{err}");
        let err =
            Config::load_from(None, Env::raw().only(&[]), &[SectionSpec::of::<Server>()]).unwrap_err().to_string();
        assert!(err.contains("server has a platform section's name"), "{err}");
    }

    #[test]
    fn service_sections_print_between_documents_and_endpoints_with_secrets_redacted() {
        let mut cfg = Config::default();
        cfg.section_mut::<Widgets>().token = Secret::new("w1dg3t");
        cfg.section_mut::<Gadgets>().size = 4;
        let printed = cfg.to_redacted_toml();
        assert!(!printed.contains("w1dg3t"), "{printed}");
        let at = |s: &str| printed.find(s).unwrap_or_else(|| panic!("{s} missing in {printed}"));
        assert!(at("[documents]") < at("[widgets]"));
        assert!(at("[widgets]") < at("[[widgets.rungs]]"));
        assert!(at("[[widgets.rungs]]") < at("[gadgets]"));
        assert!(at("[gadgets]") < at("[endpoints]"));
        assert!(
            printed.contains("[widgets]\ncount = 3\ntoken = \"[redacted]\"\n\n[[widgets.rungs]]\nname = \"low\""),
            "{printed}"
        );
        assert!(printed.contains("\n\n[gadgets]\nsize = 4\n\n[endpoints]\n"), "{printed}");
        // Printed as one struct with the sections as fields would print it.
        #[derive(Serialize)]
        struct Whole<'a> {
            #[serde(flatten)]
            head: Head<'a>,
            widgets: Widgets,
            gadgets: Gadgets,
            #[serde(flatten)]
            tail: Tail<'a>,
        }
        let whole =
            Whole { head: Head::of(&cfg), widgets: cfg.section(), gadgets: cfg.section(), tail: Tail::of(&cfg) };
        assert_eq!(printed, toml::to_string_pretty(&whole).unwrap());
    }

    #[test]
    fn a_missing_section_reads_as_its_defaults_and_is_added_when_changed() {
        let mut cfg = Config::default();
        assert_eq!(cfg.section::<Widgets>(), Widgets::default());
        assert!(!cfg.to_redacted_toml().contains("[widgets]"));
        cfg.section_mut::<Widgets>().count = 11;
        assert_eq!(cfg.section::<Widgets>().count, 11);
        let copy = cfg.clone();
        assert_eq!(copy, cfg);
        cfg.section_mut::<Widgets>().count = 12;
        assert_ne!(copy, cfg);
    }
}
