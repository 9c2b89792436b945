//! The range of every numeric and duration key: each key at its bound
//! (accepted), just past it and just under its floor (refused with the exact
//! message at its key path); the table below covers every such key of the
//! example file; and no duration bound can overflow a clock.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use super::super::bounds::{DURATION_KEYS, INTEGER_KEYS};
use super::*;

/// Which table a key is written in.
#[derive(Debug, Clone, Copy)]
enum At {
    Server,
    Upstream,
    Telemetry,
    RateLimits,
    /// `[backends.sm-flan]`.
    Sm,
    /// `[backends.hf-flan]`.
    Hf,
    /// `[backends.hf-flan]` with `health_check_interval` set.
    HfCheck,
    /// `[routes.flan]`.
    Route,
    /// The first entry of `routes.flan.backends`.
    Weight,
    /// `[clients.c]`.
    Client,
    /// `clients.c.rate_limit`.
    ClientRate,
    /// `routes.flan.rate_limit`.
    RouteRate,
    /// `[clients.c.route_limits.flan]`.
    ClientRoute,
    /// `clients.c.route_limits.flan.rate_limit`.
    ClientRouteRate,
    /// `routes.flan.cache`.
    RouteCache,
    /// The first entry of `routes.flan.shadow`.
    Shadow,
    /// `[shadow]`, with a diff log.
    ShadowLog,
}

impl At {
    fn config(self, key: &str, value: &str) -> String {
        let line = format!("{key} = {value}\n");
        match self {
            At::Server => minimal(&format!("[server]\n{line}")),
            At::Upstream => minimal(&format!("[upstream]\n{line}")),
            At::Telemetry => minimal(&format!("[telemetry]\n{line}")),
            At::RateLimits => minimal(&format!("[rate_limits]\n{line}")),
            At::Sm => format!("{HF}{ROUTE}{SM}{line}"),
            At::Hf => format!("{SM}{ROUTE}{HF}{line}"),
            At::HfCheck => format!("{SM}{ROUTE}{HF}health_check_interval = \"10s\"\n{line}"),
            At::Route => format!("{SM}{HF}{ROUTE}{line}"),
            At::Weight => format!(
                "{SM}{HF}[routes.flan]\nbackends = [{{ backend = \"sm-flan\", {key} = {value} }}, \"hf-flan\"]\n"
            ),
            At::Client => minimal(&format!("[clients.c]\napi_key = \"k\"\n{line}")),
            At::ClientRate => minimal(&format!(
                "[clients.c]\napi_key = \"k\"\nrate_limit = {}\n",
                rate_table(key, value)
            )),
            At::RouteRate => format!("{SM}{HF}{ROUTE}rate_limit = {}\n", rate_table(key, value)),
            At::ClientRoute => minimal(&format!(
                "[clients.c]\napi_key = \"k\"\n[clients.c.route_limits.flan]\n{line}"
            )),
            At::ClientRouteRate => minimal(&format!(
                "[clients.c]\napi_key = \"k\"\n[clients.c.route_limits.flan]\nrate_limit = {}\n",
                rate_table(key, value)
            )),
            At::RouteCache => format!("{SM}{HF}{ROUTE}cache = {}\n", cache_table(key, value)),
            At::Shadow => format!(
                "{SM}{HF}{ROUTE}shadow = [{{ backend = \"hf-flan\", {key} = {value} }}]\n"
            ),
            At::ShadowLog => minimal(&format!(
                "shadow = [{{ backend = \"hf-flan\", percent = 1 }}]\n[shadow]\ndiff_log = \"/tmp/d.jsonl\"\n{line}"
            )),
        }
    }

