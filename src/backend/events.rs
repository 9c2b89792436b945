//! Token streams from either backend, as one sequence of events.
//!
//! An HF endpoint (TGI `generate_stream`) sends server-sent events
//! (`data:{json}\n\n`). A SageMaker endpoint sends the AWS event stream:
//! binary frames, CRC-checked and decoded with `aws-smithy-eventstream`,
//! whose `PayloadPart`s carry the container's own output — SSE lines from a
//! TGI container, JSON lines from others — cut at arbitrary byte offsets.
//! Both paths end in the same [`Lines`] reassembler, so every event comes
//! out whole: a JSON document per token, or an error.
//!
//! Nothing is buffered beyond the current incomplete line (bounded by
//! [`MAX_EVENT_BYTES`]): the next chunk is read from the upstream only when
//! the consumer asks for the next event, so a slow client slows the read.

use std::collections::VecDeque;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue as FrameHeaderValue, Message};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use http_body_util::BodyDataStream;

use super::format::{EventMap, Mapped};
use crate::body::BoxError;

/// A body an upstream stream arrives in.
pub trait UpstreamStream:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> UpstreamStream for B where
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}
use serde_json::Value;

/// Largest single event accepted; a longer line is a protocol error.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One item of a token stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// One event's JSON, as the backend sent it.
    Data(Bytes),
    /// The stream failed; nothing follows.
    Error(StreamError),
}

/// A failure inside a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub kind: StreamErrorKind,
    pub message: String,
    /// A SageMaker `ModelStreamError`'s `ErrorCode` (`StreamBroken`,
    /// `ModelInvocationTimeExceeded`).
    pub code: Option<String>,
    /// The model's own error event (TGI's `{"error", "error_type"}`), as
    /// it sent it: a door that relays the container's bytes sends it on.
    pub event: Option<Bytes>,
}

impl StreamError {
    pub fn new(kind: StreamErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
            event: None,
        }
    }
}

/// Why a stream failed: a closed set, so that each place turning it into a
/// client-facing type, a metric label or a log field has to name every kind
/// (a new kind cannot silently become some other error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamErrorKind {
    /// SageMaker's `ModelStreamError` exception: the container failed.
    ModelStreamError,
    /// SageMaker's `InternalStreamFailure` exception, or an event-stream
    /// `error` message: the service failed.
    InternalStreamFailure,
    /// An event-stream exception of a type the gateway does not know (or
    /// of no type): reported like a `ModelStreamError`, the closest thing
    /// the client can act on.
    UnknownException,
    /// A mid-stream error event from the model (TGI's `{"error"}`).
    ModelError,
    /// The bytes did not have the stream's shape (a corrupted or oversized
    /// frame, an event that is not JSON).
    Protocol,
    /// The connection broke, or its read timed out.
    Connection,
    /// The backend sent nothing for the stream's idle timeout (the relay's
    /// own verdict, not the decoder's).
    IdleTimeout,
}

impl StreamErrorKind {
    /// Every kind, for the metrics that are present from start.
    pub const ALL: [StreamErrorKind; 7] = [
        StreamErrorKind::ModelStreamError,
        StreamErrorKind::InternalStreamFailure,
        StreamErrorKind::UnknownException,
        StreamErrorKind::ModelError,
        StreamErrorKind::Protocol,
        StreamErrorKind::Connection,
        StreamErrorKind::IdleTimeout,
    ];

    /// The bounded label of metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamErrorKind::ModelStreamError | StreamErrorKind::UnknownException => {
                "model_stream_error"
            }
            StreamErrorKind::InternalStreamFailure => "internal_stream_failure",
            StreamErrorKind::ModelError => "model_error",
            StreamErrorKind::Protocol => "protocol",
            StreamErrorKind::Connection => "connection",
            StreamErrorKind::IdleTimeout => "idle_timeout",
        }
    }
}

/// How the upstream frames its bytes.
enum Framing {
    /// SSE or JSON lines straight on the wire (HF).
    Raw,
    /// The AWS event stream (SageMaker `InvokeEndpointWithResponseStream`).
    AwsEventStream {
        decoder: MessageFrameDecoder,
        buf: BytesMut,
    },
}

/// The events of one upstream stream, read on demand.
pub struct Events {
    body: BoxStream<'static, Result<Bytes, BoxError>>,
    framing: Framing,
    lines: Lines,
    pending: VecDeque<StreamItem>,
    done: bool,
    /// Rewrites each event into the operation's shape.
    map: Option<EventMap>,
    /// Sees the events of a stream the response cache keeps, or the
    /// shadows compare, or both.
    tap: Option<Tap>,
}

