//! Media's tables and SQL (the same text on SQLite and PostgreSQL unless marked): every
//! statement media runs is here, behind a named function, and rows come out as the domain's
//! types ([`Video`], [`Comment`]), their states decoded from the columns' text (text that
//! names no state is an error, never a default).

use crate::video::{Comment, Video, VideoStatus, Visibility};
use flick_platform::db::sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, QueryResult, Value};
use flick_platform::db::{Migration, MigrationSet, exec, stmt};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: "media",
    migrations: &[
        Migration { version: 1, name: "videos_likes_comments_subscriptions", sqlite: SCHEMA, postgres: SCHEMA },
        Migration { version: 2, name: "search", sqlite: SEARCH_SQLITE, postgres: SEARCH_POSTGRES },
    ],
};

/// Full-text search: weighted title > tags > description, plus trigram similarity on titles
/// for typos. Extensions go to `public` so every service's search path sees them.
const SEARCH_POSTGRES: &str = "
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
ALTER TABLE videos ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', title), 'A') ||
    setweight(to_tsvector('simple', tags), 'B') ||
    setweight(to_tsvector('simple', description), 'C')) STORED;
CREATE INDEX videos_search ON videos USING GIN (search);
CREATE INDEX videos_title_trgm ON videos USING GIN (lower(title) public.gin_trgm_ops);
";

/// FTS5 over the same columns, kept in step by triggers (typos are handled in Rust).
const SEARCH_SQLITE: &str = "
CREATE VIRTUAL TABLE videos_fts USING fts5(title, tags, description, content='videos', content_rowid='rowid');
INSERT INTO videos_fts (rowid, title, tags, description) SELECT rowid, title, tags, description FROM videos;
CREATE TRIGGER videos_fts_insert AFTER INSERT ON videos BEGIN
    INSERT INTO videos_fts (rowid, title, tags, description) VALUES (new.rowid, new.title, new.tags, new.description);
END;
CREATE TRIGGER videos_fts_delete AFTER DELETE ON videos BEGIN
    INSERT INTO videos_fts (videos_fts, rowid, title, tags, description)
    VALUES ('delete', old.rowid, old.title, old.tags, old.description);
END;
CREATE TRIGGER videos_fts_update AFTER UPDATE OF title, tags, description ON videos BEGIN
    INSERT INTO videos_fts (videos_fts, rowid, title, tags, description)
    VALUES ('delete', old.rowid, old.title, old.tags, old.description);
    INSERT INTO videos_fts (rowid, title, tags, description) VALUES (new.rowid, new.title, new.tags, new.description);
END;
";

