//! The allowed range of every numeric and duration key, in one place, and the
//! two checks that apply them.
//!
//! A value that parses can still break the gateway at run time when it is
//! huge: a timeout of "292277024626y" overflows `Instant + Duration` on every
//! connection, and a `max_connections` above `u32::MAX` cannot be drained
//! (tokio's `Semaphore::acquire_many` takes a `u32`). So every key has an upper
//! bound, far above any sensible setting (Envoy's and LiteLLM's defaults fit
//! with room to spare) and far below where arithmetic on it could overflow; a
//! test adds every duration bound to `Instant::now()` and `SystemTime::now()`.
//! The example file documents the same bounds.

use std::fmt;
use std::time::Duration;

use super::diag::Diagnostics;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The range of a duration key: more than zero unless `zero` is allowed, at
/// most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DurationBound {
    pub(super) zero: bool,
    pub(super) max: Duration,
}

impl DurationBound {
    const fn positive(max: Duration) -> Self {
        Self { zero: false, max }
    }
}

/// The range of an integer key, `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IntBound {
    pub(super) min: i64,
    pub(super) max: i64,
    /// Both sides get "must be between min and max" (the wording these keys
    /// always had) instead of one message per side.
    between: bool,
    /// Appended to the "at most" message, e.g. " (1 GiB)".
    unit: &'static str,
}

impl IntBound {
    const fn new(min: i64, max: i64) -> Self {
        Self {
            min,
            max,
            between: false,
            unit: "",
        }
    }

    const fn between(min: i64, max: i64) -> Self {
        Self {
            between: true,
            ..Self::new(min, max)
        }
    }
}

/// 1 GiB.
const GIB: i64 = 1 << 30;
/// Connections and in-flight requests: far more than one process serves
/// (each holds a socket), well within `u32` and `Semaphore::MAX_PERMITS`.
const MAX_CONCURRENCY: i64 = 1_000_000;

// === server ===
/// Bodies are buffered whole; SageMaker itself takes at most 6 MB (25 MB streaming).
pub(super) const MAX_BODY_BYTES: IntBound = IntBound {
    unit: " (1 GiB)",
    ..IntBound::new(1, GIB)
};
/// Also a route's and a backend's `timeout`, and `per_try_timeout`: long
/// generations take minutes; LiteLLM's default is 6000s.
pub(super) const REQUEST_TIMEOUT: DurationBound = DurationBound::positive(HOUR.saturating_mul(2));
/// Envoy drains for 10m by default; Kubernetes grants 30s.
pub(super) const SHUTDOWN_GRACE: DurationBound = DurationBound {
    zero: true,
    max: HOUR,
};
/// Long enough for any load balancer to see `/readyz` fail; Kubernetes'
/// endpoint updates take seconds, not minutes.
pub(super) const SHUTDOWN_DELAY: DurationBound = DurationBound {
    zero: true,
    max: MINUTE.saturating_mul(10),
};
/// How often the config file is looked at for a change.
pub(super) const WATCH_INTERVAL: DurationBound = DurationBound::positive(HOUR);
pub(super) const HEADER_READ_TIMEOUT: DurationBound = DurationBound::positive(HOUR);
/// Envoy's connection idle timeout is 1h by default.
pub(super) const IDLE_TIMEOUT: DurationBound = DurationBound::positive(DAY);
pub(super) const MAX_CONNECTIONS: IntBound = IntBound::new(1, MAX_CONCURRENCY);
pub(super) const WORKERS: IntBound = IntBound::new(1, super::MAX_WORKERS as i64);

// === upstream ===
/// Envoy's default is 5s; the kernel gives up on a SYN after about 2m.
pub(super) const CONNECT_TIMEOUT: DurationBound = DurationBound::positive(MINUTE.saturating_mul(5));
/// hyper's default is 90s; NATs and load balancers drop idle flows sooner.
pub(super) const POOL_IDLE_TIMEOUT: DurationBound = DurationBound::positive(HOUR);
/// More idle connections than `server.max_connections` can ever use are no use.
pub(super) const POOL_MAX_IDLE_PER_HOST: IntBound = IntBound::new(0, MAX_CONCURRENCY);

// === telemetry ===
/// The OTLP exporters' default is 10s.
pub(super) const OTLP_TIMEOUT: DurationBound = DurationBound::positive(MINUTE.saturating_mul(5));

// === clients and limits ===
/// A client's concurrent requests.
pub(super) const CLIENT_MAX_IN_FLIGHT: IntBound = IntBound::new(1, MAX_CONCURRENCY);
/// Requests a GCRA bucket may take at once.
pub(super) const BURST: IntBound = IntBound::new(1, 1_000_000);
/// A minute's tokens: far above any model's throughput.
pub(super) const TOKENS_PER_MINUTE: IntBound = IntBound::new(1, 1_000_000_000);
/// How long a decision may wait for the Redis store: a decision is on the
/// path of every request.
pub(super) const STORE_TIMEOUT: DurationBound = DurationBound::positive(Duration::from_secs(10));
/// `rate_limit.requests_per_second` is a float: checked in `clients.rs`,
/// more than 0 and at most this.
pub(super) const MAX_REQUESTS_PER_SECOND: f64 = 1_000_000.0;
/// And at least this, so that one request's share of the refill is a
/// duration the clock can hold.
pub(super) const MIN_REQUESTS_PER_SECOND: f64 = 0.0001;

