//! The transcoder's tables and SQL (the same text on SQLite and PostgreSQL): the only place
//! that has either. Rows come out as the domain's types ([`Video`], [`Upload`]); states are
//! turned into text and back here only, and a text that names no state is an error.
//!
//! - `videos`: the transcoder's view of media's videos (owner and visibility, from events or
//!   `CreateUpload`) with the processing state and, once ready, the playback description.
//! - `uploads`: tus uploads. Bytes go to an object-store multipart upload whose id and
//!   finished parts are recorded here; bytes after the last full part wait in a tail object.
//!   So an upload continues on any replica and after a restart.

use flick_platform::db::sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};
use flick_platform::db::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: "transcoder",
    migrations: &[
        Migration { version: 1, name: "videos_and_uploads", sqlite: SCHEMA, postgres: SCHEMA },
        Migration { version: 2, name: "early_playback", sqlite: EARLY, postgres: EARLY },
        Migration { version: 3, name: "source_duration", sqlite: DURATION, postgres: DURATION },
        Migration { version: 4, name: "media_versions", sqlite: VERSIONS, postgres: VERSIONS },
        Migration { version: 5, name: "job_leases", sqlite: JOB_LEASES, postgres: JOB_LEASES },
        Migration { version: 6, name: "job_progress", sqlite: PROGRESS, postgres: PROGRESS },
        Migration { version: 7, name: "concatenation", sqlite: CONCAT, postgres: CONCAT },
        Migration { version: 8, name: "transcode_parts", sqlite: PARTS, postgres: PARTS },
    ],
};

const SCHEMA: &str = "
CREATE TABLE videos (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    visibility TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    source_key TEXT,
    source_bytes BIGINT,
    job_id TEXT,
    playback TEXT,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX videos_owner ON videos (owner_id);
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    video_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    length BIGINT,
    upload_offset BIGINT NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '',
    object_key TEXT NOT NULL,
    multipart_id TEXT NOT NULL,
    parts TEXT NOT NULL DEFAULT '[]',
    tail_key TEXT,
    tail_bytes BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    completed_at_ms BIGINT
);
CREATE INDEX uploads_owner ON uploads (owner_id, state);
CREATE INDEX uploads_video ON uploads (video_id);
CREATE INDEX uploads_expiry ON uploads (state, expires_at_ms);
";

/// When a long video's first segments became playable, before its ladder finished.
const EARLY: &str = "ALTER TABLE videos ADD COLUMN playable_at_ms BIGINT;";
/// The probed duration, known as soon as a video plays early (before the ladder's own).
const DURATION: &str = "ALTER TABLE videos ADD COLUMN source_duration_seconds DOUBLE PRECISION;";
/// Media's events in order: the highest `VideoChanged.version` applied to a row and when
/// media last confirmed it; deleted videos' ids, so a late update never brings one back.
const VERSIONS: &str = "
ALTER TABLE videos ADD COLUMN media_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE videos ADD COLUMN synced_at_ms BIGINT NOT NULL DEFAULT 0;
CREATE TABLE video_tombstones (
    id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    deleted_at_ms BIGINT NOT NULL
);
";

/// The running job's percent, as its worker last stored it (every second or so), so any
/// replica can answer `GetProcessing` with it.
const PROGRESS: &str = "ALTER TABLE videos ADD COLUMN progress_percent DOUBLE PRECISION NOT NULL DEFAULT 0;";

/// tus concatenation: an upload's kind (`SINGLE`, `PARTIAL`, `FINAL`), a final's partials (a
/// JSON array of upload ids, in order), a partial's final once joined; a video's source
/// made of several objects (a JSON array of keys, read in order; `[]`: `source_key` alone).
const CONCAT: &str = "
ALTER TABLE uploads ADD COLUMN kind TEXT NOT NULL DEFAULT 'SINGLE';
ALTER TABLE uploads ADD COLUMN partials TEXT NOT NULL DEFAULT '[]';
ALTER TABLE uploads ADD COLUMN final_id TEXT;
CREATE INDEX uploads_final ON uploads (final_id);
ALTER TABLE videos ADD COLUMN source_parts TEXT NOT NULL DEFAULT '[]';
";

use crate::domain::{Playback, Upload, UploadKind, UploadState, Video, VideoStatus, Visibility};
use flick_platform::db::{exec, stmt};

/// A state read from the database: an unknown text is an error, never a default.
fn state<T>(r: &QueryResult, column: &str, parse: fn(&str) -> Option<T>) -> Result<T, DbErr> {
    let text: String = r.try_get("", column)?;
    parse(&text).ok_or_else(|| DbErr::Custom(format!("{column} {text:?} names no known state")))
}

const VIDEO_COLUMNS: &str = "id, owner_id, visibility, state, error, source_key, source_parts, source_bytes, job_id, playback, \
     playable_at_ms, source_duration_seconds, media_version, synced_at_ms, progress_percent";