const SCHEMA: &str = "
CREATE TABLE videos (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',
    category TEXT,
    visibility TEXT NOT NULL,
    status TEXT NOT NULL,
    failure TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    published_at_ms BIGINT,
    like_count BIGINT NOT NULL DEFAULT 0,
    comment_count BIGINT NOT NULL DEFAULT 0,
    view_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX videos_feed ON videos (published_at_ms DESC, id DESC) WHERE visibility = 'PUBLIC' AND status = 'READY';
CREATE INDEX videos_owner ON videos (owner_id, created_at_ms DESC, id DESC);
CREATE TABLE video_tags (
    video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (video_id, tag)
);
CREATE INDEX video_tags_tag ON video_tags (tag);
CREATE TABLE likes (
    video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (video_id, user_id)
);
CREATE INDEX likes_user ON likes (user_id);
CREATE TABLE comments (
    id TEXT PRIMARY KEY,
    video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    author_id TEXT NOT NULL,
    parent_id TEXT,
    body TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX comments_video ON comments (video_id, created_at_ms, id);
CREATE INDEX comments_author ON comments (author_id);
CREATE TABLE channel_subscriptions (
    subscriber_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (subscriber_id, channel_id)
);
CREATE INDEX channel_subscriptions_channel ON channel_subscriptions (channel_id);
";

const VIDEO_COLUMNS: &str = "id, owner_id, title, description, tags, category, visibility, status, failure, \
    created_at_ms, published_at_ms, like_count, comment_count, view_count";

/// A state column's text as its enum.
fn state<T: std::str::FromStr<Err = crate::video::UnknownState>>(r: &QueryResult, column: &str) -> Result<T, DbErr> {
    let text: String = r.try_get("", column)?;
    text.parse().map_err(|e| DbErr::Custom(format!("videos.{column}: {e}")))
}

fn video_of(r: &QueryResult) -> Result<Video, DbErr> {
    let tags: String = r.try_get("", "tags")?;
    Ok(Video {
        id: r.try_get("", "id")?,
        owner_id: r.try_get("", "owner_id")?,
        title: r.try_get("", "title")?,
        description: r.try_get("", "description")?,
        tags: tags.split(' ').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        category: r.try_get("", "category")?,
        visibility: state::<Visibility>(r, "visibility")?,
        status: state::<VideoStatus>(r, "status")?,
        failure: r.try_get("", "failure")?,
        created_at_ms: r.try_get("", "created_at_ms")?,
        published_at_ms: r.try_get("", "published_at_ms")?,
        like_count: r.try_get("", "like_count")?,
        comment_count: r.try_get("", "comment_count")?,
        view_count: r.try_get("", "view_count")?,
    })
}

const COMMENT_COLUMNS: &str = "id, video_id, author_id, parent_id, body, created_at_ms, updated_at_ms";

fn comment_of(r: &QueryResult) -> Result<Comment, DbErr> {
    Ok(Comment {
        id: r.try_get("", "id")?,
        video_id: r.try_get("", "video_id")?,
        author_id: r.try_get("", "author_id")?,
        parent_id: r.try_get("", "parent_id")?,
        body: r.try_get("", "body")?,
        created_at_ms: r.try_get("", "created_at_ms")?,
        updated_at_ms: r.try_get("", "updated_at_ms")?,
    })
}

/// Videos selected by `clause` (this module's own SQL; callers outside name what they want).
async fn videos_where<C: ConnectionTrait>(c: &C, clause: &str, values: Vec<Value>) -> Result<Vec<Video>, DbErr> {
    let sql = format!("SELECT {VIDEO_COLUMNS} FROM videos {clause}");
    c.query_all_raw(stmt(c, &sql, values)).await?.iter().map(video_of).collect()
}

pub async fn video<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Video>, DbErr> {
    Ok(videos_where(c, "WHERE id = ?", vec![id.into()]).await?.pop())
}

pub async fn videos_by_ids<C: ConnectionTrait>(c: &C, ids: &[String]) -> Result<Vec<Video>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    videos_where(c, &format!("WHERE id IN ({marks})"), ids.iter().map(|i| i.clone().into()).collect()).await
}

/// Inserts a new video with its tags (`v.created_at_ms` is also its last change).
pub async fn insert_video<C: ConnectionTrait>(c: &C, v: &Video) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO videos (id, owner_id, title, description, tags, category, visibility, status, failure, \
         created_at_ms, updated_at_ms, published_at_ms, like_count, comment_count, view_count) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            v.id.clone().into(),
            v.owner_id.clone().into(),
            v.title.clone().into(),
            v.description.clone().into(),
            v.tags.join(" ").into(),
            v.category.clone().into(),
            v.visibility.as_str().into(),
            v.status.as_str().into(),
            v.failure.clone().into(),
            v.created_at_ms.into(),
            v.created_at_ms.into(),
            v.published_at_ms.into(),
            v.like_count.into(),
            v.comment_count.into(),
            v.view_count.into(),
        ],
    )
    .await?;
    set_tags(c, &v.id, &v.tags).await
}

async fn set_tags<C: ConnectionTrait>(c: &C, video_id: &str, tags: &[String]) -> Result<(), DbErr> {
    exec(c, "DELETE FROM video_tags WHERE video_id = ?", vec![video_id.into()]).await?;
    for tag in tags {
        exec(c, "INSERT INTO video_tags (video_id, tag) VALUES (?, ?)", vec![video_id.into(), tag.clone().into()])
            .await?;
    }
    Ok(())
}

