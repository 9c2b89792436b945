//! The TGI-compatible door (`/hf/{route}/…`) against both emulators: TGI's
//! routes, answers, streams and error bodies, whichever backend served.

use infergate::emulator::FaultConfig;
use serde_json::{json, Value};

use crate::common::model::data_events;
use crate::common::{Harness, CONFIG};

const KEY: &str = "tgi-door-key-canary-2b9e";
const NARROW_KEY: &str = "tgi-door-narrow-key-c01d";

fn keyed() -> String {
    format!(
        r#"{CONFIG}
[clients.app]
api_key = "{KEY}"
routes = ["sm", "hf", "both", "js"]
admin = true

[clients.narrow]
api_key = "{NARROW_KEY}"
routes = ["hf"]
"#
    )
}

fn generate(stream: bool) -> Value {
    json!({"inputs": "one stable inference URL", "parameters": {"max_new_tokens": 3, "details": true}, "stream": stream})
}

#[tokio::test]
async fn generate_answers_as_tgi_whichever_backend_served() {
    let h = Harness::with_config(keyed()).await;
    for route in ["sm", "hf", "js"] {
        let res = h
            .post_json(&format!("/hf/{route}/generate"), KEY, &generate(false))
            .await;
        assert_eq!(res.status(), 200, "{route}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["generated_text"], "URL inference stable", "{route}: {v}");
        // TGI's compat route: a list of one, with or without the slash.
        for path in [format!("/hf/{route}"), format!("/hf/{route}/")] {
            let v: Value = h
                .post_json(&path, KEY, &generate(false))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(
                v[0]["generated_text"], "URL inference stable",
                "{path}: {v}"
            );
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn generate_streams_as_tgi_whichever_backend_served() {
    let h = Harness::with_config(keyed()).await;
    let mut seen = Vec::new();
    for (route, path) in [
        ("sm", "/generate_stream"),
        ("hf", "/generate_stream"),
        ("hf", ""),
    ] {
        let res = h
            .post_json(&format!("/hf/{route}{path}"), KEY, &generate(true))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let text = res.text().await.unwrap();
        let events: Vec<Value> = data_events(&text)
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(events.len(), 3, "{text}");
        assert!(!text.contains("[DONE]"), "generate_stream sends no [DONE]");
        let last = events.last().unwrap();
        assert_eq!(last["generated_text"], "URL inference stable");
        assert_eq!(last["details"]["finish_reason"], "length");
        seen.push(events);
    }
    assert_eq!(seen[0], seen[1], "the same events from either backend");
    h.shutdown().await;
}

#[tokio::test]
async fn chat_on_the_door_reads_as_tgis_openai_route() {
    let h = Harness::with_config(keyed()).await;
    let body =
        json!({"model": "tgi", "messages": [{"role": "user", "content": "a b c"}], "stream": true});
    for route in ["sm", "hf"] {
        let res = h
            .post_json(&format!("/hf/{route}/v1/chat/completions"), KEY, &body)
            .await;
        let text = res.text().await.unwrap();
        let events = data_events(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
        let first: Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(first["model"], route);
        assert_eq!(first["choices"][0]["delta"]["content"], "c");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn errors_are_tgis() {
    let h = Harness::with_config(keyed()).await;
    let cases = [
        ("", "/hf/sm/generate", generate(false), 401, "unauthorized"),
        (
            NARROW_KEY,
            "/hf/sm/generate",
            generate(false),
            403,
            "forbidden",
        ),
        (KEY, "/hf/nope/generate", generate(false), 404, "not_found"),
        (
            KEY,
            "/hf/hf/generate",
            json!({"parameters": {}}),
            422,
            "validation",
        ),
        (
            KEY,
            "/hf/js/generate_stream",
            generate(true),
            422,
            "validation",
        ),
        (
            KEY,
            "/hf/sm/embed",
            json!({"inputs": "a"}),
            422,
            "validation",
        ),
        (KEY, "/hf/sm/nope", generate(false), 404, "not_found"),
    ];
    for (key, path, body, status, error_type) in cases {
        let res = h.post_json(path, key, &body).await;
        assert_eq!(res.status(), status, "{path} {body}");
        let e: Value = res.json().await.unwrap();
        assert_eq!(e["error_type"], error_type, "{path}: {e}");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    // The model's own validation error, from either backend.
    for route in ["sm", "hf"] {
        let body = json!({"inputs": "a", "parameters": {"max_new_tokens": 0}});
        let res = h
            .post_json(&format!("/hf/{route}/generate"), KEY, &body)
            .await;
        let status = res.status();
        let e: Value = res.json().await.unwrap();
        assert_eq!(
            (status.as_u16(), e["error_type"].as_str()),
            (if route == "hf" { 422 } else { 400 }, Some("validation")),
            "{e}"
        );
        assert!(
            e["error"].as_str().unwrap().contains("max_new_tokens"),
            "{e}"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_failure_mid_stream_is_tgis_error_event() {
    let h = Harness::with_config(keyed()).await;
    h.hf.faults().set(FaultConfig {
        stream_error_after: Some(1),
        ..FaultConfig::default()
    });
    let res = h
        .post_json("/hf/hf/generate_stream", KEY, &generate(true))
        .await;
    let text = res.text().await.unwrap();
    let events = data_events(&text);
    assert_eq!(events.len(), 2, "{text}");
    let e: Value = serde_json::from_str(&events[1]).unwrap();
    assert_eq!(e["error_type"], "generation");
    assert!(e["error"].is_string());
    h.shutdown().await;
}

#[tokio::test]
async fn info_health_and_the_closed_door() {
    let h = Harness::with_config(keyed()).await;
    let info: Value = h
        .client
        .get(h.url("/hf/both/info"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["model_id"], "both");
    assert_eq!(info["model_pipeline_tag"], "text-generation");
    let health = h
        .client
        .get(h.url("/hf/both/health"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let wrong = h
        .client
        .get(h.url("/hf/both/generate"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    let routes = h.get_text_as("/v1/routes", Some(KEY)).await;
    let routes: Value = serde_json::from_str(&routes).unwrap();
    let both = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "both")
        .unwrap();
    assert_eq!(
        both["doors"]["tgi"],
        json!([
            "/hf/both",
            "/hf/both/generate",
            "/hf/both/generate_stream",
            "/hf/both/v1/chat/completions",
            "/hf/both/v1/completions"
        ])
    );
    h.shutdown().await;
    let h = Harness::with_config(format!("{}\n[doors.tgi]\nenabled = false\n", keyed())).await;
    let res = h.post_json("/hf/hf/generate", KEY, &generate(false)).await;
    assert_eq!(res.status(), 404);
    h.shutdown().await;
}

#[tokio::test]
async fn a_scaled_to_zero_backend_never_shows_its_503_while_another_serves() {
    let h = Harness::with_config(keyed()).await;
    h.hf.faults().set(FaultConfig {
        cold_start: Some(std::time::Duration::from_secs(60)),
        ..FaultConfig::default()
    });
    for _ in 0..6 {
        let res = h
            .post_json("/hf/both/generate", KEY, &generate(false))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-infergate-backend"], "sm");
    }
    assert!(
        h.hf.counters().requests() >= 1,
        "the sleeping backend was tried"
    );
    // TGI's /health: 503 while the route's only backend wakes.
    let health = |route: &str| {
        h.client
            .get(h.url(&format!("/hf/{route}/health")))
            .bearer_auth(KEY)
            .send()
    };
    let res = health("hf").await.unwrap();
    assert_eq!(res.status(), 503);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["error_type"], "unhealthy");
    assert_eq!(health("both").await.unwrap().status(), 200);
    h.shutdown().await;
}
