//! Password hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane). Hashing
//! runs on the blocking pool so it never stalls the async workers, and behind a semaphore
//! sized from a memory budget: each hash holds 19 MiB for its whole run, so unbounded
//! parallel logins would take the process out of memory. A caller that cannot get a slot
//! within the configured wait gets 503 with `Retry-After`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use flick_kit::{AppError, ErrorCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Memory one hash takes (argon2's `m`).
pub const HASH_MEMORY_MIB: u64 = 19;

fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new((HASH_MEMORY_MIB * 1024) as u32, 2, 1, None).expect("valid argon2 params"),
    )
}

/// Runs hashes on the blocking pool, at most `slots` at once.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    wait: Duration,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Hasher {
    /// As many slots as `memory_budget_mib` holds hashes (at least one).
    pub fn new(memory_budget_mib: u64, wait: Duration) -> Self {
        let slots = (memory_budget_mib / HASH_MEMORY_MIB).max(1) as usize;
        metrics::gauge!("accounts_password_hash_slots").set(slots as f64);
        Self { permits: Arc::new(Semaphore::new(slots)), wait, in_flight: Arc::default(), peak: Arc::default() }
    }

    /// A hashing slot, waiting at most the configured time for one: UNAVAILABLE with
    /// `Retry-After` when every slot stays taken.
    pub async fn slot(&self) -> Result<Slot, AppError> {
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { permit, in_flight: self.in_flight.clone(), peak: self.peak.clone() }),
            _ => {
                metrics::counter!("accounts_password_hash_busy_total").increment(1);
                Err(AppError::new(ErrorCode::Unavailable, "too many sign-ins at once, retry shortly")
                    .with_retry_after(1))
            }
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        self.slot().await?.hash(password).await
    }
}

/// The right to run one hash.
pub struct Slot {
    permit: OwnedSemaphorePermit,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Slot {
    /// Runs `work` on the blocking pool. The permit moves into the blocking task, so a
    /// request cancelled mid-hash keeps its slot until the hash really ends.
    async fn run<T: Send + 'static>(self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, AppError> {
        let Slot { permit, in_flight, peak } = self;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            let highest = peak.fetch_max(now, Ordering::SeqCst).max(now);
            metrics::gauge!("accounts_password_hashes_in_flight").set(now as f64);
            // The most hashes that ever ran at once here: tests hold the bound with it.
            metrics::gauge!("accounts_password_hashes_in_flight_max").set(highest as f64);
            let out = work();
            let left = in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
            metrics::gauge!("accounts_password_hashes_in_flight").set(left as f64);
            out
        })
        .await
        .map_err(AppError::internal)
    }

    pub async fn hash(self, password: String) -> Result<String, AppError> {
        self.run(move || hash_now(&password)).await?.map_err(AppError::internal)
    }

    /// Checks `password` against `stored`; with `None` it checks against a dummy hash so an
    /// unknown user costs the same time as a wrong password.
    pub async fn verify(self, password: String, stored: Option<String>) -> Result<bool, AppError> {
        self.run(move || verify_now(&password, stored.as_deref())).await
    }
}

/// One hash outside any service (seeding from the command line).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_now(&password)).await?
}

fn hash_now(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::from_b64(&base64_salt()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

fn verify_now(password: &str, stored: Option<&str>) -> bool {
    let stored = stored.unwrap_or_else(|| dummy_hash());
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    argon2().verify_password(password.as_bytes(), &parsed).is_ok()
}

fn base64_salt() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(rand::random::<[u8; 16]>())
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::from_b64(&base64_salt()).expect("valid salt");
        argon2().hash_password(b"not a real password", &salt).expect("hashing works").to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_only_their_password() {
        let hasher = Hasher::new(38, Duration::from_secs(5));
        assert_eq!(hasher.permits.available_permits(), 2);
        let h = hasher.hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(hasher.slot().await.unwrap().verify("correct horse".into(), Some(h.clone())).await.unwrap());
        assert!(!hasher.slot().await.unwrap().verify("wrong horse".into(), Some(h)).await.unwrap());
        assert!(!hasher.slot().await.unwrap().verify("correct horse".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_hasher_answers_unavailable_with_retry_after() {
        let hasher = Hasher::new(1, Duration::ZERO);
        assert_eq!(hasher.permits.available_permits(), 1, "at least one slot");
        let held = hasher.permits.clone().acquire_owned().await.unwrap();
        let err = hasher.hash("correct horse".into()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Unavailable);
        drop(held);
        assert!(hasher.hash("correct horse".into()).await.is_ok());
    }
}
