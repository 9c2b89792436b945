//! `POST /v1/predict/{route}/stream`: tokens from either backend as one
//! server-sent-events stream.
//!
//! [`super::predict`] does the routing, the retries and the failover up to
//! the stream's first event; this module relays what follows. Each upstream
//! event goes out as `data:{json}\n\n`, with the events already at hand
//! after it in the same chunk (a lone event goes out after two runtime
//! turns); the next chunk is read only when the client has taken this one
//! (backpressure, memory bounded by one 16 KiB chunk and the partial event),
//! an SSE comment keeps a silent stream open, and a failure after
//! the first byte ends the stream with `event: error` and the error JSON —
//! never a silent truncation. The client going away drops the body, which
//! drops the upstream response and closes its connection.
//!
//! The SageMaker-compatible door relays the same way in SageMaker's wire
//! ([`Wire::EventStream`]): each `data:{json}\n\n` block in a `PayloadPart`
//! frame, as a TGI container on SageMaker writes it, and a failure as the
//! exception SageMaker sends (or, for the model's own error event, that
//! event, as the container sent it).

use bytes::{Bytes, BytesMut};
use futures_util::{stream, FutureExt};
use http::{header, HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::json;
use tokio::time::Instant;

use crate::backend::events::{Events, StreamError, StreamErrorKind, StreamItem};
use crate::body::{BoxError, ResBody};
use crate::config::StreamConfig;
use crate::limits::Charge;
use crate::metrics::Metrics;
use crate::protocol::eventstream::{self, Exception};

/// How a relayed stream is framed for the client.
pub enum Wire {
    /// Server-sent events: the unified API's `/stream`.
    Sse,
    /// SageMaker's `InvokeEndpointWithResponseStream` answer: AWS
    /// event-stream frames.
    EventStream,
    /// A door's own server-sent events (OpenAI's, TGI's), each event
    /// rewritten by the door.
    Door(Box<dyn DoorEvents>),
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Wire::Sse => "Sse",
            Wire::EventStream => "EventStream",
            Wire::Door(_) => "Door",
        })
    }
}

/// A door's rendering of a token stream in server-sent events: each event
/// as the door's clients read it, its failure as they expect to be told,
/// and what ends the stream.
pub trait DoorEvents: Send + 'static {
    /// Appends the door's event(s) for one upstream event (a JSON document
    /// in the operation's shape).
    fn event(&mut self, json: &[u8], out: &mut BytesMut);
    /// Appends the door's error event for a failure after the first byte.
    fn fail(&mut self, e: &StreamError, out: &mut BytesMut);
    /// Appends what follows the last event of a stream that ended well.
    fn end(&mut self, out: &mut BytesMut);
}

/// The event-stream content type, and the header that names what its
/// `PayloadPart`s carry.
pub const EVENT_STREAM: HeaderValue =
    HeaderValue::from_static("application/vnd.amazon.eventstream");
const PAYLOAD_CONTENT_TYPE: &str = "x-amzn-sagemaker-content-type";

/// Names carried into the stream for error events and metrics.
#[derive(Debug, Clone)]
pub struct Labels {
    pub route: String,
    pub backend: String,
    pub request_id: String,
}

