//! What the activity service does: playback heartbeats become sessions, views (the counting
//! rule below), daily watch time, retention and the viewer's history; history is read,
//! resumed, removed, cleared and paused. Every operation once, for every transport.
//!
//! **A view counts** once a viewer has watched ≥ `view_after_seconds` (30 s) of a video, or
//! ≥ 50% of a video shorter than twice that, once per viewer and video per
//! `view_window_minutes` (30). Watched time is what the player reports, bounded by the wall
//! clock between two heartbeats of its session (at 2× speed, + `heartbeat_slack_seconds`, 5;
//! a session's first heartbeat at most the slack), so a flood of heartbeats, a fresh session
//! per request or an absurd increment cannot make a view before its time.

use crate::config::ActivityConfig;
use crate::lookup::Lookup;
use crate::store::{self, BUCKETS, Beat};
use crate::totals::Totals;
use flick_kit::AppError;
use flick_kit::identity::Caller;
use flick_kit::page::{Page, page_size};
use flick_platform::bus::envelope;
use flick_platform::cache::Cache;
use flick_platform::db::sea_orm::DatabaseConnection;
use flick_platform::documents::{DocError, Documents};
use flick_platform::outbox::{self, Relay};
use flick_proto::events::v1 as events;
use prost::Message as _;
use std::sync::Arc;
use std::time::Duration;

/// Fastest playback rate the wall-clock bound allows.
const MAX_RATE: f64 = 2.0;
/// A heartbeat reporting more than an hour at once is not a player's.
const ABSURD_INCREMENT_SECONDS: f64 = 3600.0;
/// Positions past this are not a video's (a day; videos are shorter, the duration clamps).
const MAX_POSITION_SECONDS: f64 = 86_400.0;
/// Under this share watched, a history entry is "continue watching".
const CONTINUE_BELOW: f64 = 0.9;
/// Consecutive pages of videos the caller may not watch that a list skips before it answers
/// an empty page (with more to come).
pub(crate) const HIDDEN_PAGES: usize = 5;
/// Concurrent heartbeats of one session: how many times to read again.
const ATTEMPTS: usize = 4;

/// Declares a state enum with its one text form (stored, and in the events).
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

text_enum! {
    /// Media's visibility of a video, as its events carry it.
    pub enum Visibility {
        Public = "PUBLIC",
        Unlisted = "UNLISTED",
        Private = "PRIVATE",
    }
}

/// What the activity service knows of a video.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub id: String,
    pub owner: String,
    pub visibility: Visibility,
    pub duration_seconds: Option<f64>,
}

impl VideoInfo {
    /// Its owner always; others when it is public or unlisted.
    pub fn watchable_by(&self, caller: &Caller) -> bool {
        self.visibility != Visibility::Private || caller.user_id.is_some_and(|u| u.to_string() == self.owner)
    }
}

/// A player session of one viewer on one video.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub key: String,
    pub video_id: String,
    pub sequence: i64,
    pub position_seconds: f64,
    pub max_position_seconds: f64,
    pub watched_seconds: f64,
    pub updated_at_ms: i64,
    pub counted: bool,
}

/// What a player reports, every few seconds while it plays.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub video_id: String,
    /// A random id the player makes for one playback (8–64 letters, digits, `-`, `_`).
    pub session_id: String,
    /// Increases with each heartbeat of the session: a retried or late one changes nothing.
    pub sequence: i64,
    pub position_seconds: f64,
    /// Seconds watched since the previous heartbeat.
    pub watched_seconds: f64,
    pub rendition: Option<String>,
}

/// What one heartbeat did.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// False for a retried or late heartbeat (its sequence number was seen).
    pub applied: bool,
    /// This heartbeat made the session's view count.
    pub view_counted: bool,
    pub position_seconds: f64,
    /// The session's watched seconds so far (after clamping).
    pub watched_seconds: f64,
}

/// A user's entry in their watch history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub video_id: String,
    pub position_seconds: f64,
    /// Position over duration; unknown while the duration is.
    pub watched_fraction: Option<f64>,
    pub updated_at_ms: i64,
    pub(crate) sort_key: String,
}

