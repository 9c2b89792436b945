//! Deadlines and cancellation, failover between the backend kinds, and what
//! is never retried.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::net::raw_upstream;

use crate::common::{error_json, wait_for, wait_until, Harness, Setup, BODY};
use crate::support::{config, hf_backend, metric, route};
use infergate::emulator::InjectedError;

// === deadlines and cancellation ===

#[tokio::test]
async fn a_hung_backend_gets_a_504_and_its_attempt_is_cancelled() {
    let h = Harness::with_config(config("", "", &[route("sm", &["sm"], "")])).await;
    h.sm.faults()
        .update(|f| f.latency = Duration::from_secs(60));
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("content-type", "application/json")
        .header("x-infergate-timeout-ms", "300")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(error_json(res).await["type"], "deadline_exceeded");
    let c = h.sm.counters();
    wait_for("the emulator to see the attempt cancelled", || {
        c.cancelled() == 1
    })
    .await;
    wait_for("nothing in flight upstream", || c.in_flight() == 0).await;
    assert_eq!(c.requests(), 1);
    assert_eq!(h.backend_view("sm", "sm").await["in_flight"], 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_attempt() {
    let h = Harness::with_config(config(
        "",
        "",
        &[route("pair", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(5));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = impatient
        .post(h.url("/v1/predict/pair"))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let c = h.sm.counters();
    wait_for("the emulator to see the attempt cancelled", || {
        c.cancelled() == 1
    })
    .await;
    wait_for("nothing in flight upstream", || c.in_flight() == 0).await;
    wait_until("the gateway's in-flight count to drop", || async {
        h.backend_view("pair", "sm").await["in_flight"] == 0
    })
    .await;
    // No further attempt anywhere.
    assert_eq!(c.requests(), 1);
    assert_eq!(h.hf.counters().requests(), 0);
    h.shutdown().await;
}

// === failover ===

#[tokio::test]
async fn throttled_sagemaker_fails_over_to_hf() {
    let h = Harness::with_config(config(
        "",
        "",
        &[route("both", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    h.sm.faults()
        .fail_next(1, InjectedError::ThrottlingException);
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    assert_eq!(h.sm.counters().requests(), 1);
    assert_eq!(h.hf.counters().requests(), 1);
    let failovers = [("route", "both"), ("from", "sm"), ("to", "hf")];
    assert_eq!(
        metric(&h, "infergate_failovers_total", &failovers).await,
        1.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_cold_hf_endpoint_fails_over_to_sagemaker_and_is_avoided() {
    let h = Harness::with_config(config(
        "",
        "",
        &[route("both", &["hf", "sm"], "balance = \"priority\"")],
    ))
    .await;
    h.hf.faults()
        .update(|f| f.cold_start = Some(Duration::from_secs(60)));
    assert_eq!(h.call("both").await, (200, "sm".into()));
    let failovers = [("route", "both"), ("from", "hf"), ("to", "sm")];
    assert_eq!(
        metric(&h, "infergate_failovers_total", &failovers).await,
        1.0
    );
    assert_eq!(h.backend_state("both", "hf").await, "cold");
    // While cold, the balancer goes straight to SageMaker.
    for _ in 0..5 {
        assert_eq!(h.call("both").await, (200, "sm".into()));
    }
    assert_eq!(h.hf.counters().requests(), 1);
    assert_eq!(h.sm.counters().requests(), 6);
    h.shutdown().await;
}

#[tokio::test]
async fn a_rejected_hf_token_fails_over_to_sagemaker() {
    let h = Harness::with_config(config(
        "",
        "",
        &[route("both", &["hf", "sm"], "balance = \"priority\"")],
    ))
    .await;
    h.hf.set_token(Some("other".into()));
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "sm");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    assert_eq!(h.hf.counters().auth_rejections(), 1);
    let failovers = [("route", "both"), ("from", "hf"), ("to", "sm")];
    assert_eq!(
        metric(&h, "infergate_failovers_total", &failovers).await,
        1.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_rejected_aws_signature_fails_over_to_hf() {
    let h = Harness::with(Setup {
        config: config(
            "",
            "",
            &[route("both", &["sm", "hf"], "balance = \"priority\"")],
        ),
        sm_secret: "not-the-secret".into(),
        ..Setup::default()
    })
    .await;
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    assert_eq!(h.sm.counters().auth_rejections(), 1);
    h.shutdown().await;
}

// === what is never retried ===

#[tokio::test]
async fn a_model_error_is_neither_retried_nor_failed_over() {
    let h = Harness::with_config(config(
        "",
        "",
        &[
            route("sm", &["sm"], ""),
            route("both", &["sm", "hf"], "balance = \"priority\""),
        ],
    ))
    .await;
    for r in ["sm", "both"] {
        h.sm.faults().fail_next(
            1,
            InjectedError::ModelError {
                original_status: 400,
            },
        );
        let res = h.predict(r, BODY).await;
        assert_eq!(res.status(), 400, "{r}");
        assert_eq!(res.headers()["x-infergate-attempts"], "1", "{r}");
        assert_eq!(error_json(res).await["type"], "model_error");
    }
    assert_eq!(h.sm.counters().requests(), 2);
    assert_eq!(h.hf.counters().requests(), 0);
    assert_eq!(metric(&h, "infergate_retries_total", &[]).await, 0.0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_body_that_breaks_after_the_first_byte_is_not_retried() {
    // 200 with the start of a chunked JSON body, then the connection closes
    // without the last chunk: the body is truncated.
    let (addr, count) = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\n\r\n8\r\n[{\"gener\r\n",
    )
    .await;
    let url = format!("http://{addr}");
    let mut c = config(
        "",
        "",
        &[route("broken", &["broken", "hf"], "attempts = 3")],
    );
    c += &hf_backend("broken", &url, "");
    let h = Harness::with_config(c).await;
    let res = h.predict("broken", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "broken");
    assert_eq!(res.headers()["x-infergate-attempts"], "1");
    let body = res.bytes().await;
    assert!(
        body.is_err(),
        "the truncated body must reach the client as an error: {body:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(h.hf.counters().requests(), 0);
    h.shutdown().await;
}
