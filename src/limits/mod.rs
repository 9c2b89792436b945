//! How much a caller may spend: requests per second (GCRA) and tokens per
//! minute per client, per route and per client on one route, and requests
//! in flight per client.
//!
//! A door asks [`Limits::admit`] once it knows the client and the route and
//! before it reads the body, so a refused request costs no upload and no
//! upstream call, and a request refused for its key (401) or its route
//! (403) never reaches here and is never counted. The buckets are taken in
//! order (the client's, the client's on the route, the route's): a request
//! a later bucket refuses has spent its earlier tokens (GCRA cannot give
//! one back), which errs on the side of the limits. What is held in flight
//! is let go when the answer's body ends.
//!
//! Tokens are charged after the answer, from what the backend reported
//! ([`Charge`]): a request is admitted while its token buckets are not in
//! debt, an admitted stream is never cut, and the requests after one that
//! went over wait until the bucket has refilled what it owes.
//!
//! Where the buckets live is `rate_limits.store`: in this process
//! ([`local`]: governor for requests, a GCRA of its own for tokens), or in
//! Redis, shared by every gateway that uses it ([`shared`]). With Redis, a
//! bucket Redis called over is refused here, with no call, until the time
//! Redis gave; when Redis fails or is late, `rate_limits.on_store_error`
//! decides (allow, the default, or deny with 503), each failure is counted
//! in `infergate_ratelimit_store_errors_total` and logged at most once a
//! second. Requests in flight are always counted in this process.
//!
//! Far from its limits a request need not wait for Redis: when Redis's
//! last answers left every one of its buckets at least
//! `rate_limits.headroom` of its burst after this request (less what
//! requests gone ahead since have taken), the request goes on at once and
//! Redis takes its cost just after, into debt if the other gateways spent
//! the rest meanwhile (the later requests then wait out the debt, so over
//! time the buckets admit their rate). Nearer the limit every request
//! waits for Redis's decision, which is then exact; after a store failure,
//! every request waits until Redis has answered again.

mod bucket;
mod local;
mod shared;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, LimitStore, OnStoreError, SpendLimits};
use crate::metrics::LimitStoreSeries;
use crate::name_hash::NameMap;
use crate::redis_store::{Outage, RedisStore, StoreError};
use bucket::{Bucket, Buckets};
pub use local::{Debt, Limiter};
pub use shared::{Ask, Decision, Mode, Shared, GCRA};

/// Which limit refused a request: the `limit` label of
/// `infergate_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ClientRate,
    ClientTokens,
    ClientInFlight,
    ClientRouteRate,
    ClientRouteTokens,
    RouteRate,
    RouteTokens,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::ClientRate,
        Scope::ClientTokens,
        Scope::ClientInFlight,
        Scope::ClientRouteRate,
        Scope::ClientRouteTokens,
        Scope::RouteRate,
        Scope::RouteTokens,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ClientRate => "client_rate",
            Scope::ClientTokens => "client_tokens",
            Scope::ClientInFlight => "client_in_flight",
            Scope::ClientRouteRate => "client_route_rate",
            Scope::ClientRouteTokens => "client_route_tokens",
            Scope::RouteRate => "route_rate",
            Scope::RouteTokens => "route_tokens",
        }
    }
}

/// A request over a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub scope: Scope,
    /// The most the limit allows: the burst, a minute's tokens, or the
    /// requests in flight.
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

/// The request bucket that had the least left, for the `x-ratelimit-*`
/// headers of an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// The bucket's burst.
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// An admitted request: its place in flight, how much is left, and where
/// its tokens are to be charged.
#[derive(Debug, Default)]
pub struct Admitted {
    pub held: Held,
    pub rate: Option<RateState>,
    pub charge: Option<Charge>,
}

/// The token buckets of an admitted request, to be charged once its answer
/// says how many tokens it took. Dropped uncharged, it charges nothing.
#[derive(Debug)]
pub struct Charge {
    limits: Arc<Limits>,
    client: Option<String>,
    route: String,
    worker: usize,
}

