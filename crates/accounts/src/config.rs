//! Accounts' section of the configuration (`[accounts]`, `FLICK_ACCOUNTS__*`).
//! Loaded, checked and printed with the rest by `flick_kit::config` once the binary registers
//! it (`SectionSpec::of`): a key it does not have is an error, in a file or in a variable.

use flick_kit::Config;
use flick_kit::config::ConfigSection;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

impl ConfigSection for AccountsConfig {
    const NAME: &'static str = "accounts";
}

/// `config.accounts()` reads this section (its defaults when the configuration has none),
/// `config.accounts_mut()` changes it (tests).
pub trait AccountsConfigExt {
    fn accounts(&self) -> AccountsConfig;
    fn accounts_mut(&mut self) -> &mut AccountsConfig;
}

impl AccountsConfigExt for Config {
    fn accounts(&self) -> AccountsConfig {
        self.section::<AccountsConfig>()
    }

    fn accounts_mut(&mut self) -> &mut AccountsConfig {
        self.section_mut::<AccountsConfig>()
    }
}
