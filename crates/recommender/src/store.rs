//! The recommender's tables and SQL. Vectors live in pgvector (`vector(384)`, HNSW on cosine
//! distance) on PostgreSQL, and as little-endian `f32` blobs searched exactly in Rust on
//! SQLite; the functions here hide the difference.

use crate::model::DIMENSIONS;
use flick_platform::db::sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, QueryResult, TransactionTrait, Value,
};
use flick_platform::db::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: "recommender",
    migrations: &[
        Migration { version: 1, name: "embeddings_likes_preferences", sqlite: SQLITE, postgres: POSTGRES },
        Migration { version: 2, name: "user_views", sqlite: USER_VIEWS, postgres: USER_VIEWS },
    ],
};

/// HNSW build parameters (the bench prints them with the recall they reach).
pub const HNSW_M: u32 = 16;
pub const HNSW_EF_CONSTRUCTION: u32 = 128;
/// Candidates the HNSW search keeps per query (pgvector's default is 40).
pub const HNSW_EF_SEARCH: u32 = 100;

/// The schema of both backends; they differ only in the vector column's type and the HNSW
/// index (PostgreSQL's pgvector).
macro_rules! schema {
    ($prelude:literal, $vector:literal, $vector_index:literal) => {
        concat!(
            $prelude,
            "
CREATE TABLE video_embeddings (
    video_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    embedding ",
            $vector,
            " NOT NULL,
    text TEXT NOT NULL,
    published_at_ms BIGINT NOT NULL,
    like_count BIGINT NOT NULL DEFAULT 0,
    event_ms BIGINT NOT NULL,
    embedded_at_ms BIGINT NOT NULL
);
",
            $vector_index,
            "
CREATE INDEX video_embeddings_owner ON video_embeddings (owner_id);
CREATE INDEX video_embeddings_popular ON video_embeddings (like_count DESC, published_at_ms DESC, video_id DESC);
CREATE TABLE pending_embeddings (
    video_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    text TEXT NOT NULL,
    published_at_ms BIGINT NOT NULL,
    event_ms BIGINT NOT NULL,
    queued_at_ms BIGINT NOT NULL
);
CREATE INDEX pending_embeddings_queued ON pending_embeddings (queued_at_ms, video_id);
CREATE TABLE video_removals (
    video_id TEXT PRIMARY KEY,
    event_ms BIGINT NOT NULL
);
CREATE TABLE user_likes (
    user_id TEXT NOT NULL,
    video_id TEXT NOT NULL,
    liked_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX user_likes_video ON user_likes (video_id);
CREATE INDEX user_likes_recent ON user_likes (user_id, liked_at_ms DESC);
CREATE TABLE user_preferences (
    user_id TEXT PRIMARY KEY,
    embedding ",
            $vector,
            " NOT NULL,
    likes BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
"
        )
    };
}

const POSTGRES: &str = schema!(
    "CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;",
    "vector(384)",
    "CREATE INDEX video_embeddings_hnsw ON video_embeddings
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128);"
);

const SQLITE: &str = schema!("", "BLOB", "");

/// Signed-in viewers' playback starts (`video.viewed`), the latest per video.
const USER_VIEWS: &str = "
CREATE TABLE user_views (
    user_id TEXT NOT NULL,
    video_id TEXT NOT NULL,
    viewed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX user_views_video ON user_views (video_id);
CREATE INDEX user_views_recent ON user_views (user_id, viewed_at_ms DESC);
";

// ---------- vectors ----------

/// pgvector's text form, `[0.1,-0.2,...]` (shortest round-trip decimals).
pub fn vector_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 11 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

fn parse_vector_text(s: &str) -> Result<Vec<f32>, DbErr> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(|x| x.trim().parse::<f32>().map_err(|e| DbErr::Custom(format!("bad vector text: {e}"))))
        .collect()
}

pub fn vector_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn parse_vector_blob(b: &[u8]) -> Result<Vec<f32>, DbErr> {
    if b.len() != DIMENSIONS * 4 {
        return Err(DbErr::Custom(format!("vector blob of {} bytes, expected {}", b.len(), DIMENSIONS * 4)));
    }
    Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn is_pg<C: ConnectionTrait>(c: &C) -> bool {
    c.get_database_backend() == DatabaseBackend::Postgres
}

/// A vector as a statement parameter; the SQL text wraps it with [`vector_param`].
fn vector_value<C: ConnectionTrait>(c: &C, v: &[f32]) -> Value {
    if is_pg(c) { vector_text(v).into() } else { vector_blob(v).into() }
}

fn vector_param<C: ConnectionTrait>(c: &C) -> &'static str {
    if is_pg(c) { "CAST(? AS vector)" } else { "?" }
}

/// The `embedding` column as something [`read_vector`] decodes.
fn vector_column<C: ConnectionTrait>(c: &C, table_alias: &str) -> String {
    if is_pg(c) {
        format!("CAST({table_alias}embedding AS text) AS embedding")
    } else {
        format!("{table_alias}embedding AS embedding")
    }
}

fn read_vector<C: ConnectionTrait>(c: &C, r: &QueryResult) -> Result<Vec<f32>, DbErr> {
    if is_pg(c) {
        parse_vector_text(&r.try_get::<String>("", "embedding")?)
    } else {
        parse_vector_blob(&r.try_get::<Vec<u8>>("", "embedding")?)
    }
}

/// Cosine similarity of unit vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `v` scaled to unit length (unchanged when it is zero).
pub fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

// ---------- statements ----------

use flick_platform::db::{exec, stmt};

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

// ---------- the index of videos ----------

/// A public, ready video waiting to be embedded, or embedded.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoText {
    pub video_id: String,
    pub owner_id: String,
    pub text: String,
    pub published_at_ms: i64,
    /// When the change it reflects happened (the event's time): older changes never
    /// overwrite newer ones, whatever order the events arrive in.
    pub event_ms: i64,
}

