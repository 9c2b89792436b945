#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Observability end to end: the exact counters and label sets `/metrics`
//! shows for known traffic, the whole exposition read by a Prometheus text
//! parser with every label value checked against a closed set, W3C trace
//! context through both backend kinds, and the JSON access log of the real
//! binary.
//!
//! Every test starts its own gateway, so every count is exact. Nothing is
//! timed: waits are bounded polls on a condition.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{error_json, Harness, Setup, CONFIG, HF_TOKEN, SECRET_KEY};
use infergate::emulator::{self, EmulatorHandle, FaultConfig, InjectedError};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::{json, Value as Json};

const BODY: &str = r#"{"inputs": "one stable inference URL", "parameters": {"max_new_tokens": 8}}"#;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

// === the exposition ===

/// One scrape of `/metrics`: its text and what the parser made of it.
struct Metrics {
    text: String,
    scrape: Scrape,
}

/// `k=v,…` sorted by key: how a series is named in the expectations.
fn key(labels: &[(&str, &str)]) -> String {
    let sorted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn sample_key(s: &Sample) -> String {
    let sorted: BTreeMap<&String, &String> = s.labels.iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Counter(f) | Value::Gauge(f) | Value::Untyped(f) => *f,
        Value::Histogram(buckets) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count)
            .unwrap(),
        Value::Summary(_) => panic!("the gateway has no summaries"),
    }
}

/// Expected series of one family: label set → value.
fn want(series: &[(&[(&str, &str)], f64)]) -> BTreeMap<String, f64> {
    series.iter().map(|(l, v)| (key(l), *v)).collect()
}

impl Metrics {
    fn parse(text: String) -> Self {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        Metrics { text, scrape }
    }

    /// Every series of `name` (a family, or `<histogram>_count`/`_sum`).
    fn family(&self, name: &str) -> BTreeMap<String, f64> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| (sample_key(s), number(&s.value)))
            .collect()
    }

    /// The value of the series of `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.family(name).get(&key(labels)).copied()
    }

    /// The series of `name` that are not at 0: every label set the config
    /// makes known is present at 0 from start (tests/metrics_at_start.rs),
    /// so what traffic did shows in the others.
    fn counted(&self, name: &str) -> BTreeMap<String, f64> {
        nonzero(self.family(name))
    }

    /// Asserts the whole family: exactly these series with these values,
    /// series at 0 left out on both sides.
    #[track_caller]
    fn assert_family(&self, name: &str, series: &[(&[(&str, &str)], f64)]) {
        assert_eq!(
            self.counted(name),
            nonzero(want(series)),
            "{name} in\n{}",
            self.text
        );
    }
}

fn nonzero(series: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    series.into_iter().filter(|(_, v)| *v != 0.0).collect()
}

async fn scrape(h: &Harness) -> Metrics {
    let res = h.client.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Metrics::parse(res.text().await.unwrap())
}

