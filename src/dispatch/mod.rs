//! Dispatch: the deadline, the attempts and the retries of one request.
//!
//! Given a route and a prepared request, try backends until one answers, the
//! failure is one that trying again cannot mend, the attempts or the retry
//! budget run out, or the deadline passes:
//!
//! - each attempt's backend comes from the route's balancer, which prefers
//!   backends not yet tried, so a retry fails over (SageMaker throttled → HF,
//!   HF cold → SageMaker);
//! - a retry on the same backend waits a capped, fully jittered exponential
//!   backoff, or the backend's `Retry-After` when that fits in the time left
//!   (when it does not, the client gets the error and its `Retry-After` at
//!   once);
//! - every retry is paid from the route's [`crate::route::budget::RetryBudget`];
//! - a request to a cold HF endpoint carries `X-Scale-Up-Timeout` up to the
//!   remaining deadline, so the endpoint holds it while it wakes;
//! - with `hedge_after`, a second attempt goes to another backend when the
//!   first is slow; the first answer wins and the other is cancelled;
//! - a request in a SageMaker session goes to the backend that opened it.
//!
//! What is retried is the backend's call ([`Failure::retryable`]); the timing
//! is [`RetryPolicy`], kept apart from the transport. Attempts are futures of
//! the request's own task: when the client goes away, dropping the request
//! cancels every attempt, and nothing is left running.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::{select, Either};
use http::HeaderValue;
use tokio::time::Instant;

use crate::backend::{Backend, BackendKind, Failure, UpstreamRequest, UpstreamResponse};
use crate::config::BackoffConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::route::balancer::{self, Pick};
use crate::route::health::{InFlight, Observation};
use crate::route::sticky::NEW_SESSION;
use crate::route::Route;

/// Backoff between attempts on the same backend.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        BackoffConfig::default().into()
    }
}

impl From<BackoffConfig> for RetryPolicy {
    fn from(c: BackoffConfig) -> Self {
        Self {
            base: c.base,
            cap: c.max,
        }
    }
}

impl RetryPolicy {
    /// Full-jitter backoff before retry number `retry` (1 for the first
    /// retry): uniform in `[0, min(cap, base · 2^(retry-1))]`. `random` is in
    /// `[0, 1)`.
    pub fn backoff(&self, retry: u32, random: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        exp.min(self.cap).mul_f64(random.clamp(0.0, 1.0))
    }
}

/// How one request ended.
#[derive(Debug)]
pub struct Dispatched {
    /// The answer, or the error the client gets.
    pub result: Result<UpstreamResponse, ApiError>,
    /// The backend of the answer, or of the last attempt.
    pub backend: Option<Arc<Backend>>,
    /// Attempts made, hedges included.
    pub attempts: u32,
    /// Time spent waiting on backends.
    pub upstream_time: Duration,
    /// Time spent in backoff and `Retry-After` waits: neither the backends'
    /// nor the gateway's own work.
    pub waited: Duration,
}

/// What the dispatcher needs from the gateway.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub client: &'a reqwest::Client,
    pub metrics: &'a Metrics,
}

