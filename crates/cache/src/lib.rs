//! The cache port: TTL values, atomic counters, a fixed-window rate limiter, and a near
//! cache whose entries are invalidated on every replica.
//!
//! Backends: in-memory (`memory`: moka, the embedded default) and Redis (`redis`); this
//! module is the port both answer to. With Redis each replica keeps
//! a short-lived local copy of hot values; writes and invalidations publish the key on a
//! Redis channel so the other replicas drop their copies. A [`Denylist`] is mirrored whole
//! in every replica, for lookups without a round trip.
//!
//! Read-through callers use [`Cache::lookup`] and [`Cache::fill`]: an invalidation leaves a
//! short-lived tombstone, and a fill whose read began before it is refused, so a slow read
//! of the source never stores what an update has already replaced.

mod denylist;
mod memory;
mod redis;

pub use denylist::Denylist;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Near copies (Redis backend) live this long at most, so a lost invalidation heals quickly.
const NEAR_TTL: Duration = Duration::from_secs(5);
/// Marks a value an invalidation replaced; never a prefix of a real value (callers store
/// protobuf or UTF-8, neither starts with a NUL here).
const TOMBSTONE: &[u8] = b"\0flick:invalidated:";
/// How long an invalidation refuses fills that read before it: longer than any read-through
/// source call may take (the services' gRPC timeouts are a few seconds).
const TOMBSTONE_TTL: Duration = Duration::from_secs(30);

fn is_tombstone(value: &[u8]) -> bool {
    value.starts_with(TOMBSTONE)
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(#[from] ::redis::RedisError),
    #[error("unsupported cache url {0:?}: use memory:// or redis://")]
    UnsupportedUrl(String),
}

pub type Result<T> = std::result::Result<T, CacheError>;

/// What [`Cache::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(Vec<u8>),
    /// Absent: read the source, then [`Cache::fill`] with this token.
    Miss(FillToken),
}

/// The state of a key when a read-through reader missed: absent, or the tombstone of the
/// invalidation it follows. A fill succeeds only while the key is still in that state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillToken(Option<Arc<[u8]>>);

/// Outcome of one rate-limited attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Attempts left in the current window.
    pub remaining: u64,
    /// Time until the window resets.
    pub reset_after: Duration,
}

/// A handle on the cache; clones share everything, [`Cache::replica`] makes another replica.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_redis() { "Cache(redis)" } else { "Cache(memory)" })
    }
}

struct Inner {
    backend: Backend,
    /// Prepended to every key (isolates environments sharing one Redis).
    prefix: String,
}

enum Backend {
    Memory(Arc<memory::MemoryCache>),
    Redis(Arc<redis::RedisCache>),
}

/// A value in a local tier (memory's store, Redis's near cache), expiring after `ttl`.
#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    ttl: Duration,
}

struct EntryTtl;

impl Expiry<String, Entry> for EntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Entry, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A local tier holding at most `capacity` bytes of keys and values.
fn local_tier(capacity: u64) -> moka::sync::Cache<String, Entry> {
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .weigher(|k: &String, v: &Entry| (k.len() + v.value.len()).try_into().unwrap_or(u32::MAX))
        .expire_after(EntryTtl)
        .build()
}

impl Cache {
    /// The embedded default: everything in this process's memory (64 MiB at most).
    pub fn memory() -> Self {
        Self::from_backend(Backend::Memory(Arc::new(memory::MemoryCache::new())), "")
    }

    /// `memory://` or empty for the embedded cache, `redis://…` for Redis. Redis connects
    /// lazily and fails fast, so an outage degrades callers instead of stalling them.
    pub async fn connect(url: Option<&str>) -> Result<Self> {
        Self::connect_with_prefix(url, "").await
    }

    /// Like [`Cache::connect`], with every key prefixed by `prefix`.
    pub async fn connect_with_prefix(url: Option<&str>, prefix: &str) -> Result<Self> {
        match url {
            None | Some("memory://") | Some("") => Ok(Self::memory()),
            Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {
                Ok(Self::from_backend(Backend::Redis(redis::RedisCache::connect(u)?), prefix))
            }
            Some(u) => Err(CacheError::UnsupportedUrl(u.to_string())),
        }
    }

