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
        .extension(CostLimit { max: cfg.max_complexity });
    if cfg.introspection { builder } else { builder.disable_introspection() }
}

/// The largest page a list field serves (`first` ≤ 100 everywhere).
pub const MAX_LIST: usize = 100;

/// `extensions.code` of a request refused for its cost, before anything ran.
pub const TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";

/// `extensions.code` of a request refused for its depth.
pub const TOO_DEEP: &str = "QUERY_TOO_DEEP";

/// The cost of a list field: 1 for the field plus `first` (or the field's default when absent;
/// out-of-range values, which the resolver refuses, count as [`MAX_LIST`]) times the cost of
/// what it selects. Every list field declares it, so a query's cost bounds the fields its
/// answer can hold: `#[graphql(complexity = "flick_kit::graphql::list_cost(first, 20,
/// child_complexity)")]`.
pub fn list_cost(first: Option<i32>, default: usize, child_complexity: usize) -> usize {
    let n = match first {
        None => default,
        Some(n) => usize::try_from(n).ok().filter(|n| *n <= MAX_LIST).unwrap_or(MAX_LIST),
    };
    n.min(MAX_LIST).saturating_mul(child_complexity).saturating_add(1)
}

/// Refuses, before execution, a request whose cost is over `max` (`QUERY_TOO_COMPLEX`): the
/// complexity async-graphql computes (with [`list_cost`] on list fields), times the number of
/// representations of `_entities` when the router resolves entities (each representation
/// runs the selection once). Depth errors get `QUERY_TOO_DEEP`.
struct CostLimit {
    max: usize,
}

impl async_graphql::extensions::ExtensionFactory for CostLimit {
    fn create(&self) -> std::sync::Arc<dyn async_graphql::extensions::Extension> {
        std::sync::Arc::new(CostCheck { max: self.max, representations: Default::default() })
    }
}

struct CostCheck {
    max: usize,
    representations: std::sync::atomic::AtomicUsize,
}

#[async_graphql::async_trait::async_trait]
impl async_graphql::extensions::Extension for CostCheck {
    async fn parse_query(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        query: &str,
        variables: &async_graphql::Variables,
        next: async_graphql::extensions::NextParseQuery<'_>,
    ) -> async_graphql::ServerResult<async_graphql::parser::types::ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        self.representations.store(entity_representations(&document, variables), std::sync::atomic::Ordering::Relaxed);
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        next: async_graphql::extensions::NextValidation<'_>,
    ) -> Result<async_graphql::ValidationResult, Vec<async_graphql::ServerError>> {
        let mut result = next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| if e.message == "Query is nested too deep." { coded(e, TOO_DEEP) } else { e })
                .collect::<Vec<_>>()
        })?;
        let representations = self.representations.load(std::sync::atomic::Ordering::Relaxed).max(1);
        let cost = result.complexity.saturating_mul(representations);
        if cost > self.max {
            let message = if representations > 1 {
                format!(
                    "query too complex: cost {} per entity × {representations} entities is over the limit {} \
                     (a list field costs `first` times its selection)",
                    result.complexity, self.max
                )
            } else {
                format!(
                    "query too complex: cost {cost} is over the limit {} (a list field costs `first` times its \
                     selection)",
                    self.max
                )
            };
            return Err(vec![coded(async_graphql::ServerError::new(message, None), TOO_COMPLEX)]);
        }
        result.complexity = cost;
        Ok(result)
    }
}

fn coded(mut error: async_graphql::ServerError, code: &str) -> async_graphql::ServerError {
    error.extensions.get_or_insert_with(Default::default).set("code", code);
    error
}

/// How many entity representations a document's `_entities` fields carry (0 without any):
/// literal lists or variables, at the root of any operation, through fragments.
fn entity_representations(
    document: &async_graphql::parser::types::ExecutableDocument,
    variables: &async_graphql::Variables,
) -> usize {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn walk<'a>(
        set: &'a SelectionSet,
        document: &'a async_graphql::parser::types::ExecutableDocument,
        variables: &async_graphql::Variables,
        seen: &mut Vec<&'a str>,
    ) -> usize {
        let mut total = 0usize;
        for selection in &set.items {
            total = total.saturating_add(match &selection.node {
                Selection::Field(field) if field.node.name.node == "_entities" => {
                    // A variable stands for its list's length (not copied); a literal list counts.
                    let mut from_variable = 0;
                    let value = field.node.get_argument("representations").map(|v| {
                        v.node.clone().into_const_with(|name| {
                            if let Some(async_graphql::Value::List(items)) = variables.get(&name) {
                                from_variable = items.len();
                            }
                            Ok::<_, std::convert::Infallible>(async_graphql::Value::Null)
                        })
                    });
                    match value {
                        Some(Ok(async_graphql::Value::List(items))) => items.len(),
                        Some(Ok(async_graphql::Value::Null)) => from_variable,
                        _ => 0,
                    }
                }
                Selection::Field(_) => 0,
                Selection::InlineFragment(fragment) => {
                    walk(&fragment.node.selection_set.node, document, variables, seen)
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    match document.fragments.get(name) {
                        // A cycle (refused by validation later) is not followed.
                        Some(fragment) if !seen.contains(&name) => {
                            seen.push(name);
                            let n = walk(&fragment.node.selection_set.node, document, variables, seen);
                            seen.pop();
                            n
                        }
                        _ => 0,
                    }
                }
            });
        }
        total
    }
    let mut seen = Vec::new();
    document
        .operations
        .iter()
        .map(|(_, operation)| walk(&operation.node.selection_set.node, document, variables, &mut seen))
        .fold(0usize, usize::saturating_add)
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
    fn list_cost_multiplies_the_selection_by_the_page() {
        assert_eq!(list_cost(None, 20, 3), 61);
        assert_eq!(list_cost(Some(100), 20, 3), 301);
        assert_eq!(list_cost(Some(0), 20, 3), 1);
        // Out of range (refused by the resolver) counts as the largest page.
        assert_eq!(list_cost(Some(-1), 20, 3), 301);
        assert_eq!(list_cost(Some(i32::MAX), 20, usize::MAX), usize::MAX);
    }

    #[test]
    fn entity_representations_are_counted_from_variables_literals_and_fragments() {
        let count = |query: &str, variables: serde_json::Value| {
            let document = async_graphql::parser::parse_query(query).unwrap();
            entity_representations(&document, &async_graphql::Variables::from_json(variables))
        };
        let reps =
            serde_json::json!({ "r": [{ "__typename": "Video", "id": "1" }, { "__typename": "Video", "id": "2" }] });
        let query = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Video { id } } }";
        assert_eq!(count(query, reps.clone()), 2);
        let aliased = "query($r: [_Any!]!) { a: _entities(representations: $r) { __typename } ...F } \
                       fragment F on Query { b: _entities(representations: [{ __typename: \"User\", id: \"1\" }]) { __typename } }";
        assert_eq!(count(aliased, reps), 3);
        assert_eq!(count("{ feed { edges { node { id } } } }", serde_json::json!({})), 0);
        assert_eq!(count("{ ...F } fragment F on Query { ...F }", serde_json::json!({})), 0);
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
