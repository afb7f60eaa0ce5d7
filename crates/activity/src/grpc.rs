//! gRPC `flick.activity.v1.ActivityService`: converts and calls `Activity`.

use crate::domain::{Activity, Heartbeat, HistoryEntry, viewer_key};
use flick_kit::identity::Caller;
use flick_proto::activity::v1 as pb;
use tonic::{Request, Response, Status};

pub struct ActivityGrpc(pub Activity);

fn progress(e: HistoryEntry) -> pb::Progress {
    pb::Progress {
        video_id: e.video_id,
        position_seconds: e.position_seconds,
        watched_fraction: e.watched_fraction,
        updated_at_ms: e.updated_at_ms,
    }
}

#[tonic::async_trait]
impl pb::activity_service_server::ActivityService for ActivityGrpc {
    async fn record_playback(
        &self,
        request: Request<pb::RecordPlaybackRequest>,
    ) -> Result<Response<pb::RecordPlaybackResponse>, Status> {
        let caller = Caller::from_grpc(&request);
        let r = request.into_inner();
        let pseudonym =
            (!r.client_address.is_empty()).then(|| flick_kit::identity::address_pseudonym(&r.client_address));
        let viewer = viewer_key(&caller, pseudonym, &r.session_id);
        let hb = Heartbeat {
            video_id: r.video_id,
            session_id: r.session_id,
            sequence: r.sequence,
            position_seconds: r.position_seconds,
            watched_seconds: r.watched_seconds,
            rendition: r.rendition,
        };
        let done = self.0.record(&caller, &viewer, &hb).await?;
        Ok(Response::new(pb::RecordPlaybackResponse {
            applied: done.applied,
            view_counted: done.view_counted,
            position_seconds: done.position_seconds,
            watched_seconds: done.watched_seconds,
        }))
    }

    async fn viewer_progress(
        &self,
        request: Request<pb::ViewerProgressRequest>,
    ) -> Result<Response<pb::ViewerProgressResponse>, Status> {
        let caller = Caller::from_grpc(&request);
        caller.require_user()?;
        let ids = request.into_inner().video_ids;
        if ids.len() > flick_kit::page::MAX_FIRST {
            return Err(flick_kit::AppError::bad_input("at most 100 video ids")
                .with_field("video_ids", "at most 100")
                .into());
        }
        let found = self.0.progress(&caller, &ids).await?;
        Ok(Response::new(pb::ViewerProgressResponse { progress: found.into_iter().map(progress).collect() }))
    }

    async fn watch_history(
        &self,
        request: Request<pb::WatchHistoryRequest>,
    ) -> Result<Response<pb::WatchHistoryResponse>, Status> {
        let caller = Caller::from_grpc(&request);
        let r = request.into_inner();
        let first = (r.first != 0).then_some(r.first);
        let after = (!r.after.is_empty()).then_some(r.after.as_str());
        let page = self.0.history(&caller, after, first, r.unfinished).await?;
        let next_cursor = page.items.last().map(HistoryEntry::cursor).unwrap_or_default();
        Ok(Response::new(pb::WatchHistoryResponse {
            entries: page.items.into_iter().map(progress).collect(),
            next_cursor,
            has_next: page.has_next,
        }))
    }
}