/// Saves a video's metadata, visibility and publication time (not its status or counts).
pub async fn update_video<C: ConnectionTrait>(c: &C, v: &Video, now_ms: i64) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE videos SET title = ?, description = ?, tags = ?, category = ?, visibility = ?, published_at_ms = ?, \
         updated_at_ms = ? WHERE id = ?",
        vec![
            v.title.clone().into(),
            v.description.clone().into(),
            v.tags.join(" ").into(),
            v.category.clone().into(),
            v.visibility.as_str().into(),
            v.published_at_ms.into(),
            now_ms.into(),
            v.id.clone().into(),
        ],
    )
    .await?;
    set_tags(c, &v.id, &v.tags).await
}

/// Sets a video's status and failure; `published_at_ms` is kept when the video has one.
pub async fn set_status<C: ConnectionTrait>(
    c: &C,
    id: &str,
    status: VideoStatus,
    failure: Option<&str>,
    published_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<u64, DbErr> {
    exec(
        c,
        "UPDATE videos SET status = ?, failure = ?, published_at_ms = COALESCE(published_at_ms, ?), updated_at_ms = ? WHERE id = ?",
        vec![status.as_str().into(), failure.map(str::to_owned).into(), published_at_ms.into(), now_ms.into(), id.into()],
    )
    .await
}

/// A new source or a retry: a video awaiting its upload, or failed, is processing (again);
/// one processing or ready already is left as it is.
pub async fn start_processing<C: ConnectionTrait>(c: &C, id: &str, now_ms: i64) -> Result<u64, DbErr> {
    exec(
        c,
        "UPDATE videos SET status = 'PROCESSING', failure = NULL, updated_at_ms = ? \
         WHERE id = ? AND status IN ('AWAITING_UPLOAD', 'FAILED')",
        vec![now_ms.into(), id.into()],
    )
    .await
}

pub async fn delete_video<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    for sql in [
        "DELETE FROM video_tags WHERE video_id = ?",
        "DELETE FROM likes WHERE video_id = ?",
        "DELETE FROM comments WHERE video_id = ?",
        "DELETE FROM videos WHERE id = ?",
    ] {
        exec(c, sql, vec![id.into()]).await?;
    }
    Ok(())
}

/// Keyset page of public, ready videos, newest first: `after` is `(published_at_ms, id)`.
pub async fn feed<C: ConnectionTrait>(c: &C, after: Option<(i64, String)>, limit: u64) -> Result<Vec<Video>, DbErr> {
    let base = "WHERE visibility = 'PUBLIC' AND status = 'READY'";
    match after {
        None => videos_where(c, &format!("{base} ORDER BY published_at_ms DESC, id DESC LIMIT {limit}"), vec![]).await,
        Some((t, id)) => {
            videos_where(
                c,
                &format!(
                    "{base} AND (published_at_ms < ? OR (published_at_ms = ? AND id < ?)) \
                     ORDER BY published_at_ms DESC, id DESC LIMIT {limit}"
                ),
                vec![t.into(), t.into(), id.into()],
            )
            .await
        }
    }
}

