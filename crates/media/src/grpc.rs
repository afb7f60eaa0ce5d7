//! gRPC `flick.media.v1.MediaService` (callers' identity from `x-user-id` metadata). Every
//! answer carries its videos' live counts and owners' details, looked up once per answer.

use crate::domain::Media;
use crate::video::Video;
use flick_kit::{AppError, Caller};
use flick_proto::media::v1 as pb;
use tonic::{Request, Response, Status};

pub struct MediaGrpc(pub Media);

/// A request's `first`: 0 (proto3's absent) is the list's default.
fn first(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

impl MediaGrpc {
    /// The rows as messages: one counters lookup and one directory lookup for all of them.
    async fn to_pb(&self, rows: Vec<Video>) -> Result<Vec<pb::Video>, AppError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows.iter().map(|v| v.id.clone()).collect();
        let owners: Vec<String> = rows.iter().map(|v| v.owner_id.clone()).collect();
        let (live, users) = tokio::join!(self.0.live_counts(&ids), self.0.users(&owners));
        let live = live?;
        Ok(rows
            .into_iter()
            .map(|v| {
                let counts = live.get(&v.id).copied().unwrap_or_default();
                pb::Video {
                    owner: users.get(&v.owner_id).cloned(),
                    like_count: counts.likes,
                    comment_count: counts.comments,
                    view_count: v.view_count + counts.pending_views,
                    id: v.id,
                    owner_id: v.owner_id,
                    title: v.title,
                    description: v.description,
                    tags: v.tags,
                    category: v.category,
                    visibility: v.visibility.as_str().into(),
                    status: v.status.as_str().into(),
                    created_at_ms: v.created_at_ms,
                }
            })
            .collect())
    }
}

#[tonic::async_trait]
impl pb::media_service_server::MediaService for MediaGrpc {
    async fn get_video(&self, request: Request<pb::GetVideoRequest>) -> Result<Response<pb::Video>, Status> {
        let caller = Caller::from_grpc(&request);
        let v = self
            .0
            .video(&caller, &request.into_inner().id)
            .await?
            .ok_or_else(|| AppError::not_found("no such video"))?;
        let video = self.to_pb(vec![v]).await?.pop().ok_or_else(|| AppError::internal("a video went missing"))?;
        Ok(Response::new(video))
    }

    async fn get_videos(
        &self,
        request: Request<pb::GetVideosRequest>,
    ) -> Result<Response<pb::GetVideosResponse>, Status> {
        let caller = Caller::from_grpc(&request);
        let videos = self.0.videos(&caller, &request.into_inner().ids).await?;
        Ok(Response::new(pb::GetVideosResponse { videos: self.to_pb(videos).await? }))
    }

    async fn list_videos_by_owner(
        &self,
        request: Request<pb::ListVideosByOwnerRequest>,
    ) -> Result<Response<pb::ListVideosByOwnerResponse>, Status> {
        let caller = Caller::from_grpc(&request);
        let r = request.into_inner();
        let after = Some(r.after.as_str()).filter(|a| !a.is_empty());
        let page = self.0.user_videos(&caller, &r.owner_id, after, first(r.first)).await?;
        let by_created = caller.user_id.map(|u| u.to_string()) == Some(r.owner_id.clone());
        let next_cursor = if page.has_next {
            page.items.last().map(|v| Media::cursor_of(v, by_created)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListVideosByOwnerResponse { videos: self.to_pb(page.items).await?, next_cursor }))
    }

    async fn list_public_videos(
        &self,
        request: Request<pb::ListPublicVideosRequest>,
    ) -> Result<Response<pb::ListPublicVideosResponse>, Status> {
        let r = request.into_inner();
        let after = Some(r.after.as_str()).filter(|a| !a.is_empty());
        let page = self.0.feed(after, first(r.first)).await?;
        let next_cursor = match page.items.last() {
            Some(v) if page.has_next => Media::cursor_of(v, false),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListPublicVideosResponse { videos: self.to_pb(page.items).await?, next_cursor }))
    }

    async fn listed_video_ids(
        &self,
        request: Request<pb::ListedVideoIdsRequest>,
    ) -> Result<Response<pb::ListedVideoIdsResponse>, Status> {
        let ids = self.0.listed_ids(&request.into_inner().ids).await?;
        Ok(Response::new(pb::ListedVideoIdsResponse { ids }))
    }
}
