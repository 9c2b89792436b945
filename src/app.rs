//! The gateway: everything a request needs, built once from the config.
//!
//! [`Gateway::build`] turns a validated [`Config`] into the route table, the
//! backends (with their credential chains), the one shared upstream client
//! and the metrics. [`Gateway::handle`] is the whole service a connection
//! runs; the order in which a request meets each concern is:
//!
//! 1. request id: taken from `x-request-id` or made, echoed on every answer
//!    ([`crate::api`]);
//! 2. routing by path: `/v1/predict/{route}`, `/healthz`, `/readyz`,
//!    `/metrics`, `/v1/routes` ([`crate::api`]);
//! 3. body limit: a declared length over `server.max_body_bytes` is refused
//!    before the body is read, a chunked body as soon as it passes the limit
//!    ([`crate::api::predict`]);
//! 4. dispatch: deadline, attempts, failover ([`crate::dispatch`]);
//! 5. backend: adapt, authenticate, send, classify ([`crate::backend`]);
//! 6. access log and metrics, once per request ([`crate::api::predict`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use http::{Request, Response};

use crate::api;
use crate::backend::Backend;
use crate::config::Config;
use crate::dispatch::RetryPolicy;
use crate::metrics::Metrics;
use crate::route::{PoolMember, Route, RouteTable};

/// The response body type of every answer the gateway gives.
pub type ResBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("backends.{backend}: {message}")]
    Backend { backend: String, message: String },
    #[error("could not build the upstream HTTP client: {0}")]
    Client(String),
    #[error("could not register metrics: {0}")]
    Metrics(String),
}

/// Extra inputs to [`Gateway::build`] that do not come from the config file.
#[derive(Default)]
pub struct BuildOptions {
    /// Credentials providers by backend name, replacing aws-config's default
    /// chain for those backends (the demo uses fixed demo keys).
    pub credentials: HashMap<String, SharedCredentialsProvider>,
}

/// The running gateway's shared state.
#[derive(Debug)]
pub struct Gateway {
    pub config: Config,
    pub routes: RouteTable,
    pub backends: Vec<Arc<Backend>>,
    pub client: reqwest::Client,
    pub metrics: Metrics,
    pub policy: RetryPolicy,
    ready: AtomicBool,
}

impl Gateway {
    /// Builds backends, routes, the upstream client and the metrics.
    pub async fn build(config: Config, mut opts: BuildOptions) -> Result<Arc<Self>, BuildError> {
        let mut backends = Vec::with_capacity(config.backends.len());
        for cfg in &config.backends {
            let provider = opts.credentials.remove(&cfg.name);
            let backend = Backend::from_config(cfg, provider)
                .await
                .map_err(|message| BuildError::Backend {
                    backend: cfg.name.clone(),
                    message,
                })?;
            backends.push(Arc::new(backend));
        }
        let by_name: HashMap<&str, &Arc<Backend>> =
            backends.iter().map(|b| (b.name.as_str(), b)).collect();
        let routes = config
            .routes
            .iter()
            .map(|r| Route {
                name: r.name.clone(),
                pool: r
                    .backends
                    .iter()
                    .filter_map(|m| {
                        by_name.get(m.backend.as_str()).map(|b| PoolMember {
                            backend: Arc::clone(b),
                            weight: m.weight,
                        })
                    })
                    .collect(),
                timeout: r.timeout.unwrap_or(config.server.request_timeout),
                attempts: r.attempts,
            })
            .collect();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.upstream.connect_timeout)
            .pool_idle_timeout(config.upstream.pool_idle_timeout)
            .pool_max_idle_per_host(config.upstream.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .user_agent(concat!("infergate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Client(e.to_string()))?;
        let metrics = Metrics::new().map_err(|e| BuildError::Metrics(e.to_string()))?;
        Ok(Arc::new(Self {
            routes: RouteTable::new(routes),
            backends,
            client,
            metrics,
            policy: RetryPolicy::default(),
            ready: AtomicBool::new(false),
            config,
        }))
    }

    /// Serves one request.
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>) -> Response<ResBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<crate::app::BoxError>,
    {
        api::handle(self, req).await
    }

    /// Whether the gateway takes traffic: set once the listener is up,
    /// cleared when shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}
