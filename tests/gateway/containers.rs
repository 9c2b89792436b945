//! Each container mode of each emulator behind each door: TGI on both
//! backend kinds, LMI and JumpStart on SageMaker, TEI on both. The same
//! request gets the same answer, chunk by chunk, whichever served it; LMI's
//! JSON lines split mid-JSON across PayloadParts are reassembled; LMI's
//! failures (its 424, its `finish_reason: "error"` line) reach each door
//! in the door's shape.

use infergate::emulator::{
    self, EmulatorHandle, FaultConfig, HuggingFaceContainer, HuggingFaceOptions, ModelFormat,
};
use serde_json::{json, Value};

use crate::common::model::data_events;
use crate::common::{hf_options, sm_options, Harness, Setup, CONFIG};

const KEY: &str = "containers-key-canary-5d21";

/// The default harness plus an LMI and a TEI SageMaker endpoint and a TEI
/// HF endpoint, with routes over each.
struct Containers {
    h: Harness,
    lmi: EmulatorHandle,
    _sm_tei: EmulatorHandle,
    _hf_tei: EmulatorHandle,
}

async fn start() -> Containers {
    let loopback = ([127, 0, 0, 1], 0).into();
    let lmi = emulator::sagemaker::start(loopback, sm_options(ModelFormat::Lmi))
        .await
        .unwrap();
    let sm_tei = emulator::sagemaker::start(loopback, sm_options(ModelFormat::Tei))
        .await
        .unwrap();
    let hf_tei = emulator::huggingface::start(
        loopback,
        HuggingFaceOptions {
            container: HuggingFaceContainer::Tei,
            ..hf_options()
        },
    )
    .await
    .unwrap();
    let config = format!(
        r#"{CONFIG}
[backends.lmi]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "${{LMI_URL}}"
container = "lmi"

[backends.sm-tei]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "${{SM_TEI_URL}}"
container = "tei"

[backends.hf-tei]
kind = "huggingface"
url = "${{HF_TEI_URL}}"
token = "${{HF_TOKEN}}"
container = "tei"

[backends.toolkit]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "${{SM_URL}}"
container = "hf-toolkit"

[routes.lmi]
backends = ["lmi"]

[routes.toolkit]
backends = ["toolkit"]

[routes.sm-tei]
backends = ["sm-tei"]

[routes.hf-tei]
backends = ["hf-tei"]

[clients.app]
api_key = "{KEY}"
"#
    );
    let h = Harness::with(Setup {
        config,
        extra_vars: vec![
            ("LMI_URL".into(), lmi.url()),
            ("SM_TEI_URL".into(), sm_tei.url()),
            ("HF_TEI_URL".into(), hf_tei.url()),
        ],
        ..Setup::default()
    })
    .await;
    Containers {
        h,
        lmi,
        _sm_tei: sm_tei,
        _hf_tei: hf_tei,
    }
}

const PROMPT: &str = "one stable inference URL";
const ANSWER: &str = "URL inference stable";

