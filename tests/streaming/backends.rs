//! Both backends relay the same events; SageMaker's event stream cut
//! anywhere or corrupted; mid-stream errors; the resilience rules before
//! the first byte.

use std::time::Duration;

use crate::common::model::words;
use crate::common::{error_json, Harness, CONFIG};
use crate::sse::{
    body, both_in_order, data, ends_with_error, expected, expected_text, open, parse, stream_ok,
};
use infergate::emulator::{InjectedError, StreamError};
use serde_json::Value;

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
    let h = Harness::with_config(CONFIG.to_string()).await;
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
    let h = Harness::with_config(both_in_order("sm")).await;
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
    let h = Harness::with_config(both_in_order("hf")).await;
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
        let emu = h.emulator(route);
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
        assert_eq!(h.emulator(route).counters().requests(), 1);
    }
    h.shutdown().await;
}
