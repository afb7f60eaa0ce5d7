//! Videos that heartbeats name but no event has told this service of (videos older than the
//! service, or whose events are still on their way): asked of media (owner and visibility,
//! as the caller may see them) and of the transcoder (duration), and kept at version 0 so
//! that any event's copy replaces them.

use crate::domain::{VideoInfo, Visibility};
use flick_kit::AppError;
use flick_kit::identity::Caller;
use flick_kit::telemetry::{TracedChannel, traced};
use flick_proto::media::v1::{GetVideoRequest, media_service_client::MediaServiceClient};
use flick_proto::transcoder::v1::{GetProcessingRequest, transcoder_service_client::TranscoderServiceClient};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tonic::transport::Endpoint;

/// How long a video media did not show a caller stays unknown to that caller (a flood of
/// heartbeats for one id asks media once per this).
const UNKNOWN_FOR: Duration = Duration::from_secs(5);
/// Lookups at once: beyond this, heartbeats for unknown videos are told to retry.
const CONCURRENT: usize = 16;

#[derive(Clone)]
pub(crate) struct Lookup {
    media: MediaServiceClient<TracedChannel>,
    transcoder: Option<TranscoderServiceClient<TracedChannel>>,
    unknown: moka::future::Cache<String, ()>,
    permits: Arc<Semaphore>,
}

fn endpoint(url: &str) -> anyhow::Result<TracedChannel> {
    let endpoint =
        Endpoint::from_shared(url.to_string())?.connect_timeout(Duration::from_secs(1)).timeout(Duration::from_secs(2));
    Ok(traced(endpoint.connect_lazy()))
}

impl Lookup {
    /// Media at `media_url` and, for durations, the transcoder at `transcoder_url` (gRPC;
    /// connected on first use).
    pub(crate) fn new(media_url: &str, transcoder_url: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            media: MediaServiceClient::new(endpoint(media_url)?),
            transcoder: transcoder_url.map(endpoint).transpose()?.map(TranscoderServiceClient::new),
            unknown: moka::future::Cache::builder().max_capacity(100_000).time_to_live(UNKNOWN_FOR).build(),
            permits: Arc::new(Semaphore::new(CONCURRENT)),
        })
    }

    /// The video as media shows it to `caller`; `None` when it does not (no such video, or
    /// not the caller's to see).
    pub(crate) async fn video(&self, caller: &Caller, id: &str) -> Result<Option<VideoInfo>, AppError> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Ok(None);
        }
        let key = format!("{}|{id}", caller.user_id.map(|u| u.to_string()).unwrap_or_default());
        if self.unknown.contains_key(&key) {
            return Ok(None);
        }
        let Ok(_permit) = self.permits.try_acquire() else {
            return Err(AppError::unavailable("too many unknown videos asked about at once; retry"));
        };
        let mut request = tonic::Request::new(GetVideoRequest { id: id.to_string() });
        caller.to_grpc(&mut request);
        let video = match self.media.clone().get_video(request).await {
            Ok(answer) => answer.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                metrics::counter!("activity_video_lookups_total", "result" => "unknown").increment(1);
                self.unknown.insert(key, ()).await;
                return Ok(None);
            }
            Err(status) => {
                metrics::counter!("activity_video_lookups_total", "result" => "unavailable").increment(1);
                tracing::warn!(video.id = %id, code = ?status.code(), error = %status.message(),
                    "media could not be asked about a video no event has told of");
                return Err(AppError::unavailable("the video's details are unavailable; retry"));
            }
        };
        let Some(visibility) = Visibility::parse(&video.visibility) else {
            return Err(AppError::unavailable(format!("media answered an unknown visibility {:?}", video.visibility)));
        };
        metrics::counter!("activity_video_lookups_total", "result" => "found").increment(1);
        Ok(Some(VideoInfo {
            id: video.id,
            owner: video.owner_id,
            visibility,
            duration_seconds: self.duration(caller, id).await,
        }))
    }

    /// The transcoder's probed duration, when it has one and answers (without it, views
    /// count by the 30 s rule alone until `transcode.completed` arrives).
    async fn duration(&self, caller: &Caller, id: &str) -> Option<f64> {
        let mut request = tonic::Request::new(GetProcessingRequest { video_id: id.to_string() });
        caller.to_grpc(&mut request);
        match self.transcoder.clone()?.get_processing(request).await {
            Ok(p) => Some(p.into_inner().duration_seconds).filter(|d| d.is_finite() && *d > 0.0),
            Err(status) => {
                tracing::debug!(video.id = %id, code = ?status.code(), "no duration from the transcoder");
                None
            }
        }
    }
}
