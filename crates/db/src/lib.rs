//! The relational store port: sea-orm on an embedded SQLite file (default) or PostgreSQL.
//!
//! Each service owns its data: on SQLite it gets its own file, on PostgreSQL its own schema
//! (or its own database when the URL contains `{service}`). Migrations are plain SQL per
//! backend, versioned per component and applied once, under a lock on PostgreSQL.

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr, Statement, TransactionTrait,
};
use std::path::Path;
use std::time::Duration;

pub use sea_orm;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database url {0:?}: use sqlite:// or postgres://")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("migration {component}/{version} ({name}) failed: {source}")]
    Migration { component: String, version: i64, name: String, source: DbErr },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// One schema change, written once for each backend.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Migrations of one component (a service, or a shared table set such as the outbox).
#[derive(Debug, Clone, Copy)]
pub struct MigrationSet {
    pub component: &'static str,
    pub migrations: &'static [Migration],
}

/// Resolves the URL a service connects to. `None` means a SQLite file under `data_dir`.
pub fn service_url(url: Option<&str>, data_dir: &Path, service: &str) -> Result<String, DbError> {
    match url {
        None => {
            let path = data_dir.join("db").join(format!("{service}.sqlite"));
            Ok(format!("sqlite://{}?mode=rwc", path.display()))
        }
        Some(u) if u.starts_with("sqlite:") => {
            if !u.contains("{service}") && !u.contains(":memory:") {
                // One file per service: a shared file would mix services' tables.
                return Err(DbError::UnsupportedUrl(format!("{u} (a sqlite url must contain {{service}})")));
            }
            Ok(u.replace("{service}", service))
        }
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(u.replace("{service}", service))
        }
        Some(u) => Err(DbError::UnsupportedUrl(u.to_string())),
    }
}

/// Opens a pool for `service`. On PostgreSQL the connection's search path is the service's
/// schema, created if missing; on SQLite the file and its directory are created.
pub async fn connect(url: &str, service: &str, max_connections: u32) -> Result<DatabaseConnection, DbError> {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(max_connections)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_path(url)
            && let Some(dir) = Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|source| DbError::CreateDir { path: dir.display().to_string(), source })?;
        }
        // SQLite has one writer: with several pooled connections, concurrent transactions fail
        // with SQLITE_BUSY(_SNAPSHOT) instead of queueing. One connection per service makes
        // every statement wait its turn; WAL, the busy timeout and foreign keys are set on it.
        let autocheckpoint = if sqlite_path(url).is_some() { "0" } else { "1000" };
        options.max_connections(1).min_connections(1).map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                // Checkpoints fsync (12-32 ms measured here); on the one connection every
                // statement queued behind them waited. `checkpoint_wal` runs them beside it.
                .pragma("wal_autocheckpoint", autocheckpoint)
        });
        let mut conn = Database::connect(options).await?;
        count_queries(&mut conn, service);
        if sqlite_path(url).is_some() {
            checkpoint_wal(url, service).await?;
        }
        return Ok(conn);
    }
    // Create the schema first (search_path must name an existing one), under the migration
    // lock: `IF NOT EXISTS` races between replicas starting together.
    let bootstrap = Database::connect(ConnectOptions::new(url.to_string()).sqlx_logging(false).to_owned()).await?;
    let txn = bootstrap.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
    txn.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{service}\"")).await?;
    txn.commit().await?;
    bootstrap.close().await?;
    options.set_schema_search_path(format!("\"{service}\",public"));
    let mut conn = Database::connect(options).await?;
    count_queries(&mut conn, service);
    Ok(conn)
}

/// `db_queries_total{service}` and `db_query_duration_seconds{service}`: how many statements a
/// request costs is visible in production, and tests can catch N+1 patterns with it.
fn count_queries(conn: &mut DatabaseConnection, service: &str) {
    let service = service.to_string();
    conn.set_metric_callback(move |info| {
        metrics::counter!("db_queries_total", "service" => service.clone()).increment(1);
        metrics::histogram!("db_query_duration_seconds", "service" => service.clone())
            .record(info.elapsed.as_secs_f64());
    });
}

