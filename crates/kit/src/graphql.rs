//! GraphQL subgraph plumbing shared by every service: Federation v2 (with subscriptions),
//! depth and complexity limits, the caller's identity in the request data, GraphiQL, and
//! graphql-ws subscriptions on `/ws`.

use crate::config::GraphqlConfig;
use crate::error::AppError;
use crate::identity::{Caller, TokenSession, TokenVerifier};
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql::{Data, Executor, ObjectType, SDLExportOptions, Schema, SchemaBuilder, SubscriptionType};
use async_graphql_axum::{GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::ws::{CloseFrame, Message};
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

/// How a schema checks a request's cost; a [`Subgraph`] holds one schema of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostCheck {
    /// async-graphql's own limit: no extension registered, so every field is resolved
    /// directly. With any extension async-graphql sends each field through its slow path
    /// (type names formatted, registry lookups, the extension chain): ~20% of a subgraph's
    /// CPU on the signed-in feed (ARCHITECTURE.md, "Signed-in requests").
    Builtin,
    /// The platform's extension (`CostLimit`): the cost times `_entities`' representations,
    /// and the cost in the refusal's message.
    PerEntity,
}

/// Applies the platform's federation settings and limits to a subgraph schema.
pub fn configure<Q, M, S>(
    builder: SchemaBuilder<Q, M, S>,
    cfg: &GraphqlConfig,
    check: CostCheck,
) -> SchemaBuilder<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let builder = builder.enable_federation().enable_subscription_in_federation().limit_depth(cfg.max_depth);
    let builder = match check {
        CostCheck::Builtin => builder.limit_complexity(cfg.max_complexity),
        CostCheck::PerEntity => builder.extension(CostLimit { max: cfg.max_complexity }),
    };
    if cfg.introspection { builder } else { builder.disable_introspection() }
}

/// A subgraph's schema built twice, one per [`CostCheck`]. A request runs on the
/// [`CostCheck::Builtin`] one unless it resolves more than one entity representation (the
/// router's `_entities` calls for a page's owners or videos), whose cost only the
/// [`CostCheck::PerEntity`] one multiplies; the two refuse the same requests otherwise, and
/// a refusal is answered by the per-entity one, so clients get the same code and message.
#[derive(Clone)]
pub struct Subgraph<E> {
    builtin: E,
    per_entity: E,
}

impl<E: Executor> Subgraph<E> {
    /// `build` makes the schema with the check it is given (data loaders and all: the two
    /// share nothing but what `build` clones into both).
    pub fn new(build: impl Fn(CostCheck) -> E) -> Self {
        Self { builtin: build(CostCheck::Builtin), per_entity: build(CostCheck::PerEntity) }
    }

    /// Runs `request` on the schema its entity representations call for. `again` rebuilds
    /// it (a request is not `Clone`) when the built-in limit refused it, to be answered by
    /// the per-entity check, whose message says the cost.
    async fn execute(
        &self,
        mut request: async_graphql::Request,
        again: impl FnOnce() -> Option<async_graphql::Request>,
    ) -> async_graphql::Response {
        // Parsed here once: the schema takes the document from the request.
        let variables = std::mem::take(&mut request.variables);
        let representations = request.parsed_query().map(|doc| entity_representations(doc, &variables)).unwrap_or(0);
        request.variables = variables;
        if representations > 1 {
            return self.per_entity.execute(request).await;
        }
        let response = self.builtin.execute(request).await;
        if refused_by_limit(&response)
            && let Some(request) = again()
        {
            return self.per_entity.execute(request).await;
        }
        response
    }
}

/// async-graphql's own refusals for depth or cost (no data: nothing ran).
fn refused_by_limit(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && response.errors.iter().any(|e| e.message == BUILTIN_TOO_COMPLEX || e.message == BUILTIN_TOO_DEEP)
}

const BUILTIN_TOO_COMPLEX: &str = "Query is too complex.";
const BUILTIN_TOO_DEEP: &str = "Query is nested too deep.";

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
        std::sync::Arc::new(CostGuard { max: self.max, representations: Default::default() })
    }
}