/// The response headers of a stream in `wire`; `json_lines`: the
/// upstream writes JSON lines, which the event stream then carries as they
/// are.
pub fn set_headers(headers: &mut HeaderMap, wire: &Wire, json_lines: bool) {
    let sse = HeaderValue::from_static("text/event-stream");
    match wire {
        Wire::Sse | Wire::Door(_) => headers.insert(header::CONTENT_TYPE, sse),
        Wire::EventStream => {
            let payload = if json_lines {
                HeaderValue::from_static("application/jsonlines")
            } else {
                sse
            };
            headers.insert(PAYLOAD_CONTENT_TYPE, payload);
            headers.insert(header::CONTENT_TYPE, EVENT_STREAM)
        }
    };
    // A stream is not to be cached; a backend's own refusal to be stored
    // (the one `Cache-Control` the upstream headers may hold) stands
    // beside it.
    headers.append(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Ask buffering proxies (nginx) to pass events through at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// One event in a `PayloadPart` as its container framed it: an SSE block
/// (TGI), or a JSON line.
fn push_part(out: &mut BytesMut, json: &[u8], json_lines: bool) {
    let mut block = BytesMut::with_capacity(json.len() + 7);
    if json_lines {
        block.extend_from_slice(json);
        block.extend_from_slice(b"\n");
    } else {
        push_data_frame(&mut block, json);
    }
    push_frame(out, &eventstream::payload_part(block.freeze()));
}

/// Appends `data:{json}\n\n`.
fn push_data_frame(out: &mut BytesMut, json: &[u8]) {
    out.reserve(json.len() + 7);
    out.extend_from_slice(b"data:");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// The client-facing `type` of a stream failure.
fn error_type(kind: StreamErrorKind) -> &'static str {
    match kind {
        StreamErrorKind::ModelStreamError | StreamErrorKind::UnknownException => {
            "model_stream_error"
        }
        StreamErrorKind::InternalStreamFailure => "internal_stream_failure",
        StreamErrorKind::ModelError => "model_error",
        StreamErrorKind::Connection => "upstream_connection_error",
        StreamErrorKind::IdleTimeout => "stream_idle_timeout",
        StreamErrorKind::Protocol => "upstream_protocol_error",
    }
}

/// Appends `message` as one event-stream frame.
fn push_frame(out: &mut BytesMut, message: &aws_smithy_types::event_stream::Message) {
    match eventstream::encode(message) {
        Ok(frame) => out.extend_from_slice(&frame),
        // Only a frame over 16 MiB fails; events are at most 1 MiB.
        Err(e) => tracing::error!(error = %e, "an event-stream frame could not be written"),
    }
}

/// The exception SageMaker would end the stream with for `e`, or the
/// model's own error event in a `PayloadPart`, as its container sent it.
fn exception_frame(e: &StreamError, json_lines: bool, out: &mut BytesMut) {
    let (kind, code) = match e.kind {
        StreamErrorKind::ModelError => {
            if let Some(event) = &e.event {
                push_part(out, event, json_lines);
                return;
            }
            (Exception::ModelStreamError, None)
        }
        StreamErrorKind::ModelStreamError | StreamErrorKind::UnknownException => {
            (Exception::ModelStreamError, e.code.as_deref())
        }
        StreamErrorKind::Connection => (Exception::ModelStreamError, Some("StreamBroken")),
        StreamErrorKind::IdleTimeout => (
            Exception::ModelStreamError,
            Some("ModelInvocationTimeExceeded"),
        ),
        StreamErrorKind::InternalStreamFailure | StreamErrorKind::Protocol => {
            (Exception::InternalStreamFailure, None)
        }
    };
    // The unified API's message names the code; the exception carries it.
    let message = match (code, &e.code) {
        (Some(c), Some(own)) if c == own => e
            .message
            .strip_suffix(&format!(" ({c})"))
            .unwrap_or(&e.message),
        _ => &e.message,
    };
    push_frame(out, &eventstream::exception(kind, message, code));
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
    push_data_frame(&mut out, body.to_string().as_bytes());
    out.freeze()
}

/// What the stream has done, recorded once when it ends (or is dropped
/// because the client left).
struct Tally {
    metrics: Metrics,
    labels: Labels,
    events: u64,
    /// Where the stream's tokens (its events) are charged.
    charge: Option<Charge>,
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.metrics
            .stream_events(&self.labels.route, &self.labels.backend, self.events);
        if let Some(charge) = self.charge.take() {
            charge.tokens(self.events);
        }
    }
}

struct State {
    wire: Wire,
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

/// What [`State::wait`] put in the chunk.
enum Waited {
    Event,
    KeepAlive,
    /// The stream is over; the chunk may hold an error event.
    End,
}

/// Events already at hand are sent together, up to this many bytes.
const BATCH_BYTES: usize = 16 * 1024;
/// Runtime turns to wait for an event the upstream connection has already
/// read: its task hands each body chunk over through a channel, which takes
/// two turns of the scheduler (it is woken by the demand, then sends).
const HANDOVER_TURNS: u32 = 2;

impl State {
    /// Appends `data:{json}\n\n` to `out`.
    fn event(&mut self, json: &[u8], out: &mut BytesMut) {
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
        match &mut self.wire {
            Wire::Sse => push_data_frame(out, json),
            Wire::EventStream => push_part(out, json, self.events.json_lines()),
            Wire::Door(door) => door.event(json, out),
        }
    }

    fn fail(&mut self, e: &StreamError, out: &mut BytesMut) {
        self.done = true;
        tracing::warn!(
            request_id = %self.tally.labels.request_id,
            route = %self.tally.labels.route,
            backend = %self.tally.labels.backend,
            kind = e.kind.as_str(),
            error = %e.message,
            "stream failed after it began"
        );
        self.tally.metrics.stream_error(
            &self.tally.labels.route,
            &self.tally.labels.backend,
            e.kind.as_str(),
        );
        match &mut self.wire {
            Wire::Sse => out.extend_from_slice(&error_frame(e, &self.tally.labels)),
            Wire::EventStream => exception_frame(e, self.events.json_lines(), out),
            Wire::Door(door) => door.fail(e, out),
        }
    }

    /// Adds one upstream item to `out`; false once the stream is over.
    fn take(&mut self, item: Option<StreamItem>, out: &mut BytesMut) -> bool {
        match item {
            Some(StreamItem::Data(json)) => {
                self.event(&json, out);
                true
            }
            Some(StreamItem::Error(e)) => {
                self.fail(&e, out);
                false
            }
            None => {
                self.done = true;
                if let Wire::Door(door) = &mut self.wire {
                    door.end(out);
                }
                false
            }
        }
    }

    /// The next chunk of the response body; `None` at the end.
    ///
    /// A chunk holds the next event and every event that is already at hand
    /// after it (up to [`BATCH_BYTES`]): a backend that sends a burst of
    /// tokens costs one write to the client, not one per token, while a
    /// token that arrives alone goes out after [`HANDOVER_TURNS`] turns of
    /// the runtime (microseconds): "at hand" includes events the upstream
    /// connection has read but not yet handed over.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = BytesMut::new();
        if let Some(first) = self.first.take() {
            self.event(&first, &mut out);
        } else {
            match self.wait(&mut out).await {
                Waited::Event => {}
                Waited::KeepAlive => return Some(out.freeze()),
                Waited::End => return (!out.is_empty()).then(|| out.freeze()),
            }
        }
        let mut idle_turns = 0;
        while !self.done && out.len() < BATCH_BYTES {
            match self.events.next().now_or_never() {
                Some(item) => {
                    idle_turns = 0;
                    if !self.take(item, &mut out) {
                        break;
                    }
                }
                None if idle_turns == HANDOVER_TURNS => break,
                None => {
                    tokio::task::yield_now().await;
                    idle_turns += 1;
                }
            }
        }
        Some(out.freeze())
    }

    /// Waits for the next upstream event, or for a keep-alive to be due,
    /// or for the idle timeout, which ends the stream with an error event.
    async fn wait(&mut self, out: &mut BytesMut) -> Waited {
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
                    return if self.take(item, out) { Waited::Event } else { Waited::End };
                }
                () = tokio::time::sleep_until(self.keepalive_at) => {
                    self.keepalive_at = Instant::now() + self.cfg.keepalive;
                    if self.keepalive_at < self.idle_until {
                        match self.wire {
                            Wire::Sse | Wire::Door(_) => out.extend_from_slice(b":\n\n"),
                            // JSON lines have no keep-alive to relay.
                            Wire::EventStream if self.events.json_lines() => continue,
                            // As a TGI container's keep-alive reaches a
                            // SageMaker client.
                            Wire::EventStream => push_frame(
                                out,
                                &eventstream::payload_part(Bytes::from_static(b":\n\n")),
                            ),
                        }
                        return Waited::KeepAlive;
                    }
                }
                () = tokio::time::sleep_until(self.idle_until) => {
                    let e = StreamError::new(
                        StreamErrorKind::IdleTimeout,
                        format!(
                            "the backend sent nothing for {}",
                            humantime::format_duration(self.cfg.idle_timeout)
                        ),
                    );
                    self.fail(&e, out);
                    return Waited::End;
                }
            }
        }
    }
}

