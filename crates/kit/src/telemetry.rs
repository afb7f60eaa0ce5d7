//! Logs (JSON or pretty), OTLP traces when an endpoint is configured, W3C trace-context
//! propagation on every hop, and Prometheus metrics with request counts and latency histograms
//! per route and per RPC.

use crate::config::{LogFormat, TelemetryConfig};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TraceId};
use std::sync::OnceLock;
use std::time::Instant;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the trace exporter alive; flushes pending spans when dropped.
pub struct TelemetryGuard {
    tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Installs the global subscriber, the W3C trace-context propagator and the metrics recorder.
/// Call once, early in `main`.
///
/// Log lines carry the `trace_id` of the request or message they belong to. Spans are exported
/// only with `otlp_endpoint`; their level filter is their own (`info`), so a quieter log level
/// does not cut traces short.
pub fn init(cfg: &TelemetryConfig, service_name: &str) -> anyhow::Result<TelemetryGuard> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::trace::Sampler;

    anyhow::ensure!(
        (0.0..=1.0).contains(&cfg.trace_sample_ratio),
        "telemetry.trace_sample_ratio must be between 0 and 1, not {}",
        cfg.trace_sample_ratio
    );
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&cfg.log_level))?;
    let (otel_layer, tracer_provider) = match &cfg.otlp_endpoint {
        Some(endpoint) => {
            let exporter =
                opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint.clone()).build()?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_string()).build();
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                // A caller's decision wins, so a trace is whole or absent across services.
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.trace_sample_ratio))))
                .build();
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("flick"))
                .with_filter(EnvFilter::try_new("info")?);
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(otel_layer);
    match cfg.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    // The current span's fields: its `trace_id` joins the line to its trace.
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .try_init()?,
        LogFormat::Pretty => {
            registry.with(tracing_subscriber::fmt::layer().compact().with_filter(filter)).try_init()?
        }
    }
    metrics_handle();
    Ok(TelemetryGuard { tracer_provider })
}

/// The span every request is served in (HTTP and gRPC): a child of the caller's span when the
/// request carries a W3C `traceparent`, with the trace id in its `trace_id` field.
pub fn request_span<B>(service: &'static str, request: &http::Request<B>) -> tracing::Span {
    let is_grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    // Span names stay bounded: the RPC, or the route template, never the path as sent.
    let name = if is_grpc {
        rpc_label(request.uri().path()).trim_start_matches('/').to_string()
    } else {
        let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str());
        format!("{} {route}", method_label(request.method()))
    };
    let span = tracing::info_span!(
        "request",
        service,
        method = %request.method(),
        path = %request.uri().path(),
        otel.name = %name,
        otel.kind = "server",
        trace_id = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
    let remote = parent.span().span_context().trace_id();
    if remote != TraceId::INVALID {
        let _ = span.set_parent(parent);
    }
    record_trace_id(&span, remote);
    span
}

/// Records the span's trace id, or else the caller's (this process traces nothing but still
/// logs which trace the work belongs to).
fn record_trace_id(span: &tracing::Span, remote: TraceId) {
    let own = span.context().span().span_context().trace_id();
    let id = if own != TraceId::INVALID { own } else { remote };
    if id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// Writes the current span's trace context into outgoing HTTP headers.
pub fn inject_trace_context(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
    }
}

/// The gRPC clients' interceptor: every outgoing call carries the current trace context.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateTrace;

impl tonic::service::Interceptor for PropagateTrace {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let cx = tracing::Span::current().context();
        if cx.span().span_context().is_valid() {
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&cx, &mut MetadataInjector(request.metadata_mut()))
            });
        }
        Ok(request)
    }
}

/// A gRPC channel whose calls carry the trace context.
pub type TracedChannel = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, PropagateTrace>;

/// Wraps a channel so its calls carry the trace context.
pub fn traced(channel: tonic::transport::Channel) -> TracedChannel {
    tonic::service::interceptor::InterceptedService::new(channel, PropagateTrace)
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::header::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        const LATENCY_BUCKETS: &[f64] =
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), LATENCY_BUCKETS)
            .expect("valid buckets");
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is global already (a test harness): keep a private one so
            // `/metrics` still renders.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics_endpoint() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics_handle().render())
}

/// Middleware recording `http_requests_total`/`http_request_duration_seconds` per matched
/// route, and `grpc_requests_total`/`grpc_request_duration_seconds` per RPC. No label is taken
/// from the request as sent: methods outside the standard ones are `OTHER`, unmatched routes
/// `unmatched`, and gRPC paths outside the RPCs the platform defines `unknown`.
pub async fn track_requests(State(service): State<&'static str>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let is_grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let method = method_label(request.method());
    // gRPC: the path names the RPC; REST: the route template keeps label cardinality bounded.
    let route: metrics::SharedString = if is_grpc {
        rpc_label(request.uri().path()).into()
    } else {
        request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| metrics::SharedString::from(p.as_str().to_owned()))
            .unwrap_or_else(|| "unmatched".into())
    };
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    if is_grpc {
        // Failed unary calls answer "trailers-only": grpc-status sits in the headers.
        let code = grpc_code_label(response.headers().get("grpc-status").map(|v| v.as_bytes()));
        metrics::counter!("grpc_requests_total", "service" => service, "rpc" => route.clone(), "code" => code)
            .increment(1);
        metrics::histogram!("grpc_request_duration_seconds", "service" => service, "rpc" => route).record(elapsed);
    } else {
        let status = response.status().as_u16().to_string();
        metrics::counter!("http_requests_total", "service" => service, "method" => method, "route" => route.clone(), "status" => status)
            .increment(1);
        metrics::histogram!("http_request_duration_seconds", "service" => service, "method" => method, "route" => route)
            .record(elapsed);
    }
    response
}

/// The standard methods by name; anything else (extension methods, garbage) is `OTHER`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// A gRPC status code as sent (0–16); anything else is `unknown`.
fn grpc_code_label(code: Option<&[u8]>) -> &'static str {
    const CODES: [&str; 17] =
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"];
    match code {
        None => "0",
        Some(code) => CODES.iter().find(|c| c.as_bytes() == code).copied().unwrap_or("unknown"),
    }
}

/// `/package.Service/Method` when the platform's descriptors (flick's, gRPC health and
/// reflection) define that RPC, else `unknown`.
fn rpc_label(path: &str) -> &'static str {
    static KNOWN: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        use prost::Message as _;
        let mut paths = std::collections::HashSet::new();
        for set in [flick_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else { continue };
            for file in set.file {
                for svc in &file.service {
                    for m in &svc.method {
                        let path = format!("/{}.{}/{}", file.package(), svc.name(), m.name());
                        paths.insert(&*Box::leak(path.into_boxed_str()));
                    }
                }
            }
        }
        paths.insert("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
        paths
    });
    known.get(path).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_take_only_known_values() {
        assert_eq!(
            rpc_label("/flick.accounts.v1.AccountsService/GetUsers"),
            "/flick.accounts.v1.AccountsService/GetUsers"
        );
        assert_eq!(rpc_label("/grpc.health.v1.Health/Check"), "/grpc.health.v1.Health/Check");
        assert_eq!(rpc_label("/flick.accounts.v1.AccountsService/Nope"), "unknown");
        assert_eq!(rpc_label("/x/y"), "unknown");
        assert_eq!(method_label(&axum::http::Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
        assert_eq!(grpc_code_label(Some(b"5")), "5");
        assert_eq!(grpc_code_label(Some(b"999")), "unknown");
    }
}
