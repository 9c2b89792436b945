//! The gateway's shared state: everything a request needs, built from the
//! config at start and again at each reload.
//!
//! [`Gateway::build`] turns a validated [`Config`] into the route table, the
//! backends (with their credential chains), each worker's upstream client
//! (from one [`Egress`]) and the metrics; [`Gateway::rebuild`] does the same
//! for a reloaded config, taking over the state of what did not change
//! ([`carry`]); [`Live`] holds the gateway new requests run on. The front doors ([`crate::api`]) and the service stack
//! ([`crate::app`]) read it; it imports neither, so shared state sits below
//! every layer that uses it.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use aws_credential_types::provider::SharedCredentialsProvider;

use crate::backend::Backend;
use crate::cache::{InRedis, RouteCache};
use crate::clients::Clients;
use crate::config::{CacheStore, Config, RouteConfig};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::redis_store::RedisStore;
use crate::route::budget::RetryBudget;
use crate::route::health::BackendState;
use crate::route::sticky::SessionTable;
use crate::route::{PoolMember, Route, RouteTable};
use crate::shadow::diff_log::DiffLog;
use crate::upstream::{Client, Egress};

mod carry;
mod live;

pub use live::{Live, ReloadHandle, ReloadOutcome};

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running on this thread (0 outside workers): it
/// picks the worker's own upstream client.
pub fn current_worker() -> usize {
    WORKER.with(Cell::get)
}

