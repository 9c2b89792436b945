//! Errors the client sees, and how each maps to a status and one JSON shape.
//!
//! Layers below (backend, dispatch) describe what went wrong in their own
//! terms ([`crate::backend::Failure`]); this module turns the final outcome into
//! the error contract the README documents:
//!
//! ```json
//! {"error": {"type": "…", "message": "…", "route": "…", "backend": "…",
//!            "upstream_status": 503, "request_id": "…"}}
//! ```
//!
//! The status comes from an exhaustive `match` with no `_` arm, so a new
//! variant forces a decision. Messages never carry credentials: upstream
//! messages are taken from model or service error bodies only.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::backend::{Failure, FailureKind};
use crate::body::ResBody;
use crate::config::Operation;
use crate::limits::{RateState, Refusal, Scope};

/// Everything that can end a request with an error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is malformed (bad JSON for an adapted backend,
    /// an invalid forwarded header, …).
    #[error("{0}")]
    BadRequest(String),
    /// None of the route's backends runs a container that serves the
    /// operation (as a stream, when asked for one).
    #[error("{}", not_served(.route, *.op, *.stream))]
    NotServed {
        route: String,
        op: Operation,
        stream: bool,
    },
    /// No route of that name (the name as the client gave it; the message
    /// echoes at most [`MAX_ECHO`] bytes of it).
    #[error("unknown route \"{}\"", echo(.0))]
    UnknownRoute(String),
    /// No such path on the gateway.
    #[error("no such path: {}", echo(.0))]
    NotFound(String),
    /// The path exists, the method does not.
    #[error("method {method} not allowed; use {allowed}")]
    MethodNotAllowed {
        method: String,
        allowed: &'static str,
    },
    /// The request's headers are larger than the gateway accepts.
    #[error("request headers exceed the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    /// The request carries more header fields than the gateway accepts.
    #[error("request carries more than {limit} headers")]
    TooManyHeaders { limit: usize },
    /// The body is larger than `server.max_body_bytes`.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The client's body could not be read.
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// The client did not send its whole body within the request deadline.
    #[error("the request body did not arrive within the request deadline")]
    BodyTimeout,
    /// The whole-request deadline passed.
    #[error("no answer within the request deadline of {}", humantime::format_duration(*.0))]
    Deadline(Duration),
    /// Every attempt failed; the last failure decides the answer.
    #[error("{0}")]
    Upstream(Failure),
    /// The route has no backend that can take the request now.
    #[error("no backend of the route is available")]
    NoBackend,
    /// Every backend of the route is at its concurrency limit (load shedding).
    #[error("every backend of the route is at its concurrency limit; retry later")]
    Overloaded,
    /// No key, or a key no configured client has.
    #[error("a valid API key is required: send it as \"Authorization: Bearer <key>\" or \"x-api-key: <key>\"")]
    Unauthenticated,
    /// The client's key is valid but the route is not among its routes.
    #[error("this client may not use route \"{}\"", echo(.0))]
    Forbidden(String),
    /// An operator path asked without an admin client's key: a valid key
    /// but not an admin's, or (for a reload) keys turned off.
    #[error(
        "the operator paths need an admin client's key (admin = true), or the admin listener (server.admin_listen)"
    )]
    NotAdmin,
    /// Over one of the gateway's own limits (a client's or a route's).
    #[error("{}", rate_limited_message(.0))]
    RateLimited(Refusal),
    /// The gateway's Redis (`[rate_limits]`) gave no answer, to the rate
    /// limits or to a route's cache in it, and
    /// `rate_limits.on_store_error = "deny"`.
    #[error("the gateway's shared store (Redis) is unavailable; retry later")]
    LimitStoreDown,
}

fn not_served(route: &str, op: Operation, stream: bool) -> String {
    if stream && op == Operation::Predict {
        return format!(
            "route \"{route}\" cannot stream: none of its backends can (a JumpStart text2text, toolkit or TEI container answers whole)"
        );
    }
    let what = op.describe();
    if stream {
        format!("route \"{route}\" cannot stream {what}: none of its backends' containers can")
    } else {
        format!("route \"{route}\" does not serve {what}: none of its backends' containers does")
    }
}

fn rate_limited_message(r: &Refusal) -> String {
    let whose = match r.scope {
        Scope::ClientRate | Scope::ClientTokens | Scope::ClientInFlight => "this client's",
        Scope::ClientRouteRate | Scope::ClientRouteTokens => "this client's on this route",
        Scope::RouteRate | Scope::RouteTokens => "the route's",
    };
    match r.scope {
        Scope::ClientRate | Scope::ClientRouteRate | Scope::RouteRate => format!(
            "over {whose} rate limit (burst of {}); retry later",
            r.limit
        ),
        Scope::ClientTokens | Scope::ClientRouteTokens | Scope::RouteTokens => format!(
            "over {whose} tokens per minute ({}); retry once they have refilled",
            r.limit
        ),
        Scope::ClientInFlight => format!("this client already has {} requests in flight", r.limit),
    }
}

