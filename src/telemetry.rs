//! Where finished request spans go, when something wants them.
//!
//! The gateway continues W3C trace context ([`crate::trace`]) on every
//! request; exporting spans is opt-in. A [`SpanSink`] receives one
//! [`RequestSpan`] per request when its response ends; with none configured
//! (the default), the request path does no span work at all. The OTLP
//! exporter ([`otlp`], cargo feature `otlp`) is one such sink.
//!
//! The access log's writer ([`access_log`]) lives here too: the lines
//! are formatted and batched per worker thread, off the global subscriber.

use std::fmt::Debug;
use std::time::SystemTime;

use crate::trace::TraceContext;

pub use crate::config::Door;

pub mod access_log;
#[cfg(feature = "otlp")]
pub mod otlp;

/// One finished request, as a span.
#[derive(Debug, Clone)]
pub struct RequestSpan<'a> {
    pub trace: &'a TraceContext,
    pub door: Door,
    pub route: &'a str,
    pub backend: Option<&'a str>,
    /// The calling client's config name, when keys are required.
    pub client: Option<&'a str>,
    pub status: u16,
    pub attempts: u32,
    pub stream: bool,
    pub request_id: &'a str,
    pub start: SystemTime,
    pub end: SystemTime,
    /// The body ended normally (not cut by an error or a departing client).
    pub complete: bool,
}

/// Receives finished request spans. Called on the request's task when its
/// response ends: implementations hand the span off and return at once.
pub trait SpanSink: Send + Sync + Debug {
    fn finished(&self, span: &RequestSpan<'_>);
}