impl Charge {
    /// Charges `tokens` to every token bucket of the request: at once in
    /// this process, or in Redis by a task of its own, so the answer never
    /// waits for it.
    pub fn tokens(self, tokens: u64) {
        // A count no answer reaches is the backend's mistake: charged at
        // most this, it cannot shut a bucket for years.
        let tokens = tokens.min(MAX_CHARGE);
        if tokens == 0 {
            return;
        }
        let limits = self.limits;
        if limits.shared.is_none() {
            let groups = limits.token_groups(self.client.as_deref(), &self.route);
            for b in groups.iter().flatten() {
                b.charge_locally(tokens);
            }
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, route, worker) = (self.client, self.route, self.worker);
        runtime.spawn(async move {
            limits
                .charge_shared(client.as_deref(), &route, tokens, worker)
                .await;
        });
    }
}

/// The most tokens one answer is charged.
pub const MAX_CHARGE: u64 = 10_000_000;

/// A client's requests in flight, and its most.
#[derive(Debug)]
struct InFlightLimit {
    now: Arc<AtomicUsize>,
    max: usize,
}

#[derive(Debug, Default)]
struct ClientLimits {
    /// What the config said, so that a reload that leaves it as it was
    /// keeps these buckets and this count in flight.
    config: ClientLimitsConfig,
    own: Buckets,
    in_flight: Option<InFlightLimit>,
    /// Its limits on single routes, by route name.
    on_route: NameMap<Buckets>,
}

/// The most buckets one request meets: a rate and a token bucket for the
/// client, for the client on the route, and for the route.
const MOST_BUCKETS: usize = 6;
/// The first of them are the client's: one group, one hash tag.
const CLIENT_BUCKETS: usize = 4;

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

/// A client's limits as configured.
#[derive(Debug, Default, Clone, PartialEq)]
struct ClientLimitsConfig {
    own: SpendLimits,
    max_in_flight: Option<usize>,
    on_route: std::collections::BTreeMap<String, SpendLimits>,
}

/// Every configured limit, and the store of their buckets.
#[derive(Debug)]
pub struct Limits {
    clients: NameMap<Arc<ClientLimits>>,
    routes: NameMap<Arc<RouteLimits>>,
    shared: Option<Arc<Shared>>,
    /// `[rate_limits]`: where the buckets are (a reload that leaves it as
    /// it was keeps the store) and what a decision does when it fails.
    store: crate::config::RateLimitsConfig,
    epoch: Instant,
    /// `infergate_ratelimit_store_errors_total`, by operation, and
    /// `infergate_ratelimit_decisions_total`.
    series: LimitStoreSeries,
    /// Whether the store failed a moment ago: decisions do not wait for
    /// it meanwhile.
    outage: Outage,
    /// The store's generation, one more at each failure: what Redis
    /// answered before the last failure lets no request go ahead.
    era: AtomicU32,
}

impl ClientLimits {
    /// The buckets of `config` for the client `name`.
    fn new(name: &str, config: ClientLimitsConfig, key: &impl Fn(&str, &str) -> String) -> Self {
        // One hash tag for all of the client's buckets: one script call.
        let tag = format!("c:{name}");
        let on_route_scopes = (Scope::ClientRouteRate, Scope::ClientRouteTokens);
        Self {
            own: Buckets::new(
                config.own,
                (&tag, ""),
                (Scope::ClientRate, Scope::ClientTokens),
                key,
            ),
            in_flight: config.max_in_flight.map(|max| InFlightLimit {
                now: Arc::default(),
                max,
            }),
            on_route: config
                .on_route
                .iter()
                .map(|(route, limits)| {
                    let prefix = format!("route:{route}:");
                    let buckets = Buckets::new(*limits, (&tag, &prefix), on_route_scopes, key);
                    (route.clone(), buckets)
                })
                .collect(),
            config,
        }
    }
}

/// A route's own limits, with what the config said.
#[derive(Debug)]
struct RouteLimits {
    config: SpendLimits,
    buckets: Buckets,
}

