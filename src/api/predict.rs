//! `POST /v1/predict/{route}`: the unified predict API.
//!
//! The body, `Content-Type` and `Accept` pass through to the backend picked
//! for the route; the backend's answer comes back with `x-request-id`,
//! `x-infergate-backend` and `x-infergate-attempts`. The body is read whole
//! (up to `server.max_body_bytes`) because every attempt signs its exact
//! bytes and a retry must be able to send them again; the answer streams
//! back as it arrives.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use super::access::{finish, Access};
use super::{error, full};
use crate::backend::{UpstreamBody, UpstreamRequest};
use crate::dispatch::{dispatch, Dispatched};
use crate::error::{ApiError, ErrorContext};
use crate::gateway::{Gateway, ResBody};
use crate::trace::TraceContext;

/// The request header with which a client shortens its deadline.
pub const TIMEOUT_HEADER: &str = "x-infergate-timeout-ms";

/// Serves one predict request: `POST /v1/predict/{route}`, or with
/// `stream`, `POST /v1/predict/{route}/stream` ([`super::stream`]).
pub async fn predict<B>(
    gw: &Arc<Gateway>,
    route_name: &str,
    req: Request<B>,
    request_id: &HeaderValue,
    stream: bool,
) -> Response<ResBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::gateway::BoxError>,
{
    let started = Instant::now();
    let trace = TraceContext::from_headers(req.headers(), gw.spans.is_some());
    let mut access = Access {
        stream,
        request_id: request_id.to_str().unwrap_or_default().to_string(),
        trace: Some(trace.clone()),
        ..Access::default()
    };
    let res = serve(
        gw,
        route_name,
        req,
        request_id,
        &trace,
        started,
        &mut access,
    )
    .await;
    finish(gw, access, res, started)
}

async fn serve<B>(
    gw: &Arc<Gateway>,
    route_name: &str,
    req: Request<B>,
    request_id: &HeaderValue,
    trace: &TraceContext,
    started: Instant,
    access: &mut Access,
) -> Response<ResBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::gateway::BoxError>,
{
    let rid = request_id.to_str().ok();
    let Some(route) = gw.routes.get(route_name).cloned() else {
        let err = ApiError::UnknownRoute(route_name.to_string());
        return error(
            &err,
            ErrorContext {
                request_id: rid,
                ..ErrorContext::default()
            },
        );
    };
    access.route = Some(Arc::clone(&route));
    let ctx = ErrorContext {
        route: Some(&route.name),
        backend: None,
        request_id: rid,
    };
    if access.stream && !route.pool.iter().any(|m| m.backend.can_stream()) {
        let err = ApiError::BadRequest(format!(
            "route \"{}\" cannot stream: none of its backends can (a JumpStart text2text model answers whole)",
            route.name
        ));
        return error(&err, ctx);
    }

    let (parts, body) = req.into_parts();
    // A client that stops sending its body must not hold the request past
    // its deadline.
    let read = read_body(body, &parts.headers, gw.config.server.max_body_bytes);
    let reading = Instant::now();
    let body = tokio::time::timeout_at(started + route.timeout, read).await;
    // The client's upload time is not the gateway's own.
    access.waited = reading.elapsed();
    let body = match body {
        Ok(Ok(b)) => b,
        Ok(Err(err)) => return error(&err, ctx),
        Err(_) => return error(&ApiError::BodyTimeout, ctx),
    };
    access.bytes_in = body.len();
    let sagemaker_headers = match sagemaker_headers(&parts.headers) {
        Ok(h) => h,
        Err(err) => return error(&err, ctx),
    };
    let (content_type, accept) = match (
        visible(&parts.headers, header::CONTENT_TYPE),
        visible(&parts.headers, header::ACCEPT),
    ) {
        (Ok(ct), Ok(accept)) => (ct, accept),
        (Err(err), _) | (_, Err(err)) => return error(&err, ctx),
    };
    let budget = match client_timeout(&parts.headers) {
        Ok(Some(t)) => t.min(route.timeout),
        Ok(None) => route.timeout,
        Err(err) => return error(&err, ctx),
    };
    let upstream = UpstreamRequest {
        body,
        content_type,
        accept,
        sagemaker_headers,
        request_id: request_id.clone(),
        timeout: route.timeout,
        total: budget,
        scale_up_timeout: None,
        stream: access.stream,
        trace: Some(trace.clone()),
    };
    let deadline = started + budget;
    let Dispatched {
        result,
        backend,
        attempts,
        upstream_time,
        waited,
    } = dispatch(gw.dispatch_context(), &route, upstream, deadline).await;
    access.attempts = attempts;
    access.upstream = upstream_time;
    access.waited += waited;
    let backend_name = backend.as_ref().map(|b| b.name.as_str());

    let mut res = match result {
        Ok(up) => {
            let mut headers = up.headers;
            let body = match up.body {
                UpstreamBody::Full(bytes) => full(bytes),
                UpstreamBody::Stream(res) => {
                    let res: http::Response<reqwest::Body> = res.into();
                    res.into_body().map_err(Into::into).boxed_unsync()
                }
                UpstreamBody::Events { first, events } => {
                    super::stream::set_headers(&mut headers);
                    let labels = super::stream::Labels {
                        route: route.name.clone(),
                        backend: backend_name.unwrap_or("none").to_string(),
                        request_id: rid.unwrap_or_default().to_string(),
                    };
                    super::stream::body(
                        first,
                        events,
                        route.stream,
                        labels,
                        gw.metrics.clone(),
                        started,
                    )
                }
            };
            let mut res = Response::new(body);
            *res.status_mut() = up.status;
            *res.headers_mut() = headers;
            res
        }
        Err(err) => {
            log_failure(&err, &route.name, backend_name, rid.unwrap_or_default());
            error(
                &err,
                ErrorContext {
                    backend: backend_name,
                    ..ctx
                },
            )
        }
    };
    let headers = res.headers_mut();
    if let Some(b) = backend_name.and_then(|b| HeaderValue::from_str(b).ok()) {
        headers.insert("x-infergate-backend", b);
    }
    headers.insert("x-infergate-attempts", HeaderValue::from(attempts));
    headers.insert(
        "server-timing",
        server_timing(started.elapsed(), upstream_time, access.waited),
    );
    access.backend = backend;
    res
}

