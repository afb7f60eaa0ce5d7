//! Searching the index: the videos nearest to a vector (pgvector's HNSW, or exactly in Rust
//! on SQLite) and the popular ones, with the filters both take.

use super::vectors::{dot, read_vector, vector_column, vector_text};
use super::{HNSW_EF_SEARCH, is_pg, strings};
use flick_platform::db::sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value};
use flick_platform::db::stmt;

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