impl Limits {
    /// The limits of `config` for `workers` workers; `series` counts the
    /// store's failures by operation and its decisions. With the
    /// limits a reload replaces as `previous`, the store (when
    /// `[rate_limits]` kept it) and each client's and route's buckets and
    /// count in flight (when its limits are as they were) carry over.
    pub fn new(
        config: &Config,
        workers: usize,
        series: LimitStoreSeries,
        previous: Option<&Limits>,
    ) -> Result<Self, StoreError> {
        let previous = previous.filter(|p| p.store.store == config.rate_limits.store);
        let shared = match (&config.rate_limits.store, previous) {
            (LimitStore::Memory, _) => None,
            (LimitStore::Redis(_), Some(p)) => p.shared.clone(),
            (LimitStore::Redis(redis), None) => Some(Arc::new(Shared::new(
                Arc::new(RedisStore::new(redis, workers)?),
                series.errors.with_label_values(&["refund"]),
            ))),
        };
        let key = |tag: &str, rest: &str| match &shared {
            Some(s) => s.key(tag, rest),
            None => format!("{tag}:{rest}"),
        };
        let mut clients = NameMap::default();
        for c in &config.clients {
            let wanted = ClientLimitsConfig {
                own: SpendLimits {
                    rate_limit: c.rate_limit,
                    tokens_per_minute: c.tokens_per_minute,
                },
                max_in_flight: c.max_in_flight,
                on_route: c.route_limits.clone(),
            };
            if wanted == ClientLimitsConfig::default() {
                continue;
            }
            let kept = previous
                .and_then(|p| p.clients.get(&c.name))
                .filter(|old| old.config == wanted);
            let limits = match kept {
                Some(old) => Arc::clone(old),
                None => Arc::new(ClientLimits::new(&c.name, wanted, &key)),
            };
            clients.insert(c.name.clone(), limits);
        }
        let mut routes = NameMap::default();
        for r in &config.routes {
            let wanted = SpendLimits {
                rate_limit: r.rate_limit,
                tokens_per_minute: r.tokens_per_minute,
            };
            if wanted == SpendLimits::default() {
                continue;
            }
            let kept = previous
                .and_then(|p| p.routes.get(&r.name))
                .filter(|old| old.config == wanted);
            let limits = kept.map(Arc::clone).unwrap_or_else(|| {
                let scopes = (Scope::RouteRate, Scope::RouteTokens);
                let tag = format!("r:{}", r.name);
                Arc::new(RouteLimits {
                    config: wanted,
                    buckets: Buckets::new(wanted, (&tag, ""), scopes, &key),
                })
            });
            routes.insert(r.name.clone(), limits);
        }
        Ok(Self {
            clients,
            routes,
            shared,
            store: config.rate_limits.clone(),
            // Buckets kept keep the clock their notes are counted on.
            epoch: previous.map_or_else(Instant::now, |p| p.epoch),
            series,
            outage: Outage::default(),
            // And so do their notes, counted in this generation.
            era: AtomicU32::new(previous.map_or(1, |p| p.era.load(Ordering::Relaxed))),
        })
    }

