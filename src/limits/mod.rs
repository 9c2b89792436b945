//! How much a caller may spend: requests per second (GCRA) per client and
//! per route, and requests in flight per client.
//!
//! A door asks [`Limits::admit`] once it knows the client and the route and
//! before it reads the body, so a refused request costs no upload and no
//! upstream call, and a request refused for its key (401) or its route
//! (403) never reaches here and is never counted. The client's bucket is
//! taken first, then the route's: a request the route refuses has spent
//! its client's token (GCRA cannot give one back), which errs on the side
//! of the route. What is held in flight is let go when the answer's body
//! ends.
//!
//! Where the buckets live is `rate_limits.store`: in this process
//! ([`local`], the governor crate), or in Redis, shared by every gateway
//! that uses it ([`shared`]). With Redis, a bucket Redis called over is
//! refused here, with no call, until the time Redis gave; when Redis fails
//! or is late, `rate_limits.on_store_error` decides (allow, the default, or
//! deny with 503), each failure is counted in
//! `infergate_ratelimit_store_errors_total` and logged at most once a
//! second. Requests in flight are always counted in this process.

mod local;
mod shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, LimitStore, OnStoreError, RateLimit};
pub use local::Limiter;
pub use shared::{Ask, Decision, Shared, StoreError, GCRA};

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

/// Why [`Limits::admit`] said no.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// Over a limit: 429.
    Over(Refusal),
    /// The shared store failed and `on_store_error = "deny"`: 503.
    StoreDown,
}

/// The bucket that had the least left, for the `x-ratelimit-*` headers of
/// an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// The bucket's burst.
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// An admitted request: its place in flight, and how much is left.
#[derive(Debug, Default)]
pub struct Admitted {
    pub held: Held,
    pub rate: Option<RateState>,
}

/// One GCRA bucket: its local limiter (the memory store), its key (the
/// Redis store) and until when Redis last called it over.
struct Bucket {
    scope: Scope,
    local: Limiter,
    key: String,
    /// Nanoseconds after [`Limits`]' epoch; 0: not known to be over.
    over_until: AtomicU64,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("key", &self.key).finish()
    }
}

impl Bucket {
    fn new(scope: Scope, limit: RateLimit, key: String) -> Self {
        Self {
            scope,
            local: Limiter::new(limit),
            key,
            over_until: AtomicU64::new(0),
        }
    }

    fn limit(&self) -> RateLimit {
        self.local.limit()
    }

    fn refusal(&self, wait: Duration) -> Refused {
        Refused::Over(Refusal {
            scope: self.scope,
            limit: self.limit().burst,
            retry_after: wait,
        })
    }

    /// How long a full bucket of this limit takes to refill `units`.
    fn refill(&self, units: u32) -> Duration {
        Duration::from_secs_f64(f64::from(units) / self.limit().per_second)
    }

    fn state(&self, remaining: u32) -> RateState {
        let limit = self.limit().burst;
        RateState {
            limit,
            remaining,
            reset: self.refill(limit.saturating_sub(remaining)),
        }
    }
}

/// A client's requests in flight, and its most.
#[derive(Debug)]
struct InFlightLimit {
    now: Arc<AtomicUsize>,
    max: usize,
}