    /// The key path of `key`, and its pattern in the bounds tables.
    fn paths(self, key: &str) -> (String, String) {
        let (table, pattern) = match self {
            At::Server => ("server", "server"),
            At::Upstream => ("upstream", "upstream"),
            At::Telemetry => ("telemetry", "telemetry"),
            At::RateLimits => ("rate_limits", "rate_limits"),
            At::Sm => ("backends.sm-flan", "backends.*"),
            At::Hf | At::HfCheck => ("backends.hf-flan", "backends.*"),
            At::Route => ("routes.flan", "routes.*"),
            At::Weight => ("routes.flan.backends[0]", "routes.*.backends[*]"),
            At::Client => ("clients.c", "clients.*"),
            At::ClientRate => ("clients.c.rate_limit", "clients.*.rate_limit"),
            At::RouteRate => ("routes.flan.rate_limit", "routes.*.rate_limit"),
            At::ClientRoute => ("clients.c.route_limits.flan", "clients.*.route_limits.*"),
            At::ClientRouteRate => (
                "clients.c.route_limits.flan.rate_limit",
                "clients.*.route_limits.*.rate_limit",
            ),
            At::RouteCache => ("routes.flan.cache", "routes.*.cache"),
            At::Shadow => ("routes.flan.shadow[0]", "routes.*.shadow[*]"),
            At::ShadowLog => ("shadow", "shadow"),
        };
        (format!("{table}.{key}"), format!("{pattern}.{key}"))
    }
}

const POSITIVE: &str = "must be greater than 0";
const HEADROOM: &str = "must be between 0.0 and 1.0 (1: every request waits for Redis)";

/// A `rate_limit` inline table with `key = value`, and a rate when the key
/// is another.
fn rate_table(key: &str, value: &str) -> String {
    if key == "requests_per_second" {
        format!("{{ {key} = {value} }}")
    } else {
        format!("{{ requests_per_second = 1, {key} = {value} }}")
    }
}

/// A `cache` inline table with `key = value`, and a ttl when the key is
/// another.
fn cache_table(key: &str, value: &str) -> String {
    if key == "ttl" {
        format!("{{ {key} = {value} }}")
    } else {
        format!("{{ ttl = \"1m\", {key} = {value} }}")
    }
}

/// The float keys, checked where they are read rather than by a bound of
/// `bounds.rs`'s tables.
const FLOAT_KEYS: [&str; 8] = [
    "rate_limits.headroom",
    "shadow.diff_log_percent",
    "routes.*.retry_budget_ratio",
    "routes.*.shadow[*].percent",
    "routes.*.shadow_cosine_threshold",
    "clients.*.route_limits.*.rate_limit.requests_per_second",
    "clients.*.rate_limit.requests_per_second",
    "routes.*.rate_limit.requests_per_second",
];

/// A key, its bound as written, a value one past it and the message for it,
/// and a value under its floor with its message (`None`: 0 is allowed).
struct Case {
    at: At,
    key: &'static str,
    bound: &'static str,
    over: &'static str,
    over_message: &'static str,
    under: Option<(&'static str, &'static str)>,
}

