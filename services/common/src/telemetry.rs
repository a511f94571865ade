//! Logs (`tracing`, JSON or pretty), traces (OpenTelemetry, OTLP export when an endpoint is
//! configured) and the W3C `traceparent` carried in Kafka headers so one trace spans a study's
//! whole path.

use std::collections::BTreeMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable (a terminal).
    Pretty,
}

/// Keeps the tracer provider alive; flushes spans on drop.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. `otlp_endpoint`: an OTLP/HTTP endpoint such as
/// `http://collector:4318/v1/traces`; `None` keeps trace ids (for propagation) but exports nothing.
pub fn init(
    service: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_string())
            .build(),
    );
    if let Some(endpoint) = otlp_endpoint.filter(|e| !e.is_empty()) {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("cxrflow");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,rdkafka=warn,librdkafka=warn,ort=warn,h2=warn,hyper=warn")
    });
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
    if result.is_err() {
        // Already initialised (several services in one process, or tests): keep the first.
        return Ok(TelemetryGuard { provider: None });
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// Makes `span` a child of the trace context in `headers`, if any.
pub fn adopt_parent(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    if headers.contains_key(TRACEPARENT) {
        let carrier: std::collections::HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` to put on records produced within `span`; falls back to the inbound one
/// when no tracer is installed, so the context still travels.
pub fn outbound_traceparent(
    span: &tracing::Span,
    inbound: &BTreeMap<String, String>,
) -> Option<String> {
    let mut carrier: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier
        .remove(TRACEPARENT)
        .or_else(|| inbound.get(TRACEPARENT).cloned())
}
