//! The activity's subgraph: `Mutation.recordPlayback`, `Video.viewerProgress`, the watch
//! history (`Query.watchHistory`, `Query.continueWatching`) and its controls. The `Video`
//! entity belongs to media; this subgraph only contributes fields to it. Resolvers convert
//! and call `Activity`.

use crate::analytics::{self, Range};
use crate::domain::{self, Activity, Heartbeat, HistoryEntry, Recorded, viewer_key};
use crate::playlists::{self, PlaylistChange};
use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{
    ComplexObject, Context, EmptySubscription, Enum, ID, InputObject, Object, Result, Schema, SimpleObject,
};
use chrono::{DateTime, Utc};
use flick_kit::config::GraphqlConfig;
use flick_kit::graphql::CostCheck;
use flick_kit::graphql::caller;
use std::collections::HashMap;

pub type ActivitySchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema; `activity` is `None` only to print the SDL offline.
pub fn schema(cfg: &GraphqlConfig, check: CostCheck, activity: Option<Activity>) -> ActivitySchema {
    let mut builder = flick_kit::graphql::configure(Schema::build(Query, Mutation, EmptySubscription), cfg, check);
    if let Some(a) = activity {
        builder = builder.data(flick_kit::graphql::loader(Positions(a.clone()))).data(a);
    }
    builder.finish()
}

fn activity<'a>(ctx: &'a Context<'_>) -> &'a Activity {
    ctx.data_unchecked::<Activity>()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The viewer's positions in the videos of one moment (a page of a feed), one read per viewer.
pub struct Positions(Activity);

impl Loader<(String, String)> for Positions {
    type Value = HistoryEntry;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[(String, String)]) -> Result<HashMap<(String, String), HistoryEntry>, Self::Error> {
        let mut by_user: HashMap<&str, Vec<String>> = HashMap::new();
        for (user, video) in keys {
            by_user.entry(user).or_default().push(video.clone());
        }
        let mut found = HashMap::new();
        for (user, videos) in by_user {
            let caller = flick_kit::Caller { user_id: user.parse().ok(), ..flick_kit::Caller::anonymous() };
            for entry in self.0.progress(&caller, &videos).await? {
                found.insert((user.to_string(), entry.video_id.clone()), entry);
            }
        }
        Ok(found)
    }
}

/// A video (media's entity), by id.
pub struct Video {
    pub id: ID,
}

#[Object]
impl Video {
    #[graphql(shareable)]
    async fn id(&self) -> &ID {
        &self.id
    }

    /// Audience figures of the video, for its owner only (others: FORBIDDEN).
    async fn analytics(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "AnalyticsRange::Last28Days")] range: AnalyticsRange,
    ) -> Result<VideoAnalytics> {
        Ok(activity(ctx).video_report(caller(ctx), &self.id, range.into()).await?.into())
    }

    /// Where the signed-in viewer stopped watching this video; null for anonymous viewers,
    /// videos not watched, and while history is cleared of it.
    async fn viewer_progress(&self, ctx: &Context<'_>) -> Result<Option<ViewerProgress>> {
        let Some(user) = caller(ctx).user_id else { return Ok(None) };
        let loader = ctx.data_unchecked::<DataLoader<Positions>>();
        Ok(loader.load_one((user.to_string(), self.id.to_string())).await?.map(ViewerProgress::from))
    }
}

/// A viewer's place in a video.
#[derive(SimpleObject)]
pub struct ViewerProgress {
    pub position_seconds: f64,
    /// Position over duration, 0–1; null until the duration is known.
    pub watched_fraction: Option<f64>,
    pub updated_at: DateTime<Utc>,
}

impl From<HistoryEntry> for ViewerProgress {
    fn from(e: HistoryEntry) -> Self {
        Self {
            position_seconds: e.position_seconds,
            watched_fraction: e.watched_fraction,
            updated_at: time(e.updated_at_ms),
        }
    }
}

/// One video in the viewer's history.
pub struct HistoryItem(HistoryEntry);

