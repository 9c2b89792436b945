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
//! What is retried is the backend's call (`Failure::retryable`); whether,
//! where and when is [`RetryPolicy::decide`] (`policy.rs`), kept apart from
//! the transport. This file runs the loop and keeps its state in one
//! `Attempts`; `attempt.rs` makes one attempt through the `Call` seam (the
//! backends, or a test's script), `hedge.rs` hedges it, `pick.rs` and
//! `session.rs` choose where it goes.
//! Attempts are futures of the request's own task: when the client goes
//! away, dropping the request cancels every attempt, and nothing is left
//! running.

mod attempt;
mod hedge;
mod pick;
mod policy;
mod session;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Backend, Failure, UpstreamRequest, UpstreamResponse};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::route::balancer::Pick;
use crate::route::health::InFlight;
use crate::route::Route;
use attempt::{attempt, prepare, Call, Env, Outcome, Upstream};
use pick::Picker;
pub use policy::{AttemptState, Decision, Next, Reply, RetryPolicy, Stop};
use session::{remember_session, Eligible};

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
    /// What the route's response cache did, when it has one (set by the
    /// core, [`crate::cache`]).
    pub cache: Option<crate::cache::CacheOutcome>,
}

/// What the dispatcher needs from the gateway.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub client: &'a crate::upstream::Client,
    pub metrics: &'a Metrics,
}

/// Runs the attempts of one request against `route`, within `deadline`.
pub async fn dispatch(
    ctx: Context<'_>,
    route: &Route,
    req: UpstreamRequest,
    deadline: Instant,
) -> Dispatched {
    let call = Upstream {
        client: ctx.client,
        route,
    };
    let env = Env {
        metrics: ctx.metrics,
        route,
        call: &call,
    };
    run(env, req, deadline, fastrand::Rng::new()).await
}

/// [`dispatch`] with the calls and the random source given: the gateway's
/// backends and a fresh generator, or a test's script and a seed.
pub(crate) async fn run<C: Call>(
    env: Env<'_, C>,
    req: UpstreamRequest,
    deadline: Instant,
    rng: fastrand::Rng,
) -> Dispatched {
    let route = env.route;
    route.budget.deposit(Instant::now());
    let mut picker = Picker::new(route, Eligible::for_request(route, &req), rng);
    let mut attempts = Attempts::new(route, &req, deadline);
    let end = attempts.run(env, &mut picker, req).await;
    attempts.finish(end)
}

/// How the attempts ended.
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and taken apart at once"
)]
enum End {
    Answered(usize, UpstreamResponse),
    /// The policy made no more attempts after the last failure.
    Stopped(Reply),
    /// The gateway's own answer, and the backend it concerns.
    Error(ApiError, Option<usize>),
}

/// The state of one request's attempts.
struct Attempts<'r> {
    route: &'r Route,
    deadline: Instant,
    /// The request's whole time (the client may have shortened it), for the
    /// 504's message.
    allowed_time: Duration,
    /// Backends tried, in order, hedges included.
    tried: Vec<usize>,
    /// When each backend may be tried again, from its `Retry-After`: empty
    /// (no allocation) until a backend sends one.
    not_before: Vec<Option<Instant>>,
    /// After a failure only another backend can mend, only untried ones.
    untried_only: bool,
    attempts: u32,
    upstream_time: Duration,
    waited: Duration,
    last: Option<(usize, Failure)>,
}

impl<'r> Attempts<'r> {
    fn new(route: &'r Route, req: &UpstreamRequest, deadline: Instant) -> Self {
        Self {
            route,
            deadline,
            allowed_time: req.total,
            tried: Vec::with_capacity(route.attempts as usize),
            not_before: Vec::new(),
            untried_only: false,
            attempts: 0,
            upstream_time: Duration::ZERO,
            waited: Duration::ZERO,
            last: None,
        }
    }

