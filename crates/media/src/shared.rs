//! Read-through of what many requests ask for alike, kept in the cache port: with Redis each
//! replica's near cache answers from memory, and a write drops the entry on every replica
//! (the cache's invalidation channel). A fill whose read began before a drop is refused by the
//! cache, so a slow read never brings back what a write replaced; the TTL bounds how long an
//! entry lives when an invalidation is lost or a change has no single place to drop it from.
//!
//! One [`Shared`] per kind of value (`kind` labels `media_shared_reads_total{kind, result}`).

use flick_platform::cache::{Cache, FillToken, Lookup};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct Shared {
    cache: Cache,
    /// Names the kind: the metric's label and the keys' prefix (`media:shared:<kind>:<id>`,
    /// apart from the counters' `media:<count>:<video>` keys).
    kind: &'static str,
    ttl: Duration,
}

impl Shared {
    pub fn new(cache: Cache, kind: &'static str, ttl: Duration) -> Self {
        Self { cache, kind, ttl }
    }

    fn key(&self, id: &str) -> String {
        format!("media:shared:{}:{id}", self.kind)
    }

    fn count(&self, result: &'static str) {
        metrics::counter!("media_shared_reads_total", "kind" => self.kind, "result" => result).increment(1);
    }

    /// The cached value of `id` (`decode` turns the bytes into it), or what to fill it with
    /// after reading (`None`: the cache is unavailable or holds something undecodable; read,
    /// and keep nothing).
    async fn look<T>(
        &self,
        id: &str,
        decode: impl FnOnce(Vec<u8>) -> serde_json::Result<T>,
    ) -> Result<T, Option<FillToken>> {
        let seen = match self.cache.lookup(&self.key(id)).await {
            Ok(Lookup::Hit(bytes)) => match decode(bytes) {
                Ok(value) => {
                    self.count("hit");
                    return Ok(value);
                }
                Err(e) => {
                    tracing::debug!(kind = self.kind, error = %e, "shared entry undecodable; read again");
                    None
                }
            },
            Ok(Lookup::Miss(token)) => Some(token),
            Err(e) => {
                tracing::debug!(kind = self.kind, error = %e, "cache unavailable: read from the database");
                None
            }
        };
        self.count("miss");
        Err(seen)
    }

    /// Fills `id` with `value`; its bytes, when the cache was there to take them (nothing is
    /// encoded while it is out).
    async fn fill<T: Serialize>(&self, id: &str, seen: Option<FillToken>, value: &T) -> Option<Vec<u8>> {
        let token = seen?;
        let bytes = serde_json::to_vec(value).ok()?;
        if let Err(e) = self.cache.fill(&self.key(id), &token, &bytes, self.ttl).await {
            tracing::debug!(kind = self.kind, error = %e, "shared entry not cached");
        }
        Some(bytes)
    }

