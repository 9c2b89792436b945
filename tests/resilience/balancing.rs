//! Sticky sessions, cold starts, hedging, load shedding and priority
//! balancing.

use std::time::Duration;

use crate::common::{error_json, wait_for, wait_until, Harness, Setup, BODY};
use crate::support::{config, failing, metric, route, second_sagemaker, sm_backend};
use infergate::emulator::InjectedError;

// === sticky sessions ===

#[tokio::test]
async fn a_session_sticks_to_the_backend_that_opened_it() {
    let sm2 = second_sagemaker().await;
    let mut c = config("", "", &[route("sessions", &["sm", "sm2"], "")]);
    c += &sm_backend("sm2", "SM2_URL", "");
    let h = Harness::with(Setup {
        config: c,
        extra_vars: vec![("SM2_URL".into(), sm2.url())],
        ..Setup::default()
    })
    .await;
    let session_call = |id: String| {
        let h = &h;
        async move {
            let res = h
                .client
                .post(h.url("/v1/predict/sessions"))
                .header("content-type", "application/json")
                .header("x-amzn-sagemaker-session-id", id)
                .body(BODY)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let backend = res.headers()["x-infergate-backend"]
                .to_str()
                .unwrap()
                .to_string();
            let opened = res
                .headers()
                .get("x-amzn-sagemaker-new-session-id")
                .map(|v| v.to_str().unwrap().to_string());
            let _ = res.bytes().await;
            (backend, opened)
        }
    };
    // Open sessions until both backends hold at least one (p2c spreads them).
    let mut sessions: Vec<(String, String)> = Vec::new();
    for _ in 0..40 {
        let (backend, opened) = session_call("NEW_SESSION".into()).await;
        let opened = opened.expect("a new session id");
        let id = opened.split(';').next().unwrap().trim().to_string();
        sessions.push((id, backend));
        if sessions.iter().any(|(_, b)| b == "sm") && sessions.iter().any(|(_, b)| b == "sm2") {
            break;
        }
    }
    let on = |b: &str| sessions.iter().filter(|(_, o)| o == b).count() as u64;
    assert!(on("sm") > 0 && on("sm2") > 0, "{sessions:?}");
    for round in 0..4 {
        for (id, opener) in &sessions {
            let (backend, opened) = session_call(id.clone()).await;
            assert_eq!(&backend, opener, "round {round}, session {id}");
            assert!(opened.is_none());
        }
    }
    // Each backend saw its own sessions only: the open and four uses each
    // (a session sent to the other emulator would have been refused).
    assert_eq!(h.sm.counters().requests(), on("sm") * 5);
    assert_eq!(sm2.counters().requests(), on("sm2") * 5);
    h.shutdown().await;
}

// === cold start ===

