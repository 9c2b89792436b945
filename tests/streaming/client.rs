//! The client's side: leaving, reading slowly; keep-alives and the idle
//! timeout; what cannot stream; the metrics; AWS's own SDK reading the
//! same stream.

use std::time::Duration;

use crate::common::model::words;
use crate::common::sdk::sdk_client;
use crate::common::{
    error_json, patch, wait_for, wait_some, with_route_keys, Harness, ACCESS_KEY, CONFIG,
    SECRET_KEY,
};
use crate::sse::{
    body, data, ends_with_error, expected, expected_text, open, parse, stream_ok, Sse,
};
use aws_sdk_sagemakerruntime::primitives::Blob;
use aws_sdk_sagemakerruntime::types::ResponseStream;
use serde_json::Value;

// === the client's side: leaving, reading slowly ===

/// Reads the first event of a slow stream, then goes away.
async fn client_leaves(route: &str) {
    let h = Harness::start().await;
    let emu = h.emulator(route);
    emu.faults()
        .update(|f| f.token_latency = Duration::from_millis(200));
    let inputs = words(20);
    let mut res = open(&h, route, &body(&inputs, 20)).await;
    assert_eq!(res.status(), 200);
    let mut got = Vec::new();
    while !got.windows(2).any(|w| w == b"\n\n") {
        let chunk = res.chunk().await.unwrap().expect("the stream ended early");
        got.extend_from_slice(&chunk);
    }
    let first = String::from_utf8(got).unwrap();
    assert_eq!(data(&parse(&first))[0], expected(&inputs, 20)[0]);
    assert_eq!(emu.counters().in_flight(), 1);
    drop(res);
    wait_for("the upstream stream to be cancelled", || {
        emu.counters().cancelled() == 1 && emu.counters().in_flight() == 0
    })
    .await;
    assert_eq!(emu.counters().stream_requests(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn client_leaving_cancels_the_sagemaker_stream() {
    client_leaves("sm").await;
}

#[tokio::test]
async fn client_leaving_cancels_the_hugging_face_stream() {
    client_leaves("hf").await;
}

#[tokio::test]
async fn client_leaving_before_the_first_event_cancels_the_attempt() {
    let h = Harness::start().await;
    for emu in [&h.sm, &h.hf] {
        emu.faults()
            .update(|f| f.token_latency = Duration::from_secs(3));
    }
    for route in ["sm", "hf"] {
        let res = h
            .client
            .post(h.url(&format!("/v1/predict/{route}/stream")))
            .header("content-type", "application/json")
            .body(body(&words(3), 3))
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(res.unwrap_err().is_timeout(), "{route}");
        let emu = h.emulator(route);
        wait_for("the waiting attempt to be cancelled", || {
            emu.counters().cancelled() == 1 && emu.counters().in_flight() == 0
        })
        .await;
        assert_eq!(emu.counters().stream_requests(), 1, "{route}");
    }
    h.shutdown().await;
}

/// An h2c client with 64 KiB flow-control windows and no window growth:
/// while it does not read, the gateway cannot send more than one window, so
/// its body is not polled and the stream's backpressure path is exercised
/// (over HTTP/1.1, loopback socket buffers would swallow the whole answer).
fn h2_small_window_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .http2_initial_stream_window_size(65_535)
        .http2_initial_connection_window_size(65_535)
        .http2_adaptive_window(false)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// 400 tokens of 300 bytes: several flow-control windows' worth of events.
fn big_inputs() -> String {
    let pad = "x".repeat(296);
    (0..400)
        .map(|i| format!("{i:03}{pad}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads a large, unpaced stream with pauses between reads; returns the
/// raw body.
async fn read_slowly(h: &Harness, route: &str, inputs: &str, pause: Duration) -> String {
    let client = h2_small_window_client();
    let mut res = client
        .post(h.url(&format!("/v1/predict/{route}/stream")))
        .header("content-type", "application/json")
        .body(body(inputs, 400))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    let mut raw = Vec::new();
    let mut reads = 0;
    while let Some(chunk) = res.chunk().await.unwrap() {
        raw.extend_from_slice(&chunk);
        reads += 1;
        if reads <= 3 {
            tokio::time::sleep(pause).await;
        }
    }
    String::from_utf8(raw).unwrap()
}

async fn slow_client(route: &str) {
    let config = patch(CONFIG, "max_body_bytes = 1024", "max_body_bytes = 4194304");
    let h = Harness::with_config(config).await;
    let inputs = big_inputs();
    let want = expected(&inputs, 400);
    assert_eq!(want.len(), 400);
    let raw = read_slowly(&h, route, &inputs, Duration::from_millis(100)).await;
    let events = parse(&raw);
    assert_eq!(events.len(), 400, "only data events");
    assert_eq!(data(&events), want, "every event, intact and in order");
    let last: Value = serde_json::from_str(&data(&events)[399]).unwrap();
    assert_eq!(last["generated_text"], expected_text(&inputs, 400));
    assert_eq!(h.emulator(route).counters().stream_requests(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn slow_client_gets_every_sagemaker_event_in_order() {
    slow_client("sm").await;
}

#[tokio::test]
async fn slow_client_gets_every_hugging_face_event_in_order() {
    slow_client("hf").await;
}

// === timers ===

#[tokio::test]
async fn keepalive_comments_fill_the_silences() {
    let mut config = with_route_keys(CONFIG, "sm", "stream_keepalive = \"100ms\"");
    config = with_route_keys(&config, "hf", "stream_keepalive = \"100ms\"");
    let h = Harness::with_config(config).await;
    for emu in [&h.sm, &h.hf] {
        emu.faults()
            .update(|f| f.token_latency = Duration::from_millis(400));
    }
    let inputs = words(3);
    let body = body(&inputs, 3);
    let read = |route: &'static str| {
        let h = &h;
        let body = &body;
        async move {
            let res = open(h, route, body).await;
            assert_eq!(res.status(), 200);
            res.text().await.unwrap()
        }
    };
    let (sm, hf) = tokio::join!(read("sm"), read("hf"));
    for (route, raw) in [("sm", sm), ("hf", hf)] {
        assert!(
            raw.contains("\n\n:\n\n"),
            "{route}: no keep-alive in {raw:?}"
        );
        let events = parse(&raw);
        assert_eq!(data(&events), expected(&inputs, 3), "{route}");
        // Keep-alives go out while the model is silent, between events.
        let first_comment = events.iter().position(|e| *e == Sse::Comment).unwrap();
        let last_data = events
            .iter()
            .rposition(|e| matches!(e, Sse::Data(_)))
            .unwrap();
        assert!(
            first_comment > 0 && first_comment < last_data,
            "{route}: {events:?}"
        );
        assert!(
            !events.iter().any(|e| matches!(e, Sse::Error(_))),
            "{route}"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn silent_backend_ends_the_stream_with_an_idle_timeout_error() {
    let mut config = with_route_keys(CONFIG, "sm", "stream_idle_timeout = \"300ms\"");
    config = with_route_keys(&config, "hf", "stream_idle_timeout = \"300ms\"");
    let h = Harness::with_config(config).await;
    for emu in [&h.sm, &h.hf] {
        emu.faults()
            .update(|f| f.token_latency = Duration::from_secs(1));
    }
    let inputs = words(5);
    let body = body(&inputs, 5);
    let read = |route: &'static str| {
        let h = &h;
        let body = &body;
        async move { stream_ok(h, route, body, route).await }
    };
    let (sm, hf) = tokio::join!(read("sm"), read("hf"));
    for (route, events) in [("sm", sm), ("hf", hf)] {
        let e = ends_with_error(&events, &expected(&inputs, 5), 1);
        assert_eq!(e["type"], "stream_idle_timeout", "{route}");
        assert_eq!(e["backend"], route);
        let emu = h.emulator(route);
        wait_for("the silent upstream stream to be closed", || {
            emu.counters().cancelled() == 1 && emu.counters().in_flight() == 0
        })
        .await;
    }
    h.shutdown().await;
}

/// A client that pauses longer than `stream_idle_timeout` while the backend
/// has already sent everything must not get an idle-timeout error: the
/// timeout is about the backend's silence, not the client's.
#[tokio::test]
async fn slow_client_does_not_trip_the_idle_timeout() {
    let config = patch(CONFIG, "max_body_bytes = 1024", "max_body_bytes = 4194304");
    let config = with_route_keys(&config, "sm", "stream_idle_timeout = \"300ms\"");
    let config = with_route_keys(&config, "hf", "stream_idle_timeout = \"300ms\"");
    let h = Harness::with_config(config).await;
    let inputs = big_inputs();
    let want = expected(&inputs, 400);
    for route in ["sm", "hf"] {
        let raw = read_slowly(&h, route, &inputs, Duration::from_millis(500)).await;
        let events = parse(&raw);
        let errors: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Sse::Error(_)))
            .collect();
        assert!(errors.is_empty(), "{route}: {errors:?}");
        assert_eq!(data(&events), want, "{route}");
    }
    h.shutdown().await;
}

// === what cannot stream ===

#[tokio::test]
async fn jumpstart_only_route_refuses_to_stream() {
    let h = Harness::start().await;
    let res = open(&h, "js", &body(&words(4), 4)).await;
    assert_eq!(res.status(), 400);
    let e = error_json(res).await;
    assert_eq!(e["type"], "bad_request");
    assert_eq!(e["route"], "js");
    assert!(
        e["message"].as_str().unwrap().contains("cannot stream"),
        "{e}"
    );
    assert_eq!(h.js.counters().requests(), 0, "the backend never saw it");
    h.shutdown().await;
}

// === metrics ===

#[tokio::test]
async fn metrics_count_relayed_events_and_stream_errors() {
    let h = Harness::start().await;
    let a = stream_ok(&h, "hf", &body(&words(20), 20), "hf").await;
    let b = stream_ok(&h, "hf", &body(&words(7), 20), "hf").await;
    assert_eq!(a.len() + b.len(), 27);
    h.sm.faults().update(|f| f.stream_error_after = Some(4));
    let c = stream_ok(&h, "sm", &body(&words(20), 20), "sm").await;
    ends_with_error(&c, &expected(&words(20), 20), 4);

    let want = [
        r#"infergate_stream_events_total{backend="hf",route="hf"} 27"#,
        r#"infergate_stream_events_total{backend="sm",route="sm"} 4"#,
        r#"infergate_stream_errors_total{backend="sm",kind="model_stream_error",route="sm"} 1"#,
    ];
    // What a stream records when its body ends lands just after the client
    // read the last byte.
    let text = wait_some("the stream tallies", || async {
        let text = h.get_text("/metrics").await;
        want.iter()
            .all(|line| text.lines().any(|l| l == *line))
            .then_some(text)
    })
    .await;
    // Every known series is present at 0 from start: the hf streams'
    // error series must all still be at 0.
    let hf_errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(r#"infergate_stream_errors_total{backend="hf""#))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(
        hf_errors.is_empty(),
        "the hf streams ended cleanly: {hf_errors:?}"
    );
    h.shutdown().await;
}

// === AWS's own SDK reads the same stream ===

#[tokio::test]
async fn aws_sdk_reads_the_events_the_gateway_relays() {
    let h = Harness::start().await;
    h.sm.faults().update(|f| f.stream_split = Some(5));
    let inputs = words(16);
    let relayed = data(&stream_ok(&h, "sm", &body(&inputs, 16), "sm").await);
    assert_eq!(relayed, expected(&inputs, 16));

    // The exact body the gateway sent (with `"stream": true`).
    let sent = h.sm.counters().last().unwrap().body;
    let v: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(v["stream"], true);

    let client = sdk_client(&h.sm.url(), ACCESS_KEY, SECRET_KEY, None);
    let mut out = client
        .invoke_endpoint_with_response_stream()
        .endpoint_name("flan-t5-small")
        .content_type("application/json")
        .body(Blob::new(sent.to_vec()))
        .send()
        .await
        .unwrap();
    let (mut bytes, mut parts) = (Vec::new(), 0);
    while let Some(event) = out.body.recv().await.unwrap() {
        match event {
            ResponseStream::PayloadPart(p) => {
                parts += 1;
                bytes.extend_from_slice(p.bytes().unwrap().as_ref());
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(parts > relayed.len(), "the parts were split: {parts}");
    let text = String::from_utf8(bytes).unwrap();
    let sdk: Vec<String> = text
        .split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|b| b.strip_prefix("data:").unwrap().to_string())
        .collect();
    assert_eq!(sdk, relayed);
    assert_eq!(h.sm.counters().stream_requests(), 2);
    h.shutdown().await;
}