fn json_list(r: &QueryResult, column: &str) -> Result<Vec<String>, DbErr> {
    let text: String = r.try_get("", column)?;
    serde_json::from_str(&text).map_err(|e| DbErr::Custom(format!("{column}: {e}")))
}

fn to_json_list(list: &[String]) -> String {
    serde_json::to_string(list).expect("strings serialise")
}

fn video_from_row(r: &QueryResult) -> Result<Video, DbErr> {
    let playback: Option<String> = r.try_get("", "playback")?;
    let playback: Option<Playback> = playback
        .map(|p| serde_json::from_str(&p).map_err(|e| DbErr::Custom(format!("video playback: {e}"))))
        .transpose()?;
    Ok(Video {
        id: r.try_get("", "id")?,
        owner_id: r.try_get("", "owner_id")?,
        visibility: state(r, "visibility", Visibility::parse)?,
        status: state(r, "state", VideoStatus::parse)?,
        error: r.try_get("", "error")?,
        source_key: r.try_get("", "source_key")?,
        source_parts: json_list(r, "source_parts")?,
        source_bytes: r.try_get("", "source_bytes")?,
        job_id: r.try_get("", "job_id")?,
        playback,
        playable_at_ms: r.try_get("", "playable_at_ms")?,
        source_duration_seconds: r.try_get("", "source_duration_seconds")?,
        media_version: r.try_get("", "media_version")?,
        synced_at_ms: r.try_get("", "synced_at_ms")?,
        progress_percent: r.try_get("", "progress_percent")?,
    })
}

pub async fn video<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Video>, DbErr> {
    let sql = format!("SELECT {VIDEO_COLUMNS} FROM videos WHERE id = ?");
    c.query_one_raw(stmt(c, &sql, vec![id.into()])).await?.as_ref().map(video_from_row).transpose()
}

pub async fn videos_by_ids<C: ConnectionTrait>(c: &C, ids: &[String]) -> Result<Vec<Video>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!("SELECT {VIDEO_COLUMNS} FROM videos WHERE id IN ({marks})");
    c.query_all_raw(stmt(c, &sql, ids.iter().map(|i| i.clone().into()).collect()))
        .await?
        .iter()
        .map(video_from_row)
        .collect()
}

/// What media said about a video, and when.
pub struct MediaVideo<'a> {
    pub id: &'a str,
    pub owner_id: &'a str,
    pub visibility: Visibility,
    /// `VideoChanged.version`; 0 when unknown (applies over rows that have none either).
    pub version: i64,
    /// When media's statement was true (the event's version time, or a check's time).
    pub synced_at_ms: i64,
}

/// Records a video media told us about; an existing row keeps its processing state. A
/// statement older than the row's (a lower version) changes nothing, nor does any about a
/// deleted video. Returns whether it applied.
pub async fn upsert_video<C: ConnectionTrait>(c: &C, v: &MediaVideo<'_>, now: i64) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "INSERT INTO videos (id, owner_id, visibility, state, updated_at_ms, media_version, synced_at_ms)
         SELECT ?, ?, ?, 'AWAITING_UPLOAD', ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM video_tombstones WHERE id = ?)
         ON CONFLICT (id) DO UPDATE SET visibility = excluded.visibility, updated_at_ms = excluded.updated_at_ms,
             media_version = excluded.media_version, synced_at_ms = excluded.synced_at_ms
         WHERE excluded.media_version >= videos.media_version",
        vec![
            v.id.into(),
            v.owner_id.into(),
            v.visibility.as_str().into(),
            now.into(),
            v.version.into(),
            v.synced_at_ms.into(),
            v.id.into(),
        ],
    )
    .await?;
    Ok(n > 0)
}

/// A check with media confirmed (or changed) the visibility of the row as it was at
/// `seen_version`; no event moved it meanwhile. Returns whether it applied.
pub async fn confirm_video<C: ConnectionTrait>(
    c: &C,
    id: &str,
    visibility: Visibility,
    seen_version: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE videos SET visibility = ?, synced_at_ms = ? WHERE id = ? AND media_version = ?",
        vec![visibility.as_str().into(), now.into(), id.into(), seen_version.into()],
    )
    .await?;
    Ok(n > 0)
}

/// Remembers that media deleted the video (ids are never reused), so no late event revives it.
pub async fn tombstone<C: ConnectionTrait>(c: &C, id: &str, version: i64, now: i64) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO video_tombstones (id, version, deleted_at_ms) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
        vec![id.into(), version.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// Deletes the video and its job lease (a run still going loses the lease and stops).
pub async fn delete_video<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    exec(c, "DELETE FROM job_leases WHERE video_id = ?", vec![id.into()]).await?;
    exec(c, "DELETE FROM transcode_parts WHERE video_id = ?", vec![id.into()]).await?;
    exec(c, "DELETE FROM videos WHERE id = ?", vec![id.into()]).await?;
    Ok(())
}

