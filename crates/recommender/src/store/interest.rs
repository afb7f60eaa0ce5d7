//! Users' interest: their likes and views (with each video's like count), and the preference
//! vector made from them.

use super::vectors::{read_vector, vector_column, vector_param, vector_value};
use super::{insert_or_ignore, lock_video, one_i64, strings};
use flick_platform::db::exec;
use flick_platform::db::sea_orm::{ConnectionTrait, DbErr};
use flick_platform::db::stmt;

// Likes and unlikes can arrive out of order: each media replica relays its outbox, so after a
// broker outage two relays drain the backlog at once, and a user's unlike may come before the
// like it undoes. The user's last action (by event time) wins: a like carries its time, an
// unlike leaves a tombstone (`user_unlikes`) until a newer like replaces it. Ties go to the
// unlike (a user's like and unlike within one millisecond: no interest is the safer guess).

/// Records a like made at `at_ms`; false when it was known already or an unlike made at or
/// after it was applied first.
pub async fn like<C: ConnectionTrait>(c: &C, user_id: &str, video_id: &str, at_ms: i64) -> Result<bool, DbErr> {
    lock_video(c, video_id).await?;
    let unliked_since =
        "SELECT COUNT(*) AS n FROM user_unlikes WHERE user_id = ? AND video_id = ? AND unliked_at_ms >= ?";
    if one_i64(c, unliked_since, vec![user_id.into(), video_id.into(), at_ms.into()]).await?.unwrap_or(0) > 0 {
        return Ok(false);
    }
    let sql = insert_or_ignore(c, "user_likes (user_id, video_id, liked_at_ms) VALUES (?, ?, ?)");
    let added = exec(c, &sql, vec![user_id.into(), video_id.into(), at_ms.into()]).await? == 1;
    if !added {
        // A like is known already: keep the newer time, so an unlike older than this like
        // (reordered behind it) leaves it in place.
        exec(
            c,
            "UPDATE user_likes SET liked_at_ms = ? WHERE user_id = ? AND video_id = ? AND liked_at_ms < ?",
            vec![at_ms.into(), user_id.into(), video_id.into(), at_ms.into()],
        )
        .await?;
    }
    if added {
        exec(c, "DELETE FROM user_unlikes WHERE user_id = ? AND video_id = ?", vec![user_id.into(), video_id.into()])
            .await?;
        exec(c, "UPDATE video_embeddings SET like_count = like_count + 1 WHERE video_id = ?", vec![video_id.into()])
            .await?;
    }
    Ok(added)
}

/// Forgets a like made at or before `at_ms`; false when there was none (or only a newer one).
pub async fn unlike<C: ConnectionTrait>(c: &C, user_id: &str, video_id: &str, at_ms: i64) -> Result<bool, DbErr> {
    lock_video(c, video_id).await?;
    let removed = exec(
        c,
        "DELETE FROM user_likes WHERE user_id = ? AND video_id = ? AND liked_at_ms <= ?",
        vec![user_id.into(), video_id.into(), at_ms.into()],
    )
    .await?
        == 1;
    if removed {
        exec(c, "UPDATE video_embeddings SET like_count = like_count - 1 WHERE video_id = ?", vec![video_id.into()])
            .await?;
    }
    let newer_like = "SELECT COUNT(*) AS n FROM user_likes WHERE user_id = ? AND video_id = ?";
    if one_i64(c, newer_like, vec![user_id.into(), video_id.into()]).await?.unwrap_or(0) == 0 {
        exec(
            c,
            "INSERT INTO user_unlikes (user_id, video_id, unliked_at_ms) VALUES (?, ?, ?) \
             ON CONFLICT (user_id, video_id) DO UPDATE SET unliked_at_ms = excluded.unliked_at_ms \
             WHERE user_unlikes.unliked_at_ms < excluded.unliked_at_ms",
            vec![user_id.into(), video_id.into(), at_ms.into()],
        )
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
    exec(c, "DELETE FROM user_unlikes WHERE video_id = ?", vec![video_id.into()]).await?;
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
    exec(c, "DELETE FROM user_unlikes WHERE user_id = ?", vec![user_id.into()]).await?;
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