// === backends ===
pub(super) const MAX_IN_FLIGHT: IntBound = IntBound::new(1, MAX_CONCURRENCY);
/// 0 disables ejection; Envoy's consecutive_5xx is 5.
pub(super) const EJECT_AFTER: IntBound = IntBound::new(0, 1000);
/// Envoy's base_ejection_time is 30s.
pub(super) const EJECTION_TIME: DurationBound = DurationBound::positive(HOUR);
/// Envoy's max_ejection_time is 300s.
pub(super) const MAX_EJECTION_TIME: DurationBound = DurationBound::positive(DAY);
pub(super) const HEALTH_CHECK_INTERVAL: DurationBound = DurationBound::positive(HOUR);
pub(super) const HEALTH_CHECK_TIMEOUT: DurationBound =
    DurationBound::positive(MINUTE.saturating_mul(5));

// === routes ===
pub(super) const WEIGHT: IntBound = IntBound::between(1, 1000);
pub(super) const ATTEMPTS: IntBound = IntBound::between(1, 10);
/// Envoy's retry base interval is 25ms.
pub(super) const BACKOFF_BASE: DurationBound = DurationBound::positive(MINUTE);
/// Envoy caps at 10 × the base by default.
pub(super) const BACKOFF_MAX: DurationBound = DurationBound::positive(MINUTE.saturating_mul(10));
/// Linkerd's minRetriesPerSecond is 10.
pub(super) const RETRY_BUDGET_MIN_PER_SECOND: IntBound = IntBound::new(0, 100_000);
/// Linkerd and Finagle allow at most 60s; 10s is their default.
pub(super) const RETRY_BUDGET_WINDOW: DurationBound =
    DurationBound::positive(MINUTE.saturating_mul(10));
pub(super) const HEDGE_AFTER: DurationBound = DurationBound::positive(HOUR);
pub(super) const STREAM_FIRST_BYTE_TIMEOUT: DurationBound = DurationBound::positive(HOUR);
pub(super) const STREAM_IDLE_TIMEOUT: DurationBound = DurationBound::positive(HOUR);
/// Proxies commonly cut a silent connection after 60s.
pub(super) const STREAM_KEEPALIVE: DurationBound =
    DurationBound::positive(MINUTE.saturating_mul(10));
/// An answer kept longer than a week is rarely the model's answer any more.
pub(super) const CACHE_TTL: DurationBound = DurationBound::positive(DAY.saturating_mul(7));
/// A route's cache in memory: from 1 KiB (a test's) to 64 GiB.
pub(super) const CACHE_MAX_BYTES: IntBound = IntBound {
    unit: " (64 GiB)",
    ..IntBound::new(1024, 64 * GIB)
};
/// Shadow calls of one route in flight at once; past it a sampled shadow
/// call is dropped.
pub(super) const SHADOW_MAX_IN_FLIGHT: IntBound = IntBound::new(1, 10_000);

// === shadow ===
/// Each answer in a diff-log line: a few KiB show where two answers part;
/// 64 KiB keeps a line, and the writer's queue of them, bounded.
pub(super) const DIFF_LOG_ANSWER_BYTES: IntBound = IntBound::new(0, 65_536);

/// Every duration key and its bound (`*` stands for a backend or route name),
/// for the tests that try each one.
#[cfg(test)]
pub(super) const DURATION_KEYS: [(&str, DurationBound); 25] = [
    ("rate_limits.timeout", STORE_TIMEOUT),
    ("server.request_timeout", REQUEST_TIMEOUT),
    ("server.shutdown_grace", SHUTDOWN_GRACE),
    ("server.shutdown_delay", SHUTDOWN_DELAY),
    ("server.watch_interval", WATCH_INTERVAL),
    ("server.header_read_timeout", HEADER_READ_TIMEOUT),
    ("server.idle_timeout", IDLE_TIMEOUT),
    ("upstream.connect_timeout", CONNECT_TIMEOUT),
    ("upstream.pool_idle_timeout", POOL_IDLE_TIMEOUT),
    ("telemetry.otlp_timeout", OTLP_TIMEOUT),
    ("backends.*.timeout", REQUEST_TIMEOUT),
    ("backends.*.ejection_time", EJECTION_TIME),
    ("backends.*.max_ejection_time", MAX_EJECTION_TIME),
    ("backends.*.health_check_interval", HEALTH_CHECK_INTERVAL),
    ("backends.*.health_check_timeout", HEALTH_CHECK_TIMEOUT),
    ("routes.*.timeout", REQUEST_TIMEOUT),
    ("routes.*.per_try_timeout", REQUEST_TIMEOUT),
    ("routes.*.backoff_base", BACKOFF_BASE),
    ("routes.*.backoff_max", BACKOFF_MAX),
    ("routes.*.retry_budget_window", RETRY_BUDGET_WINDOW),
    ("routes.*.hedge_after", HEDGE_AFTER),
    (
        "routes.*.stream_first_byte_timeout",
        STREAM_FIRST_BYTE_TIMEOUT,
    ),
    ("routes.*.stream_idle_timeout", STREAM_IDLE_TIMEOUT),
    ("routes.*.stream_keepalive", STREAM_KEEPALIVE),
    ("routes.*.cache.ttl", CACHE_TTL),
];