/// Marks this thread as worker `index` ([`crate::server`] does, once per
/// worker thread).
pub fn set_current_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// Why the gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("backends.{backend}: {source}")]
    Backend {
        backend: String,
        #[source]
        source: crate::backend::BuildError,
    },
    #[error(transparent)]
    Egress(#[from] crate::upstream::EgressError),
    #[error("could not register metrics: {0}")]
    Metrics(String),
    #[error("rate_limits: {0}")]
    Limits(String),
    #[error(transparent)]
    DiffLog(#[from] crate::shadow::diff_log::OpenError),
}

/// Extra inputs to [`Gateway::build`] that do not come from the config file.
#[derive(Default)]
pub struct BuildOptions {
    /// Credentials providers by backend name, replacing aws-config's default
    /// chain for those backends (the demo uses fixed demo keys).
    pub credentials: HashMap<String, SharedCredentialsProvider>,
    /// Where finished request spans go (OTLP export); none by default.
    pub spans: Option<Arc<dyn crate::telemetry::SpanSink>>,
}

/// The running gateway's shared state.
#[derive(Debug)]
pub struct Gateway {
    pub config: Config,
    pub routes: RouteTable,
    /// Backends in config order; `states[i]` is `backends[i]`'s health.
    pub backends: Vec<Arc<Backend>>,
    pub states: Vec<Arc<BackendState>>,
    /// `backends[i]`'s active health check, if it has one; stopped when the
    /// last gateway holding it goes.
    probes: Vec<Option<Arc<Probe>>>,
    /// The upstream HTTP client of each worker, and what it was made of.
    upstream: Upstream,
    pub metrics: Metrics,
    /// Who may call (`[clients.NAME]`, `server.auth`).
    pub callers: Clients,
    /// How much they may spend (`rate_limit`, `max_in_flight`).
    pub limits: Arc<Limits>,
    /// Where finished request spans go, when configured.
    pub spans: Option<Arc<dyn crate::telemetry::SpanSink>>,
    /// The shadows' diff log (`[shadow] diff_log`), when configured.
    pub diff_log: Option<Arc<DiffLog>>,
    /// What the process keeps across reloads.
    process: Arc<Process>,
}

/// One per process, shared by every gateway a reload makes.
#[derive(Debug, Default)]
struct Process {
    ready: AtomicBool,
    /// Set once a reloader runs.
    reload: OnceLock<ReloadHandle>,
}

/// An active health check's task, stopped when dropped.
#[derive(Debug)]
struct Probe(tokio::task::JoinHandle<()>);

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Gateway {
    /// Builds backends, routes, the upstream client and the metrics.
    pub async fn build(config: Config, mut opts: BuildOptions) -> Result<Arc<Self>, BuildError> {
        let metrics = Metrics::new().map_err(|e| BuildError::Metrics(e.to_string()))?;
        let workers = config.server.worker_count();
        let upstream = Upstream::new(&config, workers, carry::EgressKey::of(&config))?;
        let limits = new_limits(&config, workers, &metrics, None)?;
        let diff_log = DiffLog::open(&config.shadow, None, metrics.shadow_log()).await?;
        let base = Base {
            metrics,
            upstream,
            limits,
            diff_log,
            spans: opts.spans.take(),
            process: Arc::default(),
        };
        Self::assemble(config, base, &mut opts.credentials, None).await
    }

    /// The gateway `config` describes, taking over from this one what did
    /// not change ([`carry`]): the metrics; the upstream clients and their
    /// connections while `[upstream]` and the CA files (their content too)
    /// are the same; each unchanged backend with its health, EWMA,
    /// ejection, credentials cache and health check (its health alone when
    /// the upstream clients changed); each unchanged route of unchanged
    /// backends with its retry budget and sticky sessions; each client's
    /// and route's buckets while their limits are the same; the diff log's
    /// writer while its path is the same (the path opened again, for
    /// logrotate). Clients and keys are always read afresh. The worker
    /// count stays the running one.
    pub async fn rebuild(&self, config: Config) -> Result<Arc<Self>, BuildError> {
        let workers = self.clients().len();
        let key = carry::EgressKey::of(&config);
        let upstream = match key == self.upstream.key {
            true => self.upstream.clone(),
            false => Upstream::new(&config, workers, key)?,
        };
        let limits = new_limits(&config, workers, &self.metrics, Some(&self.limits))?;
        let previous = self.diff_log.as_deref();
        let diff_log = DiffLog::open(&config.shadow, previous, self.metrics.shadow_log()).await?;
        let base = Base {
            metrics: self.metrics.clone(),
            upstream,
            limits,
            diff_log,
            spans: self.spans.clone(),
            process: Arc::clone(&self.process),
        };
        Self::assemble(config, base, &mut HashMap::new(), Some(self)).await
    }

    /// The gateway of `config` on `base`, with the backends and routes of
    /// `previous` that `config` leaves as they were.
    async fn assemble(
        config: Config,
        base: Base,
        credentials: &mut HashMap<String, SharedCredentialsProvider>,
        previous: Option<&Gateway>,
    ) -> Result<Arc<Self>, BuildError> {
        let Base {
            metrics,
            upstream,
            limits,
            diff_log,
            spans,
            process,
        } = base;
        // The backends themselves hold the upstream client's targets: only
        // the same client keeps them.
        let same_upstream =
            previous.is_some_and(|p| Arc::ptr_eq(&p.upstream.egress, &upstream.egress));
        let mut backends = Vec::with_capacity(config.backends.len());
        let mut states = Vec::with_capacity(config.backends.len());
        let mut probes = Vec::with_capacity(config.backends.len());
        for cfg in &config.backends {
            let kept = previous.and_then(|p| p.same_backend(cfg));
            if let Some((backend, state, probe)) = kept.clone().filter(|_| same_upstream) {
                backends.push(backend);
                states.push(state);
                probes.push(probe);
                continue;
            }
            let provider = credentials.remove(&cfg.name);
            let backend = Backend::from_config(cfg, provider, &metrics, &upstream.egress)
                .await
                .map_err(|source| BuildError::Backend {
                    backend: cfg.name.clone(),
                    source,
                })?;
            let backend = Arc::new(backend);
            let state = match kept {
                Some((_, state, _)) => state,
                None => Arc::new(BackendState::new(&cfg.name, cfg.max_in_flight, cfg.outlier)),
            };
            probes.push(Probe::start(&backend, &state, &upstream.clients[0]));
            backends.push(backend);
            states.push(state);
        }
        let redis = caches_redis(&config, upstream.clients.len());
        let routes = build_routes(
            &config,
            &backends,
            &states,
            &metrics,
            redis.as_ref(),
            previous,
        );
        link_siblings(&states, &routes);
        let gateway = Arc::new(Self {
            callers: Clients::new(config.server.auth, &config.clients),
            limits,
            routes: RouteTable::from_shared(routes),
            backends,
            states,
            probes,
            upstream,
            metrics,
            spans,
            diff_log,
            process,
            config,
        });
        gateway.preset_metrics();
        Ok(gateway)
    }

    /// Whether the gateway takes traffic: set once the listener is up,
    /// cleared when shutdown begins. The same for every gateway of the
    /// process.
    pub fn is_ready(&self) -> bool {
        self.process.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.process.ready.store(ready, Ordering::Relaxed);
    }

    /// How to ask for a reload, once a reloader runs.
    pub fn reload_handle(&self) -> Option<&ReloadHandle> {
        self.process.reload.get()
    }

    /// Makes `handle` the way to ask this process for a reload.
    pub fn set_reload_handle(&self, handle: ReloadHandle) {
        let _ = self.process.reload.set(handle);
    }

    /// The upstream client of the worker running on this thread.
    pub fn client(&self) -> &Client {
        let clients = self.clients();
        &clients[current_worker() % clients.len()]
    }

    /// Every worker's upstream client: one per worker.
    fn clients(&self) -> &[Client] {
        &self.upstream.clients
    }

    /// The dispatcher's view of the gateway.
    pub fn dispatch_context(&self) -> crate::dispatch::Context<'_> {
        crate::dispatch::Context {
            client: self.client(),
            metrics: &self.metrics,
        }
    }
    /// Every series the config makes known, at 0 from start.
    fn preset_metrics(&self) {
        use crate::backend::events::StreamErrorKind;
        use crate::backend::{BackendKind, FailureKind};
        use crate::metrics::{Known, KnownRoute};
        let failure_kinds = FailureKind::ALL.map(FailureKind::as_str);
        let limit_scopes = crate::limits::Scope::ALL.map(crate::limits::Scope::as_str);
        let mut stream_error_kinds = StreamErrorKind::ALL.map(StreamErrorKind::as_str).to_vec();
        stream_error_kinds.sort_unstable();
        stream_error_kinds.dedup();
        let known = Known {
            routes: self
                .routes
                .iter()
                .map(|r| KnownRoute {
                    name: &r.name,
                    backends: r.pool.iter().map(|m| m.backend.name.as_str()).collect(),
                    streaming: r
                        .pool
                        .iter()
                        .filter(|m| m.backend.can_stream())
                        .map(|m| m.backend.name.as_str())
                        .collect(),
                })
                .collect(),
            backends: self.backends.iter().map(|b| b.name.as_str()).collect(),
            signed_backends: self
                .backends
                .iter()
                .filter(|b| matches!(b.kind, BackendKind::SageMaker(_)))
                .map(|b| b.name.as_str())
                .collect(),
            failure_kinds: &failure_kinds,
            limit_scopes: &limit_scopes,
            stream_error_kinds: &stream_error_kinds,
            workers: self.clients().len(),
            clients: self
                .callers
                .all()
                .iter()
                .map(|c| {
                    let routes = self.routes.iter().map(|r| r.name.as_str());
                    (&*c.name, routes.filter(|r| c.may_use(r)).collect())
                })
                .collect(),
        };
        self.metrics.preset(&known);
        for (client, (name, routes)) in self.callers.all().iter().zip(&known.clients) {
            let series = routes
                .iter()
                .map(|r| ((*r).to_owned(), self.metrics.client_series(name, r)))
                .collect();
            client.set_series(series);
        }
    }
}

