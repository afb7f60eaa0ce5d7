//! Media's domain logic, written once for GraphQL, gRPC and event consumers.

use crate::counters::{Counters, Kind, Live};
use crate::store::{self, CommentRow, NewVideo, Scope, VideoRow};
use crate::users::UserDirectory;
use flick_kit::config::MediaConfig;
use flick_kit::{AppError, Caller};
use flick_platform::bus::envelope;
use flick_platform::cache::Cache;
use flick_platform::db::sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use flick_platform::outbox::{self, Relay};
use flick_proto::events::v1 as events;
use flick_proto::media::v1::Owner;
use prost::Message;
use std::collections::HashMap;
use uuid::Uuid;

pub const PRODUCER: &str = "media";
pub const CATEGORIES: &[&str] = &[
    "autos",
    "comedy",
    "education",
    "entertainment",
    "film",
    "gaming",
    "howto",
    "music",
    "news",
    "nonprofit",
    "people",
    "pets",
    "science",
    "sports",
    "tech",
    "travel",
];
pub const MAX_PAGE: u64 = 100;
/// Ids one `ListedVideoIds` call may ask about (a page of 100 and its spares).
pub const MAX_LISTED_IDS: usize = 200;

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn db_error(e: DbErr) -> AppError {
    AppError::internal(format!("media database: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Unlisted,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "PUBLIC",
            Visibility::Unlisted => "UNLISTED",
            Visibility::Private => "PRIVATE",
        }
    }
}

/// Fields of a new or changed video; `None` keeps the current value on update.
#[derive(Debug, Default, Clone)]
pub struct VideoInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub category: Option<Option<String>>,
    pub visibility: Option<Visibility>,
}

/// Title 1–100, description ≤ 5,000, ≤ 10 tags (lower-case, 1–30 chars, deduplicated), a
/// known category.
fn validate(v: &mut VideoRow) -> Result<(), AppError> {
    let mut err: Option<AppError> = None;
    let mut problem = |field: &str, text: &str| {
        err = Some(err.take().unwrap_or_else(|| AppError::bad_input("invalid video")).with_field(field, text));
    };
    v.title = v.title.trim().to_string();
    if !(1..=100).contains(&v.title.chars().count()) {
        problem("title", "must be 1 to 100 characters");
    }
    v.description = v.description.trim().to_string();
    if v.description.chars().count() > 5000 {
        problem("description", "must be at most 5000 characters");
    }
    let mut tags: Vec<String> = Vec::new();
    for tag in &v.tags {
        let t: String = tag.trim().to_lowercase().split_whitespace().collect::<Vec<_>>().join("-");
        if t.is_empty() || t.chars().count() > 30 || !t.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_') {
            problem("tags", "each tag is 1 to 30 letters, digits, - or _");
        } else if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if tags.len() > 10 {
        problem("tags", "at most 10 tags");
    }
    v.tags = tags;
    if let Some(c) = &v.category {
        let c = c.trim().to_lowercase();
        if !CATEGORIES.contains(&c.as_str()) {
            problem("category", &format!("must be one of {}", CATEGORIES.join(", ")));
        }
        v.category = Some(c);
    }
    err.map_or(Ok(()), Err)
}

/// Every query word of three letters or more is close to a word of the title or a tag:
/// within one edit (two for words of eight letters or more), or a prefix of it.
fn fuzzy_match(words: &[String], v: &VideoRow) -> bool {
    let title = v.title.to_lowercase();
    let tokens: Vec<&str> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .chain(v.tags.iter().map(String::as_str))
        .collect();
    let words: Vec<&String> = words.iter().filter(|w| w.chars().count() >= 3).collect();
    !words.is_empty()
        && words.iter().all(|w| {
            let allowed = if w.chars().count() >= 8 { 2 } else { 1 };
            tokens.iter().any(|t| t.starts_with(w.as_str()) || edit_distance(w, t) <= allowed)
        })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A keyset cursor: `(sort key, id)` in opaque base64.
pub fn encode_cursor(key: i64, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{key}:{id}"))
}

pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<(i64, String)>, AppError> {
    use base64::Engine;
    let Some(c) = cursor else { return Ok(None) };
    let bad = || AppError::bad_input("invalid cursor").with_field("after", "is not a cursor from this list");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (key, id) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((key.parse().map_err(|_| bad())?, id.to_string())))
}

