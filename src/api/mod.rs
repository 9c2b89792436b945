//! Front doors: each parses its own wire format into the request core's
//! [`CoreRequest`], and renders the core's answer and errors in its own
//! shape. A door knows nothing of backends, retries or balancing.
//!
//! - `POST /v1/predict/{route}[/stream]`: the unified predict API
//!   ([`predict`], [`stream`] for its SSE relay);
//! - `POST [/base]/endpoints/{route}/invocations[-response-stream]`: the
//!   SageMaker runtime's API, for the AWS SDKs ([`sagemaker`]);
//! - `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//!   `GET /v1/models`: OpenAI's API, for the `openai` client ([`openai`]);
//! - `/hf/{route}/…`: a TGI or TEI endpoint, for huggingface_hub's
//!   `InferenceClient` ([`tgi`]);
//! - `GET /healthz`, `/readyz`, `/metrics`, `/v1/routes` ([`admin`]).
//!
//! [`doors`] picks the door by path. What every door shares (request id,
//! head and body limits, access log and metrics) are the layers of
//! [`crate::layers`], composed in front of it by [`crate::app`].

pub mod admin;
pub mod metered;
pub mod openai;
pub mod predict;
pub mod sagemaker;
pub mod stream;
pub mod tgi;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use tower::Service;

use crate::body::{BoxError, ResBody};
use crate::boxed::boxed;
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
        return boxed(|| predict::predict(gw, core, route, req, stream, caller)).await;
    }
    if gw.config.doors.tgi {
        if let Some((route, call)) = tgi::parse_path(path) {
            return boxed(|| tgi::serve(gw, core, route, call, req)).await;
        }
    }
    if gw.config.doors.openai {
        if let Some(call) = openai::parse_path(path) {
            return boxed(|| openai::serve(gw, core, call, req)).await;
        }
    }
    if gw.config.doors.sagemaker.enabled {
        if let Some((endpoint, op)) = sagemaker::parse_path(path) {
            return boxed(|| sagemaker::invoke(gw, core, &endpoint, op, req)).await;
        }
    }
    let response = match path {
        "/healthz" | "/readyz" => admin_get(gw, &req, path),
        // Backend URLs and traffic are in there: on the admin listener when
        // there is one, else for an admin client's key when keys are
        // required.
        "/metrics" | "/v1/routes" | RELOAD if gw.config.server.admin_listen.is_none() => {
            match gw.callers.identify(req.headers()) {
                Identity::Unknown => unauthenticated(&req),
                Identity::Client(client) if !client.admin => error(&req, &ApiError::NotAdmin),
                // A reload changes what the gateway serves: never anyone's
                // who reaches the port, even with keys turned off.
                Identity::Anonymous if path == RELOAD => error(&req, &ApiError::NotAdmin),
                Identity::Anonymous | Identity::Client(_) => operator(gw, &req, path).await,
            }
        }
        _ => not_found(&req, path),
    };
    Answer::unrecorded(response)
}

/// The admin listener's door (`server.admin_listen`): the operator paths,
/// without a key (where it listens is what guards it), and nothing else.
pub async fn admin_door<B>(gw: &Arc<Gateway>, req: Request<B>) -> Answer {
    let path = req.uri().path();
    let response = match path {
        "/healthz" | "/readyz" | "/metrics" | "/v1/routes" | RELOAD => {
            operator(gw, &req, path).await
        }
        _ => not_found(&req, path),
    };
    Answer::unrecorded(response)
}

/// `POST` here reloads the config ([`crate::reload`]).
const RELOAD: &str = "/v1/reload";

/// An operator path's answer: a reload to `POST`, the others to `GET`.
/// Not an `async fn`: the request (whose body need not be `Sync`) is not
/// held while the reload runs.
fn operator<B>(
    gw: &Arc<Gateway>,
    req: &Request<B>,
    path: &str,
) -> impl Future<Output = Response<ResBody>> + Send + 'static {
    let now = match path {
        RELOAD if req.method() == Method::POST => None,
        RELOAD => Some(method_not_allowed(req, "POST")),
        _ => Some(admin_get(gw, req, path)),
    };
    let gw = Arc::clone(gw);
    async move {
        match now {
            Some(response) => response,
            None => admin::reload(&gw).await,
        }
    }
}

fn not_found<B>(req: &Request<B>, path: &str) -> Response<ResBody> {
    error(req, &ApiError::NotFound(path.to_string()))
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
    error(req, &ApiError::Unauthenticated)
}

/// `err` in the gateway's JSON shape, with the request's id.
fn error<B>(req: &Request<B>, err: &ApiError) -> Response<ResBody> {
    reply(
        err,
        ErrorContext {
            request_id: Some(request_id::of(req.headers())),
            ..ErrorContext::default()
        },
    )
}

fn method_not_allowed<B>(req: &Request<B>, allowed: &'static str) -> Response<ResBody> {
    let method = req.method().to_string();
    let mut res = error(req, &ApiError::MethodNotAllowed { method, allowed });
    res.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allowed));
    res
}
