//! OpenTelemetry span export over OTLP/HTTP (protobuf): cargo feature `otlp`.
//!
//! [`OtlpSink`] turns each finished request into one span of kind SERVER and
//! hands it to the OpenTelemetry SDK's [`BatchSpanProcessor`], which queues it
//! (bounded: a full queue drops the span and counts it) and exports batches
//! from its own thread with the `opentelemetry-otlp` HTTP exporter on
//! reqwest's blocking client. So [`SpanSink::finished`] only builds the span
//! and does a non-blocking channel send; no export work happens on the
//! request's task or on the gateway's runtime.
//!
//! The span is built as [`SpanData`] directly rather than through an SDK
//! tracer: the SDK's tracer always draws span ids from its id generator, and
//! the exported span must carry the ids the gateway already chose and sent on
//! (the span id is the parent id the backend saw in its `traceparent`).
//!
//! Sampling follows the SDK's default, parent-based always-on: a request whose
//! client `traceparent` has the sampled flag clear is not exported; every
//! other request is.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanExporter as _, SpanLinks,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;

use super::{RequestSpan, SpanSink};
use crate::config::TelemetryConfig;

/// Why span export could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("telemetry.otlp_endpoint is not set")]
    NoEndpoint,
    #[error("could not start OTLP export: {0}")]
    Build(String),
    #[error("OTLP export: {0}")]
    Export(String),
}

/// How spans are batched. The defaults are the SDK's (which also reads the
/// `OTEL_BSP_*` environment variables).
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchOptions {
    /// Most spans waiting for export; past it new spans are dropped.
    pub max_queue_size: Option<usize>,
    /// Most spans in one export request.
    pub max_export_batch_size: Option<usize>,
    /// Longest a span waits before a (partial) batch is sent.
    pub scheduled_delay: Option<Duration>,
}

/// Exports one span per finished request to an OTLP/HTTP collector.
pub struct OtlpSink {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
    endpoint: String,
}

impl fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSink")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl OtlpSink {
    /// Starts export to `config.otlp_traces_url()` with the SDK's batching.
    /// Call [`OtlpSink::shutdown`] before the process exits so queued spans
    /// are sent.
    pub fn new(config: &TelemetryConfig) -> Result<Self, OtlpError> {
        Self::with_batch(config, BatchOptions::default())
    }

    /// [`OtlpSink::new`] with explicit batching.
    pub fn with_batch(config: &TelemetryConfig, batch: BatchOptions) -> Result<Self, OtlpError> {
        let url = config.otlp_traces_url().ok_or(OtlpError::NoEndpoint)?;
        let endpoint = url.to_string();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(config.otlp_timeout)
            .build()
            .map_err(|e| OtlpError::Build(e.to_string()))?;
        // Resource detectors first (OTEL_RESOURCE_ATTRIBUTES, the SDK's own
        // attributes); the configured service name wins over OTEL_SERVICE_NAME.
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        exporter.set_resource(&resource);
        let mut batch_config = BatchConfigBuilder::default();
        if let Some(n) = batch.max_queue_size {
            batch_config = batch_config.with_max_queue_size(n);
        }
        if let Some(n) = batch.max_export_batch_size {
            batch_config = batch_config.with_max_export_batch_size(n);
        }
        if let Some(d) = batch.scheduled_delay {
            batch_config = batch_config.with_scheduled_delay(d);
        }
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch_config.build())
            .build();
        let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Ok(Self {
            processor,
            scope,
            endpoint,
        })
    }

    /// Where spans go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Exports every queued span now. Blocks (up to 5 s): call it from a
    /// blocking context (`spawn_blocking`), never on an async task.
    pub fn force_flush(&self) -> Result<(), OtlpError> {
        self.processor
            .force_flush()
            .map_err(|e| OtlpError::Export(e.to_string()))
    }

    /// Exports what is queued and stops the export thread; spans finished
    /// after it are dropped. Blocks up to `timeout`: call it from a blocking
    /// context, never on an async task.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), OtlpError> {
        self.processor
            .shutdown_with_timeout(timeout)
            .map_err(|e| OtlpError::Export(e.to_string()))
    }

    /// The span of one finished request, or `None` when the client's trace
    /// context says it is not sampled.
    pub fn span_data(&self, span: &RequestSpan<'_>) -> Option<SpanData> {
        let trace = span.trace;
        let flags = TraceFlags::new(trace.flags);
        if trace.parent_id.is_some() && !flags.is_sampled() {
            return None;
        }
        let path = span.door.path(span.route, span.stream);
        let status_code = i64::from(span.status);
        let mut attributes = Vec::with_capacity(12);
        attributes.push(KeyValue::new("http.request.method", "POST"));
        attributes.push(KeyValue::new("http.response.status_code", status_code));
        attributes.push(KeyValue::new("infergate.route", span.route.to_owned()));
        if let Some(backend) = span.backend {
            attributes.push(KeyValue::new("infergate.backend", backend.to_owned()));
        }
        attributes.push(KeyValue::new(
            "infergate.attempts",
            i64::from(span.attempts),
        ));
        attributes.push(KeyValue::new("infergate.stream", span.stream));
        attributes.push(KeyValue::new("infergate.door", span.door.as_str()));
        attributes.push(KeyValue::new("infergate.complete", span.complete));
        attributes.push(KeyValue::new(
            "infergate.request_id",
            span.request_id.to_owned(),
        ));
        if let Some(client) = span.client {
            attributes.push(KeyValue::new("infergate.client", client.to_owned()));
        }
        let status = if span.status >= 500 {
            // HTTP semantic conventions: a server span is an error on 5xx
            // only, with `error.type` the status code and no description.
            attributes.push(KeyValue::new("error.type", span.status.to_string()));
            Status::Error {
                description: Cow::Borrowed(""),
            }
        } else {
            Status::Unset
        };
        let name = format!("POST {path}");
        attributes.push(KeyValue::new("http.route", path));
        Some(SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(trace.trace_id),
                SpanId::from_bytes(trace.span_id),
                flags.with_sampled(true),
                false,
                TraceState::NONE,
            ),
            parent_span_id: trace.parent_id.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: trace.parent_id.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(name),
            start_time: span.start,
            end_time: span.end.max(span.start),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        })
    }
}

