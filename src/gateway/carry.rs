//! What a reload takes over from the gateway it replaces: the state of
//! whatever the new config leaves as it was. A backend whose settings
//! changed, a route whose settings or backends changed, and everything when
//! the upstream client changed start fresh.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Gateway, Probe};
use crate::backend::Backend;
use crate::config::{BackendConfig, Config, RouteConfig, ServerConfig, UpstreamConfig};
use crate::route::health::BackendState;
use crate::route::Route;

/// What the upstream clients are made of: `[upstream]`, and each CA file
/// they trust, by whom, with its content as it was read (a file rewritten
/// in place is a change too). Equal keys: the clients (and their
/// connections) of one serve the other's config as they are.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EgressKey {
    upstream: UpstreamConfig,
    ca_files: Vec<(String, PathBuf, Option<Vec<u8>>)>,
}

impl EgressKey {
    pub(super) fn of(config: &Config) -> Self {
        let backends = config
            .backends
            .iter()
            .filter_map(|b| Some((b.base_url(), b.tls_ca_file.clone()?)));
        let ca_files = config
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
            .collect();
        Self {
            upstream: config.upstream.clone(),
            ca_files,
        }
    }
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
    /// (its deadline, the server's default included) and every backend of its
    /// pool is one of `backends`, taken over.
    pub(super) fn same_route(
        &self,
        cfg: &RouteConfig,
        server: &ServerConfig,
        backends: &[Arc<Backend>],
    ) -> Option<Arc<Route>> {
        let old = self.config.routes.iter().find(|r| r.name == cfg.name)?;
        let route = self.routes.get(&cfg.name)?;
        let deadline = |r: &RouteConfig, s: &ServerConfig| r.timeout.unwrap_or(s.request_timeout);
        let same = *old == *cfg
            && deadline(old, &self.config.server) == deadline(cfg, server)
            && route
                .pool
                .iter()
                .map(|m| &m.backend)
                .chain(
                    route
                        .shadow
                        .iter()
                        .flat_map(|s| s.targets.iter().map(|t| &t.backend)),
                )
                .all(|backend| backends.iter().any(|b| Arc::ptr_eq(b, backend)));
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
             [clients.app]\napi_key = \"carry-test-key\"\n\
             rate_limit = {{ requests_per_second = 5, burst = 5 }}\n\
             {extra}"
        )
    }

    fn config(extra: &str) -> Config {
        parse(&text(extra))
    }

    fn parse(text: &str) -> Config {
        Config::from_toml(text, &|_| None).unwrap()
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

    fn same_upstream(old: &Gateway, new: &Gateway) -> bool {
        Arc::ptr_eq(&old.upstream.egress, &new.upstream.egress)
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
        assert!(same_upstream(&old, &new));
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
    }

    #[tokio::test]
    async fn clients_are_read_afresh() {
        use crate::clients::Identity;
        let old = gateway("").await;
        let rekeyed = text("[clients.ops]\napi_key = \"carry-ops-key\"\n")
            .replace("carry-test-key", "carry-new-key");
        let new = old.rebuild(parse(&rekeyed)).await.unwrap();
        let who = |gw: &Gateway, key: &str| {
            let mut headers = http::HeaderMap::new();
            let value = http::HeaderValue::try_from(format!("Bearer {key}")).unwrap();
            headers.insert(http::header::AUTHORIZATION, value);
            match gw.callers.identify(&headers) {
                Identity::Client(c) => c.name.to_string(),
                Identity::Anonymous => "anonymous".into(),
                Identity::Unknown => "unknown".into(),
            }
        };
        assert_eq!(who(&old, "carry-test-key"), "app");
        assert_eq!(who(&old, "carry-ops-key"), "unknown");
        // The old key is revoked, the new one and the new client known.
        assert_eq!(who(&new, "carry-test-key"), "unknown");
        assert_eq!(who(&new, "carry-new-key"), "app");
        assert_eq!(who(&new, "carry-ops-key"), "ops");
    }

    #[tokio::test]
    async fn a_changed_backend_starts_fresh_with_its_routes_and_the_rest_stays() {
        let old = gateway("").await;
        let changed = text("").replace(
            "url = \"http://127.0.0.1:10\"\n",
            "url = \"http://127.0.0.1:10\"\ntimeout = \"5s\"\n",
        );
        let new = old.rebuild(parse(&changed)).await.unwrap();
        assert!(same_backend(&old, &new, "a") && same_route(&old, &new, "ra"));
        let (ob, os) = backend(&old, "b");
        let (nb, ns) = backend(&new, "b");
        assert!(!Arc::ptr_eq(ob, nb) && !Arc::ptr_eq(os, ns));
        assert!(
            !same_route(&old, &new, "rb"),
            "its route follows the new backend"
        );
    }

    #[tokio::test]
    async fn a_changed_route_starts_fresh() {
        let old = gateway("").await;
        let retimed = text("").replace(
            "[routes.rb]\nbackends = [\"b\"]\n",
            "[routes.rb]\nbackends = [\"b\"]\ntimeout = \"9s\"\n",
        );
        let new = old.rebuild(parse(&retimed)).await.unwrap();
        assert!(same_backend(&old, &new, "b"), "its backend did not change");
        assert!(!same_route(&old, &new, "rb"));
        assert!(same_route(&old, &new, "ra"));
        // The server's default deadline is a route's when it sets none.
        let server = format!("[server]\nrequest_timeout = \"9s\"\n{retimed}");
        let newer = new.rebuild(parse(&server)).await.unwrap();
        assert!(
            same_route(&new, &newer, "rb"),
            "its own deadline did not change"
        );
        assert!(!same_route(&new, &newer, "ra"));
    }

    #[tokio::test]
    async fn a_kept_route_keeps_its_cache_and_a_changed_one_starts_empty() {
        use crate::cache::{Entry, Stored};
        let cached = "[routes.rc]\nbackends = [\"a\"]\ncache = { ttl = \"1h\" }\n";
        let old = gateway(cached).await;
        let cache = |gw: &Gateway| Arc::clone(gw.routes.get("rc").unwrap().cache.as_ref().unwrap());
        let entry = || {
            let body = Stored::Full(bytes::Bytes::from_static(b"{}"));
            Entry::new(http::StatusCode::OK, http::HeaderMap::new(), body, None)
        };
        cache(&old).insert([7; 32], entry(), 0);
        let new = old.rebuild(config(cached)).await.unwrap();
        assert!(Arc::ptr_eq(&cache(&old), &cache(&new)));
        assert_eq!(cache(&new).entry_count(), 1);
        let longer = cached.replace("1h", "2h");
        let newer = new.rebuild(config(&longer)).await.unwrap();
        assert!(!same_route(&new, &newer, "rc"));
        assert_eq!(cache(&newer).entry_count(), 0);
    }

    #[tokio::test]
    async fn a_route_whose_shadow_backend_changed_starts_fresh() {
        let shadowed =
            "[routes.rs]\nbackends = [\"a\"]\nshadow = [{ backend = \"b\", percent = 5 }]\n";
        let old = gateway(shadowed).await;
        let shadow_of = |gw: &Gateway| {
            let route = gw.routes.get("rs").unwrap();
            Arc::clone(&route.shadow.as_ref().unwrap().targets[0].backend)
        };
        assert!(Arc::ptr_eq(&shadow_of(&old), backend(&old, "b").0));
        let new = old.rebuild(config(shadowed)).await.unwrap();
        assert!(same_route(&old, &new, "rs"), "nothing changed");
        // Only the shadow's backend changes: the route must follow it.
        let changed = text(shadowed).replace(
            "url = \"http://127.0.0.1:10\"\n",
            "url = \"http://127.0.0.1:10\"\ntimeout = \"5s\"\n",
        );
        let newer = new.rebuild(parse(&changed)).await.unwrap();
        assert!(!same_route(&new, &newer, "rs"));
        assert!(Arc::ptr_eq(&shadow_of(&newer), backend(&newer, "b").0));
    }

    #[tokio::test]
    async fn a_changed_upstream_client_builds_the_backends_again_and_keeps_their_health() {
        let old = gateway("").await;
        let new = old
            .rebuild(config("[upstream]\nconnect_timeout = \"1s\"\n"))
            .await
            .unwrap();
        assert!(!same_upstream(&old, &new));
        assert!(!Arc::ptr_eq(backend(&old, "a").0, backend(&new, "a").0));
        assert!(
            Arc::ptr_eq(backend(&old, "a").1, backend(&new, "a").1),
            "its health stays"
        );
        assert!(
            !same_route(&old, &new, "ra"),
            "its pool holds the new backend"
        );
        assert!(Arc::ptr_eq(&old.process, &new.process), "readiness stays");
    }

    #[tokio::test]
    async fn a_ca_file_rewritten_in_place_is_a_new_upstream_client() {
        let dir = std::env::temp_dir().join(format!("infergate-carry-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let pem = || {
            let names = vec!["ca.test".to_owned()];
            rcgen::generate_simple_self_signed(names)
                .unwrap()
                .cert
                .pem()
        };
        std::fs::write(&ca, pem()).unwrap();
        let extra = format!("[upstream]\ntls_ca_file = \"{}\"\n", ca.display());
        let old = gateway(&extra).await;
        let same = old.rebuild(config(&extra)).await.unwrap();
        assert!(same_upstream(&old, &same));
        // A rotated CA: the same path, another certificate.
        std::fs::write(&ca, pem()).unwrap();
        let rotated = same.rebuild(config(&extra)).await.unwrap();
        assert!(!same_upstream(&same, &rotated));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_removed_backend_stops_being_probed_once_its_gateway_goes() {
        let old = gateway("").await;
        let probed = Arc::downgrade(backend(&old, "a").0);
        let without_a = text("")
            .replace("[routes.ra]\nbackends = [\"a\"]\n", "")
            .replace(
                "[backends.a]\nkind = \"huggingface\"\nurl = \"http://127.0.0.1:9\"\n\
                 health_check_interval = \"1h\"\n",
                "",
            );
        let new = old.rebuild(parse(&without_a)).await.unwrap();
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
