//! Media's subgraph: `Video`, `Comment`, the media fields of `User`, feed, search,
//! subscriptions feed, dashboard, and the writes. Resolvers only convert and call `Media`.

use crate::counters::Live;
use crate::domain::Media;
use crate::paging;
use crate::video::{self, VideoInput, VideoStatus, Visibility};
use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{ComplexObject, Context, EmptySubscription, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use flick_kit::config::GraphqlConfig;
use flick_kit::graphql::CostCheck;
use flick_kit::graphql::caller;
use flick_kit::page::Page;
use flick_kit::{AppError, Caller};
use std::collections::{HashMap, HashSet};

pub type MediaSchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema; `media` is `None` only to print the SDL offline.
pub fn schema(cfg: &GraphqlConfig, check: CostCheck, media: Option<Media>) -> MediaSchema {
    let mut builder = flick_kit::graphql::configure(Schema::build(Query, Mutation, EmptySubscription), cfg, check);
    if let Some(m) = media {
        // Users in a list (owners of a page) ask for their counts together: one query each.
        // A page's videos ask for their counts together: one cache round trip.
        builder = builder
            .data(flick_kit::graphql::loader(LiveCounts(m.clone())))
            .data(flick_kit::graphql::loader(SubscriberCounts(m.clone())))
            .data(flick_kit::graphql::loader(Subscribed(m.clone())))
            .data(flick_kit::graphql::loader(Owners(m.clone())))
            .data(flick_kit::graphql::loader(Liked(m.clone())))
            .data(flick_kit::graphql::loader(Rows(m.clone())))
            .data(m);
    }
    builder.finish()
}

/// Likes, comments and pending views of the videos asked for at one moment.
pub struct LiveCounts(Media);

impl Loader<String> for LiveCounts {
    type Value = Live;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[String]) -> Result<HashMap<String, Live>, Self::Error> {
        Ok(self.0.live_counts(ids).await?)
    }
}

async fn live(ctx: &Context<'_>, id: &str) -> Result<Live> {
    Ok(ctx.data_unchecked::<DataLoader<LiveCounts>>().load_one(id.to_string()).await?.unwrap_or_default())
}

/// Public details of the owners asked for at one moment, from media's user directory (the
/// cache, then one accounts `GetUsers` call for what it lacks).
pub struct Owners(Media);

impl Loader<String> for Owners {
    type Value = flick_proto::media::v1::Owner;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        Ok(self.0.users(ids).await)
    }
}

/// Subscriber counts of the channels asked for at one moment, in one query.
pub struct SubscriberCounts(Media);

impl Loader<String> for SubscriberCounts {
    type Value = i64;
    type Error = async_graphql::Error;

    async fn load(&self, channels: &[String]) -> Result<HashMap<String, i64>, Self::Error> {
        Ok(self.0.subscriber_counts(channels).await?.into_iter().collect())
    }
}

/// Whether a viewer follows each channel asked for, one query per viewer.
pub struct Subscribed(Media);

impl Loader<(String, String)> for Subscribed {
    type Value = bool;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[(String, String)]) -> Result<HashMap<(String, String), bool>, Self::Error> {
        let mut by_viewer: HashMap<&str, Vec<String>> = HashMap::new();
        for (viewer, channel) in keys {
            by_viewer.entry(viewer).or_default().push(channel.clone());
        }
        let mut answers = HashMap::new();
        for (viewer, channels) in by_viewer {
            let followed: HashSet<String> = self.0.followed_by(viewer, &channels).await?.into_iter().collect();
            for channel in channels {
                let yes = followed.contains(&channel);
                answers.insert((viewer.to_string(), channel), yes);
            }
        }
        Ok(answers)
    }
}

/// Whether a viewer likes each video asked for at one moment, one query per viewer; asked only
/// when a query selects `viewerHasLiked`.
pub struct Liked(Media);