/// A filter over videos for lists other than the public feed.
pub enum Scope<'a> {
    /// Every video of the owner (their own view).
    Owner(&'a str),
    /// The owner's public, ready videos (what others see).
    OwnerPublic(&'a str),
    /// Public, ready videos of the channels `subscriber` follows.
    Subscriptions(&'a str),
}

/// Keyset page by `(created_at_ms, id)` (owner lists) or `(published_at_ms, id)`.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    scope: Scope<'_>,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<Video>, DbErr> {
    let (mut clause, mut values, key): (String, Vec<Value>, &str) = match scope {
        Scope::Owner(owner) => ("WHERE owner_id = ?".into(), vec![owner.into()], "created_at_ms"),
        Scope::OwnerPublic(owner) => (
            "WHERE owner_id = ? AND visibility = 'PUBLIC' AND status = 'READY'".into(),
            vec![owner.into()],
            "published_at_ms",
        ),
        Scope::Subscriptions(subscriber) => (
            "WHERE visibility = 'PUBLIC' AND status = 'READY' AND owner_id IN \
             (SELECT channel_id FROM channel_subscriptions WHERE subscriber_id = ?)"
                .into(),
            vec![subscriber.into()],
            "published_at_ms",
        ),
    };
    if let Some((t, id)) = after {
        clause.push_str(&format!(" AND ({key} < ? OR ({key} = ? AND id < ?))"));
        values.extend([t.into(), t.into(), id.into()]);
    }
    clause.push_str(&format!(" ORDER BY {key} DESC, id DESC LIMIT {limit}"));
    videos_where(c, &clause, values).await
}

/// Adds a like; false when the user liked the video already. The count is not touched here:
/// `videos.like_count` is the reconciler's persisted copy (a row every like would update is
/// a hot spot), the likes are the truth.
pub async fn like<C: ConnectionTrait>(c: &C, video_id: &str, user_id: &str, now_ms: i64) -> Result<bool, DbErr> {
    let sql = match c.get_database_backend() {
        DatabaseBackend::Postgres => {
            "INSERT INTO likes (video_id, user_id, created_at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        }
        _ => "INSERT OR IGNORE INTO likes (video_id, user_id, created_at_ms) VALUES (?, ?, ?)",
    };
    Ok(exec(c, sql, vec![video_id.into(), user_id.into(), now_ms.into()]).await? == 1)
}

/// Removes a like; false when there was none.
pub async fn unlike<C: ConnectionTrait>(c: &C, video_id: &str, user_id: &str) -> Result<bool, DbErr> {
    Ok(exec(c, "DELETE FROM likes WHERE video_id = ? AND user_id = ?", vec![video_id.into(), user_id.into()]).await?
        == 1)
}

/// Many new likes of one video (distinct users), a few statements (the seed).
pub async fn insert_likes<C: ConnectionTrait>(
    c: &C,
    video_id: &str,
    users: &[String],
    at_ms: i64,
) -> Result<(), DbErr> {
    for chunk in users.chunks(300) {
        let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let values: Vec<Value> =
            chunk.iter().flat_map(|u| [video_id.into(), u.clone().into(), at_ms.into()]).collect::<Vec<Value>>();
        exec(c, &format!("INSERT INTO likes (video_id, user_id, created_at_ms) VALUES {rows}"), values).await?;
    }
    Ok(())
}

/// Which of `video_ids` `user_id` has liked (one query for a whole page).
/// Up to `most` of the videos `user_id` likes, in no particular order.
pub async fn likes_of<C: ConnectionTrait>(c: &C, user_id: &str, most: u64) -> Result<Vec<String>, DbErr> {
    let sql = format!("SELECT video_id FROM likes WHERE user_id = ? LIMIT {most}");
    let rows = c.query_all_raw(stmt(c, &sql, vec![user_id.into()])).await?;
    rows.iter().map(|r| r.try_get("", "video_id")).collect()
}

pub async fn liked_among<C: ConnectionTrait>(c: &C, user_id: &str, video_ids: &[String]) -> Result<Vec<String>, DbErr> {
    if video_ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; video_ids.len()].join(", ");
    let mut values: Vec<Value> = vec![user_id.into()];
    values.extend(video_ids.iter().map(|v| v.clone().into()));
    let rows = c
        .query_all_raw(stmt(
            c,
            &format!("SELECT video_id FROM likes WHERE user_id = ? AND video_id IN ({marks})"),
            values,
        ))
        .await?;
    rows.iter().map(|r| r.try_get("", "video_id")).collect()
}

pub async fn insert_comment<C: ConnectionTrait>(c: &C, row: &Comment) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO comments (id, video_id, author_id, parent_id, body, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        vec![
            row.id.clone().into(),
            row.video_id.clone().into(),
            row.author_id.clone().into(),
            row.parent_id.clone().into(),
            row.body.clone().into(),
            row.created_at_ms.into(),
            row.updated_at_ms.into(),
        ],
    )
    .await?;
    Ok(())
}

