//! The recommender service. Foundation state: a minimal subgraph contributing the `Video` entity,
//! served with health, readiness, metrics and its outbox relay.

use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};
use flick_kit::Service;
use flick_kit::config::GraphqlConfig;
use flick_platform::Shared;
use flick_platform::db::MigrationSet;

pub const NAME: &str = "recommender";

pub const MIGRATIONS: &[MigrationSet] = &[flick_platform::outbox::MIGRATIONS];

pub type RecommenderSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema(cfg: &GraphqlConfig) -> RecommenderSchema {
    flick_kit::graphql::configure(Schema::build(Query, EmptyMutation, EmptySubscription), cfg).finish()
}

/// The subgraph SDL, without a network (composition and `flick sdl`).
pub fn sdl() -> String {
    flick_kit::graphql::federation_sdl(&schema(&GraphqlConfig::default()))
}

pub async fn build(shared: &Shared) -> anyhow::Result<Service> {
    let infra = shared.service(NAME, MIGRATIONS).await?;
    let mut service = Service::new(NAME)
        .http(flick_kit::graphql::routes(schema(&shared.config.graphql), &shared.config.graphql))
        .task(infra.relay_task());
    for check in infra.checks() {
        service = service.check(check);
    }
    Ok(service)
}

/// A video, by id; its fields arrive with the recommender issue.
#[derive(SimpleObject)]
#[graphql(shareable)]
pub struct Video {
    pub id: ID,
}

pub struct Query;

#[Object]
impl Query {
    #[graphql(entity)]
    async fn find_video_by_id(&self, id: ID) -> Video {
        Video { id }
    }
}
