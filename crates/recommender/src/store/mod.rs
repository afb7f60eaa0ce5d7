//! The recommender's tables and SQL. Vectors live in pgvector (`vector(384)`, HNSW on cosine
//! distance) on PostgreSQL, and as little-endian `f32` blobs searched exactly in Rust on
//! SQLite; the functions here hide the difference. Its modules, re-exported here:
//!
//! - `videos`: the index of videos, embedded or waiting to be (`video_embeddings`,
//!   `pending_embeddings`, `video_removals`);
//! - `search`: the indexed videos nearest to a vector, and the popular ones;
//! - `interest`: users' likes, views and preference vectors;
//! - `vectors`: a vector's forms on each backend; `schema`: the tables.

mod interest;
mod schema;
mod search;
mod vectors;
mod videos;

use flick_platform::db::sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Value};
use flick_platform::db::{Migration, MigrationSet, stmt};

pub use interest::{
    forget_user, forget_video_interest, interested_users, like, liked_embeddings, preference, set_preference, unlike,
    view, viewed_embeddings,
};
pub use search::{Filter, nearest, popular};
pub use vectors::{dot, normalised, vector_blob, vector_text};
pub use videos::{
    embedded_text, embedding_of, indexed_count, known_version, lock_video, pending, pending_count, published_at, queue,
    remove, store_embedding, touch, videos_of,
};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: "recommender",
    migrations: &[
        Migration {
            version: 1,
            name: "embeddings_likes_preferences",
            sqlite: schema::SQLITE,
            postgres: schema::POSTGRES,
        },
        Migration { version: 2, name: "user_views", sqlite: schema::USER_VIEWS, postgres: schema::USER_VIEWS },
        Migration { version: 3, name: "user_unlikes", sqlite: schema::USER_UNLIKES, postgres: schema::USER_UNLIKES },
    ],
};

/// HNSW build parameters (the bench prints them with the recall they reach; the index in
/// [`schema`] is built with them).
pub const HNSW_M: u32 = 16;
pub const HNSW_EF_CONSTRUCTION: u32 = 128;
/// Candidates the HNSW search keeps per query (pgvector's default is 40).
pub const HNSW_EF_SEARCH: u32 = 100;

// Statements the modules share.

fn is_pg<C: ConnectionTrait>(c: &C) -> bool {
    c.get_database_backend() == DatabaseBackend::Postgres
}

async fn strings<C: ConnectionTrait>(c: &C, sql: &str, values: Vec<Value>, column: &str) -> Result<Vec<String>, DbErr> {
    c.query_all_raw(stmt(c, sql, values)).await?.iter().map(|r| r.try_get("", column)).collect()
}

async fn one_i64<C: ConnectionTrait>(c: &C, sql: &str, values: Vec<Value>) -> Result<Option<i64>, DbErr> {
    match c.query_one_raw(stmt(c, sql, values)).await? {
        Some(r) => Ok(r.try_get::<Option<i64>>("", "n")?),
        None => Ok(None),
    }
}

fn insert_or_ignore<C: ConnectionTrait>(c: &C, rest: &str) -> String {
    if is_pg(c) {
        format!("INSERT INTO {rest} ON CONFLICT DO NOTHING")
    } else {
        format!("INSERT OR IGNORE INTO {rest}")
    }
}
