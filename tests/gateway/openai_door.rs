//! The OpenAI-compatible door against both emulators: one answer shape
//! whichever backend served it, OpenAI's streams and errors, the client
//! table and limits, and the request core's retries and failover under it.

use infergate::emulator::{FaultConfig, InjectedError};
use serde_json::{json, Value};

use crate::common::model::data_events;
use crate::common::{Harness, CONFIG};

const KEY: &str = "openai-door-key-canary-4e1d";
const NARROW_KEY: &str = "openai-door-narrow-key-77b0";

fn keyed() -> String {
    format!(
        r#"{CONFIG}
[clients.app]
api_key = "{KEY}"
routes = ["sm", "hf", "both", "js"]

[clients.narrow]
api_key = "{NARROW_KEY}"
routes = ["hf"]
rate_limit = {{ requests_per_second = 0.1, burst = 2 }}
"#
    )
}

fn chat(model: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "one stable inference URL"}],
        "max_tokens": 3,
        "stream": stream,
    });
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

async fn json_of(res: reqwest::Response) -> Value {
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_chat_answer_has_one_shape_whichever_backend_served_it() {
    let h = Harness::with_config(keyed()).await;
    let mut contents = Vec::new();
    for route in ["sm", "hf"] {
        let res = h
            .post_json("/v1/chat/completions", KEY, &chat(route, false))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.headers()["x-infergate-backend"], route);
        let v = json_of(res).await;
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
        assert_eq!(
            (v["object"].as_str(), v["model"].as_str()),
            (Some("chat.completion"), Some(route))
        );
        assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
        let choice = &v["choices"][0];
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 3);
        contents.push(choice["message"]["content"].as_str().unwrap().to_string());
    }
    assert_eq!(contents[0], "URL inference stable");
    assert_eq!(contents[0], contents[1]);
    h.shutdown().await;
}

