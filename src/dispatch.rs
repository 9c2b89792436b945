//! Dispatch: the deadline and the attempts of one request.
//!
//! Given a route and a prepared request, try backends until one answers,
//! the failure is one that trying again cannot mend, the attempts run out or
//! the deadline passes. A retry goes to a backend of the route not yet tried
//! when there is one (SageMaker throttled → HF, HF cold → SageMaker); on the
//! same backend it waits a capped, fully jittered exponential backoff, or the
//! backend's `Retry-After` when that fits in the time left. What is retried
//! is decided by the backend's classification ([`Failure::retryable`]); the
//! timing by [`RetryPolicy`], kept apart from the transport.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Backend, Failure, UpstreamRequest, UpstreamResponse};
use crate::error::ApiError;
use crate::route::Route;

/// Backoff between attempts on the same backend.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(25),
            cap: Duration::from_secs(1),
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
    /// The backend of the last attempt, if any was made.
    pub backend: Option<Arc<Backend>>,
    /// Attempts made.
    pub attempts: u32,
    /// Time spent waiting on backends (the rest is the gateway's own).
    pub upstream_time: Duration,
}

/// Runs the attempts of one request against `route`, within `deadline`.
pub async fn dispatch(
    client: &reqwest::Client,
    route: &Route,
    policy: &RetryPolicy,
    mut req: UpstreamRequest,
    deadline: Instant,
) -> Dispatched {
    let mut tried: Vec<usize> = Vec::with_capacity(route.attempts as usize);
    let mut attempts = 0u32;
    let mut upstream_time = Duration::ZERO;
    let mut last: Option<(Arc<Backend>, Failure)> = None;
    let timeout_error = || ApiError::Deadline(route.timeout);

    while attempts < route.attempts.max(1) {
        let Some(idx) = route.pick(&tried) else {
            return Dispatched {
                result: Err(ApiError::NoBackend),
                backend: None,
                attempts,
                upstream_time,
            };
        };
        let backend = Arc::clone(&route.pool[idx].backend);

        // A retry on the same backend waits; a failover does not.
        if let Some((prev, failure)) = &last {
            if Arc::ptr_eq(prev, &backend) {
                let wait = failure
                    .retry_after
                    .unwrap_or_else(|| policy.backoff(attempts, fastrand::f64()));
                let left = deadline.saturating_duration_since(Instant::now());
                if wait >= left {
                    // Waiting would outlive the deadline: answer now, with
                    // the backend's own error and Retry-After.
                    break;
                }
                tokio::time::sleep(wait).await;
            }
        }

        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Dispatched {
                result: Err(timeout_error()),
                backend: Some(backend),
                attempts,
                upstream_time,
            };
        }
        req.timeout = backend.timeout.map_or(left, |t| t.min(left));
        attempts += 1;
        let started = Instant::now();
        let outcome = tokio::time::timeout(left, backend.call(client, &req)).await;
        upstream_time += started.elapsed();
        match outcome {
            Ok(Ok(response)) => {
                return Dispatched {
                    result: Ok(response),
                    backend: Some(backend),
                    attempts,
                    upstream_time,
                }
            }
            Ok(Err(failure)) => {
                tracing::debug!(
                    backend = %backend.name,
                    kind = failure.kind.as_str(),
                    status = failure.status,
                    retryable = failure.retryable,
                    "attempt failed"
                );
                let retryable = failure.retryable;
                tried.push(idx);
                last = Some((backend, failure));
                if !retryable {
                    break;
                }
            }
            Err(_elapsed) => {
                return Dispatched {
                    result: Err(timeout_error()),
                    backend: Some(backend),
                    attempts,
                    upstream_time,
                }
            }
        }
    }

    match last {
        Some((backend, failure)) => {
            // A per-attempt timeout that used up the whole deadline is the
            // deadline's doing.
            let result = if failure.kind == crate::backend::FailureKind::Timeout
                && Instant::now() >= deadline
            {
                Err(timeout_error())
            } else {
                Err(ApiError::Upstream(failure))
            };
            Dispatched {
                result,
                backend: Some(backend),
                attempts,
                upstream_time,
            }
        }
        None => Dispatched {
            result: Err(ApiError::NoBackend),
            backend: None,
            attempts,
            upstream_time,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
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
}
