//! GraphQL subgraph plumbing shared by every service: Federation v2 (with subscriptions),
//! depth and complexity limits, the caller's identity in the request data, GraphiQL, and
//! graphql-ws subscriptions on `/ws`.

use crate::config::GraphqlConfig;
use crate::identity::{Caller, TokenVerifier};
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql::{Data, Executor, ObjectType, SDLExportOptions, Schema, SchemaBuilder, SubscriptionType};
use async_graphql_axum::{GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// A data loader for a schema: batches what the fields of one moment ask for (up to 100 keys).
///
/// No wait before a batch goes out: async-graphql's default 1 ms pause (a timer thread's
/// tick, 1.3 ms measured) was most of a feed's time in a subgraph, once per loader level. The
/// fields of a list are polled in one pass and queue their keys before the spawned load runs.
pub fn loader<T: async_graphql::dataloader::Loader<K>, K>(inner: T) -> async_graphql::dataloader::DataLoader<T>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
{
    async_graphql::dataloader::DataLoader::new(inner, tokio::spawn).max_batch_size(100).delay(std::time::Duration::ZERO)
}

/// Applies the platform's federation settings and limits to a subgraph schema.
pub fn configure<Q, M, S>(builder: SchemaBuilder<Q, M, S>, cfg: &GraphqlConfig) -> SchemaBuilder<Q, M, S>
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
    if cfg.introspection { builder } else { builder.disable_introspection() }
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
    routes_with(executor, cfg, None)
}

/// [`routes`], with WebSocket connections that carry an `authorization` bearer token in their
/// `connection_init` payload identified by `verifier` (the router passes a client's token
/// there; it cannot pass the edge's headers over a WebSocket).
pub fn routes_with<E: Executor>(executor: E, cfg: &GraphqlConfig, verifier: Option<TokenVerifier>) -> Router {
    let ws = get(move |state: State<E>, headers: HeaderMap, protocol: GraphQLProtocol, upgrade: WebSocketUpgrade| {
        subscriptions::<E>(state, headers, protocol, upgrade, verifier)
    });
    let mut router = Router::new().route("/ws", ws).with_state(executor.clone());
    let post = axum::routing::post(execute::<E>);
    router = if cfg.graphiql {
        router.route("/graphql", post.get(graphiql).with_state(executor))
    } else {
        router.route("/graphql", post.with_state(executor))
    };
    router
}

/// Reads the body under the server's body limit (413 past it) and answers malformed requests
/// with a GraphQL error (`extensions.code`), never with a parser's debug text.
async fn execute<E: Executor>(
    State(executor): State<E>,
    caller: Caller,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let bytes = match body {
        Ok(bytes) => bytes,
        Err(_) => {
            return request_error(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "request body too large",
            );
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("malformed GraphQL request: {e}");
            return request_error(axum::http::StatusCode::BAD_REQUEST, "BAD_USER_INPUT", &message);
        }
    };
    GraphQLResponse::from(executor.execute(request.data(caller)).await).into_response()
}

fn request_error(status: axum::http::StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/ws").finish())
}

/// graphql-ws for the router. Identity comes from the upgrade request's headers, or from the
/// `connection_init` payload where hive-router puts the headers it propagates. Both are set
/// by the mesh: subgraphs are reachable only from the router (network policy / Istio), and the
/// router's own client-facing WebSocket is disabled because it would pass a client's payload
/// through (see ARCHITECTURE.md).
async fn subscriptions<E: Executor>(
    State(executor): State<E>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
    verifier: Option<TokenVerifier>,
) -> Response {
    let from_upgrade = Caller::from_headers(&headers);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            GraphQLWebSocket::new(stream, executor, protocol)
                .on_connection_init(move |payload| async move {
                    // A token is checked with accounts; a bad one closes the connection.
                    let caller = match (bearer_from_init_payload(&payload), verifier) {
                        (Some(token), Some(verifier)) => {
                            verifier.verify(&token).await.map_err(|e| async_graphql::Error::new(e.message()))?
                        }
                        _ => caller_from_init_payload(&payload).unwrap_or(from_upgrade),
                    };
                    let mut data = Data::default();
                    data.insert(caller);
                    Ok(data)
                })
                .serve()
        })
        .into_response()
}

fn init_headers(payload: &serde_json::Value) -> Option<&serde_json::Map<String, serde_json::Value>> {
    payload.get("headers").and_then(|h| h.as_object()).or_else(|| payload.as_object())
}

/// `authorization: Bearer <token>` from a `connection_init` payload.
fn bearer_from_init_payload(payload: &serde_json::Value) -> Option<String> {
    init_headers(payload)?.iter().find_map(|(k, v)| {
        let v = v.as_str()?;
        (k.eq_ignore_ascii_case("authorization"))
            .then(|| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .flatten()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    })
}

/// Reads `x-user-id`/`x-user-role` from a `connection_init` payload, at the top level or under
/// `headers`, with any key case.
fn caller_from_init_payload(payload: &serde_json::Value) -> Option<Caller> {
    let object = init_headers(payload)?;
    let mut headers = HeaderMap::new();
    for (key, value) in object {
        let key = key.to_ascii_lowercase();
        if (key == crate::identity::USER_ID_HEADER
            || key == crate::identity::USER_ROLE_HEADER
            || key == crate::identity::MESH_HEADER)
            && let (Ok(name), Some(Ok(value))) = (
                axum::http::HeaderName::from_bytes(key.as_bytes()),
                value.as_str().map(axum::http::HeaderValue::from_str),
            )
        {
            headers.insert(name, value);
        }
    }
    let caller = Caller::from_headers(&headers);
    caller.user_id.is_some().then_some(caller)
}

/// The caller of a GraphQL request (anonymous when the request carries no identity).
pub fn caller<'a>(ctx: &'a async_graphql::Context<'_>) -> &'a Caller {
    static ANONYMOUS: Caller = Caller { user_id: None, role: None };
    ctx.data_opt::<Caller>().unwrap_or(&ANONYMOUS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_payload_identity_is_read_at_top_level_or_under_headers() {
        let id = uuid::Uuid::now_v7();
        let top = serde_json::json!({ "x-user-id": id.to_string(), "x-user-role": "user" });
        assert_eq!(caller_from_init_payload(&top), Some(Caller::user(id, "user")));
        let nested = serde_json::json!({ "headers": { "X-User-Id": id.to_string() } });
        assert_eq!(caller_from_init_payload(&nested).unwrap().user_id, Some(id));
        assert_eq!(caller_from_init_payload(&serde_json::json!({ "x-user-id": "nope" })), None);
        assert_eq!(caller_from_init_payload(&serde_json::json!(null)), None);
    }

    #[test]
    fn init_payload_bearer_tokens_are_found_in_any_case() {
        let nested = serde_json::json!({ "headers": { "Authorization": "Bearer abc.def" } });
        assert_eq!(bearer_from_init_payload(&nested).as_deref(), Some("abc.def"));
        let top = serde_json::json!({ "authorization": "bearer xyz" });
        assert_eq!(bearer_from_init_payload(&top).as_deref(), Some("xyz"));
        assert_eq!(bearer_from_init_payload(&serde_json::json!({ "authorization": "Basic xyz" })), None);
        assert_eq!(bearer_from_init_payload(&serde_json::json!({})), None);
    }
}
