//! Accounts' domain logic, written once and called by REST, gRPC and GraphQL.

use crate::password::Hasher;
use crate::store::{self, NewUser, UserRow};
use crate::throttle::Throttle;
use crate::tokens::{self, Claims, Keyring, TokenError};
use crate::validate::{self, FieldProblems};
use flick_kit::AppError;
use flick_kit::access_token::{jti_key, sid_key};
use flick_platform::bus::envelope;
use flick_platform::cache::{Cache, Denylist};
use flick_platform::db::sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use flick_platform::outbox::{self, Relay};
use flick_proto::events::v1 as events;
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use uuid::Uuid;

pub const PRODUCER: &str = "accounts";
/// The longest login accepted: the longest email address (RFC 5321), folded. Longer ones are
/// refused before any cache key is built from them.
pub const MAX_LOGIN_LEN: usize = 254;

#[derive(Debug, Clone)]
pub struct Limits {
    pub access_ttl: Duration,
    /// A session (refresh-token family) ends this long after its login; refreshing does not
    /// extend it.
    pub session_lifetime: Duration,
    /// Attempts per account from one address in a window (also: wrong current passwords per
    /// account).
    pub failures_per_account_address: u64,
    /// Attempts per account from every address together.
    pub failures_per_account: u64,
    /// Attempts per address; past it, only a first attempt per account and window.
    pub failures_per_address: u64,
    pub failure_window: Duration,
    /// Memory for concurrent password hashes (19 MiB each), and how long to wait for a slot.
    pub hash_memory_mib: u64,
    pub hash_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let cfg = crate::config::AccountsConfig::default();
        Self::from(&cfg)
    }
}

impl From<&crate::config::AccountsConfig> for Limits {
    fn from(cfg: &crate::config::AccountsConfig) -> Self {
        Self {
            access_ttl: Duration::from_secs(cfg.access_token_ttl_seconds),
            session_lifetime: Duration::from_secs(cfg.session_lifetime_seconds),
            failures_per_account_address: cfg.login_failures_per_account_address,
            failures_per_account: cfg.login_failures_per_account,
            failures_per_address: cfg.login_failures_per_address,
            failure_window: Duration::from_secs(cfg.login_failure_window_seconds),
            hash_memory_mib: cfg.password_hash_memory_mib,
            hash_wait: Duration::from_millis(cfg.password_hash_wait_ms),
        }
    }
}

/// A user as others may see them.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct PublicUser {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
}

/// A user as they see themselves (the REST user object of api.md).
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct User {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub username: String,
    pub display_name: String,
    pub bio: String,
    pub avatar_url: Option<String>,
    pub created_at: String,
}

impl User {
    fn of(row: &UserRow, with_email: bool) -> Self {
        Self {
            id: row.id.clone(),
            email: with_email.then(|| row.email.clone()),
            username: row.username.clone(),
            display_name: row.display_name.clone(),
            bio: row.bio.clone(),
            avatar_url: row.avatar_url.clone(),
            created_at: chrono::DateTime::from_timestamp_millis(row.created_at_ms).unwrap_or_default().to_rfc3339(),
        }
    }
}

