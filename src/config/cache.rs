//! Phase two for `routes.<name>.cache`: the route's response cache
//! ([`crate::cache`] serves from it).
//!
//! `store = "memory"` (the default) keeps the answers in the process;
//! `store = "redis"` in the gateway's one Redis, the one `[rate_limits]`
//! configures (`store = "redis"`, `redis_url` or `redis_urls`), so a route
//! names no Redis of its own.

use super::bounds::{self, duration, integer};
use super::diag::{key_path, Diagnostics};
use super::raw::RawCache;
use super::{CacheConfig, CacheStore, LimitStore, RateLimitsConfig, DEFAULT_CACHE_MAX_BYTES};

/// The validated cache of the route at `path` (`routes.flan.cache`), with
/// `rate_limits` for `store = "redis"` (`None` when `[rate_limits]` itself
/// was refused: no more is said of it here); `None` without a ttl or a
/// store (the config is refused then anyway).
pub(super) fn cache(
    raw: RawCache,
    path: &str,
    rate_limits: Option<&RateLimitsConfig>,
    diag: &mut Diagnostics,
) -> Option<CacheConfig> {
    let ttl_path = key_path(path, "ttl");
    let ttl = match raw.ttl {
        None => {
            diag.error(&ttl_path, r#"required, e.g. ttl = "10m""#);
            None
        }
        some => Some(duration(
            some,
            &ttl_path,
            bounds::CACHE_TTL,
            std::time::Duration::ZERO,
            diag,
        )),
    };
    let store_path = key_path(path, "store");
    let store = match raw.store.as_deref() {
        None | Some("memory") => Some(CacheStore::Memory),
        Some("redis") => match rate_limits.map(|r| &r.store) {
            Some(LimitStore::Redis(redis)) => Some(CacheStore::Redis(redis.clone())),
            Some(LimitStore::Memory) => {
                diag.error(
                    &store_path,
                    r#""redis" uses the gateway's Redis of [rate_limits]: set rate_limits.store = "redis" and rate_limits.redis_url (or redis_urls with redis_mode = "cluster")"#,
                );
                None
            }
            None => None,
        },
        Some(other) => {
            let shown = diag.show(&store_path, other);
            diag.error(
                &store_path,
                format!(r#"unknown store {shown}, expected "memory" or "redis""#),
            );
            None
        }
    };
    let max_bytes = integer(
        raw.max_bytes,
        &key_path(path, "max_bytes"),
        bounds::CACHE_MAX_BYTES,
        DEFAULT_CACHE_MAX_BYTES,
        diag,
    );
    Some(CacheConfig {
        ttl: ttl?,
        store: store?,
        max_bytes,
        shared: raw.shared.unwrap_or(false),
        sampling: raw.sampling.unwrap_or(false),
    })
}