struct CostGuard {
    max: usize,
    representations: std::sync::atomic::AtomicUsize,
}

#[async_graphql::async_trait::async_trait]
impl async_graphql::extensions::Extension for CostGuard {
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
                .map(|e| if e.message == BUILTIN_TOO_DEEP { coded(e, TOO_DEEP) } else { e })
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
pub fn routes<E: Executor>(subgraph: Subgraph<E>, cfg: &GraphqlConfig) -> Router {
    routes_with(subgraph, cfg, None)
}

/// [`routes`], with bearer tokens checked by `verifier`: a WebSocket connection is identified
/// only by the token in its `connection_init` payload (or upgrade request), and an HTTP
/// request that carries no identity from the mesh but a token is identified by the token
/// (the router sends a WebSocket client's queries that way). Without a verifier, a token is
/// refused rather than ignored. Subscriptions run on the per-entity schema (a connection
/// lives long; its few operations gain nothing from the direct path).
pub fn routes_with<E: Executor>(subgraph: Subgraph<E>, cfg: &GraphqlConfig, verifier: Option<TokenVerifier>) -> Router {
    let ws_auth = WsAuth {
        verifier: verifier.clone(),
        recheck: std::time::Duration::from_secs(cfg.subscription_recheck_seconds.max(1)),
        slots: SubscriptionSlots::new(cfg.max_subscriptions_per_user),
    };
    let ws = get(move |state: State<E>, headers: HeaderMap, protocol: GraphQLProtocol, upgrade: WebSocketUpgrade| {
        subscriptions::<E>(state, headers, protocol, upgrade, ws_auth)
    });
    let router = Router::new().route("/ws", ws).with_state(subgraph.per_entity.clone());
    let post = axum::routing::post(
        move |state: State<Subgraph<E>>,
              caller: Caller,
              headers: HeaderMap,
              body: Result<axum::body::Bytes, BytesRejection>| {
            execute::<E>(state, caller, headers, body, verifier)
        },
    );
    if cfg.graphiql {
        router.route("/graphql", post.get(graphiql).with_state(subgraph))
    } else {
        router.route("/graphql", post.with_state(subgraph))
    }
}

type BytesRejection = axum::extract::rejection::BytesRejection;

/// Reads the body under the server's body limit (413 past it) and answers malformed requests
/// with a GraphQL error (`extensions.code`), never with a parser's debug text.
async fn execute<E: Executor>(
    State(subgraph): State<Subgraph<E>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
    verifier: Option<TokenVerifier>,
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
    let request: async_graphql::Request = match decode_request(&bytes) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("malformed GraphQL request: {e}");
            return request_error(axum::http::StatusCode::BAD_REQUEST, "BAD_USER_INPUT", &message);
        }
    };
    let caller = match (caller.user_id, bearer_from_headers(&headers)) {
        (None, Some(token)) => match verifier {
            Some(verifier) => match verifier.verify(&token).await {
                Ok(caller) => caller,
                Err(e) => return app_error(e),
            },
            None => return app_error(AppError::unauthenticated("this service does not accept bearer tokens")),
        },
        _ => caller,
    };
    let address = ClientAddress(crate::identity::client_address(&headers, None));
    let again = || decode_request(&bytes).ok().map(|r| r.data(caller.clone()).data(address.clone()));
    let request = request.data(caller.clone()).data(address.clone());
    GraphQLResponse::from(subgraph.execute(request, again).await).into_response()
}

fn decode_request(bytes: &[u8]) -> serde_json::Result<async_graphql::Request> {
    serde_json::from_slice(bytes)
}

/// The client's address as the edge saw it (`X-Forwarded-For`, which the router passes on for
/// requests on `/graphql`), for resolvers that key anonymous activity by a pseudonym of it.
/// `None` over a WebSocket and when no edge set it.
#[derive(Debug, Clone, Default)]
pub struct ClientAddress(pub Option<String>);