/// Moves the video to `status` for job `job_id`; only a row still on that job changes, so a
/// superseded job cannot overwrite a newer one's outcome. Its progress starts over. Returns
/// whether it changed.
pub async fn set_status<C: ConnectionTrait>(
    c: &C,
    id: &str,
    job_id: &str,
    status: VideoStatus,
    error: Option<&str>,
    playback: Option<&Playback>,
    now: i64,
) -> Result<bool, DbErr> {
    let playback = playback
        .map(|p| serde_json::to_string(p).map_err(|e| DbErr::Custom(format!("video playback: {e}"))))
        .transpose()?;
    // Early playback belongs to a running job: any other state ends it.
    let early = if status == VideoStatus::Processing { "" } else { ", playable_at_ms = NULL" };
    let n = exec(
        c,
        &format!(
            "UPDATE videos SET state = ?, error = ?, playback = COALESCE(?, playback), updated_at_ms = ?,
             progress_percent = 0{early}
             WHERE id = ? AND job_id = ?"
        ),
        vec![
            status.as_str().into(),
            error.map(str::to_owned).into(),
            playback.into(),
            now.into(),
            id.into(),
            job_id.into(),
        ],
    )
    .await?;
    Ok(n > 0)
}

/// Marks the job's video playable before its ladder finished (first segments stored), with
/// the source's probed duration. False when it was already (the first time counts).
pub async fn set_playable<C: ConnectionTrait>(
    c: &C,
    id: &str,
    job_id: &str,
    duration_seconds: f64,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE videos SET playable_at_ms = ?, source_duration_seconds = ?, updated_at_ms = ? \
         WHERE id = ? AND job_id = ? AND state = 'PROCESSING' AND playable_at_ms IS NULL",
        vec![now.into(), duration_seconds.into(), now.into(), id.into(), job_id.into()],
    )
    .await?;
    Ok(n > 0)
}

/// Stores the running job's percent (never lowering it: a late write of an older figure
/// changes nothing). Only while the video is PROCESSING that job.
pub async fn set_progress<C: ConnectionTrait>(c: &C, id: &str, job_id: &str, percent: f64) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE videos SET progress_percent = ?
         WHERE id = ? AND job_id = ? AND state = 'PROCESSING' AND progress_percent <= ?",
        vec![percent.into(), id.into(), job_id.into(), percent.into()],
    )
    .await?;
    Ok(n > 0)
}

/// The ids of a user's videos.
pub async fn video_ids_of_owner<C: ConnectionTrait>(c: &C, owner_id: &str) -> Result<Vec<String>, DbErr> {
    c.query_all_raw(stmt(c, "SELECT id FROM videos WHERE owner_id = ?", vec![owner_id.into()]))
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", "id"))
        .collect()
}

/// The video's media was deleted: it awaits an upload again, with no source, job or playback.
pub async fn clear_media<C: ConnectionTrait>(c: &C, id: &str, now: i64) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE videos SET state = 'AWAITING_UPLOAD', error = NULL, source_key = NULL, source_parts = '[]', source_bytes = NULL,
         job_id = NULL, playback = NULL, playable_at_ms = NULL, progress_percent = 0, updated_at_ms = ? WHERE id = ?",
        vec![now.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Points the video at a new source (a completed upload; `source_parts`: the objects of a
/// concatenated one, in order) and queues it.
pub async fn queue_source<C: ConnectionTrait>(
    c: &C,
    id: &str,
    job_id: &str,
    source_key: &str,
    source_parts: &[String],
    source_bytes: i64,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE videos SET state = 'QUEUED', error = NULL, source_key = ?, source_parts = ?, source_bytes = ?, job_id = ?,
         playable_at_ms = NULL, progress_percent = 0, updated_at_ms = ? WHERE id = ?",
        vec![
            source_key.into(),
            to_json_list(source_parts).into(),
            source_bytes.into(),
            job_id.into(),
            now.into(),
            id.into(),
        ],
    )
    .await?;
    Ok(())
}

const UPLOAD_COLUMNS: &str = "id, video_id, owner_id, length, upload_offset, metadata, object_key, multipart_id, parts, \
    tail_key, tail_bytes, state, created_at_ms, expires_at_ms, kind, partials, final_id";

fn upload_from_row(r: &QueryResult) -> Result<Upload, DbErr> {
    let parts: String = r.try_get("", "parts")?;
    Ok(Upload {
        id: r.try_get("", "id")?,
        video_id: r.try_get("", "video_id")?,
        owner_id: r.try_get("", "owner_id")?,
        length: r.try_get("", "length")?,
        offset: r.try_get("", "upload_offset")?,
        metadata: r.try_get("", "metadata")?,
        object_key: r.try_get("", "object_key")?,
        multipart_id: r.try_get("", "multipart_id")?,
        parts: serde_json::from_str(&parts).map_err(|e| DbErr::Custom(format!("upload parts: {e}")))?,
        tail_key: r.try_get("", "tail_key")?,
        tail_bytes: r.try_get("", "tail_bytes")?,
        state: state(r, "state", UploadState::parse)?,
        created_at_ms: r.try_get("", "created_at_ms")?,
        expires_at_ms: r.try_get("", "expires_at_ms")?,
        kind: state(r, "kind", UploadKind::parse)?,
        partials: json_list(r, "partials")?,
        final_id: r.try_get("", "final_id")?,
    })
}

pub async fn upload<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<Upload>, DbErr> {
    let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?");
    c.query_one_raw(stmt(c, &sql, vec![id.into()])).await?.as_ref().map(upload_from_row).transpose()
}

fn uploads_sql(clause: &str) -> String {
    format!("SELECT {UPLOAD_COLUMNS} FROM uploads {clause}")
}

async fn uploads<C: ConnectionTrait>(c: &C, clause: &str, values: Vec<Value>) -> Result<Vec<Upload>, DbErr> {
    c.query_all_raw(stmt(c, &uploads_sql(clause), values)).await?.iter().map(upload_from_row).collect()
}

/// Every upload of a video, whatever its state.
pub async fn uploads_of_video<C: ConnectionTrait>(c: &C, video_id: &str) -> Result<Vec<Upload>, DbErr> {
    uploads(c, "WHERE video_id = ?", vec![video_id.into()]).await
}

/// The uploads `ids`, in that order (an unknown id is left out).
pub async fn uploads_by_ids<C: ConnectionTrait>(c: &C, ids: &[String]) -> Result<Vec<Upload>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let found = uploads(c, &format!("WHERE id IN ({marks})"), ids.iter().map(|i| i.clone().into()).collect()).await?;
    Ok(ids.iter().filter_map(|id| found.iter().find(|u| &u.id == id).cloned()).collect())
}

