//! `POST /v1/predict/{route}/stream`: tokens from either backend as one
//! server-sent-events stream.
//!
//! [`super::predict`] does the routing, the retries and the failover up to
//! the stream's first event; this module relays what follows. Each upstream
//! event goes out as `data:{json}\n\n` as soon as it arrives, the next one is
//! read only when the client has taken this one (backpressure, bounded
//! memory), an SSE comment keeps a silent stream open, and a failure after
//! the first byte ends the stream with `event: error` and the error JSON —
//! never a silent truncation. The client going away drops the body, which
//! drops the upstream response and closes its connection.

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::{header, HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::json;
use tokio::time::Instant;

use crate::app::{BoxError, ResBody};
use crate::backend::events::{Events, StreamError, StreamItem};
use crate::config::StreamConfig;
use crate::metrics::Metrics;

/// Names carried into the stream for error events and metrics.
#[derive(Debug, Clone)]
pub struct Labels {
    pub route: String,
    pub backend: String,
    pub request_id: String,
}

/// The response headers of an event stream.
pub fn set_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Ask buffering proxies (nginx) to pass events through at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// `data:{json}\n\n`.
fn data_frame(json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + 7);
    out.extend_from_slice(b"data:");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// The client-facing `type` of a stream failure.
fn error_type(kind: &str) -> &'static str {
    match kind {
        "model_stream_error" => "model_stream_error",
        "internal_stream_failure" => "internal_stream_failure",
        "model_error" => "model_error",
        "connection" => "upstream_connection_error",
        "idle_timeout" => "stream_idle_timeout",
        _ => "upstream_protocol_error",
    }
}

/// `event: error` with the error JSON of the API.
fn error_frame(e: &StreamError, labels: &Labels) -> Bytes {
    let body = json!({
        "error": {
            "type": error_type(e.kind),
            "message": e.message,
            "route": labels.route,
            "backend": labels.backend,
            "request_id": labels.request_id,
        }
    });
    let mut out = BytesMut::from(&b"event: error\n"[..]);
    out.extend_from_slice(&data_frame(body.to_string().as_bytes()));
    out.freeze()
}

/// What the stream has done, recorded once when it ends (or is dropped
/// because the client left).
struct Tally {
    metrics: Metrics,
    labels: Labels,
    events: u64,
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.metrics
            .stream_events(&self.labels.route, &self.labels.backend, self.events);
    }
}

struct State {
    first: Option<Bytes>,
    events: Events,
    cfg: StreamConfig,
    started: Instant,
    keepalive_at: Instant,
    idle_until: Instant,
    /// The last chunk was an event: the next wait for the backend starts
    /// the timers afresh. A slow client's pauses are not backend silence.
    restart_timers: bool,
    done: bool,
    tally: Tally,
}

impl State {
    fn event(&mut self, json: &[u8]) -> Bytes {
        let now = Instant::now();
        self.restart_timers = true;
        if self.tally.events == 0 {
            self.tally.metrics.stream_first_byte(
                &self.tally.labels.route,
                &self.tally.labels.backend,
                now.saturating_duration_since(self.started),
            );
        }
        self.tally.events += 1;
        data_frame(json)
    }

    fn fail(&mut self, e: &StreamError) -> Bytes {
        self.done = true;
        tracing::warn!(
            request_id = %self.tally.labels.request_id,
            route = %self.tally.labels.route,
            backend = %self.tally.labels.backend,
            kind = e.kind,
            error = %e.message,
            "stream failed after it began"
        );
        self.tally.metrics.stream_error(
            &self.tally.labels.route,
            &self.tally.labels.backend,
            e.kind,
        );
        error_frame(e, &self.tally.labels)
    }

    /// The next chunk of the response body; `None` at the end.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if let Some(first) = self.first.take() {
            return Some(self.event(&first));
        }
        if self.restart_timers {
            let now = Instant::now();
            self.keepalive_at = now + self.cfg.keepalive;
            self.idle_until = now + self.cfg.idle_timeout;
            self.restart_timers = false;
        }
        loop {
            tokio::select! {
                // An event that is ready wins over a timer that ran out.
                biased;
                item = self.events.next() => {
                    return match item {
                        Some(StreamItem::Data(json)) => Some(self.event(&json)),
                        Some(StreamItem::Error(e)) => Some(self.fail(&e)),
                        None => None,
                    };
                }
                () = tokio::time::sleep_until(self.keepalive_at) => {
                    self.keepalive_at = Instant::now() + self.cfg.keepalive;
                    if self.keepalive_at < self.idle_until {
                        return Some(Bytes::from_static(b":\n\n"));
                    }
                }
                () = tokio::time::sleep_until(self.idle_until) => {
                    let e = StreamError {
                        kind: "idle_timeout",
                        message: format!(
                            "the backend sent nothing for {}",
                            humantime::format_duration(self.cfg.idle_timeout)
                        ),
                    };
                    return Some(self.fail(&e));
                }
            }
        }
    }
}

/// The SSE response body: `first`, then the rest of `events`.
pub fn body(
    first: Bytes,
    events: Events,
    cfg: StreamConfig,
    labels: Labels,
    metrics: Metrics,
    started: Instant,
) -> ResBody {
    let now = Instant::now();
    let state = State {
        first: Some(first),
        events,
        cfg,
        started,
        keepalive_at: now + cfg.keepalive,
        idle_until: now + cfg.idle_timeout,
        restart_timers: true,
        done: false,
        tally: Tally {
            metrics,
            labels,
            events: 0,
        },
    };
    let frames = stream::unfold(state, |mut state| async move {
        let chunk = state.next().await?;
        Some((Ok::<_, BoxError>(Frame::data(chunk)), state))
    });
    StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_sse_shape() {
        assert_eq!(&data_frame(b"{\"a\":1}")[..], b"data:{\"a\":1}\n\n");
        let labels = Labels {
            route: "r".into(),
            backend: "b".into(),
            request_id: "id".into(),
        };
        let f = error_frame(
            &StreamError {
                kind: "model_stream_error",
                message: "boom".into(),
            },
            &labels,
        );
        let text = std::str::from_utf8(&f).unwrap();
        assert!(text.starts_with("event: error\ndata:{"));
        assert!(text.ends_with("}\n\n"));
        let json: serde_json::Value =
            serde_json::from_str(text.trim_start_matches("event: error\ndata:").trim()).unwrap();
        assert_eq!(json["error"]["type"], "model_stream_error");
        assert_eq!(json["error"]["backend"], "b");
    }
}
