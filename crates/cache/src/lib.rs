//! The cache port: TTL values, atomic counters, a fixed-window rate limiter, and a near
//! cache whose entries are invalidated on every replica.
//!
//! Backends: in-memory (moka, the embedded default) and Redis. With Redis each replica keeps
//! a short-lived local copy of hot values; writes and invalidations publish the key on a
//! Redis channel so the other replicas drop their copies. A [`Denylist`] is mirrored whole
//! in every replica, for lookups without a round trip.
//!
//! Read-through callers use [`Cache::lookup`] and [`Cache::fill`]: an invalidation leaves a
//! short-lived tombstone, and a fill whose read began before it is refused, so a slow read
//! of the source never stores what an update has already replaced.

mod denylist;

pub use denylist::Denylist;
use moka::Expiry;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INVALIDATION_CHANNEL: &str = "flick:cache:invalidate";
/// Local copies live this long at most, so a lost invalidation heals quickly.
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
    Unavailable(#[from] redis::RedisError),
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
    /// Local tier: the whole store for memory, a near cache in front of Redis.
    local: moka::sync::Cache<String, Entry>,
    /// Identifies this replica's own invalidation messages.
    origin: String,
    /// Prepended to every key (isolates environments sharing one Redis).
    prefix: String,
}

enum Backend {
    Memory(MemoryState),
    Redis(ConnectionManager, redis::Client),
}

#[derive(Default)]
struct MemoryState {
    denylists: Mutex<HashMap<String, Arc<denylist::Shared>>>,
    counters: Mutex<HashMap<String, Counter>>,
    sets: Mutex<HashMap<String, std::collections::HashSet<String>>>,
    windows: Mutex<HashMap<String, (u64, Instant)>>,
    /// Serialises the check-and-store of fills with writes and invalidations.
    values: Mutex<()>,
}

/// A counter in memory; `expires` mirrors a Redis key's TTL (`None`: persistent).
#[derive(Clone, Copy)]
struct Counter {
    value: i64,
    expires: Option<Instant>,
}

impl Counter {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// The live counter at `key`, dropping an expired one (as Redis would have).
fn live_counter<'a>(counters: &'a mut HashMap<String, Counter>, key: &str) -> Option<&'a mut Counter> {
    let now = Instant::now();
    if counters.get(key).is_some_and(|c| !c.live(now)) {
        counters.remove(key);
    }
    counters.get_mut(key)
}

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

fn local_tier(capacity: u64) -> moka::sync::Cache<String, Entry> {
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .weigher(|k: &String, v: &Entry| (k.len() + v.value.len()).try_into().unwrap_or(u32::MAX))
        .expire_after(EntryTtl)
        .build()
}

const RATE_LIMIT_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

/// SET only while the key holds what the reader saw (ARGV[1]; empty: absent).
const FILL_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// INCRBY only when the key exists (keeps its TTL); nil otherwise.
const INCR_IF_PRESENT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
";