impl HistoryEntry {
    pub fn cursor(&self) -> String {
        encode_cursor(&self.sort_key)
    }
}

/// A list's keyset cursor: its sort key in opaque base64 (history, playlists, their items).
pub(crate) fn encode_cursor(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

pub(crate) fn decode_cursor(after: Option<&str>) -> Result<Option<String>, AppError> {
    use base64::Engine;
    let Some(c) = after else { return Ok(None) };
    let bad = || AppError::bad_input("invalid cursor").with_field("after", "is not a cursor from this list");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    String::from_utf8(raw).map(Some).map_err(|_| bad())
}

pub(crate) fn doc_error(e: DocError) -> AppError {
    match e {
        DocError::Unavailable(_) => AppError::unavailable(e),
        _ => AppError::internal(e),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How long a heartbeat may use a video's owner, visibility and duration read before (events
/// drop the copy at once in this process; another replica's copy lags by at most this).
const VIDEO_COPY_TTL: Duration = Duration::from_secs(5);

/// A session's copy is dropped after this long without a heartbeat (a paused player reads the
/// store again when it resumes).
const SESSION_COPY_IDLE: Duration = Duration::from_secs(120);

/// The activity service's handle (cheap to clone).
#[derive(Clone)]
pub struct Activity {
    docs: Documents,
    db: DatabaseConnection,
    relay: Relay,
    cache: Cache,
    config: ActivityConfig,
    /// Videos heartbeats were for lately: a player reports every few seconds, the video's
    /// details rarely change.
    videos: moka::future::Cache<String, VideoInfo>,
    /// Each playing session as this process last wrote it: the next heartbeat's conditional
    /// update starts from it instead of reading the session first. A stale copy (the session
    /// moved on through another replica, or was deleted) makes that update not match, and the
    /// heartbeat reads the store and tries again, so the copy is only ever a guess.
    sessions: moka::sync::Cache<String, Session>,
    /// The daily and retention sums, written once a second ([`Totals`]).
    totals: Arc<Totals>,
    /// Media and the transcoder, asked about videos no event has told of (none configured:
    /// such a video is unknown until its events arrive).
    lookup: Option<Lookup>,
}

impl Activity {
    pub fn new(docs: Documents, db: DatabaseConnection, relay: Relay, cache: Cache, config: ActivityConfig) -> Self {
        let videos = moka::future::Cache::builder().max_capacity(100_000).time_to_live(VIDEO_COPY_TTL).build();
        let sessions = moka::sync::Cache::builder().max_capacity(200_000).time_to_idle(SESSION_COPY_IDLE).build();
        Self { docs, db, relay, cache, config, videos, sessions, totals: Arc::default(), lookup: None }
    }

    /// Asks media at `media_url` (and the transcoder, for durations) about videos that no
    /// event has told of: videos older than this service, or whose events are late.
    pub fn with_lookup(mut self, media_url: &str, transcoder_url: Option<&str>) -> anyhow::Result<Self> {
        self.lookup = Some(Lookup::new(media_url, transcoder_url)?);
        Ok(self)
    }

    /// Writes the aggregates once a second until shutdown, then what is left.
    pub fn totals_task(&self) -> flick_kit::server::BackgroundTask {
        let (totals, docs) = (self.totals.clone(), self.docs.clone());
        Box::new(move |shutdown| Box::pin(async move { totals.run(docs, shutdown).await }))
    }

    /// Writes the aggregates summed so far (a report reads its own process's heartbeats).
    pub(crate) async fn flush_totals(&self) -> Result<(), AppError> {
        self.totals.flush(&self.docs).await.map_err(doc_error)
    }

    /// The video was deleted: nothing more is added to its aggregates from this process.
    pub(crate) fn forget_totals(&self, video_id: &str) {
        self.totals.forget(video_id);
    }

    /// The video, from the recent copies, the store, or media when no event has told of it
    /// (a video not known is not kept). Whether `caller` may watch it is the caller's check.
    pub(crate) async fn video(&self, caller: &Caller, id: &str) -> Result<Option<VideoInfo>, AppError> {
        if let Some(v) = self.videos.get(id).await {
            return Ok(Some(v));
        }
        let mut found = store::video(&self.docs, id).await.map_err(doc_error)?;
        if found.is_none()
            && let Some(lookup) = &self.lookup
            && let Some(v) = lookup.video(caller, id).await?
        {
            // Kept unless an event told of the video meanwhile (its copy, or a tombstone, wins).
            found = if store::remember_video(&self.docs, &v).await.map_err(doc_error)? {
                tracing::info!(video.id = %id, "a video no event had told of, learnt from media");
                Some(v)
            } else {
                store::video(&self.docs, id).await.map_err(doc_error)?
            };
        }
        if let Some(v) = &found {
            self.videos.insert(id.to_string(), v.clone()).await;
        }
        Ok(found)
    }

    /// An event changed the video: the next heartbeat reads it again.
    pub(crate) async fn forget_video(&self, id: &str) {
        self.videos.invalidate(id).await;
    }

    pub fn documents(&self) -> &Documents {
        &self.docs
    }

    pub fn config(&self) -> &ActivityConfig {
        &self.config
    }

    /// Does a watch of `watched` seconds make a view of a video of `duration`?
    fn is_a_view(&self, watched: f64, duration: Option<f64>) -> bool {
        let after = self.config.view_after_seconds;
        watched >= after || duration.is_some_and(|d| d > 0.0 && d < 2.0 * after && watched >= d / 2.0)
    }

    /// Records one heartbeat of `viewer` ("user:<id>", "addr:<pseudonym>" or
    /// "session:<id>", [`viewer_key`]).
    pub async fn record(&self, caller: &Caller, viewer: &str, hb: &Heartbeat) -> Result<Recorded, AppError> {
        validate(hb)?;
        self.admit(viewer, &hb.session_id).await?;
        self.record_admitted(caller, viewer, hb).await
    }

    /// A batch of heartbeats (a player sending what it kept while offline): each session in it
    /// counts once against the rate limit, then every heartbeat is recorded in order. One
    /// result per heartbeat.
    pub async fn record_batch(
        &self,
        caller: &Caller,
        batch: &[(String, Heartbeat)],
    ) -> Vec<Result<Recorded, AppError>> {
        let mut admitted: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        let mut results = Vec::with_capacity(batch.len());
        for (viewer, hb) in batch {
            if let Err(e) = validate(hb) {
                results.push(Err(e));
                continue;
            }
            let key = format!("{viewer}|{}", hb.session_id);
            let admission = match admitted.get(&key) {
                Some(a) => *a,
                None => {
                    let a = self.admit(viewer, &hb.session_id).await.is_ok();
                    admitted.insert(key, a);
                    a
                }
            };
            results.push(if admission {
                self.record_admitted(caller, viewer, hb).await
            } else {
                Err(AppError::rate_limited(1))
            });
        }
        results
    }

    /// The per-session rate limit (`heartbeats_per_second`); without the cache, no limit.
    async fn admit(&self, viewer: &str, session_id: &str) -> Result<(), AppError> {
        let key = format!("activity:beats:{viewer}|{session_id}");
        let per_second = self.config.heartbeats_per_second;
        match self.cache.rate_limit(&key, per_second, Duration::from_secs(1)).await {
            Ok(d) if !d.allowed => Err(AppError::rate_limited(1)),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "cache unavailable: heartbeats not rate limited");
                Ok(())
            }
        }
    }

    async fn record_admitted(&self, caller: &Caller, viewer: &str, hb: &Heartbeat) -> Result<Recorded, AppError> {
        let key = format!("{viewer}|{}", hb.session_id);
        let video = self
            .video(caller, &hb.video_id)
            .await?
            .filter(|v| v.watchable_by(caller))
            .ok_or_else(|| AppError::not_found("no such video").with_field("videoId", "no such video"))?;
        let position = match video.duration_seconds {
            Some(d) => hb.position_seconds.min(d),
            None => hb.position_seconds,
        };
        let user = caller.user_id.map(|u| u.to_string());
        let (previous, session, increment) = self.advance(&key, viewer, user.as_deref(), hb, position).await?;
        let Some(session) = session else {
            let p = previous.expect("an unapplied heartbeat has a session");
            return Ok(Recorded {
                applied: false,
                view_counted: false,
                position_seconds: p.position_seconds,
                watched_seconds: p.watched_seconds,
            });
        };
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let view_counted = self.count_view(&session, viewer, user.as_deref(), &video).await?;
        self.totals.add_to_day(&video, &day, increment, i64::from(view_counted), hb.rendition.as_deref());
        if let Some(duration) = video.duration_seconds.filter(|d| *d > 0.0) {
            let bucket = |p: f64| ((p / duration) * f64::from(BUCKETS)).floor().clamp(0.0, f64::from(BUCKETS)) as u32;
            let from = previous.as_ref().map_or(0, |p| bucket(p.max_position_seconds) + 1);
            self.totals.add_to_retention(&video, from, bucket(session.max_position_seconds));
        }
        if let Some(user) = &user
            && !store::history_paused(&self.docs, user).await.map_err(doc_error)?
        {
            let fraction = video.duration_seconds.filter(|d| *d > 0.0).map(|d| (position / d).clamp(0.0, 1.0));
            store::save_history(&self.docs, user, &video.id, position, fraction, session.updated_at_ms)
                .await
                .map_err(doc_error)?;
        }
        Ok(Recorded {
            applied: true,
            view_counted,
            position_seconds: session.position_seconds,
            watched_seconds: session.watched_seconds,
        })
    }

    /// Moves the session forward; `(previous, None, 0)` when the heartbeat was seen before.
    async fn advance(
        &self,
        key: &str,
        viewer: &str,
        user: Option<&str>,
        hb: &Heartbeat,
        position: f64,
    ) -> Result<(Option<Session>, Option<Session>, f64), AppError> {
        let slack = self.config.heartbeat_slack_seconds;
        for attempt in 0..ATTEMPTS {
            let previous = match self.sessions.get(key).filter(|_| attempt == 0) {
                Some(copy) => Some(copy),
                None => store::session(&self.docs, key).await.map_err(doc_error)?,
            };
            if let Some(p) = &previous {
                if p.video_id != hb.video_id {
                    return Err(AppError::bad_input("this session is another video's")
                        .with_field("sessionId", "belongs to another video"));
                }
                if hb.sequence <= p.sequence {
                    return Ok((previous, None, 0.0));
                }
            }
            let now = now_ms();
            let bound = match &previous {
                Some(p) => ((now - p.updated_at_ms).max(0) as f64 / 1000.0) * MAX_RATE + slack,
                None => slack,
            };
            let increment = hb.watched_seconds.min(bound);
            let beat = Beat {
                viewer,
                user,
                video_id: &hb.video_id,
                sequence: hb.sequence,
                position_seconds: position,
                watched_increment: increment,
                rendition: hb.rendition.as_deref(),
                now_ms: now,
                expires_at: chrono::Utc::now() + chrono::Duration::days(self.config.session_retention_days),
            };
            match store::advance_session(&self.docs, key, previous.as_ref(), &beat).await {
                Ok(Some(session)) => {
                    self.sessions.insert(key.to_string(), session.clone());
                    return Ok((previous, Some(session), increment));
                }
                Ok(None) => self.sessions.invalidate(key),
                Err(e) => {
                    self.sessions.invalidate(key);
                    return Err(doc_error(e));
                }
            }
        }
        Err(AppError::conflict("too many concurrent heartbeats of one session; send them in order"))
    }

    /// Counts the session's view when it has become one: the session claims it (once), the
    /// viewer is marked for the window (a second session within it does not count), and
    /// `video.viewed` goes out through the outbox. If the event cannot be recorded the marks
    /// are undone and the heartbeat fails, so the player's retry counts it.
    async fn count_view(
        &self,
        session: &Session,
        viewer: &str,
        user: Option<&str>,
        video: &VideoInfo,
    ) -> Result<bool, AppError> {
        if session.counted || !self.is_a_view(session.watched_seconds, video.duration_seconds) {
            return Ok(false);
        }
        if !store::claim_view(&self.docs, &session.key, true).await.map_err(doc_error)? {
            return Ok(false);
        }
        let until = chrono::Utc::now() + chrono::Duration::minutes(self.config.view_window_minutes as i64);
        if !store::mark_viewed(&self.docs, viewer, user, &video.id, until).await.map_err(doc_error)? {
            return Ok(false);
        }
        let payload = events::VideoViewed {
            video_id: video.id.clone(),
            viewer: viewer.to_string(),
            watched_seconds: session.watched_seconds,
        };
        let env = envelope("video.viewed", &video.id, crate::NAME, payload.encode_to_vec());
        if let Err(e) = outbox::record(&self.db, &env).await {
            let _ = store::unmark_viewed(&self.docs, viewer, &video.id).await;
            let _ = store::claim_view(&self.docs, &session.key, false).await;
            return Err(AppError::unavailable(e));
        }
        self.relay.notify();
        metrics::counter!("activity_views_total").increment(1);
        Ok(true)
    }

    /// The caller's position in each of these videos (signed in; empty for anonymous callers).
    pub async fn progress(&self, caller: &Caller, video_ids: &[String]) -> Result<Vec<HistoryEntry>, AppError> {
        let Some(user) = caller.user_id else { return Ok(Vec::new()) };
        store::history_of_videos(&self.docs, &user.to_string(), video_ids).await.map_err(doc_error)
    }

    /// The caller's history, newest first, one entry per video; only videos they may still
    /// watch. `unfinished`: "continue watching" (started, under 90% watched).
    pub async fn history(
        &self,
        caller: &Caller,
        after: Option<&str>,
        first: Option<i32>,
        unfinished: bool,
    ) -> Result<Page<HistoryEntry>, AppError> {
        let user = caller.require_user()?.to_string();
        let limit = page_size(first, 20)?;
        let mut after = decode_cursor(after)?;
        let share = unfinished.then_some(CONTINUE_BELOW);
        // A page whose videos the caller may no longer watch is skipped (up to a few), so a
        // page with more to come is never empty.
        for _ in 0..HIDDEN_PAGES {
            let rows = store::history_page(&self.docs, &user, after.as_deref(), limit as u64 + 1, share)
                .await
                .map_err(doc_error)?;
            let page = Page::from_rows(rows, limit);
            let last = page.items.last().map(|e| e.sort_key.clone());
            let ids: Vec<String> = page.items.iter().map(|e| e.video_id.clone()).collect();
            let visible = self.watchable(caller, &ids).await?;
            let items: Vec<HistoryEntry> = page.items.into_iter().filter(|e| visible.contains(&e.video_id)).collect();
            if !items.is_empty() || !page.has_next || limit == 0 {
                return Ok(Page { items, has_next: page.has_next });
            }
            after = last;
        }
        Ok(Page { items: Vec::new(), has_next: true })
    }

    /// Which of these videos the caller may watch.
    pub(crate) async fn watchable(
        &self,
        caller: &Caller,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, AppError> {
        Ok(store::videos(&self.docs, ids)
            .await
            .map_err(doc_error)?
            .into_iter()
            .filter(|v| v.watchable_by(caller))
            .map(|v| v.id)
            .collect())
    }

    pub async fn remove_from_history(&self, caller: &Caller, video_id: &str) -> Result<bool, AppError> {
        let user = caller.require_user()?.to_string();
        store::remove_history(&self.docs, &user, video_id).await.map_err(doc_error)
    }

    pub async fn clear_history(&self, caller: &Caller) -> Result<u64, AppError> {
        let user = caller.require_user()?.to_string();
        store::clear_history(&self.docs, &user).await.map_err(doc_error)
    }

    pub async fn history_paused(&self, caller: &Caller) -> Result<bool, AppError> {
        let user = caller.require_user()?.to_string();
        store::history_paused(&self.docs, &user).await.map_err(doc_error)
    }

    /// While paused, heartbeats still count views but add nothing to the history.
    pub async fn set_history_paused(&self, caller: &Caller, paused: bool) -> Result<bool, AppError> {
        let user = caller.require_user()?.to_string();
        store::set_history_paused(&self.docs, &user, paused).await.map_err(doc_error)?;
        Ok(paused)
    }
}

fn validate(hb: &Heartbeat) -> Result<(), AppError> {
    let bad =
        |field: &str, problem: &str| Err(AppError::bad_input(format!("{field} {problem}")).with_field(field, problem));
    if uuid::Uuid::parse_str(&hb.video_id).is_err() {
        return bad("videoId", "is not a video id");
    }
    let id_ok = (8..=64).contains(&hb.session_id.len())
        && hb.session_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !id_ok {
        return bad("sessionId", "must be 8 to 64 letters, digits, - or _");
    }
    if hb.sequence < 0 {
        return bad("sequence", "must not be negative");
    }
    if !hb.position_seconds.is_finite() || hb.position_seconds < 0.0 || hb.position_seconds > MAX_POSITION_SECONDS {
        return bad("positionSeconds", "must be between 0 and 86400");
    }
    if !hb.watched_seconds.is_finite() || hb.watched_seconds < 0.0 {
        return bad("watchedSeconds", "must not be negative");
    }
    if hb.watched_seconds > ABSURD_INCREMENT_SECONDS {
        return bad("watchedSeconds", "is more than one heartbeat can report (at most 3600)");
    }
    if let Some(r) = &hb.rendition
        && (r.is_empty() || r.len() > 32 || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return bad("rendition", "must be 1 to 32 letters, digits or _ (e.g. 720p)");
    }
    Ok(())
}

/// Who is watching: the user, else a keyed pseudonym of the client's address (so one viewer
/// deduplicates across sessions without the address being stored), else the session alone.
pub fn viewer_key(caller: &Caller, address_pseudonym: Option<String>, session_id: &str) -> String {
    match (caller.user_id, address_pseudonym) {
        (Some(user), _) => format!("user:{user}"),
        (None, Some(p)) => format!("addr:{p}"),
        (None, None) => format!("session:{session_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat() -> Heartbeat {
        Heartbeat {
            video_id: uuid::Uuid::now_v7().to_string(),
            session_id: "abcdefgh".into(),
            sequence: 1,
            position_seconds: 10.0,
            watched_seconds: 5.0,
            rendition: Some("720p".into()),
        }
    }

    #[test]
    fn heartbeats_are_checked_field_by_field() {
        assert!(validate(&beat()).is_ok());
        type Change = Box<dyn Fn(&mut Heartbeat)>;
        let cases: Vec<(&str, Change)> = vec![
            ("videoId", Box::new(|h| h.video_id = "x".into())),
            ("sessionId", Box::new(|h| h.session_id = "short".into())),
            ("sessionId", Box::new(|h| h.session_id = "has spaces in".into())),
            ("sequence", Box::new(|h| h.sequence = -1)),
            ("positionSeconds", Box::new(|h| h.position_seconds = f64::NAN)),
            ("positionSeconds", Box::new(|h| h.position_seconds = -1.0)),
            ("watchedSeconds", Box::new(|h| h.watched_seconds = -0.5)),
            ("watchedSeconds", Box::new(|h| h.watched_seconds = 1e9)),
            ("rendition", Box::new(|h| h.rendition = Some("7 20p".into()))),
        ];
        for (field, change) in cases {
            let mut h = beat();
            change(&mut h);
            let e = validate(&h).unwrap_err();
            assert!(e.message().starts_with(field), "{field}: {}", e.message());
        }
    }

    #[test]
    fn viewers_are_users_else_addresses_else_sessions() {
        let user = uuid::Uuid::now_v7();
        let signed_in = Caller { user_id: Some(user), ..Caller::anonymous() };
        assert_eq!(viewer_key(&signed_in, Some("p".into()), "s"), format!("user:{user}"));
        assert_eq!(viewer_key(&Caller::anonymous(), Some("p".into()), "s"), "addr:p");
        assert_eq!(viewer_key(&Caller::anonymous(), None, "s"), "session:s");
    }
}