/// Serialises the transactions that change one video's rows (the consumer's and the
/// embedding task's) on PostgreSQL, so neither acts on a snapshot the other is about to
/// change; SQLite has one writer anyway. Callers lock several videos in id order.
pub async fn lock_video<C: ConnectionTrait>(c: &C, video_id: &str) -> Result<(), DbErr> {
    if is_pg(c) {
        exec(c, "SELECT pg_advisory_xact_lock(7461637, hashtext(?))", vec![video_id.into()]).await?;
    }
    Ok(())
}

/// The newest change time known for `video_id`: embedded, waiting or removed.
pub async fn known_version<C: ConnectionTrait>(c: &C, video_id: &str) -> Result<Option<i64>, DbErr> {
    one_i64(
        c,
        "SELECT MAX(event_ms) AS n FROM (
            SELECT event_ms FROM video_embeddings WHERE video_id = ?
            UNION ALL SELECT event_ms FROM pending_embeddings WHERE video_id = ?
            UNION ALL SELECT event_ms FROM video_removals WHERE video_id = ?) versions",
        vec![video_id.into(), video_id.into(), video_id.into()],
    )
    .await
}

/// When `video_id` was first seen public (embedded or queued).
pub async fn published_at<C: ConnectionTrait>(c: &C, video_id: &str) -> Result<Option<i64>, DbErr> {
    one_i64(
        c,
        "SELECT MIN(published_at_ms) AS n FROM (
            SELECT published_at_ms FROM video_embeddings WHERE video_id = ?
            UNION ALL SELECT published_at_ms FROM pending_embeddings WHERE video_id = ?) seen",
        vec![video_id.into(), video_id.into()],
    )
    .await
}