const fn case(
    at: At,
    key: &'static str,
    [bound, over, over_message]: [&'static str; 3],
    under: Option<(&'static str, &'static str)>,
) -> Case {
    Case {
        at,
        key,
        bound,
        over,
        over_message,
        under,
    }
}

const ZERO: Option<(&str, &str)> = Some(("\"0s\"", POSITIVE));
const NEGATIVE: Option<(&str, &str)> = Some(("-1", "must not be negative"));
const NOTHING: Option<(&str, &str)> = Some(("0", POSITIVE));

#[rustfmt::skip]
const CASES: [Case; 52] = [
    case(At::Server, "max_body_bytes", ["1073741824", "1073741825", "must be at most 1073741824 (1 GiB)"], NOTHING),
    case(At::Server, "request_timeout", ["\"2h\"", "\"2h 1ns\"", "must be at most 2h"], ZERO),
    case(At::Server, "shutdown_grace", ["\"1h\"", "\"1h 1ns\"", "must be at most 1h"], None),
    case(At::Server, "shutdown_delay", ["\"10m\"", "\"10m 1ns\"", "must be at most 10m"], None),
    case(At::Server, "watch_interval", ["\"1h\"", "\"1h 1ns\"", "must be at most 1h"], ZERO),
    case(At::Server, "header_read_timeout", ["\"1h\"", "\"1h 1ns\"", "must be at most 1h"], ZERO),
    case(At::Server, "idle_timeout", ["\"1day\"", "\"24h 1ns\"", "must be at most 1day"], ZERO),
    case(At::Server, "max_connections", ["1000000", "1000001", "must be at most 1000000"], NOTHING),
    case(At::Server, "workers", ["256", "257", "must be at most 256"], NOTHING),
    case(At::Upstream, "connect_timeout", ["\"5m\"", "\"5m 1ns\"", "must be at most 5m"], ZERO),
    case(At::Upstream, "pool_idle_timeout", ["\"1h\"", "\"1h 1ns\"", "must be at most 1h"], ZERO),
    case(At::Upstream, "pool_max_idle_per_host", ["1000000", "1000001", "must be at most 1000000"], NEGATIVE),
    case(At::Telemetry, "otlp_timeout", ["\"5m\"", "\"5m 1ns\"", "must be at most 5m"], ZERO),
    case(At::RateLimits, "timeout", ["\"10s\"", "\"10s 1ns\"", "must be at most 10s"], ZERO),
    case(At::RateLimits, "headroom", ["1.0", "1.0000001", HEADROOM],
        Some(("-0.0000001", HEADROOM))),
    case(At::Sm, "timeout", ["\"2h\"", "\"2h 1ns\"", "must be at most 2h"], ZERO),
    case(At::Sm, "max_in_flight", ["1000000", "1000001", "must be at most 1000000"], NOTHING),
    case(At::Sm, "eject_after", ["1000", "1001", "must be at most 1000"], NEGATIVE),
    case(At::Hf, "ejection_time", ["\"1h\"", "\"1h 1ns\"", "must be at most 1h"], ZERO),
    case(At::Sm, "max_ejection_time", ["\"1day\"", "\"1day 1ns\"", "must be at most 1day"],
        Some(("\"0s\"", "must be at least ejection_time (30s by default)"))),
    case(At::Hf, "health_check_interval", ["\"1h\"", "\"1h 1ns\"", "must be at most 1h"], ZERO),
    case(At::HfCheck, "health_check_timeout", ["\"5m\"", "\"5m 1ns\"", "must be at most 5m"], ZERO),
    case(At::Weight, "weight", ["1000", "1001", "must be between 1 and 1000"],
        Some(("0", "must be between 1 and 1000"))),
    case(At::Route, "attempts", ["10", "11", "must be between 1 and 10"],
        Some(("0", "must be between 1 and 10"))),
    case(At::Route, "timeout", ["\"2h\"", "\"2h 1ns\"", "must be at most 2h"], ZERO),
    case(At::Route, "per_try_timeout", ["\"2h\"", "\"2h 1ns\"", "must be at most 2h"], ZERO),
    case(At::Route, "backoff_base", ["\"1m\"", "\"1m 1ns\"", "must be at most 1m"], ZERO),
    case(At::Route, "backoff_max", ["\"10m\"", "\"10m 1ns\"", "must be at most 10m"],
        Some(("\"0s\"", "must be at least backoff_base (25ms by default)"))),
    case(At::Route, "retry_budget_ratio", ["1.0", "1.0000001", "must be between 0.0 and 1.0"],
        Some(("-0.0000001", "must be between 0.0 and 1.0"))),
    case(At::Route, "retry_budget_min_per_second", ["100000", "100001", "must be at most 100000"], NEGATIVE),
    case(At::Route, "retry_budget_window", ["\"10m\"", "\"10m 1ns\"", "must be at most 10m"], ZERO),
    case(At::Route, "hedge_after", ["\"1h\"", "\"1h 1ns\"", "must be at most 1h"], ZERO),
    case(At::Route, "stream_first_byte_timeout", ["\"1h\"", "\"1h 1ns\"", "must be at most 1h"], ZERO),
    case(At::Route, "stream_idle_timeout", ["\"1h\"", "\"1h 1ns\"", "must be at most 1h"], ZERO),
    case(At::Route, "stream_keepalive", ["\"10m\"", "\"10m 1ns\"", "must be at most 10m"], ZERO),
    case(At::RouteRate, "requests_per_second", ["1000000.0", "1000000.5", "must be at most 1000000"], NOTHING),
    case(At::RouteRate, "burst", ["1000000", "1000001", "must be at most 1000000"], NOTHING),
    case(At::Client, "max_in_flight", ["1000000", "1000001", "must be at most 1000000"], NOTHING),
    case(At::ClientRate, "requests_per_second", ["1000000.0", "1000000.5", "must be at most 1000000"], NOTHING),
    case(At::ClientRate, "burst", ["1000000", "1000001", "must be at most 1000000"], NOTHING),
    case(At::Client, "tokens_per_minute", ["1000000000", "1000000001", "must be at most 1000000000"], NOTHING),
    case(At::Route, "tokens_per_minute", ["1000000000", "1000000001", "must be at most 1000000000"], NOTHING),
    case(At::ClientRoute, "tokens_per_minute", ["1000000000", "1000000001", "must be at most 1000000000"], NOTHING),
    case(At::ClientRouteRate, "requests_per_second", ["1000000.0", "1000000.5", "must be at most 1000000"], NOTHING),
    case(At::ClientRouteRate, "burst", ["1000000", "1000001", "must be at most 1000000"], NOTHING),
    case(At::RouteCache, "ttl", ["\"7days\"", "\"7days 1ns\"", "must be at most 7days"], ZERO),
    case(At::RouteCache, "max_bytes", ["68719476736", "68719476737", "must be at most 68719476736 (64 GiB)"],
        Some(("1023", "must be at least 1024"))),
    case(At::Shadow, "percent", ["100.0", "100.5", "must be between 0 and 100"],
        Some(("-0.5", "must be between 0 and 100"))),
    case(At::Route, "shadow_max_in_flight", ["10000", "10001", "must be at most 10000"],
        Some(("0", POSITIVE))),
    case(At::Route, "shadow_cosine_threshold", ["1.0", "1.0000001", "must be between 0.0 and 1.0"],
        Some(("-0.0000001", "must be between 0.0 and 1.0"))),
    case(At::ShadowLog, "diff_log_percent", ["100", "100.5", "must be between 0 and 100"],
        Some(("-0.5", "must be between 0 and 100"))),
    case(At::ShadowLog, "diff_log_answer_bytes", ["65536", "65537", "must be at most 65536"], NEGATIVE),
];

#[test]
fn every_key_is_accepted_at_its_bound_and_refused_past_it() {
    for case in &CASES {
        let (path, _) = case.at.paths(case.key);
        let config = case.at.config(case.key, case.bound);
        if let Err(e) = Config::from_toml(&config, &env) {
            panic!("{path} = {} refused:\n{e}", case.bound);
        }
        assert_eq!(
            errors(&case.at.config(case.key, case.over)),
            [format!("{path}: {}", case.over_message)],
            "{path} = {}",
            case.over
        );
        if let Some((under, message)) = case.under {
            assert_eq!(
                errors(&case.at.config(case.key, under)),
                [format!("{path}: {message}")],
                "{path} = {under}"
            );
        }
    }
}

/// The table above agrees with the bounds the validators use.
#[test]
fn the_cases_are_the_bounds_of_the_validators() {
    for case in &CASES {
        let (_, pattern) = case.at.paths(case.key);
        let bound = case.bound.trim_matches('"');
        if let Some((_, b)) = DURATION_KEYS.iter().find(|(k, _)| *k == pattern) {
            assert_eq!(
                humantime::parse_duration(bound).ok(),
                Some(b.max),
                "{pattern}"
            );
        } else if let Some((_, b)) = INTEGER_KEYS.iter().find(|(k, _)| *k == pattern) {
            assert_eq!(bound.parse::<i64>().ok(), Some(b.max), "{pattern}");
        } else {
            assert!(FLOAT_KEYS.contains(&pattern.as_str()), "{pattern}");
        }
    }
    let cases: BTreeSet<String> = CASES.iter().map(|c| c.at.paths(c.key).1).collect();
    let bounds: BTreeSet<String> = DURATION_KEYS
        .iter()
        .map(|(k, _)| k)
        .chain(INTEGER_KEYS.iter().map(|(k, _)| k))
        .map(|k| (*k).to_owned())
        .chain(FLOAT_KEYS.map(str::to_owned))
        .collect();
    assert_eq!(cases, bounds);
    assert_eq!(cases.len(), CASES.len(), "a key is listed twice");
}

/// Every number and duration of the example file (which lists every key) is
/// in the table, so a new key cannot come without a bound and its test.
#[test]
fn every_numeric_key_of_the_example_is_bounded() {
    let root: toml::Table = uncommented_example().parse().unwrap();
    let mut found = BTreeSet::new();
    for (key, value) in &root {
        numeric_keys(key, value, 0, &mut found);
    }
    let cases: BTreeSet<String> = CASES.iter().map(|c| c.at.paths(c.key).1).collect();
    assert_eq!(found, cases);
}

/// The patterns (`backends.*.timeout`) of the numeric and duration values
/// under `path`; `depth` is that of `value`, whose name is `*` at depth 1 of
/// `backends` and `routes`.
fn numeric_keys(path: &str, value: &toml::Value, depth: usize, found: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let named = (depth == 0
                    && (path == "backends" || path == "routes" || path == "clients"))
                    || (depth == 2 && path.ends_with(".route_limits"));
                let key = if named { "*" } else { key };
                numeric_keys(&format!("{path}.{key}"), value, depth + 1, found);
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                numeric_keys(&format!("{path}[*]"), item, depth + 1, found);
            }
        }
        toml::Value::Integer(_) | toml::Value::Float(_) => {
            found.insert(path.to_owned());
        }
        toml::Value::String(s) if humantime::parse_duration(s).is_ok() => {
            found.insert(path.to_owned());
        }
        _ => {}
    }
}