    fn from_backend(backend: Backend, prefix: &str) -> Self {
        Self { inner: Arc::new(Inner { backend, prefix: prefix.to_string() }) }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    pub fn is_redis(&self) -> bool {
        matches!(self.inner.backend, Backend::Redis(..))
    }

    /// True while this replica hears the other replicas' invalidations, so their writes
    /// evict its near copies at once (until then a copy may be up to 5 s stale). Always
    /// true in memory, where there are no copies.
    pub fn is_listening(&self) -> bool {
        match &self.inner.backend {
            Backend::Memory(_) => true,
            Backend::Redis(r) => r.is_listening(),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(match self.lookup(key).await? {
            Lookup::Hit(value) => Some(value),
            Lookup::Miss(_) => None,
        })
    }

    /// The value at `key`, or the token to [`Cache::fill`] it with after reading the source.
    pub async fn lookup(&self, key: &str) -> Result<Lookup> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.lookup(key)),
            Backend::Redis(r) => r.lookup(key).await,
        }
    }

    /// Stores what a reader read from the source after [`Cache::lookup`] missed, unless the
    /// key changed since (an invalidation, or another fill): then `false`, nothing stored.
    pub async fn fill(&self, key: &str, seen: &FillToken, value: &[u8], ttl: Duration) -> Result<bool> {
        let key = &self.key(key);
        let ttl = ttl.max(Duration::from_millis(1));
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.fill(key, seen, value, ttl)),
            Backend::Redis(r) => r.fill(key, seen, value, ttl).await,
        }
    }

    /// Stores `value` for `ttl` and drops every replica's stale copy.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let key = &self.key(key);
        let ttl = ttl.max(Duration::from_millis(1));
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.set(key, value, ttl);
                Ok(())
            }
            Backend::Redis(r) => r.set(key, value, ttl).await,
        }
    }

    /// Removes `key` here, in the shared store, and from every replica's near cache. For
    /// [`TOMBSTONE_TTL`] a tombstone stays in its place, refusing fills that read before now.
    pub async fn invalidate(&self, key: &str) -> Result<()> {
        let key = &self.key(key);
        let tombstone: Arc<[u8]> = [TOMBSTONE, uuid_like().as_bytes()].concat().into();
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.invalidate(key, tombstone);
                Ok(())
            }
            Backend::Redis(r) => r.invalidate(key, tombstone).await,
        }
    }

    /// Atomically adds `by` to a counter (created at 0) and returns the new value.
    pub async fn incr(&self, key: &str, by: i64) -> Result<i64> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.incr(key, by)),
            Backend::Redis(r) => r.incr(key, by).await,
        }
    }

    /// Atomically adds `by` to a counter only if it exists (its TTL is kept): `None` when
    /// absent, and nothing is created. For cached copies of counts whose truth is elsewhere.
    pub async fn incr_if_present(&self, key: &str, by: i64) -> Result<Option<i64>> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.incr_if_present(key, by)),
            Backend::Redis(r) => r.incr_if_present(key, by).await,
        }
    }

    /// Several counters in one round trip (`MGET`), in the order of `keys`.
    pub async fn counters(&self, keys: &[&str]) -> Result<Vec<Option<i64>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.counter_values(&keys)),
            Backend::Redis(r) => r.counter_values(&keys).await,
        }
    }

    /// Sets each counter that does not exist yet, expiring after `ttl` (one round trip).
    /// Existing counters keep their value: concurrent increments are not overwritten.
    pub async fn set_counters_if_absent(&self, entries: &[(&str, i64)], ttl: Duration) -> Result<()> {
        self.set_counters_with(entries, ttl, true).await
    }

    /// Overwrites counters, expiring after `ttl` (one round trip).
    pub async fn set_counters(&self, entries: &[(&str, i64)], ttl: Duration) -> Result<()> {
        self.set_counters_with(entries, ttl, false).await
    }

    async fn set_counters_with(&self, entries: &[(&str, i64)], ttl: Duration, only_absent: bool) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ttl = ttl.max(Duration::from_millis(1));
        let entries: Vec<(String, i64)> = entries.iter().map(|(k, v)| (self.key(k), *v)).collect();
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.set_counters(&entries, ttl, only_absent);
                Ok(())
            }
            Backend::Redis(r) => r.set_counters(&entries, ttl, only_absent).await,
        }
    }

    /// Reads and removes counters (`GETDEL`, atomic per key; one round trip): a delta taken
    /// this way is seen by exactly one caller.
    pub async fn take_counters(&self, keys: &[&str]) -> Result<Vec<Option<i64>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.take_counters(&keys)),
            Backend::Redis(r) => r.take_counters(&keys).await,
        }
    }

    /// Adds members to the set at `key` (`SADD`).
    pub async fn set_add(&self, key: &str, members: &[&str]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let key = self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.set_add(key, members);
                Ok(())
            }
            Backend::Redis(r) => r.set_add(key, members).await,
        }
    }

    /// Removes and returns up to `count` members of the set at `key` (`SPOP`), in no order.
    pub async fn set_pop(&self, key: &str, count: usize) -> Result<Vec<String>> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.set_pop(key, count)),
            Backend::Redis(r) => r.set_pop(key, count).await,
        }
    }

    /// Current value of a counter, `None` if it was never set (or was invalidated).
    pub async fn counter(&self, key: &str) -> Result<Option<i64>> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.counter(key)),
            Backend::Redis(r) => r.counter(key).await,
        }
    }

    /// Sets a counter (e.g. recomputed from the database after an outage).
    pub async fn set_counter(&self, key: &str, value: i64) -> Result<()> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.set_counter(key, value);
                Ok(())
            }
            Backend::Redis(r) => r.set_counter(key, value).await,
        }
    }

    pub async fn delete_counter(&self, key: &str) -> Result<()> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.delete_counter(key);
                Ok(())
            }
            Backend::Redis(r) => r.delete_counter(key).await,
        }
    }

    /// Fixed-window limiter: at most `limit` attempts per `window` for `key`.
    pub async fn rate_limit(&self, key: &str, limit: u64, window: Duration) -> Result<RateDecision> {
        let key = &self.key(key);
        let (count, reset_after) = match &self.inner.backend {
            Backend::Memory(m) => m.rate_limit(key, window),
            Backend::Redis(r) => r.rate_limit(key, window).await?,
        };
        Ok(RateDecision { allowed: count <= limit, remaining: limit.saturating_sub(count), reset_after })
    }

    /// Attempts counted so far in `key`'s current rate-limit window, without counting one.
    pub async fn rate_count(&self, key: &str) -> Result<(u64, Duration)> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.rate_count(key)),
            Backend::Redis(r) => r.rate_count(key).await,
        }
    }

    /// Forgets `key`'s rate-limit window (e.g. after a successful login).
    pub async fn rate_reset(&self, key: &str) -> Result<()> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.rate_reset(key);
                Ok(())
            }
            Backend::Redis(r) => r.rate_reset(key).await,
        }
    }

    /// Readiness: a round trip to Redis (always ok in memory).
    pub async fn ping(&self) -> Result<()> {
        match &self.inner.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(r) => r.ping().await,
        }
    }

    /// A second handle that behaves like another replica: its own near cache and
    /// invalidation listener, the same shared store. In memory replicas share everything.
    pub fn replica(&self) -> Self {
        match &self.inner.backend {
            Backend::Memory(_) => self.clone(),
            Backend::Redis(r) => Self::from_backend(Backend::Redis(r.replica()), &self.inner.prefix),
        }
    }
}

/// Unique enough for tombstones and replica identities: process, clock and a sequence.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{}-{}-{}", std::process::id(), nanos, SEQ.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unsupported_urls_are_rejected() {
        assert!(matches!(Cache::connect(Some("memcached://x")).await, Err(CacheError::UnsupportedUrl(_))));
    }
}
