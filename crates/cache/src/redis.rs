//! Redis backend: the shared store is Redis; each replica keeps a short-lived near cache of
//! the values it read or wrote. Writes and invalidations publish the key on a channel, and
//! every other replica's listener evicts its copy.

use crate::{Entry, FillToken, Lookup, NEAR_TTL, Result, TOMBSTONE_TTL, is_tombstone, local_tier, uuid_like};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const INVALIDATION_CHANNEL: &str = "flick:cache:invalidate";
/// Most bytes of near copies (keys included) one replica keeps.
const NEAR_CAPACITY: u64 = 32 * 1024 * 1024;

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

fn rate_key(key: &str) -> String {
    format!("ratelimit:{key}")
}

pub(crate) struct RedisCache {
    pub(crate) conn: ConnectionManager,
    pub(crate) client: redis::Client,
    /// Copies of hot values, for at most [`NEAR_TTL`] (a lost invalidation heals quickly).
    near: moka::sync::Cache<String, Entry>,
    /// Identifies this replica's own invalidation messages.
    origin: String,
    /// The listener is subscribed: other replicas' writes reach `near`.
    listening: AtomicBool,
}

impl RedisCache {
    /// Connects lazily and fails fast, so an outage degrades callers instead of stalling them.
    pub(crate) fn connect(url: &str) -> Result<Arc<Self>> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self::start(conn, client))
    }

    /// Another replica on the same connection: its own near cache and listener.
    pub(crate) fn replica(&self) -> Arc<Self> {
        Self::start(self.conn.clone(), self.client.clone())
    }

    fn start(conn: ConnectionManager, client: redis::Client) -> Arc<Self> {
        let cache = Arc::new(Self {
            conn,
            client: client.clone(),
            near: local_tier(NEAR_CAPACITY),
            origin: uuid_like(),
            listening: AtomicBool::new(false),
        });
        tokio::spawn(listen(Arc::downgrade(&cache), client));
        cache
    }

    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn message(&self, key: &str) -> String {
        format!("{}|{key}", self.origin)
    }

    pub(crate) async fn lookup(&self, key: &str) -> Result<Lookup> {
        // Near copies are never tombstones.
        if let Some(entry) = self.near.get(key) {
            return Ok(Lookup::Hit(entry.value.to_vec()));
        }
        let (value, ttl_ms): (Option<Vec<u8>>, i64) =
            redis::pipe().get(key).pttl(key).query_async(&mut self.conn()).await?;
        Ok(match value {
            None => Lookup::Miss(FillToken(None)),
            Some(v) if is_tombstone(&v) => Lookup::Miss(FillToken(Some(v.into()))),
            Some(v) => {
                if ttl_ms > 0 {
                    let ttl = Duration::from_millis(ttl_ms as u64).min(NEAR_TTL);
                    self.near.insert(key.to_string(), Entry { value: v.as_slice().into(), ttl });
                }
                Lookup::Hit(v)
            }
        })
    }

    pub(crate) async fn fill(&self, key: &str, seen: &FillToken, value: &[u8], ttl: Duration) -> Result<bool> {
        let stored: i64 = redis::Script::new(FILL_SCRIPT)
            .key(key)
            .arg(seen.0.as_deref().unwrap_or_default())
            .arg(value)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        if stored == 1 {
            self.near.insert(key.to_string(), Entry { value: value.into(), ttl: ttl.min(NEAR_TTL) });
        }
        Ok(stored == 1)
    }

    pub(crate) async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        redis::pipe()
            .pset_ex(key, value, ttl.as_millis() as u64)
            .ignore()
            .publish(INVALIDATION_CHANNEL, self.message(key))
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        self.near.insert(key.to_string(), Entry { value: value.into(), ttl: ttl.min(NEAR_TTL) });
        Ok(())
    }

    pub(crate) async fn invalidate(&self, key: &str, tombstone: Arc<[u8]>) -> Result<()> {
        self.near.invalidate(key);
        redis::pipe()
            .pset_ex(key, &*tombstone, TOMBSTONE_TTL.as_millis() as u64)
            .ignore()
            .publish(INVALIDATION_CHANNEL, self.message(key))
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        // A lookup here may have copied the old value back while the write was under way.
        self.near.invalidate(key);
        Ok(())
    }

    pub(crate) async fn incr(&self, key: &str, by: i64) -> Result<i64> {
        Ok(self.conn().incr(key, by).await?)
    }

    pub(crate) async fn incr_if_present(&self, key: &str, by: i64) -> Result<Option<i64>> {
        Ok(redis::Script::new(INCR_IF_PRESENT_SCRIPT).key(key).arg(by).invoke_async(&mut self.conn()).await?)
    }

    pub(crate) async fn counter_values(&self, keys: &[String]) -> Result<Vec<Option<i64>>> {
        Ok(redis::cmd("MGET").arg(keys).query_async(&mut self.conn()).await?)
    }

    pub(crate) async fn set_counters(&self, entries: &[(String, i64)], ttl: Duration, only_absent: bool) -> Result<()> {
        let mut pipe = redis::pipe();
        for (key, value) in entries {
            let cmd = pipe.cmd("SET").arg(key).arg(*value).arg("PX").arg(ttl.as_millis() as u64);
            if only_absent {
                cmd.arg("NX");
            }
            cmd.ignore();
        }
        Ok(pipe.query_async::<()>(&mut self.conn()).await?)
    }

    pub(crate) async fn take_counters(&self, keys: &[String]) -> Result<Vec<Option<i64>>> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("GETDEL").arg(key);
        }
        Ok(pipe.query_async(&mut self.conn()).await?)
    }

    pub(crate) async fn set_add(&self, key: String, members: &[&str]) -> Result<()> {
        Ok(self.conn().sadd(key, members).await?)
    }

    pub(crate) async fn set_pop(&self, key: &str, count: usize) -> Result<Vec<String>> {
        Ok(redis::cmd("SPOP").arg(key).arg(count.max(1)).query_async(&mut self.conn()).await?)
    }

    pub(crate) async fn counter(&self, key: &str) -> Result<Option<i64>> {
        Ok(self.conn().get(key).await?)
    }

    pub(crate) async fn set_counter(&self, key: &str, value: i64) -> Result<()> {
        Ok(self.conn().set(key, value).await?)
    }

    pub(crate) async fn delete_counter(&self, key: &str) -> Result<()> {
        Ok(self.conn().del(key).await?)
    }

    /// Counts an attempt in `key`'s window: the attempts so far and the time to the reset.
    pub(crate) async fn rate_limit(&self, key: &str, window: Duration) -> Result<(u64, Duration)> {
        let (count, ttl_ms): (u64, i64) = redis::Script::new(RATE_LIMIT_SCRIPT)
            .key(rate_key(key))
            .arg(window.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok((count, Duration::from_millis(ttl_ms.max(0) as u64)))
    }

    pub(crate) async fn rate_count(&self, key: &str) -> Result<(u64, Duration)> {
        let key = rate_key(key);
        let (count, ttl_ms): (Option<u64>, i64) =
            redis::pipe().get(&key).pttl(&key).query_async(&mut self.conn()).await?;
        Ok((count.unwrap_or(0), Duration::from_millis(ttl_ms.max(0) as u64)))
    }

    pub(crate) async fn rate_reset(&self, key: &str) -> Result<()> {
        Ok(self.conn().del(rate_key(key)).await?)
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        redis::cmd("PING").query_async::<String>(&mut self.conn()).await?;
        Ok(())
    }
}

/// Keeps other replicas' near caches honest: evicts the keys they publish, for as long as
/// `cache` lives.
async fn listen(cache: std::sync::Weak<RedisCache>, client: redis::Client) {
    use futures::StreamExt;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(alive) = cache.upgrade() else { return };
        drop(alive);
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(INVALIDATION_CHANNEL).await.is_ok() {
                    backoff = Duration::from_millis(100);
                    // Whatever changed while we were not listening is unknown: start clean.
                    if let Some(cache) = cache.upgrade() {
                        cache.near.invalidate_all();
                        cache.listening.store(true, Ordering::Release);
                    }
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(cache) = cache.upgrade() else { return };
                        if let Ok(payload) = msg.get_payload::<String>()
                            && let Some((origin, key)) = payload.split_once('|')
                            && origin != cache.origin
                        {
                            cache.near.invalidate(key);
                        }
                    }
                    if let Some(cache) = cache.upgrade() {
                        cache.listening.store(false, Ordering::Release);
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
}
