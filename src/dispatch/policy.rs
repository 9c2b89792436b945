//! The retry policy: after a failed attempt, whether to try again, where,
//! after how long, and when not, what the client gets.
//!
//! [`RetryPolicy::decide`] is the one place that weighs a [`Failure`]
//! against the request's [`AttemptState`]: the attempts left, the backends
//! tried, each backend's `Retry-After`, the deadline and the route's retry
//! budget. It is kept apart from the transport (it never sends anything) and
//! from the clock (it is told `now`), as tower's and linkerd's retry
//! policies are, so every rule can be tested exactly. The balancer's choice
//! and the backoff's jitter come through [`Next`], the one seam to the
//! route's mutable state besides the budget.

use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Failure, FailureKind};
use crate::config::BackoffConfig;
use crate::route::budget::RetryBudget;

/// Backoff between attempts on the same backend, and the decision to retry.
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

/// What the policy reads of one request's attempts after one of them failed.
#[derive(Debug, Clone, Copy)]
pub struct AttemptState<'a> {
    /// The backend (pool index) of the attempt that just failed.
    pub failed_on: usize,
    /// Attempts made so far, hedges included.
    pub attempts: u32,
    /// Attempts the route allows, the first included (at least 1).
    pub max_attempts: u32,
    /// Backends tried so far, in order.
    pub tried: &'a [usize],
    /// Per backend, when its `Retry-After` lets it be tried again.
    pub not_before: &'a [Option<Instant>],
    /// A failure only another backend could mend happened: only untried
    /// backends may take the next attempt.
    pub untried_only: bool,
    pub deadline: Instant,
    pub budget: &'a RetryBudget,
}

/// Where the next attempt could go, and the randomness of its backoff.
pub trait Next {
    /// The backend the balancer offers for another attempt (untried ones
    /// only when `untried_only`), or `None` when none can take it.
    fn pick(&mut self, tried: &[usize], untried_only: bool, now: Instant) -> Option<usize>;
    /// A uniform draw in `[0, 1)` for the backoff's jitter.
    fn random(&mut self) -> f64;
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try the same backend again after `wait`.
    Retry { index: usize, wait: Duration },
    /// Try another backend after `wait` (its own `Retry-After`, if any).
    FailOver {
        from: usize,
        to: usize,
        wait: Duration,
    },
    /// No more attempts.
    Stop { why: Stop, reply: Reply },
}

/// Why no more attempts are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The failure is the answer wherever it is sent (a model's rejection
    /// of the input).
    Final,
    /// The route's attempts are spent.
    Exhausted,
    /// No backend the request may use can take another attempt.
    NoBackend,
    /// The wait before the next attempt would outlive the deadline.
    PastDeadline,
    /// The route's retry budget refused the retry.
    Budget,
}

/// What the client gets when the attempts stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The last failure, with its status and `Retry-After`.
    Failure,
    /// A 504: the last attempt timed out having used the whole deadline,
    /// which is the deadline's doing, not the backend's.
    Deadline,
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

    /// Decides what follows `failure`, the outcome of the attempt on
    /// `state.failed_on`. Asks `next` for a backend only when the failure
    /// and the attempts left allow another attempt; withdraws a retry from
    /// the budget only when it is about to be made.
    pub fn decide(
        &self,
        failure: &Failure,
        state: &AttemptState<'_>,
        next: &mut impl Next,
        now: Instant,
    ) -> Decision {
        let stop = |why| Decision::Stop {
            why,
            reply: if failure.kind == FailureKind::Timeout && now >= state.deadline {
                Reply::Deadline
            } else {
                Reply::Failure
            },
        };
        if !failure.retryable && !failure.may_fail_over() {
            return stop(Stop::Final);
        }
        if state.attempts >= state.max_attempts {
            return stop(Stop::Exhausted);
        }
        let Some(index) = next.pick(state.tried, state.untried_only, now) else {
            return stop(Stop::NoBackend);
        };
        let same = index == state.failed_on;
        // Only a retry on the same backend backs off: another backend has
        // not been asked yet. The attempt count is the retry number.
        let mut wait = if same {
            self.backoff(state.attempts, next.random())
        } else {
            Duration::ZERO
        };
        // The backend's own `Retry-After` wins over the backoff.
        if let Some(at) = state.not_before.get(index).copied().flatten() {
            wait = at.saturating_duration_since(now);
        }
        if !wait.is_zero() && wait >= state.deadline.saturating_duration_since(now) {
            // Answer now, with the backend's own error and `Retry-After`,
            // rather than wait for a 504. No retry is made, none is paid.
            return stop(Stop::PastDeadline);
        }
        if !state.budget.withdraw(now) {
            return stop(Stop::Budget);
        }
        if same {
            Decision::Retry { index, wait }
        } else {
            Decision::FailOver {
                from: state.failed_on,
                to: index,
                wait,
            }
        }
    }
}
