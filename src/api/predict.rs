//! `POST /v1/predict/{route}`: the unified predict API.
//!
//! The body, `Content-Type` and `Accept` pass through to the backend picked
//! for the route; the backend's answer comes back with `x-request-id`,
//! `x-infergate-backend` and `x-infergate-attempts`. The body is read whole
//! (up to `server.max_body_bytes`) because every attempt signs its exact
//! bytes and a retry must be able to send them again; the answer streams
//! back as it arrives.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::backend::{UpstreamBody, UpstreamResponse};
use crate::body::{full, BoxError, ResBody};
use crate::cache::CacheOutcome;
use crate::clients::Client;
use crate::config::{Door, DoorKind, Operation};
use crate::core::{Caller, CoreRequest, CoreResponse};
use crate::error::{rate_limit_headers, reply, ApiError, ErrorContext};
use crate::gateway::{current_worker, Gateway};
use crate::layers::{request_id, Access, Answer, BodyTooLarge};
use crate::limits::{Charge, RateState, Refused};
use crate::route::Route;
use crate::trace::TraceContext;

use super::stream::Wire;

/// The request header with which a client shortens its deadline.
pub const TIMEOUT_HEADER: &str = "x-infergate-timeout-ms";

/// Serves one predict request: `POST /v1/predict/{route}`, or with
/// `stream`, `POST /v1/predict/{route}/stream` ([`super::stream`]).
pub async fn predict<B, C>(
    gw: &Arc<Gateway>,
    core: C,
    route_name: &str,
    req: Request<B>,
    stream: bool,
    caller: Option<Arc<Client>>,
) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    C: Service<CoreRequest, Response = CoreResponse, Error = Infallible>,
{
    let (started, trace, mut access) = begin(gw, &req, Door::Predict);
    access.stream = stream;
    let found = gw
        .routes
        .get(route_name)
        .filter(|r| r.on_door(DoorKind::Predict));
    let Some(route) = found.cloned() else {
        return refused(ApiError::UnknownRoute(route_name.to_string()), None, access);
    };
    access.route = Some(Arc::clone(&route));
    if let Some(client) = &caller {
        access.client = Some(Arc::clone(client));
        if !client.may_use(&route.name) {
            let err = ApiError::Forbidden(route.name.clone());
            return refused(err, Some(&route.name), access);
        }
    }
    // Before the body is read: a refused request costs no upload.
    let (rate, charge) = match admit(gw, &route, &mut access).await {
        Ok(admitted) => admitted,
        Err(err) => return refused(err, Some(&route.name), access),
    };
    let response = match parse(gw, &route, req, trace, started, &mut access).await {
        Ok(request) => {
            let answer = call_core(core, request).await;
            render(gw, &route, answer, started, &mut access, charge)
        }
        Err(err) => reply(
            &err,
            ErrorContext {
                route: Some(&route.name),
                backend: None,
                request_id: Some(&access.request_id),
            },
        ),
    };
    answered(response, rate, access)
}

/// When a door's request began, its trace context, and the start of its
/// access record.
pub(super) fn begin<B>(
    gw: &Gateway,
    req: &Request<B>,
    door: Door,
) -> (Instant, Option<TraceContext>, Access) {
    let trace = TraceContext::of_request(req.headers(), gw.spans.is_some());
    let access = Access {
        door,
        request_id: request_id::of(req.headers()).to_string(),
        trace: trace.clone(),
        ..Access::default()
    };
    (Instant::now(), trace, access)
}

/// The core's answer to `request`.
pub(super) async fn call_core<C>(core: C, request: CoreRequest) -> CoreResponse
where
    C: Service<CoreRequest, Response = CoreResponse, Error = Infallible>,
{
    match core.oneshot(request).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    }
}

/// A door's answer, with the tightest bucket's state in `x-ratelimit-*`,
/// recorded in `access`.
pub(super) fn answered(
    mut response: Response<ResBody>,
    rate: Option<RateState>,
    access: Access,
) -> Answer {
    if let Some(rate) = rate {
        rate_limit_headers(response.headers_mut(), rate);
    }
    recorded(response, access)
}

/// A door's answer recorded in `access`.
pub(super) fn recorded(response: Response<ResBody>, access: Access) -> Answer {
    Answer {
        response,
        access: Some(access),
    }
}

