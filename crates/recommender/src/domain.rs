//! The recommender's domain logic, written once for GraphQL, gRPC, the event consumer, the
//! embedding task and `flick recommender backfill`.
//!
//! Events only change tables (in the inbox transaction): a public, ready video's text is
//! queued in `pending_embeddings`; the embedding task drains that queue in batches of up to
//! `recommender.batch_size` texts per forward pass, so a burst of events costs few passes and
//! a missing model delays embeddings instead of dead-lettering events.

use crate::model::{Model, ModelError};
use crate::store::{self, Filter};
use flick_kit::page::page_size;
use flick_kit::telemetry::{TracedChannel, traced};
use flick_kit::{AppError, ErrorCode};
use flick_platform::bus::Envelope;
use flick_platform::db::sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use flick_proto::events::v1 as events;
use flick_proto::media::v1::ListedVideoIdsRequest;
use flick_proto::media::v1::media_service_client::MediaServiceClient;
use prost::Message;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use uuid::Uuid;

/// Largest `first` of `related` and `recommendedForMe` (the platform's, [`flick_kit::page`]).
pub const MAX_FIRST: usize = flick_kit::page::MAX_FIRST;
/// Likes that make up a preference vector: the user's most recent ones (and as many views).
pub const PREFERENCE_LIKES: u64 = 100;
/// A watched video's weight in the preference against a liked one's 1: starting a video says
/// less than liking it, but most viewers never like anything.
pub const VIEW_WEIGHT: f64 = 0.25;
/// A like's weight in the preference halves every 30 days (relative to the newest like).
pub const PREFERENCE_HALF_LIFE_MS: f64 = 30.0 * 86_400_000.0;
/// "Recent" for the popular fallback.
pub const POPULAR_WINDOW_MS: i64 = 30 * 86_400_000;
/// Preferences refreshed when a liked or watched video is (re)embedded or removed: its latest
/// likers and viewers (this many of each).
const LIKERS_REFRESHED: u64 = 200;
/// Characters of a video's text that are tokenized (the model keeps 256 tokens anyway).
const MAX_TEXT_CHARS: usize = 2_000;
/// Texts one `Embed` call may ask for, and their length.
pub const MAX_EMBED_TEXTS: usize = 64;
pub const MAX_EMBED_TEXT_CHARS: usize = 10_000;
/// How often the embedding task looks at the queue without being woken.
const POLL: Duration = Duration::from_secs(2);
/// After media could not be asked, answers come from the index alone this long (ms) instead
/// of each request waiting on a timeout.
const MEDIA_RETRY_MS: i64 = 5_000;

/// Candidates asked of the index for a page of `limit`: spares for videos media hid whose
/// event has not been applied yet (a quarter more, at least 5).
pub fn with_spares(limit: usize) -> usize {
    if limit == 0 { 0 } else { limit + (limit / 4).max(5) }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn db_error(e: DbErr) -> AppError {
    AppError::internal(format!("recommender database: {e}"))
}

fn model_error(e: ModelError) -> AppError {
    tracing::warn!(error = %e, "embedding model unavailable");
    AppError::new(ErrorCode::Unavailable, "the embedding model is not available; see the service's logs")
}

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

/// What is embedded for a video: its title, tags and description.
pub fn video_text(title: &str, tags: &[String], description: &str) -> String {
    let mut parts: Vec<String> = vec![title.trim().to_string()];
    if !tags.is_empty() {
        parts.push(tags.join(", "));
    }
    if !description.trim().is_empty() {
        parts.push(description.trim().to_string());
    }
    parts.join(". ").chars().take(MAX_TEXT_CHARS).collect()
}

/// Whether a video belongs in the index, as a `VideoChanged` says: only what media lists to
/// anyone (public and ready) does. The event carries media's `Visibility` and `VideoStatus` as
/// their text; it is read here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Public and ready: indexed.
    Listed,
    /// Anything else (private, unlisted, not ready, or a state this version does not know):
    /// taken out of the index.
    Hidden,
}

impl Listing {
    pub fn of(v: &events::VideoChanged) -> Self {
        const PUBLIC: &str = "PUBLIC";
        const READY: &str = "READY";
        if v.visibility == PUBLIC && v.status == READY { Listing::Listed } else { Listing::Hidden }
    }
}

