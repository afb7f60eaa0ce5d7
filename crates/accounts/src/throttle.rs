//! Attempt counting for logins and password checks: fixed windows in the cache (shared by
//! every replica) and, always beside them, in this process. An attempt is counted before any
//! hashing (increment, then compare), so a parallel burst cannot slip past the limit; when
//! the cache is unreachable the local count still decides: throttling never fails open.

use flick_platform::cache::Cache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Windows kept in memory before expired ones are swept.
const LOCAL_SWEEP_AT: usize = 100_000;

#[derive(Clone)]
pub struct Throttle {
    cache: Cache,
    window: Duration,
    local: Arc<Mutex<HashMap<String, (u64, Instant)>>>,
}

/// The count of one key after an attempt, and when its window ends.
#[derive(Debug, Clone, Copy)]
pub struct Count {
    pub attempts: u64,
    pub reset_after: Duration,
}

impl Throttle {
    pub fn new(cache: Cache, window: Duration) -> Self {
        Self { cache, window, local: Arc::default() }
    }

    /// Counts one attempt on `key`: the larger of the shared and the local count (the local
    /// one alone while the cache is unreachable, or after the cache lost its windows).
    pub async fn hit(&self, key: &str) -> Count {
        let local = self.hit_local(key);
        match self.cache.rate_limit(key, u64::MAX, self.window).await {
            Ok(shared) if shared.reset_after > Duration::ZERO => {
                let attempts = u64::MAX - shared.remaining;
                if attempts >= local.attempts { Count { attempts, reset_after: shared.reset_after } } else { local }
            }
            Ok(_) => local,
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable: counting attempts in this process only");
                local
            }
        }
    }

    /// Forgets `key`'s attempts (after a correct password).
    pub async fn reset(&self, key: &str) {
        self.local.lock().expect("throttle lock").remove(key);
        if let Err(e) = self.cache.rate_reset(key).await {
            tracing::warn!(error = %e, "cannot reset an attempt count");
        }
    }

    fn hit_local(&self, key: &str) -> Count {
        let now = Instant::now();
        let mut windows = self.local.lock().expect("throttle lock");
        if windows.len() >= LOCAL_SWEEP_AT {
            windows.retain(|_, (_, end)| *end > now);
            // Still crowded (many distinct logins or forged addresses): keep the keys with the
            // most attempts, at most half the room, so memory stays bounded and the next sweep
            // is LOCAL_SWEEP_AT / 2 new keys away (a sweep per attempt would cost O(n) each).
            if windows.len() >= LOCAL_SWEEP_AT / 2 {
                let mut counts: Vec<u64> = windows.values().map(|(attempts, _)| *attempts).collect();
                let middle = counts.len() / 2;
                let (_, &mut keep_above, _) = counts.select_nth_unstable(middle);
                windows.retain(|_, (attempts, _)| *attempts > keep_above);
            }
        }
        let slot = windows.entry(key.to_string()).or_insert((0, now + self.window));
        if slot.1 <= now {
            *slot = (0, now + self.window);
        }
        slot.0 += 1;
        Count { attempts: slot.0, reset_after: slot.1 - now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys with two attempts each (what a flood of distinct logins leaves) neither grow the
    /// local map past its room nor push out a key with many attempts.
    #[test]
    fn local_counts_stay_bounded_and_keep_the_busiest_keys() {
        let throttle = Throttle::new(Cache::memory(), Duration::from_secs(900));
        for _ in 0..7 {
            throttle.hit_local("victim");
        }
        for i in 0..(LOCAL_SWEEP_AT * 2) {
            let key = format!("flood-{i}");
            throttle.hit_local(&key);
            throttle.hit_local(&key);
            assert!(throttle.local.lock().unwrap().len() <= LOCAL_SWEEP_AT, "grew past its room at {i}");
        }
        assert_eq!(throttle.hit_local("victim").attempts, 8, "the busiest key kept its count");
    }
}