/// Takes the request's place within its client's and its route's limits
/// (the hold, let go with `access`, recorded there): the state of the
/// tightest request bucket for `x-ratelimit-*`, and where its tokens are
/// charged; or why it was refused.
pub(super) async fn admit(
    gw: &Gateway,
    route: &Route,
    access: &mut Access,
) -> Result<(Option<RateState>, Option<Charge>), ApiError> {
    let admitted = gw
        .limits
        .admit(access.client_name(), &route.name, current_worker())
        .await;
    match admitted {
        Ok(admitted) => {
            access.held = admitted.held;
            Ok((admitted.rate, admitted.charge))
        }
        Err(Refused::Over(refusal)) => {
            gw.metrics.rate_limited(&route.name, refusal.scope.as_str());
            Err(ApiError::RateLimited(refusal))
        }
        Err(Refused::StoreDown) => Err(ApiError::LimitStoreDown),
    }
}

/// A request answered with `err` before it was read, recorded in `access`.
fn refused(err: ApiError, route: Option<&str>, access: Access) -> Answer {
    let ctx = ErrorContext {
        route,
        request_id: Some(&access.request_id),
        ..ErrorContext::default()
    };
    recorded(reply(&err, ctx), access)
}

/// The 401 of a predict request without a valid key: in the access log (a
/// refused caller is worth seeing there), under no route.
pub fn unauthenticated<B>(req: &Request<B>) -> Answer {
    let access = Access {
        request_id: request_id::of(req.headers()).to_string(),
        ..Access::default()
    };
    Answer {
        response: super::unauthenticated(req),
        access: Some(access),
    }
}

/// Reads the body (within the route's deadline) and the headers that
/// matter into the core's request.
async fn parse<B>(
    gw: &Gateway,
    route: &Arc<Route>,
    req: Request<B>,
    trace: Option<TraceContext>,
    started: Instant,
    access: &mut Access,
) -> Result<CoreRequest, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let body = read_within(gw, body, started + route.timeout, access).await?;
    core_request(route, &parts, body, trace, started, access)
}

/// Reads the whole body by `deadline` (a client that stops sending its
/// body must not hold the request past it), recording the upload time
/// (the client's, not the gateway's own) and the size in `access`.
pub(super) async fn read_within<B>(
    gw: &Gateway,
    body: B,
    deadline: Instant,
    access: &mut Access,
) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = gw.config.server.max_body_bytes;
    let reading = Instant::now();
    let body = tokio::time::timeout_at(deadline, read_body(body, limit)).await;
    access.waited += reading.elapsed();
    let body = body.map_err(|_| ApiError::BodyTimeout)??;
    access.bytes_in = body.len();
    Ok(body)
}

/// The core's request from a door's request head and its body: the
/// headers that matter, checked, and the deadline.
pub(super) fn core_request(
    route: &Arc<Route>,
    parts: &http::request::Parts,
    body: Bytes,
    trace: Option<TraceContext>,
    started: Instant,
    access: &Access,
) -> Result<CoreRequest, ApiError> {
    let sagemaker_headers = sagemaker_headers(&parts.headers)?;
    let content_type = visible(&parts.headers, header::CONTENT_TYPE)?;
    let accept = visible(&parts.headers, header::ACCEPT)?;
    let budget = match client_timeout(&parts.headers)? {
        Some(t) => t.min(route.timeout),
        None => route.timeout,
    };
    let request_id = parts
        .headers
        .get(request_id::REQUEST_ID)
        .cloned()
        .unwrap_or_else(|| request_id::request_id(&parts.headers));
    Ok(CoreRequest {
        route: Arc::clone(route),
        op: Operation::Predict,
        body,
        content_type,
        accept,
        sagemaker_headers,
        request_id,
        trace,
        stream: access.stream,
        started,
        budget,
        caller: access.client.as_ref().map(|c| Caller {
            name: Arc::clone(&c.name),
        }),
        // Read only where a cache could answer.
        no_cache: route.cache.is_some() && crate::cache::bypass_requested(&parts.headers),
    })
}

/// The core's answer in the predict door's shape: the upstream status,
/// headers and body (an SSE stream for events), or the JSON error; with
/// `x-infergate-backend`, `x-infergate-attempts` and `server-timing`.
fn render(
    gw: &Gateway,
    route: &Route,
    answer: CoreResponse,
    started: Instant,
    access: &mut Access,
    charge: Option<Charge>,
) -> Response<ResBody> {
    let (result, timing) = record(answer, access);
    let mut res = match result {
        Ok(up) => success(gw, route, up, Wire::Sse, started, access, charge),
        Err(err) => {
            let backend = access.backend.as_ref().map(|b| b.name.as_str());
            log_failure(&err, &route.name, backend, &access.request_id);
            let ctx = ErrorContext {
                route: Some(&route.name),
                backend,
                request_id: Some(&access.request_id),
            };
            reply(&err, ctx)
        }
    };
    gateway_headers(res.headers_mut(), access, timing, started);
    res
}