impl From<&UserRow> for PublicUser {
    fn from(row: &UserRow) -> Self {
        Self {
            id: row.id.clone(),
            username: row.username.clone(),
            display_name: row.display_name.clone(),
            avatar_url: row.avatar_url.clone(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

/// The identity a valid access token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: String,
    pub role: String,
    pub claims: Arc<Claims>,
}

impl Verified {
    /// The revocation-list members that revoke this token: its id and its session.
    pub fn revocation_keys(&self) -> Vec<String> {
        self.claims.revocation_keys()
    }
}

pub struct Registration {
    pub email: String,
    pub username: String,
    pub password: String,
    pub display_name: String,
}

/// A profile change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub avatar_url: Option<Option<String>>,
    pub current_password: Option<String>,
    pub new_password: Option<String>,
}

#[derive(Clone)]
pub struct Accounts {
    db: DatabaseConnection,
    /// Revoked access tokens (`jti:…`) and sessions (`sid:…`), mirrored in this replica so
    /// verification needs no round trip.
    revoked: Denylist,
    relay: Relay,
    keys: Arc<Keyring>,
    limits: Limits,
    hasher: Hasher,
    throttle: Throttle,
    /// Until then, verification also asks the database: revocations made while the cache was
    /// unreachable may not have reached it yet.
    db_check_until_ms: Arc<AtomicI64>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn db_error(e: DbErr) -> AppError {
    AppError::internal(format!("accounts database: {e}"))
}

fn invalid(problems: FieldProblems, message: &str) -> AppError {
    problems.into_iter().fold(AppError::bad_input(message), |err, (field, problem)| err.with_field(field, problem))
}

impl Accounts {
    pub fn new(db: DatabaseConnection, cache: Cache, relay: Relay, keys: Arc<Keyring>, limits: Limits) -> Self {
        let revoked = cache.denylist(flick_platform::REVOKED_TOKENS);
        let hasher = Hasher::new(limits.hash_memory_mib, limits.hash_wait);
        let throttle = Throttle::new(cache.clone(), limits.failure_window);
        Self { db, revoked, relay, keys, limits, hasher, throttle, db_check_until_ms: Arc::new(AtomicI64::new(0)) }
    }

    /// The public keys tokens are verified with, and how long a token lives.
    pub fn verifying_keys(&self) -> (&flick_kit::access_token::VerifyingKeys, Duration) {
        (self.keys.verifying_keys(), self.limits.access_ttl)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn register(&self, r: Registration) -> Result<User, AppError> {
        let mut problems = Vec::new();
        let email_key = validate::check_email(&r.email, &mut problems);
        let username = validate::check_username(&r.username, &mut problems);
        validate::check_password("password", &r.password, &mut problems);
        let display_name = validate::check_display_name(&r.display_name, &mut problems);
        if !problems.is_empty() {
            return Err(invalid(problems, "invalid registration"));
        }
        let (email_taken, username_taken) = store::taken(&self.db, &email_key, &username).await.map_err(db_error)?;
        if email_taken || username_taken {
            return Err(taken_error(email_taken, username_taken));
        }
        let hash = self.hasher.hash(r.password).await?;
        let id = Uuid::now_v7().to_string();
        let now = now_ms();
        let email = r.email.trim().to_string();
        let txn = self.db.begin().await.map_err(db_error)?;
        let inserted = store::insert_user(
            &txn,
            NewUser {
                id: &id,
                email: &email,
                email_key: &email_key,
                username: &username,
                display_name: &display_name,
                password_hash: &hash,
                now_ms: now,
            },
        )
        .await;
        if let Err(e) = inserted {
            // Lost a race with another registration of the same name.
            if let Some(flick_platform::db::sea_orm::SqlErr::UniqueConstraintViolation(msg)) = e.sql_err() {
                let email_clash = msg.contains("email");
                return Err(taken_error(email_clash, !email_clash));
            }
            return Err(db_error(e));
        }
        let event = events::UserRegistered { user_id: id.clone(), username: username.clone() };
        outbox::record(&txn, &envelope("user.registered", &id, PRODUCER, event.encode_to_vec()))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        tracing::info!(user.id = %id, "user registered");
        let row = store::user_by_id(&self.db, &id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::internal("user vanished"))?;
        Ok(User::of(&row, true))
    }

    /// Email-or-username + password → tokens. Unknown users and wrong passwords get the same
    /// answer after the same work. Every attempt is counted before the hash, per account and
    /// address, per account, and per address (OWASP's lockout advice): an address past its
    /// limit keeps only a first attempt per account, so other people's failures from a shared
    /// address never lock out someone's correct password.
    pub async fn login(&self, login: &str, password: String, address: Option<&str>) -> Result<TokenPair, AppError> {
        let login_key = check_login(login)?;
        let address = address.map(address_key).unwrap_or_else(|| "unknown".into());
        // A slot first: a caller turned away with 503 has made no attempt.
        let slot = self.hasher.slot().await?;
        let pair_key = format!("login:pair:{address}:{login_key}");
        let account_key = format!("login:account:{login_key}");
        let address_key = format!("login:address:{address}");
        let (pair, account, from_address) = futures::join!(
            self.throttle.hit(&pair_key),
            self.throttle.hit(&account_key),
            self.throttle.hit(&address_key)
        );
        let over = [
            (pair, pair.attempts > self.limits.failures_per_account_address),
            (account, account.attempts > self.limits.failures_per_account),
            (from_address, from_address.attempts > self.limits.failures_per_address && pair.attempts > 1),
        ];
        if let Some(wait) = over.iter().filter(|(_, over)| *over).map(|(c, _)| c.reset_after).max() {
            return Err(AppError::rate_limited(wait.as_secs().max(1)));
        }
        let user = if login_key.is_empty() {
            None
        } else {
            store::user_by_login(&self.db, &login_key).await.map_err(db_error)?
        };
        let valid = slot.verify(password, user.as_ref().map(|u| u.password_hash.clone())).await?;
        let Some(user) = user.filter(|_| valid) else {
            return Err(AppError::unauthenticated("invalid login or password"));
        };
        futures::join!(self.throttle.reset(&pair_key), self.throttle.reset(&account_key));
        let session_id = Uuid::now_v7().to_string();
        let now = now_ms();
        let expires = now + self.limits.session_lifetime.as_millis() as i64;
        let refresh = tokens::new_refresh_token();
        let txn = self.db.begin().await.map_err(db_error)?;
        store::insert_session(&txn, &session_id, &user.id, now, expires).await.map_err(db_error)?;
        store::insert_refresh(&txn, &tokens::hash_refresh_token(&refresh), &session_id, now, expires)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        tracing::info!(user.id = %user.id, "login");
        Ok(self.token_pair(&user.id, &user.role, &session_id, refresh))
    }

    /// Checks a signed-in user's current password (before a password change or account
    /// deletion), counting the attempt first so a stolen access token cannot be used to guess it.
    async fn check_current_password(
        &self,
        user: &UserRow,
        current: Option<String>,
        action: &str,
    ) -> Result<(), AppError> {
        let Some(current) = current else {
            return Err(AppError::bad_input(format!("the current password is required to {action}"))
                .with_field("current_password", format!("is required to {action}")));
        };
        let slot = self.hasher.slot().await?;
        let key = format!("password:user:{}", user.id);
        let count = self.throttle.hit(&key).await;
        if count.attempts > self.limits.failures_per_account_address {
            return Err(AppError::rate_limited(count.reset_after.as_secs().max(1)));
        }
        if !slot.verify(current, Some(user.password_hash.clone())).await? {
            return Err(AppError::forbidden("current password is wrong").with_field("current_password", "is wrong"));
        }
        self.throttle.reset(&key).await;
        Ok(())
    }

    fn token_pair(&self, user_id: &str, role: &str, session_id: &str, refresh_token: String) -> TokenPair {
        let now = chrono::Utc::now().timestamp();
        let ttl = self.limits.access_ttl.as_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            jti: Uuid::now_v7().to_string(),
            sid: session_id.to_string(),
            role: role.to_string(),
            iat: now,
            exp: now + ttl as i64,
        };
        TokenPair { access_token: self.keys.sign(&claims), refresh_token, token_type: "Bearer", expires_in: ttl }
    }

    /// Rotates a refresh token. Presenting one that was already used revokes its whole family:
    /// someone else holds a copy.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AppError> {
        let refused = || AppError::unauthenticated("invalid refresh token");
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(refused());
        }
        let hash = tokens::hash_refresh_token(refresh_token);
        let now = now_ms();
        let txn = self.db.begin().await.map_err(db_error)?;
        let Some(row) = store::refresh_by_hash(&txn, &hash).await.map_err(db_error)? else {
            return Err(refused());
        };
        if row.session_revoked || row.expires_at_ms <= now || row.session_expires_at_ms <= now {
            return Err(refused());
        }
        if row.used || !store::use_refresh(&txn, &hash, now).await.map_err(db_error)? {
            store::revoke_session(&txn, &row.session_id, now).await.map_err(db_error)?;
            txn.commit().await.map_err(db_error)?;
            self.deny_session(&row.session_id).await;
            tracing::warn!(user.id = %row.user_id, session.id = %row.session_id, "refresh token reused; session revoked");
            return Err(refused());
        }
        let next = tokens::new_refresh_token();
        // The next token ends with its session: rotation never extends a session.
        store::insert_refresh(
            &txn,
            &tokens::hash_refresh_token(&next),
            &row.session_id,
            now,
            row.session_expires_at_ms,
        )
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(self.token_pair(&row.user_id, &row.role, &row.session_id, next))
    }

    /// Checks an access token: signature, expiry, then revocation in the cache's denylist
    /// (a local mirror while it is current, else Redis), or in the database when the cache
    /// is unreachable. A revoked token is never accepted.
    pub async fn verify(&self, token: &str) -> Result<Verified, AppError> {
        let claims = self.keys.verify(token, chrono::Utc::now().timestamp()).map_err(|e| match e {
            TokenError::Expired => AppError::unauthenticated("token expired"),
            _ => AppError::unauthenticated("invalid token"),
        })?;
        let in_cache = self.revoked.contains_any(&[&jti_key(&claims.jti), &sid_key(&claims.sid)]).await;
        let revoked = match in_cache {
            Ok(true) => true,
            Ok(false) if now_ms() >= self.db_check_until_ms.load(Ordering::Relaxed) => false,
            Ok(false) => self.revoked_in_db(&claims).await?,
            Err(e) => {
                tracing::debug!(error = %e, "cache unavailable; checking revocation in the database");
                self.cache_failed();
                self.revoked_in_db(&claims).await?
            }
        };
        if revoked {
            return Err(AppError::unauthenticated("token revoked"));
        }
        Ok(Verified { user_id: claims.sub.clone(), role: claims.role.clone(), claims })
    }

    async fn revoked_in_db(&self, claims: &Claims) -> Result<bool, AppError> {
        store::is_revoked(&self.db, &claims.jti, &claims.sid).await.map_err(AppError::unavailable)
    }

    /// After a cache failure, double-check revocations in the database for as long as an
    /// access token lives.
    fn cache_failed(&self) {
        let until = now_ms() + self.limits.access_ttl.as_millis() as i64 + 60_000;
        self.db_check_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// Revokes the access token now and its session's refresh tokens.
    pub async fn logout(&self, token: &Verified) -> Result<(), AppError> {
        let now = now_ms();
        let txn = self.db.begin().await.map_err(db_error)?;
        store::revoke_jti(&txn, &token.claims.jti, token.claims.exp * 1000).await.map_err(db_error)?;
        store::revoke_session(&txn, &token.claims.sid, now).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        let remaining = Duration::from_millis((token.claims.exp * 1000 - now).max(1000) as u64);
        self.deny_in_cache(jti_key(&token.claims.jti), remaining).await;
        self.deny_in_cache(sid_key(&token.claims.sid), remaining).await;
        tracing::info!(user.id = %token.user_id, "logout");
        Ok(())
    }

    async fn deny_session(&self, session_id: &str) {
        self.deny_in_cache(sid_key(session_id), self.limits.access_ttl + Duration::from_secs(60)).await;
    }

    /// The database already holds the revocation; the cache copy is what every replica checks
    /// first, so a failed write is retried in the background until the token could not be
    /// valid any more.
    async fn deny_in_cache(&self, key: String, ttl: Duration) {
        if self.revoked.add(&key, ttl).await.is_ok() {
            return;
        }
        self.cache_failed();
        let revoked = self.revoked.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + ttl;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let left = deadline - tokio::time::Instant::now();
                if revoked.add(&key, left).await.is_ok() {
                    return;
                }
            }
        });
    }

    pub async fn profile(&self, user_id: &str) -> Result<User, AppError> {
        let row = store::user_by_id(&self.db, user_id).await.map_err(db_error)?;
        row.map(|r| User::of(&r, true)).ok_or_else(|| AppError::not_found("no such user"))
    }

    /// Changes `user_id`'s profile. A password change needs the current password and revokes
    /// every session but `current_session`.
    pub async fn update_profile(
        &self,
        user_id: &str,
        current_session: Option<&str>,
        change: ProfileChange,
    ) -> Result<User, AppError> {
        let row = store::user_by_id(&self.db, user_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("no such user"))?;
        let mut problems = Vec::new();
        let display_name = change
            .display_name
            .as_deref()
            .map(|n| validate::check_display_name(n, &mut problems))
            .unwrap_or_else(|| row.display_name.clone());
        let bio =
            change.bio.as_deref().map(|b| validate::check_bio(b, &mut problems)).unwrap_or_else(|| row.bio.clone());
        let avatar_url = match &change.avatar_url {
            Some(Some(url)) => validate::check_avatar_url(url, &mut problems),
            Some(None) => None,
            None => row.avatar_url.clone(),
        };
        if let Some(new) = &change.new_password {
            validate::check_password("new_password", new, &mut problems);
            if change.current_password.is_none() {
                problems.push(("current_password", "is required to change the password".into()));
            }
        }
        if !problems.is_empty() {
            return Err(invalid(problems, "invalid profile"));
        }
        let new_hash = match &change.new_password {
            Some(new) => {
                self.check_current_password(&row, change.current_password, "change the password").await?;
                Some(self.hasher.hash(new.clone()).await?)
            }
            None => None,
        };
        let now = now_ms();
        let txn = self.db.begin().await.map_err(db_error)?;
        store::update_profile(&txn, &row.id, &display_name, &bio, avatar_url.as_deref(), now)
            .await
            .map_err(db_error)?;
        let mut revoked = Vec::new();
        if let Some(hash) = &new_hash {
            store::update_password(&txn, &row.id, hash, now).await.map_err(db_error)?;
            revoked = store::revoke_sessions_of(&txn, &row.id, current_session, now).await.map_err(db_error)?;
        }
        let event = events::UserUpdated { user_id: row.id.clone() };
        outbox::record(&txn, &envelope("user.updated", &row.id, PRODUCER, event.encode_to_vec()))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        for sid in revoked {
            self.deny_session(&sid).await;
        }
        self.profile(&row.id).await
    }

    /// Deletes the account and everything that lets it act, given the current password;
    /// other services drop their data on `user.deleted`.
    pub async fn delete_account(&self, token: &Verified, current_password: Option<String>) -> Result<(), AppError> {
        let row = store::user_by_id(&self.db, &token.user_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found("no such user"))?;
        self.check_current_password(&row, current_password, "delete the account").await?;
        let now = now_ms();
        let txn = self.db.begin().await.map_err(db_error)?;
        let sessions = store::revoke_sessions_of(&txn, &token.user_id, None, now).await.map_err(db_error)?;
        store::revoke_jti(&txn, &token.claims.jti, token.claims.exp * 1000).await.map_err(db_error)?;
        store::delete_user(&txn, &token.user_id).await.map_err(db_error)?;
        let event = events::UserDeleted { user_id: token.user_id.clone() };
        outbox::record(&txn, &envelope("user.deleted", &token.user_id, PRODUCER, event.encode_to_vec()))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        self.deny_session(&token.claims.sid).await;
        for sid in sessions {
            self.deny_session(&sid).await;
        }
        tracing::info!(user.id = %token.user_id, "account deleted");
        Ok(())
    }

    /// Public details of up to 100 users; unknown or malformed ids are left out.
    pub async fn users(&self, ids: &[String]) -> Result<Vec<PublicUser>, AppError> {
        if ids.len() > 100 {
            return Err(AppError::bad_input("at most 100 ids per request").with_field("ids", "at most 100"));
        }
        let ids: Vec<String> = ids.iter().filter(|i| Uuid::parse_str(i).is_ok()).cloned().collect();
        let rows = store::users_by_ids(&self.db, &ids).await.map_err(db_error)?;
        let mut users: Vec<PublicUser> = rows.iter().map(PublicUser::from).collect();
        users.sort_by_key(|u| ids.iter().position(|i| *i == u.id));
        Ok(users)
    }

    pub async fn user(&self, id: &str) -> Result<Option<PublicUser>, AppError> {
        if Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        Ok(store::user_by_id(&self.db, id).await.map_err(db_error)?.as_ref().map(PublicUser::from))
    }

    /// Removes expired revocation records and sessions (run periodically).
    pub async fn prune(&self) -> Result<(), AppError> {
        store::prune(&self.db, now_ms()).await.map_err(db_error)
    }
}

/// The folded login, or BAD_USER_INPUT when it is longer than any account's could be.
fn check_login(login: &str) -> Result<String, AppError> {
    let too_long = || {
        AppError::bad_input("login too long").with_field("login", format!("must be at most {MAX_LOGIN_LEN} characters"))
    };
    // Folding costs time in the input's length: refuse absurd lengths before it.
    if login.len() > 4 * MAX_LOGIN_LEN {
        return Err(too_long());
    }
    let key = validate::fold(login);
    if key.len() > MAX_LOGIN_LEN {
        return Err(too_long());
    }
    Ok(key)
}

/// The client address as a bounded cache-key part: an IP in its canonical form, anything else
/// (a forged `X-Forwarded-For`) hashed.
fn address_key(address: &str) -> String {
    match address.trim().parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => format!("h{}", &tokens::hash_refresh_token(address)[..32]),
    }
}

fn taken_error(email: bool, username: bool) -> AppError {
    let mut err = AppError::conflict("email or username already taken");
    if email {
        err = err.with_field("email", "is already taken");
    }
    if username {
        err = err.with_field("username", "is already taken");
    }
    err
}
