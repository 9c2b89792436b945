//! Shadowed token streams end to end: a streamed route over the SageMaker
//! emulator (an AWS event stream of TGI's SSE) copies each stream to the
//! Hugging Face emulator (SSE) and compares the two final texts. The
//! client's stream is byte for byte the one an unshadowed route gives;
//! what was compared shows in `/v1/routes` and the metrics.

use std::time::{Duration, Instant};

use infergate::emulator::FaultConfig;
use serde_json::{json, Value};

use super::shadow::{body, harness_with, settled, shadow_view, wait_settled};
use crate::common::{Harness, BODY};

/// Beside the unary tests' routes (`shadowed` to `hf`, `narrow` the same
/// one call at a time, `down` to a refusing port, all over `sm`): `whole`
/// to `js`, which does not stream, and `cached` to `hf`, with a cache.
const MORE: &str = r#"
[routes.whole]
backends = ["sm"]
shadow = [{ backend = "js", percent = 100 }]

[routes.cached]
backends = ["sm"]
shadow = [{ backend = "hf", percent = 100 }]
cache = { ttl = "10m" }
"#;

async fn harness() -> (Harness, tokio::net::TcpSocket) {
    harness_with(MORE).await
}

/// POSTs `body` as JSON to `path`; the status and the whole body.
async fn post(h: &Harness, path: &str, body: &str) -> (u16, String) {
    let res = h
        .client
        .post(h.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// A stream of `body` on `route`'s unified API.
async fn stream(h: &Harness, route: &str, body: &str) -> (u16, String) {
    post(h, &format!("/v1/predict/{route}/stream"), body).await
}

/// A stream that ended well: its events, no error event.
#[track_caller]
fn assert_whole(got: &(u16, String)) {
    assert_eq!(got.0, 200);
    assert!(got.1.contains("data:"), "{}", got.1);
    assert!(!got.1.contains("event: error"), "{}", got.1);
}

/// `route`'s match, differ, shadow_error and dropped in `/v1/routes`.
async fn outcomes(h: &Harness, route: &str) -> [u64; 4] {
    let s = shadow_view(h, route).await;
    ["match", "differ", "shadow_error", "dropped"].map(|k| s[k].as_u64().unwrap())
}

/// Streams each of `prompts` on `route`, each to its end; their bodies.
async fn stream_all(h: &Harness, route: &str, prompts: &[String]) -> Vec<String> {
    let mut bodies = Vec::new();
    for prompt in prompts {
        let got = stream(h, route, &body(prompt)).await;
        assert_whole(&got);
        bodies.push(got.1);
    }
    bodies
}

/// `n` prompts `{word} {i}`, those with an `i` in `marked` starting with
/// `MARK`.
fn prompts(word: &str, n: usize, marked: &[usize]) -> Vec<String> {
    (0..n)
        .map(|i| match marked.contains(&i) {
            true => format!("MARK {word} {i}"),
            false => format!("{word} {i}"),
        })
        .collect()
}

/// The Hugging Face emulator alters its answer to prompts with `MARK`.
fn mark(h: &Harness, token_latency: Duration) {
    h.hf.faults().set(FaultConfig {
        alter_inputs_containing: Some("MARK".into()),
        token_latency,
        ..FaultConfig::default()
    });
}

#[tokio::test]
async fn identical_streams_match_and_marked_prompts_differ_exactly() {
    let (h, _socket) = harness().await;
    stream_all(&h, "shadowed", &prompts("plain", 5, &[])).await;
    wait_settled(&h, "shadowed", 5).await;
    assert_eq!(outcomes(&h, "shadowed").await, [5, 0, 0, 0]);
    assert_eq!(h.hf.counters().stream_requests(), 5, "a stream each");

    mark(&h, Duration::ZERO);
    for got in stream_all(&h, "shadowed", &prompts("two", 10, &[1, 4, 8])).await {
        // The client gets the primary's stream, never the shadow's.
        assert!(!got.contains("altered"), "{got}");
    }
    wait_settled(&h, "shadowed", 15).await;
    assert_eq!(outcomes(&h, "shadowed").await, [12, 3, 0, 0]);
    assert_eq!(shadow_view(&h, "shadowed").await["agreement"], 0.8);
    let metrics = h.get_text("/metrics").await;
    for (outcome, n) in [("match", 12), ("differ", 3), ("shadow_error", 0)] {
        let line = format!(
            "infergate_shadow_requests_total{{outcome=\"{outcome}\",route=\"shadowed\",shadow=\"hf\"}} {n}\n"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    // Each comparison observed the texts' similarity: 12 of 1, and 3 of
    // 1/2 ("altered two MARK" against "1 two MARK", say).
    let similarity = |part: &str| {
        format!("infergate_shadow_similarity_{part}{{route=\"shadowed\",shadow=\"hf\"}} ")
    };
    assert!(metrics.contains(&format!("{}15\n", similarity("count"))));
    let sum: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&similarity("sum")))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(sum, 13.5);
    assert!(metrics.contains(
        r#"infergate_requests_total{backend="sm",code_class="2xx",outcome="success",route="shadowed"} 15"#
    ));
}

#[tokio::test]
async fn the_client_stream_is_the_same_with_and_without_the_shadow() {
    let (h, _socket) = harness().await;
    mark(&h, Duration::from_millis(20));
    for prompt in ["one stable inference URL", "MARK the shadow differs", "a"] {
        let plain = stream(&h, "sm", &body(prompt)).await;
        assert_whole(&plain);
        assert_eq!(stream(&h, "shadowed", &body(prompt)).await, plain);
    }
    wait_settled(&h, "shadowed", 3).await;
    assert_eq!(outcomes(&h, "shadowed").await, [2, 1, 0, 0]);
}

#[tokio::test]
async fn a_cut_primary_stream_is_not_compared() {
    let (h, _socket) = harness().await;
    h.sm.faults().set(FaultConfig {
        stream_error_after: Some(2),
        ..FaultConfig::default()
    });
    for _ in 0..3 {
        let (status, text) = stream(&h, "shadowed", BODY).await;
        assert_eq!(status, 200);
        assert!(text.contains("event: error"), "{text}");
    }
    h.sm.faults().set(FaultConfig::default());
    // A whole stream after them settles after they would have.
    assert_whole(&stream(&h, "shadowed", BODY).await);
    wait_settled(&h, "shadowed", 1).await;
    assert_eq!(outcomes(&h, "shadowed").await, [1, 0, 0, 0]);
    assert_eq!(h.hf.counters().requests(), 1, "no call for a cut stream");
}

#[tokio::test]
async fn a_shadow_down_or_cut_is_a_shadow_error_and_the_client_stream_is_unchanged() {
    let (h, _socket) = harness().await;
    let plain = stream(&h, "sm", BODY).await;
    assert_whole(&plain);
    for _ in 0..3 {
        assert_eq!(stream(&h, "down", BODY).await, plain);
    }
    wait_settled(&h, "down", 3).await;
    assert_eq!(outcomes(&h, "down").await, [0, 0, 3, 0]);
    assert_eq!(shadow_view(&h, "down").await["agreement"], Value::Null);
    assert_eq!(
        h.backend_view("down", "sm").await["consecutive_failures"],
        0
    );

    // A shadow whose own stream breaks midway failed too.
    h.hf.faults().set(FaultConfig {
        stream_error_after: Some(1),
        ..FaultConfig::default()
    });
    assert_eq!(stream(&h, "shadowed", BODY).await, plain);
    wait_settled(&h, "shadowed", 1).await;
    assert_eq!(outcomes(&h, "shadowed").await, [0, 0, 1, 0]);
}

#[tokio::test]
async fn a_streamed_miss_is_stored_and_shadowed_and_the_hit_replays_it() {
    let (h, _socket) = harness().await;
    let path = "/v1/predict/cached/stream";
    let miss = h.client.post(h.url(path)).body(BODY).send().await.unwrap();
    assert_eq!(miss.headers()["x-infergate-cache"], "miss");
    let miss = miss.text().await.unwrap();
    wait_settled(&h, "cached", 1).await;
    assert_eq!(outcomes(&h, "cached").await, [1, 0, 0, 0]);
    let hit = h.client.post(h.url(path)).body(BODY).send().await.unwrap();
    assert_eq!(hit.headers()["x-infergate-cache"], "hit");
    assert_eq!(hit.text().await.unwrap(), miss);
    assert_eq!(h.sm.counters().stream_requests(), 1);
    // A hit makes no upstream call, so no shadow call either; a stream
    // shadowed after it settles after it would have.
    assert_whole(&stream(&h, "shadowed", BODY).await);
    wait_settled(&h, "shadowed", 1).await;
    assert_eq!(outcomes(&h, "cached").await, [1, 0, 0, 0]);
}

#[tokio::test]
async fn a_shadow_that_cannot_stream_is_asked_unary_and_its_text_compared() {
    let (h, _socket) = harness().await;
    stream_all(&h, "whole", &prompts("compare", 3, &[])).await;
    wait_settled(&h, "whole", 3).await;
    assert_eq!(outcomes(&h, "whole").await, [3, 0, 0, 0]);
    assert_eq!(h.js.counters().requests(), 3);
    assert_eq!(h.js.counters().stream_requests(), 0);
}

#[tokio::test]
async fn chat_streams_through_the_openai_door_compare_their_content() {
    let (h, _socket) = harness().await;
    mark(&h, Duration::ZERO);
    for prompt in ["one stable inference URL", "MARK one stable inference URL"] {
        let chat = json!({
            "model": "shadowed",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 3,
            "stream": true,
        });
        let (status, text) = post(&h, "/v1/chat/completions", &chat.to_string()).await;
        assert_eq!(status, 200);
        assert!(text.contains("chat.completion.chunk"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }
    wait_settled(&h, "shadowed", 2).await;
    assert_eq!(outcomes(&h, "shadowed").await, [1, 1, 0, 0]);
    assert_eq!(h.hf.counters().stream_requests(), 2);
}

#[tokio::test]
async fn stream_shadows_past_the_limit_are_dropped_and_never_slow_the_client() {
    let (h, _socket) = harness().await;
    h.hf.faults().set(FaultConfig {
        latency: Duration::from_millis(1500),
        ..FaultConfig::default()
    });
    for _ in 0..5 {
        let started = Instant::now();
        assert_whole(&stream(&h, "narrow", BODY).await);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the client never waits on the shadow"
        );
    }
    wait_settled(&h, "narrow", 5).await;
    assert_eq!(outcomes(&h, "narrow").await, [1, 0, 0, 4]);
    assert_eq!(h.hf.counters().requests(), 1);
    assert_eq!(settled(&h, "shadowed").await, 0);
}