pub async fn comment<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Comment>, DbErr> {
    let sql = format!("SELECT {COMMENT_COLUMNS} FROM comments WHERE id = ?");
    c.query_one_raw(stmt(c, &sql, vec![id.into()])).await?.map(|r| comment_of(&r)).transpose()
}

pub async fn edit_comment<C: ConnectionTrait>(c: &C, id: &str, body: &str, now_ms: i64) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE comments SET body = ?, updated_at_ms = ? WHERE id = ?",
        vec![body.into(), now_ms.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Deletes a comment and its replies; returns how many went.
pub async fn delete_comment<C: ConnectionTrait>(c: &C, comment: &Comment) -> Result<u64, DbErr> {
    exec(
        c,
        "DELETE FROM comments WHERE id = ? OR parent_id = ?",
        vec![comment.id.clone().into(), comment.id.clone().into()],
    )
    .await
}

/// Oldest first; `after` is `(created_at_ms, id)`.
pub async fn comments<C: ConnectionTrait>(
    c: &C,
    video_id: &str,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<Comment>, DbErr> {
    let (cond, mut values): (&str, Vec<Value>) = match &after {
        None => ("", vec![]),
        Some((t, id)) => (
            " AND (created_at_ms > ? OR (created_at_ms = ? AND id > ?))",
            vec![(*t).into(), (*t).into(), id.clone().into()],
        ),
    };
    values.insert(0, video_id.into());
    let sql = format!(
        "SELECT {COMMENT_COLUMNS} FROM comments WHERE video_id = ?{cond} ORDER BY created_at_ms, id LIMIT {limit}"
    );
    c.query_all_raw(stmt(c, &sql, values)).await?.iter().map(comment_of).collect()
}

pub async fn subscribe<C: ConnectionTrait>(c: &C, subscriber: &str, channel: &str, now_ms: i64) -> Result<(), DbErr> {
    let sql = match c.get_database_backend() {
        DatabaseBackend::Postgres => {
            "INSERT INTO channel_subscriptions (subscriber_id, channel_id, created_at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        }
        _ => "INSERT OR IGNORE INTO channel_subscriptions (subscriber_id, channel_id, created_at_ms) VALUES (?, ?, ?)",
    };
    exec(c, sql, vec![subscriber.into(), channel.into(), now_ms.into()]).await?;
    Ok(())
}

pub async fn unsubscribe<C: ConnectionTrait>(c: &C, subscriber: &str, channel: &str) -> Result<(), DbErr> {
    exec(
        c,
        "DELETE FROM channel_subscriptions WHERE subscriber_id = ? AND channel_id = ?",
        vec![subscriber.into(), channel.into()],
    )
    .await?;
    Ok(())
}

/// Subscriber counts of `channels` (absent channels have none).
pub async fn subscriber_counts<C: ConnectionTrait>(c: &C, channels: &[String]) -> Result<Vec<(String, i64)>, DbErr> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; channels.len()].join(", ");
    let sql = format!(
        "SELECT channel_id, COUNT(*) AS n FROM channel_subscriptions WHERE channel_id IN ({marks}) GROUP BY channel_id"
    );
    let rows = c.query_all_raw(stmt(c, &sql, channels.iter().map(|v| v.clone().into()).collect())).await?;
    rows.iter().map(|r| Ok((r.try_get("", "channel_id")?, r.try_get("", "n")?))).collect()
}

/// At most `most` of the channels `subscriber` follows.
pub async fn channels_of<C: ConnectionTrait>(c: &C, subscriber: &str, most: u64) -> Result<Vec<String>, DbErr> {
    let sql = format!("SELECT channel_id FROM channel_subscriptions WHERE subscriber_id = ? LIMIT {most}");
    c.query_all_raw(stmt(c, &sql, vec![subscriber.into()])).await?.iter().map(|r| r.try_get("", "channel_id")).collect()
}

/// Which of `channels` `subscriber` follows.
pub async fn subscribed_among<C: ConnectionTrait>(
    c: &C,
    subscriber: &str,
    channels: &[String],
) -> Result<Vec<String>, DbErr> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; channels.len()].join(", ");
    let mut values: Vec<Value> = vec![subscriber.into()];
    values.extend(channels.iter().map(|v| v.clone().into()));
    let sql =
        format!("SELECT channel_id FROM channel_subscriptions WHERE subscriber_id = ? AND channel_id IN ({marks})");
    c.query_all_raw(stmt(c, &sql, values)).await?.iter().map(|r| r.try_get("", "channel_id")).collect()
}

