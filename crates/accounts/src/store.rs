//! Accounts' tables and the SQL that reads and writes them (same SQL on SQLite and
//! PostgreSQL, `?` placeholders rewritten per backend).

use flick_platform::db::sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, QueryResult, Value};
use flick_platform::db::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: "accounts",
    migrations: &[Migration { version: 1, name: "users_sessions_tokens", sqlite: SCHEMA, postgres: SCHEMA }],
};

const SCHEMA: &str = "
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    bio TEXT NOT NULL DEFAULT '',
    avatar_url TEXT,
    role TEXT NOT NULL DEFAULT 'user',
    password_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL
);
";

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub username: String,
    pub display_name: String,
    pub bio: String,
    pub avatar_url: Option<String>,
    pub role: String,
    pub password_hash: String,
    pub created_at_ms: i64,
}

const USER_COLUMNS: &str = "id, email, username, display_name, bio, avatar_url, role, password_hash, created_at_ms";

impl UserRow {
    fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        Ok(Self {
            id: row.try_get("", "id")?,
            email: row.try_get("", "email")?,
            username: row.try_get("", "username")?,
            display_name: row.try_get("", "display_name")?,
            bio: row.try_get("", "bio")?,
            avatar_url: row.try_get("", "avatar_url")?,
            role: row.try_get("", "role")?,
            password_hash: row.try_get("", "password_hash")?,
            created_at_ms: row.try_get("", "created_at_ms")?,
        })
    }
}

use flick_platform::db::{exec, stmt};

async fn one_user<C: ConnectionTrait>(c: &C, filter: &str, value: Value) -> Result<Option<UserRow>, DbErr> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {filter} = ?");
    c.query_one_raw(stmt(c, &sql, vec![value])).await?.map(|r| UserRow::from_row(&r)).transpose()
}

pub async fn user_by_id<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<UserRow>, DbErr> {
    one_user(c, "id", id.into()).await
}

/// By folded email or username (a login accepts either).
pub async fn user_by_login<C: ConnectionTrait>(c: &C, key: &str) -> Result<Option<UserRow>, DbErr> {
    let field = if key.contains('@') { "email_key" } else { "username" };
    one_user(c, field, key.into()).await
}

pub async fn users_by_ids<C: ConnectionTrait>(c: &C, ids: &[String]) -> Result<Vec<UserRow>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id IN ({marks})");
    let rows = c.query_all_raw(stmt(c, &sql, ids.iter().map(|i| i.clone().into()).collect())).await?;
    rows.iter().map(UserRow::from_row).collect()
}

/// Which of `email_key`/`username` are taken already.
pub async fn taken<C: ConnectionTrait>(c: &C, email_key: &str, username: &str) -> Result<(bool, bool), DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT (SELECT COUNT(*) FROM users WHERE email_key = ?) AS e, (SELECT COUNT(*) FROM users WHERE username = ?) AS u",
            vec![email_key.into(), username.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?;
    Ok((row.try_get::<i64>("", "e")? > 0, row.try_get::<i64>("", "u")? > 0))
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub email_key: &'a str,
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub now_ms: i64,
}

pub async fn insert_user<C: ConnectionTrait>(c: &C, u: NewUser<'_>) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO users (id, email, email_key, username, display_name, password_hash, created_at_ms, updated_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            u.id.into(),
            u.email.into(),
            u.email_key.into(),
            u.username.into(),
            u.display_name.into(),
            u.password_hash.into(),
            u.now_ms.into(),
            u.now_ms.into(),
        ],
    )
    .await?;
    Ok(())
}

pub async fn update_profile<C: ConnectionTrait>(
    c: &C,
    id: &str,
    display_name: &str,
    bio: &str,
    avatar_url: Option<&str>,
    now_ms: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE users SET display_name = ?, bio = ?, avatar_url = ?, updated_at_ms = ? WHERE id = ?",
        vec![display_name.into(), bio.into(), avatar_url.map(str::to_owned).into(), now_ms.into(), id.into()],
    )
    .await?;
    Ok(())
}

pub async fn update_password<C: ConnectionTrait>(c: &C, id: &str, hash: &str, now_ms: i64) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE users SET password_hash = ?, updated_at_ms = ? WHERE id = ?",
        vec![hash.into(), now_ms.into(), id.into()],
    )
    .await?;
    Ok(())
}

pub async fn delete_user<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    // Children first: SQLite enforces the cascade only with foreign keys on, so be explicit.
    exec(
        c,
        "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?)",
        vec![id.into()],
    )
    .await?;
    exec(c, "DELETE FROM sessions WHERE user_id = ?", vec![id.into()]).await?;
    exec(c, "DELETE FROM users WHERE id = ?", vec![id.into()]).await?;
    Ok(())
}

pub async fn insert_session<C: ConnectionTrait>(
    c: &C,
    id: &str,
    user_id: &str,
    now_ms: i64,
    expires_ms: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO sessions (id, user_id, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?)",
        vec![id.into(), user_id.into(), now_ms.into(), expires_ms.into()],
    )
    .await?;
    Ok(())
}

