//! What a reload takes over from the gateway it replaces: the state of
//! whatever the new config leaves as it was. A backend whose settings
//! changed, a route whose settings or backends changed, and everything when
//! the upstream client changed start fresh.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Gateway, Probe};
use crate::backend::Backend;
use crate::config::{BackendConfig, Config, RouteConfig, ServerConfig};
use crate::route::health::BackendState;
use crate::route::Route;

/// Whether the upstream clients (and their connections) of `old` serve
/// `new` as they are: the same `[upstream]`, and the same CA files with the
/// same content for the same backends.
pub(super) fn same_egress(old: &Config, new: &Config) -> bool {
    old.upstream == new.upstream
        && ca_files(old) == ca_files(new)
        && old.server.worker_count() == new.server.worker_count()
}

/// Every CA file the upstream client trusts, by whom, with its content
/// (a file rewritten in place is a change too).
fn ca_files(config: &Config) -> Vec<(String, PathBuf, Option<Vec<u8>>)> {
    let backends = config
        .backends
        .iter()
        .filter_map(|b| Some((b.base_url(), b.tls_ca_file.clone()?)));
    config
        .upstream
        .tls_ca_file
        .clone()
        .map(|f| (String::new(), f))
        .into_iter()
        .chain(backends)
        .map(|(who, file)| {
            let content = std::fs::read(&file).ok();
            (who, file, content)
        })
        .collect()
}

/// Whether the limits of `old` are those of `new`, so that their buckets
/// (and the requests they count in flight) carry over.
pub(super) fn same_limits(old: &Config, new: &Config) -> bool {
    old.rate_limits == new.rate_limits
        && old.server.worker_count() == new.server.worker_count()
        && client_limits(old) == client_limits(new)
        && route_limits(old) == route_limits(new)
}

/// Each client's limits.
fn client_limits(config: &Config) -> Vec<impl PartialEq + '_> {
    config
        .clients
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.rate_limit,
                c.tokens_per_minute,
                c.max_in_flight,
                &c.route_limits,
            )
        })
        .collect()
}

/// Each route's own limits.
fn route_limits(config: &Config) -> Vec<impl PartialEq + '_> {
    config
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.rate_limit, r.tokens_per_minute))
        .collect()
}

/// What a backend takes over: itself, its health, its health check.
type Kept = (Arc<Backend>, Arc<BackendState>, Option<Arc<Probe>>);

impl Gateway {
    /// This gateway's backend of `cfg`'s name, if its settings are `cfg`'s.
    pub(super) fn same_backend(&self, cfg: &BackendConfig) -> Option<Kept> {
        let i = self
            .config
            .backends
            .iter()
            .position(|b| b.name == cfg.name)?;
        (self.config.backends[i] == *cfg).then(|| {
            (
                Arc::clone(&self.backends[i]),
                Arc::clone(&self.states[i]),
                self.probes[i].clone(),
            )
        })
    }

    /// This gateway's route of `cfg`'s name, if its settings are `cfg`'s
    /// (the server's default deadline included) and every backend of its
    /// pool is one of `backends`, taken over.
    pub(super) fn same_route(
        &self,
        cfg: &RouteConfig,
        server: &ServerConfig,
        backends: &[Arc<Backend>],
    ) -> Option<Arc<Route>> {
        let old = self.config.routes.iter().find(|r| r.name == cfg.name)?;
        let route = self.routes.get(&cfg.name)?;
        let same = *old == *cfg
            && self.config.server.request_timeout == server.request_timeout
            && route
                .pool
                .iter()
                .all(|m| backends.iter().any(|b| Arc::ptr_eq(b, &m.backend)));
        same.then(|| Arc::clone(route))
    }
}
