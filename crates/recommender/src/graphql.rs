//! The recommender's subgraph: `Video.related` and `Query.recommendedForMe`. The `Video`
//! entity belongs to media; this subgraph only contributes fields to it, and resolvers only
//! convert and call `Recommender`.

use crate::domain::Recommender;
use async_graphql::{Context, EmptyMutation, EmptySubscription, ID, Object, Result, Schema};
use flick_kit::config::GraphqlConfig;
use flick_kit::graphql::CostCheck;
use flick_kit::graphql::caller;

pub type RecommenderSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The schema; `recommender` is `None` only to print the SDL offline.
pub fn schema(cfg: &GraphqlConfig, check: CostCheck, recommender: Option<Recommender>) -> RecommenderSchema {
    let mut builder = flick_kit::graphql::configure(Schema::build(Query, EmptyMutation, EmptySubscription), cfg, check);
    if let Some(r) = recommender {
        builder = builder.data(r);
    }
    builder.finish()
}

fn recommender<'a>(ctx: &'a Context<'_>) -> &'a Recommender {
    ctx.data_unchecked::<Recommender>()
}

fn videos(ids: Vec<String>) -> Vec<Video> {
    ids.into_iter().map(|id| Video { id: ID(id) }).collect()
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

    /// Public videos most like this one (its owner's other videos only when there are not
    /// enough of anyone else's). At most 100.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 10, child_complexity)")]
    async fn related(&self, ctx: &Context<'_>, #[graphql(default = 10)] first: Option<i32>) -> Result<Vec<Video>> {
        Ok(videos(recommender(ctx).related(&self.id, first).await?))
    }
}

pub struct Query;

#[Object]
impl Query {
    #[graphql(entity)]
    async fn find_video_by_id(&self, id: ID) -> Video {
        Video { id }
    }

    /// Videos for the caller: like the ones they liked or watched, not their own and not
    /// liked or watched yet; recent popular videos for new and anonymous callers. At most 100.
    #[graphql(complexity = "flick_kit::graphql::list_cost(first, 20, child_complexity)")]
    async fn recommended_for_me(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
    ) -> Result<Vec<Video>> {
        Ok(videos(recommender(ctx).for_user(caller(ctx).user_id, first).await?))
    }
}