    /// Every bucket a request of `client` to `route` meets, in order.
    fn buckets<'a>(
        &'a self,
        client: Option<&'a ClientLimits>,
        route: &str,
    ) -> [Option<&'a Bucket>; MOST_BUCKETS] {
        let on_route = client.and_then(|c| c.on_route.get(route));
        let route = self.routes.get(route).map(|r| &r.buckets);
        [
            client.and_then(|c| c.own.rate.as_ref()),
            client.and_then(|c| c.own.tokens.as_ref()),
            on_route.and_then(|b| b.rate.as_ref()),
            on_route.and_then(|b| b.tokens.as_ref()),
            route.and_then(|b| b.rate.as_ref()),
            route.and_then(|b| b.tokens.as_ref()),
        ]
    }

    /// The token buckets of a request of `client` to `route`, in their two
    /// store groups.
    fn token_groups(&self, client: Option<&str>, route: &str) -> Groups<'_> {
        let client = client.and_then(|c| self.clients.get(c)).map(|c| &**c);
        groups(&self.buckets(client, route), Bucket::counts_tokens)
    }

    /// Admits one request of `client` (if known) to `route`, or says which
    /// limit it is over. `worker` is the calling worker's index, whose
    /// connection to the store is used.
    pub async fn admit(
        self: &Arc<Self>,
        client: Option<&str>,
        route: &str,
        worker: usize,
    ) -> Result<Admitted, Refused> {
        let mut admitted = Admitted::default();
        let limits = client.and_then(|c| self.clients.get(c)).map(|c| &**c);
        if let Some(f) = limits.and_then(|l| l.in_flight.as_ref()) {
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
        let buckets = self.buckets(limits, route);
        if buckets.iter().all(Option::is_none) {
            return Ok(admitted);
        }
        admitted.rate = match &self.shared {
            None => decide_locally(&buckets)?,
            Some(shared) => {
                let who = (client, route, worker);
                self.decide_shared(shared, &buckets, who).await?
            }
        };
        if buckets.iter().flatten().any(|b| b.counts_tokens()) {
            admitted.charge = Some(Charge {
                limits: Arc::clone(self),
                client: client.map(str::to_owned),
                route: route.to_owned(),
                worker,
            });
        }
        Ok(admitted)
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The decision for the request's two groups of buckets (the
    /// client's, the route's) of `client` on `route`, made on `worker`:
    /// refused here when one of them is known to be over still; at once
    /// when every bucket has its headroom, Redis taking the cost after;
    /// else one round trip to Redis. A request refused takes nothing (see
    /// [`Shared::decide`]).
    async fn decide_shared(
        self: &Arc<Self>,
        shared: &Shared,
        buckets: &[Option<&Bucket>; MOST_BUCKETS],
        (client, route, worker): (Option<&str>, &str, usize),
    ) -> Result<Option<RateState>, Refused> {
        let now = self.nanos();
        if let Some(refused) = buckets.iter().flatten().find_map(|b| b.known_over(now)) {
            return Err(refused);
        }
        if self.outage.is_down() {
            return self.undecided("decide", None);
        }
        let groups = groups(buckets, |_| true);
        let era = self.era.load(Ordering::Relaxed);
        if let Some(ahead) = self.ahead(&groups, era) {
            self.charge_ahead(client, route, worker);
            return Ok(ahead);
        }
        let decisions = match call(shared, worker, Mode::Admit, &groups, None).await {
            Ok(decisions) => decisions,
            Err(e) => return self.undecided("decide", Some(&e)),
        };
        self.series.waited.inc();
        let mut tightest = None;
        let mut refused = None;
        for (b, d) in groups.iter().flatten().zip(decisions.iter().flatten()) {
            b.note(era, d.remaining);
            if !d.allowed {
                b.over_for(now, d.wait);
                refused = refused.or(Some(b.refusal(d.wait)));
            }
            tightest = tighter(tightest, b.state(d.remaining));
        }
        // On a Cluster, a group admitted when the other refused was given
        // back by the store itself.
        refused.map_or(Ok(tightest), Err)
    }

    /// Admits the request at once when every one of its buckets has
    /// `rate_limits.headroom` by Redis's answers in store generation `era`
    /// (1: never), its cost then pending in each; the tightest bucket's
    /// state after it.
    fn ahead(&self, groups: &Groups<'_>, era: u32) -> Option<Option<RateState>> {
        if self.store.headroom >= 1.0 {
            return None;
        }
        let mut tightest = None;
        for (i, b) in groups.iter().flatten().enumerate() {
            let Some(left) = b.take_room(era, self.store.headroom) else {
                // What the buckets before it took is theirs again.
                groups.iter().flatten().take(i).for_each(|b| b.settled());
                return None;
            };
            tightest = tighter(tightest, b.state(left));
        }
        self.series.ahead.inc();
        Some(tightest)
    }

    /// Has Redis take the cost of a request of `client` to `route` that
    /// went ahead, by a task of its own: charged whatever the state (the
    /// request is on its way), each answer noted, a bucket the charge put
    /// in debt known to be over here until it is out of it.
    fn charge_ahead(self: &Arc<Self>, client: Option<&str>, route: &str, worker: usize) {
        let limits = Arc::clone(self);
        let (client, route) = (client.map(str::to_owned), route.to_owned());
        tokio::spawn(async move {
            let Some(shared) = &limits.shared else { return };
            let owner = client.as_deref().and_then(|c| limits.clients.get(c));
            let groups = groups(&limits.buckets(owner.map(|c| &**c), &route), |_| true);
            let (now, era) = (limits.nanos(), limits.era.load(Ordering::Relaxed));
            let answer = call(shared, worker, Mode::Charge, &groups, None).await;
            match answer {
                // Noted before it is no longer pending: counted twice a
                // moment rather than not at all.
                Ok(decisions) => settle(&groups, &decisions, (now, era)),
                Err(e) => limits.store_failed("decide", &e),
            }
            groups.iter().flatten().for_each(|b| b.settled());
        });
    }

    /// A decision the store did not give: as `on_store_error` says.
    fn undecided(
        &self,
        operation: &str,
        e: Option<&StoreError>,
    ) -> Result<Option<RateState>, Refused> {
        match e {
            Some(e) => self.store_failed(operation, e),
            None => self.series.errors.with_label_values(&[operation]).inc(),
        }
        match self.store.on_store_error {
            OnStoreError::Allow => Ok(None),
            OnStoreError::Deny => Err(Refused::StoreDown),
        }
    }

    /// Charges `tokens` to the request's token buckets in Redis; a bucket
    /// the charge put in debt is then known to be over here too.
    async fn charge_shared(&self, client: Option<&str>, route: &str, tokens: u64, worker: usize) {
        let Some(shared) = &self.shared else { return };
        if self.outage.is_down() {
            self.series.errors.with_label_values(&["charge"]).inc();
            return;
        }
        let groups = self.token_groups(client, route);
        let (now, era) = (self.nanos(), self.era.load(Ordering::Relaxed));
        match call(shared, worker, Mode::Charge, &groups, Some(tokens)).await {
            Ok(decisions) => settle(&groups, &decisions, (now, era)),
            Err(e) => self.store_failed("charge", &e),
        }
    }

    /// Counts a store failure, takes the store to be down for a moment,
    /// and logs it unless one was logged this second.
    fn store_failed(&self, operation: &str, e: &StoreError) {
        self.series.errors.with_label_values(&[operation]).inc();
        self.era.fetch_add(1, Ordering::Relaxed);
        self.outage.mark_down();
        if self.outage.log_due() {
            let allow = self.store.on_store_error == OnStoreError::Allow;
            let then = if allow { "allowed" } else { "refused with 503" };
            tracing::warn!(error = %e, operation, "rate limits: no decision from the store; for the next second requests are {then} without asking it (rate_limits.on_store_error)");
        }
    }
}

/// A request's buckets in their two store groups, the client's and the
/// route's (each may be empty): each group is one script call.
type Groups<'a> = [Vec<&'a Bucket>; 2];