/// How often the WAL is copied back into the database file, off the writer's connection.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints a SQLite file's WAL every [`CHECKPOINT_EVERY`] from a second connection, so the
/// writer never waits for the fsyncs (a PASSIVE checkpoint takes no write lock). The writer's
/// auto-checkpoint is off, so this task is what keeps the WAL from growing; it lives as long
/// as the runtime (a server's lifetime; one test's).
async fn checkpoint_wal(url: &str, service: &str) -> Result<(), DbError> {
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _, sqlite::SqliteConnectOptions};
    use std::str::FromStr as _;
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string())))?
        .busy_timeout(Duration::from_secs(5))
        .disable_statement_logging();
    let mut conn = options.connect().await.map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string())))?;
    let service = service.to_string();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
                tracing::warn!(service = %service, error = %e, "WAL checkpoint failed; retried in a second");
                if conn.ping().await.is_err() {
                    match options.connect().await {
                        Ok(c) => conn = c,
                        Err(e) => tracing::warn!(service = %service, error = %e, "WAL checkpoint connection lost"),
                    }
                }
            }
        }
    });
    Ok(())
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Advisory lock key serialising schema changes across replicas on PostgreSQL.
const MIGRATION_LOCK: i64 = 7461636;

/// Applies the pending migrations of each set, in order; returns what was applied.
pub async fn migrate(db: &DatabaseConnection, sets: &[MigrationSet]) -> Result<Vec<String>, DbError> {
    let backend = db.get_database_backend();
    // `IF NOT EXISTS` is not safe against concurrent creators: take the lock first.
    let txn = db.begin().await?;
    if backend == DatabaseBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
    }
    txn.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS flick_migrations (
            component TEXT NOT NULL,
            version BIGINT NOT NULL,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL,
            PRIMARY KEY (component, version))",
    )
    .await?;
    txn.commit().await?;
    let mut applied = Vec::new();
    for set in sets {
        for m in set.migrations {
            let txn = db.begin().await?;
            if backend == DatabaseBackend::Postgres {
                // Replicas starting together: one migrates, the others wait and then skip.
                txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
            }
            let done = txn
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    placeholders(backend, "SELECT 1 FROM flick_migrations WHERE component = ? AND version = ?"),
                    [set.component.into(), m.version.into()],
                ))
                .await?
                .is_some();
            if done {
                txn.commit().await?;
                continue;
            }
            let sql = match backend {
                DatabaseBackend::Postgres => m.postgres,
                _ => m.sqlite,
            };
            let wrap = |source| DbError::Migration {
                component: set.component.into(),
                version: m.version,
                name: m.name.into(),
                source,
            };
            txn.execute_unprepared(sql).await.map_err(wrap)?;
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                placeholders(
                    backend,
                    "INSERT INTO flick_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)",
                ),
                [set.component.into(), m.version.into(), m.name.into(), chrono::Utc::now().to_rfc3339().into()],
            ))
            .await
            .map_err(wrap)?;
            txn.commit().await?;
            tracing::info!(component = set.component, version = m.version, name = m.name, "migration applied");
            applied.push(format!("{}/{:04}_{}", set.component, m.version, m.name));
        }
    }
    Ok(applied)
}

/// A raw statement with `?` placeholders, for whichever backend `c` is.
pub fn stmt<C: ConnectionTrait>(c: &C, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let backend = c.get_database_backend();
    Statement::from_sql_and_values(backend, placeholders(backend, sql), values)
}

/// Runs a raw statement with `?` placeholders; returns the rows it affected.
pub async fn exec<C: ConnectionTrait>(c: &C, sql: &str, values: Vec<sea_orm::Value>) -> Result<u64, DbErr> {
    Ok(c.execute_raw(stmt(c, sql, values)).await?.rows_affected())
}

/// Rewrites `?` placeholders to `$1, $2, …` for PostgreSQL.
pub fn placeholders(backend: DatabaseBackend, sql: &str) -> String {
    if backend != DatabaseBackend::Postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Readiness: a round trip to the database.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.ping().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_is_one_sqlite_file_per_service() {
        let url = service_url(None, Path::new("/srv/flick"), "media").unwrap();
        assert_eq!(url, "sqlite:///srv/flick/db/media.sqlite?mode=rwc");
    }

    #[test]
    fn sqlite_urls_must_separate_services() {
        assert!(service_url(Some("sqlite://x.db"), Path::new("."), "media").is_err());
        assert_eq!(
            service_url(Some("sqlite://d/{service}.db?mode=rwc"), Path::new("."), "media").unwrap(),
            "sqlite://d/media.db?mode=rwc"
        );
        assert!(service_url(Some("mysql://x"), Path::new("."), "media").is_err());
    }

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(placeholders(DatabaseBackend::Postgres, "a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(placeholders(DatabaseBackend::Sqlite, "a = ?"), "a = ?");
    }
}
