//! The transcoder subgraph: `Video.playback`, `Video.processing` and
//! `Subscription.videoProgress`. Resolvers convert; the domain decides.

use crate::domain::{self, Stage, Transcoder, VideoStatus, VideoView};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{ComplexObject, Context, EmptyMutation, ID, Object, Result, Schema, SimpleObject, Subscription};
use flick_kit::config::GraphqlConfig;
use flick_kit::graphql::CostCheck;
use flick_kit::graphql::caller;
use flick_proto::events::v1 as events;
use futures::{Stream, StreamExt};
use prost::Message as _;
use std::collections::HashMap;

pub type TranscoderSchema = Schema<Query, EmptyMutation, SubscriptionRoot>;

pub fn schema(cfg: &GraphqlConfig, check: CostCheck, transcoder: Option<Transcoder>) -> TranscoderSchema {
    let mut builder = flick_kit::graphql::configure(Schema::build(Query, EmptyMutation, SubscriptionRoot), cfg, check);
    if let Some(t) = transcoder {
        builder = builder.data(flick_kit::graphql::loader(Rows(t.clone()))).data(t);
    }
    builder.finish()
}

/// Batches the rows of a page of videos into one query.
struct Rows(Transcoder);

impl Loader<String> for Rows {
    type Value = domain::Video;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, domain::Video>, Self::Error> {
        let rows = self.0.videos_by_ids(keys).await.map_err(|e| e.into_graphql())?;
        Ok(rows.into_iter().map(|r| (r.id.clone(), r)).collect())
    }
}

/// A video, by id; media owns its metadata.
#[derive(SimpleObject)]
#[graphql(complex, shareable)]
pub struct Video {
    pub id: ID,
}

#[derive(SimpleObject)]
pub struct Playback {
    pub hls_url: String,
    pub dash_url: Option<String>,
    pub duration_seconds: f64,
    pub renditions: Vec<Rendition>,
    pub thumbnail_url: Option<String>,
    pub storyboard_url: Option<String>,
    /// WebVTT cues mapping times to tiles of the storyboard sprite.
    pub storyboard_vtt_url: Option<String>,
}

#[derive(SimpleObject)]
pub struct Rendition {
    pub name: String,
    pub width: i32,
    pub height: i32,
    pub bitrate: i32,
}

/// Where the video is between upload and playback.
#[derive(SimpleObject)]
pub struct Processing {
    /// AWAITING_UPLOAD, QUEUED, PROCESSING, READY or FAILED.
    pub state: String,
    /// Why it failed (owner only).
    pub error: Option<String>,
    /// Whether it plays yet: at READY, or earlier for long videos whose first segments are
    /// stored (then `playback` has the growing HLS playlist; the rest comes at READY).
    pub playable: bool,
}

#[derive(SimpleObject, Clone)]
pub struct VideoProgress {
    pub video_id: ID,
    /// queued, downloading, probing, encoding, thumbnails, uploading, ready, failed
    pub stage: String,
    pub percent: f64,
    pub rendition: Option<String>,
    pub fps: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub error: Option<String>,
}

impl From<VideoView> for Option<Playback> {
    fn from(v: VideoView) -> Self {
        if !v.playable {
            return None;
        }
        Some(Playback {
            hls_url: v.hls_url?,
            dash_url: v.dash_url,
            duration_seconds: v.duration_seconds.unwrap_or_default(),
            renditions: v
                .renditions
                .into_iter()
                .map(|r| Rendition {
                    name: r.name,
                    width: r.width as i32,
                    height: r.height as i32,
                    bitrate: r.bitrate.min(i32::MAX as u64) as i32,
                })
                .collect(),
            thumbnail_url: v.thumbnail_url,
            storyboard_url: v.storyboard_url,
            storyboard_vtt_url: v.storyboard_vtt_url,
        })
    }
}

async fn row(ctx: &Context<'_>, id: &ID) -> Result<Option<domain::Video>> {
    let loader = ctx.data::<DataLoader<Rows>>()?;
    let row = loader.load_one(id.to_string()).await?;
    Ok(row.filter(|r| Transcoder::may_watch(r, caller(ctx))))
}

#[ComplexObject]
impl Video {
    /// HLS and DASH URLs, renditions, thumbnails and duration; null until the video plays.
    /// A long video plays before its ladder is done: then `hlsUrl` is the growing playlist
    /// and `durationSeconds` the source's, while `dashUrl`, thumbnails and `renditions` wait
    /// for READY.
    async fn playback(&self, ctx: &Context<'_>) -> Result<Option<Playback>> {
        let t = ctx.data::<Transcoder>()?;
        Ok(row(ctx, &self.id).await?.and_then(|r| t.view(&r, caller(ctx)).into()))
    }