#[derive(Debug, Default)]
struct ClientLimits {
    rate: Option<Bucket>,
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

/// Every configured limit, and the store of their buckets.
#[derive(Debug)]
pub struct Limits {
    clients: HashMap<String, ClientLimits>,
    routes: HashMap<String, Bucket>,
    shared: Option<Shared>,
    on_store_error: OnStoreError,
    epoch: Instant,
    store_errors: prometheus::IntCounter,
    /// The second (after the epoch, plus one) of the last store error logged.
    logged_at: AtomicU64,
}

impl Limits {
    /// The limits of `config`; `store_errors` counts the store's failures.
    pub fn new(config: &Config, store_errors: prometheus::IntCounter) -> Result<Self, StoreError> {
        let shared = match &config.rate_limits.store {
            LimitStore::Memory => None,
            LimitStore::Redis(redis) => Some(Shared::new(redis, config.server.worker_count())?),
        };
        let key = |what: String| shared.as_ref().map(|s| s.key(&what)).unwrap_or(what);
        let clients = config
            .clients
            .iter()
            .filter(|c| c.rate_limit.is_some() || c.max_in_flight.is_some())
            .map(|c| {
                let limits = ClientLimits {
                    rate: c.rate_limit.map(|limit| {
                        Bucket::new(Scope::ClientRate, limit, key(format!("c:{}", c.name)))
                    }),
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
            .filter_map(|r| {
                let bucket = Bucket::new(
                    Scope::RouteRate,
                    r.rate_limit?,
                    key(format!("r:{}", r.name)),
                );
                Some((r.name.clone(), bucket))
            })
            .collect();
        Ok(Self {
            clients,
            routes,
            shared,
            on_store_error: config.rate_limits.on_store_error,
            epoch: Instant::now(),
            store_errors,
            logged_at: AtomicU64::new(0),
        })
    }

    /// Admits one request of `client` (if known) to `route`, or says which
    /// limit it is over. `worker` is the calling worker's index, whose
    /// connection to the store is used.
    pub async fn admit(
        &self,
        client: Option<&str>,
        route: &str,
        worker: usize,
    ) -> Result<Admitted, Refused> {
        let mut admitted = Admitted::default();
        let mut buckets: [Option<&Bucket>; 2] = [None, self.routes.get(route)];
        if let Some(limits) = client.and_then(|c| self.clients.get(c)) {
            if let Some(f) = &limits.in_flight {
                if f.now.fetch_add(1, Ordering::AcqRel) >= f.max {
                    f.now.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refused::Over(Refusal {
                        scope: Scope::ClientInFlight,
                        limit: u32::try_from(f.max).unwrap_or(u32::MAX),
                        // Nothing says when one ends: try again shortly.
                        retry_after: Duration::from_secs(1),
                    }));
                }
                admitted.held = Held(Some(Arc::clone(&f.now)));
            }
            buckets[0] = limits.rate.as_ref();
        }
        if buckets.iter().all(Option::is_none) {
            return Ok(admitted);
        }
        admitted.rate = match &self.shared {
            None => decide_locally(&buckets)?,
            Some(shared) => self.decide_shared(shared, &buckets, worker).await?,
        };
        Ok(admitted)
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// One round trip to Redis for every bucket, unless one of them is
    /// known to be over still.
    async fn decide_shared(
        &self,
        shared: &Shared,
        buckets: &[Option<&Bucket>; 2],
        worker: usize,
    ) -> Result<Option<RateState>, Refused> {
        let now = self.nanos();
        for b in buckets.iter().flatten() {
            let until = b.over_until.load(Ordering::Relaxed);
            if until > now {
                return Err(b.refusal(Duration::from_nanos(until - now)));
            }
        }
        let asks: Vec<Ask<'_>> = buckets
            .iter()
            .flatten()
            .map(|b| Ask {
                key: &b.key,
                interval_us: 1e6 / b.limit().per_second,
                burst: b.limit().burst,
                cost: 1,
                charge: false,
            })
            .collect();
        let decisions = match shared.decide(worker, &asks).await {
            Ok(decisions) => decisions,
            Err(e) => {
                self.store_failed(&e);
                return match self.on_store_error {
                    OnStoreError::Allow => Ok(None),
                    OnStoreError::Deny => Err(Refused::StoreDown),
                };
            }
        };
        let mut tightest: Option<RateState> = None;
        for (b, d) in buckets.iter().flatten().zip(decisions) {
            if !d.allowed {
                let wait = u64::try_from(d.wait.as_nanos()).unwrap_or(u64::MAX);
                b.over_until
                    .store(now.saturating_add(wait), Ordering::Relaxed);
                return Err(b.refusal(d.wait));
            }
            tightest = tighter(tightest, b.state(d.remaining));
        }
        Ok(tightest)
    }

    /// Counts a store failure; logs it unless one was logged this second.
    fn store_failed(&self, e: &StoreError) {
        self.store_errors.inc();
        let second = self.epoch.elapsed().as_secs() + 1;
        if self.logged_at.swap(second, Ordering::Relaxed) != second {
            let allow = self.on_store_error == OnStoreError::Allow;
            let then = if allow { "allowed" } else { "refused with 503" };
            tracing::warn!(error = %e, "rate limits: no decision from the store; requests are {then} (rate_limits.on_store_error)");
        }
    }
}

/// Every bucket in this process, in order; the first that is over refuses.
fn decide_locally(buckets: &[Option<&Bucket>; 2]) -> Result<Option<RateState>, Refused> {
    let mut tightest = None;
    for b in buckets.iter().flatten() {
        let remaining = b.local.check().map_err(|wait| b.refusal(wait))?;
        tightest = tighter(tightest, b.state(remaining));
    }
    Ok(tightest)
}

fn tighter(a: Option<RateState>, b: RateState) -> Option<RateState> {
    Some(match a {
        Some(a) if a.remaining <= b.remaining => a,
        _ => b,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(text_extra: &str) -> Limits {
        let config = crate::config::Config::from_toml(
            &format!("[backends.b]\nkind = \"huggingface\"\nurl = \"http://127.0.0.1:1/\"\n[routes.r]\nbackends = [\"b\"]\nrate_limit = {{ requests_per_second = 1, burst = 2 }}\n[clients.c]\napi_key = \"k\"\nmax_in_flight = 2\n{text_extra}"),
            &|_| None,
        )
        .unwrap();
        let errors = prometheus::IntCounter::new("errors", "errors").unwrap();
        Limits::new(&config, errors).unwrap()
    }

    fn scope(refused: Refused) -> Scope {
        match refused {
            Refused::Over(r) => r.scope,
            Refused::StoreDown => panic!("the memory store cannot fail"),
        }
    }

    #[tokio::test]
    async fn in_flight_is_held_until_dropped_and_a_refusal_holds_nothing() {
        let limits = limits("");
        let one = limits.admit(Some("c"), "r", 0).await.unwrap();
        assert_eq!(
            one.rate,
            Some(RateState {
                limit: 2,
                remaining: 1,
                reset: Duration::from_secs(1)
            })
        );
        let two = limits.admit(Some("c"), "r", 0).await.unwrap();
        let over = limits.admit(Some("c"), "r", 0).await.unwrap_err();
        assert_eq!(scope(over), Scope::ClientInFlight);
        drop((one, two));
        // In flight again, but the route's bucket of 2 is spent.
        let route = limits.admit(Some("c"), "r", 0).await.unwrap_err();
        assert_eq!(scope(route), Scope::RouteRate);
        // The refused request let its place go.
        let in_flight = limits.clients["c"].in_flight.as_ref().unwrap();
        assert_eq!(in_flight.now.load(Ordering::Acquire), 0);
        // A client with no limits of its own, and an anonymous caller.
        let free = limits.admit(None, "other", 0).await.unwrap();
        assert!(free.rate.is_none());
    }

    #[tokio::test]
    async fn with_redis_unreachable_the_store_error_setting_decides() {
        // Nothing listens on port 1.
        let store = "[rate_limits]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\ntimeout = \"200ms\"\n";
        let allow = limits(store);
        assert!(allow.admit(Some("c"), "r", 0).await.is_ok());
        assert_eq!(allow.store_errors.get(), 1);
        let deny = limits(&format!("{store}on_store_error = \"deny\"\n"));
        assert_eq!(
            deny.admit(Some("c"), "r", 0).await.unwrap_err(),
            Refused::StoreDown
        );
        // Without a bucket, no store call and no error.
        assert!(deny.admit(None, "other", 0).await.is_ok());
        assert_eq!(deny.store_errors.get(), 1);
    }
}
