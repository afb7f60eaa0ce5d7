//! Serving one service: its REST/GraphQL routes and its gRPC services on one port, with
//! `/healthz`, `/readyz`, `/metrics`, gRPC health and reflection, request metrics and
//! traces, and graceful shutdown (drain requests, then stop background tasks).

use crate::error::AppError;
use crate::telemetry;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// A named readiness check. A local check (the process's own model, say) takes the instance
/// out of the load balancer's pool when it fails. A shared check (the database, cache, broker
/// or storage every replica uses) is only reported: when it fails, every replica fails it at
/// once, and taking them all out would turn a degraded platform (reads served from the cache,
/// writes kept in the outbox, clear UNAVAILABLE errors) into a blank 503 from the edge.
#[derive(Clone)]
pub struct ReadyCheck {
    pub name: &'static str,
    shared: bool,
    check: Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl ReadyCheck {
    /// A check of something this instance alone holds: failing it makes `/readyz` answer 503.
    pub fn new<F, Fut, E>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self {
            name,
            shared: false,
            check: Arc::new(move || {
                let fut = check();
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            }),
        }
    }

    /// A check of a dependency every replica shares: failing it makes `/readyz` answer 200
    /// with status `degraded` and the failure named, so the instance stays in the pool.
    pub fn shared<F, Fut, E>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self { shared: true, ..Self::new(name, check) }
    }
}

/// Work that runs beside the server (event consumers, outbox relay) until shutdown.
pub type BackgroundTask = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// Everything a service contributes; the kit adds the shared endpoints and layers.
pub struct Service {
    pub name: &'static str,
    pub http: Router,
    /// Routes exempt from the request timeout (long uploads and downloads); they still
    /// get metrics, traces and panic catching.
    pub streaming_http: Router,
    pub grpc: tonic::service::Routes,
    /// Fully-qualified gRPC service names, reported SERVING by gRPC health.
    pub grpc_services: Vec<&'static str>,
    pub checks: Vec<ReadyCheck>,
    pub tasks: Vec<BackgroundTask>,
}

impl Service {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            http: Router::new(),
            streaming_http: Router::new(),
            grpc: tonic::service::Routes::default(),
            grpc_services: Vec::new(),
            checks: Vec::new(),
            tasks: Vec::new(),
        }
    }
    pub fn http(mut self, router: Router) -> Self {
        self.http = self.http.merge(router);
        self
    }
    pub fn streaming_http(mut self, router: Router) -> Self {
        self.streaming_http = self.streaming_http.merge(router);
        self
    }
    pub fn grpc<S>(mut self, name: &'static str, svc: S) -> Self
    where
        S: tower::Service<
                axum::http::Request<tonic::body::Body>,
                Response = axum::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.grpc = self.grpc.add_service(svc);
        self.grpc_services.push(name);
        self
    }
    pub fn check(mut self, check: ReadyCheck) -> Self {
        self.checks.push(check);
        self
    }
    pub fn task(mut self, task: BackgroundTask) -> Self {
        self.tasks.push(task);
        self
    }
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

impl From<&crate::config::ServerConfig> for ServerOptions {
    fn from(c: &crate::config::ServerConfig) -> Self {
        Self {
            shutdown_grace: Duration::from_secs(c.shutdown_grace_seconds),
            max_body_bytes: c.max_body_bytes,
            request_timeout: Duration::from_secs(c.request_timeout_seconds),
        }
    }
}

/// A service bound to its port (port 0 picks a free one: tests), not yet serving.
pub struct BoundService {
    service: Service,
    listener: TcpListener,
    options: ServerOptions,
}

impl BoundService {
    pub async fn bind(service: Service, addr: SocketAddr, options: ServerOptions) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("{} cannot listen on {addr}: {e}", service.name))?;
        Ok(Self { service, listener, options })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serves until `shutdown` fires, then drains in-flight requests (up to the grace
    /// period) and waits for background tasks to finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self { service, listener, options } = self;
        let name = service.name;
        let app = app_router(
            service.http,
            service.streaming_http,
            service.grpc,
            &service.grpc_services,
            service.checks,
            name,
            &shutdown,
            &options,
        )
        .await;

        let tasks: Vec<_> = service.tasks.into_iter().map(|task| tokio::spawn(task(shutdown.clone()))).collect();
        tracing::info!(service = name, addr = %listener.local_addr()?, "serving");

        let drained = shutdown.clone();
        let server = axum::serve(without_nagle(listener), app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { drained.cancelled().await });
        let server = tokio::spawn(async move { server.await });
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => { result??; }
            _ = shutdown.cancelled() => {
                if tokio::time::timeout(options.shutdown_grace, &mut server).await.is_err() {
                    tracing::warn!(service = name, "requests still running after the grace period; closing");
                    server.abort();
                }
            }
        }
        for task in tasks {
            if tokio::time::timeout(options.shutdown_grace, task).await.is_err() {
                tracing::warn!(service = name, "background task did not stop in time");
            }
        }
        tracing::info!(service = name, "stopped");
        Ok(())
    }
}

