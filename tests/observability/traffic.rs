//! The streams these tests send and how their bodies are counted.

use crate::common::model::words;
use crate::common::Harness;
use serde_json::json;

pub fn stream_body(n: usize) -> String {
    json!({"inputs": words(n), "parameters": {"max_new_tokens": n}}).to_string()
}

/// A whole stream: status, backend and body text.
pub async fn stream(h: &Harness, route: &str, body: &str) -> (u16, String, String) {
    let res = h
        .client
        .post(h.url(&format!("/v1/predict/{route}/stream")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let backend = res.headers()["x-infergate-backend"]
        .to_str()
        .unwrap()
        .to_string();
    (status, backend, res.text().await.unwrap())
}

pub fn data_events(sse: &str) -> usize {
    sse.split("\n\n").filter(|b| b.starts_with("data:")).count()
}

pub fn error_events(sse: &str) -> usize {
    sse.split("\n\n")
        .filter(|b| b.starts_with("event: error\n"))
        .count()
}