    /// The value of `id`, from the cache or else from `read` (then cached).
    pub async fn get<T, F, Fut, E>(&self, id: &str, read: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let seen = match self.look(id, |bytes| serde_json::from_slice(&bytes)).await {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        let value = read().await?;
        self.fill(id, seen, &value).await;
        Ok(value)
    }

    /// [`Shared::get`] for a value many requests read whole and often (the feed's head): kept
    /// decoded in `memo` beside the bytes it came from, so while the cache holds the same
    /// bytes a hit costs a comparison instead of a parse. A change or another replica's fill
    /// brings other bytes, which are decoded once.
    pub async fn get_decoded<T, F, Fut, E>(&self, id: &str, memo: &Memo<T>, read: F) -> Result<Arc<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let seen = match self.look(id, |bytes| memo.decode(bytes)).await {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        let value = Arc::new(read().await?);
        if let Some(bytes) = self.fill(id, seen, &*value).await {
            memo.keep(bytes, value.clone());
        }
        Ok(value)
    }

    /// The values of `ids`, from the cache or else from one `read` of the ids it lacks; what
    /// `read` does not return is absent (and not cached: it may appear any moment).
    pub async fn get_many<T, F, Fut, E>(&self, ids: &[String], read: F) -> Result<HashMap<String, T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<HashMap<String, T>, E>>,
    {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing: Vec<(String, Option<FillToken>)> = Vec::new();
        for id in ids {
            if found.contains_key(id) || missing.iter().any(|(m, _)| m == id) {
                continue;
            }
            match self.look(id, |bytes| serde_json::from_slice(&bytes)).await {
                Ok(value) => {
                    found.insert(id.clone(), value);
                }
                Err(seen) => missing.push((id.clone(), seen)),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let read = read(missing.iter().map(|(id, _)| id.clone()).collect()).await?;
        for (id, seen) in missing {
            if let Some(value) = read.get(&id) {
                self.fill(&id, seen, value).await;
            }
        }
        found.extend(read);
        Ok(found)
    }

    /// Drops `id`'s entry on every replica: what it holds may have changed.
    pub async fn changed(&self, id: &str) {
        if let Err(e) = self.cache.invalidate(&self.key(id)).await {
            tracing::warn!(kind = self.kind, error = %e, "shared entry not dropped; it expires within {:?}", self.ttl);
        }
    }
}

/// The last bytes one [`Shared`] entry held in this process and their decoded value.
pub struct Memo<T>(Mutex<Option<(Vec<u8>, Arc<T>)>>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T: DeserializeOwned> Memo<T> {
    fn decode(&self, bytes: Vec<u8>) -> serde_json::Result<Arc<T>> {
        if let Some((kept, value)) = &*self.0.lock().expect("memo lock")
            && *kept == bytes
        {
            return Ok(value.clone());
        }
        // Decoded outside the lock: concurrent first readers each decode, the last one stays.
        let value = Arc::new(serde_json::from_slice::<T>(&bytes)?);
        self.keep(bytes, value.clone());
        Ok(value)
    }

    fn keep(&self, bytes: Vec<u8>, value: Arc<T>) {
        *self.0.lock().expect("memo lock") = Some((bytes, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn values_are_read_once_until_a_change_drops_them() {
        let shared = Shared::new(Cache::memory(), "test", Duration::from_secs(60));
        let reads = AtomicU64::new(0);
        let read = |id: &'static str| {
            let reads = &reads;
            move || async move {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(format!("{id}@{}", reads.load(Ordering::SeqCst)))
            }
        };
        assert_eq!(shared.get("a", read("a")).await.unwrap(), "a@1");
        assert_eq!(shared.get("a", read("a")).await.unwrap(), "a@1", "the second ask is served from the cache");
        shared.changed("a").await;
        assert_eq!(shared.get("a", read("a")).await.unwrap(), "a@2", "a change drops the entry");
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_decoded_value_is_shared_while_the_cache_holds_the_same_bytes() {
        let cache = Cache::memory();
        let shared = Shared::new(cache.clone(), "test", Duration::from_secs(60));
        let memo = Memo::default();
        let reads = &AtomicU64::new(0);
        let read = move || async move {
            let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, ()>(vec![format!("row@{n}")])
        };
        let first = shared.get_decoded("head", &memo, read).await.unwrap();
        let again = shared.get_decoded("head", &memo, read).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "a hit on the same bytes decodes nothing");
        shared.changed("head").await;
        let changed = shared.get_decoded("head", &memo, read).await.unwrap();
        assert_eq!(*changed, vec!["row@2".to_string()], "a change drops the entry and its memo's use");
        // Another replica's fill (other bytes under the key) is decoded, never the memo served.
        shared.changed("head").await;
        let elsewhere = Shared::new(cache, "test", Duration::from_secs(60));
        let other = Memo::default();
        elsewhere.get_decoded("head", &other, || async { Ok::<_, ()>(vec!["other".to_string()]) }).await.unwrap();
        let seen = shared.get_decoded("head", &memo, || async { Err::<Vec<String>, ()>(()) }).await.unwrap();
        assert_eq!(*seen, vec!["other".to_string()]);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn many_values_read_only_what_the_cache_lacks_and_absent_ones_are_not_kept() {
        let shared = Shared::new(Cache::memory(), "test", Duration::from_secs(60));
        let asked = std::sync::Mutex::new(Vec::new());
        let read = |ids: Vec<String>| {
            asked.lock().unwrap().push(ids.clone());
            async move { Ok::<_, ()>(ids.into_iter().filter(|i| i != "gone").map(|i| (i.clone(), i.len())).collect()) }
        };
        let ids = |s: &[&str]| s.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        let got = shared.get_many(&ids(&["a", "bb", "gone", "a"]), read).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["bb"], 2);
        let got = shared.get_many(&ids(&["a", "bb", "ccc", "gone"]), read).await.unwrap();
        assert_eq!(got["ccc"], 3);
        assert!(!got.contains_key("gone"));
        assert_eq!(
            *asked.lock().unwrap(),
            vec![ids(&["a", "bb", "gone"]), ids(&["ccc", "gone"])],
            "one read per ask, of the missing ids only, each once"
        );
    }
}
