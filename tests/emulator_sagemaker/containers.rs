//! The model servers behind an endpoint: LMI (generate objects, chat,
//! JSON-lines streams, 424 validation, the mid-stream error line), TEI
//! (embeddings; no streams) and TGI's text completions and `include_usage`.

use std::time::{Duration, Instant};

use crate::client::{aws_error, decode_frames, header, header_of, invoke, start, stream};
use crate::common::model::words;
use infergate::emulator::model;
use infergate::emulator::sagemaker::{ModelFormat, SageMakerOptions};
use infergate::emulator::{EmulatorHandle, FaultConfig};
use serde_json::{json, Value};

async fn start_with(format: ModelFormat) -> EmulatorHandle {
    start(SageMakerOptions {
        format,
        ..SageMakerOptions::default()
    })
    .await
}

/// The payload bytes of a stream answer, after checking every frame is a
/// PayloadPart.
async fn payload(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    let frames = decode_frames(&resp.bytes().await.unwrap()).unwrap();
    for f in &frames {
        assert_eq!(header_of(f, ":message-type"), "event");
        assert_eq!(header_of(f, ":event-type"), "PayloadPart");
    }
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.payload().to_vec()).collect();
    String::from_utf8(bytes).unwrap()
}

/// JSON lines: each line ends with `\n` and none carries SSE's `data:`.
fn json_lines(text: &str) -> Vec<Value> {
    assert!(text.ends_with('\n'), "{text}");
    text.lines()
        .map(|l| {
            assert!(!l.starts_with("data:"), "{l}");
            serde_json::from_str(l).unwrap()
        })
        .collect()
}

/// SSE `data:` payloads, `[DONE]` kept as the string it is.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data:").unwrap().to_owned())
        .collect()
}

/// The container's error body inside a ModelError, after checking the
/// ModelError's parts.
async fn container_error(resp: reqwest::Response, original_status: u16) -> Value {
    let v = aws_error(resp, 424, "ModelError").await;
    assert_eq!(v["OriginalStatusCode"], original_status);
    let original = v["OriginalMessage"].as_str().unwrap();
    let message = v["Message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Received client error ({original_status}) from primary with message \"{original}\""
        )),
        "{message}"
    );
    serde_json::from_str(original).unwrap()
}

// === LMI ===

#[tokio::test]
async fn lmi_generate_answers_an_object() {
    let emu = start_with(ModelFormat::Lmi).await;
    let resp = invoke(r#"{"inputs":"one two three","parameters":{"max_new_tokens":2}}"#)
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"generated_text": "three two"})
    );
    let body = r#"{"inputs":"one two three","parameters":{"max_new_tokens":2,"details":true}}"#;
    let v: Value = invoke(body).send(&emu).await.json().await.unwrap();
    assert_eq!(
        v,
        json!({
            "generated_text": "three two",
            "details": {"finish_reason": "length", "generated_tokens": 2, "inputs": "one two three"},
        })
    );
}