impl Loader<(String, String)> for Liked {
    type Value = bool;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[(String, String)]) -> Result<HashMap<(String, String), bool>, Self::Error> {
        let mut by_viewer: HashMap<&str, Vec<String>> = HashMap::new();
        for (viewer, video) in keys {
            by_viewer.entry(viewer).or_default().push(video.clone());
        }
        let mut answers = HashMap::new();
        for (viewer, videos) in by_viewer {
            let liked: HashSet<String> = self.0.liked_by(viewer, &videos).await?.into_iter().collect();
            for video in videos {
                let yes = liked.contains(&video);
                answers.insert((viewer.to_string(), video), yes);
            }
        }
        Ok(answers)
    }
}

/// Video rows by id, in one query for all asked at one moment: the router's `_entities`
/// call for a list of videos (`related`, a playlist) asks for each one separately.
pub struct Rows(Media);

impl Loader<String> for Rows {
    type Value = video::Video;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[String]) -> Result<HashMap<String, video::Video>, Self::Error> {
        Ok(self.0.rows(ids).await?.into_iter().map(|v| (v.id.clone(), v)).collect())
    }
}

fn media<'a>(ctx: &'a Context<'_>) -> &'a Media {
    ctx.data_unchecked::<Media>()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A reference to a user; accounts resolves the profile fields.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct User {
    pub id: ID,
}

#[ComplexObject]
impl User {
    /// The user's videos: all of them for the user, public ready ones for others.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn videos(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Video, EmptyFields, EmptyFields>> {
        let viewer = caller(ctx);
        let page = media(ctx).user_videos(viewer, &self.id, after.as_deref(), first).await?;
        let by_created = viewer.user_id.map(|u| u.to_string()).as_deref() == Some(self.id.as_str());
        Ok(connection(page, after.is_some(), by_created))
    }

    // Accounts owns it; media serves it only under `Video.owner` (`@provides`), from its user
    // directory (kept current by `user.updated`), so a feed needs no second subgraph call.
    #[graphql(external)]
    async fn display_name(&self, ctx: &Context<'_>) -> Result<String> {
        match ctx.data_unchecked::<DataLoader<Owners>>().load_one(self.id.0.clone()).await? {
            Some(owner) => Ok(owner.display_name),
            None => Err(AppError::unavailable("the owner's details are unavailable").into_graphql()),
        }
    }

    async fn subscriber_count(&self, ctx: &Context<'_>) -> Result<i32> {
        let count = ctx.data_unchecked::<DataLoader<SubscriberCounts>>().load_one(self.id.0.clone()).await?;
        Ok(count.unwrap_or(0) as i32)
    }

    async fn viewer_is_subscribed(&self, ctx: &Context<'_>) -> Result<bool> {
        let Some(viewer) = caller(ctx).user_id else { return Ok(false) };
        let loader = ctx.data_unchecked::<DataLoader<Subscribed>>();
        Ok(loader.load_one((viewer.to_string(), self.id.0.clone())).await?.unwrap_or(false))
    }
}

fn user(id: &str) -> User {
    User { id: ID(id.to_string()) }
}

/// A video's metadata and interactions.
#[derive(Clone)]
pub struct Video {
    row: video::Video,
}