/// The request's [`ClientAddress`].
pub fn client_address<'a>(ctx: &'a async_graphql::Context<'_>) -> Option<&'a str> {
    ctx.data_opt::<ClientAddress>().and_then(|a| a.0.as_deref())
}

/// A token refused (or not checkable now) before execution: a GraphQL response with the
/// error and no data, status 200 as GraphQL over HTTP has it for `application/json`. The
/// router passes it on as is; a 4xx would make it add an error of its own
/// (`SUBREQUEST_HTTP_ERROR`) beside the one that says what went wrong.
fn app_error(e: AppError) -> Response {
    request_error(axum::http::StatusCode::OK, e.code().as_str(), e.message())
}

fn request_error(status: axum::http::StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/ws").finish())
}

/// What the WebSocket endpoint needs to identify connections and keep them honest.
#[derive(Clone)]
struct WsAuth {
    verifier: Option<TokenVerifier>,
    recheck: std::time::Duration,
    slots: SubscriptionSlots,
}

/// graphql-ws for the router. A connection's identity comes only from a bearer token (in the
/// `connection_init` payload, where the router puts the client's `authorization`, or in the
/// upgrade request), verified with accounts. Identity headers in the payload (`x-user-id`,
/// `x-flick-mesh`) are ignored: over a client's WebSocket the router fills the payload from
/// what the client wrote, so they prove nothing.
///
/// The connection ends (close 4403) when its token expires or is revoked: at once when the
/// shared revocation list reports it (a logout on any replica), else at the next re-check.
async fn subscriptions<E: Executor>(
    State(executor): State<E>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
    auth: WsAuth,
) -> Response {
    let upgrade_token = bearer_from_headers(&headers);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let (socket_tx, socket_rx) = futures::StreamExt::split(socket);
            // Outgoing frames pass through a channel, so a close frame can be sent from here.
            let (out_tx, out_rx) = futures::channel::mpsc::channel::<Message>(16);
            let mut closer = out_tx.clone();
            let forward = tokio::spawn(forward_frames(out_rx, socket_tx));
            let (session_tx, session_rx) = tokio::sync::oneshot::channel::<(String, TokenSession)>();
            let init_auth = auth.clone();
            let serve = GraphQLWebSocket::new_with_pair(out_tx, socket_rx, executor, protocol)
                .on_connection_init(move |payload| async move {
                    let mut data = Data::default();
                    data.insert(init_auth.slots.clone());
                    let Some(token) = bearer_from_init_payload(&payload).or(upgrade_token) else {
                        data.insert(Caller::anonymous());
                        return Ok(data);
                    };
                    let verifier = init_auth
                        .verifier
                        .ok_or_else(|| async_graphql::Error::new("this service does not accept bearer tokens"))?;
                    // A bad token refuses the connection.
                    let session =
                        verifier.verify_session(&token).await.map_err(|e| async_graphql::Error::new(e.message()))?;
                    data.insert(session.caller.clone());
                    let _ = session_tx.send((token, session));
                    Ok(data)
                })
                .serve();
            tokio::select! {
                _ = serve => {}
                reason = session_end(session_rx, &auth) => {
                    let frame = CloseFrame { code: 4403, reason: reason.into() };
                    let _ = futures::SinkExt::send(&mut closer, Message::Close(Some(frame))).await;
                }
            }
            drop(closer);
            let _ = forward.await;
        })
        .into_response()
}

async fn forward_frames(
    mut frames: futures::channel::mpsc::Receiver<Message>,
    mut socket: futures::stream::SplitSink<axum::extract::ws::WebSocket, Message>,
) {
    use futures::{SinkExt, StreamExt};
    while let Some(frame) = frames.next().await {
        let last = matches!(frame, Message::Close(_));
        if socket.send(frame).await.is_err() || last {
            break;
        }
    }
    let _ = socket.close().await;
}