/// Every integer key and its bound, as [`DURATION_KEYS`]. The floats
/// (`routes.*.retry_budget_ratio`, the shadow's percent and cosine
/// threshold) are checked where they are read.
#[cfg(test)]
pub(super) const INTEGER_KEYS: [(&str, IntBound); 19] = [
    ("routes.*.tokens_per_minute", TOKENS_PER_MINUTE),
    ("clients.*.tokens_per_minute", TOKENS_PER_MINUTE),
    (
        "clients.*.route_limits.*.tokens_per_minute",
        TOKENS_PER_MINUTE,
    ),
    ("clients.*.route_limits.*.rate_limit.burst", BURST),
    ("server.max_body_bytes", MAX_BODY_BYTES),
    ("server.max_connections", MAX_CONNECTIONS),
    ("server.workers", WORKERS),
    ("upstream.pool_max_idle_per_host", POOL_MAX_IDLE_PER_HOST),
    ("backends.*.max_in_flight", MAX_IN_FLIGHT),
    ("backends.*.eject_after", EJECT_AFTER),
    ("routes.*.backends[*].weight", WEIGHT),
    ("routes.*.attempts", ATTEMPTS),
    (
        "routes.*.retry_budget_min_per_second",
        RETRY_BUDGET_MIN_PER_SECOND,
    ),
    ("routes.*.rate_limit.burst", BURST),
    ("clients.*.max_in_flight", CLIENT_MAX_IN_FLIGHT),
    ("clients.*.rate_limit.burst", BURST),
    ("routes.*.cache.max_bytes", CACHE_MAX_BYTES),
    ("routes.*.shadow_max_in_flight", SHADOW_MAX_IN_FLIGHT),
    ("shadow.diff_log_answer_bytes", DIFF_LOG_ANSWER_BYTES),
];

// === the checks ===

/// A duration within `bound`; `default` when absent. A value above the bound
/// is reported and replaced by the bound, so that comparisons with other keys
/// (`backoff_max` against `backoff_base`) add no second error.
pub(super) fn duration(
    value: Option<Duration>,
    path: &str,
    bound: DurationBound,
    default: Duration,
    diag: &mut Diagnostics,
) -> Duration {
    match value {
        None => default,
        Some(d) if d.is_zero() && !bound.zero => {
            diag.error(path, "must be greater than 0");
            d
        }
        Some(d) => at_most(d, path, bound, diag),
    }
}

/// An optional duration within `bound` when set.
pub(super) fn optional_duration(
    value: Option<Duration>,
    path: &str,
    bound: DurationBound,
    diag: &mut Diagnostics,
) -> Option<Duration> {
    value.map(|d| duration(Some(d), path, bound, d, diag))
}

/// Only the upper side of `bound`, for keys whose lower side is another key.
pub(super) fn at_most(
    value: Duration,
    path: &str,
    bound: DurationBound,
    diag: &mut Diagnostics,
) -> Duration {
    if value > bound.max {
        let max = humantime::format_duration(bound.max);
        diag.error(path, format_args!("must be at most {max}"));
        bound.max
    } else {
        value
    }
}

/// An integer within `bound`, as `T`; `default` when absent or out of range.
pub(super) fn integer<T: TryFrom<i64>>(
    value: Option<i64>,
    path: &str,
    bound: IntBound,
    default: T,
    diag: &mut Diagnostics,
) -> T {
    let Some(n) = value else { return default };
    if n < bound.min {
        diag.error(path, Below(bound));
        return default;
    }
    // A bound that does not fit `T` would be a mistake in the table above;
    // the test at every bound catches it.
    match T::try_from(n) {
        Ok(v) if n <= bound.max => v,
        _ => {
            diag.error(path, Above(bound));
            default
        }
    }
}

/// The message for a value under the bound.
struct Below(IntBound);

impl fmt::Display for Below {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IntBound {
                between: true,
                min,
                max,
                ..
            } => write!(f, "must be between {min} and {max}"),
            IntBound { min: 0, .. } => f.write_str("must not be negative"),
            IntBound { min: 1, .. } => f.write_str("must be greater than 0"),
            IntBound { min, .. } => write!(f, "must be at least {min}"),
        }
    }
}

/// The message for a value over the bound.
struct Above(IntBound);

impl fmt::Display for Above {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let IntBound {
            min,
            max,
            between,
            unit,
        } = self.0;
        if between {
            write!(f, "must be between {min} and {max}")
        } else {
            write!(f, "must be at most {max}{unit}")
        }
    }
}