/// The text embedded for `video_id`, if it is embedded.
pub async fn embedded_text<C: ConnectionTrait>(c: &C, video_id: &str) -> Result<Option<String>, DbErr> {
    Ok(strings(c, "SELECT text FROM video_embeddings WHERE video_id = ?", vec![video_id.into()], "text").await?.pop())
}

/// Queues `v` for embedding (replacing what was queued for the video).
pub async fn queue<C: ConnectionTrait>(c: &C, v: &VideoText, now_ms: i64) -> Result<(), DbErr> {
    exec(c, "DELETE FROM pending_embeddings WHERE video_id = ?", vec![v.video_id.clone().into()]).await?;
    exec(
        c,
        "INSERT INTO pending_embeddings (video_id, owner_id, text, published_at_ms, event_ms, queued_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            v.video_id.clone().into(),
            v.owner_id.clone().into(),
            v.text.clone().into(),
            v.published_at_ms.into(),
            v.event_ms.into(),
            now_ms.into(),
        ],
    )
    .await?;
    exec(c, "DELETE FROM video_removals WHERE video_id = ?", vec![v.video_id.clone().into()]).await?;
    Ok(())
}

/// A change that keeps the embedded text (visibility or category edits): only the owner and
/// version move.
pub async fn touch<C: ConnectionTrait>(c: &C, v: &VideoText) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE video_embeddings SET owner_id = ?, event_ms = ? WHERE video_id = ?",
        vec![v.owner_id.clone().into(), v.event_ms.into(), v.video_id.clone().into()],
    )
    .await?;
    exec(c, "DELETE FROM pending_embeddings WHERE video_id = ?", vec![v.video_id.clone().into()]).await?;
    Ok(())
}

/// The oldest `limit` videos waiting to be embedded.
pub async fn pending<C: ConnectionTrait>(c: &C, limit: u64) -> Result<Vec<VideoText>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            c,
            &format!(
                "SELECT video_id, owner_id, text, published_at_ms, event_ms FROM pending_embeddings \
                 ORDER BY queued_at_ms, video_id LIMIT {limit}"
            ),
            vec![],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(VideoText {
                video_id: r.try_get("", "video_id")?,
                owner_id: r.try_get("", "owner_id")?,
                text: r.try_get("", "text")?,
                published_at_ms: r.try_get("", "published_at_ms")?,
                event_ms: r.try_get("", "event_ms")?,
            })
        })
        .collect()
}

pub async fn pending_count<C: ConnectionTrait>(c: &C) -> Result<i64, DbErr> {
    Ok(one_i64(c, "SELECT COUNT(*) AS n FROM pending_embeddings", vec![]).await?.unwrap_or(0))
}

/// Stores the embedding of a queued video, unless a newer change replaced or removed it
/// meanwhile; returns whether it was stored.
pub async fn store_embedding<C: ConnectionTrait>(
    c: &C,
    v: &VideoText,
    embedding: &[f32],
    now_ms: i64,
) -> Result<bool, DbErr> {
    lock_video(c, &v.video_id).await?;
    let taken = exec(
        c,
        "DELETE FROM pending_embeddings WHERE video_id = ? AND event_ms = ?",
        vec![v.video_id.clone().into(), v.event_ms.into()],
    )
    .await?;
    if taken == 0 {
        return Ok(false);
    }
    exec(c, "DELETE FROM video_embeddings WHERE video_id = ?", vec![v.video_id.clone().into()]).await?;
    let sql = format!(
        "INSERT INTO video_embeddings (video_id, owner_id, embedding, text, published_at_ms, like_count, event_ms, embedded_at_ms) \
         VALUES (?, ?, {}, ?, ?, (SELECT COUNT(*) FROM user_likes WHERE video_id = ?), ?, ?)",
        vector_param(c)
    );
    exec(
        c,
        &sql,
        vec![
            v.video_id.clone().into(),
            v.owner_id.clone().into(),
            vector_value(c, embedding),
            v.text.clone().into(),
            v.published_at_ms.into(),
            v.video_id.clone().into(),
            v.event_ms.into(),
            now_ms.into(),
        ],
    )
    .await?;
    Ok(true)
}