/// The buckets `keep` keeps, in their groups.
fn groups<'a>(
    buckets: &[Option<&'a Bucket>; MOST_BUCKETS],
    keep: impl Fn(&Bucket) -> bool,
) -> Groups<'a> {
    let (client, route) = buckets.split_at(CLIENT_BUCKETS);
    [client, route].map(|g| g.iter().flatten().copied().filter(|b| keep(b)).collect())
}

/// The store's decision for every group with buckets, each bucket at
/// `cost` (`None`: its admission's), in one round trip; the decisions by
/// group (none for an empty one).
async fn call(
    shared: &Shared,
    worker: usize,
    mode: Mode,
    groups: &Groups<'_>,
    cost: Option<u64>,
) -> Result<[Vec<Decision>; 2], StoreError> {
    let asks = groups
        .each_ref()
        .map(|g| g.iter().map(|b| b.ask(cost)).collect::<Vec<_>>());
    let calls: Vec<&[Ask<'_>]> = asks
        .iter()
        .filter(|a| !a.is_empty())
        .map(Vec::as_slice)
        .collect();
    if calls.is_empty() {
        return Ok([Vec::new(), Vec::new()]);
    }
    let mut answers = shared.decide(worker, mode, &calls).await?.into_iter();
    Ok(asks.map(|a| {
        if a.is_empty() {
            Vec::new()
        } else {
            answers.next().unwrap_or_default()
        }
    }))
}

/// What Redis answered a charge sent at `now` in store generation `era`:
/// each bucket's remaining noted, and one the charge put in debt known to
/// be over until it is out.
fn settle(groups: &Groups<'_>, decisions: &[Vec<Decision>; 2], (now, era): (u64, u32)) {
    for (b, d) in groups.iter().flatten().zip(decisions.iter().flatten()) {
        b.note(era, d.remaining);
        if !d.wait.is_zero() {
            b.over_for(now, d.wait);
        }
    }
}

/// Every bucket in this process, in order; the first that is over refuses.
fn decide_locally(buckets: &[Option<&Bucket>; MOST_BUCKETS]) -> Result<Option<RateState>, Refused> {
    let mut tightest = None;
    for b in buckets.iter().flatten() {
        let remaining = b.check_locally()?;
        tightest = tighter(tightest, b.state(remaining));
    }
    Ok(tightest)
}

/// The state with the least left of two.
fn tighter(a: Option<RateState>, b: Option<RateState>) -> Option<RateState> {
    match (a, b) {
        (Some(a), Some(b)) if b.remaining < a.remaining => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(text_extra: &str) -> Arc<Limits> {
        reloaded(text_extra, None)
    }

    /// The limits of the test config with `text_extra`, taking over from
    /// `previous`.
    fn reloaded(text_extra: &str, previous: Option<&Limits>) -> Arc<Limits> {
        let config = crate::config::Config::from_toml(
            &format!("[backends.b]\nkind = \"huggingface\"\nurl = \"http://127.0.0.1:1/\"\n[routes.r]\nbackends = [\"b\"]\nrate_limit = {{ requests_per_second = 1, burst = 2 }}\n[clients.c]\napi_key = \"k\"\nmax_in_flight = 2\n{text_extra}"),
            &|_| None,
        )
        .unwrap();
        let series = LimitStoreSeries::unregistered();
        Arc::new(Limits::new(&config, 1, series, previous).unwrap())
    }

    /// A reload keeps what each client and route has spent while their
    /// limits are the same, and starts afresh what changed.
    #[tokio::test]
    async fn a_reload_keeps_the_buckets_and_counts_of_unchanged_limits() {
        let other =
            "[clients.d]\napi_key = \"k2\"\nrate_limit = { requests_per_second = 1, burst = 1 }\n";
        let old = limits(other);
        // Two of c's requests in flight, the route's burst of 2 spent.
        let first = old.admit(Some("c"), "r", 0).await.unwrap();
        let _second = old.admit(Some("c"), "r", 0).await.unwrap();
        // d's limit changes; c's and the route's do not.
        let changed = other.replace("burst = 1", "burst = 3");
        let new = reloaded(&changed, Some(&old));
        assert!(Arc::ptr_eq(&old.clients["c"], &new.clients["c"]));
        assert!(Arc::ptr_eq(&old.routes["r"], &new.routes["r"]));
        assert!(!Arc::ptr_eq(&old.clients["d"], &new.clients["d"]));
        // c's requests in flight on the old limits count on the new.
        let over = new.admit(Some("c"), "r", 0).await.unwrap_err();
        assert_eq!(scope(over), Scope::ClientInFlight);
        drop(first);
        // What the route spent on the old limits is spent on the new.
        let after = new.admit(Some("c"), "r", 0).await.unwrap_err();
        assert_eq!(scope(after), Scope::RouteRate);
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
        assert_eq!(allow.series.errors.with_label_values(&["decide"]).get(), 1);
        let deny = limits(&format!("{store}on_store_error = \"deny\"\n"));
        assert_eq!(
            deny.admit(Some("c"), "r", 0).await.unwrap_err(),
            Refused::StoreDown
        );
        // Without a bucket, no store call and no error.
        assert!(deny.admit(None, "other", 0).await.is_ok());
        assert_eq!(deny.series.errors.with_label_values(&["decide"]).get(), 1);
    }
}