#[tokio::test]
async fn lmi_generate_stream_is_json_lines_in_payload_parts() {
    let emu = start_with(ModelFormat::Lmi).await;
    let body = r#"{"inputs":"one two three","stream":true}"#;
    let resp = stream(body).send(&emu).await;
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-content-type").as_deref(),
        Some("application/jsonlines")
    );
    let text = payload(resp).await;
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 3);
    for (line, token) in lines.iter().zip(["three", " two", " one"]) {
        assert_eq!(line["token"]["text"], token);
        assert_eq!(line["token"]["id"], model::token_id(token));
        assert_eq!(line["token"]["log_prob"], model::token_logprob(token));
        assert!(line["token"].get("logprob").is_none());
    }
    assert_eq!(lines[0]["generated_text"], Value::Null);
    assert_eq!(lines[1]["details"], Value::Null);
    assert_eq!(lines[2]["generated_text"], "three two one");
    assert_eq!(
        lines[2]["details"],
        json!({"finish_reason": "eos_token", "generated_tokens": 3, "inputs": "one two three"})
    );
    assert_eq!(emu.counters().stream_requests(), 1);

    // On the buffered route SageMaker hands back the whole JSON lines.
    let resp = invoke(body).send(&emu).await;
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/jsonlines")
    );
    assert_eq!(resp.text().await.unwrap(), text);

    // Without "stream": true the stream route carries the JSON, in one part.
    let resp = stream(r#"{"inputs":"a b"}"#).send(&emu).await;
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(payload(resp).await, r#"{"generated_text":"b a"}"#);
}

#[tokio::test]
async fn lmi_json_lines_split_into_random_parts_reassemble_exactly() {
    let emu = start_with(ModelFormat::Lmi).await;
    let body = format!(r#"{{"inputs":"{}","stream":true}}"#, words(12));
    let whole = stream(body.clone()).send(&emu).await.bytes().await.unwrap();
    let unsplit: Vec<u8> = decode_frames(&whole)
        .unwrap()
        .iter()
        .flat_map(|f| f.payload().to_vec())
        .collect();
    assert_eq!(json_lines(std::str::from_utf8(&unsplit).unwrap()).len(), 12);

    emu.faults().update(|f| f.stream_split = Some(7));
    let split = stream(body).send(&emu).await.bytes().await.unwrap();
    let frames = decode_frames(&split).unwrap();
    assert!(frames.len() > unsplit.len() / 7, "{}", frames.len());
    assert!(frames.iter().all(|f| (1..=7).contains(&f.payload().len())));
    let joined: Vec<u8> = frames.iter().flat_map(|f| f.payload().to_vec()).collect();
    assert_eq!(joined, unsplit);
}

#[tokio::test]
async fn lmi_chat_plain_and_streamed() {
    let emu = start_with(ModelFormat::Lmi).await;
    let chat = r#"{"messages":[{"role":"user","content":"x y z"}],"max_tokens":2}"#;
    let v: Value = invoke(chat).send(&emu).await.json().await.unwrap();
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-") && id.len() == 25, "{id}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "lmi");
    assert_eq!(
        v["choices"],
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": "z y"},
            "logprobs": null,
            "finish_reason": "length",
        }])
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    );

    let body = r#"{"messages":[{"role":"user","content":"a b c"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let resp = stream(body).send(&emu).await;
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-content-type").as_deref(),
        Some("application/jsonlines")
    );
    let text = payload(resp).await;
    assert!(!text.contains("[DONE]"), "{text}");
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 3);
    let id = lines[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"), "{id}");
    assert!(lines
        .iter()
        .all(|l| l["id"] == id && l["object"] == "chat.completion.chunk" && l["model"] == "lmi"));
    assert_eq!(
        lines[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "c"})
    );
    assert_eq!(lines[1]["choices"][0]["delta"], json!({"content": " b"}));
    assert_eq!(lines[1]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(lines[2]["choices"][0]["finish_reason"], "stop");
    assert!(lines[1].get("usage").is_none());
    assert_eq!(lines[2]["usage"]["total_tokens"], 6);

    // Without include_usage no line carries usage.
    let body = r#"{"messages":[{"role":"user","content":"a b"}],"stream":true}"#;
    let lines = json_lines(&payload(stream(body).send(&emu).await).await);
    assert!(lines.iter().all(|l| l.get("usage").is_none()));
}

