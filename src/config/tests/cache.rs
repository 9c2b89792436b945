//! `routes.<name>.cache`: its defaults, and every refusal at its key path.

use super::*;
use crate::config::{CacheConfig, CacheStore, LimitStore};

/// The minimal config with `cache = <table>` in `[routes.flan]`.
fn cached(table: &str) -> String {
    format!("{SM}{HF}{ROUTE}cache = {table}\n")
}

#[test]
fn a_cache_takes_its_defaults() {
    let config = parse(&cached(r#"{ ttl = "10m" }"#));
    assert_eq!(
        config.routes[0].cache,
        Some(CacheConfig {
            ttl: std::time::Duration::from_secs(600),
            store: CacheStore::Memory,
            max_bytes: 256 << 20,
            shared: false,
            sampling: false,
        })
    );
    let config = parse(&cached(
        r#"{ ttl = "1s", store = "memory", max_bytes = 1024, shared = true, sampling = true }"#,
    ));
    let cache = config.routes[0].cache.as_ref().unwrap();
    assert_eq!(
        (cache.max_bytes, cache.shared, cache.sampling),
        (1024, true, true)
    );
    assert_eq!(parse(&minimal("")).routes[0].cache, None);
}

/// `store = "redis"` is the Redis of `[rate_limits]`, its settings
/// copied, so that a route follows a change of them.
#[test]
fn a_cache_in_redis_is_on_the_redis_of_the_rate_limits() {
    let limits = "[rate_limits]\nstore = \"redis\"\nredis_url = \"redis://10.0.0.5:6379\"\ntimeout = \"80ms\"\n";
    let text = format!(
        "{limits}{}",
        cached(r#"{ ttl = "1m", store = "redis", max_bytes = 2048 }"#)
    );
    let config = parse(&text);
    let LimitStore::Redis(redis) = &config.rate_limits.store else {
        panic!("{:?}", config.rate_limits);
    };
    let cache = config.routes[0].cache.as_ref().unwrap();
    assert_eq!(cache.store, CacheStore::Redis(redis.clone()));
    assert_eq!(cache.max_bytes, 2048);
}

#[test]
fn a_cache_is_refused_with_its_key_paths() {
    assert_eq!(
        errors(&cached(r#"{ ttl = "10m", store = "redis" }"#)),
        [
            r#"routes.flan.cache.store: "redis" uses the gateway's Redis of [rate_limits]: set rate_limits.store = "redis" and rate_limits.redis_url (or redis_urls with redis_mode = "cluster")"#
        ]
    );
    assert_eq!(
        errors(&cached(r#"{ ttl = "10m", store = "disk" }"#)),
        [r#"routes.flan.cache.store: unknown store "disk", expected "memory" or "redis""#]
    );
    assert_eq!(
        errors(&cached(r#"{ store = "memory" }"#)),
        [r#"routes.flan.cache.ttl: required, e.g. ttl = "10m""#]
    );
    assert_eq!(
        errors(&cached(r#"{ ttl = "0s", max_bytes = 1023 }"#)),
        [
            "routes.flan.cache.ttl: must be greater than 0",
            "routes.flan.cache.max_bytes: must be at least 1024",
        ]
    );
    assert_eq!(
        errors(&cached(r#"{ ttl = "1m", max_bytes = "256MiB" }"#)),
        ["routes.flan.cache.max_bytes: expected an integer, found string"]
    );
    assert_eq!(
        errors(&cached(r#"{ ttl = "8days" }"#)),
        ["routes.flan.cache.ttl: must be at most 7days"]
    );
    assert_eq!(
        errors(&cached(r#"{ ttl = "1m", size = 5 }"#)),
        ["routes.flan.cache.size: unknown key"]
    );
}