/// What a stream that ended well hands over: its events after the first,
/// in order, and whether they were JSON lines.
pub type TapDone = Box<dyn FnOnce(Vec<Bytes>, bool) + Send>;

/// A copy of the events as they pass ([`Events::tapped`]): one copy,
/// however many consumers want it.
#[derive(Default)]
struct Tap {
    seen: Vec<Bytes>,
    bytes: usize,
    consumers: Vec<Consumer>,
}

/// One consumer of a tap: what it takes at the most, and what it does
/// with a stream that ended well.
struct Consumer {
    limit: usize,
    done: TapDone,
}

impl Tap {
    /// Keeps a copy of `event`; `false` once no consumer wants more.
    fn see(&mut self, event: &Bytes) -> bool {
        self.bytes += event.len();
        let bytes = self.bytes;
        self.consumers.retain(|c| bytes <= c.limit);
        if self.consumers.is_empty() {
            return false;
        }
        self.seen.push(event.clone());
        true
    }

    /// Hands the events seen to each consumer (the same buffers: a copy of
    /// the list, not of the bytes).
    fn finish(mut self, json_lines: bool) {
        let last = self.consumers.pop();
        for c in self.consumers {
            (c.done)(self.seen.clone(), json_lines);
        }
        if let Some(c) = last {
            (c.done)(self.seen, json_lines);
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("pending", &self.pending.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Events of an HF endpoint's SSE answer.
    pub fn sse<B: UpstreamStream>(body: B) -> Self {
        Self::new(body, Framing::Raw)
    }

    /// Events of a SageMaker response stream.
    pub fn aws<B: UpstreamStream>(body: B) -> Self {
        Self::new(
            body,
            Framing::AwsEventStream {
                decoder: MessageFrameDecoder::new(),
                buf: BytesMut::new(),
            },
        )
    }

    fn new<B: UpstreamStream>(body: B, framing: Framing) -> Self {
        Self {
            body: BodyDataStream::new(body).map_err(Into::into).boxed(),
            framing,
            lines: Lines::default(),
            pending: VecDeque::new(),
            done: false,
            map: None,
            tap: None,
        }
    }

    /// A stream of `events` as they were once read, which ends well after
    /// them: the response cache's replay of a stored stream.
    pub fn replay(events: &[Bytes], json_lines: bool) -> Self {
        let mut replay = Self::new(http_body_util::Empty::<Bytes>::new(), Framing::Raw);
        replay.pending = events.iter().cloned().map(StreamItem::Data).collect();
        replay.lines.json_lines = json_lines;
        replay.done = true;
        replay
    }

    /// The same events, with a copy of each (as [`Events::next`] gives
    /// it) handed to `done` when the stream ends well; nothing when it ends
    /// with an error, is dropped before its end, or passes `limit` bytes.
    /// A stream tapped again keeps one copy for every `done`, each with
    /// its own limit; taps are set before the events after the first are
    /// read, so each sees them all.
    pub fn tapped(mut self, limit: usize, done: TapDone) -> Self {
        let tap = self.tap.get_or_insert_with(Tap::default);
        tap.consumers.push(Consumer { limit, done });
        self
    }

    /// The same events, each rewritten by `map` (an LMI stream in TGI's
    /// or OpenAI's shapes).
    pub(crate) fn mapped(mut self, map: Option<EventMap>) -> Self {
        self.map = map;
        self
    }

    /// Whether the upstream wrote its events as JSON lines (an LMI or
    /// toolkit container) rather than SSE (TGI), as far as read.
    pub fn json_lines(&self) -> bool {
        self.lines.json_lines
    }

    /// The next event; `None` once the stream ended (after an error, too).
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<StreamItem> {
        let item = self.next_item().await;
        if let Some(tap) = &mut self.tap {
            let keep = match &item {
                Some(StreamItem::Data(event)) => tap.see(event),
                Some(StreamItem::Error(_)) => false,
                None => {
                    if let Some(tap) = self.tap.take() {
                        tap.finish(self.lines.json_lines);
                    }
                    return item;
                }
            };
            if !keep {
                self.tap = None;
            }
        }
        item
    }

    async fn next_item(&mut self) -> Option<StreamItem> {
        loop {
            if let Some(mut item) = self.pending.pop_front() {
                if let (StreamItem::Data(event), Some(map)) = (&item, &mut self.map) {
                    item = match map.map(event.clone()) {
                        Mapped::Event(event) => StreamItem::Data(event),
                        Mapped::Fail(e) => StreamItem::Error(e),
                    };
                }
                if matches!(item, StreamItem::Error(_)) {
                    self.pending.clear();
                    self.done = true;
                }
                return Some(item);
            }
            if self.done {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.feed(chunk),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "an upstream stream broke");
                    self.pending.push_back(StreamItem::Error(StreamError::new(
                        StreamErrorKind::Connection,
                        "the connection to the backend broke during the stream",
                    )));
                }
                None => {
                    self.finish();
                }
            }
        }
    }

    fn feed(&mut self, chunk: Bytes) {
        match &mut self.framing {
            Framing::Raw => self.lines.feed(&chunk, &mut self.pending),
            Framing::AwsEventStream { decoder, buf } => {
                buf.extend_from_slice(&chunk);
                loop {
                    match decoder.decode_frame(&mut *buf) {
                        Ok(DecodedFrame::Complete(message)) => match frame_item(&message) {
                            Frame::Payload(bytes) => self.lines.feed(&bytes, &mut self.pending),
                            Frame::Error(e) => {
                                self.pending.push_back(StreamItem::Error(e));
                                return;
                            }
                            Frame::Ignored => {}
                        },
                        Ok(DecodedFrame::Incomplete) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "undecodable event-stream frame");
                            self.pending.push_back(StreamItem::Error(StreamError::new(
                                StreamErrorKind::Protocol,
                                "the backend sent a corrupted event-stream frame",
                            )));
                            return;
                        }
                    }
                }
                if buf.len() > MAX_EVENT_BYTES + 64 * 1024 {
                    self.pending.push_back(StreamItem::Error(StreamError::new(
                        StreamErrorKind::Protocol,
                        "the backend sent an event-stream frame that is too large",
                    )));
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Framing::AwsEventStream { buf, .. } = &self.framing {
            if !buf.is_empty() {
                self.pending.push_back(StreamItem::Error(StreamError::new(
                    StreamErrorKind::Protocol,
                    "the backend's event stream ended inside a frame",
                )));
                self.done = true;
                return;
            }
        }
        self.lines.finish(&mut self.pending);
        self.done = true;
    }
}

enum Frame {
    Payload(Bytes),
    Error(StreamError),
    Ignored,
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            FrameHeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// What one decoded frame means.
fn frame_item(message: &Message) -> Frame {
    match header(message, ":message-type") {
        Some("event") => match header(message, ":event-type") {
            Some("PayloadPart") => Frame::Payload(message.payload().clone()),
            _ => Frame::Ignored,
        },
        Some("exception") => {
            let kind = match header(message, ":exception-type") {
                Some("ModelStreamError") => StreamErrorKind::ModelStreamError,
                Some("InternalStreamFailure") => StreamErrorKind::InternalStreamFailure,
                other => {
                    tracing::debug!(exception_type = ?other, "unknown event-stream exception");
                    StreamErrorKind::UnknownException
                }
            };
            let body: Value = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
            let text = ["Message", "message"]
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_str))
                .unwrap_or("the model's stream failed");
            let code = body.get("ErrorCode").and_then(Value::as_str);
            let message = match code {
                Some(code) => format!("{text} ({code})"),
                None => text.to_string(),
            };
            Frame::Error(StreamError {
                code: code.map(super::clip),
                ..StreamError::new(kind, message)
            })
        }
        Some("error") => Frame::Error(StreamError::new(
            StreamErrorKind::InternalStreamFailure,
            header(message, ":error-message").unwrap_or("the stream failed"),
        )),
        _ => Frame::Ignored,
    }
}

/// The one member of an event the relay looks at.
#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    error: Option<std::borrow::Cow<'a, str>>,
}