/// `server-timing: upstream;dur=…, wait;dur=…, gateway;dur=…` in
/// milliseconds, until the response head: time spent on backends, in
/// backoff and reading the client's body, and the gateway's own.
fn server_timing(total: Duration, upstream: Duration, waited: Duration) -> HeaderValue {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let value = format!(
        "upstream;dur={:.3}, wait;dur={:.3}, gateway;dur={:.3}",
        ms(upstream),
        ms(waited),
        ms(total.saturating_sub(upstream).saturating_sub(waited))
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("gateway"))
}

/// Reads the whole body within `limit`: a declared `Content-Length` over the
/// limit is refused before a byte is read; a chunked body as soon as it
/// passes the limit.
async fn read_body<B>(body: B, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::gateway::BoxError>,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ApiError::BodyRead(e.to_string())),
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
    let Some(v) = headers.get(TIMEOUT_HEADER) else {
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
    let mut out = Vec::new();
    for (name, _, _) in crate::protocol::sagemaker::REQUEST_HEADERS {
        if let Some(v) = headers.get(*name) {
            if let Some(Err(must)) = crate::protocol::sagemaker::check_header(name, v.as_bytes()) {
                return Err(ApiError::BadRequest(format!("header {name} {must}")));
            }
            out.push((HeaderName::from_static(name), v.clone()));
        }
    }
    Ok(out)
}

fn log_failure(err: &ApiError, route: &str, backend: Option<&str>, rid: &str) {
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

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_before_reading() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        let err = read_body(Full::new(Bytes::from_static(b"0123456789a")), &h, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge { limit: 10 }));
    }

    #[tokio::test]
    async fn undeclared_body_over_the_limit_is_refused() {
        let err = read_body(
            Full::new(Bytes::from_static(b"0123456789a")),
            &HeaderMap::new(),
            10,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge { limit: 10 }));
        let ok = read_body(
            Full::new(Bytes::from_static(b"0123456789")),
            &HeaderMap::new(),
            10,
        )
        .await
        .unwrap();
        assert_eq!(ok.len(), 10);
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