/// Takes a video out of the index (deleted, or no longer public) as of `event_ms`.
pub async fn remove<C: ConnectionTrait>(c: &C, video_id: &str, event_ms: i64) -> Result<(), DbErr> {
    exec(c, "DELETE FROM video_embeddings WHERE video_id = ?", vec![video_id.into()]).await?;
    exec(c, "DELETE FROM pending_embeddings WHERE video_id = ?", vec![video_id.into()]).await?;
    exec(c, "DELETE FROM video_removals WHERE video_id = ?", vec![video_id.into()]).await?;
    exec(c, "INSERT INTO video_removals (video_id, event_ms) VALUES (?, ?)", vec![video_id.into(), event_ms.into()])
        .await?;
    Ok(())
}

/// Ids of the indexed (or queued) videos of `owner`, in id order.
pub async fn videos_of<C: ConnectionTrait>(c: &C, owner: &str) -> Result<Vec<String>, DbErr> {
    strings(
        c,
        "SELECT video_id FROM video_embeddings WHERE owner_id = ? \
         UNION SELECT video_id FROM pending_embeddings WHERE owner_id = ? ORDER BY video_id",
        vec![owner.into(), owner.into()],
        "video_id",
    )
    .await
}

/// The owner and embedding of an indexed video.
pub async fn embedding_of<C: ConnectionTrait>(c: &C, video_id: &str) -> Result<Option<(String, Vec<f32>)>, DbErr> {
    let sql = format!("SELECT owner_id, {} FROM video_embeddings WHERE video_id = ?", vector_column(c, ""));
    match c.query_one_raw(stmt(c, &sql, vec![video_id.into()])).await? {
        Some(r) => Ok(Some((r.try_get("", "owner_id")?, read_vector(c, &r)?))),
        None => Ok(None),
    }
}

pub async fn indexed_count<C: ConnectionTrait>(c: &C) -> Result<i64, DbErr> {
    Ok(one_i64(c, "SELECT COUNT(*) AS n FROM video_embeddings", vec![]).await?.unwrap_or(0))
}

// ---------- search ----------

/// Which indexed videos a search may return.
#[derive(Debug, Default, Clone)]
pub struct Filter<'a> {
    pub exclude_video: Option<&'a str>,
    pub exclude_owner: Option<&'a str>,
    pub only_owner: Option<&'a str>,
    /// Leaves out what this user liked or watched.
    pub exclude_seen_by: Option<&'a str>,
    pub exclude_ids: &'a [String],
}

impl Filter<'_> {
    fn sql(&self, values: &mut Vec<Value>) -> String {
        let mut parts = vec!["1 = 1".to_string()];
        if let Some(v) = self.exclude_video {
            parts.push("e.video_id <> ?".into());
            values.push(v.into());
        }
        if let Some(o) = self.exclude_owner {
            parts.push("e.owner_id <> ?".into());
            values.push(o.into());
        }
        if let Some(o) = self.only_owner {
            parts.push("e.owner_id = ?".into());
            values.push(o.into());
        }
        if let Some(u) = self.exclude_seen_by {
            parts
                .push("NOT EXISTS (SELECT 1 FROM user_likes l WHERE l.user_id = ? AND l.video_id = e.video_id)".into());
            parts
                .push("NOT EXISTS (SELECT 1 FROM user_views w WHERE w.user_id = ? AND w.video_id = e.video_id)".into());
            values.push(u.into());
            values.push(u.into());
        }
        if !self.exclude_ids.is_empty() {
            parts.push(format!("e.video_id NOT IN ({})", vec!["?"; self.exclude_ids.len()].join(", ")));
            values.extend(self.exclude_ids.iter().map(|i| i.clone().into()));
        }
        parts.join(" AND ")
    }
}

