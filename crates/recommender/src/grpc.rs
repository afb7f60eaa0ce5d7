//! gRPC `flick.recommender.v1.RecommenderService`.

use crate::domain::Recommender;
use flick_kit::AppError;
use flick_proto::recommender::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

pub struct RecommenderGrpc(pub Recommender);

fn first(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

#[tonic::async_trait]
impl pb::recommender_service_server::RecommenderService for RecommenderGrpc {
    async fn related(&self, request: Request<pb::RelatedRequest>) -> Result<Response<pb::VideoIds>, Status> {
        let r = request.into_inner();
        let ids = self.0.related(&r.video_id, first(r.first)).await?;
        Ok(Response::new(pb::VideoIds { ids }))
    }

    /// For `user_id` (empty: an anonymous viewer).
    async fn for_user(&self, request: Request<pb::ForUserRequest>) -> Result<Response<pb::VideoIds>, Status> {
        let r = request.into_inner();
        let user = match r.user_id.as_str() {
            "" => None,
            id => Some(
                Uuid::parse_str(id)
                    .map_err(|_| AppError::bad_input("user_id is not a user id").with_field("user_id", "not a UUID"))?,
            ),
        };
        let ids = self.0.for_user(user, first(r.first)).await?;
        Ok(Response::new(pb::VideoIds { ids }))
    }

    async fn embed(&self, request: Request<pb::EmbedRequest>) -> Result<Response<pb::EmbedResponse>, Status> {
        let vectors = self.0.embed(request.into_inner().texts).await?;
        let embeddings = vectors.into_iter().map(|values| pb::Embedding { values }).collect();
        Ok(Response::new(pb::EmbedResponse { embeddings }))
    }
}
