//! Retries and the retry budget, outlier ejection, and `Retry-After`.

use std::time::Duration;

use crate::common::{error_json, wait_until, Harness, BODY};
use crate::support::{config, failing, metric, route, send_many};
use infergate::emulator::{FaultConfig, InjectedError};

// === retries and the budget ===

#[tokio::test]
async fn a_healthy_second_backend_absorbs_a_30_percent_failure_rate() {
    // Ejection off on the failing backend, so it keeps taking its share of
    // the traffic and the failures are really exercised.
    let h = Harness::with_config(config(
        "eject_after = 0",
        "",
        &[route("pair", &["sm", "hf"], "")],
    ))
    .await;
    h.sm.faults()
        .set(failing(0.3, InjectedError::ServiceUnavailable));
    let n = 300;
    let statuses = send_many(&h, "pair", n, 8).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        ok * 100 >= n * 99,
        "client success {ok}/{n} is below 99%: {statuses:?}"
    );
    let injected = h.sm.counters().errors_injected();
    assert!(injected >= 10, "only {injected} faults were injected");
    assert!(metric(&h, "infergate_retries_total", &[("route", "pair")]).await >= injected as f64);
    h.shutdown().await;
}

#[tokio::test]
async fn the_retry_budget_bounds_amplification_on_a_single_failing_backend() {
    // No reserve: retries are 20% of the requests at most.
    let h = Harness::with_config(config(
        "",
        "",
        &[route(
            "solo",
            &["sm"],
            "retry_budget_ratio = 0.2\nretry_budget_min_per_second = 0\nretry_budget_window = \"60s\"",
        )],
    ))
    .await;
    h.sm.faults()
        .set(failing(0.3, InjectedError::ServiceUnavailable));
    let n = 400;
    let statuses = send_many(&h, "solo", n, 8).await;
    assert_eq!(statuses.len(), n);
    let upstream = h.sm.counters().requests();
    let amplification = upstream as f64 / n as f64;
    assert!(
        amplification <= 1.25,
        "{upstream} upstream attempts for {n} requests ({amplification:.3})"
    );
    // Every attempt past the first of a request is a retry the budget paid.
    let retries = metric(&h, "infergate_retries_total", &[("route", "solo")]).await;
    assert_eq!(upstream as f64, n as f64 + retries);
    assert!(retries > 0.0, "the budget allowed no retry at all");
    // 30% failures want more retries than 20% of the traffic: some refused.
    let refused = metric(
        &h,
        "infergate_retry_budget_exhausted_total",
        &[("route", "solo")],
    )
    .await;
    assert!(refused > 0.0, "the retry budget was never exhausted");
    h.shutdown().await;
}

// === outlier ejection ===