#[Object]
impl HistoryItem {
    async fn video(&self) -> Video {
        Video { id: ID(self.0.video_id.clone()) }
    }
    async fn position_seconds(&self) -> f64 {
        self.0.position_seconds
    }
    /// Position over duration, 0–1; null until the duration is known.
    async fn watched_fraction(&self) -> Option<f64> {
        self.0.watched_fraction
    }
    /// When the viewer last watched it.
    async fn updated_at(&self) -> DateTime<Utc> {
        time(self.0.updated_at_ms)
    }
}

type History = Connection<String, HistoryItem, EmptyFields, EmptyFields>;

async fn history(ctx: &Context<'_>, first: Option<i32>, after: Option<String>, unfinished: bool) -> Result<History> {
    let page = activity(ctx).history(caller(ctx), after.as_deref(), first, unfinished).await?;
    let mut conn = Connection::new(after.is_some(), page.has_next);
    conn.edges.extend(page.items.into_iter().map(|e| Edge::new(e.cursor(), HistoryItem(e))));
    Ok(conn)
}

/// How far back analytics look, ending today (UTC).
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[allow(clippy::enum_variant_names)] // LAST_7_DAYS, … in the schema
pub enum AnalyticsRange {
    Last7Days,
    Last28Days,
    Last90Days,
}

impl From<AnalyticsRange> for Range {
    fn from(r: AnalyticsRange) -> Self {
        match r {
            AnalyticsRange::Last7Days => Range::Last7Days,
            AnalyticsRange::Last28Days => Range::Last28Days,
            AnalyticsRange::Last90Days => Range::Last90Days,
        }
    }
}

/// One day's figures.
#[derive(SimpleObject)]
pub struct DailyFigures {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub views: i32,
    pub watch_seconds: f64,
}

/// The share of sessions still watching at a point of the video.
#[derive(SimpleObject)]
pub struct RetentionPoint {
    /// 0, 5, …, 100: how far into the video.
    pub percent: i32,
    /// Of the sessions that started, the share that got this far (0–1).
    pub share: f64,
}

/// How much of the watch time a rendition played.
#[derive(SimpleObject)]
pub struct RenditionShare {
    pub rendition: String,
    pub watch_seconds: f64,
    /// Of the range's watch time (0–1).
    pub share: f64,
}

/// A video's audience in a range.
#[derive(SimpleObject)]
pub struct VideoAnalytics {
    pub views: i32,
    pub watch_seconds: f64,
    /// Watch time over views; null without views.
    pub average_view_seconds: Option<f64>,
    /// Every day of the range, oldest first.
    pub days: Vec<DailyFigures>,
    /// Every 5% of the duration, since the video's first playback; empty until one started.
    pub retention: Vec<RetentionPoint>,
    /// Most watched first.
    pub renditions: Vec<RenditionShare>,
}

/// A video of the channel and its figures in the range.
#[derive(SimpleObject)]
pub struct VideoFigures {
    pub video: Video,
    pub views: i32,
    pub watch_seconds: f64,
}

/// The caller's channel: all their videos together, and the most viewed.
#[derive(SimpleObject)]
pub struct ChannelAnalytics {
    pub views: i32,
    pub watch_seconds: f64,
    pub average_view_seconds: Option<f64>,
    pub days: Vec<DailyFigures>,
    /// Most viewed first, at most 10.
    pub top_videos: Vec<VideoFigures>,
}

fn count(n: i64) -> i32 {
    n.clamp(0, i64::from(i32::MAX)) as i32
}

fn days(days: Vec<analytics::DayFigures>) -> Vec<DailyFigures> {
    days.into_iter()
        .map(|d| DailyFigures { day: d.day, views: count(d.views), watch_seconds: d.watch_seconds })
        .collect()
}

impl From<analytics::VideoReport> for VideoAnalytics {
    fn from(r: analytics::VideoReport) -> Self {
        Self {
            views: count(r.views),
            watch_seconds: r.watch_seconds,
            average_view_seconds: r.average_view_seconds,
            days: days(r.days),
            retention: r
                .retention
                .into_iter()
                .map(|p| RetentionPoint { percent: p.percent as i32, share: p.share })
                .collect(),
            renditions: r
                .renditions
                .into_iter()
                .map(|x| RenditionShare { rendition: x.rendition, watch_seconds: x.watch_seconds, share: x.share })
                .collect(),
        }
    }
}