/// What the gateway adds to every answer of a door, from [`record`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    upstream: Duration,
    waited: Duration,
}

/// Records the core's answer in `access` (backend, attempts, where the
/// time went) and hands back its result.
pub(super) fn record(
    answer: CoreResponse,
    access: &mut Access,
) -> (Result<UpstreamResponse, ApiError>, Timing) {
    access.attempts = answer.attempts;
    access.upstream = answer.upstream_time;
    access.waited += answer.waited;
    access.backend = answer.backend;
    access.cache = answer.cache;
    let timing = Timing {
        upstream: answer.upstream_time,
        waited: access.waited,
    };
    (answer.result, timing)
}

/// A successful upstream answer as a response: the upstream status,
/// headers and body, charged to the request's token buckets; an event
/// stream relayed in `wire`.
pub(super) fn success(
    gw: &Gateway,
    route: &Route,
    up: UpstreamResponse,
    wire: Wire,
    started: Instant,
    access: &Access,
    charge: Option<Charge>,
) -> Response<ResBody> {
    // A cached answer cost the backends nothing: it charges no tokens.
    let charge = charge.filter(|_| !matches!(access.cache, Some(CacheOutcome::Hit { .. })));
    let mut headers = up.headers;
    let body = match up.body {
        UpstreamBody::Full(bytes) => super::metered::body(full(bytes), &headers, charge),
        UpstreamBody::Stream(body) => super::metered::body(body, &headers, charge),
        UpstreamBody::Events { first, events } => {
            super::stream::set_headers(&mut headers, &wire, events.json_lines());
            let labels = super::stream::Labels {
                route: route.name.clone(),
                backend: access
                    .backend
                    .as_ref()
                    .map_or("none", |b| b.name.as_str())
                    .to_string(),
                request_id: access.request_id.clone(),
            };
            let metrics = gw.metrics.clone();
            let relay = (labels, metrics, charge);
            super::stream::body(wire, (first, events), route.stream, relay, started)
        }
    };
    let mut res = Response::new(body);
    *res.status_mut() = up.status;
    *res.headers_mut() = headers;
    res
}

/// `x-infergate-backend`, `x-infergate-attempts` and `server-timing`; on a
/// route with a response cache, `x-infergate-cache` (and `Age` on a hit).
pub(super) fn gateway_headers(
    headers: &mut HeaderMap,
    access: &Access,
    timing: Timing,
    started: Instant,
) {
    if let Some(b) = access.backend.as_ref().and_then(|b| b.name_header()) {
        headers.insert(
            const { HeaderName::from_static("x-infergate-backend") },
            b.clone(),
        );
    }
    headers.insert(
        const { HeaderName::from_static("x-infergate-attempts") },
        crate::header_numbers::number(u64::from(access.attempts)),
    );
    headers.insert(
        const { HeaderName::from_static("server-timing") },
        server_timing(started.elapsed(), timing.upstream, timing.waited),
    );
    if let Some(cache) = access.cache {
        headers.insert(CACHE_HEADER, cache.header());
        if let CacheOutcome::Hit { age } = cache {
            headers.insert(header::AGE, crate::header_numbers::number(age.as_secs()));
        }
    }
}

/// What the route's response cache did with the request.
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-infergate-cache");

/// `server-timing: upstream;dur=…, wait;dur=…, gateway;dur=…` in
/// milliseconds, until the response head: time spent on backends, in
/// backoff and reading the client's body, and the gateway's own.
fn server_timing(total: Duration, upstream: Duration, waited: Duration) -> HeaderValue {
    let own = total.saturating_sub(upstream).saturating_sub(waited);
    let mut value = Vec::with_capacity(64);
    for (name, d) in [
        (&b"upstream;dur="[..], upstream),
        (b", wait;dur=", waited),
        (b", gateway;dur=", own),
    ] {
        value.extend_from_slice(name);
        millis(&mut value, d);
    }
    HeaderValue::from_maybe_shared(Bytes::from(value))
        .unwrap_or_else(|_| HeaderValue::from_static("gateway"))
}

