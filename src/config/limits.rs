//! Phase two for `[rate_limits]` and every `rate_limit` table: where the
//! buckets live and how big they are.

use std::time::Duration;

use super::bounds::{self, duration, integer};
use super::diag::{key_path, Diagnostics};
use super::raw::{RawRateLimit, RawRateLimits, RawRouteLimits};
use super::{
    LimitStore, OnStoreError, RateLimit, RateLimitsConfig, RedisMode, RedisStoreConfig,
    SpendLimits, DEFAULT_HEADROOM,
};
use crate::secret::Secret;

/// A decision waits this long for Redis by default.
const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_KEY_PREFIX: &str = "infergate";

/// `[rate_limits]`: `store` ("memory" or "redis", which needs `redis_url`
/// or `redis_urls`, and takes `redis_mode`), `on_store_error` ("allow" or
/// "deny"), `timeout`, `key_prefix` and `headroom` (0 to 1).
pub(super) fn rate_limits(raw: RawRateLimits, diag: &mut Diagnostics) -> RateLimitsConfig {
    let p = |key: &str| key_path("rate_limits", key);
    let on_store_error = match raw.on_store_error.as_deref().map(str::trim) {
        None | Some("allow") => OnStoreError::Allow,
        Some("deny") => OnStoreError::Deny,
        Some(other) => {
            diag.error(
                &p("on_store_error"),
                format!(r#"unknown value "{other}": use "allow" or "deny""#),
            );
            OnStoreError::Allow
        }
    };
    let timeout = duration(
        raw.timeout,
        &p("timeout"),
        bounds::STORE_TIMEOUT,
        DEFAULT_STORE_TIMEOUT,
        diag,
    );
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
    let prefix_ok = !key_prefix.is_empty()
        && key_prefix.len() <= 64
        && key_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if !prefix_ok {
        diag.error(
            &p("key_prefix"),
            r#"1 to 64 letters, digits, ".", "_", "-" or ":""#,
        );
    }
    let headroom = match raw.headroom {
        None => DEFAULT_HEADROOM,
        // NaN fails the range too.
        Some(h) if (0.0..=1.0).contains(&h) => h,
        Some(_) => {
            diag.error(
                &p("headroom"),
                "must be between 0.0 and 1.0 (1: every request waits for Redis)",
            );
            DEFAULT_HEADROOM
        }
    };
    let store = match raw.store.as_deref().map(str::trim) {
        None | Some("memory") => {
            for (key, set) in [
                ("redis_url", raw.redis_url.is_some()),
                ("redis_urls", raw.redis_urls.is_some()),
                ("redis_mode", raw.redis_mode.is_some()),
                ("headroom", raw.headroom.is_some()),
            ] {
                if set {
                    diag.warn(&p(key), r#"not used unless store = "redis""#);
                }
            }
            LimitStore::Memory
        }
        Some("redis") => {
            let mode = redis_mode(raw.redis_mode.as_deref(), diag);
            redis_store(mode, (raw.redis_url, raw.redis_urls), diag).map_or(
                LimitStore::Memory,
                |(urls, shown)| {
                    LimitStore::Redis(RedisStoreConfig {
                        urls,
                        mode,
                        shown,
                        timeout,
                        key_prefix,
                    })
                },
            )
        }
        Some(other) => {
            diag.error(
                &p("store"),
                format!(r#"unknown store "{other}": use "memory" or "redis""#),
            );
            LimitStore::Memory
        }
    };
    RateLimitsConfig {
        store,
        on_store_error,
        headroom,
    }
}

/// `rate_limits.redis_mode`: "single" (the default) or "cluster".
fn redis_mode(raw: Option<&str>, diag: &mut Diagnostics) -> RedisMode {
    match raw.map(str::trim) {
        None | Some("single") => RedisMode::Single,
        Some("cluster") => RedisMode::Cluster,
        Some(other) => {
            diag.error(
                &key_path("rate_limits", "redis_mode"),
                format!(r#"unknown mode "{other}": use "single" or "cluster""#),
            );
            RedisMode::Single
        }
    }
}

/// The URLs of `store = "redis"`: `redis_url`, or `redis_urls` (a
/// Cluster's seeds, at most [`MAX_REDIS_URLS`]), each checked; with the
/// hosts and ports to show.
fn redis_store(
    mode: RedisMode,
    (url, urls): (Option<String>, Option<Vec<String>>),
    diag: &mut Diagnostics,
) -> Option<(Vec<Secret>, String)> {
    let p = |key: &str| key_path("rate_limits", key);
    let (texts, key) = match (url, urls) {
        (Some(_), Some(_)) => {
            diag.error(&p("redis_urls"), "give redis_url or redis_urls, not both");
            return None;
        }
        (None, None) => {
            diag.error(&p("redis_url"), r#"required with store = "redis""#);
            return None;
        }
        (Some(url), None) => (vec![url], None),
        (None, Some(urls)) => (urls, Some("redis_urls")),
    };
    if let Some(key) = key {
        let most = match mode {
            RedisMode::Single => 1,
            RedisMode::Cluster => MAX_REDIS_URLS,
        };
        if texts.is_empty() || texts.len() > most {
            let why = match mode {
                RedisMode::Single => {
                    "one URL for a single server (a Cluster's seeds need redis_mode = \"cluster\")"
                        .to_owned()
                }
                RedisMode::Cluster => format!("1 to {MAX_REDIS_URLS} seed URLs"),
            };
            diag.error(&p(key), why);
            return None;
        }
    }
    let mut shown = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let at = match key {
            Some(key) => format!("{}[{i}]", p(key)),
            None => p("redis_url"),
        };
        match redis_url(text) {
            Ok(s) => shown.push(s),
            Err(why) => diag.error(&at, why),
        }
    }
    if shown.len() < texts.len() {
        return None;
    }
    if mode == RedisMode::Cluster && !cluster_seeds_agree(&texts, key, diag) {
        return None;
    }
    let urls = texts
        .iter()
        .map(|t| Secret::new(t.trim().to_owned()))
        .collect();
    Some((urls, shown.join(", ")))
}

/// A Cluster's seeds (each a URL already checked): database 0, the only
/// one a Cluster has, and the same user and password on every seed (one
/// login for every node). Errors name the seed, never its password.
fn cluster_seeds_agree(texts: &[String], key: Option<&str>, diag: &mut Diagnostics) -> bool {
    let at = |i: usize| match key {
        Some(key) => format!("{}[{i}]", key_path("rate_limits", key)),
        None => key_path("rate_limits", "redis_url"),
    };
    let login = |u: &reqwest::Url| (u.username().to_owned(), u.password().map(str::to_owned));
    let urls: Vec<reqwest::Url> = texts
        .iter()
        .filter_map(|t| reqwest::Url::parse(t.trim()).ok())
        .collect();
    let mut agree = true;
    for (i, url) in urls.iter().enumerate() {
        if !matches!(url.path(), "" | "/" | "/0") {
            diag.error(
                &at(i),
                "a Redis Cluster has database 0 only: no /db in its URLs",
            );
            agree = false;
        }
        if login(url) != login(&urls[0]) {
            diag.error(
                &at(i),
                "every seed of a Cluster needs the same user and password",
            );
            agree = false;
        }
    }
    agree
}

/// The most seed URLs `redis_urls` takes.
pub const MAX_REDIS_URLS: usize = 32;

/// A `redis://` URL the redis crate takes: its host and port for messages,
/// or why not. Never the URL itself in a message: it may hold a password.
fn redis_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| format!("not a URL ({e}); expected redis://host:port"))?;
    match url.scheme() {
        "redis" => {}
        "rediss" => return Err(
            "rediss:// (Redis over TLS) is not supported yet; use redis:// on a private network"
                .into(),
        ),
        other => return Err(format!(r#"scheme "{other}" is not redis://"#)),
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("names no host")?;
    redis::Client::open(text.trim()).map_err(|_| "not a Redis URL the client takes".to_owned())?;
    Ok(format!("{host}:{}", url.port().unwrap_or(6379)))
}

/// A `rate_limit` table: `requests_per_second` (required, more than 0, at
/// most 1,000,000) and `burst` (default: the rate rounded up).
pub(super) fn rate_limit(
    raw: RawRateLimit,
    path: &str,
    diag: &mut Diagnostics,
) -> Option<RateLimit> {
    let at = key_path(path, "requests_per_second");
    let per_second = match raw.requests_per_second {
        None => {
            diag.error(&at, "required in a rate_limit");
            return None;
        }
        // NaN too: it is not greater than 0.
        Some(r) if r.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) => {
            diag.error(&at, "must be greater than 0");
            return None;
        }
        Some(r) if r < bounds::MIN_REQUESTS_PER_SECOND => {
            diag.error(&at, "must be at least 0.0001 (one request in 2h 46m)");
            return None;
        }
        Some(r) if r > bounds::MAX_REQUESTS_PER_SECOND => {
            diag.error(&at, "must be at most 1000000");
            return None;
        }
        Some(r) => r,
    };
    // At least one request fits, whatever the rate.
    let default_burst = (per_second.ceil() as u32).max(1);
    let burst = integer(
        raw.burst,
        &key_path(path, "burst"),
        bounds::BURST,
        default_burst,
        diag,
    );
    Some(RateLimit { per_second, burst })
}

/// `tokens_per_minute` in the table at `path`: 1 to 1,000,000,000.
pub(super) fn tokens_per_minute(
    raw: Option<i64>,
    path: &str,
    diag: &mut Diagnostics,
) -> Option<u32> {
    let at = key_path(path, "tokens_per_minute");
    raw.map(|n| integer(Some(n), &at, bounds::TOKENS_PER_MINUTE, 1, diag))
}

/// A client's `route_limits.<route>` table at `path`.
pub(super) fn spend_limits(raw: RawRouteLimits, path: &str, diag: &mut Diagnostics) -> SpendLimits {
    SpendLimits {
        rate_limit: raw
            .rate_limit
            .and_then(|r| rate_limit(r, &key_path(path, "rate_limit"), diag)),
        tokens_per_minute: tokens_per_minute(raw.tokens_per_minute, path, diag),
    }
}
