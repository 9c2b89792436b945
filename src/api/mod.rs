//! Front doors: each parses its own wire format into the request core's
//! [`CoreRequest`], and renders the core's answer and errors in its own
//! shape. A door knows nothing of backends, retries or balancing.
//!
//! - `POST /v1/predict/{route}[/stream]`: the unified predict API
//!   ([`predict`], [`stream`] for its SSE relay);
//! - `GET /healthz`, `/readyz`, `/metrics`, `/v1/routes` ([`admin`]).
//!
//! [`doors`] picks the door by path. What every door shares (request id,
//! head and body limits, access log and metrics) are the layers of
//! [`crate::layers`], composed in front of it by [`crate::app`].

pub mod admin;
pub mod predict;
pub mod stream;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use tower::Service;

use crate::body::{BoxError, ResBody};
use crate::core::{CoreRequest, CoreResponse};
use crate::error::{reply, ApiError, ErrorContext};
use crate::gateway::Gateway;
use crate::layers::{request_id, Answer};

/// Routes a request to its door by path and method.
pub async fn doors<B, C>(gw: &Arc<Gateway>, core: C, req: Request<B>) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    C: Service<CoreRequest, Response = CoreResponse, Error = Infallible>,
{
    // A clone of the URI shares its bytes: the route name is borrowed from
    // it while the request moves on to its door.
    let uri = req.uri().clone();
    let path = uri.path();
    if let Some(route) = path.strip_prefix("/v1/predict/") {
        if req.method() != Method::POST {
            return Answer::unrecorded(method_not_allowed(&req, "POST"));
        }
        // Route names cannot hold "/": `{route}/stream` is unambiguous.
        let (route, stream) = match route.strip_suffix("/stream") {
            Some(r) => (r, true),
            None => (route, false),
        };
        return predict::predict(gw, core, route, req, stream).await;
    }
    let response = match path {
        "/healthz" | "/readyz" | "/metrics" | "/v1/routes" => {
            if req.method() == Method::GET || req.method() == Method::HEAD {
                admin::handle(gw, path)
            } else {
                method_not_allowed(&req, "GET")
            }
        }
        _ => reply(
            &ApiError::NotFound(path.to_string()),
            ErrorContext {
                request_id: Some(request_id::of(req.headers())),
                ..ErrorContext::default()
            },
        ),
    };
    Answer::unrecorded(response)
}

fn method_not_allowed<B>(req: &Request<B>, allowed: &'static str) -> Response<ResBody> {
    let mut res = reply(
        &ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allowed,
        },
        ErrorContext {
            request_id: Some(request_id::of(req.headers())),
            ..ErrorContext::default()
        },
    );
    res.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allowed));
    res
}
