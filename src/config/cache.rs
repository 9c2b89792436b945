//! Phase two for `routes.<name>.cache`: the route's response cache
//! ([`crate::cache`] serves from it).
//!
//! Only the in-memory store exists; `store = "redis"` is refused by name
//! rather than taken for an unknown word, so that a config written for a
//! later version says what is missing.

use super::bounds::{self, duration, integer};
use super::diag::{key_path, Diagnostics};
use super::raw::RawCache;
use super::{CacheConfig, DEFAULT_CACHE_MAX_BYTES};

/// The validated cache of the route at `path` (`routes.flan.cache`);
/// `None` without a ttl (the config is refused then anyway).
pub(super) fn cache(raw: RawCache, path: &str, diag: &mut Diagnostics) -> Option<CacheConfig> {
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
    match raw.store.as_deref() {
        None | Some("memory") => {}
        Some("redis") => diag.error(
            &key_path(path, "store"),
            r#""redis" is not available yet; use "memory""#,
        ),
        Some(other) => {
            let key = key_path(path, "store");
            let shown = diag.show(&key, other);
            diag.error(&key, format!(r#"unknown store {shown}, expected "memory""#));
        }
    }
    let max_bytes = integer(
        raw.max_bytes,
        &key_path(path, "max_bytes"),
        bounds::CACHE_MAX_BYTES,
        DEFAULT_CACHE_MAX_BYTES,
        diag,
    );
    Some(CacheConfig {
        ttl: ttl?,
        max_bytes,
        shared: raw.shared.unwrap_or(false),
        sampling: raw.sampling.unwrap_or(false),
    })
}
