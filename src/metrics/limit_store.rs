//! The Redis rate-limit store's own series ([`crate::limits`]): its
//! failures, and how its decisions met the requests (waited for, or taken
//! after the request went ahead on `rate_limits.headroom`). Process-wide:
//! one store serves every route.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// `infergate_ratelimit_store_errors_total{operation}` and
/// `infergate_ratelimit_decisions_total{path}`.
#[derive(Clone)]
pub struct LimitStoreSeries {
    /// By operation: decide, charge, refund.
    pub errors: IntCounterVec,
    /// Requests that waited for Redis's decision.
    pub waited: IntCounter,
    /// Requests that went ahead, Redis taking their cost just after.
    pub ahead: IntCounter,
}

impl std::fmt::Debug for LimitStoreSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LimitStoreSeries")
    }
}

impl LimitStoreSeries {
    pub(super) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let errors = IntCounterVec::new(
            Opts::new(
                "infergate_ratelimit_store_errors_total",
                "Rate limit store (Redis) operations that failed or were skipped while it was down, by operation: decide (rate_limits.on_store_error decided the request, or a request that went ahead was not charged), charge (tokens not charged), refund (an admission not given back).",
            ),
            &["operation"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "infergate_ratelimit_decisions_total",
                "Requests the rate limit store (Redis) decided, by path: waited (the request waited for Redis's answer) or ahead (Redis's last answer left rate_limits.headroom in every bucket, so the request went on at once and Redis took its cost just after).",
            ),
            &["path"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        Ok(Self {
            errors,
            waited: decisions.with_label_values(&["waited"]),
            ahead: decisions.with_label_values(&["ahead"]),
        })
    }

    /// Series of their own, in no registry (unit tests).
    #[cfg(test)]
    pub(crate) fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("fresh registry")
    }
}