/// Resolves when the token that opened a connection stops being valid; never for a
/// connection opened without one.
async fn session_end(session: tokio::sync::oneshot::Receiver<(String, TokenSession)>, auth: &WsAuth) -> &'static str {
    let (Ok((token, session)), Some(verifier)) = (session.await, auth.verifier.as_ref()) else {
        return std::future::pending().await;
    };
    let feed = verifier.revocations().cloned();
    let mut changes = feed.as_ref().map(|f| f.changes());
    let expires_in = std::time::Duration::from_millis((session.expires_at_ms - now_ms()).max(0) as u64);
    let expiry = async {
        if session.expires_at_ms > 0 { tokio::time::sleep(expires_in).await } else { std::future::pending().await }
    };
    tokio::pin!(expiry);
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + auth.recheck, auth.recheck);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let listed = async {
            match changes.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut expiry => return "token expired",
            _ = recheck.tick() => {
                // Only a definite "no" ends it: an accounts outage is not a revocation.
                if let Err(e) = verifier.verify(&token).await
                    && e.code() == crate::error::ErrorCode::Unauthenticated
                {
                    return "token revoked";
                }
            }
            alive = listed => {
                if !alive {
                    changes = None;
                    continue;
                }
                let revoked = match &feed {
                    Some(feed) => feed.is_revoked(&session.revocation_keys).await,
                    None => None,
                };
                let revoked = match revoked {
                    Some(revoked) => revoked,
                    None => matches!(verifier.verify(&token).await, Err(e) if e.code() == crate::error::ErrorCode::Unauthenticated),
                };
                if revoked {
                    return "token revoked";
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Caps the subscriptions one user holds open in this process; see [`subscription_slot`].
#[derive(Clone, Debug)]
pub struct SubscriptionSlots {
    max_per_user: usize,
    open: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<uuid::Uuid, usize>>>,
}

impl SubscriptionSlots {
    pub fn new(max_per_user: usize) -> Self {
        Self { max_per_user, open: Default::default() }
    }

    /// A slot for `user`, held until the guard drops; an error once the user holds the most.
    pub fn acquire(&self, user: uuid::Uuid) -> Result<SubscriptionSlot, AppError> {
        let mut open = self.open.lock().expect("subscription slots lock");
        let count = open.entry(user).or_default();
        if *count >= self.max_per_user {
            return Err(AppError::new(
                crate::error::ErrorCode::RateLimited,
                format!("too many open subscriptions (at most {} per user)", self.max_per_user),
            ));
        }
        *count += 1;
        Ok(SubscriptionSlot { slots: self.clone(), user })
    }
}

/// One open subscription of a user; frees its slot when dropped (the stream ended).
#[derive(Debug)]
pub struct SubscriptionSlot {
    slots: SubscriptionSlots,
    user: uuid::Uuid,
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("subscription slots lock");
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// A subscription slot for the caller of a subscription resolver: keep the guard alive as
/// long as the stream (move it into the stream). Anonymous callers are not counted here;
/// resolvers that serve them must bound their work otherwise.
pub fn subscription_slot(
    ctx: &async_graphql::Context<'_>,
    user: uuid::Uuid,
) -> Result<Option<SubscriptionSlot>, AppError> {
    match ctx.data_opt::<SubscriptionSlots>() {
        Some(slots) => slots.acquire(user).map(Some),
        None => Ok(None),
    }
}

fn init_headers(payload: &serde_json::Value) -> Option<&serde_json::Map<String, serde_json::Value>> {
    payload.get("headers").and_then(|h| h.as_object()).or_else(|| payload.as_object())
}

fn bearer(value: &str) -> Option<String> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// `authorization: Bearer <token>` from a `connection_init` payload.
fn bearer_from_init_payload(payload: &serde_json::Value) -> Option<String> {
    init_headers(payload)?
        .iter()
        .find_map(|(k, v)| k.eq_ignore_ascii_case("authorization").then(|| v.as_str().and_then(bearer)).flatten())
}

/// `Authorization: Bearer <token>` of an HTTP request.
fn bearer_from_headers(headers: &HeaderMap) -> Option<String> {
    headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer)
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

    /// A subgraph whose fields say which of the two schemas resolved them.
    mod which {
        use super::super::*;
        use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, SimpleObject};

        #[derive(SimpleObject)]
        pub struct Item {
            pub id: i32,
            pub check: String,
        }

        fn item(ctx: &Context<'_>, id: i32) -> Item {
            Item { id, check: format!("{:?}", ctx.data_unchecked::<CostCheck>()) }
        }

        pub struct Query;

        #[Object]
        impl Query {
            async fn check(&self, ctx: &Context<'_>) -> String {
                format!("{:?}", ctx.data_unchecked::<CostCheck>())
            }

            #[graphql(complexity = "list_cost(first, 20, child_complexity)")]
            async fn items(&self, ctx: &Context<'_>, first: Option<i32>) -> Vec<Item> {
                (0..first.unwrap_or(20)).map(|id| item(ctx, id)).collect()
            }

            #[graphql(entity)]
            async fn find_item(&self, ctx: &Context<'_>, id: i32) -> Item {
                item(ctx, id)
            }
        }

        pub fn router(cfg: &GraphqlConfig) -> Router {
            let subgraph = Subgraph::new(|check| {
                configure(Schema::build(Query, EmptyMutation, EmptySubscription), cfg, check).data(check).finish()
            });
            routes(subgraph, cfg)
        }
    }

    async fn post(router: &Router, query: &str, variables: serde_json::Value) -> serde_json::Value {
        use tower::ServiceExt;
        let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
        let request = axum::http::Request::post("/graphql")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn requests_run_on_the_direct_schema_unless_they_resolve_many_entities() {
        let cfg = GraphqlConfig { max_complexity: 50, max_depth: 3, ..Default::default() };
        let router = which::router(&cfg);
        let reps = |n: i32| serde_json::json!({ "r": (0..n).map(|id| serde_json::json!({ "__typename": "Item", "id": id })).collect::<Vec<_>>() });
        let entities = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Item { id check } } }";

        let res = post(&router, "{ check items(first: 2) { check } }", serde_json::json!({})).await;
        assert_eq!(res["data"]["check"], "Builtin", "{res}");
        assert_eq!(res["data"]["items"][1]["check"], "Builtin", "{res}");
        let res = post(&router, entities, reps(1)).await;
        assert_eq!(res["data"]["_entities"][0]["check"], "Builtin", "{res}");
        let res = post(&router, entities, reps(3)).await;
        assert_eq!(res["data"]["_entities"][2]["check"], "PerEntity", "{res}");

        // Refusals read the same whichever schema took the request, and nothing runs.
        let res = post(&router, "{ items(first: 30) { id check } }", serde_json::json!({})).await;
        assert_eq!(res["errors"][0]["extensions"]["code"], TOO_COMPLEX, "{res}");
        assert!(res["errors"][0]["message"].as_str().unwrap().contains("cost 61 is over the limit 50"), "{res}");
        assert!(res.get("data").is_none_or(serde_json::Value::is_null), "{res}");
        let res = post(&router, entities, reps(20)).await;
        assert_eq!(res["errors"][0]["extensions"]["code"], TOO_COMPLEX, "{res}");
        assert!(res["errors"][0]["message"].as_str().unwrap().contains("× 20 entities"), "{res}");
        // The built-in depth refusal gets the platform's code too.
        let shallow = which::router(&GraphqlConfig { max_depth: 1, ..cfg });
        let res = post(&shallow, "{ items(first: 1) { id } }", serde_json::json!({})).await;
        assert_eq!(res["errors"][0]["extensions"]["code"], TOO_DEEP, "{res}");
        assert!(res.get("data").is_none_or(serde_json::Value::is_null), "{res}");
        assert_eq!(post(&shallow, "{ check }", serde_json::json!({})).await["data"]["check"], "Builtin");
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