impl Cache {
    /// The embedded default: everything in this process's memory (64 MiB at most).
    pub fn memory() -> Self {
        Self::from_backend(Backend::Memory(MemoryState::default()), 64 * 1024 * 1024, "")
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
                let client = redis::Client::open(u)?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(500)))
                    .set_response_timeout(Some(Duration::from_millis(500)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                let cache = Self::from_backend(Backend::Redis(manager, client.clone()), 32 * 1024 * 1024, prefix);
                cache.spawn_invalidation_listener(client);
                Ok(cache)
            }
            Some(u) => Err(CacheError::UnsupportedUrl(u.to_string())),
        }
    }

    fn from_backend(backend: Backend, capacity: u64, prefix: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                local: local_tier(capacity),
                origin: uuid_like(),
                prefix: prefix.to_string(),
            }),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    pub fn is_redis(&self) -> bool {
        matches!(self.inner.backend, Backend::Redis(..))
    }

    /// Keeps other replicas' near caches honest: evicts keys they publish.
    fn spawn_invalidation_listener(&self, client: redis::Client) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut backoff = Duration::from_millis(100);
            loop {
                let Some(inner) = weak.upgrade() else { return };
                drop(inner);
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(INVALIDATION_CHANNEL).await.is_ok() {
                            backoff = Duration::from_millis(100);
                            // Whatever changed while we were not listening is unknown: start clean.
                            if let Some(inner) = weak.upgrade() {
                                inner.local.invalidate_all();
                            }
                            let mut messages = pubsub.into_on_message();
                            while let Some(msg) = messages.next().await {
                                let Some(inner) = weak.upgrade() else { return };
                                if let Ok(payload) = msg.get_payload::<String>()
                                    && let Some((origin, key)) = payload.split_once('|')
                                    && origin != inner.origin
                                {
                                    inner.local.invalidate(key);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cache invalidation listener cannot connect")
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
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
        if let Some(entry) = self.inner.local.get(key) {
            // Only the memory backend keeps tombstones locally.
            return Ok(if is_tombstone(&entry.value) {
                Lookup::Miss(FillToken(Some(entry.value)))
            } else {
                Lookup::Hit(entry.value.to_vec())
            });
        }
        match &self.inner.backend {
            Backend::Memory(_) => Ok(Lookup::Miss(FillToken(None))),
            Backend::Redis(conn, _) => {
                let mut conn = conn.clone();
                let (value, ttl_ms): (Option<Vec<u8>>, i64) =
                    redis::pipe().get(key).pttl(key).query_async(&mut conn).await?;
                Ok(match value {
                    None => Lookup::Miss(FillToken(None)),
                    Some(v) if is_tombstone(&v) => Lookup::Miss(FillToken(Some(v.into()))),
                    Some(v) => {
                        if ttl_ms > 0 {
                            let ttl = Duration::from_millis(ttl_ms as u64).min(NEAR_TTL);
                            self.inner.local.insert(key.to_string(), Entry { value: v.as_slice().into(), ttl });
                        }
                        Lookup::Hit(v)
                    }
                })
            }
        }
    }

    /// Stores what a reader read from the source after [`Cache::lookup`] missed, unless the
    /// key changed since (an invalidation, or another fill): then `false`, nothing stored.
    pub async fn fill(&self, key: &str, seen: &FillToken, value: &[u8], ttl: Duration) -> Result<bool> {
        let key = &self.key(key);
        let ttl = ttl.max(Duration::from_millis(1));
        match &self.inner.backend {
            Backend::Memory(m) => {
                let _values = m.values.lock().expect("value lock");
                let current = self.inner.local.get(key).map(|e| e.value);
                if current != seen.0 {
                    return Ok(false);
                }
                self.inner.local.insert(key.to_string(), Entry { value: value.into(), ttl });
                Ok(true)
            }
            Backend::Redis(conn, _) => {
                let mut conn = conn.clone();
                let stored: i64 = redis::Script::new(FILL_SCRIPT)
                    .key(key)
                    .arg(seen.0.as_deref().unwrap_or_default())
                    .arg(value)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await?;
                if stored == 1 {
                    self.inner.local.insert(key.to_string(), Entry { value: value.into(), ttl: ttl.min(NEAR_TTL) });
                }
                Ok(stored == 1)
            }
        }
    }

    /// Stores `value` for `ttl` and drops every replica's stale copy.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let key = &self.key(key);
        let ttl = ttl.max(Duration::from_millis(1));
        match &self.inner.backend {
            Backend::Memory(m) => {
                let _values = m.values.lock().expect("value lock");
                self.inner.local.insert(key.to_string(), Entry { value: value.into(), ttl });
                Ok(())
            }
            Backend::Redis(conn, _) => {
                let mut conn = conn.clone();
                let message = format!("{}|{key}", self.inner.origin);
                redis::pipe()
                    .pset_ex(key, value, ttl.as_millis() as u64)
                    .ignore()
                    .publish(INVALIDATION_CHANNEL, message)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await?;
                self.inner.local.insert(key.to_string(), Entry { value: value.into(), ttl: ttl.min(NEAR_TTL) });
                Ok(())
            }
        }
    }

    /// Removes `key` here, in the shared store, and from every replica's near cache. For
    /// [`TOMBSTONE_TTL`] a tombstone stays in its place, refusing fills that read before now.
    pub async fn invalidate(&self, key: &str) -> Result<()> {
        let key = &self.key(key);
        let tombstone: Arc<[u8]> = [TOMBSTONE, uuid_like().as_bytes()].concat().into();
        match &self.inner.backend {
            Backend::Memory(m) => {
                let _values = m.values.lock().expect("value lock");
                self.inner.local.insert(key.to_string(), Entry { value: tombstone, ttl: TOMBSTONE_TTL });
                Ok(())
            }
            Backend::Redis(conn, _) => {
                self.inner.local.invalidate(key);
                let mut conn = conn.clone();
                let message = format!("{}|{key}", self.inner.origin);
                redis::pipe()
                    .pset_ex(key, &*tombstone, TOMBSTONE_TTL.as_millis() as u64)
                    .ignore()
                    .publish(INVALIDATION_CHANNEL, message)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await?;
                // A lookup here may have copied the old value back while the write was under way.
                self.inner.local.invalidate(key);
                Ok(())
            }
        }
    }

    /// Atomically adds `by` to a counter (created at 0) and returns the new value.
    pub async fn incr(&self, key: &str, by: i64) -> Result<i64> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                let mut counters = m.counters.lock().expect("counter lock");
                if live_counter(&mut counters, key).is_none() {
                    if counters.len() > 100_000 {
                        let now = Instant::now();
                        counters.retain(|_, c| c.live(now));
                    }
                    counters.insert(key.to_string(), Counter { value: 0, expires: None });
                }
                let c = counters.get_mut(key).expect("just inserted");
                c.value += by;
                Ok(c.value)
            }
            Backend::Redis(conn, _) => Ok(conn.clone().incr(key, by).await?),
        }
    }

    /// Atomically adds `by` to a counter only if it exists (its TTL is kept): `None` when
    /// absent, and nothing is created. For cached copies of counts whose truth is elsewhere.
    pub async fn incr_if_present(&self, key: &str, by: i64) -> Result<Option<i64>> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                let mut counters = m.counters.lock().expect("counter lock");
                Ok(live_counter(&mut counters, key).map(|c| {
                    c.value += by;
                    c.value
                }))
            }
            Backend::Redis(conn, _) => {
                let mut conn = conn.clone();
                Ok(redis::Script::new(INCR_IF_PRESENT_SCRIPT).key(key).arg(by).invoke_async(&mut conn).await?)
            }
        }
    }

    /// Several counters in one round trip (`MGET`), in the order of `keys`.
    pub async fn counters(&self, keys: &[&str]) -> Result<Vec<Option<i64>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        match &self.inner.backend {
            Backend::Memory(m) => {
                let mut counters = m.counters.lock().expect("counter lock");
                Ok(keys.iter().map(|k| live_counter(&mut counters, k).map(|c| c.value)).collect())
            }
            Backend::Redis(conn, _) => Ok(redis::cmd("MGET").arg(&keys).query_async(&mut conn.clone()).await?),
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
        match &self.inner.backend {
            Backend::Memory(m) => {
                let mut counters = m.counters.lock().expect("counter lock");
                let expires = Some(Instant::now() + ttl);
                for (key, value) in entries {
                    let key = self.key(key);
                    if only_absent && live_counter(&mut counters, &key).is_some() {
                        continue;
                    }
                    counters.insert(key, Counter { value: *value, expires });
                }
                Ok(())
            }
            Backend::Redis(conn, _) => {
                let mut pipe = redis::pipe();
                for (key, value) in entries {
                    let cmd = pipe.cmd("SET").arg(self.key(key)).arg(*value).arg("PX").arg(ttl.as_millis() as u64);
                    if only_absent {
                        cmd.arg("NX");
                    }
                    cmd.ignore();
                }
                Ok(pipe.query_async::<()>(&mut conn.clone()).await?)
            }
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
            Backend::Memory(m) => {
                let mut counters = m.counters.lock().expect("counter lock");
                Ok(keys
                    .iter()
                    .map(|k| {
                        let value = live_counter(&mut counters, k).map(|c| c.value);
                        counters.remove(k);
                        value
                    })
                    .collect())
            }
            Backend::Redis(conn, _) => {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("GETDEL").arg(key);
                }
                Ok(pipe.query_async(&mut conn.clone()).await?)
            }
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
                let mut sets = m.sets.lock().expect("set lock");
                sets.entry(key).or_default().extend(members.iter().map(|m| m.to_string()));
                Ok(())
            }
            Backend::Redis(conn, _) => Ok(conn.clone().sadd(key, members).await?),
        }
    }

    /// Removes and returns up to `count` members of the set at `key` (`SPOP`), in no order.
    pub async fn set_pop(&self, key: &str, count: usize) -> Result<Vec<String>> {
        let key = self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                let mut sets = m.sets.lock().expect("set lock");
                let Some(set) = sets.get_mut(&key) else { return Ok(Vec::new()) };
                let taken: Vec<String> = set.iter().take(count).cloned().collect();
                for t in &taken {
                    set.remove(t);
                }
                if set.is_empty() {
                    sets.remove(&key);
                }
                Ok(taken)
            }
            Backend::Redis(conn, _) => {
                Ok(redis::cmd("SPOP").arg(key).arg(count.max(1)).query_async(&mut conn.clone()).await?)
            }
        }
    }

    /// Current value of a counter, `None` if it was never set (or was invalidated).
    pub async fn counter(&self, key: &str) -> Result<Option<i64>> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => Ok(live_counter(&mut m.counters.lock().expect("counter lock"), key).map(|c| c.value)),
            Backend::Redis(conn, _) => Ok(conn.clone().get(key).await?),
        }
    }

    /// Sets a counter (e.g. recomputed from the database after an outage).
    pub async fn set_counter(&self, key: &str, value: i64) -> Result<()> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.counters.lock().expect("counter lock").insert(key.to_string(), Counter { value, expires: None });
                Ok(())
            }
            Backend::Redis(conn, _) => Ok(conn.clone().set(key, value).await?),
        }
    }

    pub async fn delete_counter(&self, key: &str) -> Result<()> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.counters.lock().expect("counter lock").remove(key);
                Ok(())
            }
            Backend::Redis(conn, _) => Ok(conn.clone().del(key).await?),
        }
    }

    /// Fixed-window limiter: at most `limit` attempts per `window` for `key`.
    pub async fn rate_limit(&self, key: &str, limit: u64, window: Duration) -> Result<RateDecision> {
        let key = &self.key(key);
        let (count, reset_after) = match &self.inner.backend {
            Backend::Memory(m) => {
                let now = Instant::now();
                let mut windows = m.windows.lock().expect("window lock");
                if windows.len() > 100_000 {
                    windows.retain(|_, (_, reset)| *reset > now);
                }
                let slot = windows.entry(key.to_string()).or_insert((0, now + window));
                if slot.1 <= now {
                    *slot = (0, now + window);
                }
                slot.0 += 1;
                (slot.0, slot.1 - now)
            }
            Backend::Redis(conn, _) => {
                let mut conn = conn.clone();
                let (count, ttl_ms): (u64, i64) = redis::Script::new(RATE_LIMIT_SCRIPT)
                    .key(format!("ratelimit:{key}"))
                    .arg(window.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await?;
                (count, Duration::from_millis(ttl_ms.max(0) as u64))
            }
        };
        Ok(RateDecision { allowed: count <= limit, remaining: limit.saturating_sub(count), reset_after })
    }

    /// Attempts counted so far in `key`'s current rate-limit window, without counting one.
    pub async fn rate_count(&self, key: &str) -> Result<(u64, Duration)> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                let now = Instant::now();
                let windows = m.windows.lock().expect("window lock");
                Ok(match windows.get(key) {
                    Some((count, reset)) if *reset > now => (*count, *reset - now),
                    _ => (0, Duration::ZERO),
                })
            }
            Backend::Redis(conn, _) => {
                let mut conn = conn.clone();
                let key = format!("ratelimit:{key}");
                let (count, ttl_ms): (Option<u64>, i64) =
                    redis::pipe().get(&key).pttl(&key).query_async(&mut conn).await?;
                Ok((count.unwrap_or(0), Duration::from_millis(ttl_ms.max(0) as u64)))
            }
        }
    }

    /// Forgets `key`'s rate-limit window (e.g. after a successful login).
    pub async fn rate_reset(&self, key: &str) -> Result<()> {
        let key = &self.key(key);
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.windows.lock().expect("window lock").remove(key);
                Ok(())
            }
            Backend::Redis(conn, _) => Ok(conn.clone().del(format!("ratelimit:{key}")).await?),
        }
    }

    /// Readiness: a round trip to Redis (always ok in memory).
    pub async fn ping(&self) -> Result<()> {
        match &self.inner.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(conn, _) => {
                let mut conn = conn.clone();
                redis::cmd("PING").query_async::<String>(&mut conn).await?;
                Ok(())
            }
        }
    }

    /// A second handle that behaves like another replica: its own near cache and
    /// invalidation listener, the same shared store. In memory replicas share everything.
    pub fn replica(&self) -> Self {
        match &self.inner.backend {
            Backend::Memory(_) => self.clone(),
            Backend::Redis(conn, client) => {
                let replica = Self::from_backend(
                    Backend::Redis(conn.clone(), client.clone()),
                    32 * 1024 * 1024,
                    &self.inner.prefix,
                );
                replica.spawn_invalidation_listener(client.clone());
                replica
            }
        }
    }
}

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
    async fn memory_values_expire_after_their_ttl() {
        let cache = Cache::memory();
        cache.set("k", b"v", Duration::from_millis(80)).await.unwrap();
        assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(cache.get("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn unsupported_urls_are_rejected() {
        assert!(matches!(Cache::connect(Some("memcached://x")).await, Err(CacheError::UnsupportedUrl(_))));
    }
}