impl SpanSink for OtlpSink {
    /// Builds the span and queues it for the export thread; never blocks.
    fn finished(&self, span: &RequestSpan<'_>) {
        if let Some(data) = self.span_data(span) {
            self.processor.on_end(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::trace::TraceContext;

    fn sink() -> OtlpSink {
        // Nothing listens there; these tests never flush.
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:9/".parse().unwrap()),
            ..TelemetryConfig::default()
        };
        OtlpSink::new(&config).unwrap()
    }

    fn trace(parent: Option<[u8; 8]>, flags: u8) -> TraceContext {
        TraceContext {
            trace_id: [7; 16],
            span_id: [3; 8],
            parent_id: parent,
            flags,
            tracestate: None,
        }
    }

    fn request<'a>(trace: &'a TraceContext, status: u16, stream: bool) -> RequestSpan<'a> {
        let start = SystemTime::now();
        RequestSpan {
            trace,
            door: crate::telemetry::Door::Predict,
            route: "flan",
            backend: Some("sm-flan"),
            client: Some("web-app"),
            status,
            attempts: 2,
            stream,
            request_id: "req-1",
            start,
            end: start + Duration::from_millis(5),
            complete: true,
        }
    }

    fn attr<'a>(data: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
        data.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn the_span_carries_the_gateways_ids() {
        let sink = sink();
        let ctx = trace(Some([9; 8]), 1);
        let data = sink.span_data(&request(&ctx, 200, false)).unwrap();
        assert_eq!(data.span_context.trace_id(), TraceId::from_bytes([7; 16]));
        assert_eq!(data.span_context.span_id(), SpanId::from_bytes([3; 8]));
        assert!(data.span_context.is_sampled());
        assert_eq!(data.parent_span_id, SpanId::from_bytes([9; 8]));
        assert!(data.parent_span_is_remote);
        assert_eq!(data.span_kind, SpanKind::Server);
        assert_eq!(data.name, "POST /v1/predict/flan");
        assert_eq!(data.status, Status::Unset);
        assert_eq!(
            attr(&data, "http.route")
                .map(ToString::to_string)
                .as_deref(),
            Some("/v1/predict/flan")
        );
        assert_eq!(
            attr(&data, "http.response.status_code"),
            Some(&opentelemetry::Value::I64(200))
        );
        assert_eq!(
            attr(&data, "infergate.attempts"),
            Some(&opentelemetry::Value::I64(2))
        );
        assert_eq!(attr(&data, "error.type"), None);
        assert_eq!(data.end_time - Duration::from_millis(5), data.start_time);
    }

    #[test]
    fn a_new_trace_is_a_root_span_and_5xx_an_error() {
        let sink = sink();
        let ctx = trace(None, 0);
        let data = sink.span_data(&request(&ctx, 503, true)).unwrap();
        assert_eq!(data.parent_span_id, SpanId::INVALID);
        assert!(!data.parent_span_is_remote);
        assert!(data.span_context.is_sampled());
        assert_eq!(data.name, "POST /v1/predict/flan/stream");
        assert!(matches!(data.status, Status::Error { .. }));
        assert_eq!(
            attr(&data, "error.type")
                .map(ToString::to_string)
                .as_deref(),
            Some("503")
        );
        assert_eq!(
            attr(&data, "infergate.stream"),
            Some(&opentelemetry::Value::Bool(true))
        );
    }

    #[test]
    fn a_span_is_named_by_its_doors_path() {
        let sink = sink();
        let ctx = trace(None, 0);
        for (stream, name) in [
            (false, "POST /endpoints/flan/invocations"),
            (true, "POST /endpoints/flan/invocations-response-stream"),
        ] {
            let span = RequestSpan {
                door: crate::telemetry::Door::SageMaker,
                ..request(&ctx, 200, stream)
            };
            let data = sink.span_data(&span).unwrap();
            assert_eq!(data.name, name);
            assert_eq!(
                attr(&data, "infergate.door")
                    .map(ToString::to_string)
                    .as_deref(),
                Some("sagemaker")
            );
        }
    }

    #[test]
    fn the_clients_not_sampled_flag_is_respected() {
        let sink = sink();
        let ctx = trace(Some([9; 8]), 0);
        assert!(sink.span_data(&request(&ctx, 200, false)).is_none());
        // Nothing is queued, so nothing blocks.
        sink.finished(&request(&ctx, 200, false));
    }
}
