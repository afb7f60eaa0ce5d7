//! The index of videos: what is embedded, what waits to be, and what was removed, each with the
//! time of the change it reflects (so older changes never overwrite newer ones).

use super::vectors::{read_vector, vector_column, vector_param, vector_value};
use super::{is_pg, one_i64, strings};
use crate::domain::VideoText;
use flick_platform::db::exec;
use flick_platform::db::sea_orm::{ConnectionTrait, DbErr};
use flick_platform::db::stmt;

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