/// Weighted mean of the embeddings of what a user showed interest in, `(when, weight,
/// embedding)`, normalised: each one's weight also halves every 30 days before the newest.
pub fn preference(interests: &[(i64, f64, Vec<f32>)]) -> Option<Vec<f32>> {
    let newest = interests.iter().map(|(t, _, _)| *t).max()?;
    let dims = interests.first()?.2.len();
    let mut mean = vec![0f64; dims];
    for (t, weight, v) in interests {
        let w = weight * 0.5f64.powf((newest - t) as f64 / PREFERENCE_HALF_LIFE_MS);
        for (m, x) in mean.iter_mut().zip(v) {
            *m += w * f64::from(*x);
        }
    }
    Some(store::normalised(mean.into_iter().map(|x| x as f32).collect()))
}

#[derive(Clone)]
pub struct Recommender {
    db: DatabaseConnection,
    model: Model,
    wake: Arc<Notify>,
    /// Media, asked which candidates are still public and ready before a list is answered
    /// (none configured: the index alone answers).
    media: Option<MediaServiceClient<TracedChannel>>,
    /// Until when (ms) media counts as unreachable after a failed check.
    media_down_until_ms: Arc<AtomicI64>,
    /// `related`'s nearest neighbours by (video, how many), shared by every viewer of a video
    /// for [`RELATED_TTL`]: the vector search is the video page's dearest part, and the same
    /// for everyone. Only the candidates: whether media still lists them is asked each time.
    related: moka::future::Cache<(String, usize), Arc<Vec<String>>>,
}

