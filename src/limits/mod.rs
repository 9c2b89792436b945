//! How much a caller may spend: requests per second (GCRA, the governor
//! crate) per client and per route, and requests in flight per client.
//!
//! A door asks [`Limits::admit`] once it knows the client and the route and
//! before it reads the body, so a refused request costs no upload and no
//! upstream call, and a request refused for its key (401) or its route
//! (403) never reaches here and is never counted. The client's bucket is
//! taken first, then the route's: a request the route refuses has spent
//! its client's token (GCRA cannot give one back), which errs on the side
//! of the route. What is held in flight is let go when the answer's body
//! ends.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::{Config, RateLimit};

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

/// Which limit refused a request: the `limit` label of
/// `infergate_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ClientRate,
    ClientInFlight,
    RouteRate,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::ClientRate, Scope::ClientInFlight, Scope::RouteRate];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ClientRate => "client_rate",
            Scope::ClientInFlight => "client_in_flight",
            Scope::RouteRate => "route_rate",
        }
    }
}

/// A request over a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub scope: Scope,
    /// The most the limit allows: the burst, or the requests in flight.
    pub limit: u32,
    /// When a request would be allowed again (for `Retry-After`).
    pub retry_after: Duration,
}

/// A client's requests in flight, and its most.
#[derive(Debug)]
struct InFlightLimit {
    now: Arc<AtomicUsize>,
    max: usize,
}

#[derive(Debug, Default)]
struct ClientLimits {
    rate: Option<Limiter>,
    in_flight: Option<InFlightLimit>,
}

/// A request's place among its client's requests in flight, let go on drop.
#[derive(Debug, Default)]
pub struct Held(Option<Arc<AtomicUsize>>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Every configured limit.
#[derive(Debug, Default)]
pub struct Limits {
    clients: HashMap<String, ClientLimits>,
    routes: HashMap<String, Limiter>,
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        let clients = config
            .clients
            .iter()
            .filter(|c| c.rate_limit.is_some() || c.max_in_flight.is_some())
            .map(|c| {
                let limits = ClientLimits {
                    rate: c.rate_limit.map(Limiter::new),
                    in_flight: c.max_in_flight.map(|max| InFlightLimit {
                        now: Arc::default(),
                        max,
                    }),
                };
                (c.name.clone(), limits)
            })
            .collect();
        let routes = config
            .routes
            .iter()
            .filter_map(|r| Some((r.name.clone(), Limiter::new(r.rate_limit?))))
            .collect();
        Self { clients, routes }
    }

    /// Admits one request of `client` (if known) to `route`, or says which
    /// limit it is over.
    pub fn admit(&self, client: Option<&str>, route: &str) -> Result<Held, Refusal> {
        let mut held = Held::default();
        if let Some(limits) = client.and_then(|c| self.clients.get(c)) {
            if let Some(f) = &limits.in_flight {
                if f.now.fetch_add(1, Ordering::AcqRel) >= f.max {
                    f.now.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refusal {
                        scope: Scope::ClientInFlight,
                        limit: u32::try_from(f.max).unwrap_or(u32::MAX),
                        // Nothing says when one ends: try again shortly.
                        retry_after: Duration::from_secs(1),
                    });
                }
                held = Held(Some(Arc::clone(&f.now)));
            }
            if let Some(rate) = &limits.rate {
                rate.check()
                    .map_err(|wait| refusal(Scope::ClientRate, rate, wait))?;
            }
        }
        if let Some(rate) = self.routes.get(route) {
            rate.check()
                .map_err(|wait| refusal(Scope::RouteRate, rate, wait))?;
        }
        Ok(held)
    }
}

fn refusal(scope: Scope, rate: &Limiter, wait: Duration) -> Refusal {
    Refusal {
        scope,
        limit: rate.limit().burst,
        retry_after: wait,
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
    fn in_flight_is_held_until_dropped_and_a_refusal_holds_nothing() {
        let mut config = crate::config::Config::from_toml(
            "[backends.b]\nkind = \"huggingface\"\nurl = \"http://127.0.0.1:1/\"\n[routes.r]\nbackends = [\"b\"]\n[clients.c]\napi_key = \"k\"\nmax_in_flight = 2\n",
            &|_| None,
        )
        .unwrap();
        config.routes[0].rate_limit = Some(RateLimit {
            per_second: 1.0,
            burst: 2,
        });
        let limits = Limits::new(&config);
        let one = limits.admit(Some("c"), "r").unwrap();
        let two = limits.admit(Some("c"), "r").unwrap();
        let over = limits.admit(Some("c"), "r").unwrap_err();
        assert_eq!(over.scope, Scope::ClientInFlight);
        assert_eq!(over.limit, 2);
        drop((one, two));
        // In flight again, but the route's bucket of 2 is spent.
        let route = limits.admit(Some("c"), "r").unwrap_err();
        assert_eq!(route.scope, Scope::RouteRate);
        // The refused request let its place go: two fit again.
        assert_eq!(
            limits.clients["c"]
                .in_flight
                .as_ref()
                .unwrap()
                .now
                .load(Ordering::Acquire),
            0
        );
        // A client with no limits of its own, and an anonymous caller.
        assert!(limits.admit(None, "other").is_ok());
    }
}
