//! Phase two for the resilience keys: how a route balances, retries, backs off,
//! budgets and hedges (`[routes.<name>]`), and how a backend is limited and
//! judged healthy (`[backends.<name>]`, both kinds, plus the Hugging Face-only
//! active health check).
//!
//! `validate.rs` and `backend.rs` call in here so that those files keep to the
//! keys the gateway core needs; `dispatch.rs` and `route/` read the results.

use std::time::Duration;

use super::bounds::{self, at_most, duration, integer, optional_duration, DurationBound};
use super::diag::{key_path, Diagnostics};
use super::raw::{RawBackend, RawRoute};
use super::{
    BackoffConfig, Balance, HealthCheckConfig, OutlierConfig, RetryBudgetConfig, StreamConfig,
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_EJECTION_TIME, DEFAULT_EJECT_AFTER,
    DEFAULT_HEALTH_CHECK_PATH, DEFAULT_HEALTH_CHECK_TIMEOUT, DEFAULT_MAX_EJECTION_TIME,
    DEFAULT_RETRY_BUDGET_MIN_PER_SECOND, DEFAULT_RETRY_BUDGET_RATIO, DEFAULT_RETRY_BUDGET_WINDOW,
    DEFAULT_STICKY_SESSIONS, DEFAULT_STREAM_FIRST_BYTE_TIMEOUT, DEFAULT_STREAM_IDLE_TIMEOUT,
    DEFAULT_STREAM_KEEPALIVE,
};

/// The resilience part of a [`super::RouteConfig`].
pub(super) struct RoutePolicy {
    pub(super) balance: Balance,
    pub(super) per_try_timeout: Option<Duration>,
    pub(super) backoff: BackoffConfig,
    pub(super) retry_budget: RetryBudgetConfig,
    pub(super) hedge_after: Option<Duration>,
    pub(super) sticky_sessions: bool,
    pub(super) stream: StreamConfig,
}

pub(super) fn route_policy(raw: &RawRoute, path: &str, diag: &mut Diagnostics) -> RoutePolicy {
    let p = |key: &str| key_path(path, key);
    RoutePolicy {
        balance: balance(raw, path, diag),
        per_try_timeout: optional_duration(
            raw.per_try_timeout,
            &p("per_try_timeout"),
            bounds::REQUEST_TIMEOUT,
            diag,
        ),
        backoff: backoff(raw, path, diag),
        retry_budget: retry_budget(raw, path, diag),
        hedge_after: optional_duration(
            raw.hedge_after,
            &p("hedge_after"),
            bounds::HEDGE_AFTER,
            diag,
        ),
        sticky_sessions: raw.sticky_sessions.unwrap_or(DEFAULT_STICKY_SESSIONS),
        stream: stream(raw, path, diag),
    }
}