#[tokio::test]
async fn lmi_validation_is_a_model_error_with_original_status_424() {
    let emu = start_with(ModelFormat::Lmi).await;
    for body in [
        "not json",
        r#"{"prompt":"a"}"#,
        r#"{"parameters":{}}"#,
        r#"{"inputs":""}"#,
        r#"{"inputs":"a","parameters":{"max_new_tokens":0}}"#,
        r#"{"inputs":"a","parameters":{"max_new_tokens":-1}}"#,
        r#"{"messages":[]}"#,
        r#"{"messages":[{"role":"user","content":"a"}],"max_tokens":0}"#,
    ] {
        let v = container_error(invoke(body).send(&emu).await, 424).await;
        assert_eq!(v["code"], 424, "{body}");
        assert!(v["error"].is_string(), "{body}: {v}");
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    }
    // The stream route refuses the same way, before any stream starts.
    let v = container_error(
        stream(r#"{"prompt":"a","stream":true}"#).send(&emu).await,
        424,
    )
    .await;
    assert_eq!(v["code"], 424);
    assert_eq!(emu.counters().stream_requests(), 0);
}

#[tokio::test]
async fn lmi_mid_stream_error_is_a_last_line_not_an_exception() {
    let emu = start(SageMakerOptions {
        format: ModelFormat::Lmi,
        faults: FaultConfig {
            stream_error_after: Some(2),
            ..FaultConfig::default()
        },
        ..SageMakerOptions::default()
    })
    .await;
    let lines = json_lines(
        &payload(
            stream(r#"{"inputs":"a b c d","stream":true}"#)
                .send(&emu)
                .await,
        )
        .await,
    );
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["token"]["text"], " c");
    assert_eq!(
        lines[2],
        json!({
            "token": {"id": -1, "text": "", "log_prob": -1.0},
            "generated_text": null,
            "details": {"finish_reason": "error", "generated_tokens": 2, "inputs": "a b c d"},
        })
    );

    let body = r#"{"messages":[{"role":"user","content":"a b c d"}],"stream":true}"#;
    let lines = json_lines(&payload(stream(body).send(&emu).await).await);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["object"], "chat.completion.chunk");
    assert_eq!(lines[2]["choices"][0]["finish_reason"], "error");
    assert!(!lines[2]["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap()
        .is_empty());

    // A generation no longer than the threshold completes normally.
    let lines =
        json_lines(&payload(stream(r#"{"inputs":"a b","stream":true}"#).send(&emu).await).await);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["details"]["finish_reason"], "eos_token");
}

// === TEI ===

#[tokio::test]
async fn tei_embeds_single_and_batch_inputs() {
    let emu = start_with(ModelFormat::Tei).await;
    let resp = invoke(r#"{"inputs":"the quick fox"}"#).send(&emu).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    let v: Vec<Vec<f32>> = resp.json().await.unwrap();
    assert_eq!(v, vec![model::embed("the quick fox", true)]);
    assert_eq!(v[0].len(), model::EMBEDDING_DIM);

    // Embeddings are not paced by token_latency.
    emu.faults()
        .update(|f| f.token_latency = Duration::from_secs(2));
    let t = Instant::now();
    let v: Vec<Vec<f32>> = invoke(r#"{"inputs":["a b","c"],"normalize":false}"#)
        .send(&emu)
        .await
        .json()
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(
        v,
        vec![model::embed("a b", false), model::embed("c", false)]
    );
}

#[tokio::test]
async fn tei_validation_is_a_model_error_with_original_status_413() {
    let emu = start_with(ModelFormat::Tei).await;
    let too_many = json!({ "inputs": vec!["w"; model::MAX_CLIENT_BATCH_SIZE + 1] }).to_string();
    for (body, needle) in [
        (r#"{"inputs":[]}"#, "cannot be empty"),
        (r#"{"inputs":""}"#, "cannot be empty"),
        (r#"{"inputs":7}"#, "inputs"),
        (r#"{"text":"a"}"#, "missing field `inputs`"),
        (r#"{"inputs":"a","normalize":"no"}"#, "normalize"),
        ("not json", "JSON"),
        (&too_many, "batch size 33 > maximum allowed batch size 32"),
    ] {
        let v = container_error(invoke(body).send(&emu).await, 413).await;
        assert_eq!(v["error_type"], "Validation", "{body}");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(needle), "{body}: {error}");
    }
}

#[tokio::test]
async fn tei_stream_is_refused() {
    let emu = start_with(ModelFormat::Tei).await;
    let v = aws_error(
        stream(r#"{"inputs":"a"}"#).send(&emu).await,
        400,
        "ValidationError",
    )
    .await;
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("does not support response streaming"));
    assert_eq!(emu.counters().stream_requests(), 0);
}

// === TGI ===

#[tokio::test]
async fn tgi_completions_plain_and_streamed() {
    let emu = start_with(ModelFormat::Tgi).await;
    for body in [
        r#"{"prompt":"one two three","max_tokens":2}"#,
        r#"{"prompt":["one two three"],"max_tokens":2}"#,
    ] {
        let v: Value = invoke(body).send(&emu).await.json().await.unwrap();
        assert_eq!(v["object"], "text_completion", "{body}");
        assert_eq!(v["id"], "");
        assert_eq!(v["model"], model::DEFAULT_MODEL_ID);
        assert!(v["created"].is_u64() && v["system_fingerprint"].is_string());
        assert_eq!(
            v["choices"],
            json!([{"index": 0, "text": "three two", "logprobs": null, "finish_reason": "length"}])
        );
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
        );
    }
    let v = container_error(invoke(r#"{"prompt":""}"#).send(&emu).await, 400).await;
    assert!(v["message"].as_str().unwrap().contains("cannot be empty"));

    let resp = stream(r#"{"prompt":"a b","stream":true}"#).send(&emu).await;
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-content-type").as_deref(),
        Some("text/event-stream")
    );
    let data = sse_data(&payload(resp).await);
    assert_eq!(data.len(), 3);
    assert_eq!(data[2], "[DONE]");
    let chunks: Vec<Value> = data[..2]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for (chunk, text) in chunks.iter().zip(["b", " a"]) {
        assert_eq!(chunk["object"], "text_completion");
        assert_eq!(chunk["id"], "");
        assert_eq!(chunk["choices"][0]["text"], text);
        assert_eq!(chunk["choices"][0]["logprobs"], Value::Null);
    }
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn tgi_chat_stream_include_usage() {
    let emu = start_with(ModelFormat::Tgi).await;
    let body = r#"{"messages":[{"role":"user","content":"a b c"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let data = sse_data(&payload(stream(body).send(&emu).await).await);
    assert_eq!(data.len(), 4);
    assert_eq!(data[3], "[DONE]");
    let chunks: Vec<Value> = data[..3]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["id"] == ""));
    assert_eq!(chunks[0]["usage"], Value::Null);
    assert_eq!(chunks[1]["usage"], Value::Null);
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        chunks[2]["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );

    // Without it the last chunk's usage stays null.
    let body = r#"{"messages":[{"role":"user","content":"a b c"}],"stream":true}"#;
    let data = sse_data(&payload(stream(body).send(&emu).await).await);
    let last: Value = serde_json::from_str(&data[2]).unwrap();
    assert_eq!(last["usage"], Value::Null);
}
