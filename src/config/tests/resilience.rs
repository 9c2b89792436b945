//! The resilience keys: route policy (balance, per-try timeout, backoff, retry
//! budget, hedging, sticky sessions), backend limits and outlier ejection, and
//! Hugging Face active health checks. Values, exact errors, summary.

use super::*;

/// The minimal config with `keys` added to `[routes.flan]`.
fn route(keys: &str) -> String {
    format!("{SM}{HF}{ROUTE}{keys}\n")
}

/// The minimal config with `keys` added to `[backends.sm-flan]`.
fn sm(keys: &str) -> String {
    format!("{HF}{ROUTE}{SM}{keys}\n")
}

/// The minimal config with `keys` added to `[backends.hf-flan]`.
fn hf(keys: &str) -> String {
    format!("{SM}{ROUTE}{HF}{keys}\n")
}

// === routes ===

#[test]
fn route_keys_all_set() {
    let config = parse(&route(
        r#"
balance = "priority"
per_try_timeout = "2s"
backoff_base = "100ms"
backoff_max = "3s"
retry_budget_ratio = 0.5
retry_budget_min_per_second = 0
retry_budget_window = "1m"
hedge_after = "250ms"
sticky_sessions = false
"#,
    ));
    let r = &config.routes[0];
    assert_eq!(r.balance, Balance::Priority);
    assert_eq!(r.per_try_timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        r.backoff,
        BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(3),
        }
    );
    assert_eq!(
        r.retry_budget,
        RetryBudgetConfig {
            ratio: 0.5,
            min_per_second: 0,
            window: Duration::from_secs(60),
        }
    );
    assert_eq!(r.hedge_after, Some(Duration::from_millis(250)));
    assert!(!r.sticky_sessions);
    // Unchanged by the new keys.
    assert_eq!(r.attempts, 3);
    assert_eq!(r.timeout, None);
}

#[test]
fn balance() {
    for (text, balance) in [
        ("p2c", Balance::P2c),
        ("weighted", Balance::Weighted),
        ("priority", Balance::Priority),
    ] {
        let config = parse(&route(&format!("balance = \"{text}\"")));
        assert_eq!(config.routes[0].balance, balance);
        assert_eq!(balance.to_string(), text);
    }
    assert_eq!(
        errors(&route("balance = \"round-robin\"")),
        [
            r#"routes.flan.balance: unknown balance "round-robin", expected "p2c", "weighted" or "priority""#
        ]
    );
    assert_eq!(
        errors(&route("balance = \"${KIND}\"")),
        [
            r#"routes.flan.balance: unknown balance (value from the environment, not shown), expected "p2c", "weighted" or "priority""#
        ]
    );
    assert_eq!(
        errors(&route("balance = 2")),
        ["routes.flan.balance: expected a string, found integer"]
    );
}

#[test]
fn priority_ignores_weights_with_a_warning() {
    let text = format!(
        "{SM}{HF}[routes.flan]\nbackends = [{{ backend = \"sm-flan\", weight = 3 }}, \"hf-flan\"]\nbalance = \"priority\"\n"
    );
    assert_eq!(
        parse(&text).warnings,
        [
            r#"routes.flan.backends[0].weight: not used with balance = "priority" (backends are used in the order listed)"#
        ]
    );
    let weighted = text.replace("priority", "weighted");
    assert_eq!(parse(&weighted).warnings, Vec::<String>::new());
}

