#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `POST /v1/predict/{route}/stream` end to end over loopback sockets: both
//! backends through their emulators, the stream faults of each (parts cut
//! anywhere, a corrupted frame CRC, mid-stream errors, a cold endpoint), a
//! client that leaves, a client that reads slowly, keep-alives and the idle
//! timeout, the metrics, and AWS's own SDK reading the same stream.
//!
//! Expected events come from the emulators' shared model
//! ([`model::generate_stream_events`]), so every test checks the exact JSON
//! of every event, not only how many there were.

mod common;

use std::time::Duration;

use aws_sdk_sagemakerruntime::config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::config::{Credentials, Region};
use aws_sdk_sagemakerruntime::primitives::Blob;
use aws_sdk_sagemakerruntime::types::ResponseStream;
use common::{error_json, Harness, Setup, ACCESS_KEY, CONFIG, SECRET_KEY};
use infergate::emulator::model::{self, Generation};
use infergate::emulator::{EmulatorHandle, InjectedError, StreamError};
use serde_json::{json, Value};

// === helpers ===

/// `n` distinct words; the model answers them reversed.
fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn body(inputs: &str, max_new_tokens: u32) -> String {
    json!({"inputs": inputs, "parameters": {"max_new_tokens": max_new_tokens}}).to_string()
}

/// The JSON of each event TGI's `generate_stream` sends for this input.
fn expected(inputs: &str, max_new_tokens: u32) -> Vec<String> {
    model::generate_stream_events(&Generation::run(inputs, Some(max_new_tokens)), false)
}

/// The reversed words, as the last event's `generated_text`.
fn expected_text(inputs: &str, max_new_tokens: u32) -> String {
    Generation::run(inputs, Some(max_new_tokens)).text()
}

/// One block of a server-sent-events body.
#[derive(Debug, Clone, PartialEq)]
enum Sse {
    Data(String),
    /// `event: error`: the `error` object of its JSON.
    Error(Value),
    /// A comment-only block (keep-alive).
    Comment,
}

/// Splits an SSE body on blank lines; every block must be complete.
fn parse(text: &str) -> Vec<Sse> {
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "the body ends inside an event: {text:?}"
    );
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let mut name = None;
        let mut data: Option<String> = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                let v = v.strip_prefix(' ').unwrap_or(v);
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(v);
                    }
                    None => data = Some(v.to_string()),
                }
            } else {
                assert!(line.starts_with(':'), "unexpected SSE line {line:?}");
            }
        }
        match (name.as_deref(), data) {
            (None, None) => out.push(Sse::Comment),
            (None, Some(d)) => out.push(Sse::Data(d)),
            (Some("error"), Some(d)) => {
                let v: Value = serde_json::from_str(&d).unwrap();
                out.push(Sse::Error(v["error"].clone()));
            }
            (n, d) => panic!("unexpected SSE block: event {n:?}, data {d:?}"),
        }
    }
    out
}

