use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};
use flick_kit::config::GraphqlConfig;

pub type AccountsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema(cfg: &GraphqlConfig) -> AccountsSchema {
    flick_kit::graphql::configure(Schema::build(Query, EmptyMutation, EmptySubscription), cfg)
        .finish()
}

/// A Flick user. Profile fields arrive with registration.
#[derive(SimpleObject)]
#[graphql(shareable)]
pub struct User {
    pub id: ID,
}

pub struct Query;

#[Object]
impl Query {
    /// The calling user, or null when anonymous.
    async fn me(&self, ctx: &async_graphql::Context<'_>) -> Option<User> {
        flick_kit::graphql::caller(ctx).user_id.map(|id| User {
            id: ID(id.to_string()),
        })
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> User {
        User { id }
    }
}
