//! The access log and the request metrics: one record per request a door
//! accounts for (the predict door does; the operator paths do not).
//!
//! A door answers an [`Answer`]: the response and what it learnt of the
//! request ([`Access`]: route, backend, attempts, timings). This layer turns
//! it into the plain response.
//!
//! The request metrics are recorded when the response head is ready (the
//! client-visible latency and the gateway's overhead); the access-log line
//! is written when the response body ends — or the client leaves — so it
//! carries the bytes sent and the whole duration, streams included. The
//! line is formatted and batched per worker by
//! [`crate::telemetry::access_log`], off the global subscriber.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::backend::Backend;
use crate::body::{BoxError, ResBody};
use crate::clients::Client;
use crate::gateway::Gateway;
use crate::metrics::Outcome;
use crate::route::Route;
use crate::telemetry::{access_log, RequestSpan, SpanSink};
use crate::trace::TraceContext;

/// What the log and the metrics record of one request, filled in as the
/// request goes.
#[derive(Debug, Default)]
pub struct Access {
    pub request_id: String,
    /// The calling client, when keys are required and it had one: its
    /// name (never its key) is what the log, the span and the metrics show.
    pub client: Option<Arc<Client>>,
    /// The request's place among its client's requests in flight, let go
    /// with this record when the answer's body ends.
    pub held: crate::limits::Held,
    pub trace: Option<TraceContext>,
    pub route: Option<Arc<Route>>,
    pub backend: Option<Arc<Backend>>,
    pub attempts: u32,
    pub upstream: Duration,
    /// Backoff waits and the client's upload time.
    pub waited: Duration,
    pub bytes_in: usize,
    pub stream: bool,
    /// The door the request came through.
    pub door: crate::telemetry::Door,
    /// What the route's response cache did, when it has one.
    pub cache: Option<crate::cache::CacheOutcome>,
}

/// What a door answers: the response, and the record of the request when
/// the door accounts for it.
pub struct Answer {
    pub response: Response<ResBody>,
    pub access: Option<Access>,
}

impl Answer {
    /// An answer with no access record (operator paths, unknown paths).
    pub fn unrecorded(response: Response<ResBody>) -> Self {
        Self {
            response,
            access: None,
        }
    }
}

/// Records each [`Answer`]'s metrics and access-log line.
#[derive(Debug, Clone)]
pub struct AccessLayer {
    gateway: Arc<Gateway>,
}

impl AccessLayer {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            gateway: Arc::clone(&self.gateway),
        }
    }
}

impl Access {
    /// The calling client's name, if a client called.
    pub fn client_name(&self) -> Option<&str> {
        self.client.as_ref().map(|c| &*c.name)
    }
}

/// The service of [`AccessLayer`].
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    gateway: Arc<Gateway>,
}

impl<S, B> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Answer>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = AccessFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        AccessFuture {
            started: Instant::now(),
            inner: self.inner.call(req),
            gateway: Some(Arc::clone(&self.gateway)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The door's answer, recorded.
    pub struct AccessFuture<F> {
        #[pin]
        inner: F,
        gateway: Option<Arc<Gateway>>,
        started: Instant,
    }
}

impl<F, E> Future for AccessFuture<F>
where
    F: Future<Output = Result<Answer, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = ready!(this.inner.poll(cx))?;
        let res = match (answer.access, this.gateway.take()) {
            (Some(access), Some(gw)) => finish(&gw, access, answer.response, *this.started),
            _ => answer.response,
        };
        Poll::Ready(Ok(res))
    }
}

/// Records the request's metrics and wraps the body so that the access-log
/// line is written when it ends.
fn finish(
    gw: &Gateway,
    access: Access,
    res: Response<ResBody>,
    started: Instant,
) -> Response<ResBody> {
    let head = started.elapsed();
    let route = access.route.as_ref().map_or("unknown", |r| r.name.as_str());
    let backend = access.backend.as_ref().map(|b| b.name.as_str());
    let status = res.status();
    let outcome = if status.is_success() {
        Outcome::Success
    } else if status.is_client_error() {
        Outcome::ClientError
    } else if backend.is_some() {
        Outcome::UpstreamError
    } else {
        Outcome::GatewayError
    };
    let not_ours = access.upstream + access.waited;
    if let Some(client) = &access.client {
        match client.series(route) {
            Some(series) => series.count(outcome),
            None => gw.metrics.client_request(&client.name, route, outcome),
        }
    }
    match pair_series(&access) {
        Some(series) if status.is_success() => series.served(head, not_ours),
        _ => gw.metrics.request(
            route,
            backend.unwrap_or("none"),
            status.as_u16(),
            outcome,
            head,
            not_ours,
        ),
    }
    let line = Line {
        access,
        status: status.as_u16(),
        started,
        start_time: SystemTime::now() - head,
        head,
        bytes_out: 0,
        spans: gw.spans.clone(),
    };
    res.map(|inner| {
        Logged {
            inner,
            line: Some(line),
        }
        .boxed_unsync()
    })
}

/// The success series of the request's route and backend, when both are
/// known.
fn pair_series(access: &Access) -> Option<&crate::metrics::PairSeries> {
    let (route, backend) = (access.route.as_ref()?, access.backend.as_ref()?);
    let member = route
        .pool
        .iter()
        .find(|m| Arc::ptr_eq(&m.backend, backend))?;
    member.series.as_ref()
}

struct Line {
    access: Access,
    status: u16,
    started: Instant,
    start_time: SystemTime,
    head: Duration,
    bytes_out: u64,
    spans: Option<Arc<dyn SpanSink>>,
}

impl Line {
    fn write(&self, complete: bool) {
        let a = &self.access;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        access_log::write(&access_log::Record {
            request_id: &a.request_id,
            client: a.client_name(),
            trace_id: a.trace.as_ref().map(|t| &t.trace_id),
            route: a.route.as_ref().map_or("unknown", |r| r.name.as_str()),
            backend: a.backend.as_ref().map(|b| b.name.as_str()),
            status: self.status,
            attempts: a.attempts,
            stream: a.stream,
            head_us: micros(self.head),
            total_us: micros(self.started.elapsed()),
            upstream_us: micros(a.upstream),
            bytes_in: a.bytes_in as u64,
            bytes_out: self.bytes_out,
            complete,
        });
        if let (Some(sink), Some(trace)) = (&self.spans, &a.trace) {
            sink.finished(&RequestSpan {
                client: a.client_name(),
                trace,
                door: a.door,
                route: a.route.as_ref().map_or("unknown", |r| r.name.as_str()),
                backend: a.backend.as_ref().map(|b| b.name.as_str()),
                status: self.status,
                attempts: a.attempts,
                stream: a.stream,
                request_id: &a.request_id,
                start: self.start_time,
                end: SystemTime::now(),
                complete,
            });
        }
    }
}

/// A response body that counts what it sends and writes the access-log
/// line at its end.
struct Logged {
    inner: ResBody,
    line: Option<Line>,
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(line)) = (frame.data_ref(), self.line.as_mut()) {
                    line.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(line) = self.line.take() {
                    line.write(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(line) = self.line.take() {
                    line.write(false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // A body dropped before its end: the client went away (or the body
        // had no frames to poll, as for an empty answer).
        if let Some(line) = self.line.take() {
            let complete = self.inner.is_end_stream();
            line.write(complete);
        }
    }
}