#[Object]
impl Video {
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }
    async fn title(&self) -> &str {
        &self.row.title
    }
    async fn description(&self) -> &str {
        &self.row.description
    }
    async fn tags(&self) -> &[String] {
        &self.row.tags
    }
    async fn category(&self) -> Option<&str> {
        self.row.category.as_deref()
    }
    async fn visibility(&self) -> Visibility {
        self.row.visibility
    }
    async fn status(&self) -> VideoStatus {
        self.row.status
    }
    /// Why processing failed (owner only).
    async fn failure(&self, ctx: &Context<'_>) -> Option<&str> {
        let me = caller(ctx).user_id.map(|u| u.to_string());
        if me.as_deref() == Some(self.row.owner_id.as_str()) { self.row.failure.as_deref() } else { None }
    }
    #[graphql(provides = "displayName")]
    async fn owner(&self) -> User {
        user(&self.row.owner_id)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        time(self.row.created_at_ms)
    }
    async fn published_at(&self) -> Option<DateTime<Utc>> {
        self.row.published_at_ms.map(time)
    }
    async fn like_count(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(live(ctx, &self.row.id).await?.likes as i32)
    }
    async fn viewer_has_liked(&self, ctx: &Context<'_>) -> Result<bool> {
        let Some(viewer) = caller(ctx).user_id else { return Ok(false) };
        let loader = ctx.data_unchecked::<DataLoader<Liked>>();
        Ok(loader.load_one((viewer.to_string(), self.row.id.clone())).await?.unwrap_or(false))
    }
    async fn comment_count(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(live(ctx, &self.row.id).await?.comments as i32)
    }
    // Views flushed into the database plus those still pending in the cache (a `//` comment:
    // a doc comment would change the SDL).
    async fn view_count(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok((self.row.view_count + live(ctx, &self.row.id).await?.pending_views) as i32)
    }
    /// Oldest first.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn comments(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Comment, EmptyFields, EmptyFields>> {
        let page = media(ctx).comments(&self.row.id, after.as_deref(), first).await?;
        let mut conn = Connection::new(after.is_some(), page.has_next);
        conn.edges.extend(
            page.items.into_iter().map(|c| Edge::new(paging::encode_cursor(c.created_at_ms, &c.id), Comment(c))),
        );
        Ok(conn)
    }
}

fn videos(rows: Vec<video::Video>) -> Vec<Video> {
    rows.into_iter().map(|row| Video { row }).collect()
}

fn connection(
    page: Page<video::Video>,
    has_previous: bool,
    by_created: bool,
) -> Connection<String, Video, EmptyFields, EmptyFields> {
    let mut conn = Connection::new(has_previous, page.has_next);
    conn.edges.extend(videos(page.items).into_iter().map(|v| Edge::new(Media::cursor_of(&v.row, by_created), v)));
    conn
}

pub struct Comment(video::Comment);

#[Object]
impl Comment {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn body(&self) -> &str {
        &self.0.body
    }
    // Media's user directory answers the author's `displayName` (as for `Video.owner`): a
    // video page's comments need no accounts call.
    #[graphql(provides = "displayName")]
    async fn author(&self) -> User {
        user(&self.0.author_id)
    }
    async fn video_id(&self) -> ID {
        ID(self.0.video_id.clone())
    }
    async fn parent_id(&self) -> Option<ID> {
        self.0.parent_id.clone().map(ID)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        time(self.0.created_at_ms)
    }
    async fn edited_at(&self) -> Option<DateTime<Utc>> {
        (self.0.updated_at_ms != self.0.created_at_ms).then(|| time(self.0.updated_at_ms))
    }
}

/// The caller's videos with their numbers (the activity service adds their audience figures,
/// `analytics`, by the owner's id).
pub struct Dashboard {
    owner_id: String,
    videos: Vec<Video>,
}

#[Object]
impl Dashboard {
    async fn owner_id(&self) -> ID {
        ID(self.owner_id.clone())
    }
    /// Every video of the caller, any status or visibility, newest first (at most 100).
    #[graphql(complexity = "flick_kit::graphql::list_cost(None, flick_kit::graphql::MAX_LIST, child_complexity)")]
    async fn videos(&self) -> &[Video] {
        &self.videos
    }
    async fn total_views(&self, ctx: &Context<'_>) -> Result<i32> {
        let live = self.live(ctx).await?;
        Ok(self
            .videos
            .iter()
            .map(|v| v.row.view_count + live.get(&v.row.id).map_or(0, |l| l.pending_views))
            .sum::<i64>() as i32)
    }
    async fn total_likes(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(self.live(ctx).await?.values().map(|l| l.likes).sum::<i64>() as i32)
    }
    async fn total_comments(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(self.live(ctx).await?.values().map(|l| l.comments).sum::<i64>() as i32)
    }
}