/// What [`Gateway::assemble`] builds on: fresh at start, the previous
/// gateway's (some of it) at a reload.
struct Base {
    metrics: Metrics,
    upstream: Upstream,
    limits: Arc<Limits>,
    diff_log: Option<Arc<DiffLog>>,
    spans: Option<Arc<dyn crate::telemetry::SpanSink>>,
    process: Arc<Process>,
}

/// The upstream HTTP client of each worker ([`crate::server`]): its own
/// pool of connections, driven by its own runtime; all made from one
/// [`Egress`], from the settings and CA files `key` says.
#[derive(Debug, Clone)]
struct Upstream {
    egress: Arc<Egress>,
    clients: Vec<Client>,
    key: carry::EgressKey,
}

impl Upstream {
    fn new(config: &Config, workers: usize, key: carry::EgressKey) -> Result<Self, BuildError> {
        let egress = Arc::new(Egress::new(config)?);
        let clients = (0..workers.max(1)).map(|_| egress.client()).collect();
        Ok(Self {
            egress,
            clients,
            key,
        })
    }
}

fn new_limits(
    config: &Config,
    workers: usize,
    metrics: &Metrics,
    previous: Option<&Arc<Limits>>,
) -> Result<Arc<Limits>, BuildError> {
    Limits::new(
        config,
        workers,
        metrics.limit_store(),
        previous.map(|p| &**p),
    )
    .map(Arc::new)
    .map_err(|e| BuildError::Limits(e.to_string()))
}

impl Probe {
    /// The health check of `backend`, if it has one: each probe's result
    /// marks it healthy or not for balancing.
    fn start(
        backend: &Arc<Backend>,
        state: &Arc<BackendState>,
        client: &Client,
    ) -> Option<Arc<Self>> {
        let state = Arc::clone(state);
        crate::backend::health_check::spawn(Arc::clone(backend), client.clone(), move |healthy| {
            state.set_healthy(healthy)
        })
        .map(|task| Arc::new(Self(task)))
    }
}

/// Each configured route with its pool: the backends it lists, sharing the
/// one `Backend` and health state per backend (`backends[i]`, `states[i]`).
/// A route of `previous` that is the same on the same backends is taken
/// over whole. A cache with `store = "redis"` is on `redis`, the
/// gateway's (its limits').
fn build_routes(
    config: &Config,
    backends: &[Arc<Backend>],
    states: &[Arc<BackendState>],
    metrics: &Metrics,
    redis: Option<&Arc<RedisStore>>,
    previous: Option<&Gateway>,
) -> Vec<Arc<Route>> {
    let index: HashMap<&str, usize> = config
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name.as_str(), i))
        .collect();
    config
        .routes
        .iter()
        .map(|r| {
            let kept = previous.and_then(|p| p.same_route(r, &config.server, backends));
            kept.unwrap_or_else(|| {
                Arc::new(new_route(
                    r, &index, backends, states, metrics, redis, config,
                ))
            })
        })
        .collect()
}