pub fn page_size(first: Option<i32>) -> Result<u64, AppError> {
    match first {
        None => Ok(20),
        Some(n) if n >= 0 && n as u64 <= MAX_PAGE => Ok(n as u64),
        Some(_) => {
            Err(AppError::bad_input(format!("first must be between 0 and {MAX_PAGE}"))
                .with_field("first", "out of range"))
        }
    }
}

/// One page of a list: the rows and whether more follow.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

fn page<T>(mut rows: Vec<T>, limit: u64) -> Page<T> {
    let has_next = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Page { items: rows, has_next }
}

#[derive(Clone)]
pub struct Media {
    pub(crate) db: DatabaseConnection,
    pub(crate) relay: Relay,
    pub(crate) counters: Counters,
    /// The transcoder, when one is configured (`endpoints.transcoder`).
    uploads: Option<crate::uploads::Uploads>,
    /// Owners' public details for gRPC answers (accounts, cached).
    pub(crate) users: UserDirectory,
}

impl Media {
    pub fn new(db: DatabaseConnection, relay: Relay, cache: Cache, cfg: &MediaConfig) -> Self {
        Self {
            counters: Counters::new(db.clone(), cache.clone(), cfg),
            users: UserDirectory::new(cache),
            db,
            relay,
            uploads: None,
        }
    }

    /// Asks accounts (through `users`) for owners' details instead of knowing only cached ones.
    pub fn with_users(mut self, users: UserDirectory) -> Self {
        self.users = users;
        self
    }

    pub fn with_uploads(mut self, uploads: crate::uploads::Uploads) -> Self {
        self.uploads = Some(uploads);
        self
    }

