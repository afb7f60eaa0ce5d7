//! GraphQL subgraph plumbing shared by every service: Federation v2 (with subscriptions),
//! depth and complexity limits, the caller's identity in the request data, GraphiQL, and
//! graphql-ws subscriptions on `/ws`.

use crate::config::GraphqlConfig;
use crate::identity::Caller;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql::{
    Data, Executor, ObjectType, SDLExportOptions, Schema, SchemaBuilder, SubscriptionType,
};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// Applies the platform's federation settings and limits to a subgraph schema.
pub fn configure<Q, M, S>(
    builder: SchemaBuilder<Q, M, S>,
    cfg: &GraphqlConfig,
) -> SchemaBuilder<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let builder = builder
        .enable_federation()
        .enable_subscription_in_federation()
        .limit_depth(cfg.max_depth)
        .limit_complexity(cfg.max_complexity);
    if cfg.introspection {
        builder
    } else {
        builder.disable_introspection()
    }
}

/// The subgraph SDL the composition step and `_service { sdl }` use.
pub fn federation_sdl<Q, M, S>(schema: &Schema<Q, M, S>) -> String
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    schema.sdl_with_options(SDLExportOptions::new().federation())
}

/// `POST /graphql` (queries, mutations), `GET /graphql` (GraphiQL), `GET /ws` (graphql-ws).
pub fn routes<E: Executor>(executor: E, cfg: &GraphqlConfig) -> Router {
    let mut router = Router::new()
        .route("/ws", get(subscriptions::<E>))
        .with_state(executor.clone());
    let post = axum::routing::post(execute::<E>);
    router = if cfg.graphiql {
        router.route("/graphql", post.get(graphiql).with_state(executor))
    } else {
        router.route("/graphql", post.with_state(executor))
    };
    router
}

async fn execute<E: Executor>(
    State(executor): State<E>,
    caller: Caller,
    request: GraphQLRequest,
) -> GraphQLResponse {
    executor
        .execute(request.into_inner().data(caller))
        .await
        .into()
}

async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/ws")
            .finish(),
    )
}

/// Identity comes from the upgrade request's headers (set by the router), never from the
/// client-controlled `connection_init` payload.
async fn subscriptions<E: Executor>(
    State(executor): State<E>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let caller = Caller::from_headers(&headers);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            let mut data = Data::default();
            data.insert(caller);
            GraphQLWebSocket::new(stream, executor, protocol)
                .with_data(data)
                .serve()
        })
        .into_response()
}

/// The caller of a GraphQL request (anonymous when the request carries no identity).
pub fn caller<'a>(ctx: &'a async_graphql::Context<'_>) -> &'a Caller {
    static ANONYMOUS: Caller = Caller {
        user_id: None,
        role: None,
    };
    ctx.data_opt::<Caller>().unwrap_or(&ANONYMOUS)
}