/// Unfinished uploads past their deadline, and completed partial uploads no final joined
/// by theirs, the oldest first (at most `limit`).
pub async fn expired_uploads<C: ConnectionTrait>(c: &C, now: i64, limit: u32) -> Result<Vec<Upload>, DbErr> {
    uploads(
        c,
        "WHERE (state = 'UPLOADING' OR (state = 'COMPLETED' AND kind = 'PARTIAL' AND final_id IS NULL))
         AND expires_at_ms < ? ORDER BY expires_at_ms LIMIT ?",
        vec![now.into(), i64::from(limit).into()],
    )
    .await
}

/// Marks the video's completed uploads other than `keep` REPLACED (the new source replaces
/// them), with the partial uploads of replaced finals; returns them, so their objects can go.
pub async fn replace_sources<C: ConnectionTrait>(c: &C, video_id: &str, keep: &str) -> Result<Vec<Upload>, DbErr> {
    let mut old = uploads(
        c,
        "WHERE video_id = ? AND state = 'COMPLETED' AND id <> ? AND kind <> 'PARTIAL'",
        vec![video_id.into(), keep.into()],
    )
    .await?;
    let finals: Vec<String> = old.iter().filter(|u| u.kind == UploadKind::Final).map(|u| u.id.clone()).collect();
    for id in finals {
        old.extend(uploads(c, "WHERE final_id = ? AND state = 'COMPLETED'", vec![id.into()]).await?);
    }
    for upload in &old {
        exec(c, "UPDATE uploads SET state = 'REPLACED' WHERE id = ?", vec![upload.id.clone().into()]).await?;
    }
    Ok(old)
}

pub async fn insert_upload<C: ConnectionTrait>(c: &C, u: &Upload) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO uploads (id, video_id, owner_id, length, upload_offset, metadata, object_key, multipart_id, parts,
            tail_key, tail_bytes, state, created_at_ms, expires_at_ms, kind, partials, final_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            u.id.clone().into(),
            u.video_id.clone().into(),
            u.owner_id.clone().into(),
            u.length.into(),
            u.offset.into(),
            u.metadata.clone().into(),
            u.object_key.clone().into(),
            u.multipart_id.clone().into(),
            serde_json::to_string(&u.parts).expect("strings serialise").into(),
            u.tail_key.clone().into(),
            u.tail_bytes.into(),
            u.state.as_str().into(),
            u.created_at_ms.into(),
            u.expires_at_ms.into(),
            u.kind.as_str().into(),
            to_json_list(&u.partials).into(),
            u.final_id.clone().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Records appended bytes, if nobody else moved the offset meanwhile (optimistic lock:
/// two PATCHes of one upload, on any replicas, cannot both win). Returns whether it did.
pub async fn advance_upload<C: ConnectionTrait>(c: &C, u: &Upload, from_offset: i64) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE uploads SET upload_offset = ?, length = ?, parts = ?, tail_key = ?, tail_bytes = ?, state = ?
         WHERE id = ? AND upload_offset = ? AND state = 'UPLOADING'",
        vec![
            u.offset.into(),
            u.length.into(),
            serde_json::to_string(&u.parts).expect("strings serialise").into(),
            u.tail_key.clone().into(),
            u.tail_bytes.into(),
            u.state.as_str().into(),
            u.id.clone().into(),
            from_offset.into(),
        ],
    )
    .await?;
    Ok(n > 0)
}

