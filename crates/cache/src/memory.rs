//! In-process backend (the embedded default): values in a moka cache, counters, sets and
//! rate-limit windows in maps, with the same semantics as the Redis backend for one process
//! (counters expire like Redis keys, fills are refused after an invalidation).

use crate::{Entry, FillToken, Lookup, TOMBSTONE_TTL, denylist, is_tombstone, local_tier};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most bytes of values (keys included) kept; the least used go first.
const CAPACITY: u64 = 64 * 1024 * 1024;
/// Counters and windows kept before expired ones are swept on the next insert.
const SWEEP_ABOVE: usize = 100_000;

pub(crate) struct MemoryCache {
    /// Every value, tombstones included.
    values: moka::sync::Cache<String, Entry>,
    /// Serialises the check-and-store of fills with writes and invalidations.
    writes: Mutex<()>,
    pub(crate) denylists: Mutex<HashMap<String, Arc<denylist::Shared>>>,
    counters: Mutex<HashMap<String, Counter>>,
    sets: Mutex<HashMap<String, HashSet<String>>>,
    windows: Mutex<HashMap<String, (u64, Instant)>>,
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

impl MemoryCache {
    pub(crate) fn new() -> Self {
        Self {
            values: local_tier(CAPACITY),
            writes: Mutex::new(()),
            denylists: Mutex::default(),
            counters: Mutex::default(),
            sets: Mutex::default(),
            windows: Mutex::default(),
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counter>> {
        self.counters.lock().expect("counter lock")
    }

    pub(crate) fn lookup(&self, key: &str) -> Lookup {
        match self.values.get(key) {
            Some(entry) if is_tombstone(&entry.value) => Lookup::Miss(FillToken(Some(entry.value))),
            Some(entry) => Lookup::Hit(entry.value.to_vec()),
            None => Lookup::Miss(FillToken(None)),
        }
    }

    pub(crate) fn fill(&self, key: &str, seen: &FillToken, value: &[u8], ttl: Duration) -> bool {
        let _writes = self.writes.lock().expect("write lock");
        let current = self.values.get(key).map(|e| e.value);
        if current != seen.0 {
            return false;
        }
        self.values.insert(key.to_string(), Entry { value: value.into(), ttl });
        true
    }

    pub(crate) fn set(&self, key: &str, value: &[u8], ttl: Duration) {
        let _writes = self.writes.lock().expect("write lock");
        self.values.insert(key.to_string(), Entry { value: value.into(), ttl });
    }

    pub(crate) fn invalidate(&self, key: &str, tombstone: Arc<[u8]>) {
        let _writes = self.writes.lock().expect("write lock");
        self.values.insert(key.to_string(), Entry { value: tombstone, ttl: TOMBSTONE_TTL });
    }

    pub(crate) fn incr(&self, key: &str, by: i64) -> i64 {
        let mut counters = self.counters();
        if live_counter(&mut counters, key).is_none() {
            if counters.len() > SWEEP_ABOVE {
                let now = Instant::now();
                counters.retain(|_, c| c.live(now));
            }
            counters.insert(key.to_string(), Counter { value: 0, expires: None });
        }
        let c = counters.get_mut(key).expect("just inserted");
        c.value += by;
        c.value
    }

    pub(crate) fn incr_if_present(&self, key: &str, by: i64) -> Option<i64> {
        live_counter(&mut self.counters(), key).map(|c| {
            c.value += by;
            c.value
        })
    }

    pub(crate) fn counter_values(&self, keys: &[String]) -> Vec<Option<i64>> {
        let mut counters = self.counters();
        keys.iter().map(|k| live_counter(&mut counters, k).map(|c| c.value)).collect()
    }

    pub(crate) fn set_counters(&self, entries: &[(String, i64)], ttl: Duration, only_absent: bool) {
        let mut counters = self.counters();
        let expires = Some(Instant::now() + ttl);
        for (key, value) in entries {
            if only_absent && live_counter(&mut counters, key).is_some() {
                continue;
            }
            counters.insert(key.clone(), Counter { value: *value, expires });
        }
    }

    pub(crate) fn take_counters(&self, keys: &[String]) -> Vec<Option<i64>> {
        let mut counters = self.counters();
        keys.iter()
            .map(|k| {
                let value = live_counter(&mut counters, k).map(|c| c.value);
                counters.remove(k);
                value
            })
            .collect()
    }

    pub(crate) fn set_add(&self, key: String, members: &[&str]) {
        let mut sets = self.sets.lock().expect("set lock");
        sets.entry(key).or_default().extend(members.iter().map(|m| m.to_string()));
    }

    pub(crate) fn set_pop(&self, key: &str, count: usize) -> Vec<String> {
        let mut sets = self.sets.lock().expect("set lock");
        let Some(set) = sets.get_mut(key) else { return Vec::new() };
        let taken: Vec<String> = set.iter().take(count).cloned().collect();
        for t in &taken {
            set.remove(t);
        }
        if set.is_empty() {
            sets.remove(key);
        }
        taken
    }

    pub(crate) fn counter(&self, key: &str) -> Option<i64> {
        live_counter(&mut self.counters(), key).map(|c| c.value)
    }

    pub(crate) fn set_counter(&self, key: &str, value: i64) {
        self.counters().insert(key.to_string(), Counter { value, expires: None });
    }

    pub(crate) fn delete_counter(&self, key: &str) {
        self.counters().remove(key);
    }

    /// Counts an attempt in `key`'s window: the attempts so far and the time to the reset.
    pub(crate) fn rate_limit(&self, key: &str, window: Duration) -> (u64, Duration) {
        let now = Instant::now();
        let mut windows = self.windows.lock().expect("window lock");
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, (_, reset)| *reset > now);
        }
        let slot = windows.entry(key.to_string()).or_insert((0, now + window));
        if slot.1 <= now {
            *slot = (0, now + window);
        }
        slot.0 += 1;
        (slot.0, slot.1 - now)
    }

    pub(crate) fn rate_count(&self, key: &str) -> (u64, Duration) {
        let now = Instant::now();
        match self.windows.lock().expect("window lock").get(key) {
            Some((count, reset)) if *reset > now => (*count, *reset - now),
            _ => (0, Duration::ZERO),
        }
    }

    pub(crate) fn rate_reset(&self, key: &str) {
        self.windows.lock().expect("window lock").remove(key);
    }
}
