//! Stream requests, their expected events, and server-sent events parsed.

use crate::common::{patch, Harness, CONFIG};
use infergate::emulator::model::{self, Generation};
use serde_json::{json, Value};

pub fn body(inputs: &str, max_new_tokens: u32) -> String {
    json!({"inputs": inputs, "parameters": {"max_new_tokens": max_new_tokens}}).to_string()
}

/// The JSON of each event TGI's `generate_stream` sends for this input.
pub fn expected(inputs: &str, max_new_tokens: u32) -> Vec<String> {
    model::generate_stream_events(&Generation::run(inputs, Some(max_new_tokens)), false)
}

/// The reversed words, as the last event's `generated_text`.
pub fn expected_text(inputs: &str, max_new_tokens: u32) -> String {
    Generation::run(inputs, Some(max_new_tokens)).text()
}

/// One block of a server-sent-events body.
#[derive(Debug, Clone, PartialEq)]
pub enum Sse {
    Data(String),
    /// `event: error`: the `error` object of its JSON.
    Error(Value),
    /// A comment-only block (keep-alive).
    Comment,
}

/// Splits an SSE body on blank lines; every block must be complete.
pub fn parse(text: &str) -> Vec<Sse> {
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
pub fn data(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Sse::Data(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Opens a stream on `route`.
pub async fn open(h: &Harness, route: &str, body: &str) -> reqwest::Response {
    h.client
        .post(h.url(&format!("/v1/predict/{route}/stream")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A successful stream's headers, checked, and its events.
pub async fn stream_ok(h: &Harness, route: &str, body: &str, backend: &str) -> Vec<Sse> {
    let res = open(h, route, body).await;
    assert_eq!(res.status(), 200, "route {route}");
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["x-infergate-backend"], backend);
    parse(&res.text().await.unwrap())
}

/// A stream that ended with an error event after `n` data events: checks
/// the tokens before it and returns the error object.
pub fn ends_with_error(events: &[Sse], want: &[String], n: usize) -> Value {
    assert_eq!(events.len(), n + 1, "{events:?}");
    assert_eq!(data(&events[..n]), want[..n].to_vec());
    match &events[n] {
        Sse::Error(e) => e.clone(),
        other => panic!("expected an error event last, got {other:?}"),
    }
}

/// Route `both` tries `first` before the other backend, every time.
pub fn both_in_order(first: &str) -> String {
    let old = "[routes.both]\nbackends = [\"sm\", \"hf\"]\n";
    let order = if first == "hf" {
        "hf\", \"sm"
    } else {
        "sm\", \"hf"
    };
    patch(
        CONFIG,
        old,
        &format!("[routes.both]\nbackends = [\"{order}\"]\nbalance = \"priority\"\n"),
    )
}