/// Ends an unfinished upload (or a completed partial one, whose final never completed) as
/// `state`. Returns whether it did.
pub async fn set_upload_state<C: ConnectionTrait>(
    c: &C,
    id: &str,
    state: UploadState,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE uploads SET state = ?, completed_at_ms = ?
         WHERE id = ? AND (state = 'UPLOADING' OR (state = 'COMPLETED' AND kind = 'PARTIAL'))",
        vec![state.as_str().into(), now.into(), id.into()],
    )
    .await?;
    Ok(n > 0)
}

/// Unfinished (and unexpired) uploads of a user.
pub async fn open_uploads_of<C: ConnectionTrait>(c: &C, owner_id: &str, now: i64) -> Result<i64, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT COUNT(*) AS open FROM uploads WHERE owner_id = ? AND state = 'UPLOADING' AND expires_at_ms >= ?",
            vec![owner_id.into(), now.into()],
        ))
        .await?;
    match row {
        Some(r) => r.try_get::<i64>("", "open").or_else(|_| r.try_get::<i32>("", "open").map(i64::from)),
        None => Ok(0),
    }
}

pub async fn delete_upload<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    exec(c, "DELETE FROM uploads WHERE id = ?", vec![id.into()]).await?;
    Ok(())
}

/// Joins the partial upload `partial_id` of `owner_id` into the final `final_id` (of video
/// `video_id`), unless another final joined it first or it ended. Returns whether it did.
pub async fn join_partial<C: ConnectionTrait>(
    c: &C,
    partial_id: &str,
    owner_id: &str,
    final_id: &str,
    video_id: &str,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE uploads SET final_id = ?, video_id = ?
         WHERE id = ? AND owner_id = ? AND kind = 'PARTIAL' AND final_id IS NULL AND state IN ('UPLOADING', 'COMPLETED')",
        vec![final_id.into(), video_id.into(), partial_id.into(), owner_id.into()],
    )
    .await?;
    Ok(n > 0)
}

/// Marks the final upload complete at `length` bytes, once (replicas and the partials'
/// last PATCHes may race to it). Returns whether this call did.
pub async fn complete_final<C: ConnectionTrait>(c: &C, id: &str, length: i64, now: i64) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE uploads SET state = 'COMPLETED', upload_offset = ?, completed_at_ms = ?
         WHERE id = ? AND kind = 'FINAL' AND state = 'UPLOADING'",
        vec![length.into(), now.into(), id.into()],
    )
    .await?;
    Ok(n > 0)
}

/// Unfinished final uploads whose partials are all complete (a completion a crash left
/// undone), at most `limit`.
pub async fn finals_ready<C: ConnectionTrait>(c: &C, limit: u32) -> Result<Vec<Upload>, DbErr> {
    uploads(
        c,
        "WHERE kind = 'FINAL' AND state = 'UPLOADING' AND NOT EXISTS
           (SELECT 1 FROM uploads p WHERE p.final_id = uploads.id AND p.state <> 'COMPLETED') LIMIT ?",
        vec![i64::from(limit).into()],
    )
    .await
}

/// Bytes a user holds in uploads: the declared length of unfinished ones, the size of kept
/// sources (finished uploads still the source of a video), leaving out the upload `except`.
/// Final uploads hold nothing of their own: their partials' bytes are counted, once.
pub async fn bytes_held_by<C: ConnectionTrait>(c: &C, owner_id: &str, except: &str) -> Result<i64, DbErr> {
    let row = c
        .query_one_raw(stmt(
            c,
            "SELECT CAST(COALESCE(SUM(COALESCE(length, upload_offset)), 0) AS BIGINT) AS held FROM uploads
             WHERE owner_id = ? AND state IN ('UPLOADING', 'COMPLETED') AND kind <> 'FINAL' AND id <> ?",
            vec![owner_id.into(), except.into()],
        ))
        .await?;
    match row {
        Some(r) => r.try_get::<i64>("", "held").or_else(|_| r.try_get::<i32>("", "held").map(i64::from)),
        None => Ok(0),
    }
}

// ---------------------------------------------------------------------------------------------
// Job leases: which worker runs a video's job now, how often that job started, how often the
// video was retried.

/// One row per video: `holder` runs job `job_id` until `expires_at_ms` (renewed by its
/// heartbeat); `runs` counts starts of that job, redeliveries after a crash included;
/// `retries` counts the owner's retries of the video.
const JOB_LEASES: &str = "
CREATE TABLE job_leases (
    video_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    holder TEXT,
    expires_at_ms BIGINT NOT NULL DEFAULT 0,
    runs BIGINT NOT NULL DEFAULT 0,
    retries BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX job_leases_owner ON job_leases (owner_id, expires_at_ms);
";

/// What [`claim_job`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours until the lease expires; the `runs`-th start of this job.
    Claimed { runs: i64 },
    /// Another worker holds a live lease on the video's job, until `expires_at_ms` unless it
    /// renews it.
    Held { expires_at_ms: i64 },
    /// The owner has `user_cap` jobs in flight and another user's job waits.
    OwnerBusy,
}