pub async fn insert_refresh<C: ConnectionTrait>(
    c: &C,
    hash: &str,
    session_id: &str,
    now_ms: i64,
    expires_ms: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at_ms, expires_at_ms) VALUES (?, ?, ?, ?)",
        vec![hash.into(), session_id.into(), now_ms.into(), expires_ms.into()],
    )
    .await?;
    Ok(())
}

#[derive(Debug)]
pub struct RefreshRow {
    pub session_id: String,
    pub user_id: String,
    pub role: String,
    pub expires_at_ms: i64,
    pub used: bool,
    pub session_revoked: bool,
    pub session_expires_at_ms: i64,
}

pub async fn refresh_by_hash<C: ConnectionTrait>(c: &C, hash: &str) -> Result<Option<RefreshRow>, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT r.session_id, s.user_id, u.role, r.expires_at_ms, r.used_at_ms, s.revoked_at_ms, \
                    s.expires_at_ms AS session_expires_at_ms \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id \
             WHERE r.token_hash = ?",
            vec![hash.into()],
        ))
        .await?;
    row.map(|r| {
        Ok(RefreshRow {
            session_id: r.try_get("", "session_id")?,
            user_id: r.try_get("", "user_id")?,
            role: r.try_get("", "role")?,
            expires_at_ms: r.try_get("", "expires_at_ms")?,
            used: r.try_get::<Option<i64>>("", "used_at_ms")?.is_some(),
            session_revoked: r.try_get::<Option<i64>>("", "revoked_at_ms")?.is_some(),
            session_expires_at_ms: r.try_get("", "session_expires_at_ms")?,
        })
    })
    .transpose()
}

/// Marks a refresh token used; false if another request used it first.
pub async fn use_refresh<C: ConnectionTrait>(c: &C, hash: &str, now_ms: i64) -> Result<bool, DbErr> {
    Ok(exec(
        c,
        "UPDATE refresh_tokens SET used_at_ms = ? WHERE token_hash = ? AND used_at_ms IS NULL",
        vec![now_ms.into(), hash.into()],
    )
    .await?
        == 1)
}

pub async fn revoke_session<C: ConnectionTrait>(c: &C, session_id: &str, now_ms: i64) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE sessions SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL",
        vec![now_ms.into(), session_id.into()],
    )
    .await?;
    Ok(())
}

/// Revokes every live session of `user_id` except `keep`; returns the revoked ids.
pub async fn revoke_sessions_of<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    keep: Option<&str>,
    now_ms: i64,
) -> Result<Vec<String>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            "SELECT id FROM sessions WHERE user_id = ? AND revoked_at_ms IS NULL AND expires_at_ms > ?",
            vec![user_id.into(), now_ms.into()],
        ))
        .await?;
    let mut revoked = Vec::new();
    for row in rows {
        let id: String = row.try_get("", "id")?;
        if Some(id.as_str()) != keep {
            revoke_session(c, &id, now_ms).await?;
            revoked.push(id);
        }
    }
    Ok(revoked)
}

pub async fn revoke_jti<C: ConnectionTrait>(c: &C, jti: &str, expires_ms: i64) -> Result<(), DbErr> {
    let sql = match c.get_database_backend() {
        DatabaseBackend::Postgres => {
            "INSERT INTO revoked_tokens (jti, expires_at_ms) VALUES (?, ?) ON CONFLICT DO NOTHING"
        }
        _ => "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at_ms) VALUES (?, ?)",
    };
    exec(c, sql, vec![jti.into(), expires_ms.into()]).await?;
    Ok(())
}

/// The database's answer to "is this token revoked?": its jti is denied, or its session is
/// revoked or gone (the account was deleted).
pub async fn is_revoked<C: ConnectionTrait>(c: &C, jti: &str, session_id: &str) -> Result<bool, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT (SELECT COUNT(*) FROM revoked_tokens WHERE jti = ?) AS denied, \
                    (SELECT COUNT(*) FROM sessions WHERE id = ? AND revoked_at_ms IS NULL) AS live",
            vec![jti.into(), session_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?;
    Ok(row.try_get::<i64>("", "denied")? > 0 || row.try_get::<i64>("", "live")? == 0)
}

/// Drops records nobody needs any more (expired denials, sessions and refresh tokens).
pub async fn prune<C: ConnectionTrait>(c: &C, now_ms: i64) -> Result<(), DbErr> {
    exec(c, "DELETE FROM revoked_tokens WHERE expires_at_ms < ?", vec![now_ms.into()]).await?;
    exec(c, "DELETE FROM refresh_tokens WHERE expires_at_ms < ?", vec![now_ms.into()]).await?;
    exec(c, "DELETE FROM sessions WHERE expires_at_ms < ?", vec![now_ms.into()]).await?;
    Ok(())
}