/// Ids of the `limit` indexed videos nearest to `query` (a unit vector) by cosine, nearest
/// first. PostgreSQL: the HNSW index (iterative scan, so filters do not starve the result),
/// or an exact scan when the filter narrows to one owner; SQLite: exact, in Rust.
pub async fn nearest(
    db: &DatabaseConnection,
    query: &[f32],
    filter: &Filter<'_>,
    limit: u64,
) -> Result<Vec<String>, DbErr> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    if !is_pg(db) {
        let mut values = Vec::new();
        let clause = filter.sql(&mut values);
        let sql = format!("SELECT e.video_id, {} FROM video_embeddings e WHERE {clause}", vector_column(db, "e."));
        let rows = db.query_all_raw(stmt(db, &sql, values)).await?;
        let mut scored: Vec<(f32, String)> = Vec::with_capacity(rows.len());
        for r in &rows {
            scored.push((dot(query, &read_vector(db, r)?), r.try_get("", "video_id")?));
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        return Ok(scored.into_iter().take(limit as usize).map(|(_, id)| id).collect());
    }
    if filter.only_owner.is_some() {
        // Few rows: `+ 0` keeps the planner on the owner index and sorts them exactly.
        let mut values = Vec::new();
        let clause = filter.sql(&mut values);
        values.push(vector_text(query).into());
        let sql = format!(
            "SELECT e.video_id FROM video_embeddings e WHERE {clause} \
             ORDER BY (e.embedding <=> CAST(? AS vector)) + 0, e.video_id LIMIT {limit}"
        );
        return strings(db, &sql, values, "video_id").await;
    }
    let mut values: Vec<Value> = vec![vector_text(query).into()];
    let clause = filter.sql(&mut values);
    // relaxed_order may return neighbours slightly out of order: sort the few hits again.
    let sql = format!(
        "WITH hits AS MATERIALIZED ( \
           SELECT e.video_id, e.embedding <=> CAST(? AS vector) AS distance FROM video_embeddings e \
           WHERE {clause} ORDER BY distance LIMIT {limit}) \
         SELECT video_id FROM hits ORDER BY distance, video_id"
    );
    // A generic plan (chosen after five runs of a prepared statement) does not know the query
    // vector and may prefer a sequential scan: plan each search for its own vector.
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!(
        "SET LOCAL hnsw.ef_search = {}; SET LOCAL hnsw.iterative_scan = relaxed_order; \
         SET LOCAL plan_cache_mode = force_custom_plan",
        HNSW_EF_SEARCH.max(limit as u32)
    ))
    .await?;
    let ids = strings(&txn, &sql, values, "video_id").await?;
    txn.commit().await?;
    Ok(ids)
}

/// Popular videos: the most liked of those published since `since_ms`, newest first among
/// equals; then, if those are too few, the most liked of all.
pub async fn popular<C: ConnectionTrait>(
    c: &C,
    filter: &Filter<'_>,
    since_ms: i64,
    limit: u64,
) -> Result<Vec<String>, DbErr> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let order = "ORDER BY e.like_count DESC, e.published_at_ms DESC, e.video_id DESC";
    let mut values = Vec::new();
    let clause = filter.sql(&mut values);
    values.push(since_ms.into());
    let sql = format!(
        "SELECT e.video_id FROM video_embeddings e WHERE {clause} AND e.published_at_ms >= ? {order} LIMIT {limit}"
    );
    let mut ids = strings(c, &sql, values, "video_id").await?;
    if (ids.len() as u64) < limit {
        let mut exclude = filter.exclude_ids.to_vec();
        exclude.extend(ids.iter().cloned());
        let older = Filter { exclude_ids: &exclude, ..filter.clone() };
        let mut values = Vec::new();
        let clause = older.sql(&mut values);
        let sql = format!(
            "SELECT e.video_id FROM video_embeddings e WHERE {clause} {order} LIMIT {}",
            limit - ids.len() as u64
        );
        ids.extend(strings(c, &sql, values, "video_id").await?);
    }
    Ok(ids)
}

