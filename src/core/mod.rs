//! The request core: one internal request in, one internal answer out,
//! whatever door the request came through.
//!
//! A door parses its own wire format into a [`CoreRequest`] (the route,
//! the body and the headers that matter, the deadline, stream or not, and
//! who is calling) and renders the [`CoreResponse`] (an upstream answer:
//! head and body or event stream; or a failure) in its own shape. Between
//! them the core checks what holds for every door (does one of the route's
//! backends serve the operation, and as a stream if asked?)
//! and dispatches ([`crate::dispatch`]). It is a tower [`Service`], so the
//! steps that need the route and the caller (rate limits) can be layers
//! around it, composed in [`crate::app`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use tokio::time::Instant;
use tower::Service;

use crate::backend::UpstreamRequest;
use crate::config::Operation;
use crate::dispatch::{dispatch, Dispatched};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::route::Route;
use crate::trace::TraceContext;

/// Who is calling, as the door found it ([`crate::clients`]):
/// `None` for an anonymous caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The client's config name.
    pub name: Arc<str>,
}

/// One request, as every door hands it to the core.
#[derive(Debug)]
pub struct CoreRequest {
    pub route: Arc<Route>,
    /// What the door asks; `body` is in its shape.
    pub op: Operation,
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    pub accept: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-*` headers, validated by the door.
    pub sagemaker_headers: Vec<(HeaderName, HeaderValue)>,
    pub request_id: HeaderValue,
    pub trace: Option<TraceContext>,
    /// A token stream rather than one answer.
    pub stream: bool,
    /// When the request arrived, and how long it may take from then (the
    /// route's timeout, or less when the client asked).
    pub started: Instant,
    pub budget: Duration,
    pub caller: Option<Caller>,
}

/// The core's answer: the upstream answer or the failure, with the backend
/// that gave it, the attempts and where the time went.
pub type CoreResponse = Dispatched;

/// The core as a service: clone it freely (it holds the gateway).
pub fn service(
    gw: Arc<Gateway>,
) -> impl Service<
    CoreRequest,
    Response = CoreResponse,
    Error = Infallible,
    Future = impl Future<Output = Result<CoreResponse, Infallible>> + Send,
> + Clone
       + Send {
    tower::service_fn(move |req: CoreRequest| {
        let gw = Arc::clone(&gw);
        async move { Ok(serve(&gw, req).await) }
    })
}

/// Serves one request.
pub async fn serve(gw: &Gateway, req: CoreRequest) -> CoreResponse {
    let route = req.route;
    if !route
        .pool
        .iter()
        .any(|m| m.backend.serves(req.op, req.stream))
    {
        let err = ApiError::NotServed {
            route: route.name.clone(),
            op: req.op,
            stream: req.stream,
        };
        return Dispatched {
            result: Err(err),
            backend: None,
            attempts: 0,
            upstream_time: Duration::ZERO,
            waited: Duration::ZERO,
        };
    }
    let upstream = UpstreamRequest {
        op: req.op,
        body: req.body,
        content_type: req.content_type,
        accept: req.accept,
        sagemaker_headers: req.sagemaker_headers,
        request_id: req.request_id,
        timeout: route.timeout,
        total: req.budget,
        scale_up_timeout: None,
        stream: req.stream,
        trace: req.trace,
    };
    let deadline = req.started + req.budget;
    dispatch(gw.dispatch_context(), &route, upstream, deadline).await
}
