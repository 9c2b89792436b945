//! The response cache (`routes.<name>.cache`) end to end: a hit makes no
//! upstream call (the emulator's counters do not move) and answers as the
//! miss did; what is never served again (another client's answer, an
//! error, a bypassed or sampling request, a stream cut midway, an expired
//! entry); and the cache sits in the core, under every door.

use infergate::emulator::{FaultConfig, InjectedError};
use serde_json::json;

use crate::common::wait::wait_until;
use crate::common::{Harness, BODY, CONFIG};

const KEY_A: &str = "cache-client-a-key-3f9c";
const KEY_B: &str = "cache-client-b-key-81d2";

/// HF routes with a cache (`cached`, `brief` with a 1s ttl, `together`
/// shared between clients, `dice` caching sampling requests, `thrifty`
/// with a token limit, `narrow` with a request rate)
/// and two clients that may use every route (`b` an admin, for `/metrics`).
fn config() -> String {
    format!(
        r#"{CONFIG}
[routes.cached]
backends = ["hf"]
cache = {{ ttl = "10m", store = "memory", max_bytes = 1048576 }}

[routes.brief]
backends = ["hf"]
cache = {{ ttl = "1s" }}

[routes.together]
backends = ["hf"]
cache = {{ ttl = "10m", shared = true }}

[routes.dice]
backends = ["hf"]
cache = {{ ttl = "10m", sampling = true }}

[routes.thrifty]
backends = ["hf"]
cache = {{ ttl = "10m" }}
tokens_per_minute = 10

[routes.narrow]
backends = ["hf"]
cache = {{ ttl = "10m" }}
rate_limit = {{ requests_per_second = 0.01, burst = 2 }}

[clients.a]
api_key = "{KEY_A}"

[clients.b]
api_key = "{KEY_B}"
admin = true
"#
    )
}

async fn harness() -> Harness {
    Harness::with_config(config()).await
}

/// One answer, read whole.
struct Got {
    status: u16,
    cache: String,
    age: Option<u64>,
    backend: String,
    attempts: String,
    content_type: String,
    body: String,
}

async fn got(res: reqwest::Response) -> Got {
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (cache, backend, attempts) = (
        header("x-infergate-cache"),
        header("x-infergate-backend"),
        header("x-infergate-attempts"),
    );
    let content_type = header("content-type");
    let age = res
        .headers()
        .get("age")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    Got {
        status: res.status().as_u16(),
        cache,
        age,
        backend,
        attempts,
        content_type,
        body: res.text().await.unwrap(),
    }
}

