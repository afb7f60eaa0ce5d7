//! The transcoder as media's `createVideo` sees it: a gRPC client that registers the new
//! video and creates its tus upload, so the client gets where to send the bytes.

use crate::video::Visibility;
use flick_kit::Caller;
use flick_kit::telemetry::{TracedChannel, traced};
use flick_proto::transcoder::v1 as pb;
use pb::transcoder_service_client::TranscoderServiceClient;
use std::time::Duration;
use tonic::transport::Endpoint;

/// Where to upload a new video's bytes.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: String,
    pub url: String,
    pub expires_at_ms: i64,
}

#[derive(Clone)]
pub struct Uploads {
    client: TranscoderServiceClient<TracedChannel>,
}

impl Uploads {
    /// A client that connects on first use (the transcoder may start after media).
    pub fn connect_lazy(url: &str) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10));
        Ok(Self { client: TranscoderServiceClient::new(traced(endpoint.connect_lazy())) })
    }

    /// Registers `video_id` for `caller` and opens its upload of `size_bytes` (`None`: the
    /// client sends the length with its first PATCH).
    pub async fn create(
        &self,
        caller: &Caller,
        video_id: &str,
        visibility: Visibility,
        size_bytes: Option<u64>,
    ) -> Result<Ticket, tonic::Status> {
        let mut request = tonic::Request::new(pb::CreateUploadRequest {
            video_id: video_id.into(),
            size_bytes: size_bytes.map_or(0, |n| n.min(i64::MAX as u64) as i64),
            visibility: visibility.as_str().into(),
        });
        caller.to_grpc(&mut request);
        let upload = self.client.clone().create_upload(request).await?.into_inner();
        Ok(Ticket { id: upload.id, url: upload.url, expires_at_ms: upload.expires_at_ms })
    }
}