#[tokio::test]
async fn the_first_request_to_an_hf_endpoint_scaled_to_zero_waits_for_it() {
    let h = Harness::with_config(config("", "", &[route("hf", &["hf"], "")])).await;
    h.hf.faults()
        .update(|f| f.cold_start = Some(Duration::from_millis(500)));
    let res = h.predict("hf", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    let recent = h.hf.counters().recent();
    assert_eq!(recent.len(), 2);
    assert!(recent[0].headers.get("x-scale-up-timeout").is_none());
    let wait = recent[1].headers["x-scale-up-timeout"].to_str().unwrap();
    assert!(wait.parse::<u64>().unwrap() >= 1, "{wait}");
    assert_eq!(h.backend_state("hf", "hf").await, "available");
    h.shutdown().await;
}

// === hedging ===

#[tokio::test]
async fn a_slow_backend_is_hedged_and_the_loser_cancelled() {
    let h = Harness::with_config(config(
        "",
        "",
        &[route(
            "hedged",
            &["sm", "hf"],
            "balance = \"priority\"\nhedge_after = \"100ms\"",
        )],
    ))
    .await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(3));
    let res = h.predict("hedged", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    let _ = res.bytes().await;
    assert_eq!(
        metric(&h, "infergate_hedges_total", &[("route", "hedged")]).await,
        1.0
    );
    let c = h.sm.counters();
    wait_for("the slow attempt to be cancelled", || c.cancelled() == 1).await;
    wait_for("nothing in flight on the slow backend", || {
        c.in_flight() == 0
    })
    .await;
    assert_eq!(c.requests(), 1);
    assert_eq!(h.hf.counters().requests(), 1);
    h.shutdown().await;
}

// === load shedding ===

#[tokio::test]
async fn past_max_in_flight_a_lone_backend_sheds_with_retry_after() {
    let h = Harness::with_config(config(
        "max_in_flight = 1",
        "",
        &[route("solo", &["sm"], "")],
    ))
    .await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(1));
    let first = h.hold("solo", &h.sm).await;
    assert_eq!(h.backend_state("solo", "sm").await, "saturated");
    let res = h.predict("solo", BODY).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["x-infergate-attempts"], "0");
    assert_eq!(error_json(res).await["type"], "overloaded");
    assert_eq!(h.sm.counters().requests(), 1, "never queued upstream");
    assert_eq!(first.await.unwrap(), (200, "sm".into()));
    assert_eq!(
        metric(&h, "infergate_shed_total", &[("route", "solo")]).await,
        1.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn past_max_in_flight_requests_spill_to_the_next_backend() {
    let h = Harness::with_config(config(
        "max_in_flight = 1",
        "",
        &[route("spill", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(1));
    let first = h.hold("spill", &h.sm).await;
    assert_eq!(h.call("spill").await, (200, "hf".into()));
    assert_eq!(first.await.unwrap(), (200, "sm".into()));
    assert_eq!(h.sm.counters().requests(), 1);
    assert_eq!(h.hf.counters().requests(), 1);
    assert_eq!(h.sm.counters().max_in_flight(), 1);
    h.shutdown().await;
}

// === priority balancing ===

#[tokio::test]
async fn priority_sends_everything_to_the_first_backend_until_it_throttles() {
    let h = Harness::with_config(config(
        "eject_after = 3\nejection_time = \"30s\"",
        "",
        &[route("prio", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(h.call("prio").await, (200, "sm".into()));
    }
    assert_eq!(h.hf.counters().requests(), 0);

    // Throttled: each request spills to hf, until sm is ejected after three.
    h.sm.faults()
        .set(failing(1.0, InjectedError::ThrottlingException));
    for _ in 0..10 {
        assert_eq!(h.call("prio").await, (200, "hf".into()));
    }
    assert_eq!(h.sm.counters().requests(), 23);
    assert_eq!(h.hf.counters().requests(), 10);
    assert_eq!(h.backend_state("prio", "sm").await, "ejected");
    let failovers = [("route", "prio"), ("from", "sm"), ("to", "hf")];
    assert_eq!(
        metric(&h, "infergate_failovers_total", &failovers).await,
        3.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_hedge_never_sends_a_session_to_another_backend() {
    let sm2 = second_sagemaker().await;
    let mut c = config(
        "",
        "",
        &[route(
            "sessions",
            &["sm", "sm2"],
            "balance = \"priority\"\nhedge_after = \"100ms\"",
        )],
    );
    c += &sm_backend("sm2", "SM2_URL", "");
    let h = Harness::with(Setup {
        config: c,
        extra_vars: vec![("SM2_URL".into(), sm2.url())],
        ..Setup::default()
    })
    .await;
    let res = h
        .client
        .post(h.url("/v1/predict/sessions"))
        .header("content-type", "application/json")
        .header("x-amzn-sagemaker-session-id", "NEW_SESSION")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-infergate-backend"], "sm");
    let opened = res.headers()["x-amzn-sagemaker-new-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let id = opened.split(';').next().unwrap().trim().to_string();
    // The session's backend is slow: the hedge must not go elsewhere.
    h.sm.faults()
        .update(|f| f.latency = Duration::from_millis(500));
    let res = h
        .client
        .post(h.url("/v1/predict/sessions"))
        .header("content-type", "application/json")
        .header("x-amzn-sagemaker-session-id", &id)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "sm");
    assert_eq!(sm2.counters().requests(), 0, "the session went to sm2");
    h.shutdown().await;
}

#[tokio::test]
async fn a_backend_marked_cold_gets_traffic_again() {
    // Cold is checked again after one ejection time.
    let h = Harness::with_config(config(
        "",
        "ejection_time = \"300ms\"",
        &[route("pair", &["sm", "hf"], "")],
    ))
    .await;
    // One 503 from hf, answered by failing over to sm.
    h.hf.faults().fail_next(1, InjectedError::Status(503));
    wait_until("hf to answer its 503", || async {
        h.call("pair").await;
        h.hf.counters().errors_injected() == 1
    })
    .await;
    assert_eq!(h.backend_state("pair", "hf").await, "cold");
    // hf is healthy again: it must eventually serve again.
    let before = h.hf.counters().requests();
    wait_until("hf to get traffic again", || async {
        h.call("pair").await;
        h.hf.counters().requests() > before
    })
    .await;
    h.shutdown().await;
}
