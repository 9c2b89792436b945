//! The memory store: the GCRA buckets of this process. Requests per
//! second are the governor crate's [`Limiter`]; tokens per minute are a
//! [`Debt`], a GCRA of its own, because tokens are charged after the answer
//! whatever the bucket holds (an admitted stream is never cut), which
//! governor's buckets, that only ever take what they have, cannot record.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Tokens per minute: a GCRA bucket of a minute's tokens that may go into
/// debt. A request is admitted while the bucket is not in debt beyond its
/// burst; what it spent is charged afterwards, and the next requests wait
/// until that has refilled.
#[derive(Debug)]
pub struct Debt {
    epoch: Instant,
    /// The theoretical arrival time, in nanoseconds after `epoch`.
    tat: AtomicU64,
    /// Nanoseconds of refill per token.
    interval: f64,
    burst: u32,
}

impl Debt {
    /// A full bucket of `per_minute` tokens that refills in a minute.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        Self {
            epoch: Instant::now(),
            tat: AtomicU64::new(0),
            interval: 60e9 / f64::from(per_minute),
            burst: per_minute,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a request may start: the tokens left, or how long until the
    /// debt is paid off.
    pub fn check(&self) -> Result<u32, Duration> {
        let now = self.now() as f64;
        let tat = (self.tat.load(Ordering::Acquire) as f64).max(now);
        let allow_at = tat - f64::from(self.burst) * self.interval;
        if allow_at > now {
            return Err(Duration::from_nanos((allow_at - now).ceil() as u64));
        }
        Ok(((now - allow_at) / self.interval)
            .floor()
            .min(f64::from(self.burst)) as u32)
    }

    /// Charges `tokens`, into debt if need be.
    pub fn charge(&self, tokens: u64) {
        let cost = (tokens as f64 * self.interval) as u64;
        let now = self.now();
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.max(now).saturating_add(cost))
            });
    }

    pub fn burst(&self) -> u32 {
        self.burst
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

    #[test]
    fn a_token_bucket_admits_until_in_debt_and_waits_out_the_refill() {
        // 600 a minute: one token refills every 100 ms.
        let d = Debt::new(600);
        assert_eq!(d.check(), Ok(600));
        d.charge(500);
        assert!(matches!(d.check(), Ok(99 | 100)));
        // 300 more: 200 beyond the bucket, 20 s of refill.
        d.charge(300);
        let wait = d.check().unwrap_err();
        assert!(
            wait > Duration::from_millis(19_900) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
    }
}
