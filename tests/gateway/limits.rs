//! The gateway's own limits: a client's and a route's requests per second
//! (GCRA) and a client's requests in flight, each a 429 in the JSON shape
//! with `Retry-After` and the `x-ratelimit-*` headers, checked before the
//! body is read.

use std::time::{Duration, Instant};

use crate::common::{error_json, Harness, CONFIG};

const SLOW_KEY: &str = "limited-client-key";
const FREE_KEY: &str = "unlimited-client-key";

async fn harness(limits: &str) -> Harness {
    Harness::with_config(format!("{CONFIG}{limits}")).await
}

async fn post(h: &Harness, route: &str, key: &str) -> reqwest::Response {
    h.client
        .post(h.url(&format!("/v1/predict/{route}")))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(r#"{"inputs":"one stable inference URL"}"#)
        .send()
        .await
        .unwrap()
}

fn clients(slow: &str) -> String {
    format!(
        "\n[clients.slow]\napi_key = \"{SLOW_KEY}\"\n{slow}\n\n[clients.free]\napi_key = \"{FREE_KEY}\"\nadmin = true\n"
    )
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_when_to_come_back() {
    let h = harness(&clients(
        "rate_limit = { requests_per_second = 0.5, burst = 3 }",
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(post(&h, "hf", SLOW_KEY).await.status(), 200);
    }
    let res = post(&h, "hf", SLOW_KEY).await;
    assert_eq!(res.status(), 429);
    let headers = res.headers().clone();
    // One request every 2 s: the next is due within 2 s.
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{headers:?}");
    assert_eq!(headers["x-ratelimit-limit"], "3");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert_eq!(headers["x-ratelimit-reset"], headers["retry-after"]);
    let err = error_json(res).await;
    assert_eq!(err["type"], "rate_limited");
    assert_eq!(err["route"], "hf");
    // Another client is not held back, and nothing refused reached a backend.
    assert_eq!(post(&h, "hf", FREE_KEY).await.status(), 200);
    assert_eq!(h.hf.counters().requests(), 4);
    let metrics = h.get_text_as("/metrics", Some(FREE_KEY)).await;
    assert!(
        metrics.contains(r#"infergate_rate_limited_total{limit="client_rate",route="hf"} 1"#),
        "{metrics}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_route_limit_counts_every_client_together() {
    let route_limit = "\n[routes.hf.rate_limit]\nrequests_per_second = 0.5\nburst = 2\n";
    let h = harness(&format!("{route_limit}{}", clients(""))).await;
    assert_eq!(post(&h, "hf", SLOW_KEY).await.status(), 200);
    assert_eq!(post(&h, "hf", FREE_KEY).await.status(), 200);
    let res = post(&h, "hf", FREE_KEY).await;
    assert_eq!(res.status(), 429);
    assert!(error_json(res).await["message"]
        .as_str()
        .unwrap()
        .contains("route's rate limit"));
    // Other routes have their own (no) limit.
    assert_eq!(post(&h, "sm", FREE_KEY).await.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn a_client_at_its_most_in_flight_waits_for_one_to_end() {
    let h = harness(&clients("max_in_flight = 2")).await;
    h.hf.faults()
        .update(|f| f.latency = Duration::from_millis(800));
    let slow = |h: &Harness| {
        let req = h
            .client
            .post(h.url("/v1/predict/hf"))
            .bearer_auth(SLOW_KEY)
            .body(r#"{"inputs":"a b"}"#);
        tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
    };
    let (one, two) = (slow(&h), slow(&h));
    let counters = h.hf.counters();
    crate::common::wait_for("two in flight", || counters.in_flight() == 2).await;
    let res = post(&h, "hf", SLOW_KEY).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["x-ratelimit-limit"], "2");
    assert_eq!(error_json(res).await["type"], "rate_limited");
    assert_eq!((one.await.unwrap(), two.await.unwrap()), (200, 200));
    // Both answers ended: room again.
    h.hf.faults().update(|f| f.latency = Duration::ZERO);
    assert_eq!(post(&h, "hf", SLOW_KEY).await.status(), 200);
    h.shutdown().await;
}

/// GCRA exactness: 10/s with a burst of 20, offered 100 requests/s for
/// 10 s, admits the burst plus ten a second of the time the offers took.
#[tokio::test]
async fn ten_a_second_with_a_burst_of_twenty_admits_120_in_ten_seconds() {
    let h = harness(&clients(
        "rate_limit = { requests_per_second = 10, burst = 20 }",
    ))
    .await;
    let mut tasks = Vec::new();
    let start = Instant::now();
    let mut last = start;
    for i in 0..1000u32 {
        tokio::time::sleep_until((start + Duration::from_millis(10) * i).into()).await;
        last = Instant::now();
        let req = h
            .client
            .post(h.url("/v1/predict/hf"))
            .bearer_auth(SLOW_KEY)
            .body(r#"{"inputs":"a b"}"#);
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    let span = last.duration_since(start).as_secs_f64();
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => admitted += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    // 20 at once, then one each 100 ms of the offers' span (9.99 s when
    // the pacing keeps time; longer on a loaded machine).
    let expected = 20.0 + 10.0 * span;
    assert!(
        (f64::from(admitted) - expected).abs() <= 2.5,
        "admitted {admitted}, expected {expected:.1} over {span:.2} s"
    );
    h.shutdown().await;
}
