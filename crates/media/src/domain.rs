//! Media's domain logic, written once for GraphQL, gRPC and event consumers: `Media` and its
//! writes, reads, likes, comments and subscriptions. By responsibility, in their own modules:
//! what is valid (`validation`), search (`search`), pages and cursors (`paging`), and the
//! events media follows (`events`).

use crate::config::MediaConfig;
use crate::counters::{Counters, Kind, Live};
use crate::paging::{decode_cursor, limit_of, page};
use crate::shared::Shared;
use crate::store::{self, Scope};
use crate::users::UserDirectory;
use crate::validation::{check_body, validate};
use crate::video::{Comment, Video, VideoInput, VideoStatus, Visibility};
use crate::viewer_sets::ViewerSets;
use flick_kit::page::{MAX_FIRST, Page};
use flick_kit::{AppError, Caller};
use flick_platform::bus::envelope;
use flick_platform::cache::Cache;
use flick_platform::db::sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use flick_platform::outbox::{self, Relay};
use flick_proto::events::v1 as events;
use flick_proto::media::v1::Owner;
use prost::Message;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

pub const PRODUCER: &str = "media";
/// Ids one `ListedVideoIds` call may ask about (a page of 100 and its spares).
pub const MAX_LISTED_IDS: usize = 200;

/// How long shared rows, first comments and subscriber counts are served without a write
/// dropping them (a lost invalidation, a change with no one place to drop it from).
const SHARED_TTL: Duration = Duration::from_secs(2);
/// Comments kept per video: first pages of up to `COMMENT_ROWS - 1` (the extra row says
/// whether more follow).
const COMMENT_ROWS: u64 = 51;

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A length the transcoder's upload limits refuse (over the maximum, over the quota, invalid).
fn is_refused_size(e: &AppError) -> bool {
    matches!(e.code(), flick_kit::ErrorCode::PayloadTooLarge | flick_kit::ErrorCode::BadUserInput)
}

pub fn db_error(e: DbErr) -> AppError {
    AppError::internal(format!("media database: {e}"))
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
    /// The feed's first page, shared by every viewer.
    pub(crate) feed_head: crate::feed_head::FeedHead,
    /// Each viewer's likes (`viewerHasLiked`) and followed channels (`viewerIsSubscribed`).
    likes: ViewerSets,
    follows: ViewerSets,
    /// Video rows by id, shared by every caller (each applies its own visibility).
    video_rows: Shared,
    /// Each video's first comments.
    pub(crate) comment_heads: Shared,
    /// Each channel's subscriber count.
    subscriber_counts: Shared,
}

