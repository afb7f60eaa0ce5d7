//! The activity's subgraph: `Mutation.recordPlayback`, `Video.viewerProgress`, the watch
//! history (`Query.watchHistory`, `Query.continueWatching`) and its controls. The `Video`
//! entity belongs to media; this subgraph only contributes fields to it. Resolvers convert
//! and call `Activity`.

use crate::analytics::{self, Range};
use crate::domain::{Activity, Heartbeat, HistoryEntry, Recorded, viewer_key};
use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, EmptySubscription, Enum, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use flick_kit::config::GraphqlConfig;
use flick_kit::graphql::caller;
use std::collections::HashMap;

pub type ActivitySchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema; `activity` is `None` only to print the SDL offline.
pub fn schema(cfg: &GraphqlConfig, activity: Option<Activity>) -> ActivitySchema {
    let mut builder = flick_kit::graphql::configure(Schema::build(Query, Mutation, EmptySubscription), cfg);
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

pub struct Query;

#[Object]
impl Query {
    #[graphql(entity)]
    async fn find_video_by_id(&self, id: ID) -> Video {
        Video { id }
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

    /// Pauses (or resumes) the viewer's history: while paused, watching adds nothing to it.
    async fn set_history_paused(&self, ctx: &Context<'_>, paused: bool) -> Result<bool> {
        Ok(activity(ctx).set_history_paused(caller(ctx), paused).await?)
    }
}