/// The health observation an attempt's failure makes.
fn observation(f: &Failure) -> Observation {
    use crate::backend::FailureKind as K;
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
/// health state.
async fn attempt(
    ctx: Context<'_>,
    route: &Route,
    index: usize,
    slot: InFlight,
    req: UpstreamRequest,
) -> (usize, Result<UpstreamResponse, Failure>) {
    let member = &route.pool[index];
    // Counts the attempt even when it is cancelled (the deadline, a hedge
    // that lost, a client that left) before it ends.
    let mut record = AttemptRecord {
        metrics: ctx.metrics,
        backend: &member.backend.name,
        started: slot.started(),
        done: false,
    };
    let result = member.backend.call(ctx.client, &req).await;
    let now = Instant::now();
    let (label, status) = match &result {
        Ok(r) => ("success", Some(r.status.as_u16())),
        Err(f) => (f.kind.as_str(), f.status),
    };
    record.done = true;
    ctx.metrics.attempt(
        &member.backend.name,
        label,
        status,
        now.saturating_duration_since(slot.started()),
    );
    let obs = match &result {
        Ok(_) => Observation::Success(now.saturating_duration_since(slot.started())),
        Err(f) => observation(f),
    };
    if slot.finish(obs, now) {
        ctx.metrics.ejection(&member.backend.name);
    }
    (index, result)
}

/// Runs the attempts of one request against `route`, within `deadline`.
pub async fn dispatch(
    ctx: Context<'_>,
    route: &Route,
    mut req: UpstreamRequest,
    deadline: Instant,
) -> Dispatched {
    let started = Instant::now();
    // The request's whole time (the client may have shortened it), for the
    // 504's message.
    let allowed_time = req.total;
    route.budget.deposit(started);
    let mut rng = fastrand::Rng::new();

    // Sessions: a known session goes where it was opened; a new one to a
    // SageMaker backend, the only kind that has sessions.
    let session = req
        .sagemaker_headers
        .iter()
        .find(|(n, _)| n == "x-amzn-sagemaker-session-id")
        .and_then(|(_, v)| v.to_str().ok())
        .map(str::to_string);
    let has_sagemaker = route
        .pool
        .iter()
        .any(|m| matches!(m.backend.kind, BackendKind::SageMaker(_)));
    let pinned = match (&session, &route.sessions) {
        (Some(id), Some(table)) if id != NEW_SESSION => table.lookup(id, SystemTime::now()),
        _ => None,
    };
    let new_session = session.as_deref() == Some(NEW_SESSION) && has_sagemaker;
    let streaming = req.stream;
    let eligible = |i: usize| {
        let backend = &route.pool[i].backend;
        (!streaming || backend.can_stream())
            && match pinned {
                Some(p) => i == p,
                None => !new_session || matches!(backend.kind, BackendKind::SageMaker(_)),
            }
    };

    let mut tried: Vec<usize> = Vec::with_capacity(route.attempts as usize);
    // When each backend may be tried again, from its `Retry-After`.
    let mut not_before: Vec<Option<Instant>> = vec![None; route.pool.len()];
    // After a failure only another backend can mend, only untried ones.
    let mut untried_only = false;
    let mut attempts = 0u32;
    let mut upstream_time = Duration::ZERO;
    let mut last: Option<(usize, Failure)> = None;
    let mut waited = Duration::ZERO;
    let end = |result, index: Option<usize>, attempts, upstream_time, waited| Dispatched {
        result,
        backend: index.map(|i: usize| Arc::clone(&route.pool[i].backend)),
        attempts,
        upstream_time,
        waited,
    };

    while attempts < route.attempts.max(1) {
        let now = Instant::now();
        let allowed = |i: usize| eligible(i) && !(untried_only && tried.contains(&i));
        let (index, slot) =
            match balancer::pick(route.balance, &route.pool, &tried, &allowed, now, &mut rng) {
                Pick::Chosen { index, slot } => (index, slot),
                Pick::Shed if last.is_none() => {
                    ctx.metrics.shed(&route.name);
                    return end(
                        Err(ApiError::Overloaded),
                        None,
                        attempts,
                        upstream_time,
                        waited,
                    );
                }
                Pick::Empty if last.is_none() => {
                    return end(
                        Err(ApiError::NoBackend),
                        None,
                        attempts,
                        upstream_time,
                        waited,
                    );
                }
                Pick::Shed | Pick::Empty => break,
            };
        if let Some((prev, failure)) = &last {
            let now = Instant::now();
            let mut wait = if *prev == index {
                RetryPolicy::from(route.backoff).backoff(attempts, rng.f64())
            } else {
                Duration::ZERO
            };
            // The backend's own `Retry-After` wins over the backoff.
            if let Some(at) = not_before[index] {
                wait = at.saturating_duration_since(now);
            }
            if wait >= deadline.saturating_duration_since(now) && !wait.is_zero() {
                // Waiting would outlive the deadline: answer now, with the
                // backend's own error and Retry-After. No retry was made.
                break;
            }
            if !route.budget.withdraw(now) {
                ctx.metrics.retry_budget_exhausted(&route.name);
                break;
            }
            ctx.metrics.retry(&route.name, failure.kind.as_str());
            if *prev != index {
                ctx.metrics.failover(
                    &route.name,
                    &route.pool[*prev].backend.name,
                    &route.pool[index].backend.name,
                );
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                waited += wait;
            }
        }

        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return end(
                Err(ApiError::Deadline(allowed_time)),
                Some(index),
                attempts,
                upstream_time,
                waited,
            );
        }
        prepare(&mut req, route, index, left, last.as_ref());
        attempts += 1;
        tried.push(index);
        let phase = Instant::now();
        let first = attempt(ctx, route, index, slot, req.clone());
        let outcome = match route.hedge_after.filter(|h| *h < left) {
            None => tokio::time::timeout(left, first).await,
            Some(after) => {
                let hedged = hedge(
                    ctx, route, &mut req, first, after, deadline, &mut tried, &eligible, &mut rng,
                );
                match tokio::time::timeout(left, hedged).await {
                    Ok((outcome, extra)) => {
                        attempts += extra;
                        Ok(outcome)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        upstream_time += phase.elapsed();
        match outcome {
            Ok((index, Ok(response))) => {
                remember_session(route, index, &response);
                return end(Ok(response), Some(index), attempts, upstream_time, waited);
            }
            Ok((index, Err(failure))) => {
                tracing::debug!(
                    route = %route.name,
                    backend = %route.pool[index].backend.name,
                    kind = failure.kind.as_str(),
                    status = failure.status,
                    retryable = failure.retryable,
                    "attempt failed"
                );
                if let Some(after) = failure.retry_after {
                    not_before[index] = Some(Instant::now() + after);
                }
                let (retryable, fail_over) = (failure.retryable, failure.may_fail_over());
                last = Some((index, failure));
                if !retryable {
                    if !fail_over {
                        break;
                    }
                    untried_only = true;
                }
            }
            Err(_elapsed) => {
                // The deadline cut the attempt: for the backend's health,
                // a timeout like any other (a backend that always hangs
                // must still be ejected).
                if route.pool[index].state.record_timeout(Instant::now()) {
                    ctx.metrics.ejection(&route.pool[index].backend.name);
                }
                return end(
                    Err(ApiError::Deadline(allowed_time)),
                    Some(index),
                    attempts,
                    upstream_time,
                    waited,
                );
            }
        }
    }

    match last {
        Some((index, failure)) => {
            // An attempt timeout that used up the whole deadline is the
            // deadline's doing.
            let result = if failure.kind == crate::backend::FailureKind::Timeout
                && Instant::now() >= deadline
            {
                Err(ApiError::Deadline(allowed_time))
            } else {
                Err(ApiError::Upstream(failure))
            };
            end(result, Some(index), attempts, upstream_time, waited)
        }
        None => end(
            Err(ApiError::NoBackend),
            None,
            attempts,
            upstream_time,
            waited,
        ),
    }
}

/// Sets the attempt's timeout and, for a cold HF endpoint, how long it may
/// hold the request while it scales up.
fn prepare(
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
        crate::route::health::Availability::Cold
    ) || last.is_some_and(|(i, f)| *i == index && f.cold);
    // Waiting for a replica may take all that is left of the deadline.
    req.scale_up_timeout = cold.then_some(left);
    req.timeout = if cold { left } else { timeout };
    req.total = left;
}

/// Runs `first`; if it has not answered after `after`, sends a second
/// attempt to another backend (paid from the retry budget) and takes the
/// first success. Returns the outcome and the number of extra attempts.
#[allow(clippy::too_many_arguments)]
async fn hedge<F>(
    ctx: Context<'_>,
    route: &Route,
    req: &mut UpstreamRequest,
    first: F,
    after: Duration,
    deadline: Instant,
    tried: &mut Vec<usize>,
    eligible: &(dyn Fn(usize) -> bool + Sync),
    rng: &mut fastrand::Rng,
) -> ((usize, Result<UpstreamResponse, Failure>), u32)
where
    F: Future<Output = (usize, Result<UpstreamResponse, Failure>)>,
{
    let mut first = pin!(first);
    let timer = pin!(tokio::time::sleep(after));
    let first = match select(first.as_mut(), timer).await {
        Either::Left((outcome, _)) => return (outcome, 0),
        Either::Right(((), _)) => first,
    };
    let now = Instant::now();
    // The same rules as any attempt (sessions, streaming), on a backend not
    // yet tried.
    let untried = |i: usize| !tried.contains(&i) && eligible(i);
    let second = if route.budget.withdraw(now) {
        match balancer::pick(route.balance, &route.pool, tried, &untried, now, rng) {
            Pick::Chosen { index, slot } => Some((index, slot)),
            Pick::Shed | Pick::Empty => None,
        }
    } else {
        ctx.metrics.retry_budget_exhausted(&route.name);
        None
    };
    let Some((index, slot)) = second else {
        return (first.await, 0);
    };
    ctx.metrics.hedge(&route.name);
    tried.push(index);
    let left = deadline.saturating_duration_since(now);
    prepare(req, route, index, left, None);
    let second = pin!(attempt(ctx, route, index, slot, req.clone()));
    match select(first, second).await {
        Either::Left(((i, Ok(r)), _)) | Either::Right(((i, Ok(r)), _)) => ((i, Ok(r)), 1),
        // One failed: the other may still answer.
        Either::Left(((_, Err(_)), other)) => (other.await, 1),
        Either::Right(((_, Err(_)), other)) => (other.await, 1),
    }
}

/// Keeps the session table in step with the answer's session headers.
fn remember_session(route: &Route, index: usize, response: &UpstreamResponse) {
    let Some(table) = &route.sessions else {
        return;
    };
    let text = |name: &str| {
        response
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(opened) = text("x-amzn-sagemaker-new-session-id") {
        table.opened(opened, index, SystemTime::now());
    }
    if let Some(closed) = text("x-amzn-sagemaker-closed-session-id") {
        table.closed(closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_full_jitter() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
        };
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(350));
        assert_eq!(p.backoff(40, 1.0), Duration::from_millis(350));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(175));
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn property_backoff_stays_within_its_bounds() {
        let mut rng = fastrand::Rng::with_seed(99);
        for _ in 0..10_000 {
            let base = Duration::from_millis(rng.u64(1..500));
            let cap = base + Duration::from_millis(rng.u64(0..5000));
            let p = RetryPolicy { base, cap };
            let retry = rng.u32(0..64);
            let d = p.backoff(retry, rng.f64());
            assert!(d <= cap);
            let exp = base.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
            assert!(d <= exp);
        }
    }
}