impl Media {
    pub fn new(db: DatabaseConnection, relay: Relay, cache: Cache, cfg: &MediaConfig) -> Self {
        Self {
            counters: Counters::new(db.clone(), cache.clone(), cfg),
            feed_head: crate::feed_head::FeedHead::new(cache.clone()),
            likes: ViewerSets::new(cache.clone(), "likes"),
            follows: ViewerSets::new(cache.clone(), "follows"),
            video_rows: Shared::new(cache.clone(), "video", SHARED_TTL),
            comment_heads: Shared::new(cache.clone(), "comments", SHARED_TTL),
            subscriber_counts: Shared::new(cache.clone(), "subscribers", SHARED_TTL),
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

    /// Opens the upload of a video just created, of `size_bytes` when the client said it (the
    /// upload then carries its length, and the size and quota are checked now). A transcoder
    /// that is down or absent leaves the video without a ticket (logged): the owner can start
    /// one at `/video/upload`. A size the transcoder refuses (over the maximum or the quota)
    /// is the client's error: the video, which could never get its bytes, is deleted again
    /// and the error returned.
    pub async fn open_upload(
        &self,
        caller: &Caller,
        v: &Video,
        size_bytes: Option<u64>,
    ) -> Result<Option<crate::uploads::Ticket>, AppError> {
        let Some(uploads) = self.uploads.as_ref() else { return Ok(None) };
        match uploads.create(caller, &v.id, v.visibility, size_bytes).await {
            Ok(ticket) => Ok(Some(ticket)),
            Err(status) => match AppError::from_flick_status(&status) {
                Some(refused) if size_bytes.is_some() && is_refused_size(&refused) => {
                    self.delete_video(caller, &v.id).await?;
                    Err(refused.with_field("sizeBytes", "refused by the upload limits"))
                }
                _ => {
                    tracing::warn!(video.id = %v.id, error = %status.message(), code = ?status.code(), "no upload ticket: the transcoder did not answer");
                    Ok(None)
                }
            },
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

    pub(crate) fn video_event(v: &Video) -> Vec<u8> {
        events::VideoChanged {
            video_id: v.id.clone(),
            owner_id: v.owner_id.clone(),
            title: v.title.clone(),
            description: v.description.clone(),
            tags: v.tags.clone(),
            category: v.category.clone().unwrap_or_default(),
            visibility: v.visibility.as_str().into(),
            status: v.status.as_str().into(),
            version: event_version(),
        }
        .encode_to_vec()
    }

    /// Whether `viewer` may see `v` when asking for it by id: owners see everything; others
    /// see public and unlisted videos once they are ready.
    pub fn visible(v: &Video, viewer: &Caller) -> bool {
        v.is_owned_by(viewer.user_id.map(|u| u.to_string()).as_deref())
            || (v.visibility != Visibility::Private && v.status == VideoStatus::Ready)
    }

    pub async fn video(&self, viewer: &Caller, id: &str) -> Result<Option<Video>, AppError> {
        if Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        let v = self.rows(&[id.to_string()]).await?.pop();
        Ok(v.filter(|v| Self::visible(v, viewer)))
    }

    /// Rows of `ids` in their order, once each, whatever their visibility (ids that are not
    /// UUIDs: none), for a caller that applies `visible` itself: the shared copies, and one
    /// statement for those not cached. Reads for a write go to the database instead.
    pub async fn rows(&self, ids: &[String]) -> Result<Vec<Video>, AppError> {
        let ids: Vec<String> = ids.iter().filter(|i| Uuid::parse_str(i).is_ok()).cloned().collect();
        let mut found = self
            .video_rows
            .get_many(&ids, |missing| async move {
                let rows = store::videos_by_ids(&self.db, &missing).await?;
                Ok::<_, DbErr>(rows.into_iter().map(|v| (v.id.clone(), v)).collect())
            })
            .await
            .map_err(db_error)?;
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// Drops the shared copies of videos' rows: they changed.
    pub(crate) async fn rows_changed(&self, ids: &[String]) {
        for id in ids {
            self.video_rows.changed(id).await;
        }
    }

    /// Videos by id for other services (gRPC), with the same visibility rule.
    pub async fn videos(&self, viewer: &Caller, ids: &[String]) -> Result<Vec<Video>, AppError> {
        if ids.len() > MAX_FIRST {
            return Err(AppError::bad_input(format!("at most {MAX_FIRST} ids")));
        }
        Ok(self.rows(ids).await?.into_iter().filter(|v| Self::visible(v, viewer)).collect())
    }

    /// Of `ids` (at most `MAX_LISTED_IDS`), those public and ready now, in the order given:
    /// what anyone may be shown in a list (gRPC `ListedVideoIds`, the recommender's check).
    pub async fn listed_ids(&self, ids: &[String]) -> Result<Vec<String>, AppError> {
        if ids.len() > MAX_LISTED_IDS {
            return Err(AppError::bad_input(format!("at most {MAX_LISTED_IDS} ids")).with_field("ids", "too many"));
        }
        Ok(self.rows(ids).await?.into_iter().filter(Video::is_listed).map(|v| v.id).collect())
    }

    async fn owned(&self, caller: &Caller, id: &str) -> Result<Video, AppError> {
        caller.require_user()?;
        let v = match Uuid::parse_str(id) {
            Ok(_) => store::video(&self.db, id).await.map_err(db_error)?,
            Err(_) => None,
        };
        let v = v.filter(|v| Self::visible(v, caller)).ok_or_else(|| AppError::not_found("no such video"))?;
        caller.require_owner(Uuid::parse_str(&v.owner_id).map_err(AppError::internal)?)?;
        Ok(v)
    }

    pub async fn create_video(&self, caller: &Caller, input: VideoInput) -> Result<Video, AppError> {
        let owner = caller.require_user()?.to_string();
        let now = now_ms();
        let mut v = Video {
            id: Uuid::now_v7().to_string(),
            owner_id: owner,
            title: input.title.unwrap_or_default(),
            description: input.description.unwrap_or_default(),
            tags: input.tags.unwrap_or_default(),
            category: input.category.flatten(),
            visibility: input.visibility.unwrap_or(Visibility::Public),
            status: VideoStatus::AwaitingUpload,
            failure: None,
            created_at_ms: now,
            published_at_ms: None,
            like_count: 0,
            comment_count: 0,
            view_count: 0,
        };
        validate(&mut v)?;
        let txn = self.db.begin().await.map_err(db_error)?;
        store::insert_video(&txn, &v).await.map_err(db_error)?;
        self.emit(&txn, "video.created", &v.id, Self::video_event(&v)).await?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        Ok(v)
    }

    pub async fn update_video(&self, caller: &Caller, id: &str, input: VideoInput) -> Result<Video, AppError> {
        let mut v = self.owned(caller, id).await?;
        let was_public = v.visibility == Visibility::Public;
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
            v.visibility = vis;
        }
        validate(&mut v)?;
        let publish_now = !was_public && v.is_listed();
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
        self.rows_changed(std::slice::from_ref(&v.id)).await;
        self.feed_head.changed().await;
        Ok(v)
    }

    pub async fn delete_video(&self, caller: &Caller, id: &str) -> Result<String, AppError> {
        let v = self.owned(caller, id).await?;
        let txn = self.db.begin().await.map_err(db_error)?;
        store::delete_video(&txn, &v.id).await.map_err(db_error)?;
        self.emit(&txn, "video.deleted", &v.id, Self::video_event(&v)).await?;
        txn.commit().await.map_err(db_error)?;
        self.relay.notify();
        self.rows_changed(std::slice::from_ref(&v.id)).await;
        self.comment_heads.changed(&v.id).await;
        self.feed_head.changed().await;
        Ok(v.id)
    }

    pub async fn feed(&self, after: Option<&str>, first: Option<i32>) -> Result<Page<Video>, AppError> {
        let limit = limit_of(first)?;
        let rows = match decode_cursor(after)? {
            None => self.feed_head.first_rows(limit, |n| store::feed(&self.db, None, n)).await,
            after => store::feed(&self.db, after, limit + 1).await,
        }
        .map_err(db_error)?;
        Ok(page(rows, limit))
    }

    /// A user's videos: all of them for the owner, public ready ones for everybody else.
    pub async fn user_videos(
        &self,
        viewer: &Caller,
        owner: &str,
        after: Option<&str>,
        first: Option<i32>,
    ) -> Result<Page<Video>, AppError> {
        let limit = limit_of(first)?;
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
    ) -> Result<Page<Video>, AppError> {
        let me = caller.require_user()?.to_string();
        let limit = limit_of(first)?;
        let rows = store::list(&self.db, Scope::Subscriptions(&me), decode_cursor(after)?, limit + 1)
            .await
            .map_err(db_error)?;
        Ok(page(rows, limit))
    }

    /// The caller's own videos, every status and visibility, newest first (at most 100).
    pub async fn dashboard(&self, caller: &Caller) -> Result<Vec<Video>, AppError> {
        let me = caller.require_user()?.to_string();
        store::list(&self.db, Scope::Owner(&me), None, MAX_FIRST as u64).await.map_err(db_error)
    }

    async fn visible_for_write(&self, caller: &Caller, video_id: &str) -> Result<(String, Video), AppError> {
        let me = caller.require_user()?.to_string();
        let v = self.video(caller, video_id).await?.ok_or_else(|| AppError::not_found("no such video"))?;
        Ok((me, v))
    }

    /// Idempotent: liking twice is one like.
    pub async fn like(&self, caller: &Caller, video_id: &str) -> Result<Video, AppError> {
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
            self.likes.changed(&me).await;
            self.counters.changed(&v.id, Kind::Likes, 1).await;
        }
        store::video(&self.db, &v.id).await.map_err(db_error)?.ok_or_else(|| AppError::not_found("no such video"))
    }

    pub async fn unlike(&self, caller: &Caller, video_id: &str) -> Result<Video, AppError> {
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
            self.likes.changed(&me).await;
            self.counters.changed(&v.id, Kind::Likes, -1).await;
        }
        store::video(&self.db, &v.id).await.map_err(db_error)?.ok_or_else(|| AppError::not_found("no such video"))
    }

    /// Which of `video_ids` the user `viewer` likes: from their cached likes, or the database
    /// for a viewer with too many to keep.
    pub async fn liked_by(&self, viewer: &str, video_ids: &[String]) -> Result<Vec<String>, AppError> {
        self.likes
            .among(
                viewer,
                video_ids,
                |most| store::likes_of(&self.db, viewer, most),
                || store::liked_among(&self.db, viewer, video_ids),
            )
            .await
            .map_err(db_error)
    }

    pub async fn add_comment(
        &self,
        caller: &Caller,
        video_id: &str,
        body: &str,
        parent_id: Option<&str>,
    ) -> Result<Comment, AppError> {
        let (me, v) = self.visible_for_write(caller, video_id).await?;
        let body = check_body(body)?;
        if let Some(parent) = parent_id {
            let p = store::comment(&self.db, parent).await.map_err(db_error)?;
            if p.is_none_or(|p| p.video_id != v.id) {
                return Err(
                    AppError::bad_input("no such parent comment on this video").with_field("parentId", "unknown")
                );
            }
        }
        let now = now_ms();
        let row = Comment {
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
        self.comment_heads.changed(&v.id).await;
        self.counters.changed(&v.id, Kind::Comments, 1).await;
        Ok(row)
    }

    async fn comment_for_write(&self, caller: &Caller, id: &str) -> Result<(Uuid, Comment), AppError> {
        let me = caller.require_user()?;
        let c = match Uuid::parse_str(id) {
            Ok(_) => store::comment(&self.db, id).await.map_err(db_error)?,
            Err(_) => None,
        };
        let c = c.ok_or_else(|| AppError::not_found("no such comment"))?;
        Ok((me, c))
    }

    /// Only the author edits a comment.
    pub async fn edit_comment(&self, caller: &Caller, id: &str, body: &str) -> Result<Comment, AppError> {
        let (me, mut c) = self.comment_for_write(caller, id).await?;
        if c.author_id != me.to_string() {
            return Err(AppError::forbidden("only the author may edit a comment"));
        }
        c.body = check_body(body)?;
        c.updated_at_ms = now_ms();
        store::edit_comment(&self.db, &c.id, &c.body, c.updated_at_ms).await.map_err(db_error)?;
        self.comment_heads.changed(&c.video_id).await;
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
        self.comment_heads.changed(&c.video_id).await;
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
    ) -> Result<Page<Comment>, AppError> {
        let limit = limit_of(first)?;
        let after = decode_cursor(after)?;
        let rows = if after.is_none() && limit < COMMENT_ROWS {
            // The first page, what every watch page asks: shared by every viewer.
            let mut head: Vec<Comment> = self
                .comment_heads
                .get(video_id, || store::comments(&self.db, video_id, None, COMMENT_ROWS))
                .await
                .map_err(db_error)?;
            head.truncate(limit as usize + 1);
            head
        } else {
            store::comments(&self.db, video_id, after, limit + 1).await.map_err(db_error)?
        };
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
        store::subscribe(&self.db, &me, channel, now_ms()).await.map_err(db_error)?;
        self.subscriptions_changed(&me, channel).await;
        Ok(())
    }

    pub async fn unsubscribe(&self, caller: &Caller, channel: &str) -> Result<(), AppError> {
        let me = caller.require_user()?.to_string();
        store::unsubscribe(&self.db, &me, channel).await.map_err(db_error)?;
        self.subscriptions_changed(&me, channel).await;
        Ok(())
    }

    async fn subscriptions_changed(&self, subscriber: &str, channel: &str) {
        self.follows.changed(subscriber).await;
        self.subscriber_counts.changed(channel).await;
    }

    /// Subscriber counts of `channels` (shared by every viewer; one statement for those not
    /// cached).
    pub async fn subscriber_counts(&self, channels: &[String]) -> Result<HashMap<String, i64>, AppError> {
        self.subscriber_counts
            .get_many(channels, |missing| async move {
                let counted: HashMap<String, i64> =
                    store::subscriber_counts(&self.db, &missing).await?.into_iter().collect();
                // A channel nobody follows has a count too: 0, cached like the others.
                Ok::<_, DbErr>(
                    missing
                        .into_iter()
                        .map(|c| {
                            let n = counted.get(&c).copied().unwrap_or(0);
                            (c, n)
                        })
                        .collect(),
                )
            })
            .await
            .map_err(db_error)
    }

    /// Which of `channels` the user `viewer` follows: from their cached follows, or the
    /// database for a viewer following too many to keep.
    pub async fn followed_by(&self, viewer: &str, channels: &[String]) -> Result<Vec<String>, AppError> {
        self.follows
            .among(
                viewer,
                channels,
                |most| store::channels_of(&self.db, viewer, most),
                || store::subscribed_among(&self.db, viewer, channels),
            )
            .await
            .map_err(db_error)
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
        let rewritten = self.counters.reconcile().await.map_err(db_error)?;
        if !rewritten.is_empty() {
            // The persisted counts in the shared rows moved (views especially).
            self.rows_changed(&rewritten).await;
            self.feed_head.changed().await;
        }
        Ok(rewritten.len())
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
