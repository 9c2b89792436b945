//! The service a connection runs: the layers every door shares, the doors,
//! and the request core, composed in one place.
//!
//! The order in which a request meets each step, outermost first:
//!
//! 1. [`RequestIdLayer`]: the client's `x-request-id` when sane, else a new
//!    one; set on the request for every later step and on every answer;
//! 2. [`HeadLimitLayer`]: at most 100 header fields and 64 KiB of head, the
//!    same rule on HTTP/1 and HTTP/2, else a JSON 431;
//! 3. [`AccessLayer`]: the request metrics when the answer's head is ready,
//!    the access-log line (and span) when its body ends;
//! 4. [`BodyLimitLayer`]: `server.max_body_bytes`, a declared length over
//!    it refused before a byte is read, a chunked body once it passes;
//! 5. the doors ([`api::doors`]; on the admin listener
//!    [`api::admin_door`]): by path, the predict door, the SageMaker door
//!    or the operator paths; a door asks [`crate::clients`] who is calling
//!    (the predict door: an API key, 401 before any route lookup; the
//!    SageMaker door: a SigV4 signature, checked as far as it can be
//!    before the body and wholly once the body is read, refused in
//!    SageMaker's shape), whether the route is the client's (403, or
//!    SageMaker's `AccessDeniedException`), and [`crate::limits`] whether
//!    it may spend more (429, or `ThrottlingException`), then parses its
//!    wire format into a [`CoreRequest`](crate::core::CoreRequest);
//! 6. the request core ([`core::service`]): the route's response cache
//!    ([`crate::cache`]), then dispatch (deadline, attempts, retries,
//!    failover, [`crate::dispatch`]) onto the backends
//!    ([`crate::backend`]).
//!
//! Every layer's future is a named type, so the stack is statically typed;
//! each door's future, which holds the whole request's state, is boxed
//! where [`api::doors`] makes it ([`crate::boxed`]), so that the future
//! the layers move stays about 1.4 KiB, whichever doors there are.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use tower::{Service, ServiceBuilder};

use crate::api;
use crate::body::{BoxError, ResBody};
use crate::boxed::boxed;
use crate::core;
use crate::gateway::Gateway;
use crate::layers::{AccessLayer, BodyLimitLayer, HeadLimitLayer, RequestIdLayer};

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `server.listen`: every door.
    Main,
    /// `server.admin_listen`: only the operator paths ([`api::admin_door`]).
    Admin,
}

/// The whole stack for one connection's requests.
pub fn service<B>(
    gw: Arc<Gateway>,
    listener: Listener,
) -> impl Service<
    Request<B>,
    Response = Response<ResBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ResBody>, Infallible>> + Send,
> + Clone
       + Send
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let core = core::service(Arc::clone(&gw));
    let doors = {
        let gw = Arc::clone(&gw);
        tower::service_fn(move |req| {
            let gw = Arc::clone(&gw);
            let core = core.clone();
            // Small: each door's own future is boxed where it is made
            // (`api::doors`), so what the layers around this move is small
            // (about 1.4 KiB).
            async move {
                Ok::<_, Infallible>(match listener {
                    Listener::Main => api::doors(&gw, core, req).await,
                    Listener::Admin => boxed(|| api::admin_door(&gw, req)).await,
                })
            }
        })
    };
    ServiceBuilder::new()
        .layer(RequestIdLayer)
        .layer(HeadLimitLayer)
        .layer(AccessLayer::new(Arc::clone(&gw)))
        .layer(BodyLimitLayer::new(gw.config.server.max_body_bytes))
        .service(doors)
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;
    use crate::config::Config;
    use crate::gateway::BuildOptions;

    /// What every layer moves is the stack's own future: it stays small
    /// (each door's state is boxed where it is made), however many doors
    /// there are and however large each one's state grows.
    #[tokio::test]
    async fn the_future_the_layers_move_stays_small() {
        let text = "[backends.hf]\nkind = \"huggingface\"\nurl = \"http://127.0.0.1:9\"\n\
                    [routes.hf]\nbackends = [\"hf\"]\n";
        let config = Config::from_toml(text, &|_| None).unwrap();
        let gw = Gateway::build(config, BuildOptions::default())
            .await
            .unwrap();
        for listener in [Listener::Main, Listener::Admin] {
            let mut app = service::<Full<Bytes>>(Arc::clone(&gw), listener);
            let req = Request::post("/v1/predict/hf")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            let future = app.call(req);
            let size = std::mem::size_of_val(&future);
            assert!(size <= 2048, "{listener:?}: {size} bytes");
        }
    }
}
