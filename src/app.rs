//! The service a connection runs: every front door behind one entry point.
//!
//! The order in which a request meets each concern is:
//!
//! 1. request id: taken from `x-request-id` or made, echoed on every answer
//!    ([`crate::api`]);
//! 2. routing by path: `/v1/predict/{route}`, `/healthz`, `/readyz`,
//!    `/metrics`, `/v1/routes` ([`crate::api`]);
//! 3. body limit: a declared length over `server.max_body_bytes` is refused
//!    before the body is read, a chunked body as soon as it passes the limit
//!    ([`crate::api::predict`]);
//! 4. dispatch: deadline, attempts, failover ([`crate::dispatch`]);
//! 5. backend: adapt, authenticate, send, classify ([`crate::backend`]);
//! 6. access log and metrics, once per request ([`crate::api::access`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};

use crate::api;
use crate::gateway::{BoxError, Gateway, ResBody};

/// Serves one request.
pub async fn handle<B>(gw: &Arc<Gateway>, req: Request<B>) -> Response<ResBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    api::handle(gw, req).await
}
