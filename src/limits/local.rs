//! The memory store: one GCRA bucket of this process, the governor crate's.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::RateLimit;

type Gcra = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One GCRA bucket.
pub struct Limiter {
    gcra: Gcra,
    clock: DefaultClock,
    limit: RateLimit,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit)
            .finish()
    }
}

impl Limiter {
    /// A full bucket of `limit.burst` that refills at `limit.per_second`.
    pub fn new(limit: RateLimit) -> Self {
        let period = Duration::from_secs_f64(1.0 / limit.per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        // `with_period` refuses only a zero period, which the `max` above
        // rules out.
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        let clock = DefaultClock::default();
        let gcra = RateLimiter::direct_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Self { gcra, clock, limit }
    }

    /// Takes one request: the requests left in the burst, or how long until
    /// one is allowed.
    pub fn check(&self) -> Result<u32, Duration> {
        match self.gcra.check() {
            Ok(state) => Ok(state.remaining_burst_capacity()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_refuses_until_it_refills() {
        let l = Limiter::new(RateLimit {
            per_second: 10.0,
            burst: 3,
        });
        assert_eq!(l.check(), Ok(2));
        assert_eq!(l.check(), Ok(1));
        assert_eq!(l.check(), Ok(0));
        let wait = l.check().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        std::thread::sleep(wait + Duration::from_millis(5));
        assert!(l.check().is_ok());
    }
}
