//! Every metric name in one place, registered once at start.
//!
//! Label values are bounded: route and backend names come from config
//! (`route="unknown"` for a name that matched no route), the status class and
//! outcome from closed sets. Never a path, a request id or an error message.

use std::time::Duration;

mod limit_store;
mod outcome;
mod shadow_log;
pub use limit_store::LimitStoreSeries;
pub use outcome::{ClientSeries, Outcome};
pub use shadow_log::ShadowLogSeries;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for client-visible and upstream latency, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets for the gateway's own time: fine enough for microseconds.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.1,
];

/// The label values a config makes known, for [`Metrics::preset`].
#[derive(Debug, Default)]
pub struct Known<'a> {
    pub routes: Vec<KnownRoute<'a>>,
    /// Every backend, by config name.
    pub backends: Vec<&'a str>,
    /// The backends that sign with AWS credentials.
    pub signed_backends: Vec<&'a str>,
    /// Every failure kind an attempt can end with (`result` of attempts,
    /// `reason` of retries).
    pub failure_kinds: &'a [&'a str],
    /// Every `kind` of a stream that fails after it began.
    pub stream_error_kinds: &'a [&'a str],
    /// Every `limit` a request can be refused by.
    pub limit_scopes: &'a [&'a str],
    pub workers: usize,
    /// Each client, with the routes it may use.
    pub clients: Vec<(&'a str, Vec<&'a str>)>,
}

/// One route's known labels.
#[derive(Debug, Default)]
pub struct KnownRoute<'a> {
    pub name: &'a str,
    pub backends: Vec<&'a str>,
    /// The backends of the route that can answer a token stream.
    pub streaming: Vec<&'a str>,
}

/// The gateway's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    overhead: HistogramVec,
    upstream_attempts: IntCounterVec,
    retries: IntCounterVec,
    budget_exhausted: IntCounterVec,
    failovers: IntCounterVec,
    hedges: IntCounterVec,
    shed: IntCounterVec,
    ejections: IntCounterVec,
    backend_in_flight: IntGaugeVec,
    backend_state: IntGaugeVec,
    upstream_duration: HistogramVec,
    credentials_refresh: IntCounterVec,
    stream_first_byte: HistogramVec,
    stream_events: IntCounterVec,
    stream_errors: IntCounterVec,
    connections: IntCounterVec,
    client_requests: IntCounterVec,
    rate_limited: IntCounterVec,
    limit_store: LimitStoreSeries,
    config_reloads: IntCounterVec,
    config_info: IntGaugeVec,
    cache_requests: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_evictions: IntCounterVec,
    cache_store_errors: IntCounterVec,
    shadow_requests: IntCounterVec,
    shadow_similarity: HistogramVec,
    shadow_duration: HistogramVec,
    shadow_log: ShadowLogSeries,
}

/// The states `infergate_backend_state` reports, one gauge each.
pub const BACKEND_STATES: &[&str] = &["available", "ejected", "cold", "saturated", "unhealthy"];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// `2xx`, `4xx`, `5xx`, … from a status code.
pub fn code_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The series a successful request through one route and backend touches,
/// looked up once when the gateway is built instead of per request (a label
/// lookup hashes its values and takes a lock).
#[derive(Clone)]
pub struct PairSeries {
    /// `infergate_requests_total{route, backend, 2xx, success}`.
    served: IntCounter,
    duration: Histogram,
    overhead: Histogram,
    /// `infergate_upstream_attempts_total{backend, success}`.
    attempt_ok: IntCounter,
    /// `infergate_upstream_duration_seconds{backend, 2xx}`.
    attempt_ok_duration: Histogram,
}

impl std::fmt::Debug for PairSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairSeries")
    }
}

impl PairSeries {
    /// A request answered 2xx by this backend: [`Metrics::request`] for
    /// that case.
    pub fn served(&self, total: Duration, not_ours: Duration) {
        self.served.inc();
        self.duration.observe(total.as_secs_f64());
        self.overhead
            .observe(total.saturating_sub(not_ours).as_secs_f64());
    }