impl Dashboard {
    async fn live(&self, ctx: &Context<'_>) -> Result<HashMap<String, Live>> {
        let ids = self.videos.iter().map(|v| v.row.id.clone());
        ctx.data_unchecked::<DataLoader<LiveCounts>>().load_many(ids).await
    }
}

pub struct Query;

#[Object]
impl Query {
    /// Latest public, ready videos.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn feed(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Video, EmptyFields, EmptyFields>> {
        let page = media(ctx).feed(after.as_deref(), first).await?;
        Ok(connection(page, after.is_some(), false))
    }

    /// The categories a video may be in, as `createVideo` and `updateVideo` accept them
    /// (lower-case; input is matched ignoring case).
    async fn categories(&self) -> Vec<&'static str> {
        crate::validation::CATEGORIES.to_vec()
    }

    async fn video(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Video>> {
        let row = ctx.data_unchecked::<DataLoader<Rows>>().load_one(id.0).await?;
        Ok(row.filter(|v| Media::visible(v, caller(ctx))).map(|row| Video { row }))
    }

    /// Public, ready videos matching words (title first, then tags, then description;
    /// tolerant of small typos), tags and a category.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn search(
        &self,
        ctx: &Context<'_>,
        query: Option<String>,
        tags: Option<Vec<String>>,
        category: Option<String>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Video, EmptyFields, EmptyFields>> {
        let offset = paging::decode_cursor(after.as_deref())?.map(|(n, _)| n).unwrap_or(0);
        let page = media(ctx).search(query.as_deref(), tags, category.as_deref(), after.as_deref(), first).await?;
        let mut conn = Connection::new(after.is_some(), page.has_next);
        conn.edges.extend(
            videos(page.items)
                .into_iter()
                .enumerate()
                .map(|(i, v)| Edge::new(paging::encode_cursor(offset + i as i64 + 1, "search"), v)),
        );
        Ok(conn)
    }

    /// Public, ready videos of the channels the caller follows.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn subscriptions_feed(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Video, EmptyFields, EmptyFields>> {
        let page = media(ctx).subscriptions_feed(caller(ctx), after.as_deref(), first).await?;
        Ok(connection(page, after.is_some(), false))
    }

    async fn dashboard(&self, ctx: &Context<'_>) -> Result<Dashboard> {
        let owner_id = caller(ctx).require_user()?.to_string();
        let rows = media(ctx).dashboard(caller(ctx)).await?;
        Ok(Dashboard { owner_id, videos: videos(rows) })
    }

    /// A dashboard by its owner, for the router joining another subgraph's fields to it: the
    /// owner's own only (another caller: FORBIDDEN).
    #[graphql(entity)]
    async fn find_dashboard_by_owner_id(&self, ctx: &Context<'_>, owner_id: ID) -> Result<Dashboard> {
        let me = caller(ctx).require_user()?.to_string();
        if me != owner_id.as_str() {
            return Err(flick_kit::AppError::forbidden("only the owner sees a dashboard").into());
        }
        self.dashboard(ctx).await
    }

    #[graphql(entity)]
    async fn find_video_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Video>> {
        self.video(ctx, id).await
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> User {
        User { id }
    }
}

/// `sizeBytes` as a count of bytes: a whole number from 1 to 2^53 (exact in a Float).
fn size_in_bytes(size: f64) -> Result<u64, AppError> {
    if size.fract() == 0.0 && (1.0..=9_007_199_254_740_992.0).contains(&size) {
        Ok(size as u64)
    } else {
        Err(AppError::bad_input("invalid video").with_field("sizeBytes", "must be a whole number of bytes, at least 1"))
    }
}

#[derive(InputObject)]
pub struct CreateVideoInput {
    pub title: String,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub category: Option<String>,
    #[graphql(default_with = "Visibility::Public")]
    pub visibility: Visibility,
    /// The file's size in bytes, when the client knows it: the upload then carries its
    /// length (tus clients need no deferred length) and size and quota are checked now. A
    /// whole number (a Float, as GraphQL's Int stops at 2^31).
    pub size_bytes: Option<f64>,
}

