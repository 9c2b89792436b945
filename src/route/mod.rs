//! Routes: a config route name → a pool of backends and the policy that
//! governs it (balancing, attempts, deadline, backoff, retry budget,
//! hedging, sticky sessions).
//!
//! The route table is built once at start and is immutable afterwards; what
//! changes at run time lives in the backends' [`health::BackendState`]
//! (shared by every route that lists a backend), each route's
//! [`budget::RetryBudget`] and its [`sticky::SessionTable`].
//! A route knows nothing about how a backend authenticates; a backend knows
//! nothing about routes.

pub mod balancer;
pub mod budget;
pub mod ewma;
pub mod health;
pub mod sticky;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::config::BackoffConfig;
use crate::config::{Balance, DoorKind, StreamConfig};
use budget::RetryBudget;

/// One backend in a route's pool.
#[derive(Debug)]
pub struct PoolMember {
    pub backend: Arc<Backend>,
    pub state: Arc<health::BackendState>,
    pub weight: u32,
    /// The pair's success series, looked up once (none in tests that
    /// build pools by hand: the metrics are then looked up per request).
    pub series: Option<crate::metrics::PairSeries>,
}

/// One route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub pool: Vec<PoolMember>,
    pub balance: Balance,
    /// The whole-request deadline for this route.
    pub timeout: Duration,
    /// Longest single attempt, when set.
    pub per_try_timeout: Option<Duration>,
    /// Total tries per request, the first included.
    pub attempts: u32,
    /// Backoff between attempts on the same backend.
    pub backoff: BackoffConfig,
    pub budget: RetryBudget,
    /// Send one more attempt to another backend after this long without an
    /// answer.
    pub hedge_after: Option<Duration>,
    /// Session id → backend, when sticky sessions are on.
    pub sessions: Option<sticky::SessionTable>,
    /// Timeouts and keep-alives of the route's streams.
    pub stream: StreamConfig,
    /// The doors the route is served on, when its config names them.
    pub doors: Option<Vec<DoorKind>>,
    /// The route's response cache, when its config has one: part of the
    /// route's state, so a reload that keeps the route keeps its entries.
    pub cache: Option<Arc<crate::cache::RouteCache>>,
    /// The route's shadows, when its config lists some: their counts are
    /// part of the route's state, kept by a reload that keeps the route.
    pub shadow: Option<Arc<crate::shadow::RouteShadows>>,
}

impl Route {
    /// Whether the route is served on `door`: a route outside a door is
    /// answered there as an unknown one.
    pub fn on_door(&self, door: DoorKind) -> bool {
        self.doors.as_ref().is_none_or(|d| d.contains(&door))
    }
}

/// Every route, by name.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: HashMap<String, Arc<Route>>,
    order: Vec<Arc<Route>>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        Self::from_shared(routes.into_iter().map(Arc::new).collect())
    }

    /// The table of routes some of which another table holds too (a
    /// reload keeps the routes that did not change).
    pub fn from_shared(order: Vec<Arc<Route>>) -> Self {
        let routes = order
            .iter()
            .map(|r| (r.name.clone(), Arc::clone(r)))
            .collect();
        Self { routes, order }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.get(name)
    }

    /// Routes in config order (sorted by name).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.order.iter()
    }
}