/// `body` to `path` as client `key`, with `headers`.
async fn send(h: &Harness, path: &str, key: &str, body: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = h
        .client
        .post(h.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    got(req.send().await.unwrap()).await
}

async fn predict(h: &Harness, route: &str, key: &str, body: &str) -> Got {
    send(h, &format!("/v1/predict/{route}"), key, body, &[]).await
}

fn upstream_calls(h: &Harness) -> u64 {
    h.hf.counters().requests()
}

#[tokio::test]
async fn a_second_identical_request_is_a_hit_without_an_upstream_call() {
    let h = harness().await;
    let miss = predict(&h, "cached", KEY_A, BODY).await;
    assert_eq!((miss.status, miss.cache.as_str()), (200, "miss"));
    assert_eq!(miss.age, None);
    let calls = upstream_calls(&h);
    assert_eq!(calls, 1);

    let hit = predict(&h, "cached", KEY_A, BODY).await;
    assert_eq!((hit.status, hit.cache.as_str()), (200, "hit"));
    assert_eq!(upstream_calls(&h), calls, "a hit calls no backend");
    assert_eq!(hit.body, miss.body);
    let answer: serde_json::Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(answer, crate::expected_answer());
    assert_eq!(hit.content_type, miss.content_type);
    assert_eq!(hit.backend, "hf", "the backend that answered first");
    assert_eq!(hit.attempts, "0");
    assert!(hit.age.is_some_and(|age| age < 60), "Age: {:?}", hit.age);

    // A route without a cache says nothing about one.
    let res = h
        .client
        .post(h.url("/v1/predict/hf"))
        .bearer_auth(KEY_A)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("x-infergate-cache").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn two_clients_never_share_an_answer_unless_the_route_says_shared() {
    let h = harness().await;
    assert_eq!(predict(&h, "cached", KEY_A, BODY).await.cache, "miss");
    assert_eq!(predict(&h, "cached", KEY_B, BODY).await.cache, "miss");
    assert_eq!(upstream_calls(&h), 2);
    assert_eq!(predict(&h, "cached", KEY_A, BODY).await.cache, "hit");
    assert_eq!(predict(&h, "cached", KEY_B, BODY).await.cache, "hit");
    assert_eq!(upstream_calls(&h), 2);

    assert_eq!(predict(&h, "together", KEY_A, BODY).await.cache, "miss");
    let shared = predict(&h, "together", KEY_B, BODY).await;
    assert_eq!(shared.cache, "hit", "shared = true");
    assert_eq!(upstream_calls(&h), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn no_cache_from_the_client_is_neither_served_nor_stored() {
    let h = harness().await;
    for directive in ["no-cache", "no-store", "max-age=0, no-cache"] {
        let res = send(
            &h,
            "/v1/predict/cached",
            KEY_A,
            BODY,
            &[("cache-control", directive)],
        )
        .await;
        assert_eq!(
            (res.status, res.cache.as_str()),
            (200, "bypass"),
            "{directive}"
        );
    }
    assert_eq!(upstream_calls(&h), 3);
    // Nothing was stored by the bypasses.
    assert_eq!(predict(&h, "cached", KEY_A, BODY).await.cache, "miss");
    // And a stored answer is not served to a client that says no-cache.
    let res = send(
        &h,
        "/v1/predict/cached",
        KEY_A,
        BODY,
        &[("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(res.cache, "bypass");
    assert_eq!(upstream_calls(&h), 5);
    // A request of a SageMaker session is the session's state: never kept.
    for _ in 0..2 {
        let res = send(
            &h,
            "/v1/predict/cached",
            KEY_A,
            BODY,
            &[("x-amzn-sagemaker-session-id", "NEW_SESSION")],
        )
        .await;
        assert_eq!(res.cache, "bypass");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_sampling_request_bypasses_unless_the_route_caches_sampling() {
    let h = harness().await;
    let sampled = [
        json!({"inputs": "one stable inference URL", "parameters": {"do_sample": true, "max_new_tokens": 4}}),
        json!({"inputs": "one stable inference URL", "parameters": {"temperature": 0.8, "max_new_tokens": 4}}),
    ];
    for body in &sampled {
        for _ in 0..2 {
            let res = predict(&h, "cached", KEY_A, &body.to_string()).await;
            assert_eq!((res.status, res.cache.as_str()), (200, "bypass"), "{body}");
        }
    }
    assert_eq!(upstream_calls(&h), 4);
    // With a seed the answer is meant to come out the same: cached.
    let seeded = json!({"inputs": "one stable inference URL", "parameters": {"temperature": 0.8, "seed": 7, "max_new_tokens": 4}});
    assert_eq!(
        predict(&h, "cached", KEY_A, &seeded.to_string())
            .await
            .cache,
        "miss"
    );
    assert_eq!(
        predict(&h, "cached", KEY_A, &seeded.to_string())
            .await
            .cache,
        "hit"
    );
    // A route with sampling = true caches the others too.
    let body = sampled[0].to_string();
    assert_eq!(predict(&h, "dice", KEY_A, &body).await.cache, "miss");
    assert_eq!(predict(&h, "dice", KEY_A, &body).await.cache, "hit");
    assert_eq!(upstream_calls(&h), 6);
    h.shutdown().await;
}

#[tokio::test]
async fn an_error_answer_is_not_stored() {
    let h = harness().await;
    h.hf.faults().fail_next(1, InjectedError::Status(422));
    let res = predict(&h, "cached", KEY_A, BODY).await;
    assert_eq!((res.status, res.cache.as_str()), (422, "miss"));
    let res = predict(&h, "cached", KEY_A, BODY).await;
    assert_eq!((res.status, res.cache.as_str()), (200, "miss"));
    let res = predict(&h, "cached", KEY_A, BODY).await;
    assert_eq!((res.status, res.cache.as_str()), (200, "hit"));
    assert_eq!(upstream_calls(&h), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn an_entry_expires_after_its_ttl() {
    let h = harness().await;
    assert_eq!(predict(&h, "brief", KEY_A, BODY).await.cache, "miss");
    assert_eq!(predict(&h, "brief", KEY_A, BODY).await.cache, "hit");
    assert_eq!(upstream_calls(&h), 1);
    // moka's clock cannot be moved: poll until the 1s ttl has run out
    // (each hit on the way costs no upstream call).
    wait_until("the entry to expire", || async {
        predict(&h, "brief", KEY_A, BODY).await.cache == "miss"
    })
    .await;
    assert_eq!(upstream_calls(&h), 2);
    assert_eq!(predict(&h, "brief", KEY_A, BODY).await.cache, "hit");
    h.shutdown().await;
}

#[tokio::test]
async fn the_predict_and_openai_doors_do_not_share_different_upstream_calls() {
    let h = harness().await;
    assert_eq!(predict(&h, "cached", KEY_A, BODY).await.cache, "miss");
    // Without a temperature an OpenAI request samples (OpenAI's default
    // is 1, and TGI's chat route samples unless it is 0): not cached.
    let sampled = json!({
        "model": "cached",
        "messages": [{"role": "user", "content": "one stable inference URL"}],
        "max_tokens": 8,
    });
    let res = send(&h, "/v1/chat/completions", KEY_A, &sampled.to_string(), &[]).await;
    assert_eq!((res.status, res.cache.as_str()), (200, "bypass"));
    let mut chat = sampled;
    chat["temperature"] = json!(0);
    let chat = chat.to_string();
    let first = send(&h, "/v1/chat/completions", KEY_A, &chat, &[]).await;
    assert_eq!((first.status, first.cache.as_str()), (200, "miss"));
    assert_eq!(upstream_calls(&h), 3);
    // The OpenAI door reaches the same cache: its second call is a hit, in
    // its own shape.
    let second = send(&h, "/v1/chat/completions", KEY_A, &chat, &[]).await;
    assert_eq!((second.status, second.cache.as_str()), (200, "hit"));
    assert_eq!(upstream_calls(&h), 3);
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&first.body).unwrap(),
        serde_json::from_str(&second.body).unwrap(),
    );
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(a["choices"], b["choices"]);
    h.shutdown().await;
}

#[tokio::test]
async fn a_stream_is_stored_once_it_completed_and_replayed_identically() {
    let h = harness().await;
    let path = "/v1/predict/cached/stream";
    let miss = send(&h, path, KEY_A, BODY, &[]).await;
    assert_eq!((miss.status, miss.cache.as_str()), (200, "miss"));
    assert_eq!(miss.content_type, "text/event-stream");
    assert!(!miss.body.contains("event: error"), "{}", miss.body);
    assert_eq!(h.hf.counters().stream_requests(), 1);

    let hit = send(&h, path, KEY_A, BODY, &[]).await;
    assert_eq!((hit.status, hit.cache.as_str()), (200, "hit"));
    assert_eq!(hit.body, miss.body, "the same events, in order");
    assert_eq!(hit.content_type, "text/event-stream");
    assert_eq!(h.hf.counters().stream_requests(), 1);
    // A stream is not the unary answer to the same body.
    assert_eq!(predict(&h, "cached", KEY_A, BODY).await.cache, "miss");
    h.shutdown().await;
}

#[tokio::test]
async fn a_stream_cut_midway_is_not_stored() {
    let h = harness().await;
    let path = "/v1/predict/cached/stream";
    h.hf.faults().set(FaultConfig {
        stream_error_after: Some(2),
        ..FaultConfig::default()
    });
    let cut = send(&h, path, KEY_A, BODY, &[]).await;
    assert_eq!((cut.status, cut.cache.as_str()), (200, "miss"));
    assert!(cut.body.contains("event: error"), "{}", cut.body);
    h.hf.faults().set(FaultConfig::default());
    let whole = send(&h, path, KEY_A, BODY, &[]).await;
    assert_eq!(whole.cache, "miss", "the cut stream was not kept");
    assert!(!whole.body.contains("event: error"));
    assert_eq!(send(&h, path, KEY_A, BODY, &[]).await.cache, "hit");
    assert_eq!(h.hf.counters().stream_requests(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn the_cache_metrics_count_hits_misses_and_bypasses() {
    let h = harness().await;
    let text = h.get_text_as("/metrics", Some(KEY_B)).await;
    for result in ["hit", "miss", "bypass"] {
        let line =
            format!("infergate_cache_requests_total{{result=\"{result}\",route=\"brief\"}} 0");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(text.contains("infergate_cache_bytes{route=\"cached\"} 0"));
    assert!(text.contains("infergate_cache_evictions_total{route=\"cached\"} 0"));
    predict(&h, "cached", KEY_A, BODY).await;
    predict(&h, "cached", KEY_A, BODY).await;
    send(
        &h,
        "/v1/predict/cached",
        KEY_A,
        BODY,
        &[("cache-control", "no-store")],
    )
    .await;
    let text = h.get_text_as("/metrics", Some(KEY_B)).await;
    for result in ["hit", "miss", "bypass"] {
        let line =
            format!("infergate_cache_requests_total{{result=\"{result}\",route=\"cached\"}} 1");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    let bytes = text
        .lines()
        .find_map(|l| l.strip_prefix("infergate_cache_bytes{route=\"cached\"} "))
        .unwrap();
    assert!(bytes.parse::<u64>().unwrap() > 0, "{bytes}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_hit_counts_against_the_request_rate_but_charges_no_tokens() {
    let h = harness().await;
    // 4 prompt tokens and 2 generated: 6 of the route's 10 a minute. Were
    // a hit charged too, the third request would find the bucket in debt.
    let body = json!({"inputs": "one stable inference URL", "parameters": {"max_new_tokens": 2}})
        .to_string();
    let results: Vec<(u16, String)> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            let res = predict(&h, "thrifty", KEY_A, &body).await;
            out.push((res.status, res.cache));
        }
        out
    };
    assert_eq!(
        results,
        [
            (200, "miss".into()),
            (200, "hit".into()),
            (200, "hit".into())
        ]
    );
    // A burst of 2: the hit took the second request's place.
    assert_eq!(predict(&h, "narrow", KEY_A, BODY).await.cache, "miss");
    assert_eq!(predict(&h, "narrow", KEY_A, BODY).await.cache, "hit");
    assert_eq!(predict(&h, "narrow", KEY_A, BODY).await.status, 429);
    h.shutdown().await;
}