fn balance(raw: &RawRoute, path: &str, diag: &mut Diagnostics) -> Balance {
    match raw.balance.as_deref() {
        None | Some("p2c") => Balance::P2c,
        Some("weighted") => Balance::Weighted,
        Some("priority") => Balance::Priority,
        Some(other) => {
            let key = key_path(path, "balance");
            let shown = diag.show(&key, other);
            diag.error(
                &key,
                format!(r#"unknown balance {shown}, expected "p2c", "weighted" or "priority""#),
            );
            Balance::P2c
        }
    }
}

fn backoff(raw: &RawRoute, path: &str, diag: &mut Diagnostics) -> BackoffConfig {
    let base = duration(
        raw.backoff_base,
        &key_path(path, "backoff_base"),
        bounds::BACKOFF_BASE,
        DEFAULT_BACKOFF_BASE,
        diag,
    );
    let max = at_least(
        raw.backoff_max,
        (DEFAULT_BACKOFF_MAX, bounds::BACKOFF_MAX),
        (base, raw.backoff_base.is_some(), "backoff_base"),
        &key_path(path, "backoff_max"),
        diag,
    );
    BackoffConfig { base, max }
}

fn retry_budget(raw: &RawRoute, path: &str, diag: &mut Diagnostics) -> RetryBudgetConfig {
    let p = |key: &str| key_path(path, key);
    let ratio = match raw.retry_budget_ratio {
        None => DEFAULT_RETRY_BUDGET_RATIO,
        // Also false for NaN.
        Some(r) if (0.0..=1.0).contains(&r) => r,
        Some(_) => {
            diag.error(&p("retry_budget_ratio"), "must be between 0.0 and 1.0");
            DEFAULT_RETRY_BUDGET_RATIO
        }
    };
    RetryBudgetConfig {
        ratio,
        min_per_second: integer(
            raw.retry_budget_min_per_second,
            &p("retry_budget_min_per_second"),
            bounds::RETRY_BUDGET_MIN_PER_SECOND,
            DEFAULT_RETRY_BUDGET_MIN_PER_SECOND,
            diag,
        ),
        window: duration(
            raw.retry_budget_window,
            &p("retry_budget_window"),
            bounds::RETRY_BUDGET_WINDOW,
            DEFAULT_RETRY_BUDGET_WINDOW,
            diag,
        ),
    }
}

fn stream(raw: &RawRoute, path: &str, diag: &mut Diagnostics) -> StreamConfig {
    let p = |key: &str| key_path(path, key);
    StreamConfig {
        first_byte_timeout: duration(
            raw.stream_first_byte_timeout,
            &p("stream_first_byte_timeout"),
            bounds::STREAM_FIRST_BYTE_TIMEOUT,
            DEFAULT_STREAM_FIRST_BYTE_TIMEOUT,
            diag,
        ),
        idle_timeout: duration(
            raw.stream_idle_timeout,
            &p("stream_idle_timeout"),
            bounds::STREAM_IDLE_TIMEOUT,
            DEFAULT_STREAM_IDLE_TIMEOUT,
            diag,
        ),
        keepalive: duration(
            raw.stream_keepalive,
            &p("stream_keepalive"),
            bounds::STREAM_KEEPALIVE,
            DEFAULT_STREAM_KEEPALIVE,
            diag,
        ),
    }
}

/// `max_in_flight` and the outlier keys, common to both kinds.
pub(super) fn backend_limits(
    raw: &RawBackend,
    path: &str,
    diag: &mut Diagnostics,
) -> (Option<u32>, OutlierConfig) {
    let p = |key: &str| key_path(path, key);
    let max_in_flight = raw
        .max_in_flight
        .map(|n| integer(Some(n), &p("max_in_flight"), bounds::MAX_IN_FLIGHT, 1, diag));
    let eject_after = integer(
        raw.eject_after,
        &p("eject_after"),
        bounds::EJECT_AFTER,
        DEFAULT_EJECT_AFTER,
        diag,
    );
    let base_ejection = duration(
        raw.ejection_time,
        &p("ejection_time"),
        bounds::EJECTION_TIME,
        DEFAULT_EJECTION_TIME,
        diag,
    );
    let max_ejection = at_least(
        raw.max_ejection_time,
        (DEFAULT_MAX_EJECTION_TIME, bounds::MAX_EJECTION_TIME),
        (base_ejection, raw.ejection_time.is_some(), "ejection_time"),
        &p("max_ejection_time"),
        diag,
    );
    (
        max_in_flight,
        OutlierConfig {
            eject_after,
            base_ejection,
            max_ejection,
        },
    )
}

/// The Hugging Face active health check; `None` unless `health_check_interval`
/// is set.
pub(super) fn health_check(
    raw: &RawBackend,
    path: &str,
    diag: &mut Diagnostics,
) -> Option<HealthCheckConfig> {
    let p = |key: &str| key_path(path, key);
    let interval = optional_duration(
        raw.health_check_interval,
        &p("health_check_interval"),
        bounds::HEALTH_CHECK_INTERVAL,
        diag,
    );
    let timeout = optional_duration(
        raw.health_check_timeout,
        &p("health_check_timeout"),
        bounds::HEALTH_CHECK_TIMEOUT,
        diag,
    );

    let check_path = raw.health_check_path.as_deref();
    if interval.is_none() {
        for (key, set) in [
            ("health_check_path", check_path.is_some()),
            ("health_check_timeout", timeout.is_some()),
        ] {
            if set {
                diag.error(&p(key), "only valid together with health_check_interval");
            }
        }
    } else if let Some(value) = check_path {
        if !value.starts_with('/') {
            diag.error(
                &p("health_check_path"),
                r#"must start with "/", such as "/health""#,
            );
        } else if !value.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
            diag.error(
                &p("health_check_path"),
                r##"must contain only visible ASCII characters other than "#""##,
            );
        }
    }

    Some(HealthCheckConfig {
        interval: interval?,
        path: check_path.unwrap_or(DEFAULT_HEALTH_CHECK_PATH).to_owned(),
        timeout: timeout.unwrap_or(DEFAULT_HEALTH_CHECK_TIMEOUT),
    })
}

// === helpers ===

/// An upper key that must not be below `floor` (its value, whether it was
/// set, its key) nor above its own bound. When absent it is the larger of
/// `default` and the floor, so raising only the floor never makes an error of
/// a key the user did not write.
fn at_least(
    value: Option<Duration>,
    (default, bound): (Duration, DurationBound),
    (floor, floor_set, floor_key): (Duration, bool, &str),
    path: &str,
    diag: &mut Diagnostics,
) -> Duration {
    match value {
        None => default.max(floor),
        Some(d) if d < floor => {
            if floor_set {
                diag.error(path, format!("must be at least {floor_key}"));
            } else {
                let floor = humantime::format_duration(floor);
                diag.error(
                    path,
                    format!("must be at least {floor_key} ({floor} by default)"),
                );
            }
            d
        }
        Some(d) => at_most(d, path, bound, diag),
    }
}
