//! The recommender's tables on both backends (the migrations in [`super::MIGRATIONS`]).

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

pub(super) const POSTGRES: &str = schema!(
    "CREATE EXTENSION IF NOT EXISTS vector SCHEMA public;",
    "vector(384)",
    "CREATE INDEX video_embeddings_hnsw ON video_embeddings
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128);"
);

pub(super) const SQLITE: &str = schema!("", "BLOB", "");

/// Signed-in viewers' playback starts (`video.viewed`), the latest per video.
pub(super) const USER_VIEWS: &str = "
CREATE TABLE user_views (
    user_id TEXT NOT NULL,
    video_id TEXT NOT NULL,
    viewed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX user_views_video ON user_views (video_id);
CREATE INDEX user_views_recent ON user_views (user_id, viewed_at_ms DESC);
";

/// Tombstones of unlikes, so a like that arrives after the unlike that undid it stays undone
/// (`interest::like`); one per (user, video) at most, gone when a newer like replaces it.
pub(super) const USER_UNLIKES: &str = "
CREATE TABLE user_unlikes (
    user_id TEXT NOT NULL,
    video_id TEXT NOT NULL,
    unliked_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX user_unlikes_video ON user_unlikes (video_id);
";
