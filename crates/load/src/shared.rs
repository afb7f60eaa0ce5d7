//! What every virtual user shares: the run's targets, the clip uploaders send, the ledger of
//! acknowledged writes and the log of failed requests. Goose runs transactions as plain
//! functions, so this lives in one process-wide value set before the attack starts.

use crate::ledger::Ledger;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// A public, ready video that browsing, likes and comments aim at, and its channel.
#[derive(Debug, Clone)]
pub struct Target {
    pub video: String,
    pub owner: String,
}

/// A request that did not get the answer a user expects.
#[derive(Debug, Clone)]
pub struct Failure {
    pub at_ms: u64,
    pub kind: &'static str,
    pub what: String,
    pub cause: Cause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A refusal the client caused (4xx: rate limited, bad input).
    Refused,
    /// The platform's fault: HTTP 5xx, a broken connection, a GraphQL INTERNAL/UNAVAILABLE.
    Server,
    /// The platform's fault too, the worst kind: no answer before the client gave up.
    Timeout,
}

impl Failure {
    pub fn by_platform(&self) -> bool {
        self.cause != Cause::Refused
    }
}

#[derive(Debug)]
pub struct Shared {
    /// Unique per run: user names and titles carry it.
    pub run: String,
    pub targets: Vec<Target>,
    pub clip: Vec<u8>,
    pub ledger: Mutex<Ledger>,
    pub failures: Mutex<Vec<Failure>>,
    next_user: AtomicUsize,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

pub fn init(run: String, targets: Vec<Target>, clip: Vec<u8>) {
    let shared = Shared {
        run,
        targets,
        clip,
        ledger: Mutex::default(),
        failures: Mutex::default(),
        next_user: AtomicUsize::new(0),
    };
    assert!(SHARED.set(shared).is_ok(), "shared state is set once, before the attack");
}

pub fn get() -> &'static Shared {
    SHARED.get().expect("shared state is set before the attack")
}

impl Shared {
    pub fn next_user_name(&self, role: &str) -> String {
        format!("{role}{}x{}", self.run, self.next_user.fetch_add(1, Ordering::Relaxed))
    }

    pub fn record_failure(&self, kind: &'static str, what: String, cause: Cause) {
        let failure = Failure { at_ms: now_ms(), kind, what, cause };
        self.failures.lock().unwrap().push(failure);
    }

    pub fn target(&self) -> &Target {
        &self.targets[rand::random_range(0..self.targets.len())]
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}