/// The `data:` payloads, in order.
fn data(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Sse::Data(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Opens a stream on `route`.
async fn open(h: &Harness, route: &str, body: &str) -> reqwest::Response {
    h.client
        .post(h.url(&format!("/v1/predict/{route}/stream")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A successful stream's headers, checked, and its events.
async fn stream_ok(h: &Harness, route: &str, body: &str, backend: &str) -> Vec<Sse> {
    let res = open(h, route, body).await;
    assert_eq!(res.status(), 200, "route {route}");
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["x-infergate-backend"], backend);
    parse(&res.text().await.unwrap())
}

/// A stream that ended with an error event after `n` data events: checks
/// the tokens before it and returns the error object.
fn ends_with_error(events: &[Sse], want: &[String], n: usize) -> Value {
    assert_eq!(events.len(), n + 1, "{events:?}");
    assert_eq!(data(&events[..n]), want[..n].to_vec());
    match &events[n] {
        Sse::Error(e) => e.clone(),
        other => panic!("expected an error event last, got {other:?}"),
    }
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The default test config with `keys` added to `[routes.{route}]`.
fn with_route_keys(config: &str, route: &str, keys: &str) -> String {
    let table = format!("[routes.{route}]\n");
    assert!(config.contains(&table));
    config.replace(&table, &format!("{table}{keys}\n"))
}

/// Route `both` tries `first` before the other backend, every time.
fn both_in_order(first: &str) -> String {
    let old = "[routes.both]\nbackends = [\"sm\", \"hf\"]\n";
    assert!(CONFIG.contains(old));
    let order = if first == "hf" {
        "hf\", \"sm"
    } else {
        "sm\", \"hf"
    };
    CONFIG.replace(
        old,
        &format!("[routes.both]\nbackends = [\"{order}\"]\nbalance = \"priority\"\n"),
    )
}

async fn harness(config: String) -> Harness {
    Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await
}

fn emulator<'a>(h: &'a Harness, route: &str) -> &'a EmulatorHandle {
    match route {
        "sm" => &h.sm,
        "hf" => &h.hf,
        other => panic!("no emulator for route {other}"),
    }
}

// === both backends, one protocol ===

#[tokio::test]
async fn both_backends_relay_the_same_events() {
    let h = Harness::start().await;
    let inputs = words(25);
    let body = body(&inputs, 20);
    let want = expected(&inputs, 20);
    assert_eq!(want.len(), 20);

    let sm = stream_ok(&h, "sm", &body, "sm").await;
    let hf = stream_ok(&h, "hf", &body, "hf").await;
    assert_eq!(sm.len(), 20, "only data events: {sm:?}");
    assert_eq!(sm, hf, "the client cannot tell the backends apart");
    assert_eq!(data(&sm), want);
    let last: Value = serde_json::from_str(&data(&sm)[19]).unwrap();
    assert_eq!(last["generated_text"], expected_text(&inputs, 20));
    assert_eq!(last["token"]["text"], " w5");
    let first: Value = serde_json::from_str(&data(&sm)[0]).unwrap();
    assert_eq!(first["generated_text"], Value::Null);
    assert_eq!(first["token"]["text"], "w24");

    // Each backend's streaming call, as the emulators saw it.
    let seen = h.sm.counters().last().unwrap();
    assert_eq!(
        seen.path,
        "/endpoints/flan-t5-small/invocations-response-stream"
    );
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["inputs"], inputs);
    assert_eq!(h.hf.counters().last().unwrap().path, "/generate_stream");
    assert_eq!(h.sm.counters().stream_requests(), 1);
    assert_eq!(h.hf.counters().stream_requests(), 1);
    h.shutdown().await;
}

/// The response body's chunks as the client receives them (over HTTP/1.1,
/// one per chunk of the gateway's chunked encoding).
async fn chunks(h: &Harness, route: &str, body: &str) -> Vec<bytes::Bytes> {
    let mut res = open(h, route, body).await;
    assert_eq!(res.status(), 200);
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        out.push(chunk);
    }
    out
}

#[tokio::test]
async fn a_burst_of_tokens_goes_out_in_a_few_chunks() {
    // The emulators send all 20 events at once (no token latency), each in
    // its own chunk or frame; the gateway sends what it has at hand in one
    // chunk instead of one write per token.
    let h = Harness::start().await;
    let inputs = words(25);
    let body = body(&inputs, 20);
    let want = expected(&inputs, 20);
    for route in ["sm", "hf"] {
        let got = chunks(&h, route, &body).await;
        let text = String::from_utf8(got.concat()).unwrap();
        assert_eq!(data(&parse(&text)), want, "route {route}");
        assert!(got.len() <= 5, "route {route}: {} chunks", got.len());
    }
}

#[tokio::test]
async fn tokens_that_arrive_apart_go_out_apart() {
    let h = harness(CONFIG.to_string()).await;
    h.hf.faults()
        .update(|f| f.token_latency = Duration::from_millis(50));
    let inputs = words(8);
    let got = chunks(&h, "hf", &body(&inputs, 5)).await;
    let text = String::from_utf8(got.concat()).unwrap();
    assert_eq!(data(&parse(&text)), expected(&inputs, 5));
    // One chunk per token; only a stall of the machine longer than the
    // 50 ms between two tokens could let them share one.
    assert!(got.len() >= 4, "a token waited for the next: {got:?}");
}

// === SageMaker's event stream ===

#[tokio::test]
async fn sagemaker_parts_cut_anywhere_give_the_same_events() {
    let h = Harness::start().await;
    let inputs = words(30);
    let body = body(&inputs, 20);
    let want = expected(&inputs, 20);
    for split in [1, 2, 3, 7, 19, 64, 500] {
        h.sm.faults().update(|f| f.stream_split = Some(split));
        let events = stream_ok(&h, "sm", &body, "sm").await;
        assert_eq!(events.len(), want.len(), "split {split}: {events:?}");
        assert_eq!(data(&events), want, "split {split}");
    }
    assert_eq!(h.sm.counters().stream_requests(), 7);
    h.shutdown().await;
}

#[tokio::test]
async fn corrupted_frame_mid_stream_ends_with_an_error_event() {
    let h = Harness::start().await;
    let inputs = words(20);
    let want = expected(&inputs, 20);
    // Without a split, frame i carries event i: frames 0..4 arrive intact.
    h.sm.faults().update(|f| f.corrupt_crc_at = Some(4));
    let events = stream_ok(&h, "sm", &body(&inputs, 20), "sm").await;
    let e = ends_with_error(&events, &want, 4);
    assert_eq!(e["type"], "upstream_protocol_error");
    assert_eq!(e["backend"], "sm");
    assert_eq!(e["route"], "sm");
    assert!(!e["request_id"].as_str().unwrap().is_empty());
    assert_eq!(h.sm.counters().stream_requests(), 1, "never retried");
    h.shutdown().await;
}

#[tokio::test]
async fn corrupted_first_frame_is_retried_before_the_first_byte() {
    let h = Harness::start().await;
    h.sm.faults().update(|f| f.corrupt_crc_at = Some(0));
    let res = open(&h, "sm", &body(&words(5), 5)).await;
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["x-infergate-attempts"], "3");
    let e = error_json(res).await;
    assert_eq!(e["type"], "upstream_error");
    assert!(e["message"].as_str().unwrap().contains("corrupted"), "{e}");
    assert_eq!(h.sm.counters().stream_requests(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn corrupted_first_frame_fails_over_to_hugging_face() {
    let h = harness(both_in_order("sm")).await;
    h.sm.faults().update(|f| f.corrupt_crc_at = Some(0));
    let inputs = words(12);
    let res = open(&h, "both", &body(&inputs, 10)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    let events = parse(&res.text().await.unwrap());
    assert_eq!(events.len(), 10);
    assert_eq!(data(&events), expected(&inputs, 10));
    assert_eq!(h.sm.counters().stream_requests(), 1, "sm was tried first");
    assert_eq!(h.hf.counters().stream_requests(), 1);
    h.shutdown().await;
}

// === mid-stream errors ===

#[tokio::test]
async fn sagemaker_stream_exceptions_become_error_events() {
    let h = Harness::start().await;
    let inputs = words(20);
    let want = expected(&inputs, 20);
    for (kind, type_) in [
        (StreamError::ModelStreamError, "model_stream_error"),
        (
            StreamError::InternalStreamFailure,
            "internal_stream_failure",
        ),
    ] {
        h.sm.faults().update(|f| {
            f.stream_error_after = Some(6);
            f.stream_error = kind;
        });
        let events = stream_ok(&h, "sm", &body(&inputs, 20), "sm").await;
        let e = ends_with_error(&events, &want, 6);
        assert_eq!(e["type"], type_);
        assert_eq!(e["backend"], "sm");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(h.sm.counters().stream_requests(), 2, "never retried");
    h.shutdown().await;
}

#[tokio::test]
async fn hugging_face_error_event_becomes_a_model_error_event() {
    let h = Harness::start().await;
    let inputs = words(20);
    h.hf.faults().update(|f| f.stream_error_after = Some(5));
    let events = stream_ok(&h, "hf", &body(&inputs, 20), "hf").await;
    let e = ends_with_error(&events, &expected(&inputs, 20), 5);
    assert_eq!(e["type"], "model_error");
    assert_eq!(e["backend"], "hf");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Request failed during generation"),
        "{e}"
    );
    assert_eq!(h.hf.counters().stream_requests(), 1, "never retried");
    h.shutdown().await;
}

// === before the first byte: the resilience rules ===

#[tokio::test]
async fn cold_hugging_face_endpoint_is_waited_for() {
    let h = Harness::start().await;
    h.hf.faults()
        .update(|f| f.cold_start = Some(Duration::from_millis(300)));
    let inputs = words(8);
    let res = open(&h, "hf", &body(&inputs, 8)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    let events = parse(&res.text().await.unwrap());
    assert_eq!(data(&events), expected(&inputs, 8));
    assert_eq!(events.len(), 8);
    let seen = h.hf.counters().recent();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].headers.get("x-scale-up-timeout").is_none());
    assert!(
        seen[1].headers.get("x-scale-up-timeout").is_some(),
        "the retry asks the endpoint to hold it while it wakes"
    );
    assert_eq!(h.hf.counters().stream_requests(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn cold_hugging_face_endpoint_fails_over_to_sagemaker() {
    let h = harness(both_in_order("hf")).await;
    h.hf.faults()
        .update(|f| f.cold_start = Some(Duration::from_secs(30)));
    let inputs = words(8);
    let res = open(&h, "both", &body(&inputs, 8)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "sm");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    let events = parse(&res.text().await.unwrap());
    assert_eq!(data(&events), expected(&inputs, 8));
    assert_eq!(h.hf.counters().requests(), 1, "hf was tried first");
    assert_eq!(h.hf.counters().stream_requests(), 0);
    assert_eq!(h.sm.counters().stream_requests(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn unavailable_before_the_first_event_is_retried() {
    let h = Harness::start().await;
    let inputs = words(6);
    h.sm.faults()
        .fail_next(1, InjectedError::ServiceUnavailable);
    h.hf.faults().fail_next(1, InjectedError::Status(503));
    for route in ["sm", "hf"] {
        let res = open(&h, route, &body(&inputs, 6)).await;
        assert_eq!(res.status(), 200, "{route}");
        assert_eq!(res.headers()["x-infergate-attempts"], "2", "{route}");
        let events = parse(&res.text().await.unwrap());
        assert_eq!(data(&events), expected(&inputs, 6), "{route}");
        let emu = emulator(&h, route);
        assert_eq!(emu.counters().requests(), 2, "{route}");
        assert_eq!(emu.counters().errors_injected(), 1, "{route}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn model_error_before_the_stream_is_a_json_4xx() {
    let h = Harness::start().await;
    h.sm.faults().fail_next(
        1,
        InjectedError::ModelError {
            original_status: 400,
        },
    );
    h.hf.faults().fail_next(1, InjectedError::Status(422));
    for (route, status) in [("sm", 400), ("hf", 422)] {
        let res = open(&h, route, &body(&words(6), 6)).await;
        assert_eq!(res.status(), status, "{route}");
        assert_eq!(res.headers()["x-infergate-attempts"], "1", "never retried");
        let e = error_json(res).await;
        assert_eq!(e["type"], "model_error");
        assert_eq!(e["backend"], route);
        assert_eq!(emulator(&h, route).counters().requests(), 1);
    }
    h.shutdown().await;
}

// === the client's side: leaving, reading slowly ===

/// Reads the first event of a slow stream, then goes away.
async fn client_leaves(route: &str) {
    let h = Harness::start().await;
    let emu = emulator(&h, route);
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
    eventually("the upstream stream to be cancelled", || {
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
        let emu = emulator(&h, route);
        eventually("the waiting attempt to be cancelled", || {
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
    let config = CONFIG.replace("max_body_bytes = 1024", "max_body_bytes = 4194304");
    let h = harness(config).await;
    let inputs = big_inputs();
    let want = expected(&inputs, 400);
    assert_eq!(want.len(), 400);
    let raw = read_slowly(&h, route, &inputs, Duration::from_millis(100)).await;
    let events = parse(&raw);
    assert_eq!(events.len(), 400, "only data events");
    assert_eq!(data(&events), want, "every event, intact and in order");
    let last: Value = serde_json::from_str(&data(&events)[399]).unwrap();
    assert_eq!(last["generated_text"], expected_text(&inputs, 400));
    assert_eq!(emulator(&h, route).counters().stream_requests(), 1);
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
    let h = harness(config).await;
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
    let h = harness(config).await;
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
        let emu = emulator(&h, route);
        eventually("the silent upstream stream to be closed", || {
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
    let config = CONFIG.replace("max_body_bytes = 1024", "max_body_bytes = 4194304");
    let config = with_route_keys(&config, "sm", "stream_idle_timeout = \"300ms\"");
    let config = with_route_keys(&config, "hf", "stream_idle_timeout = \"300ms\"");
    let h = harness(config).await;
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

async fn metrics(h: &Harness) -> String {
    h.client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

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
    let mut text = String::new();
    for _ in 0..500 {
        text = metrics(&h).await;
        if want.iter().all(|line| text.lines().any(|l| l == *line)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for line in want {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
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

    let config = aws_sdk_sagemakerruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(h.sm.url())
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .build();
    let client = aws_sdk_sagemakerruntime::Client::from_conf(config);
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