    /// Makes attempts until one answers or the policy stops.
    async fn run<C: Call>(
        &mut self,
        env: Env<'_, C>,
        picker: &mut Picker<'_>,
        mut req: UpstreamRequest,
    ) -> End {
        let route = self.route;
        let policy = RetryPolicy::from(route.backoff);
        // Only the first pick answers for itself (503 shed or no backend);
        // after a failure, the policy stops with that failure instead.
        let (mut index, mut slot) = match picker.choose(&self.tried, false, Instant::now()) {
            Pick::Chosen { index, slot } => (index, slot),
            Pick::Shed => {
                env.metrics.shed(&route.name);
                return End::Error(ApiError::Overloaded, None);
            }
            Pick::Empty => return End::Error(ApiError::NoBackend, None),
        };
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return End::Error(ApiError::Deadline(self.allowed_time), Some(index));
            }
            let failed_on = match self.send(env, picker, &mut req, index, slot, left).await {
                Some((i, Ok(response))) => {
                    remember_session(route, i, &response);
                    return End::Answered(i, response);
                }
                Some((i, Err(failure))) => {
                    self.failed(i, failure);
                    i
                }
                None => {
                    // The deadline cut the attempt: for the backend's
                    // health, a timeout like any other (a backend that
                    // always hangs must still be ejected).
                    if route.pool[index].state.record_timeout(Instant::now()) {
                        env.metrics.ejection(&route.pool[index].backend.name);
                    }
                    return End::Error(ApiError::Deadline(self.allowed_time), Some(index));
                }
            };
            match self.after_failure(env, &policy, picker, failed_on).await {
                Ok(next) => (index, slot) = next,
                Err(reply) => return End::Stopped(reply),
            }
        }
    }

    /// Makes one attempt on `index` (hedged when the route says so) within
    /// `left`; `None` when the deadline cut it.
    async fn send<C: Call>(
        &mut self,
        env: Env<'_, C>,
        picker: &mut Picker<'_>,
        req: &mut UpstreamRequest,
        index: usize,
        slot: InFlight,
        left: Duration,
    ) -> Option<Outcome> {
        prepare(req, self.route, index, left, self.last.as_ref());
        self.attempts += 1;
        self.tried.push(index);
        let phase = Instant::now();
        let first = attempt(env, index, slot, req.clone());
        let outcome = match self.route.hedge_after.filter(|h| *h < left) {
            // The attempt's own timer is at most `left`: no second one.
            None => Some(first.await),
            Some(after) => {
                // Boxed: a hedge holds two attempts, and inline it would
                // make every request's future (hedged or not) that big.
                let hedged = crate::boxed::boxed(|| {
                    hedge::hedge(
                        env,
                        picker,
                        req,
                        &mut self.tried,
                        first,
                        after,
                        self.deadline,
                    )
                });
                tokio::time::timeout(left, hedged)
                    .await
                    .ok()
                    .map(|(outcome, extra)| {
                        self.attempts += extra;
                        outcome
                    })
            }
        };
        self.upstream_time += phase.elapsed();
        outcome
    }

    /// Records the failure of an attempt on `index`.
    fn failed(&mut self, index: usize, failure: Failure) {
        tracing::debug!(
            route = %self.route.name,
            backend = %self.route.pool[index].backend.name,
            kind = failure.kind.as_str(),
            status = failure.status,
            retryable = failure.retryable,
            "attempt failed"
        );
        if let Some(after) = failure.retry_after {
            if self.not_before.is_empty() {
                self.not_before = vec![None; self.route.pool.len()];
            }
            self.not_before[index] = Some(Instant::now() + after);
        }
        if !failure.retryable && failure.may_fail_over() {
            self.untried_only = true;
        }
        self.last = Some((index, failure));
    }

    /// Asks the policy what follows the failure on `failed_on`; when it is
    /// another attempt, counts it and waits for it. Returns the next
    /// attempt's backend and slot, or what the client gets.
    async fn after_failure<C: Call>(
        &mut self,
        env: Env<'_, C>,
        policy: &RetryPolicy,
        picker: &mut Picker<'_>,
        failed_on: usize,
    ) -> Result<(usize, InFlight), Reply> {
        let Some((_, failure)) = &self.last else {
            return Err(Reply::Failure);
        };
        let state = AttemptState {
            failed_on,
            attempts: self.attempts,
            max_attempts: self.route.attempts.max(1),
            tried: &self.tried,
            not_before: &self.not_before,
            untried_only: self.untried_only,
            deadline: self.deadline,
            budget: &self.route.budget,
        };
        let route = self.route;
        let (index, wait) = match policy.decide(failure, &state, picker, Instant::now()) {
            Decision::Retry { index, wait } => (index, wait),
            Decision::FailOver { from, to, wait } => {
                env.metrics.failover(
                    &route.name,
                    &route.pool[from].backend.name,
                    &route.pool[to].backend.name,
                );
                (to, wait)
            }
            Decision::Stop { why, reply } => {
                if why == Stop::Budget {
                    env.metrics.retry_budget_exhausted(&route.name);
                }
                // The backend picked for a retry not made gets its slot back.
                drop(picker.take_slot());
                return Err(reply);
            }
        };
        env.metrics.retry(&route.name, failure.kind.as_str());
        // The pick that chose `index` holds its slot.
        let slot = picker.take_slot().ok_or(Reply::Failure)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            self.waited += wait;
        }
        Ok((index, slot))
    }

    /// The one way out: what the client gets, and what it cost.
    fn finish(self, end: End) -> Dispatched {
        let (result, index) = match end {
            End::Answered(index, response) => (Ok(response), Some(index)),
            End::Error(error, index) => (Err(error), index),
            End::Stopped(reply) => match self.last {
                Some((index, failure)) => match reply {
                    Reply::Failure => (Err(ApiError::Upstream(failure)), Some(index)),
                    Reply::Deadline => (Err(ApiError::Deadline(self.allowed_time)), Some(index)),
                },
                None => (Err(ApiError::NoBackend), None),
            },
        };
        Dispatched {
            result,
            backend: index.map(|i| Arc::clone(&self.route.pool[i].backend)),
            attempts: self.attempts,
            upstream_time: self.upstream_time,
            waited: self.waited,
            cache: None,
        }
    }
}
