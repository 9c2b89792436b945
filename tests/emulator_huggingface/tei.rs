//! The Hugging Face emulator in TEI mode (text-embeddings-inference):
//! `/embed` and `/`, OpenAI's `/v1/embeddings` (float and base64), `/info`,
//! `/health`, TEI's validation errors, and the proxy's token check, faults
//! and cold start in front of it.

use std::time::Duration;

use crate::client::{get, header, post, start, tgi_error};
use infergate::emulator::huggingface::{self, HuggingFaceContainer, HuggingFaceOptions};
use infergate::emulator::{model, InjectedError};
use serde_json::{json, Value};

// TEI's errors have TGI's members: `{"error", "error_type"}`.
use crate::client::tgi_error as tei_error;

fn tei() -> HuggingFaceOptions {
    HuggingFaceOptions {
        container: HuggingFaceContainer::Tei,
        model_id: "org/embed".to_owned(),
        ..HuggingFaceOptions::default()
    }
}

#[tokio::test]
async fn tei_embed_and_root_routes() {
    let emu = start(tei()).await;
    let resp = post(&emu, "/embed", r#"{"inputs":"the quick fox"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for (name, value) in [
        ("content-type", "application/json"),
        ("x-compute-type", "gpu+optimized"),
        ("x-compute-tokens", "3"),
        ("x-compute-characters", "13"),
        ("x-tokenization-time", "0"),
    ] {
        assert_eq!(header(&resp, name).as_deref(), Some(value), "{name}");
    }
    for name in [
        "x-compute-time",
        "x-total-time",
        "x-queue-time",
        "x-inference-time",
    ] {
        assert!(
            header(&resp, name).unwrap().parse::<u64>().is_ok(),
            "{name}"
        );
    }
    let v: Vec<Vec<f32>> = resp.json().await.unwrap();
    assert_eq!(v, vec![model::embed("the quick fox", true)]);

    let body = r#"{"inputs":["a b","c"],"normalize":false,"truncate":true}"#;
    let resp = post(&emu, "/", body).send().await.unwrap();
    assert_eq!(header(&resp, "x-compute-tokens").as_deref(), Some("3"));
    let v: Vec<Vec<f32>> = resp.json().await.unwrap();
    assert_eq!(
        v,
        vec![model::embed("a b", false), model::embed("c", false)]
    );
    assert_eq!(emu.counters().stream_requests(), 0);
}

/// Standard base64 decoding, by the base64 crate (the emulator encodes
/// through protocol::openai).
fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn tei_openai_embeddings_float_and_base64() {
    let emu = start(tei()).await;
    let body = r#"{"input":["a b","c"],"model":"any"}"#;
    let v: Value = post(&emu, "/v1/embeddings", body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "org/embed");
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    for (i, text) in ["a b", "c"].into_iter().enumerate() {
        let item = &v["data"][i];
        assert_eq!(
            (&item["object"], &item["index"]),
            (&json!("embedding"), &json!(i))
        );
        let vector: Vec<f32> = serde_json::from_value(item["embedding"].clone()).unwrap();
        assert_eq!(vector, model::embed(text, true));
    }

    let body = r#"{"input":"a b","encoding_format":"base64"}"#;
    let v: Value = post(&emu, "/v1/embeddings", body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let bytes = base64_decode(v["data"][0]["embedding"].as_str().unwrap());
    let vector: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(vector, model::embed("a b", true));
}

#[tokio::test]
async fn tei_info_health_and_unknown_routes() {
    let emu = start(tei()).await;
    let info: Value = get(&emu, "/info")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["model_id"], "org/embed");
    assert_eq!(
        info["model_type"],
        json!({"embedding": {"pooling": "mean"}})
    );
    assert_eq!(
        (&info["max_client_batch_size"], &info["max_input_length"]),
        (&json!(32), &json!(512))
    );
    assert_eq!(
        (&info["version"], &info["model_dtype"]),
        (&json!("1.5.0"), &json!("float16"))
    );
    assert_eq!(info["auto_truncate"], false);
    let resp = get(&emu, "/health").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_eq!(get(&emu, "/embed").send().await.unwrap().status(), 405);
    for path in ["/generate", "/v1/chat/completions", "/v1/models"] {
        assert_eq!(
            post(&emu, path, "{}").send().await.unwrap().status(),
            404,
            "{path}"
        );
    }
}

#[tokio::test]
async fn tei_invalid_inputs_are_413_validation() {
    let emu = start(tei()).await;
    let too_many = json!({ "inputs": vec!["w"; 33] }).to_string();
    for (path, body, needle) in [
        ("/embed", r#"{"inputs":[]}"#, "`inputs` cannot be empty"),
        ("/embed", r#"{"inputs":""}"#, "`inputs` cannot be empty"),
        ("/embed", r#"{"inputs":[1]}"#, "untagged enum"),
        ("/", r#"{"input":"a"}"#, "missing field `inputs`"),
        ("/embed", "not json", "JSON"),
        (
            "/embed",
            &too_many,
            "batch size 33 > maximum allowed batch size 32",
        ),
        (
            "/v1/embeddings",
            r#"{"inputs":"a"}"#,
            "missing field `input`",
        ),
        (
            "/v1/embeddings",
            r#"{"input":"a","encoding_format":"x"}"#,
            "encoding_format",
        ),
    ] {
        let resp = post(&emu, path, body).send().await.unwrap();
        let msg = tei_error(resp, 413, "Validation").await;
        assert!(msg.contains(needle), "{path} {body}: {msg}");
    }
    let big = "x".repeat(huggingface::MAX_BODY_BYTES + 1);
    tei_error(
        post(&emu, "/embed", &big).send().await.unwrap(),
        413,
        "Validation",
    )
    .await;
}

#[tokio::test]
async fn tei_token_check_faults_and_cold_start() {
    let emu = start(HuggingFaceOptions {
        token: Some("hf_tei".to_owned()),
        ..tei()
    })
    .await;
    let body = r#"{"inputs":"a"}"#;
    assert_eq!(
        post(&emu, "/embed", body).send().await.unwrap().status(),
        401
    );
    let call = || post(&emu, "/embed", body).bearer_auth("hf_tei").send();
    assert_eq!(call().await.unwrap().status(), 200);
    assert_eq!(emu.counters().auth_rejections(), 1);
    for (error, status, error_type) in [
        (InjectedError::ThrottlingException, 429, "Overloaded"),
        (
            InjectedError::ModelError {
                original_status: 400,
            },
            424,
            "Backend",
        ),
        (InjectedError::ServiceUnavailable, 503, "Unhealthy"),
        (InjectedError::Status(422), 422, "Validation"),
    ] {
        emu.faults().fail_next(1, error);
        let health = get(&emu, "/health")
            .bearer_auth("hf_tei")
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        tei_error(call().await.unwrap(), status, error_type).await;
    }
    assert_eq!(emu.counters().errors_injected(), 4);
    emu.faults()
        .update(|f| f.cold_start = Some(Duration::from_secs(30)));
    tgi_error(call().await.unwrap(), 503, "unavailable").await;
}
