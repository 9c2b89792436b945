//! The Hugging Face endpoint emulator over real loopback sockets: every TGI
//! route (OpenAI's and `/invocations` included), every TEI route (embeddings,
//! float and base64), the bearer token, TGI and TEI error bodies, SSE streams
//! and mid-stream errors, scale-to-zero with and without
//! `X-Scale-Up-Timeout`, resets, latency, counters and the request log. The
//! TEI container's tests are in [`tei`].

#[cfg(test)]
mod common;
#[cfg(test)]
#[path = "emulator_huggingface/tei.rs"]
mod tei;

use std::time::{Duration, Instant};

use client::{get, header, post, sse_data, start, start_default, tgi_error};
use common::model::expected_sse;
use common::net::is_reset;
use common::{wait_for, wait_until};

use infergate::emulator::huggingface::{self, HuggingFaceOptions};
use infergate::emulator::{model, FaultConfig, InjectedError, ScaleState, RECENT_CAPACITY};
use serde_json::{json, Value};

/// Requests to the emulator and what its answers carry.
#[cfg(test)]
mod client {
    use infergate::emulator::huggingface::{self, HuggingFaceOptions};
    use infergate::emulator::EmulatorHandle;
    use serde_json::Value;

    pub async fn start(opts: HuggingFaceOptions) -> EmulatorHandle {
        huggingface::start("127.0.0.1:0".parse().unwrap(), opts)
            .await
            .unwrap()
    }

    pub async fn start_default() -> EmulatorHandle {
        start(HuggingFaceOptions::default()).await
    }

    pub fn post(emu: &EmulatorHandle, path: &str, body: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(format!("{}{path}", emu.url()))
            .header("content-type", "application/json")
            .body(body.to_owned())
    }

    pub fn get(emu: &EmulatorHandle, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().get(format!("{}{path}", emu.url()))
    }

    pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    pub async fn tgi_error(resp: reqwest::Response, status: u16, error_type: &str) -> String {
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(
            header(&resp, "content-type").as_deref(),
            Some("application/json")
        );
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error_type"], error_type, "{v}");
        v["error"].as_str().unwrap().to_owned()
    }

    pub fn sse_data(text: &str) -> Vec<String> {
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data:").unwrap().to_owned())
            .collect()
    }
}

// === routes ===

#[tokio::test]
async fn generate_and_compat_routes() {
    let emu = start_default().await;
    let body = r#"{"inputs":"one two three","parameters":{"max_new_tokens":2}}"#;
    let resp = post(&emu, "/generate", body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-compute-type").as_deref(),
        Some("gpu+optimized")
    );
    assert_eq!(header(&resp, "x-generated-tokens").as_deref(), Some("2"));
    assert_eq!(header(&resp, "x-prompt-tokens").as_deref(), Some("3"));
    for h in [
        "x-compute-time",
        "x-total-time",
        "x-inference-time",
        "x-queue-time",
        "x-validation-time",
    ] {
        assert!(header(&resp, h).is_some(), "{h}");
    }
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"generated_text": "three two"})
    );

    // The compat route answers a list, like TGI's.
    let v: Value = post(&emu, "/", body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!([{"generated_text": "three two"}]));

    let v: Value = post(
        &emu,
        "/generate",
        r#"{"inputs":"a b c","parameters":{"details":true,"max_new_tokens":2}}"#,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["details"]["finish_reason"], "length");
    assert_eq!(v["details"]["generated_tokens"], 2);
    assert_eq!(emu.counters().requests(), 3);
    assert_eq!(emu.counters().stream_requests(), 0);
}