// ---------- likes and preferences ----------

/// Records a like; false when it was known already.
pub async fn like<C: ConnectionTrait>(c: &C, user_id: &str, video_id: &str, at_ms: i64) -> Result<bool, DbErr> {
    lock_video(c, video_id).await?;
    let sql = insert_or_ignore(c, "user_likes (user_id, video_id, liked_at_ms) VALUES (?, ?, ?)");
    let added = exec(c, &sql, vec![user_id.into(), video_id.into(), at_ms.into()]).await? == 1;
    if added {
        exec(c, "UPDATE video_embeddings SET like_count = like_count + 1 WHERE video_id = ?", vec![video_id.into()])
            .await?;
    }
    Ok(added)
}

/// Forgets a like; false when there was none.
pub async fn unlike<C: ConnectionTrait>(c: &C, user_id: &str, video_id: &str) -> Result<bool, DbErr> {
    lock_video(c, video_id).await?;
    let removed =
        exec(c, "DELETE FROM user_likes WHERE user_id = ? AND video_id = ?", vec![user_id.into(), video_id.into()])
            .await?
            == 1;
    if removed {
        exec(c, "UPDATE video_embeddings SET like_count = like_count - 1 WHERE video_id = ?", vec![video_id.into()])
            .await?;
    }
    Ok(removed)
}

/// Records that `user_id` started watching `video_id` at `at_ms`; false when a view as
/// recent was known already (a redelivery, or an older event arriving late).
pub async fn view<C: ConnectionTrait>(c: &C, user_id: &str, video_id: &str, at_ms: i64) -> Result<bool, DbErr> {
    let sql = "INSERT INTO user_views (user_id, video_id, viewed_at_ms) VALUES (?, ?, ?) \
               ON CONFLICT (user_id, video_id) DO UPDATE SET viewed_at_ms = excluded.viewed_at_ms \
               WHERE user_views.viewed_at_ms < excluded.viewed_at_ms";
    Ok(exec(c, sql, vec![user_id.into(), video_id.into(), at_ms.into()]).await? == 1)
}

/// Users whose preference counts `video_id` (they liked or watched it), most recent first,
/// at most `limit` of each.
pub async fn interested_users<C: ConnectionTrait>(c: &C, video_id: &str, limit: u64) -> Result<Vec<String>, DbErr> {
    let mut users = strings(
        c,
        &format!("SELECT user_id FROM user_likes WHERE video_id = ? ORDER BY liked_at_ms DESC LIMIT {limit}"),
        vec![video_id.into()],
        "user_id",
    )
    .await?;
    let viewers = strings(
        c,
        &format!("SELECT user_id FROM user_views WHERE video_id = ? ORDER BY viewed_at_ms DESC LIMIT {limit}"),
        vec![video_id.into()],
        "user_id",
    )
    .await?;
    for viewer in viewers {
        if !users.contains(&viewer) {
            users.push(viewer);
        }
    }
    Ok(users)
}

/// Forgets every like and view of a video (it was deleted).
pub async fn forget_video_interest<C: ConnectionTrait>(c: &C, video_id: &str) -> Result<(), DbErr> {
    exec(c, "DELETE FROM user_likes WHERE video_id = ?", vec![video_id.into()]).await?;
    exec(c, "DELETE FROM user_views WHERE video_id = ?", vec![video_id.into()]).await?;
    Ok(())
}