    /// An attempt answered 2xx: [`Metrics::attempt`] for that case.
    pub fn attempt_succeeded(&self, took: Duration) {
        self.attempt_ok.inc();
        self.attempt_ok_duration.observe(took.as_secs_f64());
    }
}

/// The series of one route's response cache ([`crate::cache`]), looked
/// up once when the route is built: every one of them exists, at 0, from
/// then on.
#[derive(Clone)]
pub struct CacheSeries {
    /// `infergate_cache_requests_total{route, result}`.
    pub hit: IntCounter,
    pub miss: IntCounter,
    pub bypass: IntCounter,
    /// `infergate_cache_bytes{route}`.
    pub bytes: IntGauge,
    /// `infergate_cache_evictions_total{route}`.
    pub evictions: IntCounter,
}

impl std::fmt::Debug for CacheSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheSeries")
    }
}

/// `infergate_cache_store_errors_total{route, operation}` of a route
/// whose cache is in Redis, by operation.
#[derive(Clone)]
pub struct CacheStoreErrors {
    pub get: IntCounter,
    pub set: IntCounter,
}

/// The series of one shadow of a route ([`crate::shadow`]), looked up once
/// when the route is built, so that each exists at 0 from then on.
#[derive(Clone)]
pub struct ShadowSeries {
    /// `infergate_shadow_requests_total{route, shadow, outcome}`.
    pub matched: IntCounter,
    pub differ: IntCounter,
    pub shadow_error: IntCounter,
    pub dropped: IntCounter,
    /// `infergate_shadow_similarity{route, shadow}`.
    pub similarity: Histogram,
    /// `infergate_shadow_duration_seconds{route, shadow}`.
    pub duration: Histogram,
}

impl std::fmt::Debug for ShadowSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShadowSeries")
    }
}

/// The buckets of `infergate_shadow_similarity`, over `[0, 1]`.
const SIMILARITY_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0];

impl Metrics {
    /// The series of the shadow `shadow` (a backend name) of `route`.
    pub fn shadow_series(&self, route: &str, shadow: &str) -> ShadowSeries {
        let outcome = |o: &str| self.shadow_requests.with_label_values(&[route, shadow, o]);
        ShadowSeries {
            matched: outcome("match"),
            differ: outcome("differ"),
            shadow_error: outcome("shadow_error"),
            dropped: outcome("dropped"),
            similarity: self.shadow_similarity.with_label_values(&[route, shadow]),
            duration: self.shadow_duration.with_label_values(&[route, shadow]),
        }
    }

    /// The cache series of `route`.
    pub fn cache_series(&self, route: &str) -> CacheSeries {
        let result = |r: &str| self.cache_requests.with_label_values(&[route, r]);
        CacheSeries {
            hit: result("hit"),
            miss: result("miss"),
            bypass: result("bypass"),
            bytes: self.cache_bytes.with_label_values(&[route]),
            evictions: self.cache_evictions.with_label_values(&[route]),
        }
    }

    /// The store error series of `route`, whose cache is in Redis.
    pub fn cache_store_errors(&self, route: &str) -> CacheStoreErrors {
        let operation = |o: &str| self.cache_store_errors.with_label_values(&[route, o]);
        CacheStoreErrors {
            get: operation("get"),
            set: operation("set"),
        }
    }

    /// The success series of `route` through `backend`.
    pub fn pair_series(&self, route: &str, backend: &str) -> PairSeries {
        PairSeries {
            served: self.requests.with_label_values(&[
                route,
                backend,
                "2xx",
                Outcome::Success.as_str(),
            ]),
            duration: self.request_duration.with_label_values(&[route]),
            overhead: self.overhead.with_label_values(&[route]),
            attempt_ok: self
                .upstream_attempts
                .with_label_values(&[backend, "success"]),
            attempt_ok_duration: self.upstream_duration.with_label_values(&[backend, "2xx"]),
        }
    }