/// `d` in milliseconds with three decimals (`12.034`), in integers.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(micros / 1000).as_bytes());
    let frac = micros % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Reads the whole body; the body limit layer
/// ([`crate::layers::body_limit`]) caps it.
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let e: BoxError = e.into();
            if BodyTooLarge::is(&e) {
                Err(ApiError::PayloadTooLarge { limit })
            } else {
                Err(ApiError::BodyRead(e.to_string()))
            }
        }
    }
}

/// A header passed to the backend, which must be visible ASCII (it is
/// signed for SageMaker).
fn visible(headers: &HeaderMap, name: HeaderName) -> Result<Option<HeaderValue>, ApiError> {
    match headers.get(&name) {
        None => Ok(None),
        Some(v) if v.to_str().is_ok() => Ok(Some(v.clone())),
        Some(_) => Err(ApiError::BadRequest(format!(
            "header {name} must be visible ASCII"
        ))),
    }
}

/// The client's own deadline, `X-Infergate-Timeout-Ms: <milliseconds>`,
/// which may only shorten the route's.
fn client_timeout(headers: &HeaderMap) -> Result<Option<Duration>, ApiError> {
    let Some(v) = headers.get(const { HeaderName::from_static(TIMEOUT_HEADER) }) else {
        return Ok(None);
    };
    match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(ApiError::BadRequest(format!(
            "header {TIMEOUT_HEADER} must be a whole number of milliseconds greater than 0"
        ))),
    }
}

/// The client's `X-Amzn-SageMaker-*` headers, checked against the SageMaker
/// API's limits so a bad one is the client's 400, not a backend error.
fn sagemaker_headers(headers: &HeaderMap) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    // One pass over what the client sent; the first value of a name counts.
    for (name, v) in headers {
        if !name.as_str().starts_with("x-amzn-sagemaker-") || out.iter().any(|(n, _)| n == name) {
            continue;
        }
        match crate::protocol::sagemaker::check_header(name.as_str(), v.as_bytes()) {
            None => {}
            Some(Err(must)) => return Err(ApiError::BadRequest(format!("header {name} {must}"))),
            Some(Ok(())) => out.push((name.clone(), v.clone())),
        }
    }
    Ok(out)
}

pub(super) fn log_failure(err: &ApiError, route: &str, backend: Option<&str>, rid: &str) {
    match err {
        ApiError::Upstream(f) => tracing::warn!(
            request_id = rid,
            route,
            backend,
            kind = f.kind.as_str(),
            upstream_status = f.status,
            error = %f,
            cause = f.cause.as_deref(),
            "request failed"
        ),
        other => tracing::warn!(request_id = rid, route, backend, error = %other, "request failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[test]
    fn server_timing_is_in_milliseconds_with_three_decimals() {
        let us = Duration::from_micros;
        let v = server_timing(us(12_345_678), us(12_034_005), us(7));
        assert_eq!(
            v,
            "upstream;dur=12034.005, wait;dur=0.007, gateway;dur=311.666"
        );
        let v = server_timing(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        assert_eq!(v, "upstream;dur=0.000, wait;dur=0.000, gateway;dur=0.000");
    }

    #[tokio::test]
    async fn a_capped_body_over_the_limit_is_a_413() {
        use crate::layers::CappedBody;
        let body = CappedBody::new(Full::new(Bytes::from_static(b"0123456789a")), 10, true);
        let err = read_body(body, 10).await.unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge { limit: 10 }));
        let body = CappedBody::new(Full::new(Bytes::from_static(b"0123456789a")), 10, false);
        let err = read_body(body, 10).await.unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge { limit: 10 }));
        let body = CappedBody::new(Full::new(Bytes::from_static(b"0123456789")), 10, false);
        assert_eq!(read_body(body, 10).await.unwrap().len(), 10);
    }

    #[test]
    fn sagemaker_headers_are_checked_against_the_api_limits() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-amzn-sagemaker-target-variant",
            HeaderValue::from_static("v1"),
        );
        h.insert("x-amzn-sagemaker-unknown", HeaderValue::from_static("x"));
        let got = sagemaker_headers(&h).unwrap();
        assert_eq!(got.len(), 1);
        h.insert(
            "x-amzn-sagemaker-target-variant",
            HeaderValue::from_str(&"v".repeat(64)).unwrap(),
        );
        let err = sagemaker_headers(&h).unwrap_err();
        assert_eq!(
            err.to_string(),
            "header x-amzn-sagemaker-target-variant must be 0 to 63 printable ASCII characters"
        );
    }
}
