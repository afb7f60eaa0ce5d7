//! `flick recommender backfill`: every public, ready video, read from media over gRPC
//! (`ListPublicVideos`, newest first), embedded again and indexed. Runs beside a live service:
//! a page read at time T never overwrites a change the events brought after T, and the
//! running service and the backfill may both embed a queued text (the later write is a no-op).

use crate::domain::{Recommender, VideoText, video_text};
use anyhow::Context as _;
use flick_proto::media::v1 as media;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Public videos media listed so far.
    pub listed: usize,
    /// Videos embedded and indexed so far.
    pub indexed: usize,
}

/// Re-embeds everything media lists at `media_url` (e.g. `http://127.0.0.1:8082`), `page`
/// videos (at most 100) per call, calling `progress` after each page.
pub async fn backfill(
    recommender: &Recommender,
    media_url: &str,
    page: i32,
    mut progress: impl FnMut(Progress),
) -> anyhow::Result<Progress> {
    // Fail before reading anything when the model cannot load.
    recommender.model().embedder().await?;
    let mut client = media::media_service_client::MediaServiceClient::connect(media_url.to_string())
        .await
        .with_context(|| format!("connecting to media at {media_url}"))?;
    let mut done = Progress::default();
    let mut after = String::new();
    loop {
        let read_at = chrono::Utc::now().timestamp_millis();
        let page = client
            .list_public_videos(media::ListPublicVideosRequest { first: page, after: after.clone() })
            .await
            .context("listing media's public videos")?
            .into_inner();
        done.listed += page.videos.len();
        let texts = page
            .videos
            .into_iter()
            .map(|v| VideoText {
                text: video_text(&v.title, &v.tags, &v.description),
                video_id: v.id,
                owner_id: v.owner_id,
                // Kept when the video is known; media's list has no publication time.
                published_at_ms: v.created_at_ms,
                event_ms: read_at,
            })
            .collect();
        recommender.queue_videos(texts).await.context("queueing videos")?;
        done.indexed += recommender.embed_pending().await?;
        progress(done);
        if page.next_cursor.is_empty() {
            return Ok(done);
        }
        after = page.next_cursor;
    }
}