/// Reassembles SSE events and JSON lines from bytes cut anywhere.
#[derive(Debug, Default)]
struct Lines {
    partial: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    failed: bool,
    /// The events came as bare JSON lines, not SSE.
    json_lines: bool,
}

impl Lines {
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<StreamItem>) {
        if self.failed {
            return;
        }
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            if self.failed {
                return;
            }
            let (line, tail) = rest.split_at(pos);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, out);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, out);
            }
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_EVENT_BYTES {
            self.fail(out, "the backend sent an event that is too large");
        }
    }

    fn line(&mut self, line: &[u8], out: &mut VecDeque<StreamItem>) {
        // However the bytes came (a whole line in one read included), no
        // event is longer than the bound.
        if line.len() + self.data.len() > MAX_EVENT_BYTES {
            self.fail(out, "the backend sent an event that is too large");
            return;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            // The end of an SSE event.
            if self.has_data {
                let data = std::mem::take(&mut self.data);
                self.has_data = false;
                self.event(&data, out);
            }
        } else if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(rest);
            self.has_data = true;
        } else if line.starts_with(b":")
            || line.starts_with(b"event:")
            || line.starts_with(b"id:")
            || line.starts_with(b"retry:")
        {
            // Comments (keep-alives) and SSE fields the token stream does
            // not use.
        } else if !self.has_data {
            // A JSON-lines container: each line is an event.
            self.json_lines = true;
            self.event(line, out);
        }
    }

    fn event(&mut self, data: &[u8], out: &mut VecDeque<StreamItem>) {
        let trimmed = data.trim_ascii();
        if trimmed.is_empty() || trimmed == b"[DONE]" {
            return;
        }
        // The common case, a token event, is only checked to be JSON
        // without an `error` member: the probe skips every other member
        // without building a document.
        let error = match serde_json::from_slice::<Probe<'_>>(trimmed) {
            Ok(Probe { error }) => error.map(|e| e.into_owned()),
            // Not an object, or an `error` that is not a string.
            Err(_) => match serde_json::from_slice::<Value>(trimmed) {
                Ok(v) => v
                    .get("error")
                    .map(|_| "the model failed during the stream".to_string()),
                Err(_) => {
                    self.fail(out, "the backend sent an event that is not JSON");
                    return;
                }
            },
        };
        match error {
            // TGI's mid-stream error event: {"error", "error_type"}.
            Some(message) => {
                self.failed = true;
                out.push_back(StreamItem::Error(StreamError {
                    event: (trimmed.len() <= MAX_EVENT_BYTES)
                        .then(|| Bytes::copy_from_slice(trimmed)),
                    ..StreamError::new(StreamErrorKind::ModelError, super::clip(&message))
                }));
            }
            None => out.push_back(StreamItem::Data(Bytes::copy_from_slice(trimmed))),
        }
    }

    fn fail(&mut self, out: &mut VecDeque<StreamItem>, message: &str) {
        self.failed = true;
        self.partial.clear();
        self.data.clear();
        self.has_data = false;
        out.push_back(StreamItem::Error(StreamError::new(
            StreamErrorKind::Protocol,
            message,
        )));
    }

    fn finish(&mut self, out: &mut VecDeque<StreamItem>) {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line(&last, out);
        }
        if self.has_data {
            let data = std::mem::take(&mut self.data);
            self.has_data = false;
            self.event(&data, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<StreamItem> {
        let mut lines = Lines::default();
        let mut out = VecDeque::new();
        for c in chunks {
            lines.feed(c, &mut out);
        }
        lines.finish(&mut out);
        out.into_iter().collect()
    }

    fn data(s: &str) -> StreamItem {
        StreamItem::Data(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn sse_events_come_out_whole_wherever_the_bytes_are_cut() {
        let text = b"data:{\"a\":1}\n\n:\n\ndata: {\"b\":2}\r\n\r\ndata:{\"c\":3}\n\n";
        let want = vec![data("{\"a\":1}"), data("{\"b\":2}"), data("{\"c\":3}")];
        for cut in 0..text.len() {
            for cut2 in cut..text.len() {
                let got = run(&[&text[..cut], &text[cut..cut2], &text[cut2..]]);
                assert_eq!(got, want, "cut at {cut}, {cut2}");
            }
        }
    }

    #[test]
    fn json_lines_are_events_too() {
        let got = run(&[
            b"{\"token\":{\"text\":\"a\"}}\n{\"tok",
            b"en\":{\"text\":\"b\"}}",
        ]);
        assert_eq!(
            got,
            vec![
                data("{\"token\":{\"text\":\"a\"}}"),
                data("{\"token\":{\"text\":\"b\"}}")
            ]
        );
    }

    /// What each of two taps (limits `small` and unbounded) got of `body`.
    async fn two_taps(body: &'static [u8], small: usize) -> [Option<Vec<Bytes>>; 2] {
        use std::sync::{Arc, Mutex};
        let got: Arc<Mutex<[Option<Vec<Bytes>>; 2]>> = Arc::default();
        let done = |i: usize| -> TapDone {
            let got = Arc::clone(&got);
            Box::new(move |seen, _| got.lock().unwrap()[i] = Some(seen))
        };
        let mut events = Events::sse(http_body_util::Full::new(Bytes::from_static(body)))
            .tapped(small, done(0))
            .tapped(usize::MAX, done(1));
        while events.next().await.is_some() {}
        let got = got.lock().unwrap().clone();
        got
    }

    #[tokio::test]
    async fn one_tap_serves_every_consumer_within_its_own_limit() {
        let body = b"data:{\"a\":1}\n\ndata:{\"b\":2}\n\n";
        let all = vec![
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from_static(b"{\"b\":2}"),
        ];
        assert_eq!(
            two_taps(body, 14).await,
            [Some(all.clone()), Some(all.clone())]
        );
        assert_eq!(two_taps(body, 13).await, [None, Some(all)]);
        let cut = b"data:{\"a\":1}\n\ndata:{\"error\":\"boom\"}\n\n";
        assert_eq!(two_taps(cut, usize::MAX).await, [None, None]);
    }

    #[test]
    fn tgi_error_events_end_the_stream() {
        let got = run(&[
            b"data:{\"token\":1}\n\ndata:{\"error\":\"boom\",\"error_type\":\"generation\"}\n\ndata:{\"token\":2}\n\n",
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], data("{\"token\":1}"));
        assert!(
            matches!(&got[1], StreamItem::Error(e) if e.kind == StreamErrorKind::ModelError && e.message == "boom")
        );
    }

    #[test]
    fn any_json_is_an_event_and_any_error_member_ends_the_stream() {
        let got = run(&[b"data:[1,2]\n\ndata:{\"error\":{\"code\":1}}\n\n"]);
        assert_eq!(got[0], data("[1,2]"));
        assert!(matches!(&got[1], StreamItem::Error(e) if e.kind == StreamErrorKind::ModelError));
    }

    #[test]
    fn garbage_is_a_protocol_error_and_done_is_ignored() {
        let got = run(&[b"data:[DONE]\n\nnot json\n"]);
        assert!(matches!(&got[..], [StreamItem::Error(e)] if e.kind == StreamErrorKind::Protocol));
    }

    #[test]
    fn an_oversized_event_is_refused() {
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        let got = run(&[&big]);
        assert!(matches!(&got[..], [StreamItem::Error(e)] if e.kind == StreamErrorKind::Protocol));
        // Whole in one read, as an SSE event, or as its data lines.
        let mut line = b"data:".to_vec();
        line.extend_from_slice(&big);
        line.extend_from_slice(b"\n\n");
        let half = vec![b'x'; MAX_EVENT_BYTES / 2 + 1];
        let mut lines = Vec::new();
        for _ in 0..2 {
            lines.extend_from_slice(b"data:");
            lines.extend_from_slice(&half);
            lines.push(b'\n');
        }
        lines.push(b'\n');
        for body in [line, lines] {
            let got = run(&[&body]);
            assert!(
                matches!(&got[..], [StreamItem::Error(e)] if e.message.contains("too large")),
                "{got:?}"
            );
        }
    }

    #[test]
    fn an_unknown_exception_type_is_reported_as_the_models_stream_failing() {
        use aws_smithy_types::event_stream::Header;
        let exception = |kind: &str| {
            Message::new(&b"{\"Message\":\"boom\"}"[..])
                .add_header(Header::new(
                    ":message-type",
                    FrameHeaderValue::String("exception".into()),
                ))
                .add_header(Header::new(
                    ":exception-type",
                    FrameHeaderValue::String(kind.to_string().into()),
                ))
        };
        let Frame::Error(e) = frame_item(&exception("SomethingNew")) else {
            panic!("not an error");
        };
        assert_eq!(e.kind, StreamErrorKind::UnknownException);
        assert_eq!(e.kind.as_str(), "model_stream_error");
        assert_eq!(e.message, "boom");
        let Frame::Error(e) = frame_item(&exception("InternalStreamFailure")) else {
            panic!("not an error");
        };
        assert_eq!(e.kind, StreamErrorKind::InternalStreamFailure);
    }

    #[test]
    fn decodes_the_reference_payload_part() {
        // An independently checked 119-byte PayloadPart frame (a token
        // event of the AWS event-stream encoding, prelude and CRCs included).
        let frame = hex::decode("00000077000000593c670ae60b3a6576656e742d7479706507000b5061796c6f6164506172740d3a636f6e74656e742d747970650700186170706c69636174696f6e2f6f637465742d73747265616d0d3a6d6573736167652d747970650700056576656e747b22746f6b656e223a226869227d4350430f").unwrap();
        let mut decoder = MessageFrameDecoder::new();
        let mut buf = BytesMut::from(&frame[..]);
        let DecodedFrame::Complete(message) = decoder.decode_frame(&mut buf).unwrap() else {
            panic!("incomplete");
        };
        match frame_item(&message) {
            Frame::Payload(p) => assert_eq!(&p[..], b"{\"token\":\"hi\"}"),
            _ => panic!("not a payload"),
        }
    }
}