/// Likes and comments of each of `ids` (absent ones have none), counted from their rows in
/// one statement.
pub async fn count_rows<C: ConnectionTrait>(
    c: &C,
    ids: &[String],
) -> Result<std::collections::HashMap<String, (i64, i64)>, DbErr> {
    let mut counts: std::collections::HashMap<String, (i64, i64)> = ids.iter().map(|i| (i.clone(), (0, 0))).collect();
    if ids.is_empty() {
        return Ok(counts);
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!(
        "SELECT 'l' AS kind, video_id, COUNT(*) AS n FROM likes WHERE video_id IN ({marks}) GROUP BY video_id \
         UNION ALL \
         SELECT 'c' AS kind, video_id, COUNT(*) AS n FROM comments WHERE video_id IN ({marks}) GROUP BY video_id"
    );
    let values: Vec<Value> = ids.iter().chain(ids).map(|i| i.clone().into()).collect();
    for r in c.query_all_raw(stmt(c, &sql, values)).await? {
        let (kind, id, n): (String, String, i64) =
            (r.try_get("", "kind")?, r.try_get("", "video_id")?, r.try_get("", "n")?);
        let entry = counts.entry(id).or_default();
        if kind == "l" {
            entry.0 = n;
        } else {
            entry.1 = n;
        }
    }
    Ok(counts)
}

/// The reconciler's write: counts recomputed from the rows, plus views flushed from the cache.
pub async fn save_counts<C: ConnectionTrait>(
    c: &C,
    id: &str,
    likes: i64,
    comments: i64,
    new_views: i64,
) -> Result<u64, DbErr> {
    exec(
        c,
        "UPDATE videos SET like_count = ?, comment_count = ?, view_count = view_count + ? WHERE id = ?",
        vec![likes.into(), comments.into(), new_views.into(), id.into()],
    )
    .await
}

/// Views counted straight into the column (when the cache cannot take them).
pub async fn add_views<C: ConnectionTrait>(c: &C, id: &str, n: i64) -> Result<u64, DbErr> {
    exec(c, "UPDATE videos SET view_count = view_count + ? WHERE id = ?", vec![n.into(), id.into()]).await
}

/// `(id, like_count, comment_count)` of up to `limit` videos after `after`, in id order: the
/// reconciler's sweep over every video, a slice per run.
pub async fn persisted_counts<C: ConnectionTrait>(
    c: &C,
    after: &str,
    limit: u64,
) -> Result<Vec<(String, i64, i64)>, DbErr> {
    let sql = format!("SELECT id, like_count, comment_count FROM videos WHERE id > ? ORDER BY id LIMIT {limit}");
    c.query_all_raw(stmt(c, &sql, vec![after.into()]))
        .await?
        .iter()
        .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "like_count")?, r.try_get("", "comment_count")?)))
        .collect()
}

/// What a deleted user leaves behind: their videos, gone, and other videos whose likes or
/// comments they were among (counts already corrected in the columns).
pub struct Forgotten {
    pub videos: Vec<String>,
    pub recounted: Vec<String>,
}