impl From<analytics::ChannelReport> for ChannelAnalytics {
    fn from(r: analytics::ChannelReport) -> Self {
        Self {
            views: count(r.views),
            watch_seconds: r.watch_seconds,
            average_view_seconds: r.average_view_seconds,
            days: days(r.days),
            top_videos: r
                .top_videos
                .into_iter()
                .map(|v| VideoFigures {
                    video: Video { id: ID(v.video_id) },
                    views: count(v.views),
                    watch_seconds: v.watch_seconds,
                })
                .collect(),
        }
    }
}

/// Who may see a playlist: as videos' visibility.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "Visibility")]
pub enum VisibilityGql {
    Public,
    Unlisted,
    Private,
}

impl From<VisibilityGql> for domain::Visibility {
    fn from(v: VisibilityGql) -> Self {
        match v {
            VisibilityGql::Public => domain::Visibility::Public,
            VisibilityGql::Unlisted => domain::Visibility::Unlisted,
            VisibilityGql::Private => domain::Visibility::Private,
        }
    }
}

impl From<domain::Visibility> for VisibilityGql {
    fn from(v: domain::Visibility) -> Self {
        match v {
            domain::Visibility::Public => VisibilityGql::Public,
            domain::Visibility::Unlisted => VisibilityGql::Unlisted,
            domain::Visibility::Private => VisibilityGql::Private,
        }
    }
}

/// A user (accounts' entity); this subgraph adds their playlists.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct User {
    pub id: ID,
}

#[ComplexObject]
impl User {
    /// The user's playlists, newest first (Watch later first): all of them for the user, the
    /// public ones for others. At most 100 per page.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn playlists(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<Playlists> {
        playlist_page(ctx, &self.id, first, after).await
    }
}

async fn playlist_page(ctx: &Context<'_>, owner: &str, first: Option<i32>, after: Option<String>) -> Result<Playlists> {
    let page = activity(ctx).playlists_of(caller(ctx), owner, after.as_deref(), first).await?;
    let mut conn = Connection::new(after.is_some(), page.has_next);
    conn.edges.extend(page.items.into_iter().map(|p| Edge::new(p.cursor(), Playlist(p))));
    Ok(conn)
}

type Playlists = Connection<String, Playlist, EmptyFields, EmptyFields>;
type PlaylistItems = Connection<String, PlaylistItem, EmptyFields, EmptyFields>;

/// An ordered list of videos; "Watch later" is each user's built-in, private one.
pub struct Playlist(playlists::Playlist);

#[Object]
impl Playlist {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn visibility(&self) -> VisibilityGql {
        self.0.visibility.into()
    }
    async fn owner(&self) -> User {
        User { id: ID(self.0.owner.clone()) }
    }
    /// Every item, also those the viewer may not watch (which `items` leaves out).
    async fn item_count(&self) -> i32 {
        self.0.item_count.clamp(0, i64::from(i32::MAX)) as i32
    }
    async fn is_watch_later(&self) -> bool {
        self.0.watch_later
    }
    async fn created_at(&self) -> DateTime<Utc> {
        time(self.0.created_at_ms)
    }
    /// The videos in order, only those the viewer may watch. At most 100 per page.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn items(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<PlaylistItems> {
        let page = activity(ctx).playlist_items(caller(ctx), &self.0.id, after.as_deref(), first).await?;
        let mut conn = Connection::new(after.is_some(), page.has_next);
        conn.edges.extend(page.items.into_iter().map(|i| Edge::new(i.cursor(), PlaylistItem(i))));
        Ok(conn)
    }
}

/// A video in a playlist.
pub struct PlaylistItem(playlists::PlaylistItem);

#[Object]
impl PlaylistItem {
    async fn video(&self) -> Video {
        Video { id: ID(self.0.video_id.clone()) }
    }
    async fn added_at(&self) -> DateTime<Utc> {
        time(self.0.added_at_ms)
    }
}

#[derive(InputObject)]
pub struct CreatePlaylistInput {
    /// 1–150 characters.
    pub title: String,
    /// At most 5,000 characters.
    pub description: Option<String>,
    /// PRIVATE when not given.
    pub visibility: Option<VisibilityGql>,
}