    /// Registers every metric. Fails only on a duplicate or invalid name,
    /// which is a programming error caught by the tests.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "infergate_requests_total",
                "Client requests by route, final backend, status class and outcome.",
            ),
            &["route", "backend", "code_class", "outcome"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "infergate_request_duration_seconds",
                "Client-visible request duration, until the response headers.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let overhead = HistogramVec::new(
            HistogramOpts::new(
                "infergate_overhead_seconds",
                "Time to the response head minus time spent on backends, in backoff and reading the client's body: the gateway's own cost.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_attempts = IntCounterVec::new(
            Opts::new(
                "infergate_upstream_attempts_total",
                "Attempts sent to backends, by result.",
            ),
            &["backend", "result"],
        )?;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let retries = counter(
            "infergate_retries_total",
            "Retries, by the kind of failure that caused them.",
            &["route", "reason"],
        )?;
        let budget_exhausted = counter(
            "infergate_retry_budget_exhausted_total",
            "Retries (and hedges) refused because the route's retry budget was spent.",
            &["route"],
        )?;
        let failovers = counter(
            "infergate_failovers_total",
            "Retries that went to another backend than the failed attempt.",
            &["route", "from", "to"],
        )?;
        let hedges = counter(
            "infergate_hedges_total",
            "Hedged attempts sent because the first was slow.",
            &["route"],
        )?;
        let shed = counter(
            "infergate_shed_total",
            "Requests refused at once because every backend was at its concurrency limit.",
            &["route"],
        )?;
        let ejections = counter(
            "infergate_backend_ejections_total",
            "Passive outlier ejections of a backend.",
            &["backend"],
        )?;
        let backend_in_flight = IntGaugeVec::new(
            Opts::new(
                "infergate_backend_in_flight",
                "Attempts in flight to a backend.",
            ),
            &["backend"],
        )?;
        let backend_state = IntGaugeVec::new(
            Opts::new(
                "infergate_backend_state",
                "1 for the backend's current state, 0 for the others.",
            ),
            &["backend", "state"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "infergate_upstream_duration_seconds",
                "Duration of each attempt to a backend, until its response head (or failure).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["backend", "code_class"],
        )?;
        let credentials_refresh = counter(
            "infergate_credentials_refresh_total",
            "Fetches of AWS credentials for a SageMaker backend, by result.",
            &["backend", "result"],
        )?;
        let stream_first_byte = HistogramVec::new(
            HistogramOpts::new(
                "infergate_stream_time_to_first_byte_seconds",
                "Time from a stream request's arrival to its first event sent to the client.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "backend"],
        )?;
        let stream_events = counter(
            "infergate_stream_events_total",
            "Events relayed to streaming clients.",
            &["route", "backend"],
        )?;
        let stream_errors = counter(
            "infergate_stream_errors_total",
            "Streams ended by an error event, by kind.",
            &["route", "backend", "kind"],
        )?;
        let connections = counter(
            "infergate_connections_accepted_total",
            "Client connections accepted, by worker (server.workers).",
            &["worker"],
        )?;
        let client_requests = counter(
            "infergate_client_requests_total",
            "Requests of each configured client (by its name, never its key), by route and outcome.",
            &["client", "route", "outcome"],
        )?;
        let rate_limited = counter(
            "infergate_rate_limited_total",
            "Requests refused with 429 by one of the gateway's own limits, by route and limit (client_rate, client_tokens, client_in_flight, client_route_rate, client_route_tokens, route_rate, route_tokens).",
            &["route", "limit"],
        )?;
        let config_reloads = counter(
            "infergate_config_reloads_total",
            "Config reloads (SIGHUP, a change of the file, infergate reload), by result: applied, or rejected (the running config kept serving).",
            &["result"],
        )?;
        for result in ["applied", "rejected"] {
            config_reloads.with_label_values(&[result]);
        }
        let config_info = IntGaugeVec::new(
            Opts::new(
                "infergate_config_info",
                "1 for the config serving now, by the first 16 hex digits of its file's SHA-256.",
            ),
            &["hash"],
        )?;
        let cache_requests = counter(
            "infergate_cache_requests_total",
            "Requests to a route with a response cache, by result: hit (served from the cache), miss (sent to a backend), bypass (not cacheable: Cache-Control, a sampling request).",
            &["route", "result"],
        )?;
        let cache_bytes = IntGaugeVec::new(
            Opts::new(
                "infergate_cache_bytes",
                "Bytes held by a route's response cache in this process (answers, their headers and keys); 0 for a cache in Redis.",
            ),
            &["route"],
        )?;
        let cache_evictions = counter(
            "infergate_cache_evictions_total",
            "Answers a route's response cache dropped to make room (not those whose ttl ran out).",
            &["route"],
        )?;
        let cache_store_errors = counter(
            "infergate_cache_store_errors_total",
            "Operations of a route's response cache in Redis that failed, were late or were skipped while it was down, by operation: get (rate_limits.on_store_error decided the request; a value that does not decode is one too), set (an answer not kept).",
            &["route", "operation"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("infergate_build_info", "Build information."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(overhead.clone()))?;
        registry.register(Box::new(upstream_attempts.clone()))?;
        registry.register(Box::new(build_info))?;
        for c in [
            &retries,
            &budget_exhausted,
            &failovers,
            &hedges,
            &shed,
            &ejections,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(backend_in_flight.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(credentials_refresh.clone()))?;
        registry.register(Box::new(stream_first_byte.clone()))?;
        registry.register(Box::new(stream_events.clone()))?;
        registry.register(Box::new(stream_errors.clone()))?;
        registry.register(Box::new(backend_state.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(client_requests.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_info.clone()))?;
        registry.register(Box::new(cache_bytes.clone()))?;
        for c in [&cache_requests, &cache_evictions, &cache_store_errors] {
            registry.register(Box::new(c.clone()))?;
        }
        let shadow_requests = counter(
            "infergate_shadow_requests_total",
            "Shadow calls by outcome: match or differ (the shadow's answer against the primary's), shadow_error (the shadow failed or timed out), dropped (its route's shadow calls in flight were at their limit).",
            &["route", "shadow", "outcome"],
        )?;
        let shadow_similarity = HistogramVec::new(
            HistogramOpts::new(
                "infergate_shadow_similarity",
                "Similarity of a shadow's answer to the primary's, 0 to 1 (generated text: tokens in common; embeddings: the least cosine), for the answers that measure one.",
            )
            .buckets(SIMILARITY_BUCKETS.to_vec()),
            &["route", "shadow"],
        )?;
        let shadow_duration = HistogramVec::new(
            HistogramOpts::new(
                "infergate_shadow_duration_seconds",
                "Duration of each shadow call, until its answer was read whole (or it failed).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "shadow"],
        )?;
        registry.register(Box::new(shadow_requests.clone()))?;
        registry.register(Box::new(shadow_similarity.clone()))?;
        registry.register(Box::new(shadow_duration.clone()))?;
        let shadow_log = ShadowLogSeries::register(&registry)?;
        let limit_store = LimitStoreSeries::register(&registry)?;
        Ok(Self {
            registry,
            requests,
            request_duration,
            overhead,
            upstream_attempts,
            retries,
            budget_exhausted,
            failovers,
            hedges,
            shed,
            ejections,
            backend_in_flight,
            backend_state,
            upstream_duration,
            credentials_refresh,
            stream_first_byte,
            stream_events,
            stream_errors,
            connections,
            client_requests,
            rate_limited,
            limit_store,
            config_reloads,
            config_info,
            cache_requests,
            cache_bytes,
            cache_evictions,
            cache_store_errors,
            shadow_requests,
            shadow_similarity,
            shadow_duration,
            shadow_log,
        })
    }

    /// Creates every series whose labels the config makes known, at 0, so
    /// that `rate()` and alert rules see them before the first event (a
    /// labelled counter is otherwise absent until its first increment).
    pub fn preset(&self, known: &Known<'_>) {
        let requests = |route: &str, backend: &str, pairs: &[(&str, Outcome)]| {
            for (class, outcome) in pairs {
                self.requests
                    .with_label_values(&[route, backend, class, outcome.as_str()]);
            }
        };
        let through_backend = [
            ("2xx", Outcome::Success),
            ("4xx", Outcome::ClientError),
            ("5xx", Outcome::UpstreamError),
        ];
        let by_gateway = [
            ("4xx", Outcome::ClientError),
            ("5xx", Outcome::GatewayError),
        ];
        requests("unknown", "none", &[("4xx", Outcome::ClientError)]);
        for operation in ["decide", "charge", "refund"] {
            self.limit_store.errors.with_label_values(&[operation]);
        }
        for route in &known.routes {
            let name = route.name;
            requests(name, "none", &by_gateway);
            self.request_duration.with_label_values(&[name]);
            self.overhead.with_label_values(&[name]);
            for c in [&self.budget_exhausted, &self.hedges, &self.shed] {
                c.with_label_values(&[name]);
            }
            for limit in known.limit_scopes {
                self.rate_limited.with_label_values(&[name, limit]);
            }
            for reason in known.failure_kinds {
                self.retries.with_label_values(&[name, reason]);
            }
            for from in &route.backends {
                requests(name, from, &through_backend);
                for to in route.backends.iter().filter(|to| *to != from) {
                    self.failovers.with_label_values(&[name, from, to]);
                }
            }
            for backend in &route.streaming {
                self.stream_first_byte.with_label_values(&[name, backend]);
                self.stream_events.with_label_values(&[name, backend]);
                for kind in known.stream_error_kinds {
                    self.stream_errors.with_label_values(&[name, backend, kind]);
                }
            }
        }
        for backend in &known.backends {
            self.ejections.with_label_values(&[backend]);
            for result in ["success", "cancelled"].iter().chain(known.failure_kinds) {
                self.upstream_attempts.with_label_values(&[backend, result]);
            }
            for class in ["none", "2xx", "4xx", "5xx"] {
                self.upstream_duration.with_label_values(&[backend, class]);
            }
        }
        for backend in &known.signed_backends {
            for result in ["success", "failure"] {
                self.credentials_refresh
                    .with_label_values(&[backend, result]);
            }
        }
        for worker in 0..known.workers {
            self.connections_accepted(worker);
        }
        for (client, routes) in &known.clients {
            for route in routes {
                for outcome in Outcome::ALL {
                    self.client_requests
                        .with_label_values(&[client, route, outcome.as_str()]);
                }
            }
        }
    }

    /// The rate limit store's series, for [`crate::limits`].
    pub fn limit_store(&self) -> LimitStoreSeries {
        self.limit_store.clone()
    }

    /// The diff log's series.
    pub fn shadow_log(&self) -> ShadowLogSeries {
        self.shadow_log.clone()
    }

    /// Counts a request a limit of the gateway refused.
    pub fn rate_limited(&self, route: &str, limit: &str) {
        self.rate_limited.with_label_values(&[route, limit]).inc();
    }

    /// The handles of `infergate_client_requests_total` for `client` on
    /// `route`, one per outcome, to count with no label lookup.
    pub fn client_series(&self, client: &str, route: &str) -> ClientSeries {
        ClientSeries(Outcome::ALL.map(|o| {
            self.client_requests
                .with_label_values(&[client, route, o.as_str()])
        }))
    }

    /// Counts one request of a configured client.
    pub fn client_request(&self, client: &str, route: &str, outcome: Outcome) {
        self.client_requests
            .with_label_values(&[client, route, outcome.as_str()])
            .inc();
    }

    /// Records one finished client request: `total` until the response
    /// head, of which `not_ours` was spent on backends, in backoff and
    /// reading the client's body; the rest is the gateway's overhead.
    pub fn request(
        &self,
        route: &str,
        backend: &str,
        status: u16,
        outcome: Outcome,
        total: Duration,
        not_ours: Duration,
    ) {
        self.requests
            .with_label_values(&[route, backend, code_class(status), outcome.as_str()])
            .inc();
        self.request_duration
            .with_label_values(&[route])
            .observe(total.as_secs_f64());
        self.overhead
            .with_label_values(&[route])
            .observe(total.saturating_sub(not_ours).as_secs_f64());
    }

    /// Records one attempt: `result` is `success` or a failure kind;
    /// `status` the backend's HTTP status when it answered.
    pub fn attempt(&self, backend: &str, result: &str, status: Option<u16>, took: Duration) {
        self.upstream_attempts
            .with_label_values(&[backend, result])
            .inc();
        let class = status.map_or("none", code_class);
        self.upstream_duration
            .with_label_values(&[backend, class])
            .observe(took.as_secs_f64());
    }

    /// Records a fetch of AWS credentials.
    pub fn credentials_refresh(&self, backend: &str, ok: bool) {
        self.credentials_refresh
            .with_label_values(&[backend, if ok { "success" } else { "failure" }])
            .inc();
    }

    pub fn retry(&self, route: &str, reason: &str) {
        self.retries.with_label_values(&[route, reason]).inc();
    }

    pub fn retry_budget_exhausted(&self, route: &str) {
        self.budget_exhausted.with_label_values(&[route]).inc();
    }

    pub fn failover(&self, route: &str, from: &str, to: &str) {
        self.failovers.with_label_values(&[route, from, to]).inc();
    }

    pub fn hedge(&self, route: &str) {
        self.hedges.with_label_values(&[route]).inc();
    }

    pub fn shed(&self, route: &str) {
        self.shed.with_label_values(&[route]).inc();
    }

    pub fn ejection(&self, backend: &str) {
        self.ejections.with_label_values(&[backend]).inc();
    }

    pub fn stream_first_byte(&self, route: &str, backend: &str, after: Duration) {
        self.stream_first_byte
            .with_label_values(&[route, backend])
            .observe(after.as_secs_f64());
    }

    pub fn stream_events(&self, route: &str, backend: &str, n: u64) {
        self.stream_events
            .with_label_values(&[route, backend])
            .inc_by(n);
    }

    /// The counter of connections accepted by worker `worker`.
    pub fn connections_accepted(&self, worker: usize) -> prometheus::IntCounter {
        self.connections
            .with_label_values(&[worker.to_string().as_str()])
    }

    pub fn stream_error(&self, route: &str, backend: &str, kind: &str) {
        self.stream_errors
            .with_label_values(&[route, backend, kind])
            .inc();
    }

    /// Sets a backend's gauges (at scrape time).
    pub fn backend(&self, backend: &str, in_flight: u32, state: &str) {
        self.backend_in_flight
            .with_label_values(&[backend])
            .set(i64::from(in_flight));
        for s in BACKEND_STATES {
            self.backend_state
                .with_label_values(&[backend, s])
                .set(i64::from(*s == state));
        }
    }

    /// One reload's `result`.
    pub fn config_reload(&self, result: &str) {
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// The config serving now, by its file's hash, in place of `before`'s
    /// (set first, so that a scrape always finds one).
    pub fn config_serving(&self, before: Option<&str>, hash: &str) {
        self.config_info.with_label_values(&[hash]).set(1);
        if let Some(before) = before.filter(|b| *b != hash) {
            let _ = self.config_info.remove_label_values(&[before]);
        }
    }

    /// A backend a reload removed: its gauges go (its counters stay, as a
    /// counter's history does).
    pub fn forget_backend(&self, backend: &str) {
        let _ = self.backend_in_flight.remove_label_values(&[backend]);
        for s in BACKEND_STATES {
            let _ = self.backend_state.remove_label_values(&[backend, s]);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec only fails on invalid metric data, which the
        // registry does not hold.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

#[cfg(test)]
mod tests;
