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

/// Where traces go: the explicit endpoint (`--otlp-endpoint`), else the standard
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), else `OTEL_EXPORTER_OTLP_ENDPOINT` with
/// `/v1/traces` appended (the OTLP/HTTP convention); `None`: no export.
pub fn traces_endpoint(
    explicit: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let set = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    set(explicit.map(str::to_string))
        .or_else(|| set(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")))
        .or_else(|| {
            set(env("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        })
}

/// Installs the global subscriber. `service` names the process in traces (`service.name`;
/// `OTEL_SERVICE_NAME` overrides it). `otlp_endpoint`: an OTLP/HTTP endpoint such as
/// `http://collector:4318/v1/traces` (see [`traces_endpoint`] for the standard variables);
/// without one, trace ids still exist (for propagation and logs) but nothing is exported.
pub fn init(
    service: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let env = |k: &str| std::env::var(k).ok();
    let name = env("OTEL_SERVICE_NAME")
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| service.to_string());
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(name.clone())
            .build(),
    );
    let endpoint = traces_endpoint(otlp_endpoint, env);
    if let Some(endpoint) = &endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.as_str())
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
                // The current span's fields ride along: the record's topic, partition, offset
                // and its `trace_id` (see `adopt_parent`), so a log line finds its trace.
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
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
    if let Some(endpoint) = &endpoint {
        tracing::info!(service = %name, %endpoint, "exporting traces (OTLP/HTTP)");
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// The field a span declares (`trace_id = tracing::field::Empty`) to carry its trace id into
/// JSON log lines.
pub const TRACE_ID_FIELD: &str = "trace_id";

/// Makes `span` a child of the trace context in `headers`, if any, and records the span's trace
/// id in its `trace_id` field when it declares one.
pub fn adopt_parent(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    if headers.contains_key(TRACEPARENT) {
        let carrier: std::collections::HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        let _ = span.set_parent(cx);
    }
    record_trace_id(span);
}

/// Records `span`'s trace id in its `trace_id` field (a no-op for spans without the field, or
/// without a tracer).
pub fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record(TRACE_ID_FIELD, tracing::field::display(id));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_variables_name_the_endpoint_when_no_flag_does() {
        let none = |_: &str| None;
        assert_eq!(traces_endpoint(None, none), None);
        assert_eq!(traces_endpoint(Some(""), none), None);
        assert_eq!(
            traces_endpoint(Some("http://c:4318/v1/traces"), none).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        let base = |k: &str| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://c:4318/".into());
        assert_eq!(
            traces_endpoint(None, base).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        let both = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some("http://t:1/x".into()),
            _ => Some("http://c:4318".into()),
        };
        assert_eq!(traces_endpoint(None, both).as_deref(), Some("http://t:1/x"));
        assert_eq!(
            traces_endpoint(Some("http://flag"), both).as_deref(),
            Some("http://flag"),
            "the flag wins"
        );
    }
}