/// Forgets a user: their likes (correcting the videos' counts), views and preference vector.
pub async fn forget_user<C: ConnectionTrait>(c: &C, user_id: &str) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE video_embeddings SET like_count = like_count - 1 \
         WHERE video_id IN (SELECT video_id FROM user_likes WHERE user_id = ?)",
        vec![user_id.into()],
    )
    .await?;
    exec(c, "DELETE FROM user_likes WHERE user_id = ?", vec![user_id.into()]).await?;
    exec(c, "DELETE FROM user_views WHERE user_id = ?", vec![user_id.into()]).await?;
    exec(c, "DELETE FROM user_preferences WHERE user_id = ?", vec![user_id.into()]).await?;
    Ok(())
}

/// When the user liked each of their `limit` most recent liked videos that are indexed, with
/// those videos' embeddings.
pub async fn liked_embeddings<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    limit: u64,
) -> Result<Vec<(i64, Vec<f32>)>, DbErr> {
    timed_embeddings(c, "user_likes i", "i.liked_at_ms", "", user_id, limit).await
}

/// When the user last started each of their `limit` most recently watched videos that are
/// indexed and that they did not like (a like says more), with those videos' embeddings.
pub async fn viewed_embeddings<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    limit: u64,
) -> Result<Vec<(i64, Vec<f32>)>, DbErr> {
    let not_liked =
        "AND NOT EXISTS (SELECT 1 FROM user_likes l WHERE l.user_id = i.user_id AND l.video_id = i.video_id)";
    timed_embeddings(c, "user_views i", "i.viewed_at_ms", not_liked, user_id, limit).await
}

/// `(time, embedding)` of the indexed videos in `table` (aliased `i`, with `user_id` and
/// `video_id`) for one user, newest `time` first.
async fn timed_embeddings<C: ConnectionTrait>(
    c: &C,
    table: &str,
    time: &str,
    and: &str,
    user_id: &str,
    limit: u64,
) -> Result<Vec<(i64, Vec<f32>)>, DbErr> {
    let sql = format!(
        "SELECT {time} AS at_ms, {} FROM {table} JOIN video_embeddings e ON e.video_id = i.video_id \
         WHERE i.user_id = ? {and} ORDER BY {time} DESC LIMIT {limit}",
        vector_column(c, "e.")
    );
    let rows = c.query_all_raw(stmt(c, &sql, vec![user_id.into()])).await?;
    rows.iter().map(|r| Ok((r.try_get("", "at_ms")?, read_vector(c, r)?))).collect()
}

/// Stores (or, with `None`, drops) a user's preference vector.
pub async fn set_preference<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    preference: Option<(&[f32], usize)>,
    now_ms: i64,
) -> Result<(), DbErr> {
    exec(c, "DELETE FROM user_preferences WHERE user_id = ?", vec![user_id.into()]).await?;
    if let Some((v, likes)) = preference {
        let sql = format!(
            "INSERT INTO user_preferences (user_id, embedding, likes, updated_at_ms) VALUES (?, {}, ?, ?)",
            vector_param(c)
        );
        exec(c, &sql, vec![user_id.into(), vector_value(c, v), (likes as i64).into(), now_ms.into()]).await?;
    }
    Ok(())
}

pub async fn preference<C: ConnectionTrait>(c: &C, user_id: &str) -> Result<Option<Vec<f32>>, DbErr> {
    let sql = format!("SELECT {} FROM user_preferences WHERE user_id = ?", vector_column(c, ""));
    match c.query_one_raw(stmt(c, &sql, vec![user_id.into()])).await? {
        Some(r) => Ok(Some(read_vector(c, &r)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_pgvector_text_and_blobs() {
        let v: Vec<f32> = (0..DIMENSIONS).map(|i| (i as f32 - 190.5) / 977.0).collect();
        assert_eq!(parse_vector_text(&vector_text(&v)).unwrap(), v);
        assert_eq!(parse_vector_blob(&vector_blob(&v)).unwrap(), v);
        assert!(parse_vector_blob(&[0; 12]).is_err());
    }

    #[test]
    fn normalised_vectors_have_unit_length() {
        let v = normalised(vec![3.0, 4.0]);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
        assert_eq!(normalised(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }
}