impl ApiError {
    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BodyRead(_) | ApiError::NotServed { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnknownRoute(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge { .. } | ApiError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ApiError::Deadline(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::NoBackend | ApiError::Overloaded | ApiError::LimitStoreDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::NotAdmin => StatusCode::FORBIDDEN,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream(f) => upstream_status(f),
        }
    }

    /// The `type` member of the error JSON: stable, machine-readable.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::NotServed { .. } => "bad_request",
            ApiError::BodyRead(_) => "bad_request",
            ApiError::BodyTimeout => "request_timeout",
            ApiError::UnknownRoute(_) => "unknown_route",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::HeadersTooLarge { .. } | ApiError::TooManyHeaders { .. } => {
                "headers_too_large"
            }
            ApiError::Deadline(_) => "deadline_exceeded",
            ApiError::NoBackend => "no_backend_available",
            ApiError::Overloaded => "overloaded",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden(_) | ApiError::NotAdmin => "forbidden",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::LimitStoreDown => "rate_limit_unavailable",
            ApiError::Upstream(f) => f.kind.as_str(),
        }
    }

    /// The seconds to put in `Retry-After`, for statuses that ask the client
    /// to come back later.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::NoBackend | ApiError::Overloaded | ApiError::LimitStoreDown => {
                Some(Duration::from_secs(1))
            }
            ApiError::RateLimited(r) => Some(r.retry_after),
            ApiError::Upstream(f) => match upstream_status(f) {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    Some(f.retry_after.unwrap_or(Duration::from_secs(1)))
                }
                _ => None,
            },
            ApiError::BadRequest(_)
            | ApiError::NotServed { .. }
            | ApiError::UnknownRoute(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed { .. }
            | ApiError::PayloadTooLarge { .. }
            | ApiError::HeadersTooLarge { .. }
            | ApiError::TooManyHeaders { .. }
            | ApiError::BodyRead(_)
            | ApiError::BodyTimeout
            | ApiError::Unauthenticated
            | ApiError::Forbidden(_)
            | ApiError::NotAdmin
            | ApiError::Deadline(_) => None,
        }
    }

    /// The status the backend answered, when one did.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            ApiError::Upstream(f) => f.status,
            _ => None,
        }
    }

    /// The backend's own request id, when it gave one.
    pub fn upstream_request_id(&self) -> Option<&str> {
        match self {
            ApiError::Upstream(f) => f.upstream_request_id.as_deref(),
            _ => None,
        }
    }
}

/// Status for a failed upstream exchange. A model's own 4xx rejection of the
/// input keeps its status, so both backends answer bad input alike; anything
/// the client cannot fix is a 5xx.
fn upstream_status(f: &Failure) -> StatusCode {
    match f.kind {
        FailureKind::ModelError => f
            .client_status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::BAD_GATEWAY),
        FailureKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        FailureKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FailureKind::InvalidInput => StatusCode::BAD_REQUEST,
        FailureKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        FailureKind::Connect
        | FailureKind::Io
        | FailureKind::AuthRejected
        | FailureKind::Credentials
        | FailureKind::Rejected
        | FailureKind::ServerError
        | FailureKind::Protocol => StatusCode::BAD_GATEWAY,
    }
}

/// Most bytes of a client's own text (a route name, a path) an error
/// message repeats: enough to recognise it, not enough to turn a long
/// request line into a long answer.
pub const MAX_ECHO: usize = 128;