/// A route as `r` configures it, with a fresh retry budget, sessions and
/// cache (on `redis` when it says `store = "redis"`).
fn new_route(
    r: &RouteConfig,
    index: &HashMap<&str, usize>,
    backends: &[Arc<Backend>],
    states: &[Arc<BackendState>],
    metrics: &Metrics,
    redis: Option<&Arc<RedisStore>>,
    config: &Config,
) -> Route {
    Route {
        name: r.name.clone(),
        pool: r
            .backends
            .iter()
            .filter_map(|m| {
                index.get(m.backend.as_str()).map(|&i| PoolMember {
                    series: Some(metrics.pair_series(&r.name, &backends[i].name)),
                    backend: Arc::clone(&backends[i]),
                    state: Arc::clone(&states[i]),
                    weight: m.weight,
                })
            })
            .collect(),
        balance: r.balance,
        timeout: r.timeout.unwrap_or(config.server.request_timeout),
        per_try_timeout: r.per_try_timeout,
        attempts: r.attempts,
        backoff: r.backoff,
        budget: RetryBudget::new(&r.retry_budget, tokio::time::Instant::now()),
        hedge_after: r.hedge_after,
        sessions: r.sticky_sessions.then(SessionTable::default),
        stream: r.stream,
        doors: r.doors.clone(),
        cache: route_cache(r, metrics, redis),
        shadow: route_shadows(r, index, backends, metrics, config),
    }
}

/// The response caches' own connections to the Redis of `[rate_limits]`,
/// when a route keeps its cache there: apart from the limits', so that a
/// large answer read or written never holds a limit decision up behind it.
/// A route kept by a reload keeps the connections it has.
fn caches_redis(config: &Config, workers: usize) -> Option<Arc<RedisStore>> {
    let redis = config
        .routes
        .iter()
        .find_map(|r| match &r.cache.as_ref()?.store {
            CacheStore::Redis(redis) => Some(redis),
            CacheStore::Memory => None,
        })?;
    match RedisStore::new(redis, workers) {
        Ok(store) => Some(Arc::new(store)),
        Err(e) => {
            tracing::error!(error = %e, "response caches: no connection to Redis");
            None
        }
    }
}

/// The empty cache of `r`, if it has one: in memory, or on `redis`.
fn route_cache(
    r: &RouteConfig,
    metrics: &Metrics,
    redis: Option<&Arc<RedisStore>>,
) -> Option<Arc<RouteCache>> {
    let config = r.cache.as_ref()?;
    let in_redis = match config.store {
        CacheStore::Memory => None,
        CacheStore::Redis(_) => redis.map(|redis| InRedis {
            redis: Arc::clone(redis),
            errors: metrics.cache_store_errors(&r.name),
        }),
    };
    let series = metrics.cache_series(&r.name);
    Some(Arc::new(RouteCache::new(&r.name, config, series, in_redis)))
}

/// The shadows of `r`, each on the one `Backend` of its name; `None`
/// without any.
fn route_shadows(
    r: &RouteConfig,
    index: &HashMap<&str, usize>,
    backends: &[Arc<Backend>],
    metrics: &Metrics,
    config: &Config,
) -> Option<Arc<crate::shadow::RouteShadows>> {
    use crate::shadow::{RouteShadows, Shadow};
    let targets: Vec<Arc<Shadow>> = r
        .shadow
        .iter()
        .filter_map(|s| {
            let backend = Arc::clone(&backends[*index.get(s.backend.as_str())?]);
            let series = metrics.shadow_series(&r.name, &backend.name);
            Some(Arc::new(Shadow::new(backend, s.percent, series)))
        })
        .collect();
    (!targets.is_empty()).then(|| {
        Arc::new(RouteShadows::new(
            targets,
            r.shadow_max_in_flight,
            r.shadow_cosine_threshold,
            r.timeout.unwrap_or(config.server.request_timeout),
        ))
    })
}

/// Each backend learns the other backends of its routes, so that ejecting it
/// never leaves a route with nothing.
fn link_siblings(states: &[Arc<BackendState>], routes: &[Arc<Route>]) {
    for state in states {
        let siblings = routes
            .iter()
            .filter(|r| r.pool.iter().any(|m| Arc::ptr_eq(&m.state, state)))
            .map(|r| {
                r.pool
                    .iter()
                    .filter(|m| !Arc::ptr_eq(&m.state, state))
                    .map(|m| Arc::downgrade(&m.state))
                    .collect()
            })
            .collect();
        state.set_siblings(siblings);
    }
}