/// Takes the video's job lease for `holder`, unless another live lease holds it or its owner
/// has `user_cap` (0: no cap) jobs running while someone else's (under the cap) waits.
/// One transaction; claims of one owner are serialised (PostgreSQL: an advisory lock;
/// SQLite: the first statement writes, so the database lock is taken at once).
#[expect(clippy::too_many_arguments, reason = "one claim's facts")]
pub async fn claim_job(
    db: &flick_platform::db::sea_orm::DatabaseConnection,
    video_id: &str,
    job_id: &str,
    owner_id: &str,
    holder: &str,
    now: i64,
    lease_ms: i64,
    user_cap: i64,
) -> Result<Claim, DbErr> {
    use flick_platform::db::sea_orm::TransactionTrait as _;
    let txn = db.begin().await?;
    if txn.get_database_backend() == flick_platform::db::sea_orm::DatabaseBackend::Postgres {
        exec(&txn, "SELECT pg_advisory_xact_lock(hashtext(?))::text", vec![format!("job-claim:{owner_id}").into()])
            .await?;
    }
    exec(
        &txn,
        "INSERT INTO job_leases (video_id, job_id, owner_id) VALUES (?, ?, ?) ON CONFLICT (video_id) DO NOTHING",
        vec![video_id.into(), job_id.into(), owner_id.into()],
    )
    .await?;
    let row = txn
        .query_one_raw(stmt(
            &txn,
            "SELECT holder, expires_at_ms FROM job_leases WHERE video_id = ?",
            vec![video_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("job lease".into()))?;
    let (held_by, expires): (Option<String>, i64) = (row.try_get("", "holder")?, row.try_get("", "expires_at_ms")?);
    if held_by.is_some_and(|h| h != holder) && expires > now {
        txn.rollback().await?;
        return Ok(Claim::Held { expires_at_ms: expires });
    }
    if user_cap > 0 {
        let busy = txn
            .query_one_raw(stmt(
                &txn,
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM job_leases
                 WHERE owner_id = ? AND holder IS NOT NULL AND expires_at_ms > ? AND video_id <> ?",
                vec![owner_id.into(), now.into(), video_id.into()],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if busy >= user_cap {
            // Someone else's job waits and its owner is under the cap: it goes first.
            let waiting = txn
                .query_one_raw(stmt(
                    &txn,
                    "SELECT v.id FROM videos v WHERE v.state = 'QUEUED' AND v.owner_id <> ?
                     AND (SELECT COUNT(*) FROM job_leases l
                          WHERE l.owner_id = v.owner_id AND l.holder IS NOT NULL AND l.expires_at_ms > ?) < ?
                     LIMIT 1",
                    vec![owner_id.into(), now.into(), user_cap.into()],
                ))
                .await?;
            if waiting.is_some() {
                txn.rollback().await?;
                return Ok(Claim::OwnerBusy);
            }
        }
    }
    // Taken only if still free or lapsed: on PostgreSQL the row may have moved since the
    // read above (the holder's heartbeat renewing it just in time), and the update
    // re-checks the condition on the latest row. A new job of the video (a new upload)
    // starts with no runs and no retries.
    let taken = exec(
        &txn,
        "UPDATE job_leases SET holder = ?, expires_at_ms = ?, owner_id = ?,
             runs = CASE WHEN job_id = ? THEN runs + 1 ELSE 1 END,
             retries = CASE WHEN job_id = ? THEN retries ELSE 0 END,
             job_id = ?
         WHERE video_id = ? AND (holder IS NULL OR holder = ? OR expires_at_ms <= ?)",
        vec![
            holder.into(),
            (now + lease_ms).into(),
            owner_id.into(),
            job_id.into(),
            job_id.into(),
            job_id.into(),
            video_id.into(),
            holder.into(),
            now.into(),
        ],
    )
    .await?;
    if taken == 0 {
        // Taken by another worker between our read and our update: live for a lease from now.
        txn.rollback().await?;
        return Ok(Claim::Held { expires_at_ms: now + lease_ms });
    }
    let runs = txn
        .query_one_raw(stmt(&txn, "SELECT runs FROM job_leases WHERE video_id = ?", vec![video_id.into()]))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("job lease".into()))?
        .try_get::<i64>("", "runs")?;
    txn.commit().await?;
    Ok(Claim::Claimed { runs })
}

/// The heartbeat: extends `holder`'s lease. False when the lease is no longer its own.
pub async fn renew_job_lease<C: ConnectionTrait>(
    c: &C,
    video_id: &str,
    holder: &str,
    expires_at_ms: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE job_leases SET expires_at_ms = ? WHERE video_id = ? AND holder = ?",
        vec![expires_at_ms.into(), video_id.into(), holder.into()],
    )
    .await?;
    Ok(n > 0)
}

/// Gives the lease up; `uncount` takes back the run it counted (a worker stopped by a
/// deploy did not really try).
pub async fn release_job_lease<C: ConnectionTrait>(
    c: &C,
    video_id: &str,
    holder: &str,
    uncount: bool,
) -> Result<(), DbErr> {
    let back = if uncount { 1i64 } else { 0 };
    exec(
        c,
        "UPDATE job_leases SET holder = NULL, expires_at_ms = 0, runs = runs - ? WHERE video_id = ? AND holder = ?",
        vec![back.into(), video_id.into(), holder.into()],
    )
    .await?;
    Ok(())
}

/// Counts an owner's retry of the video's job `job_id`, if it has had fewer than `max` (its
/// job starts afresh: `runs` goes back to 0). A new job (a new upload of the video) starts
/// counting again. False when the limit is reached.
pub async fn count_video_retry<C: ConnectionTrait>(
    c: &C,
    video_id: &str,
    job_id: &str,
    owner_id: &str,
    max: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "INSERT INTO job_leases (video_id, job_id, owner_id, retries) VALUES (?, ?, ?, 1)
         ON CONFLICT (video_id) DO UPDATE SET
             retries = CASE WHEN job_leases.job_id = excluded.job_id THEN job_leases.retries + 1 ELSE 1 END,
             job_id = excluded.job_id, runs = 0
         WHERE job_leases.job_id <> excluded.job_id OR job_leases.retries < ?",
        vec![video_id.into(), job_id.into(), owner_id.into(), max.into()],
    )
    .await?;
    Ok(n > 0 && max > 0)
}

// ---------------------------------------------------------------------------------------------
// Segment-parallel jobs: the parts of a long video's job and what each produced.

/// One row per part of a job (`parts` of them): `result` (JSON, what the part stored) once
/// `done_at_ms` is set. What each part number is, is the worker's business (`worker/parts`).
const PARTS: &str = "
CREATE TABLE transcode_parts (
    video_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    part BIGINT NOT NULL,
    parts BIGINT NOT NULL,
    result TEXT,
    created_at_ms BIGINT NOT NULL,
    done_at_ms BIGINT,
    PRIMARY KEY (video_id, job_id, part)
);
";

/// A part of a job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PartRow {
    pub part: i64,
    pub parts: i64,
    pub result: Option<String>,
    pub created_at_ms: i64,
    pub done_at_ms: Option<i64>,
}

