//! Accounts' domain logic, written once and called by REST, gRPC and GraphQL.

use crate::store::{self, NewUser, UserRow};
use crate::tokens::{self, Claims, Keyring, TokenError};
use crate::validate::{self, FieldProblems};
use flick_kit::AppError;
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
/// A session (refresh-token family) lives at most this long without logging in again.
const SESSION_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct Limits {
    pub access_ttl: Duration,
    pub failures_per_account: u64,
    pub failures_per_address: u64,
    pub failure_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(900),
            failures_per_account: 5,
            failures_per_address: 30,
            failure_window: Duration::from_secs(900),
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
    cache: Cache,
    /// Revoked access tokens (`jti:…`) and sessions (`sid:…`), mirrored in this replica so
    /// verification needs no round trip.
    revoked: Denylist,
    relay: Relay,
    keys: Arc<Keyring>,
    limits: Limits,
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

fn jti_key(jti: &str) -> String {
    format!("jti:{jti}")
}
fn sid_key(sid: &str) -> String {
    format!("sid:{sid}")
}

impl Accounts {
    pub fn new(db: DatabaseConnection, cache: Cache, relay: Relay, keys: Arc<Keyring>, limits: Limits) -> Self {
        let revoked = cache.denylist("accounts:revoked");
        Self { db, cache, revoked, relay, keys, limits, db_check_until_ms: Arc::new(AtomicI64::new(0)) }
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
        let hash = crate::password::hash(r.password).await.map_err(AppError::internal)?;
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
    /// answer after the same work; repeated failures per account or address are throttled.
    pub async fn login(&self, login: &str, password: String, address: Option<&str>) -> Result<TokenPair, AppError> {
        let login_key = validate::fold(login);
        let account_key = format!("login:account:{login_key}");
        let address_key = address.map(|a| format!("login:address:{a}"));
        self.check_throttle(&account_key, self.limits.failures_per_account).await?;
        if let Some(k) = &address_key {
            self.check_throttle(k, self.limits.failures_per_address).await?;
        }
        let user = if login_key.is_empty() || login_key.len() > 254 {
            None
        } else {
            store::user_by_login(&self.db, &login_key).await.map_err(db_error)?
        };
        let valid = crate::password::verify(password, user.as_ref().map(|u| u.password_hash.clone())).await;
        let Some(user) = user.filter(|_| valid) else {
            self.count_failure(&account_key).await;
            if let Some(k) = &address_key {
                self.count_failure(k).await;
            }
            return Err(AppError::unauthenticated("invalid login or password"));
        };
        if let Err(e) = self.cache.rate_reset(&account_key).await {
            tracing::warn!(error = %e, "cannot reset the login failure count");
        }
        let session_id = Uuid::now_v7().to_string();
        let now = now_ms();
        let refresh = tokens::new_refresh_token();
        let txn = self.db.begin().await.map_err(db_error)?;
        store::insert_session(&txn, &session_id, &user.id, now, now + SESSION_LIFETIME_MS).await.map_err(db_error)?;
        store::insert_refresh(&txn, &tokens::hash_refresh_token(&refresh), &session_id, now, now + SESSION_LIFETIME_MS)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        tracing::info!(user.id = %user.id, "login");
        Ok(self.token_pair(&user.id, &user.role, &session_id, refresh))
    }

    async fn check_throttle(&self, key: &str, limit: u64) -> Result<(), AppError> {
        match self.cache.rate_count(key).await {
            Ok((count, reset)) if count >= limit => Err(AppError::rate_limited(reset.as_secs().max(1))),
            Ok(_) => Ok(()),
            // Without the cache, logins still work; throttling resumes when it returns.
            Err(e) => {
                tracing::warn!(error = %e, "login throttling unavailable");
                Ok(())
            }
        }
    }

    async fn count_failure(&self, key: &str) {
        if let Err(e) = self.cache.rate_limit(key, u64::MAX, self.limits.failure_window).await {
            tracing::warn!(error = %e, "cannot count a login failure");
        }
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
        if row.session_revoked || row.expires_at_ms <= now {
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
        store::insert_refresh(
            &txn,
            &tokens::hash_refresh_token(&next),
            &row.session_id,
            now,
            now + SESSION_LIFETIME_MS,
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
        let new_hash = match (&change.new_password, change.current_password) {
            (Some(new), Some(current)) => {
                if !crate::password::verify(current, Some(row.password_hash.clone())).await {
                    return Err(
                        AppError::forbidden("current password is wrong").with_field("current_password", "is wrong")
                    );
                }
                Some(crate::password::hash(new.clone()).await.map_err(AppError::internal)?)
            }
            _ => None,
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

    /// Deletes the account and everything that lets it act; other services drop their data
    /// on `user.deleted`.
    pub async fn delete_account(&self, token: &Verified) -> Result<(), AppError> {
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