/// What to change; absent fields stay.
#[derive(InputObject)]
pub struct UpdatePlaylistInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<VisibilityGql>,
}

/// Media's owner dashboard (an entity keyed by its owner); this subgraph adds the channel's
/// audience figures to it.
pub struct Dashboard {
    pub owner_id: ID,
}

#[Object]
impl Dashboard {
    async fn owner_id(&self) -> &ID {
        &self.owner_id
    }

    /// The owner's channel analytics (as `Query.channelAnalytics`); the owner only.
    async fn analytics(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "AnalyticsRange::Last28Days")] range: AnalyticsRange,
    ) -> Result<ChannelAnalytics> {
        let me = caller(ctx).require_user()?.to_string();
        if me != self.owner_id.as_str() {
            return Err(flick_kit::AppError::forbidden("only the owner sees a dashboard").into());
        }
        Ok(activity(ctx).channel_report(caller(ctx), range.into()).await?.into())
    }
}

pub struct Query;

#[Object]
impl Query {
    #[graphql(entity)]
    async fn find_video_by_id(&self, id: ID) -> Video {
        Video { id }
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> User {
        User { id }
    }

    #[graphql(entity)]
    async fn find_dashboard_by_owner_id(&self, owner_id: ID) -> Dashboard {
        Dashboard { owner_id }
    }

    /// A playlist the caller may see (public and unlisted ones: anyone); null otherwise.
    async fn playlist(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Playlist>> {
        Ok(activity(ctx).playlist(caller(ctx), &id).await?.map(Playlist))
    }

    /// The signed-in user's "Watch later".
    async fn watch_later(&self, ctx: &Context<'_>) -> Result<Playlist> {
        Ok(Playlist(activity(ctx).watch_later(caller(ctx)).await?))
    }

    /// The signed-in user's playlists, newest first (Watch later first). At most 100 per page.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn my_playlists(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<Playlists> {
        let me = caller(ctx).require_user()?.to_string();
        playlist_page(ctx, &me, first, after).await
    }

    /// The signed-in viewer's watch history, newest first, one entry per video (only videos
    /// they may still watch). At most 100 per page.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn watch_history(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<History> {
        history(ctx, first, after, false).await
    }

    /// "Continue watching": history entries started and watched less than 90%, newest first.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn continue_watching(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<History> {
        history(ctx, first, after, true).await
    }

    /// The signed-in creator's channel: views and watch time per day, the top videos.
    async fn channel_analytics(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "AnalyticsRange::Last28Days")] range: AnalyticsRange,
    ) -> Result<ChannelAnalytics> {
        Ok(activity(ctx).channel_report(caller(ctx), range.into()).await?.into())
    }

    /// Whether the signed-in viewer's history is paused (nothing is added while it is).
    async fn history_paused(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(activity(ctx).history_paused(caller(ctx)).await?)
    }
}

/// A player's report, every few seconds while it plays (`POST /activity/heartbeat` takes the
/// same fields, in batches).
#[derive(InputObject)]
pub struct PlaybackInput {
    pub video_id: ID,
    /// A random id the player makes for one playback: 8–64 letters, digits, `-` or `_`.
    pub session_id: String,
    /// Increases with each report of the session; a report with a number already seen (a
    /// retry) changes nothing.
    pub sequence: i32,
    pub position_seconds: f64,
    /// Seconds watched since the previous report (bounded by the time between reports).
    pub watched_seconds: f64,
    /// The rendition playing, e.g. `720p`.
    pub rendition: Option<String>,
}

/// What a report did.
#[derive(SimpleObject)]
pub struct PlaybackRecorded {
    /// False for a retried or late report (its sequence number was seen).
    pub applied: bool,
    /// This report made the playback count as a view.
    pub view_counted: bool,
    pub position_seconds: f64,
    /// The session's watched seconds so far.
    pub watched_seconds: f64,
}

