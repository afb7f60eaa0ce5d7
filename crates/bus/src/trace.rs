//! W3C trace context carried in every envelope, so the spans of the consumers an event or a
//! job reaches join the trace of the request that produced it (edge → subgraph → outbox →
//! broker → worker). The propagator is the process-wide one `flick_kit::telemetry::init`
//! installs; without it (or without a trace exporter) nothing is written or read.

use crate::Envelope;
use opentelemetry::trace::TraceContextExt as _;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The current span's trace context as `traceparent`/`tracestate` entries (empty when the
/// current span is not traced).
pub fn current_context() -> HashMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut entries = HashMap::new();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut entries));
    }
    entries
}

/// The span a consumer handles `envelope` in: a child of the producer's span when the envelope
/// carries its context. Its `trace_id` field puts the trace in the handler's log lines.
pub fn consumer_span(queue: &str, envelope: &Envelope) -> tracing::Span {
    let span = tracing::info_span!(
        "consume",
        otel.name = %format_args!("{queue} process"),
        otel.kind = "consumer",
        messaging.system = "flick",
        messaging.destination.name = %queue,
        messaging.message.id = %envelope.id,
        event_type = %envelope.r#type,
        trace_id = tracing::field::Empty,
    );
    if !envelope.trace_context.is_empty() {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&envelope.trace_context));
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    } else if let Some(id) = envelope.trace_context.get("traceparent").and_then(|tp| tp.split('-').nth(1)) {
        // Not traced here, but the producer was: its trace id still joins the logs.
        span.record("trace_id", id);
    }
    span
}
