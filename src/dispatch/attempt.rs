//! One attempt: its timeouts, the call to the backend, and what it tells the
//! backend's health and the metrics.
//!
//! The call itself goes through [`Call`], so the attempts, retries and
//! hedges around it can be driven by a script in tests, on a paused clock;
//! the gateway's [`Upstream`] is the real thing. Everything else an attempt
//! does (the in-flight slot, the health observation, the ejection and
//! attempt metrics, the record of an attempt cancelled midway) happens here
//! whichever the call is.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Failure, FailureKind, UpstreamRequest, UpstreamResponse};
use crate::metrics::Metrics;
use crate::route::health::{Availability, InFlight, Observation};
use crate::route::Route;

/// Sends one attempt to a backend of the route.
pub(crate) trait Call {
    /// Sends `req` to `route.pool[index]`.
    fn call(
        &self,
        index: usize,
        req: &UpstreamRequest,
    ) -> impl Future<Output = Result<UpstreamResponse, Failure>> + Send;
}

/// The backends themselves, over the shared upstream client.
pub(crate) struct Upstream<'a> {
    pub(crate) client: &'a crate::upstream::Client,
    pub(crate) route: &'a Route,
}

impl Call for Upstream<'_> {
    fn call(
        &self,
        index: usize,
        req: &UpstreamRequest,
    ) -> impl Future<Output = Result<UpstreamResponse, Failure>> + Send {
        self.route.pool[index].backend.call(self.client, req)
    }
}

/// What every attempt of one request shares.
pub(crate) struct Env<'a, C> {
    pub(crate) metrics: &'a Metrics,
    pub(crate) route: &'a Route,
    pub(crate) call: &'a C,
}

// Not derived: a derive would ask `C: Copy`, and only references are copied.
impl<C> Clone for Env<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Env<'_, C> {}

/// An attempt's backend and how it ended.
pub(crate) type Outcome = (usize, Result<UpstreamResponse, Failure>);

/// The health observation an attempt's failure makes.
fn observation(f: &Failure) -> Observation {
    use FailureKind as K;
    if f.cold {
        return Observation::Cold;
    }
    match f.kind {
        K::ModelError | K::InvalidInput | K::Internal => Observation::Neutral,
        K::Connect
        | K::Io
        | K::Timeout
        | K::Throttled
        | K::Unavailable
        | K::AuthRejected
        | K::Credentials
        | K::Rejected
        | K::ServerError
        | K::Protocol => Observation::Failure,
    }
}

/// Records an attempt that was dropped before it ended.
struct AttemptRecord<'a> {
    metrics: &'a Metrics,
    backend: &'a str,
    started: Instant,
    done: bool,
}

impl Drop for AttemptRecord<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics
                .attempt(self.backend, "cancelled", None, self.started.elapsed());
        }
    }
}

/// One attempt on `pool[index]`, reporting its outcome to the backend's
/// health state. `req` is the attempt's own copy: a hedge prepares the next
/// one while this one runs.
pub(crate) async fn attempt<C: Call>(
    env: Env<'_, C>,
    index: usize,
    slot: InFlight,
    req: UpstreamRequest,
) -> Outcome {
    let member = &env.route.pool[index];
    // Counts the attempt even when it is cancelled (the deadline, a hedge
    // that lost, a client that left) before it ends.
    let mut record = AttemptRecord {
        metrics: env.metrics,
        backend: &member.backend.name,
        started: slot.started(),
        done: false,
    };
    // The attempt's one timer: it bounds the whole call (credentials,
    // the send, a stream's first event, an error body) and is at most what
    // is left of the request's deadline.
    let result = match tokio::time::timeout(req.timeout, env.call.call(index, &req)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::timed_out(&member.backend.name, req.stream)),
    };
    let now = Instant::now();
    let (label, status) = match &result {
        Ok(r) => ("success", Some(r.status.as_u16())),
        Err(f) => (f.kind.as_str(), f.status),
    };
    record.done = true;
    let took = now.saturating_duration_since(slot.started());
    match (&member.series, &result) {
        (Some(series), Ok(r)) if r.status.is_success() => series.attempt_succeeded(took),
        _ => env
            .metrics
            .attempt(&member.backend.name, label, status, took),
    }
    let obs = match &result {
        Ok(_) => Observation::Success(took),
        Err(f) => observation(f),
    };
    if slot.finish(obs, now) {
        env.metrics.ejection(&member.backend.name);
    }
    (index, result)
}

/// Sets the attempt's timeout and, for a cold HF endpoint, how long it may
/// hold the request while it scales up. `last` is the failure before this
/// attempt, if any.
pub(crate) fn prepare(
    req: &mut UpstreamRequest,
    route: &Route,
    index: usize,
    left: Duration,
    last: Option<&(usize, Failure)>,
) {
    let member = &route.pool[index];
    let mut timeout = left;
    if let Some(t) = route.per_try_timeout {
        timeout = timeout.min(t);
    }
    if let Some(t) = member.backend.timeout {
        timeout = timeout.min(t);
    }
    if req.stream {
        timeout = timeout.min(route.stream.first_byte_timeout);
    }
    let cold = matches!(
        member.state.availability(Instant::now()),
        Availability::Cold
    ) || last.is_some_and(|(i, f)| *i == index && f.cold);
    // Waiting for a replica may take all that is left of the deadline.
    req.scale_up_timeout = cold.then_some(left);
    req.timeout = if cold { left } else { timeout };
    req.total = left;
}
