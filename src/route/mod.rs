//! Routes: a config route name → a weighted pool of backends and its policy.
//!
//! The route table is built once at start from the validated config and is
//! immutable afterwards; a request looks its route up by name and asks the
//! [`balancer`] for a backend. A route knows nothing about how a backend
//! authenticates; a backend knows nothing about routes.

pub mod balancer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;

/// One backend in a route's pool.
#[derive(Debug)]
pub struct PoolMember {
    pub backend: Arc<Backend>,
    pub weight: u32,
}

/// One route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub pool: Vec<PoolMember>,
    /// The whole-request deadline for this route.
    pub timeout: Duration,
    /// Total tries per request, the first included.
    pub attempts: u32,
}

impl Route {
    /// Picks a backend for the next attempt, preferring those not yet tried.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        balancer::pick_weighted(&self.pool, tried, fastrand::u64(..))
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
        let order: Vec<Arc<Route>> = routes.into_iter().map(Arc::new).collect();
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