impl From<Recorded> for PlaybackRecorded {
    fn from(r: Recorded) -> Self {
        Self {
            applied: r.applied,
            view_counted: r.view_counted,
            position_seconds: r.position_seconds,
            watched_seconds: r.watched_seconds,
        }
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Records playback progress: views (≥ 30 s watched, or half of a video under a minute;
    /// once per viewer and video per 30 minutes), the viewer's resume position and history.
    /// Anonymous viewers are allowed.
    async fn record_playback(&self, ctx: &Context<'_>, input: PlaybackInput) -> Result<PlaybackRecorded> {
        let caller = caller(ctx);
        let pseudonym = flick_kit::graphql::client_address(ctx).map(flick_kit::identity::address_pseudonym);
        let viewer = viewer_key(caller, pseudonym, &input.session_id);
        let hb = Heartbeat {
            video_id: input.video_id.to_string(),
            session_id: input.session_id,
            sequence: i64::from(input.sequence),
            position_seconds: input.position_seconds,
            watched_seconds: input.watched_seconds,
            rendition: input.rendition,
        };
        Ok(activity(ctx).record(caller, &viewer, &hb).await?.into())
    }

    /// Removes a video from the viewer's history; false when it was not there.
    async fn remove_from_history(&self, ctx: &Context<'_>, video_id: ID) -> Result<bool> {
        Ok(activity(ctx).remove_from_history(caller(ctx), &video_id).await?)
    }

    /// Empties the viewer's history; returns how many entries went.
    async fn clear_history(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(activity(ctx).clear_history(caller(ctx)).await?.min(i32::MAX as u64) as i32)
    }

    async fn create_playlist(&self, ctx: &Context<'_>, input: CreatePlaylistInput) -> Result<Playlist> {
        let change = PlaylistChange {
            title: Some(input.title),
            description: input.description,
            visibility: input.visibility.map(Into::into),
        };
        Ok(Playlist(activity(ctx).create_playlist(caller(ctx), change).await?))
    }

    /// Owner only; Watch later keeps its title and stays private.
    async fn update_playlist(&self, ctx: &Context<'_>, id: ID, input: UpdatePlaylistInput) -> Result<Playlist> {
        let change = PlaylistChange {
            title: input.title,
            description: input.description,
            visibility: input.visibility.map(Into::into),
        };
        Ok(Playlist(activity(ctx).update_playlist(caller(ctx), &id, change).await?))
    }

    /// Owner only; Watch later cannot be deleted.
    async fn delete_playlist(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        Ok(activity(ctx).delete_playlist(caller(ctx), &id).await?)
    }

    /// Adds a video at the end (a video already there stays where it is). At most 5,000.
    async fn add_to_playlist(&self, ctx: &Context<'_>, playlist_id: ID, video_id: ID) -> Result<Playlist> {
        Ok(Playlist(activity(ctx).add_to_playlist(caller(ctx), &playlist_id, &video_id).await?))
    }

    async fn remove_from_playlist(&self, ctx: &Context<'_>, playlist_id: ID, video_id: ID) -> Result<Playlist> {
        Ok(Playlist(activity(ctx).remove_from_playlist(caller(ctx), &playlist_id, &video_id).await?))
    }

    /// Moves a video to `position` (0: first; past the end: last).
    async fn move_playlist_item(
        &self,
        ctx: &Context<'_>,
        playlist_id: ID,
        video_id: ID,
        position: i32,
    ) -> Result<Playlist> {
        Ok(Playlist(activity(ctx).move_item(caller(ctx), &playlist_id, &video_id, position).await?))
    }

    async fn add_to_watch_later(&self, ctx: &Context<'_>, video_id: ID) -> Result<Playlist> {
        let a = activity(ctx);
        let wl = a.watch_later(caller(ctx)).await?;
        Ok(Playlist(a.add_to_playlist(caller(ctx), &wl.id, &video_id).await?))
    }

    async fn remove_from_watch_later(&self, ctx: &Context<'_>, video_id: ID) -> Result<Playlist> {
        let a = activity(ctx);
        let wl = a.watch_later(caller(ctx)).await?;
        Ok(Playlist(a.remove_from_playlist(caller(ctx), &wl.id, &video_id).await?))
    }

    /// Pauses (or resumes) the viewer's history: while paused, watching adds nothing to it.
    async fn set_history_paused(&self, ctx: &Context<'_>, paused: bool) -> Result<bool> {
        Ok(activity(ctx).set_history_paused(caller(ctx), paused).await?)
    }
}
