//! The gateway's shared state: everything a request needs, built once from
//! the config.
//!
//! [`Gateway::build`] turns a validated [`Config`] into the route table, the
//! backends (with their credential chains), each worker's upstream client (from one [`Egress`])
//! and the metrics. The front doors ([`crate::api`]) and the service stack
//! ([`crate::app`]) read it; it imports neither, so shared state sits below
//! every layer that uses it.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;

use crate::backend::Backend;
use crate::clients::Clients;
use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::route::budget::RetryBudget;
use crate::route::health::BackendState;
use crate::route::sticky::SessionTable;
use crate::route::{PoolMember, Route, RouteTable};
use crate::upstream::{Client, Egress};

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
    /// The upstream HTTP client of each worker ([`crate::server`]): its own
    /// pool of connections, driven by its own runtime.
    clients: Vec<Client>,
    pub metrics: Metrics,
    /// Who may call (`[clients.NAME]`, `server.auth`).
    pub callers: Clients,
    /// How much they may spend (`rate_limit`, `max_in_flight`).
    pub limits: Arc<Limits>,
    /// Where finished request spans go, when configured.
    pub spans: Option<Arc<dyn crate::telemetry::SpanSink>>,
    ready: AtomicBool,
    /// Active health-check tasks, stopped when the gateway is dropped.
    health_checks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Gateway {
    /// Builds backends, routes, the upstream client and the metrics.
    pub async fn build(config: Config, mut opts: BuildOptions) -> Result<Arc<Self>, BuildError> {
        let metrics = Metrics::new().map_err(|e| BuildError::Metrics(e.to_string()))?;
        let egress = Egress::new(&config)?;
        let backends = build_backends(&config, &mut opts.credentials, &metrics, &egress).await?;
        let states: Vec<Arc<BackendState>> = config
            .backends
            .iter()
            .map(|b| Arc::new(BackendState::new(&b.name, b.max_in_flight, b.outlier)))
            .collect();
        let routes = build_routes(&config, &backends, &states, &metrics);
        link_siblings(&states, &routes);
        let clients = (0..config.server.worker_count())
            .map(|_| egress.client())
            .collect();
        let callers = Clients::new(config.server.auth, &config.clients);
        let limits = Limits::new(&config, metrics.store_errors())
            .map(Arc::new)
            .map_err(|e| BuildError::Limits(e.to_string()))?;
        let gateway = Arc::new(Self {
            callers,
            limits,
            routes: RouteTable::new(routes),
            backends,
            states,
            clients,
            metrics,
            spans: opts.spans.take(),
            ready: AtomicBool::new(false),
            health_checks: std::sync::Mutex::new(Vec::new()),
            config,
        });
        gateway.preset_metrics();
        gateway.start_health_checks();
        Ok(gateway)
    }

    /// Whether the gateway takes traffic: set once the listener is up,
    /// cleared when shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The upstream client of the worker running on this thread.
    pub fn client(&self) -> &Client {
        let i = current_worker();
        &self.clients[i % self.clients.len()]
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
            stream_error_kinds: &stream_error_kinds,
            workers: self.clients.len(),
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
    }

    /// Starts a task per backend with an active health check configured;
    /// each probe's result marks the backend healthy or not for balancing.
    fn start_health_checks(&self) {
        let mut tasks = Vec::new();
        for (backend, state) in self.backends.iter().zip(&self.states) {
            let state = Arc::clone(state);
            if let Some(task) = crate::backend::health_check::spawn(
                Arc::clone(backend),
                self.client().clone(),
                move |healthy| state.set_healthy(healthy),
            ) {
                tasks.push(task);
            }
        }
        if let Ok(mut slot) = self.health_checks.lock() {
            *slot = tasks;
        }
    }
}

/// Every backend in config order, with the credentials provider given for it
/// if any (else its default chain).
async fn build_backends(
    config: &Config,
    credentials: &mut HashMap<String, SharedCredentialsProvider>,
    metrics: &Metrics,
    egress: &Egress,
) -> Result<Vec<Arc<Backend>>, BuildError> {
    let mut backends = Vec::with_capacity(config.backends.len());
    for cfg in &config.backends {
        let provider = credentials.remove(&cfg.name);
        let backend = Backend::from_config(cfg, provider, metrics, egress)
            .await
            .map_err(|source| BuildError::Backend {
                backend: cfg.name.clone(),
                source,
            })?;
        backends.push(Arc::new(backend));
    }
    Ok(backends)
}

/// Each configured route with its pool: the backends it lists, sharing the
/// one `Backend` and health state per backend (`backends[i]`, `states[i]`).
fn build_routes(
    config: &Config,
    backends: &[Arc<Backend>],
    states: &[Arc<BackendState>],
    metrics: &Metrics,
) -> Vec<Route> {
    let index: HashMap<&str, usize> = config
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name.as_str(), i))
        .collect();
    let now = tokio::time::Instant::now();
    config
        .routes
        .iter()
        .map(|r| Route {
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
            budget: RetryBudget::new(&r.retry_budget, now),
            hedge_after: r.hedge_after,
            sessions: r.sticky_sessions.then(SessionTable::default),
            stream: r.stream,
            doors: r.doors.clone(),
        })
        .collect()
}

/// Each backend learns the other backends of its routes, so that ejecting it
/// never leaves a route with nothing.
fn link_siblings(states: &[Arc<BackendState>], routes: &[Route]) {
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

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(tasks) = self.health_checks.get_mut() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}
