//! Exact counts for known traffic: successes, credentials, errors by
//! outcome, retries and failovers, an exhausted retry budget.

use std::time::Duration;

use crate::common::{with_route_keys, Harness, BODY, CONFIG};
use crate::metrics::{assert_states, scrape};
use infergate::emulator::{FaultConfig, InjectedError};

// === exact counts ===

#[tokio::test]
async fn successes_are_counted_per_route_and_backend() {
    let h = Harness::start().await;
    for (route, n) in [("sm", 3), ("hf", 2), ("js", 1)] {
        for _ in 0..n {
            assert_eq!(h.call(route).await, (200, route.to_string()));
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
        assert_eq!(h.call("sm").await.0, 200);
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
    assert_eq!(h.call("sm").await, (400, "sm".into()));
    h.hf.faults().fail_next(1, InjectedError::Status(422));
    assert_eq!(h.call("hf").await, (422, "hf".into()));
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
    assert_eq!(h.call("sm").await, (503, "sm".into()));
    h.sm.faults().set(FaultConfig::default());
    // A reset connection, retried on the same backend.
    h.hf.faults().update(|f| f.reset_next = 1);
    assert_eq!(h.call("hf").await, (200, "hf".into()));

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
    let h = Harness::with_config(config).await;
    // Throttled SageMaker → Hugging Face.
    h.sm.faults()
        .fail_next(1, InjectedError::ThrottlingException);
    assert_eq!(h.call("both").await, (200, "hf".into()));
    // Unavailable SageMaker → Hugging Face.
    h.sm.faults()
        .fail_next(1, InjectedError::ServiceUnavailable);
    assert_eq!(h.call("both").await, (200, "hf".into()));
    // A Hugging Face endpoint scaled to zero → SageMaker.
    h.hf.faults().set(FaultConfig {
        cold_start: Some(Duration::from_secs(60)),
        ..FaultConfig::default()
    });
    assert_eq!(h.call("cold").await, (200, "sm".into()));
    // A lone backend retried in place: a retry, no failover.
    h.sm.faults()
        .fail_next(1, InjectedError::ThrottlingException);
    assert_eq!(h.call("sm").await, (200, "sm".into()));

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
    let h = Harness::with_config(config).await;
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