/// `text`, cut at [`MAX_ECHO`] bytes (on a character boundary) with `…`.
fn echo(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_ECHO {
        return text.into();
    }
    let mut end = MAX_ECHO;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// Where an error happened, for the JSON body.
#[derive(Debug, Default, Clone, Copy)]
pub struct ErrorContext<'a> {
    pub route: Option<&'a str>,
    pub backend: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// The JSON body of an error, as bytes.
pub fn error_body(err: &ApiError, ctx: ErrorContext<'_>) -> Bytes {
    let env = Envelope {
        error: Body {
            kind: err.kind(),
            message: err.to_string(),
            route: ctx.route,
            backend: ctx.backend,
            upstream_status: err.upstream_status(),
            upstream_request_id: err.upstream_request_id(),
            request_id: ctx.request_id,
        },
    };
    // Serialising plain strings and integers cannot fail; fall back to a
    // fixed body rather than panic should it ever.
    serde_json::to_vec(&env)
        .map(Bytes::from)
        .unwrap_or_else(|_| {
            Bytes::from_static(br#"{"error":{"type":"internal","message":"error"}}"#)
        })
}

/// A complete error response: status, JSON body, `Retry-After` where due.
pub fn error_response<B: From<Bytes>>(err: &ApiError, ctx: ErrorContext<'_>) -> Response<B> {
    let mut res = Response::new(B::from(error_body(err, ctx)));
    *res.status_mut() = err.status();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    error_headers(headers, err);
    res
}

/// What every door's answer to `err` carries besides its body:
/// `WWW-Authenticate` for a missing key, `Retry-After` when the client
/// should come back (and `x-ratelimit-*` for a rate limit).
pub fn error_headers(headers: &mut http::HeaderMap, err: &ApiError) {
    if matches!(err, ApiError::Unauthenticated) {
        headers.insert(header::WWW_AUTHENTICATE, crate::clients::WWW_AUTHENTICATE);
    }
    if let Some(after) = err.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        headers.insert(
            header::RETRY_AFTER,
            crate::header_numbers::number(secs.max(1)),
        );
        if let ApiError::RateLimited(r) = err {
            let state = RateState {
                limit: r.limit,
                remaining: 0,
                reset: Duration::from_secs(secs.max(1)),
            };
            rate_limit_headers(headers, state);
        }
    }
}

/// A JSON answer: `body` with `status` and `headers`, as `application/json`.
pub fn json_reply(
    status: StatusCode,
    body: impl Into<Bytes>,
    mut headers: http::HeaderMap,
) -> Response<ResBody> {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut res = Response::new(crate::body::full(body.into()));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

/// The draft IETF RateLimit fields, as OpenAI's and GitHub's APIs send
/// them: the limit, what is left, whole seconds until it is all back.
pub fn rate_limit_headers(headers: &mut http::HeaderMap, state: RateState) {
    const LIMIT: http::HeaderName = http::HeaderName::from_static("x-ratelimit-limit");
    const REMAINING: http::HeaderName = http::HeaderName::from_static("x-ratelimit-remaining");
    const RESET: http::HeaderName = http::HeaderName::from_static("x-ratelimit-reset");
    let reset = state.reset.as_secs() + u64::from(state.reset.subsec_nanos() > 0);
    let [limit, remaining, reset] =
        crate::header_numbers::numbers([u64::from(state.limit), u64::from(state.remaining), reset]);
    headers.insert(LIMIT, limit);
    headers.insert(REMAINING, remaining);
    headers.insert(RESET, reset);
}

/// [`error_response`] with the gateway's body type.
pub fn reply(err: &ApiError, ctx: ErrorContext<'_>) -> Response<ResBody> {
    error_response::<http_body_util::Full<Bytes>>(err, ctx).map(|b| {
        use http_body_util::BodyExt;
        b.map_err(|never| match never {}).boxed_unsync()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind, status: Option<u16>, client_status: Option<u16>) -> Failure {
        Failure {
            kind,
            status,
            client_status,
            message: "m".into(),
            retry_after: None,
            retryable: false,
            cold: false,
            upstream_request_id: None,
            log_stream_arn: None,
            model_status: None,
            service_error: None,
            cause: None,
        }
    }

    #[test]
    fn model_error_keeps_the_models_4xx() {
        let e = ApiError::Upstream(failure(FailureKind::ModelError, Some(424), Some(400)));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.kind(), "model_error");
        assert_eq!(e.upstream_status(), Some(424));
    }

    #[test]
    fn auth_rejected_is_a_gateway_problem() {
        let e = ApiError::Upstream(failure(FailureKind::AuthRejected, Some(401), None));
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(e.kind(), "upstream_auth_rejected");
    }

    #[test]
    fn throttled_and_unavailable_carry_retry_after() {
        let mut f = failure(FailureKind::Throttled, Some(400), None);
        f.retry_after = Some(Duration::from_millis(2500));
        let res: Response<Bytes> = error_response(&ApiError::Upstream(f), ErrorContext::default());
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "3");
        let res: Response<Bytes> = error_response(&ApiError::NoBackend, ErrorContext::default());
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn body_has_the_contract_shape() {
        let e = ApiError::UnknownRoute("nope".into());
        let body = error_body(
            &e,
            ErrorContext {
                route: Some("nope"),
                backend: None,
                request_id: Some("r1"),
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "unknown_route");
        assert_eq!(v["error"]["message"], "unknown route \"nope\"");
        assert_eq!(v["error"]["route"], "nope");
        assert_eq!(v["error"]["request_id"], "r1");
        assert!(v["error"].get("backend").is_none());
    }

    #[test]
    fn a_long_route_name_is_echoed_cut() {
        let long = "é".repeat(30_000);
        let e = ApiError::UnknownRoute(long.clone());
        let msg = e.to_string();
        assert!(msg.len() < MAX_ECHO + 40, "{} bytes", msg.len());
        assert!(msg.starts_with("unknown route \"éé"));
        assert!(msg.ends_with("…\""));
        let short = ApiError::UnknownRoute("flan".into());
        assert_eq!(short.to_string(), "unknown route \"flan\"");
        let body = error_body(
            &ApiError::NotFound(format!("/{long}")),
            ErrorContext::default(),
        );
        assert!(body.len() < 400, "{} bytes", body.len());
    }
}
