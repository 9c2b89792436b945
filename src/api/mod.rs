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
use crate::clients::Identity;
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
        // Before the route is looked up: without a key, no route name is
        // confirmed or denied.
        let caller = match gw.callers.identify(req.headers()) {
            Identity::Anonymous => None,
            Identity::Client(client) => Some(client),
            Identity::Unknown => return predict::unauthenticated(&req),
        };
        // Route names cannot hold "/": `{route}/stream` is unambiguous.
        let (route, stream) = match route.strip_suffix("/stream") {
            Some(r) => (r, true),
            None => (route, false),
        };
        return predict::predict(gw, core, route, req, stream, caller).await;
    }
    let response = match path {
        "/healthz" | "/readyz" => admin_get(gw, &req, path),
        // Backend URLs and traffic are in there: a client's key when keys
        // are required.
        "/metrics" | "/v1/routes" => match gw.callers.identify(req.headers()) {
            Identity::Unknown => unauthenticated(&req),
            Identity::Anonymous | Identity::Client(_) => admin_get(gw, &req, path),
        },
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

/// An operator path's answer to `GET`/`HEAD`, else 405.
fn admin_get<B>(gw: &Arc<Gateway>, req: &Request<B>, path: &str) -> Response<ResBody> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        admin::handle(gw, path)
    } else {
        method_not_allowed(req, "GET")
    }
}

/// The 401 for a request without a valid key, with `WWW-Authenticate`.
pub(crate) fn unauthenticated<B>(req: &Request<B>) -> Response<ResBody> {
    reply(
        &ApiError::Unauthenticated,
        ErrorContext {
            request_id: Some(request_id::of(req.headers())),
            ..ErrorContext::default()
        },
    )
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