/// Records the parts `0..parts` of the video's job `job_id` (an earlier job's parts go); a
/// plan made twice (a redelivered job) keeps what the first made.
pub async fn plan_parts<C: ConnectionTrait>(
    c: &C,
    video_id: &str,
    job_id: &str,
    parts: i64,
    now: i64,
) -> Result<(), DbErr> {
    exec(c, "DELETE FROM transcode_parts WHERE video_id = ? AND job_id <> ?", vec![video_id.into(), job_id.into()])
        .await?;
    for part in 0..parts {
        exec(
            c,
            "INSERT INTO transcode_parts (video_id, job_id, part, parts, created_at_ms) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (video_id, job_id, part) DO NOTHING",
            vec![video_id.into(), job_id.into(), part.into(), parts.into(), now.into()],
        )
        .await?;
    }
    Ok(())
}

/// Forgets the video's parts (a retry plans its job again).
pub async fn drop_parts<C: ConnectionTrait>(c: &C, video_id: &str) -> Result<(), DbErr> {
    exec(c, "DELETE FROM transcode_parts WHERE video_id = ?", vec![video_id.into()]).await?;
    Ok(())
}

/// Takes the video's row lock for the rest of `c`'s transaction (PostgreSQL; SQLite has one
/// writer): parts finishing together see each other's marks, so exactly one sees the last.
pub async fn lock_video<C: ConnectionTrait>(c: &C, video_id: &str) -> Result<bool, DbErr> {
    Ok(exec(c, "UPDATE videos SET updated_at_ms = updated_at_ms WHERE id = ?", vec![video_id.into()]).await? > 0)
}

/// Marks a part done with its result; false when it was done already (a second run of it).
pub async fn finish_part<C: ConnectionTrait>(
    c: &C,
    video_id: &str,
    job_id: &str,
    part: i64,
    result: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE transcode_parts SET result = ?, done_at_ms = ?
         WHERE video_id = ? AND job_id = ? AND part = ? AND done_at_ms IS NULL",
        vec![result.into(), now.into(), video_id.into(), job_id.into(), part.into()],
    )
    .await?;
    Ok(n > 0)
}