/// A value at any duration bound can be added to every clock the gateway
/// reads, on any machine that has been up for less than centuries.
#[test]
fn no_duration_bound_overflows_a_clock() {
    for (key, bound) in DURATION_KEYS {
        let max = bound.max;
        assert!(
            tokio::time::Instant::now().checked_add(max).is_some(),
            "{key}"
        );
        assert!(Instant::now().checked_add(max).is_some(), "{key}");
        assert!(SystemTime::now().checked_add(max).is_some(), "{key}");
        // The retry backoff doubles the base up to 2^16 times, saturating.
        assert!(max.checked_mul(1 << 16).is_some(), "{key}");
    }
}

/// The values an outside check of the release binary found passing `check`
/// and then breaking `serve`.
#[test]
fn the_values_that_broke_serve_are_refused() {
    for value in ["292277024626y", "18446744073709551615s"] {
        assert_eq!(
            errors(&minimal(&format!(
                "[server]\nheader_read_timeout = \"{value}\"\n"
            ))),
            ["server.header_read_timeout: must be at most 1h"],
            "{value}"
        );
        assert_eq!(
            errors(&format!(
                "{SM}{HF}{ROUTE}timeout = \"{value}\"\nstream_idle_timeout = \"{value}\"\n"
            )),
            [
                "routes.flan.timeout: must be at most 2h",
                "routes.flan.stream_idle_timeout: must be at most 1h",
            ],
            "{value}"
        );
    }
    assert_eq!(
        errors(&minimal("[server]\nmax_connections = 4294967296\n")),
        ["server.max_connections: must be at most 1000000"]
    );
}