#[derive(InputObject)]
pub struct UpdateVideoInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    /// An empty string clears the category.
    pub category: Option<String>,
    pub visibility: Option<Visibility>,
}

/// Where to send the video's bytes (a tus upload created by the transcoder).
#[derive(SimpleObject)]
pub struct UploadTicket {
    pub id: ID,
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct CreateVideoPayload {
    pub video: Video,
    /// A tus upload already created (PATCH from offset 0). Null only when the transcoder
    /// could not be reached; then start one with `POST /video/upload` (metadata `videoId`).
    pub upload: Option<UploadTicket>,
}

pub struct Mutation;

fn require(caller: &Caller) -> Result<(), AppError> {
    caller.require_user().map(|_| ())
}

#[Object]
impl Mutation {
    async fn create_video(&self, ctx: &Context<'_>, input: CreateVideoInput) -> Result<CreateVideoPayload> {
        let row = media(ctx)
            .create_video(
                caller(ctx),
                VideoInput {
                    title: Some(input.title),
                    description: input.description,
                    tags: input.tags,
                    category: Some(input.category.filter(|c| !c.trim().is_empty())),
                    visibility: Some(input.visibility),
                },
            )
            .await?;
        let size = input.size_bytes.map(size_in_bytes).transpose()?;
        let upload = media(ctx).open_upload(caller(ctx), &row, size).await?.map(|t| UploadTicket {
            id: ID(t.id),
            url: t.url,
            expires_at: DateTime::from_timestamp_millis(t.expires_at_ms).unwrap_or_default(),
        });
        Ok(CreateVideoPayload { video: Video { row }, upload })
    }

    async fn update_video(&self, ctx: &Context<'_>, id: ID, input: UpdateVideoInput) -> Result<Video> {
        let change = VideoInput {
            title: input.title,
            description: input.description,
            tags: input.tags,
            category: input.category.map(|c| Some(c).filter(|c| !c.trim().is_empty())),
            visibility: input.visibility,
        };
        let row = media(ctx).update_video(caller(ctx), &id, change).await?;
        Ok(Video { row })
    }

    async fn delete_video(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        Ok(ID(media(ctx).delete_video(caller(ctx), &id).await?))
    }

    async fn like_video(&self, ctx: &Context<'_>, id: ID) -> Result<Video> {
        let row = media(ctx).like(caller(ctx), &id).await?;
        Ok(Video { row })
    }

    async fn unlike_video(&self, ctx: &Context<'_>, id: ID) -> Result<Video> {
        let row = media(ctx).unlike(caller(ctx), &id).await?;
        Ok(Video { row })
    }

    async fn add_comment(
        &self,
        ctx: &Context<'_>,
        video_id: ID,
        body: String,
        parent_id: Option<ID>,
    ) -> Result<Comment> {
        let row = media(ctx).add_comment(caller(ctx), &video_id, &body, parent_id.as_ref().map(|p| p.as_str())).await?;
        Ok(Comment(row))
    }

    async fn edit_comment(&self, ctx: &Context<'_>, id: ID, body: String) -> Result<Comment> {
        Ok(Comment(media(ctx).edit_comment(caller(ctx), &id, &body).await?))
    }

    async fn delete_comment(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        Ok(ID(media(ctx).delete_comment(caller(ctx), &id).await?))
    }

    /// Follow a channel (a user); returns the channel.
    async fn subscribe(&self, ctx: &Context<'_>, channel_id: ID) -> Result<User> {
        require(caller(ctx))?;
        media(ctx).subscribe(caller(ctx), &channel_id).await?;
        Ok(user(&channel_id))
    }

    async fn unsubscribe(&self, ctx: &Context<'_>, channel_id: ID) -> Result<User> {
        require(caller(ctx))?;
        media(ctx).unsubscribe(caller(ctx), &channel_id).await?;
        Ok(user(&channel_id))
    }
}
