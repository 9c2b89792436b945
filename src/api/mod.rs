//! Front doors: the HTTP API the gateway serves.
//!
//! - `POST /v1/predict/{route}`: the unified predict API ([`predict`]);
//! - `GET /healthz`, `/readyz`, `/metrics`, `/v1/routes` ([`admin`]).
//!
//! Every answer carries `x-request-id` (the client's own when it sent a
//! sane one) and every error is the JSON shape of [`crate::error`].

pub mod access;
pub mod admin;
pub mod limits;
pub mod predict;
pub mod stream;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};

use crate::error::{error_response, ApiError, ErrorContext};
use crate::gateway::{Gateway, ResBody};

/// Longest client-supplied request id that is kept as is.
const MAX_REQUEST_ID: usize = 128;

/// Routes a request to its front door.
pub async fn handle<B>(gw: &Arc<Gateway>, req: Request<B>) -> Response<ResBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::gateway::BoxError>,
{
    let request_id = request_id(req.headers());
    let path = req.uri().path();
    let mut res = if let Err(e) = limits::check_head(req.headers()) {
        error(
            &e,
            ErrorContext {
                request_id: request_id.to_str().ok(),
                ..ErrorContext::default()
            },
        )
    } else if let Some(route) = path.strip_prefix("/v1/predict/") {
        if req.method() == Method::POST {
            // Route names cannot hold "/": `{route}/stream` is unambiguous.
            let (route, stream) = match route.strip_suffix("/stream") {
                Some(r) => (r.to_string(), true),
                None => (route.to_string(), false),
            };
            predict::predict(gw, &route, req, &request_id, stream).await
        } else {
            method_not_allowed(req.method(), "POST", &request_id)
        }
    } else {
        match path {
            "/healthz" | "/readyz" | "/metrics" | "/v1/routes" => {
                if req.method() == Method::GET || req.method() == Method::HEAD {
                    admin::handle(gw, path)
                } else {
                    method_not_allowed(req.method(), "GET", &request_id)
                }
            }
            _ => error(
                &ApiError::NotFound(path.to_string()),
                ErrorContext {
                    request_id: request_id.to_str().ok(),
                    ..ErrorContext::default()
                },
            ),
        }
    };
    res.headers_mut().insert("x-request-id", request_id);
    res
}

fn method_not_allowed(
    method: &Method,
    allowed: &'static str,
    id: &HeaderValue,
) -> Response<ResBody> {
    let mut res = error(
        &ApiError::MethodNotAllowed {
            method: method.to_string(),
            allowed,
        },
        ErrorContext {
            request_id: id.to_str().ok(),
            ..ErrorContext::default()
        },
    );
    res.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allowed));
    res
}

/// The client's `x-request-id` when it is short visible ASCII, else a new
/// random 128-bit id in hex.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("x-request-id") {
        let ok = !v.is_empty()
            && v.len() <= MAX_REQUEST_ID
            && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if ok {
            return v.clone();
        }
    }
    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    // Hex digits are always a valid header value.
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// A response with a complete body.
pub fn full(body: impl Into<Bytes>) -> ResBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An error response with the JSON body.
pub fn error(err: &ApiError, ctx: ErrorContext<'_>) -> Response<ResBody> {
    error_response::<Full<Bytes>>(err, ctx)
        .map(|b| b.map_err(|never| match never {}).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_keeps_sane_client_ids_only() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(200)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 32);
        assert_eq!(request_id(&HeaderMap::new()).len(), 32);
    }
}