    /// Opens the upload of a video just created. A transcoder that is down or absent leaves
    /// the video without a ticket (logged): the owner can start one at `/video/upload`.
    pub async fn open_upload(&self, caller: &Caller, v: &VideoRow) -> Option<crate::uploads::Ticket> {
        let uploads = self.uploads.as_ref()?;
        match uploads.create(caller, &v.id, &v.visibility).await {
            Ok(ticket) => Some(ticket),
            Err(e) => {
                tracing::warn!(video.id = %v.id, error = %e.message(), code = ?e.code(), "no upload ticket: the transcoder did not answer");
                None
            }
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    async fn emit<C: ConnectionTrait>(
        &self,
        txn: &C,
        event_type: &str,
        subject: &str,
        payload: Vec<u8>,
    ) -> Result<(), AppError> {
        outbox::record(txn, &envelope(event_type, subject, PRODUCER, payload)).await.map_err(db_error)
    }

    pub(crate) fn video_event(v: &VideoRow) -> Vec<u8> {
        events::VideoChanged {
            video_id: v.id.clone(),
            owner_id: v.owner_id.clone(),
            title: v.title.clone(),
            description: v.description.clone(),
            tags: v.tags.clone(),
            category: v.category.clone().unwrap_or_default(),
            visibility: v.visibility.clone(),
            status: v.status.clone(),
            version: event_version(),
        }
        .encode_to_vec()
    }

    /// Whether `viewer` may see `v` when asking for it by id: owners see everything; others
    /// see public and unlisted videos once they are ready.
    pub fn visible(v: &VideoRow, viewer: &Caller) -> bool {
        let owner = viewer.user_id.map(|u| u.to_string()).as_deref() == Some(v.owner_id.as_str());
        owner || (v.visibility != "PRIVATE" && v.status == "READY")
    }

    pub async fn video(&self, viewer: &Caller, id: &str) -> Result<Option<VideoRow>, AppError> {
        if Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        let v = store::video(&self.db, id).await.map_err(db_error)?;
        Ok(v.filter(|v| Self::visible(v, viewer)))
    }

    /// Videos by id for other services (gRPC), with the same visibility rule.
    pub async fn videos(&self, viewer: &Caller, ids: &[String]) -> Result<Vec<VideoRow>, AppError> {
        if ids.len() > MAX_PAGE as usize {
            return Err(AppError::bad_input(format!("at most {MAX_PAGE} ids")));
        }
        let ids: Vec<String> = ids.iter().filter(|i| Uuid::parse_str(i).is_ok()).cloned().collect();
        let rows = store::videos_by_ids(&self.db, &ids).await.map_err(db_error)?;
        let mut rows: Vec<VideoRow> = rows.into_iter().filter(|v| Self::visible(v, viewer)).collect();
        rows.sort_by_key(|v| ids.iter().position(|i| *i == v.id));
        Ok(rows)
    }

    /// Of `ids` (at most `MAX_LISTED_IDS`), those public and ready now, in the order given:
    /// what anyone may be shown in a list (gRPC `ListedVideoIds`, the recommender's check).
    pub async fn listed_ids(&self, ids: &[String]) -> Result<Vec<String>, AppError> {
        if ids.len() > MAX_LISTED_IDS {
            return Err(AppError::bad_input(format!("at most {MAX_LISTED_IDS} ids")).with_field("ids", "too many"));
        }
        let valid: Vec<String> = ids.iter().filter(|i| Uuid::parse_str(i).is_ok()).cloned().collect();
        let listed: std::collections::HashSet<String> =
            store::listed_ids(&self.db, &valid).await.map_err(db_error)?.into_iter().collect();
        Ok(valid.into_iter().filter(|i| listed.contains(i)).collect())
    }

    async fn owned(&self, caller: &Caller, id: &str) -> Result<VideoRow, AppError> {
        caller.require_user()?;
        let v = match Uuid::parse_str(id) {
            Ok(_) => store::video(&self.db, id).await.map_err(db_error)?,
            Err(_) => None,
        };
        let v = v.filter(|v| Self::visible(v, caller)).ok_or_else(|| AppError::not_found("no such video"))?;
        caller.require_owner(Uuid::parse_str(&v.owner_id).map_err(AppError::internal)?)?;
        Ok(v)
    }

    pub async fn create_video(&self, caller: &Caller, input: VideoInput) -> Result<VideoRow, AppError> {
        let owner = caller.require_user()?.to_string();
        let now = now_ms();
        let mut v = VideoRow {
            id: Uuid::now_v7().to_string(),
            owner_id: owner,
            title: input.title.unwrap_or_default(),
            description: input.description.unwrap_or_default(),
            tags: input.tags.unwrap_or_default(),
            category: input.category.flatten(),
            visibility: input.visibility.unwrap_or(Visibility::Public).as_str().into(),
            status: "AWAITING_UPLOAD".into(),
            failure: None,
            created_at_ms: now,
            published_at_ms: None,
            like_count: 0,
            comment_count: 0,
            view_count: 0,
        };
        validate(&mut v)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        store::insert_video(
            &txn,
            NewVideo {
                id: &v.id,
                owner_id: &v.owner_id,
                title: &v.title,
                description: &v.description,
                tags: &v.tags,
                category: v.category.as_deref(),
                visibility: &v.visibility,
                now_ms: now,
            },
        )
        .await
        .map_err(db_error)?;
        self.emit(&txn, "video.created", &v.id, Self::video_event(&v)).await?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        Ok(v)
    }

    pub async fn update_video(&self, caller: &Caller, id: &str, input: VideoInput) -> Result<VideoRow, AppError> {
        let mut v = self.owned(caller, id).await?;
        let was_public = v.visibility == "PUBLIC";
        if let Some(t) = input.title {
            v.title = t;
        }
        if let Some(d) = input.description {
            v.description = d;
        }
        if let Some(t) = input.tags {
            v.tags = t;
        }
        if let Some(c) = input.category {
            v.category = c;
        }
        if let Some(vis) = input.visibility {
            v.visibility = vis.as_str().into();
        }
        validate(&mut v)?;
        let publish_now = !was_public && v.visibility == "PUBLIC" && v.status == "READY";
        if publish_now && v.published_at_ms.is_none() {
            v.published_at_ms = Some(now_ms());
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        store::update_video(&txn, &v, now_ms()).await.map_err(db_error)?;
        self.emit(&txn, "video.updated", &v.id, Self::video_event(&v)).await?;
        if publish_now {
            self.emit(&txn, "video.published", &v.id, Self::video_event(&v)).await?;
        }
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        Ok(v)
    }

    pub async fn delete_video(&self, caller: &Caller, id: &str) -> Result<String, AppError> {
        let v = self.owned(caller, id).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        store::delete_video(&txn, &v.id).await.map_err(db_error)?;
        self.emit(&txn, "video.deleted", &v.id, Self::video_event(&v)).await?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        Ok(v.id)
    }

    pub async fn feed(&self, after: Option<&str>, first: Option<i32>) -> Result<Page<VideoRow>, AppError> {
        let limit = page_size(first)?;
        let rows = store::feed(&self.db, decode_cursor(after)?, limit + 1).await.map_err(db_error)?;
        Ok(page(rows, limit))
    }

    /// A user's videos: all of them for the owner, public ready ones for everybody else.
    pub async fn user_videos(
        &self,
        viewer: &Caller,
        owner: &str,
        after: Option<&str>,
        first: Option<i32>,
    ) -> Result<Page<VideoRow>, AppError> {
        let limit = page_size(first)?;
        let is_owner = viewer.user_id.map(|u| u.to_string()).as_deref() == Some(owner);
        let scope = if is_owner { Scope::Owner(owner) } else { Scope::OwnerPublic(owner) };
        let rows = store::list(&self.db, scope, decode_cursor(after)?, limit + 1).await.map_err(db_error)?;
        Ok(page(rows, limit))
    }

    pub async fn subscriptions_feed(
        &self,
        caller: &Caller,
        after: Option<&str>,
        first: Option<i32>,
    ) -> Result<Page<VideoRow>, AppError> {
        let me = caller.require_user()?.to_string();
        let limit = page_size(first)?;
        let rows = store::list(&self.db, Scope::Subscriptions(&me), decode_cursor(after)?, limit + 1)
            .await
            .map_err(db_error)?;
        Ok(page(rows, limit))
    }

    /// The caller's own videos, every status and visibility, newest first (at most 100).
    pub async fn dashboard(&self, caller: &Caller) -> Result<Vec<VideoRow>, AppError> {
        let me = caller.require_user()?.to_string();
        store::list(&self.db, Scope::Owner(&me), None, MAX_PAGE).await.map_err(db_error)
    }

    /// Sort key of a row in the list it came from (for cursors).
    pub fn cursor_of(v: &VideoRow, by_created: bool) -> String {
        let key = if by_created { v.created_at_ms } else { v.published_at_ms.unwrap_or(v.created_at_ms) };
        encode_cursor(key, &v.id)
    }

    async fn visible_for_write(&self, caller: &Caller, video_id: &str) -> Result<(String, VideoRow), AppError> {
        let me = caller.require_user()?.to_string();
        let v = self.video(caller, video_id).await?.ok_or_else(|| AppError::not_found("no such video"))?;
        Ok((me, v))
    }

    /// Idempotent: liking twice is one like.
    pub async fn like(&self, caller: &Caller, video_id: &str) -> Result<VideoRow, AppError> {
        let (me, v) = self.visible_for_write(caller, video_id).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let added = store::like(&txn, &v.id, &me, now_ms()).await.map_err(db_error)?;
        if added {
            let event = events::VideoLiked { video_id: v.id.clone(), user_id: me.clone() };
            self.emit(&txn, "video.liked", &v.id, event.encode_to_vec()).await?;
        }
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        if added {
            self.counters.changed(&v.id, Kind::Likes, 1).await;
        }
        store::video(&self.db, &v.id).await.map_err(db_error)?.ok_or_else(|| AppError::not_found("no such video"))
    }

    pub async fn unlike(&self, caller: &Caller, video_id: &str) -> Result<VideoRow, AppError> {
        let (me, v) = self.visible_for_write(caller, video_id).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        let removed = store::unlike(&txn, &v.id, &me).await.map_err(db_error)?;
        if removed {
            let event = events::VideoLiked { video_id: v.id.clone(), user_id: me.clone() };
            self.emit(&txn, "video.unliked", &v.id, event.encode_to_vec()).await?;
        }
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        if removed {
            self.counters.changed(&v.id, Kind::Likes, -1).await;
        }
        store::video(&self.db, &v.id).await.map_err(db_error)?.ok_or_else(|| AppError::not_found("no such video"))
    }

    /// Which of `video_ids` the viewer liked (anonymous viewers liked nothing).
    pub async fn liked_among(&self, viewer: &Caller, video_ids: &[String]) -> Result<Vec<String>, AppError> {
        match viewer.user_id {
            None => Ok(Vec::new()),
            Some(me) => store::liked_among(&self.db, &me.to_string(), video_ids).await.map_err(db_error),
        }
    }

    fn check_body(body: &str) -> Result<String, AppError> {
        let body = body.trim().to_string();
        if !(1..=5000).contains(&body.chars().count()) {
            return Err(AppError::bad_input("invalid comment").with_field("body", "must be 1 to 5000 characters"));
        }
        Ok(body)
    }

    pub async fn add_comment(
        &self,
        caller: &Caller,
        video_id: &str,
        body: &str,
        parent_id: Option<&str>,
    ) -> Result<CommentRow, AppError> {
        let (me, v) = self.visible_for_write(caller, video_id).await?;
        let body = Self::check_body(body)?;
        if let Some(parent) = parent_id {
            let p = store::comment(&self.db, parent).await.map_err(db_error)?;
            if p.is_none_or(|p| p.video_id != v.id) {
                return Err(
                    AppError::bad_input("no such parent comment on this video").with_field("parentId", "unknown")
                );
            }
        }
        let now = now_ms();
        let row = CommentRow {
            id: Uuid::now_v7().to_string(),
            video_id: v.id.clone(),
            author_id: me.clone(),
            parent_id: parent_id.map(str::to_owned),
            body,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let txn = self.db.begin().await.map_err(db_error)?;
        store::insert_comment(&txn, &row).await.map_err(db_error)?;
        let event = events::CommentChanged { comment_id: row.id.clone(), video_id: v.id.clone(), author_id: me };
        self.emit(&txn, "comment.created", &v.id, event.encode_to_vec()).await?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        self.counters.changed(&v.id, Kind::Comments, 1).await;
        Ok(row)
    }

    async fn comment_for_write(&self, caller: &Caller, id: &str) -> Result<(Uuid, CommentRow), AppError> {
        let me = caller.require_user()?;
        let c = match Uuid::parse_str(id) {
            Ok(_) => store::comment(&self.db, id).await.map_err(db_error)?,
            Err(_) => None,
        };
        let c = c.ok_or_else(|| AppError::not_found("no such comment"))?;
        Ok((me, c))
    }

    /// Only the author edits a comment.
    pub async fn edit_comment(&self, caller: &Caller, id: &str, body: &str) -> Result<CommentRow, AppError> {
        let (me, mut c) = self.comment_for_write(caller, id).await?;
        if c.author_id != me.to_string() {
            return Err(AppError::forbidden("only the author may edit a comment"));
        }
        c.body = Self::check_body(body)?;
        c.updated_at_ms = now_ms();
        store::edit_comment(&self.db, &c.id, &c.body, c.updated_at_ms).await.map_err(db_error)?;
        Ok(c)
    }

    /// The author, or the owner of the video, deletes a comment (and its replies).
    pub async fn delete_comment(&self, caller: &Caller, id: &str) -> Result<String, AppError> {
        let (me, c) = self.comment_for_write(caller, id).await?;
        let me = me.to_string();
        if c.author_id != me {
            let video = store::video(&self.db, &c.video_id).await.map_err(db_error)?;
            if video.is_none_or(|v| v.owner_id != me) {
                return Err(AppError::forbidden("only the author or the video's owner may delete a comment"));
            }
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        let removed = store::delete_comment(&txn, &c).await.map_err(db_error)?;
        let event = events::CommentChanged {
            comment_id: c.id.clone(),
            video_id: c.video_id.clone(),
            author_id: c.author_id.clone(),
        };
        self.emit(&txn, "comment.deleted", &c.video_id, event.encode_to_vec()).await?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        if removed > 0 {
            self.counters.changed(&c.video_id, Kind::Comments, -(removed as i64)).await;
        }
        Ok(c.id)
    }

    pub async fn comments(
        &self,
        video_id: &str,
        after: Option<&str>,
        first: Option<i32>,
    ) -> Result<Page<CommentRow>, AppError> {
        let limit = page_size(first)?;
        let rows = store::comments(&self.db, video_id, decode_cursor(after)?, limit + 1).await.map_err(db_error)?;
        Ok(page(rows, limit))
    }

    pub async fn subscribe(&self, caller: &Caller, channel: &str) -> Result<(), AppError> {
        let me = caller.require_user()?.to_string();
        if Uuid::parse_str(channel).is_err() {
            return Err(AppError::not_found("no such channel"));
        }
        if me == channel {
            return Err(AppError::bad_input("you cannot subscribe to yourself").with_field("channelId", "is you"));
        }
        store::subscribe(&self.db, &me, channel, now_ms()).await.map_err(db_error)
    }

    pub async fn unsubscribe(&self, caller: &Caller, channel: &str) -> Result<(), AppError> {
        let me = caller.require_user()?.to_string();
        store::unsubscribe(&self.db, &me, channel).await.map_err(db_error)
    }

    pub async fn subscriber_counts(&self, channels: &[String]) -> Result<Vec<(String, i64)>, AppError> {
        store::subscriber_counts(&self.db, channels).await.map_err(db_error)
    }

    /// Which of `channels` the user `viewer` follows.
    pub async fn followed_by(&self, viewer: &str, channels: &[String]) -> Result<Vec<String>, AppError> {
        store::subscribed_among(&self.db, viewer, channels).await.map_err(db_error)
    }

    /// Ranked search of public, ready videos: words in the title count most, then tags, then
    /// the description; a word one or two letters off still finds its title. Tags and the
    /// category filter. Cursors are positions in the ranking.
    pub async fn search(
        &self,
        query: Option<&str>,
        tags: Option<Vec<String>>,
        category: Option<&str>,
        after: Option<&str>,
        first: Option<i32>,
    ) -> Result<Page<VideoRow>, AppError> {
        let limit = page_size(first)?;
        let offset = decode_cursor(after)?.map(|(n, _)| n.max(0) as u64).unwrap_or(0);
        let words: Vec<String> = query
            .unwrap_or_default()
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(12)
            .map(|w| w.chars().take(40).collect())
            .collect();
        let tags: Vec<String> = tags
            .unwrap_or_default()
            .iter()
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty())
            .take(10)
            .collect();
        let category = category.map(|c| c.trim().to_lowercase()).filter(|c| !c.is_empty());
        if let Some(c) = &category
            && !CATEGORIES.contains(&c.as_str())
        {
            return Err(AppError::bad_input("unknown category").with_field("category", "is not a known category"));
        }
        let filter = store::SearchFilter { words: &words, tags: &tags, category: category.as_deref() };
        let rows = if words.is_empty() {
            store::filtered(&self.db, &filter, offset, limit + 1).await.map_err(db_error)?
        } else if self.db.get_database_backend() == flick_platform::db::sea_orm::DatabaseBackend::Postgres {
            store::search_postgres(&self.db, &filter, offset, limit + 1).await.map_err(db_error)?
        } else {
            let mut ranked = store::search_sqlite(&self.db, &filter, 0, offset + limit + 1).await.map_err(db_error)?;
            if (ranked.len() as u64) < offset + limit + 1 {
                // FTS5 has no typo tolerance: add close titles and tags, after the exact hits.
                let candidates = store::filtered(&self.db, &filter, 0, 5000).await.map_err(db_error)?;
                let known: std::collections::HashSet<String> = ranked.iter().map(|v| v.id.clone()).collect();
                ranked.extend(candidates.into_iter().filter(|v| !known.contains(&v.id) && fuzzy_match(&words, v)));
            }
            ranked.into_iter().skip(offset as usize).take(limit as usize + 1).collect()
        };
        Ok(page(rows, limit))
    }

    /// Live like, comment and pending view counts of `ids` (one cache round trip when warm).
    pub async fn live_counts(&self, ids: &[String]) -> Result<HashMap<String, Live>, AppError> {
        self.counters.live(ids).await.map_err(db_error)
    }

    /// Public details of the users `ids` (one accounts call for what the cache lacks); users
    /// accounts does not know, or cannot be asked about now, are absent.
    pub async fn users(&self, ids: &[String]) -> HashMap<String, Owner> {
        self.users.get_many(ids).await
    }

    /// One reconciler run (the periodic task calls this; so may tests): dirty videos'
    /// counts from their rows into cache and columns, pending views into `view_count`.
    pub async fn reconcile(&self) -> Result<usize, AppError> {
        self.counters.reconcile().await.map_err(db_error)
    }
}

/// `VideoChanged.version`: the clock in microseconds, strictly increasing in this process
/// (a clock stepping back never reorders two changes). Taken inside the change's transaction,
/// after its write, so of two changes of one video the one committed later has the higher one.
pub(crate) fn event_version() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_micros();
    let mut last = LAST.load(Ordering::SeqCst);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}
