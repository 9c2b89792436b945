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

/// `infergate_rate_limited_total` counts one refusal by `limit` on `hf`.
async fn assert_refused_once(h: &Harness, limit: &str) {
    let metrics = h.get_text_as("/metrics", Some(FREE_KEY)).await;
    let line = format!(r#"infergate_rate_limited_total{{limit="{limit}",route="hf"}} 1"#);
    assert!(metrics.contains(&line), "no {line} in\n{metrics}");
}

/// The `Retry-After` of an answer, in seconds.
fn retry_after(headers: &http::HeaderMap) -> u64 {
    headers["retry-after"].to_str().unwrap().parse().unwrap()
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
    let retry: u64 = retry_after(&headers);
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
    assert_refused_once(&h, "client_rate").await;
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

async fn stream(h: &Harness, route: &str, key: &str, words: usize) -> reqwest::Response {
    let inputs = crate::common::model::words(words);
    h.client
        .post(h.url(&format!("/v1/predict/{route}/stream")))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"inputs": inputs, "parameters": {"max_new_tokens": words}})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
}

/// 60 tokens a minute (one a second). A stream of 100 tokens is admitted
/// and finishes whole; the next request waits for the 40 the bucket owes.
#[tokio::test]
async fn a_stream_over_the_token_limit_finishes_and_the_next_waits_for_the_refill() {
    let h = harness(&clients("tokens_per_minute = 60")).await;
    let res = stream(&h, "hf", SLOW_KEY, 100).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let events = text.matches("data:").count();
    assert_eq!(events, 100, "the stream was cut:\n{text}");
    assert!(!text.contains("\"error\""), "{text}");
    // Charged once the stream ended: 100 - 60 = 40 tokens of debt, 40 s.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = post(&h, "hf", SLOW_KEY).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = retry_after(res.headers());
    assert!(
        (39..=40).contains(&retry),
        "Retry-After {retry}, expected the 40 s refill"
    );
    assert_eq!(res.headers()["x-ratelimit-limit"], "60");
    let err = error_json(res).await;
    assert_eq!(err["type"], "rate_limited");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("tokens per minute"),
        "{err}"
    );
    assert_refused_once(&h, "client_tokens").await;
    h.shutdown().await;
}

/// A unary answer is charged what TGI's headers report (prompt and
/// generated tokens), on the route's own bucket, for every client.
#[tokio::test]
async fn a_route_token_limit_is_charged_what_the_backend_reports() {
    let config = crate::common::patch_first(
        &format!("{CONFIG}{}", clients("")),
        "[routes.hf]",
        "[routes.hf]\ntokens_per_minute = 10",
    );
    let h = Harness::with_config(config).await;
    // "one stable inference URL": 4 prompt tokens and 4 generated.
    let first = post(&h, "hf", SLOW_KEY).await;
    assert_eq!(first.headers()["x-generated-tokens"], "4");
    assert_eq!(first.status(), 200);
    assert_eq!(post(&h, "hf", FREE_KEY).await.status(), 200);
    // 16 of 10: 6 tokens owed, 36 s; every client waits.
    let res = post(&h, "hf", SLOW_KEY).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = retry_after(res.headers());
    assert!((35..=36).contains(&retry), "Retry-After {retry}");
    assert_eq!(post(&h, "hf", FREE_KEY).await.status(), 429);
    // Another route is not held back.
    assert_eq!(post(&h, "sm", FREE_KEY).await.status(), 200);
    h.shutdown().await;
}

/// `route_limits`: a client's limit on one route leaves its other routes,
/// and other clients on that route, alone.
#[tokio::test]
async fn a_clients_limit_on_one_route_holds_only_there() {
    let h = harness(&clients(
        "[clients.slow.route_limits.hf]\nrate_limit = { requests_per_second = 0.1, burst = 1 }",
    ))
    .await;
    assert_eq!(post(&h, "hf", SLOW_KEY).await.status(), 200);
    let res = post(&h, "hf", SLOW_KEY).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["x-ratelimit-limit"], "1");
    assert_eq!(post(&h, "sm", SLOW_KEY).await.status(), 200);
    assert_eq!(post(&h, "hf", FREE_KEY).await.status(), 200);
    assert_refused_once(&h, "client_route_rate").await;
    h.shutdown().await;
}

/// An admitted answer says how much of its tightest request bucket is left.
#[tokio::test]
async fn admitted_answers_carry_the_rate_limit_headers() {
    let h = harness(&clients(
        "rate_limit = { requests_per_second = 1, burst = 5 }",
    ))
    .await;
    let res = post(&h, "hf", SLOW_KEY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ratelimit-limit"], "5");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "4");
    assert_eq!(res.headers()["x-ratelimit-reset"], "1");
    // A client without limits gets none.
    let res = post(&h, "hf", FREE_KEY).await;
    assert!(res.headers().get("x-ratelimit-limit").is_none());
    h.shutdown().await;
}

/// A request refused for its key (401) or its route (403) spends nothing:
/// the limits are asked only once the caller may call the route.
#[tokio::test]
async fn requests_refused_for_their_key_or_route_spend_no_limit() {
    let limits = "rate_limit = { requests_per_second = 0.1, burst = 1 }\nroutes = [\"hf\"]";
    let config = crate::common::patch_first(
        &format!("{CONFIG}{}", clients(limits)),
        "[routes.hf]",
        "[routes.hf]\nrate_limit = { requests_per_second = 0.1, burst = 1 }",
    );
    let h = Harness::with_config(config).await;
    for _ in 0..5 {
        assert_eq!(post(&h, "hf", "not-a-key").await.status(), 401);
        // `slow` may not use `sm`: 403, and its own bucket stays full.
        assert_eq!(post(&h, "sm", SLOW_KEY).await.status(), 403);
    }
    let res = post(&h, "hf", SLOW_KEY).await;
    assert_eq!(res.status(), 200, "a refused request spent a limit");
    assert_eq!(post(&h, "hf", SLOW_KEY).await.status(), 429);
    h.shutdown().await;
}
