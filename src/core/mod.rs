//! The request core: one internal request in, one internal answer out,
//! whatever door the request came through.
//!
//! A door parses its own wire format into a [`CoreRequest`] (the route,
//! the body and the headers that matter, the deadline, stream or not, and
//! who is calling) and renders the [`CoreResponse`] (an upstream answer:
//! head and body or event stream; or a failure) in its own shape. Between
//! them the core checks what holds for every door (does one of the route's
//! backends serve the operation, and as a stream if asked?), answers
//! from the route's response cache when it has one and the answer is there
//! ([`crate::cache`]: a hit makes no attempt; a cache in Redis that cannot
//! answer is as `rate_limits.on_store_error` says), and else dispatches
//! ([`crate::dispatch`]), keeping a copy of the answer for the cache when
//! it may be served again, and a copy of the request for the route's
//! shadows when it has some ([`crate::shadow`]: they are called once the
//! client has the answer). It is a tower [`Service`], so the
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

use crate::backend::events::Events;
use crate::backend::{UpstreamBody, UpstreamRequest, UpstreamResponse};
use crate::cache::{CacheOutcome, Entry, Lookup, RouteCache, Stored};
use crate::config::{OnStoreError, Operation};
use crate::dispatch::{dispatch, Dispatched};
use crate::error::ApiError;
use crate::gateway::{current_worker, Gateway};
use crate::route::Route;
use crate::shadow::Picked;
use crate::trace::TraceContext;

mod copies;

use copies::Keep;

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
    /// The client asked not to be served from a cache (`Cache-Control:
    /// no-cache` or `no-store`, [`crate::cache::bypass_requested`]).
    pub no_cache: bool,
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
    let route = Arc::clone(&req.route);
    if !route
        .pool
        .iter()
        .any(|m| m.backend.serves(req.op, req.stream))
    {
        return refused(ApiError::NotServed {
            route: route.name.clone(),
            op: req.op,
            stream: req.stream,
        });
    }
    let (outcome, keep) = match route.cache.clone() {
        None => (None, None),
        Some(cache) => match look_up(gw, cache, &req).await {
            Looked::Answered(answer) => return *answer,
            Looked::Bypass => (Some(CacheOutcome::Bypass), None),
            Looked::Miss(keep) => (Some(CacheOutcome::Miss), Some(keep)),
        },
    };
    let (mut answer, picked) = send(gw, req).await;
    answer.cache = outcome;
    let keep = keep.map(|keep| Keep {
        backend: answer.backend.as_ref().map(|b| b.name.clone()),
        ..keep
    });
    answer.result = answer.result.map(|up| copies::copied(up, keep, picked));
    answer
}

/// What the route's cache has to say of a request.
enum Looked {
    /// From the cache (a hit), or refused for it (its store down and
    /// `on_store_error = "deny"`); boxed, as it is the rarer and much the
    /// larger variant.
    Answered(Box<CoreResponse>),
    /// Sent on as if the route had no cache.
    Bypass,
    /// Sent on, and its answer stored there.
    Miss(Keep),
}

/// Looks `req` up in the route's `cache`.
async fn look_up(gw: &Gateway, cache: Arc<RouteCache>, req: &CoreRequest) -> Looked {
    let looked_up = crate::cache::Request {
        route: &req.route.name,
        caller: req.caller.as_ref().map(|c| &*c.name),
        op: req.op.as_str(),
        stream: req.stream,
        body: &req.body,
        content_type: req.content_type.as_ref(),
        accept: req.accept.as_ref(),
        sagemaker_headers: &req.sagemaker_headers,
        no_cache: req.no_cache,
    };
    let Some(key) = cache.key(&looked_up) else {
        return Looked::Bypass;
    };
    let worker = current_worker();
    match cache.get(&key, worker).await {
        Lookup::Hit { entry, age } => Looked::Answered(Box::new(hit(&req.route, &entry, age))),
        Lookup::Miss => Looked::Miss(Keep {
            cache,
            key,
            worker,
            backend: None,
            caller: req.caller.as_ref().map(|c| Arc::clone(&c.name)),
        }),
        // Redis failed or was late: as if the route had no cache, or 503.
        Lookup::Unavailable => match gw.config.rate_limits.on_store_error {
            OnStoreError::Allow => Looked::Bypass,
            OnStoreError::Deny => {
                let mut answer = refused(ApiError::LimitStoreDown);
                answer.cache = Some(CacheOutcome::Bypass);
                Looked::Answered(Box::new(answer))
            }
        },
    }
}

/// `err`, with no attempt made.
fn refused(err: ApiError) -> CoreResponse {
    Dispatched {
        result: Err(err),
        backend: None,
        attempts: 0,
        upstream_time: Duration::ZERO,
        waited: Duration::ZERO,
        cache: None,
    }
}

/// Sends the request to the route's backends; with the shadows picked
/// for it, which want a copy of a successful answer.
async fn send(gw: &Gateway, req: CoreRequest) -> (CoreResponse, Option<Picked>) {
    let route = req.route;
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
    // The copy for the shadows is taken before the request is sent: the
    // dispatcher owns it from then on.
    let picked = match &route.shadow {
        Some(shadows) if crate::shadow::may_shadow(&upstream) => {
            shadows.pick(shadows.sample(), &upstream, gw.client())
        }
        _ => None,
    }
    .map(|p| p.logged(gw.diff_log.as_ref(), &route.name));
    let answer = dispatch(gw.dispatch_context(), &route, upstream, deadline).await;
    let picked = picked.map(|p| p.answered_by(answer.backend.as_ref()));
    (answer, picked)
}

/// The stored answer `entry`, stored `age` ago, as if its backend had
/// just given it (the backend found again in the route's pool, for
/// `x-infergate-backend`), with no attempt.
fn hit(route: &Route, entry: &Entry, age: Duration) -> CoreResponse {
    let body = match &entry.body {
        Stored::Full(bytes) => UpstreamBody::Full(bytes.clone()),
        Stored::Events {
            first,
            rest,
            json_lines,
        } => UpstreamBody::Events {
            first: first.clone(),
            events: Events::replay(rest, *json_lines),
        },
    };
    let backend = entry.backend.as_deref().and_then(|name| {
        route
            .pool
            .iter()
            .find(|m| m.backend.name == name)
            .map(|m| Arc::clone(&m.backend))
    });
    Dispatched {
        result: Ok(UpstreamResponse {
            status: entry.status,
            headers: entry.headers.clone(),
            body,
        }),
        backend,
        attempts: 0,
        upstream_time: Duration::ZERO,
        waited: Duration::ZERO,
        cache: Some(CacheOutcome::Hit { age }),
    }
}