/// How long `related`'s candidates are reused: a video indexed meanwhile shows up at most this
/// much later (lists may be 5 s stale, issue 17).
const RELATED_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl Recommender {
    pub fn new(db: DatabaseConnection, model: Model) -> Self {
        let related = moka::future::Cache::builder().max_capacity(10_000).time_to_live(RELATED_TTL).build();
        Self { db, model, wake: Arc::new(Notify::new()), media: None, media_down_until_ms: Arc::default(), related }
    }

    /// Checks every answer's candidates with media at `url` (gRPC `ListedVideoIds`, one call
    /// per answer), connecting on first use.
    pub fn with_media(mut self, url: &str) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_string())?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(1));
        self.media = Some(MediaServiceClient::new(traced(endpoint.connect_lazy())));
        Ok(self)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    // ---------- events ----------

    /// Applies an event inside `txn` (the consumer's inbox transaction); returns whether it
    /// queued a text to embed. Unknown, malformed or stale events change nothing.
    pub async fn apply<C: ConnectionTrait>(&self, txn: &C, e: &Envelope) -> Result<bool, DbErr> {
        let at = e.occurred_at_ms;
        match e.r#type.as_str() {
            "video.published" | "video.updated" => {
                let Ok(v) = events::VideoChanged::decode(e.payload.as_slice()) else {
                    tracing::warn!(event.id = %e.id, "undecodable VideoChanged payload; ignored");
                    return Ok(false);
                };
                let id = if v.video_id.is_empty() { e.subject.clone() } else { v.video_id.clone() };
                if Listing::of(&v) == Listing::Listed {
                    let text = VideoText {
                        text: video_text(&v.title, &v.tags, &v.description),
                        video_id: id,
                        owner_id: v.owner_id,
                        published_at_ms: at,
                        event_ms: at,
                    };
                    self.index(txn, text).await
                } else {
                    self.remove(txn, &id, at, false).await?;
                    Ok(false)
                }
            }
            "video.deleted" => {
                self.remove(txn, &e.subject, at, true).await?;
                Ok(false)
            }
            "video.liked" | "video.unliked" => {
                let Ok(l) = events::VideoLiked::decode(e.payload.as_slice()) else {
                    tracing::warn!(event.id = %e.id, "undecodable VideoLiked payload; ignored");
                    return Ok(false);
                };
                let changed = if e.r#type == "video.liked" {
                    store::like(txn, &l.user_id, &l.video_id, at).await?
                } else {
                    store::unlike(txn, &l.user_id, &l.video_id, at).await?
                };
                if changed {
                    refresh_preference(txn, &l.user_id).await?;
                }
                Ok(false)
            }
            "video.viewed" => {
                let Ok(v) = events::VideoViewed::decode(e.payload.as_slice()) else {
                    tracing::warn!(event.id = %e.id, "undecodable VideoViewed payload; ignored");
                    return Ok(false);
                };
                // Anonymous viewers ("addr:…") have no preference to feed.
                let Some(user) = v.viewer.strip_prefix("user:").filter(|u| !u.is_empty()) else {
                    return Ok(false);
                };
                let video = if v.video_id.is_empty() { e.subject.as_str() } else { v.video_id.as_str() };
                if store::view(txn, user, video, at).await? {
                    refresh_preference(txn, user).await?;
                }
                Ok(false)
            }
            "user.deleted" => {
                let user = events::UserDeleted::decode(e.payload.as_slice())
                    .ok()
                    .map(|d| d.user_id)
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| e.subject.clone());
                for video in store::videos_of(txn, &user).await? {
                    self.remove(txn, &video, at, true).await?;
                }
                store::forget_user(txn, &user).await?;
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Queues a public, ready video's text unless a newer change is known; an unchanged text
    /// is not embedded again. Keeps the first publication time seen.
    async fn index<C: ConnectionTrait>(&self, txn: &C, mut v: VideoText) -> Result<bool, DbErr> {
        store::lock_video(txn, &v.video_id).await?;
        if store::known_version(txn, &v.video_id).await?.is_some_and(|known| known > v.event_ms) {
            return Ok(false);
        }
        if let Some(published) = store::published_at(txn, &v.video_id).await? {
            v.published_at_ms = published;
        }
        if store::embedded_text(txn, &v.video_id).await?.as_deref() == Some(v.text.as_str()) {
            store::touch(txn, &v).await?;
            return Ok(false);
        }
        store::queue(txn, &v, now_ms()).await?;
        Ok(true)
    }

    /// Takes a video out (deleted, or no longer public) unless a newer change is known; the
    /// preferences of those who liked or watched it no longer count it.
    async fn remove<C: ConnectionTrait>(&self, txn: &C, video_id: &str, at: i64, deleted: bool) -> Result<(), DbErr> {
        store::lock_video(txn, video_id).await?;
        if store::known_version(txn, video_id).await?.is_some_and(|known| known > at) {
            return Ok(());
        }
        let likers = store::interested_users(txn, video_id, LIKERS_REFRESHED).await?;
        store::remove(txn, video_id, at).await?;
        // Lists that held it are dropped at once (media's check would leave it out anyway
        // where media is configured; a list read before this commits lasts RELATED_TTL).
        self.related.invalidate_all();
        if deleted {
            store::forget_video_interest(txn, video_id).await?;
        }
        for user in likers {
            refresh_preference(txn, &user).await?;
        }
        Ok(())
    }

    /// Queues videos read from media (backfill; their `event_ms` is when they were read):
    /// every text is embedded again.
    pub async fn queue_videos(&self, mut videos: Vec<VideoText>) -> Result<usize, DbErr> {
        videos.sort_by(|a, b| a.video_id.cmp(&b.video_id));
        let txn = self.db.begin().await?;
        let mut queued = 0;
        for mut v in videos {
            store::lock_video(&txn, &v.video_id).await?;
            if store::known_version(&txn, &v.video_id).await?.is_some_and(|known| known > v.event_ms) {
                continue;
            }
            if let Some(published) = store::published_at(&txn, &v.video_id).await? {
                v.published_at_ms = published;
            }
            store::queue(&txn, &v, now_ms()).await?;
            queued += 1;
        }
        txn.commit().await?;
        self.wake_embedder();
        Ok(queued)
    }

    /// Tells the embedding task that texts are waiting.
    pub fn wake_embedder(&self) {
        self.wake.notify_one();
    }

    // ---------- embedding ----------

    /// Embeds what is queued, a batch per forward pass, until the queue is empty; returns
    /// how many videos were indexed.
    pub async fn embed_pending(&self) -> anyhow::Result<usize> {
        let mut indexed = 0;
        loop {
            let mut batch = store::pending(&self.db, self.model.batch_size() as u64).await?;
            if batch.is_empty() {
                return Ok(indexed);
            }
            // Locks are taken in id order (see `store::lock_video`).
            batch.sort_by(|a, b| a.video_id.cmp(&b.video_id));
            let vectors = self.model.embed(batch.iter().map(|v| v.text.clone()).collect()).await?;
            metrics::histogram!("recommender_embed_batch_size").record(batch.len() as f64);
            let txn = self.db.begin().await?;
            let now = now_ms();
            let mut stored = 0;
            for (v, embedding) in batch.iter().zip(&vectors) {
                if store::store_embedding(&txn, v, embedding, now).await? {
                    stored += 1;
                    for user in store::interested_users(&txn, &v.video_id, LIKERS_REFRESHED).await? {
                        refresh_preference(&txn, &user).await?;
                    }
                }
            }
            txn.commit().await?;
            indexed += stored;
            metrics::counter!("recommender_videos_indexed_total").increment(stored as u64);
        }
    }

    /// The embedding task: drains the queue when woken (and every few seconds); while the
    /// model or the database fails it says so once and retries with backoff.
    pub async fn run_embedder(self, shutdown: CancellationToken) {
        let mut failing: Option<String> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            match self.embed_pending().await {
                Ok(n) => {
                    if failing.take().is_some() {
                        tracing::info!(indexed = n, "embedding works again");
                    }
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    let text = e.to_string();
                    if failing.as_deref() != Some(text.as_str()) {
                        tracing::error!(error = %text, "cannot embed queued videos; will retry");
                        failing = Some(text);
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    // ---------- queries ----------

    /// Public videos nearest to `video_id`, without itself; videos of the same owner only
    /// when there are not enough others. Empty for a video that is not indexed. Candidates
    /// media no longer lists are left out (see `listed`).
    pub async fn related(&self, video_id: &str, first: Option<i32>) -> Result<Vec<String>, AppError> {
        let limit = page_size(first, 10)?;
        if limit == 0 || Uuid::parse_str(video_id).is_err() {
            return Ok(Vec::new());
        }
        let wanted = with_spares(limit);
        let candidates = self
            .related
            .try_get_with((video_id.to_string(), wanted), self.nearest_to_video(video_id, wanted))
            .await
            .map_err(|e: Arc<AppError>| AppError::new(e.code(), e.message()))?;
        Ok(self.listed(candidates.as_ref().clone(), limit).await)
    }

    /// Up to `wanted` videos nearest to `video_id`: other owners' first, then the owner's own.
    async fn nearest_to_video(&self, video_id: &str, wanted: usize) -> Result<Arc<Vec<String>>, AppError> {
        let Some((owner, v)) = store::embedding_of(&self.db, video_id).await.map_err(db_error)? else {
            return Ok(Arc::default());
        };
        let others = Filter { exclude_video: Some(video_id), exclude_owner: Some(&owner), ..Default::default() };
        let mut ids = store::nearest(&self.db, &v, &others, wanted as u64).await.map_err(db_error)?;
        if ids.len() < wanted {
            let same = Filter { exclude_video: Some(video_id), only_owner: Some(&owner), ..Default::default() };
            let more = store::nearest(&self.db, &v, &same, (wanted - ids.len()) as u64).await.map_err(db_error)?;
            ids.extend(more);
        }
        Ok(Arc::new(ids))
    }

    /// Videos for `user`: nearest to their preference vector, without their own, liked or
    /// watched videos, filled with recent popular ones; only those for new users and anonymous
    /// callers. Candidates media no longer lists are left out (see `listed`).
    pub async fn for_user(&self, user: Option<Uuid>, first: Option<i32>) -> Result<Vec<String>, AppError> {
        let limit = page_size(first, 20)?;
        let wanted = with_spares(limit);
        let since = now_ms() - POPULAR_WINDOW_MS;
        let Some(user) = user else {
            let ids = store::popular(&self.db, &Filter::default(), since, wanted as u64).await.map_err(db_error)?;
            return Ok(self.listed(ids, limit).await);
        };
        let me = user.to_string();
        let mine = Filter { exclude_owner: Some(&me), exclude_seen_by: Some(&me), ..Default::default() };
        let mut ids = match store::preference(&self.db, &me).await.map_err(db_error)? {
            Some(p) => store::nearest(&self.db, &p, &mine, wanted as u64).await.map_err(db_error)?,
            None => Vec::new(),
        };
        if ids.len() < wanted {
            let fill = Filter { exclude_ids: &ids, ..mine.clone() };
            let more = store::popular(&self.db, &fill, since, (wanted - ids.len()) as u64).await.map_err(db_error)?;
            ids.extend(more);
        }
        Ok(self.listed(ids, limit).await)
    }

    /// The first `limit` of `candidates` that media still lists (public and ready), asked in
    /// one `ListedVideoIds` call: the index drops a video only once media's event about it is
    /// applied, and a hidden video in the answer would make the router's join of the whole
    /// list fail. Without media configured, or while it cannot be asked (a warning, then
    /// `MEDIA_RETRY_MS` without asking), the index alone answers.
    async fn listed(&self, mut candidates: Vec<String>, limit: usize) -> Vec<String> {
        let Some(media) = &self.media else {
            candidates.truncate(limit);
            return candidates;
        };
        let now = now_ms();
        if candidates.is_empty() || now < self.media_down_until_ms.load(Ordering::Relaxed) {
            if !candidates.is_empty() {
                metrics::counter!("recommender_media_checks_total", "result" => "skipped").increment(1);
            }
            candidates.truncate(limit);
            return candidates;
        }
        let request = ListedVideoIdsRequest { ids: candidates.clone() };
        match media.clone().listed_video_ids(request).await {
            Ok(answer) => {
                let listed: HashSet<String> = answer.into_inner().ids.into_iter().collect();
                let before = candidates.len();
                candidates.retain(|id| listed.contains(id));
                let hidden = before - candidates.len();
                metrics::counter!("recommender_media_checks_total", "result" => "ok").increment(1);
                if hidden > 0 {
                    metrics::counter!("recommender_hidden_candidates_total").increment(hidden as u64);
                    tracing::debug!(hidden, "candidates media no longer lists were left out");
                }
            }
            Err(status) => {
                metrics::counter!("recommender_media_checks_total", "result" => "unavailable").increment(1);
                self.media_down_until_ms.store(now + MEDIA_RETRY_MS, Ordering::Relaxed);
                tracing::warn!(error = %status.message(), code = ?status.code(),
                    "media did not say which candidates it still lists; answering from the index");
            }
        }
        candidates.truncate(limit);
        candidates
    }

    /// Embeddings of arbitrary texts (gRPC `Embed`).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, AppError> {
        if texts.len() > MAX_EMBED_TEXTS {
            return Err(AppError::bad_input(format!("at most {MAX_EMBED_TEXTS} texts")).with_field("texts", "too many"));
        }
        if texts.iter().any(|t| t.chars().count() > MAX_EMBED_TEXT_CHARS) {
            return Err(AppError::bad_input(format!("texts are at most {MAX_EMBED_TEXT_CHARS} characters"))
                .with_field("texts", "too long"));
        }
        self.model.embed(texts).await.map_err(model_error)
    }
}

/// Recomputes a user's preference vector from their latest liked and watched, indexed videos
/// (none: the user is new again).
async fn refresh_preference<C: ConnectionTrait>(txn: &C, user: &str) -> Result<(), DbErr> {
    let liked = store::liked_embeddings(txn, user, PREFERENCE_LIKES).await?;
    let likes = liked.len();
    let viewed = store::viewed_embeddings(txn, user, PREFERENCE_LIKES).await?;
    let interests: Vec<(i64, f64, Vec<f32>)> = liked
        .into_iter()
        .map(|(t, v)| (t, 1.0, v))
        .chain(viewed.into_iter().map(|(t, v)| (t, VIEW_WEIGHT, v)))
        .collect();
    let p = preference(&interests);
    store::set_preference(txn, user, p.as_deref().map(|v| (v, likes)), now_ms()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preference_leans_towards_recent_likes() {
        let day = 86_400_000;
        let liked = vec![(100 * day, 1.0, vec![1.0, 0.0]), (40 * day, 1.0, vec![0.0, 1.0])];
        let p = preference(&liked).unwrap();
        // 60 days older: a quarter of the weight.
        assert!((p[0] / p[1] - 4.0).abs() < 1e-4, "{p:?}");
        assert!((store::dot(&p, &p) - 1.0).abs() < 1e-6);
        assert_eq!(preference(&[]), None);
        // A view the same day as a like counts VIEW_WEIGHT of it.
        let p = preference(&[(day, 1.0, vec![1.0, 0.0]), (day, VIEW_WEIGHT, vec![0.0, 1.0])]).unwrap();
        assert!((p[1] / p[0] - VIEW_WEIGHT as f32).abs() < 1e-4, "{p:?}");
    }

    #[test]
    fn only_public_ready_videos_are_listed() {
        let change = |visibility: &str, status: &str| events::VideoChanged {
            visibility: visibility.into(),
            status: status.into(),
            ..Default::default()
        };
        assert_eq!(Listing::of(&change("PUBLIC", "READY")), Listing::Listed);
        for (visibility, status) in [
            ("PUBLIC", "PROCESSING"),
            ("PUBLIC", "FAILED"),
            ("PUBLIC", "AWAITING_UPLOAD"),
            ("UNLISTED", "READY"),
            ("PRIVATE", "READY"),
            ("public", "ready"),
            ("", ""),
        ] {
            assert_eq!(Listing::of(&change(visibility, status)), Listing::Hidden, "{visibility} {status}");
        }
    }

    #[test]
    fn spares_stay_within_what_media_is_asked_at_once() {
        assert_eq!(with_spares(0), 0);
        assert_eq!(with_spares(1), 6);
        assert_eq!(with_spares(10), 15);
        assert_eq!(with_spares(MAX_FIRST), 125);
        // media's ListedVideoIds takes at most 200 ids.
        assert!(with_spares(MAX_FIRST) <= 200);
    }

    #[test]
    fn a_video_text_is_title_tags_and_description() {
        let tags = vec!["cats".to_string(), "music".to_string()];
        assert_eq!(video_text(" Cat piano ", &tags, " A cat plays. "), "Cat piano. cats, music. A cat plays.");
        assert_eq!(video_text("Only", &[], ""), "Only");
    }
}
