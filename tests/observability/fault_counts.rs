//! Exact counts around faults: a shed request and the in-flight gauge, an
//! ejection, hedges, streams, and attempts cut by the deadline or a hedge.

use std::time::Duration;

use crate::common::{error_json, with_backend_keys, with_route_keys, Harness, BODY, CONFIG};
use crate::metrics::{assert_states, per_backend, scrape, scrape_until, want};
use crate::traffic::{data_events, error_events, stream, stream_body};
use infergate::emulator::{FaultConfig, InjectedError};

#[tokio::test]
async fn a_shed_request_and_the_in_flight_gauge() {
    let config = with_backend_keys(
        &format!("{CONFIG}\n[routes.solo]\nbackends = [\"sm\"]\n"),
        "sm",
        "max_in_flight = 1",
    );
    let h = Harness::with_config(config).await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(1));
    let held = h.hold("solo", &h.sm).await;
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
    assert_eq!(held.await.unwrap(), (200, "sm".to_string()));

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
    let h = Harness::with_config(config.to_string()).await;
    h.sm.faults().set(FaultConfig {
        error_rate: 1.0,
        error: InjectedError::ServiceUnavailable,
        ..FaultConfig::default()
    });
    for _ in 0..2 {
        assert_eq!(h.call("pair").await, (200, "hf".into()));
    }
    let m = scrape(&h).await;
    m.assert_family(
        "infergate_backend_ejections_total",
        &[(&[("backend", "sm")], 1.0)],
    );
    assert_states(&m, &["sm", "hf"], &[("sm", "ejected")]);
    // While ejected, the backend gets nothing.
    assert_eq!(h.call("pair").await, (200, "hf".into()));
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
    let h = Harness::with_config(config).await;
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

/// An attempt still running when the request's deadline passes reached
/// the backend: it is counted, and its duration observed, whichever timer
/// (the deadline's or the backend call's own) fires first.
#[tokio::test]
async fn an_attempt_cut_by_the_deadline_is_counted() {
    let h = Harness::with_config(with_route_keys(CONFIG, "sm", "timeout = \"300ms\"")).await;
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
    let h = Harness::with_config(config).await;
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