#[test]
fn route_durations_must_be_positive() {
    assert_eq!(
        errors(&route(
            "per_try_timeout = \"0s\"\nbackoff_base = \"0ms\"\nretry_budget_window = \"0s\"\nhedge_after = \"0s\""
        )),
        [
            "routes.flan.per_try_timeout: must be greater than 0",
            "routes.flan.backoff_base: must be greater than 0",
            "routes.flan.retry_budget_window: must be greater than 0",
            "routes.flan.hedge_after: must be greater than 0",
        ]
    );
    assert_eq!(
        errors(&route("hedge_after = 500")),
        [r#"routes.flan.hedge_after: expected a duration string such as "30s", found integer"#]
    );
    assert_eq!(
        errors(&route("per_try_timeout = \"fast\"")),
        [format!("routes.flan.per_try_timeout: {INVALID_DURATION}")]
    );
}

#[test]
fn backoff_max_is_at_least_the_base() {
    assert_eq!(
        errors(&route("backoff_base = \"100ms\"\nbackoff_max = \"50ms\"")),
        ["routes.flan.backoff_max: must be at least backoff_base"]
    );
    assert_eq!(
        errors(&route("backoff_max = \"10ms\"")),
        ["routes.flan.backoff_max: must be at least backoff_base (25ms by default)"]
    );
    let equal = parse(&route("backoff_base = \"1s\"\nbackoff_max = \"1s\""));
    assert_eq!(equal.routes[0].backoff.max, Duration::from_secs(1));
    // Raising only the base raises the default cap with it.
    let raised = parse(&route("backoff_base = \"2s\""));
    assert_eq!(
        raised.routes[0].backoff,
        BackoffConfig {
            base: Duration::from_secs(2),
            max: Duration::from_secs(2),
        }
    );
}

#[test]
fn retry_budget_ratio() {
    for ratio in ["1.5", "-0.1", "nan", "inf", "2"] {
        assert_eq!(
            errors(&route(&format!("retry_budget_ratio = {ratio}"))),
            ["routes.flan.retry_budget_ratio: must be between 0.0 and 1.0"],
            "ratio {ratio}"
        );
    }
    assert_eq!(
        errors(&route("retry_budget_ratio = \"0.2\"")),
        ["routes.flan.retry_budget_ratio: expected a number, found string"]
    );
    for (text, ratio) in [
        ("0", 0.0),
        ("1", 1.0),
        ("0.0", 0.0),
        ("1.0", 1.0),
        ("0.25", 0.25),
    ] {
        let config = parse(&route(&format!("retry_budget_ratio = {text}")));
        assert_eq!(config.routes[0].retry_budget.ratio, ratio, "ratio {text}");
    }
}

#[test]
fn retry_budget_min_per_second() {
    assert_eq!(
        errors(&route("retry_budget_min_per_second = -1")),
        ["routes.flan.retry_budget_min_per_second: must not be negative"]
    );
    assert_eq!(
        errors(&route("retry_budget_min_per_second = 4294967296")),
        ["routes.flan.retry_budget_min_per_second: must be at most 100000"]
    );
    assert_eq!(
        errors(&route("retry_budget_min_per_second = 1.5")),
        ["routes.flan.retry_budget_min_per_second: expected an integer, found float"]
    );
    let config = parse(&route("retry_budget_min_per_second = 100000"));
    assert_eq!(config.routes[0].retry_budget.min_per_second, 100_000);
}

#[test]
fn sticky_sessions() {
    assert_eq!(
        errors(&route("sticky_sessions = \"yes\"")),
        ["routes.flan.sticky_sessions: expected a boolean, found string"]
    );
    assert!(parse(&route("sticky_sessions = true")).routes[0].sticky_sessions);
}

// === backends, both kinds ===

#[test]
fn backend_keys_all_set_on_both_kinds() {
    let keys =
        "max_in_flight = 8\neject_after = 0\nejection_time = \"10s\"\nmax_ejection_time = \"1m\"";
    let config = parse(&format!("{SM}{keys}\n{ROUTE}{HF}{keys}\n"));
    for name in ["sm-flan", "hf-flan"] {
        let backend = config.backend(name).unwrap();
        assert_eq!(backend.max_in_flight, Some(8), "{name}");
        assert_eq!(
            backend.outlier,
            OutlierConfig {
                eject_after: 0,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(60),
            },
            "{name}"
        );
    }
}

#[test]
fn max_in_flight() {
    for (value, message) in [
        ("0", "must be greater than 0"),
        ("-3", "must be greater than 0"),
        ("4294967296", "must be at most 1000000"),
    ] {
        assert_eq!(
            errors(&sm(&format!("max_in_flight = {value}"))),
            [format!("backends.sm-flan.max_in_flight: {message}")],
            "max_in_flight {value}"
        );
    }
    assert_eq!(
        errors(&hf("max_in_flight = \"64\"")),
        ["backends.hf-flan.max_in_flight: expected an integer, found string"]
    );
    let config = parse(&sm("max_in_flight = 1"));
    assert_eq!(config.backend("sm-flan").unwrap().max_in_flight, Some(1));
}

#[test]
fn outlier_ejection() {
    assert_eq!(
        errors(&sm("eject_after = -1\nejection_time = \"0s\"")),
        [
            "backends.sm-flan.eject_after: must not be negative",
            "backends.sm-flan.ejection_time: must be greater than 0",
        ]
    );
    assert_eq!(
        errors(&hf("eject_after = 4294967296")),
        ["backends.hf-flan.eject_after: must be at most 1000"]
    );
    assert_eq!(
        errors(&sm("ejection_time = \"1m\"\nmax_ejection_time = \"30s\"")),
        ["backends.sm-flan.max_ejection_time: must be at least ejection_time"]
    );
    assert_eq!(
        errors(&hf("max_ejection_time = \"10s\"")),
        ["backends.hf-flan.max_ejection_time: must be at least ejection_time (30s by default)"]
    );
    // Raising only the base raises the default cap with it.
    let config = parse(&sm("ejection_time = \"10m\""));
    assert_eq!(
        config.backend("sm-flan").unwrap().outlier,
        OutlierConfig {
            eject_after: 5,
            base_ejection: Duration::from_secs(600),
            max_ejection: Duration::from_secs(600),
        }
    );
}

// === huggingface health checks ===

#[test]
fn health_check_set() {
    let config = parse(&hf(
        "health_check_interval = \"5s\"\nhealth_check_path = \"/ready?deep=1\"\nhealth_check_timeout = \"500ms\"",
    ));
    assert_eq!(
        huggingface(&config, "hf-flan").health_check,
        Some(HealthCheckConfig {
            interval: Duration::from_secs(5),
            path: "/ready?deep=1".to_owned(),
            timeout: Duration::from_millis(500),
        })
    );
    let config = parse(&hf("health_check_interval = \"1m\""));
    assert_eq!(
        huggingface(&config, "hf-flan").health_check,
        Some(HealthCheckConfig {
            interval: Duration::from_secs(60),
            path: "/health".to_owned(),
            timeout: Duration::from_secs(2),
        })
    );
}

#[test]
fn health_check_errors() {
    assert_eq!(
        errors(&hf(
            "health_check_path = \"/health\"\nhealth_check_timeout = \"2s\""
        )),
        [
            "backends.hf-flan.health_check_path: only valid together with health_check_interval",
            "backends.hf-flan.health_check_timeout: only valid together with health_check_interval",
        ]
    );
    assert_eq!(
        errors(&hf(
            "health_check_interval = \"0s\"\nhealth_check_path = \"health\"\nhealth_check_timeout = \"0s\""
        )),
        [
            "backends.hf-flan.health_check_interval: must be greater than 0",
            "backends.hf-flan.health_check_timeout: must be greater than 0",
            r#"backends.hf-flan.health_check_path: must start with "/", such as "/health""#,
        ]
    );
    for path in ["/he alth", "/health#x", "/caf\u{e9}"] {
        assert_eq!(
            errors(&hf(&format!(
                "health_check_interval = \"10s\"\nhealth_check_path = \"{path}\""
            ))),
            [
                r##"backends.hf-flan.health_check_path: must contain only visible ASCII characters other than "#""##
            ],
            "path {path:?}"
        );
    }
}

#[test]
fn health_check_is_only_for_huggingface() {
    assert_eq!(
        errors(&sm(
            "health_check_interval = \"10s\"\nhealth_check_path = \"/health\"\nhealth_check_timeout = \"2s\""
        )),
        [
            r#"backends.sm-flan.health_check_interval: not valid for kind "sagemaker" (only for kind "huggingface")"#,
            r#"backends.sm-flan.health_check_path: not valid for kind "sagemaker" (only for kind "huggingface")"#,
            r#"backends.sm-flan.health_check_timeout: not valid for kind "sagemaker" (only for kind "huggingface")"#,
        ]
    );
}

// === all at once, and the summary ===

#[test]
fn every_resilience_error_in_one_pass() {
    let text = format!(
        "{SM}max_in_flight = 0\neject_after = -2\nmax_ejection_time = \"1s\"\n\
         {HF}health_check_timeout = \"1s\"\n\
         {ROUTE}balance = \"random\"\nbackoff_max = \"1ms\"\nretry_budget_ratio = 3\nhedge_after = \"0s\"\nsticky = true\n"
    );
    assert_eq!(
        errors(&text),
        [
            "backends.hf-flan.health_check_timeout: only valid together with health_check_interval",
            "backends.sm-flan.max_in_flight: must be greater than 0",
            "backends.sm-flan.eject_after: must not be negative",
            "backends.sm-flan.max_ejection_time: must be at least ejection_time (30s by default)",
            "routes.flan.sticky: unknown key",
            r#"routes.flan.balance: unknown balance "random", expected "p2c", "weighted" or "priority""#,
            "routes.flan.backoff_max: must be at least backoff_base (25ms by default)",
            "routes.flan.retry_budget_ratio: must be between 0.0 and 1.0",
            "routes.flan.hedge_after: must be greater than 0",
        ]
    );
}

#[test]
fn summary_shows_the_policy() {
    let defaults = parse(&minimal("")).summary();
    for expected in [
        "\n    balance p2c, per-try timeout none, backoff 25ms..1s, retry budget 20% + 10/s over 10s, hedge off, sticky sessions on\n",
        "  sm-flan  sagemaker\n",
        "\n    max in flight unlimited, eject after 5 failures for 30s..5m\n",
        "\n    max in flight unlimited, eject after 5 failures for 30s..5m, health check off\n",
    ] {
        assert!(
            defaults.contains(expected),
            "missing {expected:?} in:\n{defaults}"
        );
    }

    let set = format!(
        "{SM}max_in_flight = 16\neject_after = 0\n{HF}health_check_interval = \"15s\"\nhealth_check_path = \"/ready\"\n{ROUTE}{}",
        "balance = \"weighted\"\nper_try_timeout = \"2s\"\nbackoff_base = \"50ms\"\nbackoff_max = \"2s\"\nretry_budget_ratio = 0.125\nretry_budget_min_per_second = 0\nretry_budget_window = \"1m\"\nhedge_after = \"300ms\"\nsticky_sessions = false\n"
    );
    let summary = parse(&set).summary();
    for expected in [
        "\n    balance weighted, per-try timeout 2s, backoff 50ms..2s, retry budget 12.5% + 0/s over 1m, hedge after 300ms, sticky sessions off\n",
        "\n    max in flight 16, ejection off\n",
        "\n    max in flight unlimited, eject after 5 failures for 30s..5m, health check GET /ready every 15s (timeout 2s)\n",
    ] {
        assert!(
            summary.contains(expected),
            "missing {expected:?} in:\n{summary}"
        );
    }
}