/// Scrapes until `cond` holds (what a stream records when its body ends
/// lands just after the client read the last byte).
async fn scrape_until(h: &Harness, what: &str, cond: impl Fn(&Metrics) -> bool) -> Metrics {
    for _ in 0..500 {
        let m = scrape(h).await;
        if cond(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}:\n{}", scrape(h).await.text);
}

/// The backend-state gauges of a gateway whose backends are all in
/// `state` except those listed in `other`.
fn states(
    backends: &[&'static str],
    others: &[(&'static str, &'static str)],
) -> Vec<(Vec<(&'static str, &'static str)>, f64)> {
    let mut out = Vec::new();
    for b in backends {
        let now = others
            .iter()
            .find(|(n, _)| n == b)
            .map_or("available", |(_, s)| *s);
        for s in STATES {
            out.push((
                vec![("backend", *b), ("state", *s)],
                f64::from(u8::from(*s == now)),
            ));
        }
    }
    out
}

#[track_caller]
fn assert_states(m: &Metrics, backends: &[&'static str], others: &[(&'static str, &'static str)]) {
    let owned = states(backends, others);
    let series: Vec<(&[(&str, &str)], f64)> =
        owned.iter().map(|(l, v)| (l.as_slice(), *v)).collect();
    m.assert_family("infergate_backend_state", &series);
}

// === traffic ===

async fn harness(config: String) -> Harness {
    Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await
}

/// The default test config with `keys` added to `[routes.{route}]`.
fn with_route_keys(config: &str, route: &str, keys: &str) -> String {
    let table = format!("[routes.{route}]\n");
    assert!(config.contains(&table), "no {table}");
    config.replace(&table, &format!("{table}{keys}\n"))
}

/// The default test config with `keys` added to `[backends.{backend}]`.
fn with_backend_keys(config: &str, backend: &str, keys: &str) -> String {
    let table = format!("[backends.{backend}]\n");
    assert!(config.contains(&table), "no {table}");
    config.replace(&table, &format!("{table}{keys}\n"))
}

/// Status and answering backend; the body is read whole.
async fn call(h: &Harness, route: &str) -> (u16, String) {
    let res = h.predict(route, BODY).await;
    let status = res.status().as_u16();
    let backend = res
        .headers()
        .get("x-infergate-backend")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let _ = res.bytes().await.unwrap();
    (status, backend)
}

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn stream_body(n: usize) -> String {
    json!({"inputs": words(n), "parameters": {"max_new_tokens": n}}).to_string()
}

/// A whole stream: status, backend and body text.
async fn stream(h: &Harness, route: &str, body: &str) -> (u16, String, String) {
    let res = h
        .client
        .post(h.url(&format!("/v1/predict/{route}/stream")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let backend = res.headers()["x-infergate-backend"]
        .to_str()
        .unwrap()
        .to_string();
    (status, backend, res.text().await.unwrap())
}

fn data_events(sse: &str) -> usize {
    sse.split("\n\n").filter(|b| b.starts_with("data:")).count()
}

fn error_events(sse: &str) -> usize {
    sse.split("\n\n")
        .filter(|b| b.starts_with("event: error\n"))
        .count()
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

// === closed sets ===

const ROUTES: &[&str] = &["sm", "hf", "js", "both"];
const BACKENDS: &[&str] = &["sm", "js", "hf"];
const STATES: &[&str] = &["available", "ejected", "cold", "saturated", "unhealthy"];
const CODE_CLASSES: &[&str] = &["1xx", "2xx", "3xx", "4xx", "5xx"];
const OUTCOMES: &[&str] = &["success", "client_error", "upstream_error", "gateway_error"];
/// `FailureKind::as_str`: the reasons of retries and results of attempts.
const FAILURE_KINDS: &[&str] = &[
    "upstream_unreachable",
    "upstream_connection_error",
    "upstream_timeout",
    "rate_limited",
    "backend_unavailable",
    "model_error",
    "upstream_auth_rejected",
    "credentials_unavailable",
    "upstream_rejected",
    "upstream_error",
    "upstream_protocol_error",
    "invalid_input",
    "internal_error",
];
const STREAM_ERROR_KINDS: &[&str] = &[
    "model_stream_error",
    "internal_stream_failure",
    "model_error",
    "protocol",
    "connection",
    "idle_timeout",
];

/// Every family the gateway exports and its label names.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "infergate_requests_total",
        "counter",
        &["route", "backend", "code_class", "outcome"],
    ),
    (
        "infergate_request_duration_seconds",
        "histogram",
        &["route"],
    ),
    ("infergate_overhead_seconds", "histogram", &["route"]),
    (
        "infergate_upstream_duration_seconds",
        "histogram",
        &["backend", "code_class"],
    ),
    (
        "infergate_upstream_attempts_total",
        "counter",
        &["backend", "result"],
    ),
    ("infergate_retries_total", "counter", &["route", "reason"]),
    (
        "infergate_retry_budget_exhausted_total",
        "counter",
        &["route"],
    ),
    (
        "infergate_failovers_total",
        "counter",
        &["route", "from", "to"],
    ),
    ("infergate_hedges_total", "counter", &["route"]),
    ("infergate_shed_total", "counter", &["route"]),
    ("infergate_backend_in_flight", "gauge", &["backend"]),
    ("infergate_backend_state", "gauge", &["backend", "state"]),
    ("infergate_backend_ejections_total", "counter", &["backend"]),
    (
        "infergate_stream_time_to_first_byte_seconds",
        "histogram",
        &["route", "backend"],
    ),
    (
        "infergate_stream_events_total",
        "counter",
        &["route", "backend"],
    ),
    (
        "infergate_stream_errors_total",
        "counter",
        &["route", "backend", "kind"],
    ),
    (
        "infergate_credentials_refresh_total",
        "counter",
        &["backend", "result"],
    ),
    ("infergate_build_info", "gauge", &["version"]),
    (
        "infergate_connections_accepted_total",
        "counter",
        &["worker"],
    ),
];

// === exact counts ===

#[tokio::test]
async fn successes_are_counted_per_route_and_backend() {
    let h = Harness::start().await;
    for (route, n) in [("sm", 3), ("hf", 2), ("js", 1)] {
        for _ in 0..n {
            assert_eq!(call(&h, route).await, (200, route.to_string()));
        }
    }
    let m = scrape(&h).await;
    let ok = |r: &'static str| -> [(&'static str, &'static str); 4] {
        [
            ("route", r),
            ("backend", r),
            ("code_class", "2xx"),
            ("outcome", "success"),
        ]
    };
    m.assert_family(
        "infergate_requests_total",
        &[(&ok("sm"), 3.0), (&ok("hf"), 2.0), (&ok("js"), 1.0)],
    );
    for family in [
        "infergate_request_duration_seconds",
        "infergate_overhead_seconds",
    ] {
        m.assert_family(
            &format!("{family}_count"),
            &[
                (&[("route", "sm")], 3.0),
                (&[("route", "hf")], 2.0),
                (&[("route", "js")], 1.0),
            ],
        );
        // The histogram's +Inf bucket is its count.
        m.assert_family(
            family,
            &[
                (&[("route", "sm")], 3.0),
                (&[("route", "hf")], 2.0),
                (&[("route", "js")], 1.0),
            ],
        );
    }
    // The gateway's own time is part of the client-visible time.
    for route in ["sm", "hf", "js"] {
        let total = m
            .get(
                "infergate_request_duration_seconds_sum",
                &[("route", route)],
            )
            .unwrap();
        let overhead = m
            .get("infergate_overhead_seconds_sum", &[("route", route)])
            .unwrap();
        assert!(overhead > 0.0 && overhead <= total, "{overhead} vs {total}");
    }
    m.assert_family(
        "infergate_upstream_attempts_total",
        &[
            (&[("backend", "sm"), ("result", "success")], 3.0),
            (&[("backend", "hf"), ("result", "success")], 2.0),
            (&[("backend", "js"), ("result", "success")], 1.0),
        ],
    );
    m.assert_family(
        "infergate_upstream_duration_seconds_count",
        &[
            (&[("backend", "sm"), ("code_class", "2xx")], 3.0),
            (&[("backend", "hf"), ("code_class", "2xx")], 2.0),
            (&[("backend", "js"), ("code_class", "2xx")], 1.0),
        ],
    );
    // Static credentials never expire: one fetch per SageMaker backend, none
    // for Hugging Face.
    m.assert_family(
        "infergate_credentials_refresh_total",
        &[
            (&[("backend", "sm"), ("result", "success")], 1.0),
            (&[("backend", "js"), ("result", "success")], 1.0),
        ],
    );
    m.assert_family(
        "infergate_build_info",
        &[(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );
    m.assert_family(
        "infergate_backend_in_flight",
        &[
            (&[("backend", "sm")], 0.0),
            (&[("backend", "js")], 0.0),
            (&[("backend", "hf")], 0.0),
        ],
    );
    assert_states(&m, &["sm", "js", "hf"], &[]);
    for quiet in [
        "infergate_retries_total",
        "infergate_failovers_total",
        "infergate_retry_budget_exhausted_total",
        "infergate_hedges_total",
        "infergate_shed_total",
        "infergate_backend_ejections_total",
        "infergate_stream_events_total",
        "infergate_stream_errors_total",
        "infergate_stream_time_to_first_byte_seconds_count",
    ] {
        m.assert_family(quiet, &[]);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn credentials_are_fetched_once_and_counted_after_the_first_request() {
    let h = Harness::start().await;
    let m = scrape(&h).await;
    m.assert_family("infergate_credentials_refresh_total", &[]);
    for _ in 0..3 {
        assert_eq!(call(&h, "sm").await.0, 200);
    }
    let m = scrape(&h).await;
    m.assert_family(
        "infergate_credentials_refresh_total",
        &[(&[("backend", "sm"), ("result", "success")], 1.0)],
    );
    h.shutdown().await;
}

#[tokio::test]
async fn errors_are_counted_by_outcome() {
    let h = Harness::start().await;
    // An unknown route.
    let res = h.predict("nope", BODY).await;
    assert_eq!(res.status(), 404);
    // The model's own 4xx, on both kinds.
    h.sm.faults().fail_next(
        1,
        InjectedError::ModelError {
            original_status: 400,
        },
    );
    assert_eq!(call(&h, "sm").await, (400, "sm".into()));
    h.hf.faults().fail_next(1, InjectedError::Status(422));
    assert_eq!(call(&h, "hf").await, (422, "hf".into()));
    // The client's own 400, found before any backend is called.
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("x-amzn-sagemaker-target-variant", "v".repeat(64))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A backend that stays unavailable: three attempts, two retries.
    h.sm.faults().set(FaultConfig {
        error_rate: 1.0,
        error: InjectedError::ServiceUnavailable,
        ..FaultConfig::default()
    });
    assert_eq!(call(&h, "sm").await, (503, "sm".into()));
    h.sm.faults().set(FaultConfig::default());
    // A reset connection, retried on the same backend.
    h.hf.faults().update(|f| f.reset_next = 1);
    assert_eq!(call(&h, "hf").await, (200, "hf".into()));

    let m = scrape(&h).await;
    m.assert_family(
        "infergate_requests_total",
        &[
            (
                &[
                    ("route", "unknown"),
                    ("backend", "none"),
                    ("code_class", "4xx"),
                    ("outcome", "client_error"),
                ],
                1.0,
            ),
            (
                &[
                    ("route", "sm"),
                    ("backend", "sm"),
                    ("code_class", "4xx"),
                    ("outcome", "client_error"),
                ],
                1.0,
            ),
            (
                &[
                    ("route", "hf"),
                    ("backend", "hf"),
                    ("code_class", "4xx"),
                    ("outcome", "client_error"),
                ],
                1.0,
            ),
            (
                &[
                    ("route", "sm"),
                    ("backend", "none"),
                    ("code_class", "4xx"),
                    ("outcome", "client_error"),
                ],
                1.0,
            ),
            (
                &[
                    ("route", "sm"),
                    ("backend", "sm"),
                    ("code_class", "5xx"),
                    ("outcome", "upstream_error"),
                ],
                1.0,
            ),
            (
                &[
                    ("route", "hf"),
                    ("backend", "hf"),
                    ("code_class", "2xx"),
                    ("outcome", "success"),
                ],
                1.0,
            ),
        ],
    );
    for family in [
        "infergate_request_duration_seconds_count",
        "infergate_overhead_seconds_count",
    ] {
        m.assert_family(
            family,
            &[
                (&[("route", "unknown")], 1.0),
                (&[("route", "sm")], 3.0),
                (&[("route", "hf")], 2.0),
            ],
        );
    }
    m.assert_family(
        "infergate_upstream_attempts_total",
        &[
            (&[("backend", "sm"), ("result", "model_error")], 1.0),
            (&[("backend", "hf"), ("result", "model_error")], 1.0),
            (&[("backend", "sm"), ("result", "backend_unavailable")], 3.0),
            (
                &[("backend", "hf"), ("result", "upstream_connection_error")],
                1.0,
            ),
            (&[("backend", "hf"), ("result", "success")], 1.0),
        ],
    );
    // SageMaker's ModelError is a 424; a reset connection has no status.
    m.assert_family(
        "infergate_upstream_duration_seconds_count",
        &[
            (&[("backend", "sm"), ("code_class", "4xx")], 1.0),
            (&[("backend", "sm"), ("code_class", "5xx")], 3.0),
            (&[("backend", "hf"), ("code_class", "4xx")], 1.0),
            (&[("backend", "hf"), ("code_class", "none")], 1.0),
            (&[("backend", "hf"), ("code_class", "2xx")], 1.0),
        ],
    );
    m.assert_family(
        "infergate_retries_total",
        &[
            (&[("route", "sm"), ("reason", "backend_unavailable")], 2.0),
            (
                &[("route", "hf"), ("reason", "upstream_connection_error")],
                1.0,
            ),
        ],
    );
    m.assert_family("infergate_failovers_total", &[]);
    h.shutdown().await;
}

#[tokio::test]
async fn retries_and_failovers_are_counted_by_reason_and_direction() {
    // `both` tries sm first; `cold` tries hf first.
    let mut config = with_route_keys(CONFIG, "both", "balance = \"priority\"");
    config += "\n[routes.cold]\nbackends = [\"hf\", \"sm\"]\nbalance = \"priority\"\n";
    let h = harness(config).await;
    // Throttled SageMaker → Hugging Face.
    h.sm.faults()
        .fail_next(1, InjectedError::ThrottlingException);
    assert_eq!(call(&h, "both").await, (200, "hf".into()));
    // Unavailable SageMaker → Hugging Face.
    h.sm.faults()
        .fail_next(1, InjectedError::ServiceUnavailable);
    assert_eq!(call(&h, "both").await, (200, "hf".into()));
    // A Hugging Face endpoint scaled to zero → SageMaker.
    h.hf.faults().set(FaultConfig {
        cold_start: Some(Duration::from_secs(60)),
        ..FaultConfig::default()
    });
    assert_eq!(call(&h, "cold").await, (200, "sm".into()));
    // A lone backend retried in place: a retry, no failover.
    h.sm.faults()
        .fail_next(1, InjectedError::ThrottlingException);
    assert_eq!(call(&h, "sm").await, (200, "sm".into()));

    let m = scrape(&h).await;
    m.assert_family(
        "infergate_retries_total",
        &[
            (&[("route", "both"), ("reason", "rate_limited")], 1.0),
            (&[("route", "both"), ("reason", "backend_unavailable")], 1.0),
            (&[("route", "cold"), ("reason", "backend_unavailable")], 1.0),
            (&[("route", "sm"), ("reason", "rate_limited")], 1.0),
        ],
    );
    m.assert_family(
        "infergate_failovers_total",
        &[
            (&[("route", "both"), ("from", "sm"), ("to", "hf")], 2.0),
            (&[("route", "cold"), ("from", "hf"), ("to", "sm")], 1.0),
        ],
    );
    let ok = |r: &'static str, b: &'static str| -> [(&'static str, &'static str); 4] {
        [
            ("route", r),
            ("backend", b),
            ("code_class", "2xx"),
            ("outcome", "success"),
        ]
    };
    m.assert_family(
        "infergate_requests_total",
        &[
            (&ok("both", "hf"), 2.0),
            (&ok("cold", "sm"), 1.0),
            (&ok("sm", "sm"), 1.0),
        ],
    );
    m.assert_family(
        "infergate_upstream_attempts_total",
        &[
            (&[("backend", "sm"), ("result", "rate_limited")], 2.0),
            (&[("backend", "sm"), ("result", "backend_unavailable")], 1.0),
            (&[("backend", "sm"), ("result", "success")], 2.0),
            (&[("backend", "hf"), ("result", "backend_unavailable")], 1.0),
            (&[("backend", "hf"), ("result", "success")], 2.0),
        ],
    );
    m.assert_family("infergate_retry_budget_exhausted_total", &[]);
    // The endpoint that answered "scaling up" is reported cold.
    assert_states(&m, &["sm", "js", "hf"], &[("hf", "cold")]);
    h.shutdown().await;
}

#[tokio::test]
async fn an_exhausted_retry_budget_is_counted() {
    let config = format!(
        "{CONFIG}\n[routes.solo]\nbackends = [\"sm\"]\nretry_budget_ratio = 0.0\n\
         retry_budget_min_per_second = 0\n"
    );
    let h = harness(config).await;
    h.sm.faults().set(FaultConfig {
        error_rate: 1.0,
        error: InjectedError::ServiceUnavailable,
        ..FaultConfig::default()
    });
    for _ in 0..2 {
        let res = h.predict("solo", BODY).await;
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["x-infergate-attempts"], "1");
    }
    let m = scrape(&h).await;
    m.assert_family(
        "infergate_retry_budget_exhausted_total",
        &[(&[("route", "solo")], 2.0)],
    );
    m.assert_family("infergate_retries_total", &[]);
    m.assert_family(
        "infergate_upstream_attempts_total",
        &[(&[("backend", "sm"), ("result", "backend_unavailable")], 2.0)],
    );
    m.assert_family(
        "infergate_requests_total",
        &[(
            &[
                ("route", "solo"),
                ("backend", "sm"),
                ("code_class", "5xx"),
                ("outcome", "upstream_error"),
            ],
            2.0,
        )],
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_shed_request_and_the_in_flight_gauge() {
    let config = with_backend_keys(
        &format!("{CONFIG}\n[routes.solo]\nbackends = [\"sm\"]\n"),
        "sm",
        "max_in_flight = 1",
    );
    let h = harness(config).await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(1));
    let held = {
        let client = h.client.clone();
        let url = h.url("/v1/predict/solo");
        tokio::spawn(async move {
            let res = client
                .post(url)
                .header("content-type", "application/json")
                .body(BODY)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let _ = res.bytes().await;
            status
        })
    };
    let counters = h.sm.counters();
    wait_for("the first request to be held", || counters.in_flight() == 1).await;
    let m = scrape(&h).await;
    assert_eq!(
        m.get("infergate_backend_in_flight", &[("backend", "sm")]),
        Some(1.0)
    );
    assert_states(&m, &["sm", "js", "hf"], &[("sm", "saturated")]);

    let res = h.predict("solo", BODY).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["x-infergate-attempts"], "0");
    assert_eq!(error_json(res).await["type"], "overloaded");
    assert_eq!(held.await.unwrap(), 200);

    let m = scrape(&h).await;
    m.assert_family("infergate_shed_total", &[(&[("route", "solo")], 1.0)]);
    m.assert_family(
        "infergate_requests_total",
        &[
            (
                &[
                    ("route", "solo"),
                    ("backend", "none"),
                    ("code_class", "5xx"),
                    ("outcome", "gateway_error"),
                ],
                1.0,
            ),
            (
                &[
                    ("route", "solo"),
                    ("backend", "sm"),
                    ("code_class", "2xx"),
                    ("outcome", "success"),
                ],
                1.0,
            ),
        ],
    );
    // The shed request never reached a backend.
    m.assert_family(
        "infergate_upstream_attempts_total",
        &[(&[("backend", "sm"), ("result", "success")], 1.0)],
    );
    assert_eq!(
        m.get("infergate_backend_in_flight", &[("backend", "sm")]),
        Some(0.0)
    );
    assert_states(&m, &["sm", "js", "hf"], &[]);
    h.shutdown().await;
}

#[tokio::test]
async fn an_ejection_is_counted_and_the_backend_reported_ejected() {
    // Only the pair route lists sm, so ejecting it leaves hf to serve.
    let config = r#"
[server]
listen = "127.0.0.1:0"
request_timeout = "5s"
shutdown_grace = "1s"

[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "${SM_URL}"
eject_after = 2
ejection_time = "60s"

[backends.hf]
kind = "huggingface"
url = "${HF_URL}"
token = "${HF_TOKEN}"

[routes.pair]
backends = ["sm", "hf"]
balance = "priority"
"#;
    let h = harness(config.to_string()).await;
    h.sm.faults().set(FaultConfig {
        error_rate: 1.0,
        error: InjectedError::ServiceUnavailable,
        ..FaultConfig::default()
    });
    for _ in 0..2 {
        assert_eq!(call(&h, "pair").await, (200, "hf".into()));
    }
    let m = scrape(&h).await;
    m.assert_family(
        "infergate_backend_ejections_total",
        &[(&[("backend", "sm")], 1.0)],
    );
    assert_states(&m, &["sm", "hf"], &[("sm", "ejected")]);
    // While ejected, the backend gets nothing.
    assert_eq!(call(&h, "pair").await, (200, "hf".into()));
    assert_eq!(h.sm.counters().requests(), 2);
    let m = scrape(&h).await;
    m.assert_family(
        "infergate_backend_ejections_total",
        &[(&[("backend", "sm")], 1.0)],
    );
    assert_states(&m, &["sm", "hf"], &[("sm", "ejected")]);
    m.assert_family(
        "infergate_failovers_total",
        &[(&[("route", "pair"), ("from", "sm"), ("to", "hf")], 2.0)],
    );
    m.assert_family(
        "infergate_retries_total",
        &[(&[("route", "pair"), ("reason", "backend_unavailable")], 2.0)],
    );
    m.assert_family(
        "infergate_upstream_attempts_total",
        &[
            (&[("backend", "sm"), ("result", "backend_unavailable")], 2.0),
            (&[("backend", "hf"), ("result", "success")], 3.0),
        ],
    );
    m.assert_family(
        "infergate_requests_total",
        &[(
            &[
                ("route", "pair"),
                ("backend", "hf"),
                ("code_class", "2xx"),
                ("outcome", "success"),
            ],
            3.0,
        )],
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_hedge_is_counted() {
    let config = with_route_keys(
        CONFIG,
        "both",
        "balance = \"priority\"\nhedge_after = \"50ms\"",
    );
    let h = harness(config).await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(2));
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    let _ = res.bytes().await;
    let m = scrape(&h).await;
    m.assert_family("infergate_hedges_total", &[(&[("route", "both")], 1.0)]);
    m.assert_family("infergate_retries_total", &[]);
    m.assert_family("infergate_failovers_total", &[]);
    m.assert_family(
        "infergate_requests_total",
        &[(
            &[
                ("route", "both"),
                ("backend", "hf"),
                ("code_class", "2xx"),
                ("outcome", "success"),
            ],
            1.0,
        )],
    );
    assert_eq!(
        m.get(
            "infergate_upstream_attempts_total",
            &[("backend", "hf"), ("result", "success")]
        ),
        Some(1.0)
    );
    h.shutdown().await;
}

#[tokio::test]
async fn streams_are_counted() {
    let h = Harness::start().await;
    // A whole Hugging Face stream of 20 events.
    let (status, backend, sse) = stream(&h, "hf", &stream_body(20)).await;
    assert_eq!((status, backend.as_str()), (200, "hf"));
    assert_eq!((data_events(&sse), error_events(&sse)), (20, 0));
    // Hugging Face's error event after 5.
    h.hf.faults().update(|f| f.stream_error_after = Some(5));
    let (_, _, sse) = stream(&h, "hf", &stream_body(20)).await;
    assert_eq!((data_events(&sse), error_events(&sse)), (5, 1));
    // SageMaker's ModelStreamError after 4.
    h.sm.faults().update(|f| f.stream_error_after = Some(4));
    let (status, backend, sse) = stream(&h, "sm", &stream_body(20)).await;
    assert_eq!((status, backend.as_str()), (200, "sm"));
    assert_eq!((data_events(&sse), error_events(&sse)), (4, 1));

    let want_events = want(&[
        (&[("route", "hf"), ("backend", "hf")], 25.0),
        (&[("route", "sm"), ("backend", "sm")], 4.0),
    ]);
    let m = scrape_until(&h, "the stream tallies", |m| {
        m.counted("infergate_stream_events_total") == want_events
    })
    .await;
    m.assert_family(
        "infergate_stream_errors_total",
        &[
            (
                &[("route", "hf"), ("backend", "hf"), ("kind", "model_error")],
                1.0,
            ),
            (
                &[
                    ("route", "sm"),
                    ("backend", "sm"),
                    ("kind", "model_stream_error"),
                ],
                1.0,
            ),
        ],
    );
    m.assert_family(
        "infergate_stream_time_to_first_byte_seconds_count",
        &[
            (&[("route", "hf"), ("backend", "hf")], 2.0),
            (&[("route", "sm"), ("backend", "sm")], 1.0),
        ],
    );
    // A stream that began is a 200 for the request metrics, whatever
    // happened after its first byte.
    let ok = |r: &'static str| -> [(&'static str, &'static str); 4] {
        [
            ("route", r),
            ("backend", r),
            ("code_class", "2xx"),
            ("outcome", "success"),
        ]
    };
    m.assert_family(
        "infergate_requests_total",
        &[(&ok("hf"), 2.0), (&ok("sm"), 1.0)],
    );
    m.assert_family(
        "infergate_request_duration_seconds_count",
        &[(&[("route", "hf")], 2.0), (&[("route", "sm")], 1.0)],
    );
    m.assert_family(
        "infergate_upstream_attempts_total",
        &[
            (&[("backend", "hf"), ("result", "success")], 2.0),
            (&[("backend", "sm"), ("result", "success")], 1.0),
        ],
    );
    h.shutdown().await;
}

// === the whole exposition ===

/// Canaries that must never become a label value.
const ODD_ROUTE: &str = "canary-route-9f1e";
const ODD_REQUEST_ID: &str = "canary-request-id-4d2a";
const CLIENT_TOKEN: &str = "canary-client-token-55d0";
const ODD_QUERY: &str = "canary-query-7d3b";
const ODD_PATH: &str = "canary-path-6e2a";

#[tokio::test]
async fn the_whole_exposition_parses_and_every_label_value_is_bounded() {
    let config = format!(
        "{}\n[routes.solo]\nbackends = [\"sm\"]\nretry_budget_ratio = 0.0\n\
         retry_budget_min_per_second = 0\n",
        with_route_keys(CONFIG, "both", "balance = \"priority\"")
    );
    let h = harness(config).await;
    let mut messages: Vec<String> = Vec::new();
    let odd = |path: String| {
        h.client
            .post(h.url(&path))
            .header("content-type", "application/json")
            .header("x-request-id", ODD_REQUEST_ID)
            .header("authorization", format!("Bearer {CLIENT_TOKEN}"))
            .header("x-api-key", CLIENT_TOKEN)
            .header("cookie", format!("session={CLIENT_TOKEN}"))
            .body(BODY)
    };
    // Unknown routes of every shape, plain and streaming.
    for path in [
        format!("/v1/predict/{ODD_ROUTE}"),
        format!("/v1/predict/{ODD_ROUTE}/stream"),
        format!("/v1/predict/{ODD_ROUTE}%0Ainjected%22label"),
        "/v1/predict/..%2F..%2Fetc%2Fpasswd".to_string(),
        format!("/v1/predict/a/{ODD_ROUTE}/c"),
        format!("/v1/predict/{}", "x".repeat(2000)),
        "/v1/predict/%F0%9F%92%A5/stream".to_string(),
        format!("/v1/predict/{ODD_ROUTE}?token={ODD_QUERY}"),
    ] {
        let res = odd(path.clone()).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(res.headers()["x-request-id"], ODD_REQUEST_ID);
        let e = error_json(res).await;
        assert_eq!(e["type"], "unknown_route");
        messages.push(e["message"].as_str().unwrap().to_string());
    }
    // Not a predict path at all; a wrong method.
    let res = h
        .client
        .get(h.url(&format!("/{ODD_PATH}?token={ODD_QUERY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = h
        .client
        .get(h.url(&format!("/v1/predict/{ODD_ROUTE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    // Known routes with a query string, an odd request id and client keys.
    for route in ["sm", "hf", "js", "both"] {
        let res = odd(format!("/v1/predict/{route}?api_key={ODD_QUERY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{route}");
    }
    // Errors with messages of their own.
    h.sm.faults().fail_next(
        1,
        InjectedError::ModelError {
            original_status: 400,
        },
    );
    let res = odd("/v1/predict/sm".into()).send().await.unwrap();
    assert_eq!(res.status(), 400);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    h.hf.faults().fail_next(1, InjectedError::Status(422));
    let res = odd("/v1/predict/hf".into()).send().await.unwrap();
    assert_eq!(res.status(), 422);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    let res = odd("/v1/predict/js".into())
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    let res = odd("/v1/predict/sm".into())
        .header("x-infergate-timeout-ms", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    // A retry, a failover, an exhausted budget, a rejected token.
    h.sm.faults()
        .fail_next(2, InjectedError::ThrottlingException);
    assert_eq!(
        odd("/v1/predict/both".into())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        odd("/v1/predict/solo".into())
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    h.hf.set_token(Some("another-token".into()));
    let res = odd("/v1/predict/hf".into()).send().await.unwrap();
    assert_eq!(res.status(), 502);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    h.hf.set_token(Some(HF_TOKEN.into()));
    // Streams, one ended by an error.
    h.sm.faults().update(|f| f.stream_error_after = Some(3));
    let (status, _, sse) = stream(&h, "sm", &stream_body(10)).await;
    assert_eq!((status, error_events(&sse)), (200, 1));
    let (status, _, _) = stream(&h, "hf", &stream_body(10)).await;
    assert_eq!(status, 200);
    let event = sse
        .split("\n\n")
        .find_map(|b| b.strip_prefix("event: error\ndata:"))
        .unwrap();
    let event: Json = serde_json::from_str(event).unwrap();
    messages.push(event["error"]["message"].as_str().unwrap().into());

    let m = scrape_until(&h, "the stream tallies", |m| {
        m.counted("infergate_stream_events_total").len() == 2
    })
    .await;

    // Every sample line was read: none was skipped as unparseable.
    let sample_lines = m
        .text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    let parsed: usize = m
        .scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            Value::Histogram(b) => b.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(
        sample_lines, parsed,
        "lines the parser skipped in\n{}",
        m.text
    );
    // Each family has its HELP and TYPE, the TYPE the documented one.
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    for line in m.text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        types.insert(parts.next().unwrap(), parts.next().unwrap());
    }
    let documented: BTreeMap<&str, &str> = FAMILIES.iter().map(|(n, t, _)| (*n, *t)).collect();
    for (name, ty) in &types {
        assert_eq!(
            documented.get(name),
            Some(ty),
            "family {name} in\n{}",
            m.text
        );
        assert!(m.scrape.docs.contains_key(*name), "no HELP for {name}");
    }
    // With this traffic, every family but ejections and shedding shows.
    let shown: BTreeSet<&str> = types.keys().copied().collect();
    let expected: BTreeSet<&str> = FAMILIES
        .iter()
        .map(|(n, _, _)| *n)
        .filter(|n| {
            !matches!(
                *n,
                "infergate_backend_ejections_total"
                    | "infergate_shed_total"
                    | "infergate_hedges_total"
            )
        })
        .collect();
    assert!(
        expected.is_subset(&shown),
        "missing {:?}",
        expected.difference(&shown).collect::<Vec<_>>()
    );

    let routes: BTreeSet<&str> = ROUTES.iter().copied().chain(["solo"]).collect();
    let mut seen_values: BTreeSet<String> = BTreeSet::new();
    for s in &m.scrape.samples {
        let family = FAMILIES
            .iter()
            .find(|(n, _, _)| {
                s.metric == *n
                    || s.metric
                        .strip_suffix("_sum")
                        .or_else(|| s.metric.strip_suffix("_count"))
                        .is_some_and(|base| base == *n)
            })
            .unwrap_or_else(|| panic!("unknown metric {}", s.metric));
        let names: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
        let want_names: BTreeSet<&str> = family.2.iter().copied().collect();
        assert_eq!(names, want_names, "labels of {}", s.metric);
        for (k, v) in s.labels.iter() {
            let v = v.as_str();
            let ok = match k.as_str() {
                "route" => routes.contains(v) || v == "unknown",
                "backend" => {
                    BACKENDS.contains(&v) || (v == "none" && family.0 == "infergate_requests_total")
                }
                "from" | "to" => BACKENDS.contains(&v),
                "code_class" => {
                    CODE_CLASSES.contains(&v)
                        || (v == "none" && family.0 == "infergate_upstream_duration_seconds")
                }
                "outcome" => OUTCOMES.contains(&v),
                "result" if family.0 == "infergate_credentials_refresh_total" => {
                    ["success", "failure"].contains(&v)
                }
                "result" => ["success", "cancelled"].contains(&v) || FAILURE_KINDS.contains(&v),
                "reason" => FAILURE_KINDS.contains(&v),
                "state" => STATES.contains(&v),
                "kind" => STREAM_ERROR_KINDS.contains(&v),
                "version" => v == env!("CARGO_PKG_VERSION"),
                "worker" => v
                    .parse::<usize>()
                    .is_ok_and(|w| w < h.gateway.config.server.worker_count()),
                _ => false,
            };
            assert!(ok, "{}: {k}={v:?} is not a bounded value", s.metric);
            seen_values.insert(v.to_string());
        }
    }
    // The odd route names all count as one.
    assert!(seen_values.contains("unknown"));
    assert_eq!(
        m.get(
            "infergate_requests_total",
            &[
                ("route", "unknown"),
                ("backend", "none"),
                ("code_class", "4xx"),
                ("outcome", "client_error"),
            ]
        ),
        Some(8.0)
    );
    // No path, request id, token, query or message anywhere in the text.
    let mut canaries: Vec<String> = vec![
        ODD_ROUTE.into(),
        ODD_REQUEST_ID.into(),
        CLIENT_TOKEN.into(),
        ODD_QUERY.into(),
        ODD_PATH.into(),
        HF_TOKEN.into(),
        SECRET_KEY.into(),
        "another-token".into(),
        "passwd".into(),
        "injected".into(),
        "xxxxxxxxxx".into(),
        "/v1/".into(),
    ];
    canaries.extend(messages);
    for c in &canaries {
        assert!(!c.is_empty());
        assert!(
            !m.text.contains(c.as_str()),
            "{c:?} reached /metrics:\n{}",
            m.text
        );
    }
    h.shutdown().await;
}

// === trace context ===

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `(trace id, parent id, flags)` of a valid version-00 `traceparent`.
fn traceparent(v: &str) -> (String, String, String) {
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "{v}");
    assert_eq!(parts[0], "00", "{v}");
    assert!(is_hex(parts[1], 32) && parts[1] != "0".repeat(32), "{v}");
    assert!(is_hex(parts[2], 16) && parts[2] != "0".repeat(16), "{v}");
    assert!(is_hex(parts[3], 2), "{v}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// `(upstream ms, gateway ms)` from `server-timing`.
fn server_timing(res: &reqwest::Response) -> (f64, f64) {
    let v = res.headers()["server-timing"].to_str().unwrap();
    let mut up = None;
    let mut gw = None;
    for metric in v.split(',') {
        let (name, dur) = metric.trim().split_once(";dur=").unwrap();
        let dur: f64 = dur.parse().unwrap();
        match name {
            "upstream" => up = Some(dur),
            "gateway" => gw = Some(dur),
            // Other metrics (such as time spent in backoff) may come too.
            other => assert!(!other.is_empty() && dur >= 0.0, "{v}"),
        }
    }
    let (up, gw) = (up.unwrap(), gw.unwrap());
    assert!(up >= 0.0 && gw >= 0.0, "{v}");
    (up, gw)
}

fn emulator<'a>(h: &'a Harness, route: &str) -> &'a EmulatorHandle {
    match route {
        "sm" => &h.sm,
        "hf" => &h.hf,
        other => panic!("no emulator for {other}"),
    }
}

#[tokio::test]
async fn trace_context_continues_to_both_backends_with_a_new_span() {
    let h = Harness::start().await;
    for route in ["sm", "hf"] {
        for path in [
            format!("/v1/predict/{route}"),
            format!("/v1/predict/{route}/stream"),
        ] {
            let res = h
                .client
                .post(h.url(&path))
                .header("content-type", "application/json")
                .header("traceparent", TRACEPARENT)
                .header("tracestate", TRACESTATE)
                .body(BODY)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let (up, _) = server_timing(&res);
            assert!(up > 0.0, "{path}: time was spent on the backend");
            let _ = res.bytes().await;
            let seen = emulator(&h, route).counters().last().unwrap();
            let (trace, parent, flags) = traceparent(seen.headers["traceparent"].to_str().unwrap());
            assert_eq!(trace, TRACE_ID, "{path}");
            assert_ne!(
                parent, PARENT_ID,
                "{path}: the gateway's hop has its own span"
            );
            assert_eq!(flags, "01", "{path}");
            assert_eq!(seen.headers["tracestate"], TRACESTATE, "{path}");
            assert_eq!(seen.headers.get_all("traceparent").iter().count(), 1);
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_request_without_trace_context_starts_a_trace() {
    let h = Harness::start().await;
    let mut traces = BTreeSet::new();
    let mut spans = BTreeSet::new();
    for route in ["sm", "hf", "sm", "hf"] {
        let res = h.predict(route, BODY).await;
        assert_eq!(res.status(), 200);
        server_timing(&res);
        let _ = res.bytes().await;
        let seen = emulator(&h, route).counters().last().unwrap();
        let (trace, parent, flags) = traceparent(seen.headers["traceparent"].to_str().unwrap());
        assert_eq!(flags, "00", "a new trace is not sampled by the gateway");
        assert!(seen.headers.get("tracestate").is_none());
        traces.insert(trace);
        spans.insert(parent);
    }
    assert_eq!(traces.len(), 4, "each request starts its own trace");
    assert_eq!(spans.len(), 4);
    // An invalid traceparent starts a new trace too; its tracestate goes.
    let res = h
        .client
        .post(h.url("/v1/predict/hf"))
        .header("content-type", "application/json")
        .header("traceparent", TRACEPARENT.to_uppercase())
        .header("tracestate", TRACESTATE)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = h.hf.counters().last().unwrap();
    let (trace, _, _) = traceparent(seen.headers["traceparent"].to_str().unwrap());
    assert_ne!(trace, TRACE_ID);
    assert!(seen.headers.get("tracestate").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn server_timing_is_on_errors_and_retries_too() {
    let h = Harness::start().await;
    h.sm.faults()
        .fail_next(1, InjectedError::ServiceUnavailable);
    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    server_timing(&res);
    h.hf.faults().fail_next(1, InjectedError::Status(422));
    let res = h.predict("hf", BODY).await;
    assert_eq!(res.status(), 422);
    server_timing(&res);
    // Both attempts of the retried request carried the same trace.
    let recent = h.sm.counters().recent();
    let traces: BTreeSet<String> = recent
        .iter()
        .map(|r| traceparent(r.headers["traceparent"].to_str().unwrap()).0)
        .collect();
    assert_eq!(recent.len(), 2);
    assert_eq!(traces.len(), 1, "a retry stays in its request's trace");
    h.shutdown().await;
}

// === the access log of the real binary ===

const BIN: &str = env!("CARGO_BIN_EXE_infergate");

/// The gateway binary, its stderr lines collected as they come.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until some line satisfies `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&[String]) -> bool) {
        for _ in 0..1500 {
            if pred(&self.lines()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}:\n{}", self.lines().join("\n"));
    }

    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.lines()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_temp(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "infergate-observability-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// One request of the log test: what was sent and what came back.
struct Sent {
    id: &'static str,
    route: &'static str,
    backend: Option<&'static str>,
    status: u16,
    attempts: u64,
    stream: bool,
    bytes_in: usize,
    bytes_out: usize,
    trace: Option<&'static str>,
}

#[tokio::test]
async fn json_logs_have_one_access_line_per_request() {
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let sm = emulator::sagemaker::start(loopback, common::sm_options(emulator::ModelFormat::Tgi))
        .await
        .unwrap();
    let hf = emulator::huggingface::start(loopback, common::hf_options())
        .await
        .unwrap();
    let config = write_temp(
        "logs.toml",
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "{}"
[backends.hf]
kind = "huggingface"
url = "{}"
token = "${{LOG_TEST_HF_TOKEN}}"
[routes.sm]
backends = ["sm"]
[routes.hf]
backends = ["hf"]
"#,
            sm.url(),
            hf.url()
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--log-format",
        "json",
        "serve",
        "--config",
        config.to_str().unwrap(),
    ])
    .env_remove("RUST_LOG")
    .env("AWS_ACCESS_KEY_ID", common::ACCESS_KEY)
    .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    .env_remove("AWS_SESSION_TOKEN")
    .env_remove("AWS_PROFILE")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("LOG_TEST_HF_TOKEN", HF_TOKEN);
    let gw = Running::spawn(cmd);
    gw.wait_for("the listening line", |lines| {
        lines.iter().any(|l| l.contains("infergate listening"))
    })
    .await;
    let listening: Json = gw
        .lines()
        .iter()
        .find(|l| l.contains("infergate listening"))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    let base = format!("http://{}", listening["listen"].as_str().unwrap());
    let client = reqwest::Client::new();

    let mut sent: Vec<Sent> = Vec::new();
    let post = |id: &'static str, path: String, body: String| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("x-request-id", id)
            .body(body)
    };
    // Successes on both kinds, one carrying a trace.
    let res = post("log-sm-ok", "/v1/predict/sm".into(), BODY.into())
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-sm-ok",
        route: "sm",
        backend: Some("sm"),
        status: 200,
        attempts: 1,
        stream: false,
        bytes_in: BODY.len(),
        bytes_out: out,
        trace: Some(TRACE_ID),
    });
    let big = json!({"inputs": words(40), "parameters": {"max_new_tokens": 30}}).to_string();
    let res = post("log-hf-ok", "/v1/predict/hf".into(), big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-hf-ok",
        route: "hf",
        backend: Some("hf"),
        status: 200,
        attempts: 1,
        stream: false,
        bytes_in: big.len(),
        bytes_out: out,
        trace: None,
    });
    // A retry.
    sm.faults().fail_next(1, InjectedError::ThrottlingException);
    let res = post("log-sm-retry", "/v1/predict/sm".into(), BODY.into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-sm-retry",
        route: "sm",
        backend: Some("sm"),
        status: 200,
        attempts: 2,
        stream: false,
        bytes_in: BODY.len(),
        bytes_out: out,
        trace: None,
    });
    // The model's 4xx.
    hf.faults().fail_next(1, InjectedError::Status(422));
    let res = post("log-hf-422", "/v1/predict/hf".into(), BODY.into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-hf-422",
        route: "hf",
        backend: Some("hf"),
        status: 422,
        attempts: 1,
        stream: false,
        bytes_in: BODY.len(),
        bytes_out: out,
        trace: None,
    });
    // An unknown route.
    let res = post("log-unknown", "/v1/predict/nope".into(), BODY.into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-unknown",
        route: "unknown",
        backend: None,
        status: 404,
        attempts: 0,
        stream: false,
        bytes_in: 0,
        bytes_out: out,
        trace: None,
    });
    // Streams: a whole one, and one ended by an error event.
    let body = stream_body(12);
    let res = post(
        "log-hf-stream",
        "/v1/predict/hf/stream".into(),
        body.clone(),
    )
    .header("traceparent", TRACEPARENT)
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-hf-stream",
        route: "hf",
        backend: Some("hf"),
        status: 200,
        attempts: 1,
        stream: true,
        bytes_in: body.len(),
        bytes_out: out,
        trace: Some(TRACE_ID),
    });
    sm.faults().update(|f| f.stream_error_after = Some(3));
    let res = post(
        "log-sm-stream-err",
        "/v1/predict/sm/stream".into(),
        body.clone(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert_eq!(error_events(&text), 1);
    sent.push(Sent {
        id: "log-sm-stream-err",
        route: "sm",
        backend: Some("sm"),
        status: 200,
        attempts: 1,
        stream: true,
        bytes_in: body.len(),
        bytes_out: text.len(),
        trace: None,
    });

    let n = sent.len();
    gw.wait_for("every access line", |lines| {
        lines
            .iter()
            .filter(|l| l.contains("\"infergate::access\""))
            .count()
            >= n
    })
    .await;
    let lines = gw.stop();
    let records: Vec<Json> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Json>(l)
                .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {l}"))
        })
        .collect();
    for r in &records {
        assert!(r["timestamp"].is_string(), "{r}");
        assert!(r["level"].is_string(), "{r}");
        assert!(r["target"].is_string(), "{r}");
    }
    let access: Vec<&Json> = records
        .iter()
        .filter(|r| r["target"] == "infergate::access")
        .collect();
    assert_eq!(
        access.len(),
        n,
        "one access line per request:\n{}",
        lines.join("\n")
    );
    for s in &sent {
        let mine: Vec<&&Json> = access.iter().filter(|r| r["request_id"] == s.id).collect();
        assert_eq!(mine.len(), 1, "access lines of {}", s.id);
        let a = mine[0];
        let ctx = format!("{}: {a}", s.id);
        assert_eq!(a["level"], "INFO", "{ctx}");
        assert_eq!(a["route"], s.route, "{ctx}");
        match s.backend {
            Some(b) => assert_eq!(a["backend"], b, "{ctx}"),
            None => assert!(a["backend"].is_null(), "{ctx}"),
        }
        assert_eq!(a["status"], s.status, "{ctx}");
        assert_eq!(a["attempts"], s.attempts, "{ctx}");
        assert_eq!(a["stream"], s.stream, "{ctx}");
        assert_eq!(a["bytes_in"], s.bytes_in, "{ctx}");
        assert_eq!(a["bytes_out"], s.bytes_out, "{ctx}");
        assert_eq!(a["complete"], true, "{ctx}");
        let trace = a["trace_id"].as_str().unwrap();
        assert!(is_hex(trace, 32), "{ctx}");
        if let Some(t) = s.trace {
            assert_eq!(trace, t, "{ctx}");
        }
        let total = a["total_us"].as_u64().unwrap();
        let upstream = a["upstream_us"].as_u64().unwrap();
        let head = a["head_us"].as_u64().unwrap();
        assert!(upstream <= total && head <= total, "{ctx}");
        if s.backend.is_some() {
            assert!(upstream > 0, "{ctx}");
        } else {
            assert_eq!(upstream, 0, "{ctx}");
        }
    }
    // Requests without a trace got distinct new ones.
    let fresh: BTreeSet<&str> = access
        .iter()
        .filter(|a| a["trace_id"] != TRACE_ID)
        .map(|a| a["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(fresh.len(), n - 2);
    // Failures log their cause once, besides the access line.
    for id in ["log-hf-422", "log-unknown", "log-sm-stream-err"] {
        let others: Vec<&Json> = records
            .iter()
            .filter(|r| r["target"] != "infergate::access" && r["request_id"] == id)
            .collect();
        assert!(others.len() <= 1, "{id} logged more than once: {others:?}");
    }
    let stream_failed: Vec<&Json> = records
        .iter()
        .filter(|r| r["message"] == "stream failed after it began")
        .collect();
    assert_eq!(stream_failed.len(), 1);
    assert_eq!(stream_failed[0]["request_id"], "log-sm-stream-err");
    assert_eq!(stream_failed[0]["kind"], "model_stream_error");
    let failed: Vec<&Json> = records
        .iter()
        .filter(|r| r["message"] == "request failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["request_id"], "log-hf-422");
    // Nothing secret on the way.
    let all = lines.join("\n");
    for secret in [HF_TOKEN, SECRET_KEY, "Signature="] {
        assert!(!all.contains(secret), "{secret} in the logs");
    }
    drop(sm);
    drop(hf);
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

/// The sum of a family's series for one backend.
fn per_backend(m: &Metrics, family: &str, backend: &str) -> f64 {
    m.family(family)
        .iter()
        .filter(|(k, _)| k.split(',').any(|l| l == format!("backend={backend}")))
        .map(|(_, v)| v)
        .sum()
}

/// An attempt still running when the request's deadline passes reached
/// the backend: it is counted, and its duration observed, whichever timer
/// (the deadline's or the backend call's own) fires first.
#[tokio::test]
async fn an_attempt_cut_by_the_deadline_is_counted() {
    let h = harness(with_route_keys(CONFIG, "sm", "timeout = \"300ms\"")).await;
    h.sm.faults()
        .update(|f| f.latency = Duration::from_millis(1500));
    for _ in 0..5 {
        let res = h.predict("sm", BODY).await;
        assert_eq!(res.status(), 504);
        assert_eq!(res.headers()["x-infergate-attempts"], "1");
        let _ = res.bytes().await;
    }
    assert_eq!(h.sm.counters().requests(), 5);
    let m = scrape(&h).await;
    assert_eq!(
        per_backend(&m, "infergate_upstream_attempts_total", "sm"),
        5.0,
        "{}",
        m.text
    );
    assert_eq!(
        per_backend(&m, "infergate_upstream_duration_seconds_count", "sm"),
        5.0,
        "the slowest attempts are in the histogram"
    );
    h.shutdown().await;
}

/// The losing attempt of a hedge, cancelled when the other answered,
/// reached its backend: it is counted and its duration observed.
#[tokio::test]
async fn a_cancelled_hedge_is_counted_as_an_attempt() {
    let config = with_route_keys(
        CONFIG,
        "both",
        "balance = \"priority\"\nhedge_after = \"50ms\"",
    );
    let h = harness(config).await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(2));
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    let _ = res.bytes().await;
    assert_eq!(
        h.sm.counters().requests(),
        1,
        "the hedged attempt reached sm"
    );
    let m = scrape(&h).await;
    assert_eq!(
        per_backend(&m, "infergate_upstream_attempts_total", "hf"),
        1.0
    );
    assert_eq!(
        per_backend(&m, "infergate_upstream_attempts_total", "sm"),
        1.0,
        "the attempt sent to sm and cancelled when hf won:\n{}",
        m.text
    );
    assert_eq!(
        per_backend(&m, "infergate_upstream_duration_seconds_count", "sm"),
        1.0
    );
    h.shutdown().await;
}