/// The parts of the video's job `job_id`, in order.
pub async fn parts<C: ConnectionTrait>(c: &C, video_id: &str, job_id: &str) -> Result<Vec<PartRow>, DbErr> {
    c.query_all_raw(stmt(
        c,
        "SELECT part, parts, result, created_at_ms, done_at_ms FROM transcode_parts
         WHERE video_id = ? AND job_id = ? ORDER BY part",
        vec![video_id.into(), job_id.into()],
    ))
    .await?
    .iter()
    .map(|r| {
        Ok(PartRow {
            part: r.try_get("", "part")?,
            parts: r.try_get("", "parts")?,
            result: r.try_get("", "result")?,
            created_at_ms: r.try_get("", "created_at_ms")?,
            done_at_ms: r.try_get("", "done_at_ms")?,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Stage;

    async fn db() -> (tempfile::TempDir, flick_platform::db::sea_orm::DatabaseConnection) {
        let dir = tempfile::tempdir().unwrap();
        let url = flick_platform::db::service_url(None, dir.path(), "transcoder").unwrap();
        let db = flick_platform::db::connect(&url, "transcoder", 1).await.unwrap();
        flick_platform::db::migrate(&db, &[MIGRATIONS]).await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn states_round_trip_and_an_unknown_state_is_an_error() {
        let (_dir, db) = db().await;
        let m = MediaVideo { id: "v1", owner_id: "u1", visibility: Visibility::Unlisted, version: 1, synced_at_ms: 5 };
        assert!(upsert_video(&db, &m, 10).await.unwrap());
        let v = super::video(&db, "v1").await.unwrap().unwrap();
        assert_eq!((v.visibility, v.status), (Visibility::Unlisted, VideoStatus::AwaitingUpload));

        queue_source(&db, "v1", "job1", "videos/v1/source/job1", &[], 100, 20).await.unwrap();
        assert!(set_status(&db, "v1", "job1", VideoStatus::Processing, None, None, 30).await.unwrap());
        assert!(set_progress(&db, "v1", "job1", 42.5).await.unwrap());
        assert!(!set_progress(&db, "v1", "job1", 10.0).await.unwrap(), "a late, lower figure changes nothing");
        assert!(!set_progress(&db, "v1", "other-job", 80.0).await.unwrap(), "only the video's current job");
        let v = super::video(&db, "v1").await.unwrap().unwrap();
        assert_eq!(v.progress_percent, 42.5);
        assert_eq!(v.status.progress(v.progress_percent), (Stage::Processing, 42.5));

        assert!(set_status(&db, "v1", "job1", VideoStatus::Ready, None, None, 40).await.unwrap());
        let v = super::video(&db, "v1").await.unwrap().unwrap();
        assert_eq!(v.status.progress(v.progress_percent), (Stage::Ready, 100.0));
        assert!(!set_progress(&db, "v1", "job1", 99.0).await.unwrap(), "no progress once the job is over");

        exec(&db, "UPDATE videos SET state = 'DONE' WHERE id = 'v1'", vec![]).await.unwrap();
        let err = super::video(&db, "v1").await.unwrap_err();
        assert!(err.to_string().contains("\"DONE\" names no known state"), "{err}");
    }

    #[tokio::test]
    async fn a_part_done_twice_counts_once_and_a_new_plan_drops_the_old_jobs_parts() {
        let (_dir, db) = db().await;
        let m = MediaVideo { id: "v1", owner_id: "u1", visibility: Visibility::Public, version: 1, synced_at_ms: 5 };
        assert!(upsert_video(&db, &m, 10).await.unwrap());
        plan_parts(&db, "v1", "job1", 3, 100).await.unwrap();
        plan_parts(&db, "v1", "job1", 3, 200).await.unwrap(); // a redelivered job plans again
        let rows = parts(&db, "v1", "job1").await.unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.part, r.parts, r.created_at_ms)).collect::<Vec<_>>(),
            vec![(0, 3, 100), (1, 3, 100), (2, 3, 100)]
        );
        assert!(lock_video(&db, "v1").await.unwrap());
        assert!(finish_part(&db, "v1", "job1", 1, "{\"first\":1}", 300).await.unwrap());
        assert!(!finish_part(&db, "v1", "job1", 1, "{\"second\":1}", 400).await.unwrap(), "done already");
        let rows = parts(&db, "v1", "job1").await.unwrap();
        assert_eq!((rows[1].result.as_deref(), rows[1].done_at_ms), (Some("{\"first\":1}"), Some(300)));
        assert_eq!(rows.iter().filter(|r| r.done_at_ms.is_some()).count(), 1);

        plan_parts(&db, "v1", "job2", 2, 500).await.unwrap();
        assert!(parts(&db, "v1", "job1").await.unwrap().is_empty(), "a new upload's plan replaces the old");
        assert!(!finish_part(&db, "v1", "job1", 0, "{}", 600).await.unwrap(), "an old job's part counts for nothing");
        assert_eq!(parts(&db, "v1", "job2").await.unwrap().len(), 2);
        delete_video(&db, "v1").await.unwrap();
        assert!(parts(&db, "v1", "job2").await.unwrap().is_empty());
    }
}