#[tokio::test]
async fn generate_stream_sends_tgi_sse_events() {
    let emu = start_default().await;
    let resp = post(&emu, "/generate_stream", r#"{"inputs":"one two three"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(
        header(&resp, "x-compute-type").as_deref(),
        Some("gpu+optimized")
    );
    let text = resp.text().await.unwrap();
    assert_eq!(text, expected_sse("one two three", None));
    let events: Vec<Value> = sse_data(&text)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["index"], 0);
    assert_eq!(events[0]["token"]["text"], "three");
    assert_eq!(events[0]["token"]["special"], false);
    assert!(events[0]["token"]["id"].is_u64() && events[0]["token"]["logprob"].is_f64());
    assert_eq!(events[0]["generated_text"], Value::Null);
    assert_eq!(events[2]["generated_text"], "three two one");

    // Compat route with "stream": true streams too.
    let text = post(&emu, "/", r#"{"inputs":"a b","stream":true}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, expected_sse("a b", None));
    assert_eq!(emu.counters().stream_requests(), 2);
}

#[tokio::test]
async fn chat_completions_plain_and_streamed() {
    let emu = start(HuggingFaceOptions {
        model_id: "org/model".to_owned(),
        ..HuggingFaceOptions::default()
    })
    .await;
    let body = r#"{"model":"tgi","messages":[{"role":"system","content":"s"},{"role":"user","content":"x y z"}],"max_tokens":2}"#;
    let v: Value = post(&emu, "/v1/chat/completions", body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "org/model");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "z y"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);

    let body = r#"{"messages":[{"role":"user","content":"a b"}],"stream":true}"#;
    let resp = post(&emu, "/v1/chat/completions", body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/event-stream")
    );
    let data = sse_data(&resp.text().await.unwrap());
    assert_eq!(data.len(), 3);
    assert_eq!(data[2], "[DONE]");
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    let last: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["content"], "b");
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(last["choices"][0]["delta"]["content"], " a");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn health_info_and_unknown_routes() {
    let emu = start_default().await;
    let resp = get(&emu, "/health").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
    let info: Value = get(&emu, "/info")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["model_id"], model::DEFAULT_MODEL_ID);
    assert_eq!(info["model_pipeline_tag"], "text-generation");
    assert_eq!(get(&emu, "/generate").send().await.unwrap().status(), 405);
    assert_eq!(
        post(&emu, "/nope", "{}").send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn invalid_inputs_are_422_validation() {
    let emu = start_default().await;
    for (path, body, needle) in [
        (
            "/generate",
            r#"{"parameters":{}}"#,
            "missing field `inputs`",
        ),
        ("/generate", "not json", "JSON"),
        ("/generate", r#"{"inputs":""}"#, "cannot be empty"),
        (
            "/generate_stream",
            r#"{"inputs":"a","parameters":{"max_new_tokens":0}}"#,
            "strictly positive",
        ),
        ("/", r#"{"inputs":7}"#, "expected a string"),
        (
            "/v1/chat/completions",
            r#"{"model":"tgi"}"#,
            "missing field `messages`",
        ),
    ] {
        let msg = tgi_error(
            post(&emu, path, body).send().await.unwrap(),
            422,
            "validation",
        )
        .await;
        assert!(msg.contains(needle), "{path} {body}: {msg}");
    }
    let big = "x".repeat(huggingface::MAX_BODY_BYTES + 1);
    tgi_error(
        post(&emu, "/generate", &big).send().await.unwrap(),
        413,
        "validation",
    )
    .await;
    assert_eq!(emu.counters().stream_requests(), 0);
}

#[tokio::test]
async fn completions_models_and_invocations() {
    let emu = start(HuggingFaceOptions {
        model_id: "org/model".to_owned(),
        ..HuggingFaceOptions::default()
    })
    .await;
    let body = r#"{"prompt":"one two three","max_tokens":2}"#;
    let resp = post(&emu, "/v1/completions", body).send().await.unwrap();
    assert_eq!(header(&resp, "x-generated-tokens").as_deref(), Some("2"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (&v["object"], &v["id"]),
        (&json!("text_completion"), &json!(""))
    );
    assert_eq!(v["model"], "org/model");
    assert_eq!(
        v["choices"],
        json!([{"index": 0, "text": "three two", "logprobs": null, "finish_reason": "length"}])
    );
    assert_eq!(v["usage"]["total_tokens"], 5);

    let body = r#"{"prompt":["a b"],"stream":true}"#;
    let resp = post(&emu, "/v1/completions", body).send().await.unwrap();
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    assert!(!text.contains("data: "), "{text}");
    let data = sse_data(&text);
    assert_eq!(data.len(), 3);
    assert_eq!(data[2], "[DONE]");
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    let last: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], "b");
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(last["choices"][0]["finish_reason"], "stop");

    let v: Value = get(&emu, "/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"object": "list", "data": [
            {"id": "org/model", "object": "model", "created": 0, "owned_by": "org/model"}
        ]})
    );

    // /invocations reads the task from the body, as on SageMaker.
    let hf = &emu;
    let invoke = |body: &'static str| async move {
        let resp = post(hf, "/invocations", body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{body}");
        resp.text().await.unwrap()
    };
    let generated: Value = serde_json::from_str(&invoke(r#"{"inputs":"a b"}"#).await).unwrap();
    assert_eq!(generated, json!([{"generated_text": "b a"}]));
    let completion: Value = serde_json::from_str(&invoke(r#"{"prompt":"a b"}"#).await).unwrap();
    assert_eq!(completion["choices"][0]["text"], "b a");
    let chat = r#"{"messages":[{"role":"user","content":"a b"}]}"#;
    let chat: Value = serde_json::from_str(&invoke(chat).await).unwrap();
    assert_eq!(chat["object"], "chat.completion");
    let streamed = invoke(r#"{"inputs":"a b","stream":true}"#).await;
    assert_eq!(streamed, expected_sse("a b", None));
    assert_eq!(emu.counters().stream_requests(), 2);

    for (path, status) in [("/invocations", 405), ("/v1/completions", 405)] {
        assert_eq!(get(&emu, path).send().await.unwrap().status(), status);
    }
    assert_eq!(
        post(&emu, "/v1/models", "").send().await.unwrap().status(),
        405
    );
    let resp = post(&emu, "/v1/completions", r#"{"prompt":""}"#)
        .send()
        .await
        .unwrap();
    assert!(tgi_error(resp, 422, "validation")
        .await
        .contains("cannot be empty"));
}

#[tokio::test]
async fn chat_stream_include_usage() {
    let emu = start_default().await;
    let body = r#"{"messages":[{"role":"user","content":"a b c"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let text = post(&emu, "/v1/chat/completions", body)
        .send()
        .await
        .unwrap()
        .text()
        .await;
    let data = sse_data(&text.unwrap());
    assert_eq!(data.len(), 4);
    assert_eq!(data[3], "[DONE]");
    let chunks: Vec<Value> = data[..3]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["id"] == ""));
    assert_eq!(chunks[1]["usage"], Value::Null);
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        chunks[2]["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );
}

// === token ===

#[tokio::test]
async fn bearer_token_is_required_when_set() {
    let emu = start(HuggingFaceOptions {
        token: Some("hf_secret_token".to_owned()),
        ..HuggingFaceOptions::default()
    })
    .await;
    let body = r#"{"inputs":"a"}"#;
    let resp = post(&emu, "/generate", body).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).unwrap()["error"].is_string());

    let resp = post(&emu, "/generate", body)
        .bearer_auth("hf_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("hf_secret_token") && !text.contains("hf_wrong"),
        "{text}"
    );

    assert_eq!(get(&emu, "/health").send().await.unwrap().status(), 401);
    let resp = post(&emu, "/generate", body)
        .bearer_auth("hf_secret_token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(emu.counters().auth_rejections(), 3);

    emu.set_token(None);
    assert_eq!(
        post(&emu, "/generate", body).send().await.unwrap().status(),
        200
    );
}

// === faults ===

#[tokio::test]
async fn injected_statuses_have_tgi_bodies() {
    let emu = start_default().await;
    for (error, status, error_type) in [
        (InjectedError::Status(424), 424, "generation"),
        (InjectedError::Status(429), 429, "overloaded"),
        (InjectedError::Status(422), 422, "validation"),
        (InjectedError::Status(500), 500, "incomplete_generation"),
        (InjectedError::Status(503), 503, "unavailable"),
        (InjectedError::ThrottlingException, 429, "overloaded"),
        (
            InjectedError::ModelError {
                original_status: 400,
            },
            424,
            "generation",
        ),
    ] {
        emu.faults().fail_next(1, error);
        // Health is not an inference route: it never consumes the budget.
        assert_eq!(get(&emu, "/health").send().await.unwrap().status(), 200);
        tgi_error(
            post(&emu, "/generate", r#"{"inputs":"a"}"#)
                .send()
                .await
                .unwrap(),
            status,
            error_type,
        )
        .await;
    }
    assert_eq!(emu.counters().errors_injected(), 7);
    assert_eq!(
        post(&emu, "/generate", r#"{"inputs":"a"}"#)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn mid_stream_error_event() {
    let emu = start(HuggingFaceOptions {
        faults: FaultConfig {
            stream_error_after: Some(1),
            ..FaultConfig::default()
        },
        ..HuggingFaceOptions::default()
    })
    .await;
    let resp = post(&emu, "/generate_stream", r#"{"inputs":"a b c"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let data = sse_data(&resp.text().await.unwrap());
    assert_eq!(data.len(), 2);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["token"]["text"], "c");
    let err: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(err["error_type"], "generation");
    assert!(err["error"].is_string());

    // A generation no longer than the threshold completes normally.
    let text = post(&emu, "/generate_stream", r#"{"inputs":"a"}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, expected_sse("a", None));
}

#[tokio::test]
async fn resets_latency_and_token_latency() {
    let emu = start_default().await;
    emu.faults().update(|f| f.reset_next = 1);
    let err = post(&emu, "/generate", r#"{"inputs":"a"}"#)
        .send()
        .await
        .unwrap_err();
    assert!(is_reset(&err), "{err:?}");
    assert_eq!(emu.counters().resets_injected(), 1);

    emu.faults().set(FaultConfig {
        latency: Duration::from_millis(50),
        token_latency: Duration::from_millis(10),
        ..FaultConfig::default()
    });
    let t = Instant::now();
    let resp = post(&emu, "/generate", r#"{"inputs":"a b c"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(80));
    let inference: u64 = header(&resp, "x-inference-time").unwrap().parse().unwrap();
    assert!(inference >= 30, "{inference}");
}

#[tokio::test]
async fn cold_start_answers_503_until_the_replica_is_ready() {
    let emu = start(HuggingFaceOptions {
        faults: FaultConfig {
            cold_start: Some(Duration::from_millis(400)),
            ..FaultConfig::default()
        },
        ..HuggingFaceOptions::default()
    })
    .await;
    assert_eq!(emu.faults().scale_state(), ScaleState::ScaledToZero);
    let body = r#"{"inputs":"a"}"#;
    tgi_error(
        post(&emu, "/generate", body).send().await.unwrap(),
        503,
        "unavailable",
    )
    .await;
    assert!(matches!(
        emu.faults().scale_state(),
        ScaleState::Initializing { .. }
    ));
    assert_eq!(get(&emu, "/health").send().await.unwrap().status(), 503);

    // X-Scale-Up-Timeout holds the request until the replica is up.
    let resp = post(&emu, "/generate", body)
        .header("x-scale-up-timeout", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(emu.faults().scale_state(), ScaleState::Ready);
    assert_eq!(
        post(&emu, "/generate", body).send().await.unwrap().status(),
        200
    );

    // Back to sleep: 503 again.
    emu.faults().scale_to_zero();
    assert_eq!(emu.faults().scale_state(), ScaleState::ScaledToZero);
    tgi_error(
        post(&emu, "/generate", body).send().await.unwrap(),
        503,
        "unavailable",
    )
    .await;

    // A hold shorter than the start-up still ends in 503, after the hold.
    emu.faults()
        .update(|f| f.cold_start = Some(Duration::from_secs(30)));
    assert_eq!(emu.faults().scale_state(), ScaleState::ScaledToZero);
    let t = Instant::now();
    let resp = post(&emu, "/generate", body)
        .header("x-scale-up-timeout", "0.05")
        .send()
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(50));
    tgi_error(resp, 503, "unavailable").await;
}

#[tokio::test]
async fn cold_start_then_success_without_holding() {
    let emu = start_default().await;
    emu.faults()
        .update(|f| f.cold_start = Some(Duration::from_millis(50)));
    let body = r#"{"inputs":"a"}"#;
    assert_eq!(
        post(&emu, "/generate", body).send().await.unwrap().status(),
        503
    );
    // Poll, as a client without X-Scale-Up-Timeout would.
    wait_until("the replica to be ready", || async {
        let status = post(&emu, "/generate", body).send().await.unwrap().status();
        assert!(status == 200 || status == 503, "{status}");
        status == 200
    })
    .await;
}

// === counters ===

#[tokio::test]
async fn cancelled_streams_and_in_flight() {
    let emu = start(HuggingFaceOptions {
        faults: FaultConfig {
            token_latency: Duration::from_millis(50),
            ..FaultConfig::default()
        },
        ..HuggingFaceOptions::default()
    })
    .await;
    let mut resp = post(
        &emu,
        "/generate_stream",
        r#"{"inputs":"a b c d e f g h i j k l m n o p q r s t"}"#,
    )
    .send()
    .await
    .unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    assert_eq!(emu.counters().in_flight(), 1);
    drop(resp);
    wait_for("cancelled", || emu.counters().cancelled() == 1).await;
    assert_eq!(emu.counters().in_flight(), 0);

    // Two concurrent held requests raise max_in_flight to 2.
    emu.counters().reset();
    emu.faults().set(FaultConfig {
        latency: Duration::from_millis(250),
        ..FaultConfig::default()
    });
    let (a, b) = tokio::join!(
        post(&emu, "/generate", r#"{"inputs":"a"}"#).send(),
        post(&emu, "/generate", r#"{"inputs":"b"}"#).send()
    );
    assert_eq!(a.unwrap().status(), 200);
    assert_eq!(b.unwrap().status(), 200);
    assert_eq!(emu.counters().max_in_flight(), 2);
    assert_eq!(emu.counters().cancelled(), 0);
}

#[tokio::test]
async fn recent_keeps_the_last_requests() {
    let emu = start_default().await;
    let client = reqwest::Client::new();
    for i in 0..RECENT_CAPACITY + 6 {
        let resp = client
            .post(format!("{}/generate?n={i}", emu.url()))
            .header("x-test", i.to_string())
            .body(format!(r#"{{"inputs":"w{i}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let recent = emu.counters().recent();
    assert_eq!(recent.len(), RECENT_CAPACITY);
    assert_eq!(recent[0].query.as_deref(), Some("n=6"));
    let last = emu.counters().last().unwrap();
    assert_eq!(last.path, "/generate");
    assert_eq!(last.headers["x-test"], (RECENT_CAPACITY + 5).to_string());
    assert_eq!(
        &last.body[..],
        format!(r#"{{"inputs":"w{}"}}"#, RECENT_CAPACITY + 5).as_bytes()
    );
    assert_eq!(emu.counters().requests(), RECENT_CAPACITY as u64 + 6);
}

#[tokio::test]
async fn control_routes_and_scale_to_zero_over_http() {
    let emu = start_default().await;
    let client = reqwest::Client::new();
    let put = client
        .put(format!("{}/_emulator/faults", emu.url()))
        .body(r#"{"cold_start":"10s","error":{"Status":429}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(emu.faults().get().error, InjectedError::Status(429));
    assert_eq!(emu.faults().scale_state(), ScaleState::ScaledToZero);
    assert_eq!(
        post(&emu, "/generate", r#"{"inputs":"a"}"#)
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let bad = client
        .put(format!("{}/_emulator/faults", emu.url()))
        .body(r#"{"unknown":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let c: Value = client
        .get(format!("{}/_emulator/counters", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["requests"], 1);
    assert_eq!(
        emu.counters().requests(),
        1,
        "control routes are not counted"
    );
}