#[expect(clippy::too_many_arguments, reason = "the parts of one service, assembled in one place")]
async fn app_router(
    http: Router,
    streaming_http: Router,
    grpc: tonic::service::Routes,
    grpc_services: &[&'static str],
    checks: Vec<ReadyCheck>,
    name: &'static str,
    shutdown: &CancellationToken,
    options: &ServerOptions,
) -> Router {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for svc in grpc_services {
        health_reporter.set_service_status(*svc, tonic_health::ServingStatus::Serving).await;
    }
    health_reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(flick_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("descriptor sets are valid");
    let grpc = grpc.add_service(health_service).add_service(reflection).prepare();

    // Flip gRPC health to NOT_SERVING as soon as shutdown starts, like /readyz.
    let reporter = health_reporter.clone();
    let stopping = shutdown.clone();
    let grpc_names = grpc_services.to_vec();
    tokio::spawn(async move {
        stopping.cancelled().await;
        reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        for svc in grpc_names {
            reporter.set_service_status(svc, tonic_health::ServingStatus::NotServing).await;
        }
    });

    let readiness = Readiness { checks: Arc::new(checks), shutdown: shutdown.clone() };
    let ops = Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz).with_state(readiness))
        .route("/metrics", get(telemetry::metrics_endpoint));

    http.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::GATEWAY_TIMEOUT,
        options.request_timeout,
    ))
    .merge(streaming_http)
    .merge(ops)
    .merge(grpc.into_axum_router())
    .fallback(|| async { AppError::not_found("no such route") })
    .method_not_allowed_fallback(|| async {
        AppError::new(crate::error::ErrorCode::MethodNotAllowed, "method not allowed on this route")
    })
    .layer(DefaultBodyLimit::max(options.max_body_bytes))
    .layer(axum::middleware::from_fn_with_state(name, telemetry::track_requests))
    .layer(
        TraceLayer::new_for_http()
            .make_span_with(move |req: &axum::http::Request<_>| telemetry::request_span(name, req)),
    )
    .layer(CatchPanicLayer::custom(|_| AppError::internal("handler panicked").into_response()))
}

#[derive(Clone)]
struct Readiness {
    checks: Arc<Vec<ReadyCheck>>,
    shutdown: CancellationToken,
}

async fn readyz(State(r): State<Readiness>) -> impl IntoResponse {
    if r.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "shutting down" })));
    }
    let results = futures::future::join_all(r.checks.iter().map(|c| async move {
        let outcome = match tokio::time::timeout(Duration::from_secs(2), (c.check)()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("timed out after 2 s".to_string()),
        };
        (c, outcome)
    }))
    .await;
    let failing_local = results.iter().any(|(c, r)| !c.shared && r.is_err());
    let failing_shared = results.iter().any(|(c, r)| c.shared && r.is_err());
    let checks: serde_json::Map<_, _> = results
        .into_iter()
        .map(|(c, r)| (c.name.to_string(), serde_json::Value::String(r.err().unwrap_or_else(|| "ok".into()))))
        .collect();
    let (status, word) = match (failing_local, failing_shared) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        (false, true) => (StatusCode::OK, "degraded"),
        (false, false) => (StatusCode::OK, "ready"),
    };
    (status, axum::Json(serde_json::json!({ "status": word, "checks": checks })))
}

/// Accepted connections send each write at once. With Nagle's algorithm on, a gRPC answer's
/// frames written one after another (headers, data, trailers) wait for the caller's delayed
/// ACK: ~40 ms on every call between services at low load (an idle video page took 48 ms,
/// its `related` waiting on media's `ListedVideoIds`). tonic's clients, and Go's (Traefik),
/// set it on their side by default.
pub fn without_nagle(listener: TcpListener) -> axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn nodelay(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
        }
    }
    listener.tap_io(nodelay as fn(&mut tokio::net::TcpStream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        use axum::serve::Listener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr);
        let mut listener = without_nagle(listener);
        let (accepted, _) = tokio::join!(listener.accept(), client);
        assert!(accepted.0.nodelay().unwrap(), "every write of an answer leaves at once");
    }

    fn check(name: &'static str, shared: bool, ok: bool) -> ReadyCheck {
        let f = move || async move { if ok { Ok(()) } else { Err(format!("{name} unreachable")) } };
        if shared { ReadyCheck::shared(name, f) } else { ReadyCheck::new(name, f) }
    }

    async fn ask(checks: Vec<ReadyCheck>, stopping: bool) -> (StatusCode, serde_json::Value) {
        let shutdown = CancellationToken::new();
        if stopping {
            shutdown.cancel();
        }
        let res = readyz(State(Readiness { checks: Arc::new(checks), shutdown })).await.into_response();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_failing_shared_dependency_degrades_but_keeps_the_instance_in_the_pool() {
        let (status, body) = ask(vec![check("database", true, true), check("bus", true, false)], false).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["checks"]["bus"], "bus unreachable");
        assert_eq!(body["checks"]["database"], "ok");
    }

    #[tokio::test]
    async fn a_failing_local_check_or_a_shutdown_takes_the_instance_out() {
        let (status, body) = ask(vec![check("model", false, false), check("bus", true, true)], false).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("not ready")));
        assert_eq!(body["checks"]["model"], "model unreachable");
        let (status, body) = ask(vec![check("bus", true, true)], true).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("shutting down")));
        let (status, body) = ask(vec![check("model", false, true), check("bus", true, true)], false).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    }
}
