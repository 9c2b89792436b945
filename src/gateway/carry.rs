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

/// Each client's limits, of the clients that have any.
fn client_limits(config: &Config) -> Vec<impl PartialEq + '_> {
    config
        .clients
        .iter()
        .map(|c| {
            let limits = (c.rate_limit, c.tokens_per_minute, c.max_in_flight);
            (c.name.as_str(), limits, &c.route_limits)
        })
        .filter(|(_, limits, on_route)| *limits != (None, None, None) || !on_route.is_empty())
        .collect()
}

/// Each route's own limits, of the routes that have any.
fn route_limits(config: &Config) -> Vec<impl PartialEq + '_> {
    config
        .routes
        .iter()
        .map(|r| (r.name.as_str(), (r.rate_limit, r.tokens_per_minute)))
        .filter(|(_, limits)| *limits != (None, None))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::gateway::BuildOptions;

    /// Two HF backends (one with a health check), a route on each, a
    /// client with a limit; `extra` appended.
    fn text(extra: &str) -> String {
        format!(
            "[backends.a]\nkind = \"huggingface\"\nurl = \"http://127.0.0.1:9\"\n\
             health_check_interval = \"1h\"\n\
             [backends.b]\nkind = \"huggingface\"\nurl = \"http://127.0.0.1:10\"\n\
             [routes.ra]\nbackends = [\"a\"]\n\
             [routes.rb]\nbackends = [\"b\"]\n\
             [clients.app]\napi_key = \"carry-test-key\"\nrate_limit = {{ requests_per_second = 5, burst = 5 }}\n\
             {extra}"
        )
    }

    fn config(extra: &str) -> Config {
        Config::from_toml(&text(extra), &|_| None).unwrap()
    }

    async fn gateway(extra: &str) -> Arc<Gateway> {
        Gateway::build(config(extra), BuildOptions::default())
            .await
            .unwrap()
    }

    fn backend<'a>(gw: &'a Gateway, name: &str) -> (&'a Arc<Backend>, &'a Arc<BackendState>) {
        let i = gw.backends.iter().position(|b| b.name == name).unwrap();
        (&gw.backends[i], &gw.states[i])
    }

    fn same_backend(old: &Gateway, new: &Gateway, name: &str) -> bool {
        let (ob, os) = backend(old, name);
        let (nb, ns) = backend(new, name);
        Arc::ptr_eq(ob, nb) && Arc::ptr_eq(os, ns)
    }

    fn same_route(old: &Gateway, new: &Gateway, name: &str) -> bool {
        Arc::ptr_eq(old.routes.get(name).unwrap(), new.routes.get(name).unwrap())
    }

    #[tokio::test]
    async fn what_did_not_change_is_taken_over_whole() {
        let old = gateway("").await;
        let new = old
            .rebuild(config("[routes.rc]\nbackends = [\"a\", \"b\"]\n"))
            .await
            .unwrap();
        assert!(same_backend(&old, &new, "a") && same_backend(&old, &new, "b"));
        assert!(same_route(&old, &new, "ra") && same_route(&old, &new, "rb"));
        assert!(Arc::ptr_eq(&old.limits, &new.limits));
        assert!(Arc::ptr_eq(&old.egress, &new.egress));
        assert!(Arc::ptr_eq(&old.process, &new.process));
        let probe = |gw: &Gateway| gw.probes[0].clone().unwrap();
        assert!(
            Arc::ptr_eq(&probe(&old), &probe(&new)),
            "the health check runs on"
        );
        // The new route's pool is made of the same backends and states, so
        // an ejection seen through one route is seen through every other.
        let rc = new.routes.get("rc").unwrap();
        assert!(Arc::ptr_eq(&rc.pool[0].state, backend(&old, "a").1));
        // Clients are read afresh.
        assert_eq!(new.callers.all().len(), 1);
    }

    #[tokio::test]
    async fn a_changed_backend_starts_fresh_with_its_routes_and_the_rest_stays() {
        let old = gateway("").await;
        let changed = text("").replace(
            "url = \"http://127.0.0.1:10\"\n",
            "url = \"http://127.0.0.1:10\"\ntimeout = \"5s\"\n",
        );
        let new = old
            .rebuild(Config::from_toml(&changed, &|_| None).unwrap())
            .await
            .unwrap();
        assert!(same_backend(&old, &new, "a") && same_route(&old, &new, "ra"));
        assert!(!same_backend(&old, &new, "b"));
        assert!(
            !same_route(&old, &new, "rb"),
            "its route follows the new backend"
        );
        assert!(Arc::ptr_eq(&old.limits, &new.limits));
    }

    #[tokio::test]
    async fn a_changed_route_or_limit_starts_fresh() {
        let old = gateway("").await;
        let retimed = text("").replace(
            "[routes.rb]\nbackends = [\"b\"]\n",
            "[routes.rb]\nbackends = [\"b\"]\ntimeout = \"9s\"\n",
        );
        let new = old
            .rebuild(Config::from_toml(&retimed, &|_| None).unwrap())
            .await
            .unwrap();
        assert!(same_backend(&old, &new, "b"), "its backend did not change");
        assert!(!same_route(&old, &new, "rb"));
        let limited = text("").replace("burst = 5", "burst = 6");
        let newer = new
            .rebuild(Config::from_toml(&limited, &|_| None).unwrap())
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&new.limits, &newer.limits));
        assert!(same_route(&old, &newer, "ra"));
    }

    #[tokio::test]
    async fn a_changed_upstream_client_starts_everything_fresh() {
        let old = gateway("").await;
        let new = old
            .rebuild(config("[upstream]\nconnect_timeout = \"1s\"\n"))
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&old.egress, &new.egress));
        assert!(!same_backend(&old, &new, "a") && !same_route(&old, &new, "ra"));
        assert!(Arc::ptr_eq(&old.process, &new.process), "readiness stays");
    }

    #[tokio::test]
    async fn a_removed_backend_stops_being_probed_once_its_gateway_goes() {
        let old = gateway("").await;
        let probed = Arc::downgrade(backend(&old, "a").0);
        let without_a = text("")
            .replace("[routes.ra]\nbackends = [\"a\"]\n", "")
            .replace(
                "[backends.a]\nkind = \"huggingface\"\nurl = \"http://127.0.0.1:9\"\nhealth_check_interval = \"1h\"\n",
                "",
            );
        let new = old
            .rebuild(Config::from_toml(&without_a, &|_| None).unwrap())
            .await
            .unwrap();
        assert_eq!(new.backends.len(), 1);
        drop(old);
        // The probe's task held the backend; aborted, it lets it go.
        let gone = tokio::time::timeout(Duration::from_secs(5), async {
            while probed.upgrade().is_some() {
                tokio::task::yield_now().await;
            }
        });
        assert!(
            gone.await.is_ok(),
            "the removed backend's health check still runs"
        );
    }
}