/// Everything of a deleted user: their videos (with what hangs off them), likes, comments
/// and subscriptions, with the counts of other videos recomputed.
pub async fn forget_user<C: ConnectionTrait>(c: &C, user_id: &str) -> Result<Forgotten, DbErr> {
    let ids = |rows: Vec<QueryResult>, column: &str| -> Result<Vec<String>, DbErr> {
        rows.iter().map(|r| r.try_get("", column)).collect()
    };
    let videos =
        ids(c.query_all_raw(stmt(c, "SELECT id FROM videos WHERE owner_id = ?", vec![user_id.into()])).await?, "id")?;
    // Replies to the user's comments are on the same videos as the comments.
    let touched = ids(
        c.query_all_raw(stmt(
            c,
            "SELECT video_id FROM likes WHERE user_id = ? UNION SELECT video_id FROM comments WHERE author_id = ?",
            vec![user_id.into(), user_id.into()],
        ))
        .await?,
        "video_id",
    )?;
    for id in &videos {
        delete_video(c, id).await?;
    }
    exec(c, "DELETE FROM likes WHERE user_id = ?", vec![user_id.into()]).await?;
    // Replies to the user's comments go with them; counts are recomputed for touched videos.
    exec(
        c,
        "DELETE FROM comments WHERE parent_id IN (SELECT id FROM comments WHERE author_id = ?) OR author_id = ?",
        vec![user_id.into(), user_id.into()],
    )
    .await?;
    let recounted: Vec<String> = touched.into_iter().filter(|v| !videos.contains(v)).collect();
    for (id, (likes, comments)) in count_rows(c, &recounted).await? {
        exec(
            c,
            "UPDATE videos SET like_count = ?, comment_count = ? WHERE id = ?",
            vec![likes.into(), comments.into(), id.into()],
        )
        .await?;
    }
    exec(
        c,
        "DELETE FROM channel_subscriptions WHERE subscriber_id = ? OR channel_id = ?",
        vec![user_id.into(), user_id.into()],
    )
    .await?;
    Ok(Forgotten { videos, recounted })
}

/// Search filters; `words` are the query's words (letters and digits only, lower-case).
pub struct SearchFilter<'a> {
    pub words: &'a [String],
    pub tags: &'a [String],
    pub category: Option<&'a str>,
}

fn filter_clause(f: &SearchFilter<'_>, values: &mut Vec<Value>, column_prefix: &str) -> String {
    let mut clause = format!("{column_prefix}visibility = 'PUBLIC' AND {column_prefix}status = 'READY'");
    for tag in f.tags {
        clause.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM video_tags t WHERE t.video_id = {column_prefix}id AND t.tag = ?)"
        ));
        values.push(tag.clone().into());
    }
    if let Some(c) = f.category {
        clause.push_str(&format!(" AND {column_prefix}category = ?"));
        values.push(c.into());
    }
    clause
}

/// PostgreSQL: ranked full-text matches or titles similar to the query, best first (`words`
/// must not be empty).
pub async fn search_postgres<C: ConnectionTrait>(
    c: &C,
    f: &SearchFilter<'_>,
    offset: u64,
    limit: u64,
) -> Result<Vec<Video>, DbErr> {
    let mut values: Vec<Value> = Vec::new();
    values.push(f.words.join(" ").into());
    let filters = filter_clause(f, &mut values, "videos.");
    let sql = format!(
        "SELECT {VIDEO_COLUMNS} FROM ( \
           SELECT videos.*, ts_rank(search, query) * 4 + public.word_similarity(q.text, lower(title)) AS rank \
           FROM videos, (SELECT CAST(? AS text) AS text) q, websearch_to_tsquery('simple', q.text) query \
           WHERE {filters} AND (search @@ query OR q.text OPERATOR(public.<%) lower(title)) \
         ) ranked ORDER BY rank DESC, published_at_ms DESC, id DESC LIMIT {limit} OFFSET {offset}"
    );
    c.query_all_raw(stmt(c, &sql, values)).await?.iter().map(video_of).collect()
}

