//! Which backends one request may use, and the sticky sessions that decide
//! part of it.
//!
//! A SageMaker session lives on the endpoint that opened it, so a request in
//! a known session may only go there, and a request opening one only to a
//! SageMaker backend (the only kind with sessions). An operation needs a
//! backend whose container serves it (as a stream, for a stream). These rules bind every attempt, retries and
//! hedges alike; the balancer chooses among what they leave.

use std::time::SystemTime;

use http::{HeaderName, HeaderValue};

use crate::backend::{BackendKind, UpstreamRequest, UpstreamResponse};
use crate::config::Operation;
use crate::route::sticky::NEW_SESSION;
use crate::route::Route;

/// The backends one request may use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Eligible {
    op: Operation,
    streaming: bool,
    /// The backend of the request's known session.
    pinned: Option<usize>,
    /// The request opens a session on a route that has SageMaker backends.
    new_session: bool,
}

impl Eligible {
    /// The rules for `req` on `route`, read once before the first attempt.
    pub(crate) fn for_request(route: &Route, req: &UpstreamRequest) -> Self {
        let session = crate::protocol::sagemaker::session_id(&req.sagemaker_headers);
        let has_sagemaker = route
            .pool
            .iter()
            .any(|m| matches!(m.backend.kind, BackendKind::SageMaker(_)));
        let pinned = match (session, &route.sessions) {
            (Some(id), Some(table)) if id != NEW_SESSION => table.lookup(id, SystemTime::now()),
            _ => None,
        };
        Self {
            op: req.op,
            streaming: req.stream,
            pinned,
            new_session: session == Some(NEW_SESSION) && has_sagemaker,
        }
    }

    /// Whether `route.pool[i]` may take an attempt of the request.
    pub(crate) fn allows(&self, route: &Route, i: usize) -> bool {
        let backend = &route.pool[i].backend;
        backend.serves(self.op, self.streaming)
            && match self.pinned {
                Some(p) => i == p,
                None => !self.new_session || matches!(backend.kind, BackendKind::SageMaker(_)),
            }
    }
}

/// Keeps the session table in step with the answer's session headers.
pub(crate) fn remember_session(route: &Route, index: usize, response: &UpstreamResponse) {
    let Some(table) = &route.sessions else {
        return;
    };
    // Names made once: a lookup by `&str` checks and folds it first.
    static OPENED: HeaderName = HeaderName::from_static("x-amzn-sagemaker-new-session-id");
    static CLOSED: HeaderName = HeaderName::from_static("x-amzn-sagemaker-closed-session-id");
    let text = |name: &HeaderName| {
        response
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(opened) = text(&OPENED) {
        table.opened(opened, index, SystemTime::now());
    }
    if let Some(closed) = text(&CLOSED) {
        table.closed(closed);
    }
}