/// The stream's response body in `wire`: `first`, then the rest of
/// `events`.
pub fn body(
    wire: Wire,
    (first, events): (Bytes, Events),
    cfg: StreamConfig,
    (labels, metrics, charge): (Labels, Metrics, Option<Charge>),
    started: Instant,
) -> ResBody {
    let now = Instant::now();
    let state = State {
        wire,
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
            charge,
        },
    };
    let frames = stream::unfold(state, |mut state| async move {
        let chunk = state.next().await?;
        Some((Ok::<_, BoxError>(Frame::data(chunk)), state))
    });
    StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::time::Duration;

    /// The relay's chunks for an upstream SSE body made of `chunks`, each
    /// `gap` after the previous one.
    async fn relay(chunks: Vec<String>, gap: Duration) -> Vec<Bytes> {
        relay_in(Wire::Sse, chunks, gap).await
    }

    /// The same in `wire`.
    async fn relay_in(wire: Wire, chunks: Vec<String>, gap: Duration) -> Vec<Bytes> {
        let upstream = stream::iter(chunks).then(move |c| async move {
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(c)))
        });
        let mut events = Events::sse(http_body_util::StreamBody::new(upstream));
        let Some(StreamItem::Data(first)) = events.next().await else {
            panic!("no first event");
        };
        let labels = Labels {
            route: "r".into(),
            backend: "b".into(),
            request_id: "id".into(),
        };
        let metrics = Metrics::new().unwrap();
        let mut body = body(
            wire,
            (first, events),
            StreamConfig::default(),
            (labels, metrics, None),
            Instant::now(),
        );
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(frame.unwrap().into_data().unwrap());
        }
        out
    }

    fn tgi_event(i: usize) -> String {
        format!("data:{{\"token\":{{\"id\":{i},\"text\":\"t{i}\"}}}}\n\n")
    }

    /// What the client gets for `tgi_event(0..n)`: the same SSE blocks.
    fn expected(n: usize) -> Vec<u8> {
        (0..n).map(tgi_event).collect::<String>().into_bytes()
    }

    #[tokio::test]
    async fn a_burst_of_events_goes_out_in_few_writes() {
        // Twenty events, each its own upstream chunk, all at hand at once.
        let chunks = relay((0..20).map(tgi_event).collect(), Duration::ZERO).await;
        assert_eq!(chunks.concat(), expected(20));
        assert!(chunks.len() <= 3, "{} chunks for a burst", chunks.len());
    }

    #[tokio::test(start_paused = true)]
    async fn events_that_arrive_apart_go_out_apart() {
        let chunks = relay((0..5).map(tgi_event).collect(), Duration::from_millis(20)).await;
        assert_eq!(chunks.concat(), expected(5));
        assert_eq!(chunks.len(), 5);
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_size_limit() {
        // One upstream chunk of 400 events of ~150 bytes: 60 KB at hand.
        let many: String = (0..400)
            .map(|i| {
                format!(
                    "data:{{\"token\":{{\"id\":{i},\"text\":\"{}\"}}}}\n\n",
                    "x".repeat(120)
                )
            })
            .collect();
        let chunks = relay(vec![many.clone()], Duration::ZERO).await;
        assert_eq!(chunks.concat(), many.into_bytes());
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() < BATCH_BYTES + 1024));
    }

    /// The `PayloadPart` payloads of an event-stream relay's output.
    fn parts(chunks: &[Bytes]) -> Vec<String> {
        let mut all = BytesMut::new();
        for c in chunks {
            all.extend_from_slice(c);
        }
        let mut all = all.freeze();
        let mut out = Vec::new();
        while !all.is_empty() {
            let m = aws_smithy_eventstream::frame::read_message_from(&mut all).unwrap();
            out.push(String::from_utf8(m.payload().to_vec()).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn an_event_stream_carries_each_event_as_its_container_framed_it() {
        let sse = relay_in(
            Wire::EventStream,
            (0..3).map(tgi_event).collect(),
            Duration::ZERO,
        );
        let want: Vec<String> = (0..3).map(tgi_event).collect();
        assert_eq!(parts(&sse.await), want);
        let lines: Vec<String> = (0..3)
            .map(|i| format!("{{\"token\":{{\"text\":\"t{i}\"}}}}\n"))
            .collect();
        let got = relay_in(Wire::EventStream, lines.clone(), Duration::ZERO).await;
        assert_eq!(parts(&got), lines);
        let mut headers = HeaderMap::new();
        set_headers(&mut headers, &Wire::EventStream, true);
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "application/vnd.amazon.eventstream"
        );
        assert_eq!(headers[PAYLOAD_CONTENT_TYPE], "application/jsonlines");
    }

    #[test]
    fn frames_have_the_sse_shape() {
        let mut out = BytesMut::new();
        push_data_frame(&mut out, b"{\"a\":1}");
        assert_eq!(&out[..], b"data:{\"a\":1}\n\n");
        let labels = Labels {
            route: "r".into(),
            backend: "b".into(),
            request_id: "id".into(),
        };
        let f = error_frame(
            &StreamError::new(StreamErrorKind::ModelStreamError, "boom"),
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