/// SQLite: FTS5 matches (every word, as a prefix), ranked by bm25 with title > tags >
/// description. `limit` rows from `offset` (`words` must not be empty).
pub async fn search_sqlite<C: ConnectionTrait>(
    c: &C,
    f: &SearchFilter<'_>,
    offset: u64,
    limit: u64,
) -> Result<Vec<Video>, DbErr> {
    let mut values: Vec<Value> = Vec::new();
    // Words are letters and digits only, quoted: nothing in them is FTS5 syntax.
    let matcher = f.words.iter().map(|w| format!("\"{w}\"*")).collect::<Vec<_>>().join(" ");
    values.push(matcher.into());
    let filters = filter_clause(f, &mut values, "v.");
    let columns = VIDEO_COLUMNS.split(", ").map(|c| format!("v.{c}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {columns} FROM videos_fts JOIN videos v ON v.rowid = videos_fts.rowid \
         WHERE videos_fts MATCH ? AND {filters} \
         ORDER BY bm25(videos_fts, 10.0, 4.0, 1.0), v.published_at_ms DESC, v.id DESC LIMIT {limit} OFFSET {offset}"
    );
    c.query_all_raw(stmt(c, &sql, values)).await?.iter().map(video_of).collect()
}

/// Public, ready videos passing the filters, newest first: the search without words, and the
/// candidates SQLite's typo fallback scores in Rust.
pub async fn filtered<C: ConnectionTrait>(
    c: &C,
    f: &SearchFilter<'_>,
    offset: u64,
    limit: u64,
) -> Result<Vec<Video>, DbErr> {
    let mut values: Vec<Value> = Vec::new();
    let filters = filter_clause(f, &mut values, "");
    let sql = format!("WHERE {filters} ORDER BY published_at_ms DESC, id DESC LIMIT {limit} OFFSET {offset}");
    videos_where(c, &sql, values).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_state_column_that_names_no_state_is_an_error_not_a_default() {
        let db = flick_platform::db::connect("sqlite::memory:", "media", 1).await.unwrap();
        flick_platform::db::migrate(&db, &[MIGRATIONS]).await.unwrap();
        let v = Video {
            id: "0190f1a8-0000-7000-8000-000000000001".into(),
            owner_id: "0190f1a8-0000-7000-8000-000000000002".into(),
            title: "Typed".into(),
            description: String::new(),
            tags: vec!["a".into(), "b".into()],
            category: None,
            visibility: Visibility::Unlisted,
            status: VideoStatus::AwaitingUpload,
            failure: None,
            created_at_ms: 1,
            published_at_ms: None,
            like_count: 0,
            comment_count: 0,
            view_count: 0,
        };
        insert_video(&db, &v).await.unwrap();
        assert_eq!(video(&db, &v.id).await.unwrap(), Some(v.clone()));
        assert_eq!(start_processing(&db, &v.id, 2).await.unwrap(), 1);
        set_status(&db, &v.id, VideoStatus::Failed, Some("no video stream"), None, 3).await.unwrap();
        let failed = video(&db, &v.id).await.unwrap().unwrap();
        assert_eq!((failed.status, failed.failure.as_deref()), (VideoStatus::Failed, Some("no video stream")));

        for (column, text, expected) in [
            ("visibility", "public", r#"videos.visibility: "public" is not a visibility"#),
            ("status", "QUEUED", r#"videos.status: "QUEUED" is not a video status"#),
        ] {
            exec(&db, &format!("UPDATE videos SET {column} = ? WHERE id = ?"), vec![text.into(), v.id.clone().into()])
                .await
                .unwrap();
            let e = video(&db, &v.id).await.unwrap_err();
            assert!(e.to_string().contains(expected), "{e}");
            let restored = if column == "status" { "READY" } else { "PRIVATE" };
            exec(
                &db,
                &format!("UPDATE videos SET {column} = ? WHERE id = ?"),
                vec![restored.into(), v.id.clone().into()],
            )
            .await
            .unwrap();
        }
        let restored = video(&db, &v.id).await.unwrap().unwrap();
        assert_eq!((restored.visibility, restored.status), (Visibility::Private, VideoStatus::Ready));
    }
}