    /// The processing state; null for videos the transcoder has not heard of.
    async fn processing(&self, ctx: &Context<'_>) -> Result<Option<Processing>> {
        let t = ctx.data::<Transcoder>()?;
        Ok(row(ctx, &self.id).await?.map(|r| {
            let view = t.view(&r, caller(ctx));
            Processing { state: view.state.to_string(), error: view.error, playable: view.playable }
        }))
    }
}

pub struct Query;

#[Object]
impl Query {
    #[graphql(entity)]
    async fn find_video_by_id(&self, id: ID) -> Video {
        Video { id }
    }
}

pub struct SubscriptionRoot;

fn progress_of(p: events::TranscodeProgress) -> VideoProgress {
    VideoProgress {
        video_id: ID(p.video_id),
        stage: p.stage,
        percent: p.percent,
        rendition: p.rendition,
        fps: p.fps,
        eta_seconds: p.eta_seconds,
        error: p.error,
    }
}

// Named `Subscription`: composition only maps the root type of that name.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// The owner's view of a video's upload and transcode: the current state first, then
    /// live progress at least once a second while it runs; ends at ready or failed, or when
    /// a video still awaiting its upload outlives the upload expiry.
    async fn video_progress(
        &self,
        ctx: &Context<'_>,
        video_id: ID,
    ) -> Result<impl Stream<Item = VideoProgress> + use<>> {
        let t = ctx.data::<Transcoder>()?.clone();
        let caller = caller(ctx).clone();
        // Subscribe before reading the state, so nothing between the two is missed.
        let live = tokio_stream::wrappers::BroadcastStream::new(t.bus().subscribe_transient());
        let video = t.owned_video(&caller, &video_id).await.map_err(|e| e.into_graphql())?;
        // Owners only, so there is a user; the slot is freed when the stream is dropped.
        let slot = match caller.user_id {
            Some(user) => flick_kit::graphql::subscription_slot(ctx, user).map_err(|e| e.into_graphql())?,
            None => None,
        };
        let awaiting_upload = video.status == VideoStatus::AwaitingUpload;
        let view = t.view(&video, &caller);
        let (stage, percent) = video.status.progress(video.progress_percent);
        let first = VideoProgress {
            video_id: video_id.clone(),
            stage: stage.to_string(),
            percent,
            rendition: None,
            fps: None,
            eta_seconds: None,
            error: view.error,
        };
        let finished = stage.is_final();
        let id = video_id.to_string();
        let updates = live
            .filter_map(move |m| {
                let id = id.clone();
                async move {
                    let e = m.ok()?;
                    (e.r#type == "transcode.progress" && e.subject == id)
                        .then(|| events::TranscodeProgress::decode(e.payload.as_slice()).ok())
                        .flatten()
                        .map(progress_of)
                }
            })
            .boxed();
        // Ends right after the final message: deciding on the next one instead would hold the
        // subscription open, as no message follows `ready` (issue 16: graphql-ws clients saw
        // no `complete`).
        let updates = futures::stream::unfold((updates, false), |(mut updates, done)| async move {
            if done {
                return None;
            }
            let p = updates.next().await?;
            let last = Stage::parse(&p.stage).is_some_and(Stage::is_final);
            Some((p, (updates, last)))
        });
        let stream = futures::stream::once(async move { first });
        if finished {
            return Ok(stream.boxed());
        }
        let expiry = std::time::Duration::from_secs(t.config().upload_expiry_seconds);
        let deadline = awaiting_upload.then(|| tokio::time::Instant::now() + expiry);
        let updates = until_upload_expires(updates.boxed(), deadline, t, caller, video_id);
        Ok(stream
            .chain(updates)
            .map(move |p| {
                let _held = &slot;
                p
            })
            .boxed())
    }
}

/// `updates`, ended at `deadline` if the video is still awaiting its upload then (an upload
/// that never comes must not hold a subscription open for ever); a video that got its upload
/// meanwhile goes on without a deadline.
fn until_upload_expires(
    updates: futures::stream::BoxStream<'static, VideoProgress>,
    deadline: Option<tokio::time::Instant>,
    t: Transcoder,
    caller: flick_kit::identity::Caller,
    video_id: ID,
) -> impl Stream<Item = VideoProgress> + Send + 'static {
    futures::stream::unfold((updates, deadline), move |(mut updates, mut deadline)| {
        let (t, caller, video_id) = (t.clone(), caller.clone(), video_id.clone());
        async move {
            loop {
                let Some(at) = deadline else {
                    return updates.next().await.map(|p| (p, (updates, None)));
                };
                tokio::select! {
                    next = updates.next() => return next.map(|p| (p, (updates, deadline))),
                    _ = tokio::time::sleep_until(at) => {
                        let still_waiting = t
                            .owned_video(&caller, &video_id)
                            .await
                            .map(|v| v.status == VideoStatus::AwaitingUpload)
                            .unwrap_or(true);
                        if still_waiting {
                            return None;
                        }
                        deadline = None;
                    }
                }
            }
        }
    })
}