async fn json(res: reqwest::Response) -> Value {
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The chunks of an OpenAI stream, without `[DONE]` (which must end it).
async fn chunks(res: reqwest::Response) -> Vec<Value> {
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let mut events = data_events(&text);
    assert_eq!(events.pop().as_deref(), Some("[DONE]"), "{text}");
    events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// The text each chunk carries, chat or completion.
fn texts(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| {
            let choice = c["choices"].get(0)?;
            let text = choice["delta"]["content"]
                .as_str()
                .or(choice["text"].as_str());
            text.map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn chat_is_the_same_from_tgi_and_lmi_whole_and_chunk_by_chunk() {
    let c = start().await;
    let body = |model: &str, stream: bool| {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": PROMPT}],
               "max_tokens": 3, "stream": stream});
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    };
    let mut streams = Vec::new();
    for route in ["sm", "hf", "lmi"] {
        let v = json(
            c.h.post_json("/v1/chat/completions", KEY, &body(route, false))
                .await,
        )
        .await;
        assert_eq!(
            v["choices"][0]["message"]["content"], ANSWER,
            "{route}: {v}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "length", "{route}");
        assert_eq!(v["model"], route);
        let got = chunks(
            c.h.post_json("/v1/chat/completions", KEY, &body(route, true))
                .await,
        )
        .await;
        let usage = got.last().unwrap();
        assert_eq!(usage["choices"], json!([]), "{route}");
        assert_eq!(usage["usage"]["completion_tokens"], 3, "{route}: {usage}");
        assert_eq!(
            got[0]["choices"][0]["delta"]["role"], "assistant",
            "{route}"
        );
        streams.push(texts(&got));
    }
    assert_eq!(streams[0], ["URL", " inference", " stable"]);
    assert!(streams.iter().all(|s| *s == streams[0]), "{streams:?}");
    c.h.shutdown().await;
}

#[tokio::test]
async fn completions_are_the_same_from_every_text_container() {
    let c = start().await;
    let body = |model: &str, stream: bool| json!({"model": model, "prompt": PROMPT, "max_tokens": 3, "stream": stream});
    for route in ["sm", "hf", "lmi", "js"] {
        let v = json(
            c.h.post_json("/v1/completions", KEY, &body(route, false))
                .await,
        )
        .await;
        assert_eq!(v["object"], "text_completion", "{route}");
        assert_eq!(v["choices"][0]["text"], ANSWER, "{route}: {v}");
        assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    }
    let mut streams = Vec::new();
    for route in ["sm", "hf", "lmi"] {
        let got = chunks(
            c.h.post_json("/v1/completions", KEY, &body(route, true))
                .await,
        )
        .await;
        assert!(got.iter().all(|g| g["object"] == "text_completion"));
        assert_eq!(
            got.last().unwrap()["choices"][0]["finish_reason"],
            "length",
            "{route}"
        );
        streams.push(texts(&got));
    }
    assert_eq!(streams[0], ["URL", " inference", " stable"]);
    assert!(streams.iter().all(|s| *s == streams[0]), "{streams:?}");
    c.h.shutdown().await;
}

#[tokio::test]
async fn lmi_generate_reads_as_tgi_on_the_tgi_door() {
    let c = start().await;
    let body = json!({"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "details": true}});
    let tgi = json(c.h.post_json("/hf/sm/generate", KEY, &body).await).await;
    let lmi = json(c.h.post_json("/hf/lmi/generate", KEY, &body).await).await;
    assert_eq!(lmi["generated_text"], ANSWER);
    assert_eq!(lmi["generated_text"], tgi["generated_text"]);
    assert_eq!(
        lmi["details"]["finish_reason"],
        tgi["details"]["finish_reason"]
    );
    let stream = |route: &'static str| {
        let c = &c;
        let body = body.clone();
        async move {
            let res =
                c.h.post_json(&format!("/hf/{route}/generate_stream"), KEY, &body)
                    .await;
            let text = res.text().await.unwrap();
            data_events(&text)
                .iter()
                .map(|e| serde_json::from_str::<Value>(e).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let (tgi, lmi) = (stream("sm").await, stream("lmi").await);
    assert_eq!(lmi.len(), 3);
    for (t, l) in tgi.iter().zip(&lmi) {
        assert_eq!(t["index"], l["index"]);
        assert_eq!(t["token"]["text"], l["token"]["text"]);
        assert_eq!(t["token"]["id"], l["token"]["id"]);
        assert_eq!(t["token"]["logprob"], l["token"]["logprob"]);
        assert_eq!(t["generated_text"], l["generated_text"]);
    }
    c.h.shutdown().await;
}

#[tokio::test]
async fn lmi_json_lines_split_mid_json_across_payload_parts_are_reassembled() {
    let c = start().await;
    let body =
        json!({"model": "lmi", "messages": [{"role": "user", "content": PROMPT}], "stream": true});
    let whole = texts(&chunks(c.h.post_json("/v1/chat/completions", KEY, &body).await).await);
    for split in [1, 3, 7] {
        c.lmi.faults().set(FaultConfig {
            stream_split: Some(split),
            ..FaultConfig::default()
        });
        let got = texts(&chunks(c.h.post_json("/v1/chat/completions", KEY, &body).await).await);
        assert_eq!(got, whole, "parts of at most {split} bytes");
    }
    assert_eq!(whole.concat(), "URL inference stable one");
    c.h.shutdown().await;
}

#[tokio::test]
async fn lmis_failures_reach_each_door_in_its_shape() {
    let c = start().await;
    // Its 424 validation error: the openai client's BadRequestError.
    let bad =
        json!({"model": "lmi", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 0});
    let res = c.h.post_json("/v1/chat/completions", KEY, &bad).await;
    assert_eq!(res.status(), 400);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    // Its error line after the 200.
    c.lmi.faults().set(FaultConfig {
        stream_error_after: Some(1),
        ..FaultConfig::default()
    });
    let body =
        json!({"model": "lmi", "messages": [{"role": "user", "content": PROMPT}], "stream": true});
    let text =
        c.h.post_json("/v1/chat/completions", KEY, &body)
            .await
            .text()
            .await
            .unwrap();
    let events = data_events(&text);
    assert_eq!(events.len(), 2, "{text}");
    let err: Value = serde_json::from_str(&events[1]).unwrap();
    assert!(err["error"]["message"].is_string(), "{err}");
    let gen = json!({"inputs": PROMPT});
    let text =
        c.h.post_json("/hf/lmi/generate_stream", KEY, &gen)
            .await
            .text()
            .await
            .unwrap();
    let events = data_events(&text);
    let err: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(err["error_type"], "generation", "{text}");
    c.h.shutdown().await;
}

#[tokio::test]
async fn embeddings_are_the_same_from_tei_on_either_backend() {
    let c = start().await;
    let mut vectors = Vec::new();
    for route in ["sm-tei", "hf-tei"] {
        let body = json!({"model": route, "input": ["a b", "c"], "encoding_format": "float"});
        let v = json(c.h.post_json("/v1/embeddings", KEY, &body).await).await;
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], route);
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(
            data[0]["embedding"].as_array().unwrap().len(),
            emulator::model::EMBEDDING_DIM
        );
        vectors.push(data[0]["embedding"].clone());
        let b64 = json!({"model": route, "input": "a b", "encoding_format": "base64"});
        let v = json(c.h.post_json("/v1/embeddings", KEY, &b64).await).await;
        let floats: Vec<f32> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();
        assert_eq!(
            v["data"][0]["embedding"],
            emulator::model::base64_f32(&floats)
        );
        // The TGI door as TEI: /embed and / give the raw vectors.
        for path in ["embed", ""] {
            let raw = json(
                c.h.post_json(
                    &format!("/hf/{route}/{path}"),
                    KEY,
                    &json!({"inputs": ["a b", "c"]}),
                )
                .await,
            )
            .await;
            assert_eq!(raw[0], data[0]["embedding"], "{route}/{path}");
        }
    }
    assert_eq!(vectors[0], vectors[1]);
    // TEI's own validation error (413 `Validation`): OpenAI's 400, and TEI's
    // as it is on the TGI door.
    let many: Vec<String> = (0..=emulator::model::MAX_CLIENT_BATCH_SIZE)
        .map(|i| format!("t{i}"))
        .collect();
    for route in ["sm-tei", "hf-tei"] {
        let res =
            c.h.post_json(
                "/v1/embeddings",
                KEY,
                &json!({"model": route, "input": many}),
            )
            .await;
        assert_eq!(res.status(), 400, "{route}");
        let e: Value = res.json().await.unwrap();
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
        let res =
            c.h.post_json(&format!("/hf/{route}/embed"), KEY, &json!({"inputs": many}))
                .await;
        let status = res.status();
        let e: Value = res.json().await.unwrap();
        assert_eq!(
            (status.as_u16(), e["error_type"].as_str()),
            (413, Some("validation")),
            "{route}: {e}"
        );
    }
    let text_route = json!({"model": "sm-tei", "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(
        c.h.post_json("/v1/chat/completions", KEY, &text_route)
            .await
            .status(),
        400
    );
    c.h.shutdown().await;
}

#[tokio::test]
async fn the_toolkit_answers_generate_and_completions_whole_and_no_chat() {
    let c = start().await;
    let gen = json!({"inputs": PROMPT, "parameters": {"max_new_tokens": 3}});
    let v = json(c.h.post_json("/hf/toolkit/generate", KEY, &gen).await).await;
    assert_eq!(v["generated_text"], ANSWER);
    let sent: Value = serde_json::from_slice(&c.h.sm.counters().last().unwrap().body).unwrap();
    assert_eq!(sent["parameters"]["return_full_text"], false, "{sent}");
    let v = json(
        c.h.post_json(
            "/v1/completions",
            KEY,
            &json!({"model": "toolkit", "prompt": PROMPT, "max_tokens": 3}),
        )
        .await,
    )
    .await;
    assert_eq!(v["choices"][0]["text"], ANSWER);
    let chat = json!({"model": "toolkit", "messages": [{"role": "user", "content": "a"}]});
    assert_eq!(
        c.h.post_json("/v1/chat/completions", KEY, &chat)
            .await
            .status(),
        400
    );
    let stream = json!({"model": "toolkit", "prompt": PROMPT, "stream": true});
    assert_eq!(
        c.h.post_json("/v1/completions", KEY, &stream)
            .await
            .status(),
        400
    );
    c.h.shutdown().await;
}

#[tokio::test]
async fn tools_and_response_format_pass_through_to_the_container() {
    let c = start().await;
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let body = json!({"model": "hf", "messages": [{"role": "user", "content": "a"}], "tools": tools,
                      "tool_choice": "auto", "response_format": {"type": "json_object"}});
    json(c.h.post_json("/v1/chat/completions", KEY, &body).await).await;
    let sent: Value = serde_json::from_slice(&c.h.hf.counters().last().unwrap().body).unwrap();
    assert_eq!(sent["tools"], tools);
    assert_eq!(sent["tool_choice"], "auto");
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    // The route's name stays the gateway's; TGI 2.0 requires a model.
    assert_eq!(sent["model"], "tgi", "{sent}");
    c.h.shutdown().await;
}

#[tokio::test]
async fn the_predict_door_passes_each_containers_answer_through() {
    let c = start().await;
    for route in ["sm-tei", "hf-tei"] {
        let res =
            c.h.post_json(
                &format!("/v1/predict/{route}"),
                KEY,
                &json!({"inputs": "a b"}),
            )
            .await;
        let v = json(res).await;
        assert_eq!(
            v[0].as_array().map(Vec::len),
            Some(emulator::model::EMBEDDING_DIM),
            "{route}: {v}"
        );
    }
    let res =
        c.h.post_json("/v1/predict/sm-tei/stream", KEY, &json!({"inputs": "a b"}))
            .await;
    assert_eq!(res.status(), 400, "TEI does not stream");
    let res =
        c.h.post_json(
            "/v1/predict/lmi/stream",
            KEY,
            &json!({"inputs": PROMPT, "parameters": {"max_new_tokens": 3}}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let tokens: Vec<String> = text
        .split("\n\n")
        .filter_map(|b| b.strip_prefix("data:"))
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["token"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tokens, ["URL", " inference", " stable"], "{text}");
    c.h.shutdown().await;
}