#[tokio::test]
async fn a_failing_backend_is_ejected_then_probed_back_in() {
    let h = Harness::with_config(config(
        "eject_after = 3\nejection_time = \"600ms\"",
        "",
        &[route("pair", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    h.sm.faults()
        .set(failing(1.0, InjectedError::ServiceUnavailable));
    // Three consecutive failures (each request fails over to hf).
    for _ in 0..3 {
        assert_eq!(h.call("pair").await, (200, "hf".into()));
    }
    assert_eq!(h.sm.counters().requests(), 3);
    let view = h.backend_view("pair", "sm").await;
    assert_eq!(view["state"], "ejected", "{view}");
    assert!(view["ejected_until"].is_string(), "{view}");
    assert_eq!(
        metric(
            &h,
            "infergate_backend_ejections_total",
            &[("backend", "sm")]
        )
        .await,
        1.0
    );
    // While ejected, nothing reaches it.
    for _ in 0..5 {
        assert_eq!(h.call("pair").await, (200, "hf".into()));
    }
    assert_eq!(h.sm.counters().requests(), 3);
    assert_eq!(
        h.backend_state("pair", "sm").await,
        "ejected",
        "the machine is too slow for this test's ejection time"
    );

    // The backend heals; once the ejection runs out, one probe brings it back.
    h.sm.faults().set(FaultConfig::default());
    wait_until("a request to reach sm again", || async {
        h.call("pair").await.1 == "sm"
    })
    .await;
    assert_eq!(h.sm.counters().requests(), 4, "a single probe");
    let view = h.backend_view("pair", "sm").await;
    assert_eq!(view["state"], "available", "{view}");
    assert!(view["ejected_until"].is_null(), "{view}");
    for _ in 0..5 {
        assert_eq!(h.call("pair").await, (200, "sm".into()));
    }
    assert_eq!(h.sm.counters().requests(), 9);
    assert_eq!(
        metric(
            &h,
            "infergate_backend_ejections_total",
            &[("backend", "sm")]
        )
        .await,
        1.0
    );
    h.shutdown().await;
}

// === Retry-After ===

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_is_answered_at_once() {
    let h = Harness::with_config(config(
        "",
        "",
        &[route("sm", &["sm"], ""), route("hf", &["hf"], "")],
    ))
    .await;
    // SageMaker 503 asking for 3 s, HF 429 asking for 4 s; the client gives 1 s.
    h.sm.faults().update(|f| {
        f.fail_next = 1;
        f.error = InjectedError::ServiceUnavailable;
        f.retry_after = Some(Duration::from_secs(3));
    });
    h.hf.faults().update(|f| {
        f.fail_next = 1;
        f.error = InjectedError::Status(429);
        f.retry_after = Some(Duration::from_secs(4));
    });
    for (route, status, after, kind) in [
        ("sm", 503, "3", "backend_unavailable"),
        ("hf", 429, "4", "rate_limited"),
    ] {
        let res = h
            .client
            .post(h.url(&format!("/v1/predict/{route}")))
            .header("content-type", "application/json")
            .header("x-infergate-timeout-ms", "1000")
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{route}");
        assert_eq!(res.headers()["retry-after"], after, "{route}");
        assert_eq!(res.headers()["x-infergate-attempts"], "1", "{route}");
        assert_eq!(error_json(res).await["type"], kind);
    }
    assert_eq!(h.sm.counters().requests(), 1);
    assert_eq!(h.hf.counters().requests(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_retry_not_sent_because_of_retry_after_is_not_counted_as_a_retry() {
    let h = Harness::with_config(config("", "", &[route("sm", &["sm"], "")])).await;
    h.sm.faults().update(|f| {
        f.fail_next = 1;
        f.error = InjectedError::ServiceUnavailable;
        f.retry_after = Some(Duration::from_secs(3));
    });
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("content-type", "application/json")
        .header("x-infergate-timeout-ms", "1000")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["x-infergate-attempts"], "1");
    assert_eq!(h.sm.counters().requests(), 1);
    assert_eq!(
        metric(&h, "infergate_retries_total", &[("route", "sm")]).await,
        0.0,
        "no retry was sent"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_retry_after_within_the_deadline_is_waited_for() {
    // A 1 ms backoff: only the Retry-After can explain a wait of a second.
    let h = Harness::with_config(config(
        "",
        "",
        &[route(
            "sm",
            &["sm"],
            "backoff_base = \"1ms\"\nbackoff_max = \"1ms\"",
        )],
    ))
    .await;
    let asked = Duration::from_secs(1);
    h.sm.faults().update(|f| {
        f.fail_next = 1;
        f.error = InjectedError::ServiceUnavailable;
        f.retry_after = Some(asked);
    });
    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    // The gateway reports the time it spent waiting before the retry; a
    // little tolerance for the timer's and the clock's granularity.
    let waited = server_timing(&res, "wait");
    let least = asked.as_secs_f64() * 1e3 - 20.0;
    assert!(
        waited >= least,
        "waited {waited} ms for a Retry-After of {asked:?}"
    );
    assert_eq!(h.sm.counters().requests(), 2);
    assert_eq!(h.sm.counters().errors_injected(), 1);
    h.shutdown().await;
}

/// The duration in milliseconds of metric `name` in `server-timing`.
fn server_timing(res: &reqwest::Response, name: &str) -> f64 {
    let v = res.headers()["server-timing"].to_str().unwrap();
    v.split(',')
        .find_map(|m| m.trim().strip_prefix(&format!("{name};dur=")))
        .unwrap_or_else(|| panic!("no {name} in server-timing: {v}"))
        .parse()
        .unwrap()
}
