//! gRPC `flick.transcoder.v1.TranscoderService` (callers' identity from `x-user-id` metadata).

use crate::domain::Transcoder;
use crate::uploads::NewUpload;
use flick_kit::{AppError, Caller};
use flick_proto::transcoder::v1 as pb;
use tonic::{Request, Response, Status};

pub struct TranscoderGrpc(pub Transcoder);

impl TranscoderGrpc {
    async fn processing(&self, caller: &Caller, video_id: &str) -> Result<pb::Processing, AppError> {
        let video = self.0.watchable(caller, video_id).await?.ok_or_else(|| AppError::not_found("no such video"))?;
        let view = self.0.view(&video, caller);
        Ok(pb::Processing {
            video_id: view.id,
            // The status's own name: gRPC's stage predates the GraphQL stages.
            stage: view.state.as_str().to_string(),
            percent: view.percent,
            error: view.error,
            hls_url: view.hls_url,
            dash_url: view.dash_url,
            duration_seconds: view.duration_seconds.unwrap_or_default(),
        })
    }
}

#[tonic::async_trait]
impl pb::transcoder_service_server::TranscoderService for TranscoderGrpc {
    /// Registers the caller's video and creates its tus upload (media's `createVideo`).
    async fn create_upload(&self, request: Request<pb::CreateUploadRequest>) -> Result<Response<pb::Upload>, Status> {
        let caller = Caller::from_grpc(&request);
        let r = request.into_inner();
        self.0.register_video(&caller, &r.video_id, &r.visibility).await?;
        let length = (r.size_bytes > 0).then_some(r.size_bytes);
        let upload = self.0.create_upload(&caller, NewUpload { video_id: &r.video_id, length, metadata: "" }).await?;
        let base = self.0.config().public_base_url.trim_end_matches('/');
        Ok(Response::new(pb::Upload {
            url: format!("{base}/video/upload/{}", upload.id),
            id: upload.id,
            expires_at_ms: upload.expires_at_ms,
        }))
    }

    async fn get_processing(
        &self,
        request: Request<pb::GetProcessingRequest>,
    ) -> Result<Response<pb::Processing>, Status> {
        let caller = Caller::from_grpc(&request);
        Ok(Response::new(self.processing(&caller, &request.into_inner().video_id).await?))
    }

    async fn retry_job(&self, request: Request<pb::RetryJobRequest>) -> Result<Response<pb::Processing>, Status> {
        let caller = Caller::from_grpc(&request);
        let id = request.into_inner().video_id;
        self.0.retry(&caller, &id).await?;
        Ok(Response::new(self.processing(&caller, &id).await?))
    }
}