#[tokio::test]
async fn a_chat_stream_is_openais_whichever_backend_served_it() {
    let h = Harness::with_config(keyed()).await;
    for route in ["sm", "hf"] {
        let res = h
            .post_json("/v1/chat/completions", KEY, &chat(route, true))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let text = res.text().await.unwrap();
        assert!(text.starts_with("data: {"), "{text}");
        let events = data_events(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let (usage, tokens) = chunks.split_last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 3, "{route}: {usage}");
        let text: String = tokens
            .iter()
            .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, "URL inference stable");
        assert_eq!(tokens[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(tokens[1..]
            .iter()
            .all(|c| c["choices"][0]["delta"].get("role").is_none()));
        assert!(chunks
            .iter()
            .all(|c| c["id"] == chunks[0]["id"] && c["model"] == route));
        assert_eq!(
            tokens.last().unwrap()["choices"][0]["finish_reason"],
            "length"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn errors_are_in_openais_shape_with_its_statuses() {
    let h = Harness::with_config(keyed()).await;
    let no_key = h
        .client
        .post(h.url("/v1/chat/completions"))
        .json(&chat("sm", false))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(
        no_key.headers()["www-authenticate"],
        "Bearer realm=\"infergate\""
    );
    let e = json_of(no_key).await;
    assert_eq!(e["error"]["code"], "invalid_api_key");
    assert!(!e.to_string().contains(KEY));

    let cases = [
        (
            NARROW_KEY,
            "/v1/chat/completions",
            chat("sm", false),
            403,
            None,
        ),
        (
            KEY,
            "/v1/chat/completions",
            chat("nope", false),
            404,
            Some("model"),
        ),
        (
            KEY,
            "/v1/chat/completions",
            json!({"model": "sm"}),
            400,
            Some("messages"),
        ),
        (
            KEY,
            "/v1/embeddings",
            json!({"model": "sm", "input": "a"}),
            400,
            Some("model"),
        ),
        (
            KEY,
            "/v1/chat/completions",
            chat("js", false),
            400,
            Some("model"),
        ),
        (
            KEY,
            "/v1/chat/completions",
            chat("js", true),
            400,
            Some("model"),
        ),
    ];
    for (key, path, body, status, param) in cases {
        let res = h.post_json(path, key, &body).await;
        assert_eq!(res.status(), status, "{path} {body}");
        let e = json_of(res).await;
        let err = &e["error"];
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{e}"
        );
        assert!(err["type"].is_string(), "{e}");
        assert_eq!(err["param"], json!(param), "{e}");
    }
    // The model's own rejection keeps the status the container gave it
    // (the SageMaker emulator's TGI container answers 400 inside its
    // ModelError; TGI on an HF endpoint 422).
    for (route, status) in [("sm", 400), ("hf", 422)] {
        let mut body = chat(route, false);
        body["max_tokens"] = json!(0);
        let res = h.post_json("/v1/chat/completions", KEY, &body).await;
        assert_eq!(res.status(), status, "{route}");
        let e = json_of(res).await;
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_tokens"),
            "{e}"
        );
    }
    let get = h
        .client
        .get(h.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    h.shutdown().await;
}

#[tokio::test]
async fn a_client_over_its_limit_gets_openais_429() {
    let h = Harness::with_config(keyed()).await;
    for _ in 0..2 {
        let res = h
            .post_json("/v1/chat/completions", NARROW_KEY, &chat("hf", false))
            .await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("x-ratelimit-remaining"));
    }
    let res = h
        .post_json("/v1/chat/completions", NARROW_KEY, &chat("hf", false))
        .await;
    assert_eq!(res.status(), 429);
    let after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after >= 1);
    let e = json_of(res).await;
    assert_eq!(
        (e["error"]["type"].as_str(), e["error"]["code"].as_str()),
        (Some("requests"), Some("rate_limit_exceeded"))
    );
    h.shutdown().await;
}

#[tokio::test]
async fn models_are_the_callers_routes_that_serve_the_door() {
    let h = Harness::with_config(keyed()).await;
    let list = |key: &'static str| {
        let h = &h;
        async move {
            let v = json_of(
                h.client
                    .get(h.url("/v1/models"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(v["object"], "list");
            let mut ids: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    // A JumpStart route serves completions, so it is a model too.
    assert_eq!(list(KEY).await, ["both", "hf", "js", "sm"]);
    assert_eq!(list(NARROW_KEY).await, ["hf"]);
    let one = h
        .client
        .get(h.url("/v1/models/hf"))
        .bearer_auth(NARROW_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(one).await["id"], "hf");
    let other = h
        .client
        .get(h.url("/v1/models/sm"))
        .bearer_auth(NARROW_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    h.shutdown().await;
}

#[tokio::test]
async fn retries_and_failover_apply_under_the_door() {
    let h = Harness::with_config(keyed()).await;
    h.sm.faults()
        .fail_next(1, InjectedError::ServiceUnavailable);
    let res = h
        .post_json("/v1/chat/completions", KEY, &chat("sm", false))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    // The failing backend's stream is failed over before its first event.
    h.sm.faults()
        .fail_next(10, InjectedError::ServiceUnavailable);
    let res = h
        .post_json("/v1/chat/completions", KEY, &chat("both", true))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert!(res.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    h.shutdown().await;
}

#[tokio::test]
async fn a_failure_mid_stream_is_an_error_event() {
    let h = Harness::with_config(keyed()).await;
    h.hf.faults().set(FaultConfig {
        stream_error_after: Some(1),
        ..FaultConfig::default()
    });
    let res = h
        .post_json("/v1/chat/completions", KEY, &chat("hf", true))
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let events = data_events(&text);
    assert_eq!(events.len(), 2, "{text}");
    let err: Value = serde_json::from_str(&events[1]).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("generation"),
        "{err}"
    );
    assert!(!text.contains("[DONE]"));
    h.shutdown().await;
}

#[tokio::test]
async fn a_route_that_names_its_doors_is_served_on_those_only() {
    let config = format!(
        "{}\n[routes.chat]\nbackends = [\"hf\"]\ndoors = [\"openai\"]\n",
        keyed()
    )
    .replace(
        r#"routes = ["sm", "hf", "both", "js"]"#,
        r#"routes = ["sm", "hf", "both", "js", "chat"]"#,
    );
    let h = Harness::with_config(config).await;
    let res = h
        .post_json("/v1/chat/completions", KEY, &chat("chat", false))
        .await;
    assert_eq!(res.status(), 200);
    let predict = h
        .client
        .post(h.url("/v1/predict/chat"))
        .bearer_auth(KEY)
        .body(crate::common::BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(predict.status(), 404);
    let tgi = h
        .post_json("/hf/chat/generate", KEY, &json!({"inputs": "a"}))
        .await;
    assert_eq!(tgi.status(), 404);
    h.shutdown().await;
}
