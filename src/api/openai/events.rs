//! A chat or completion stream as OpenAI streams it: `data: {chunk}` (with
//! the space) per event, each chunk stamped with the request's one `id`,
//! `created` and `model`, the assistant's `role` in the first delta only,
//! OpenAI's `finish_reason`s; with `stream_options.include_usage` a last
//! chunk with `choices: []` and the `usage`; then `data: [DONE]`. A
//! failure after the first byte is a `data: {"error": …}` event, which the
//! `openai` client raises as an `APIError`.

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use super::answer::{Kind, Stamp};
use crate::api::stream::DoorEvents;
use crate::backend::events::StreamError;

/// The OpenAI door's rendering of one stream.
#[derive(Debug)]
pub struct OpenAiEvents {
    stamp: Stamp,
    include_usage: bool,
    role_sent: bool,
    /// The backend's count, from the chunk that carried it.
    usage: Option<Value>,
    /// Chunks that carried text, the count when the backend gave none.
    chunks: u64,
    /// Failures as TGI's `{"error", "error_type"}` event (the TGI door's
    /// chat), not OpenAI's `{"error": {…}}`.
    tgi_errors: bool,
}

impl OpenAiEvents {
    pub fn new(stamp: Stamp, include_usage: bool) -> Self {
        Self {
            stamp,
            include_usage,
            role_sent: false,
            usage: None,
            chunks: 0,
            tgi_errors: false,
        }
    }

    /// The same, with failures in TGI's shape.
    pub fn with_tgi_errors(mut self) -> Self {
        self.tgi_errors = true;
        self
    }

    /// Makes the chat deltas read as OpenAI's: `role` in the first only.
    fn roles(&mut self, chunk: &mut Map<String, Value>) {
        let Some(Value::Array(choices)) = chunk.get_mut("choices") else {
            return;
        };
        for choice in choices {
            let Some(Value::Object(delta)) = choice.get_mut("delta") else {
                continue;
            };
            if self.role_sent {
                delta.remove("role");
            } else {
                delta.insert("role".into(), Value::from("assistant"));
                self.role_sent = true;
            }
        }
    }

    fn usage(&self) -> Value {
        match &self.usage {
            Some(usage) => usage.clone(),
            None => json!({
                "prompt_tokens": 0,
                "completion_tokens": self.chunks,
                "total_tokens": self.chunks,
            }),
        }
    }
}

/// TGI's mid-stream error event, `data: {"error", "error_type"}`.
pub fn tgi_error_event(e: &StreamError, out: &mut BytesMut) {
    let body = json!({"error": e.message, "error_type": "generation"});
    push(out, body.to_string().as_bytes());
}

/// Appends `data: {json}` (with the space OpenAI's and huggingface_hub's
/// parsers expect).
pub fn push(out: &mut BytesMut, json: &[u8]) {
    out.reserve(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

impl DoorEvents for OpenAiEvents {
    fn event(&mut self, json: &[u8], out: &mut BytesMut) {
        let Ok(Value::Object(mut chunk)) = serde_json::from_slice::<Value>(json) else {
            return;
        };
        if let Some(usage) = chunk.remove("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage);
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        if choices.is_none_or(|c| c.is_empty()) {
            // A usage-only chunk: its count goes in the door's own last one.
            return;
        }
        self.chunks += 1;
        if self.stamp.kind == Kind::Chat {
            self.roles(&mut chunk);
        }
        self.stamp.apply(&mut chunk, true);
        if self.include_usage {
            chunk.insert("usage".into(), Value::Null);
        }
        push(out, Value::Object(chunk).to_string().as_bytes());
    }

    fn fail(&mut self, e: &StreamError, out: &mut BytesMut) {
        if self.tgi_errors {
            return tgi_error_event(e, out);
        }
        let body = json!({
            "error": {
                "message": e.message,
                "type": "server_error",
                "param": null,
                "code": e.kind.as_str(),
            }
        });
        push(out, body.to_string().as_bytes());
    }

    fn end(&mut self, out: &mut BytesMut) {
        if self.include_usage {
            let mut last = Map::new();
            last.insert("choices".into(), Value::Array(Vec::new()));
            self.stamp.apply(&mut last, true);
            last.insert("usage".into(), self.usage());
            push(out, Value::Object(last).to_string().as_bytes());
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::events::StreamErrorKind;

    fn events(out: &BytesMut) -> Vec<String> {
        std::str::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter(|s| !s.is_empty())
            .map(|s| s.strip_prefix("data: ").unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_chat_stream_reads_as_openais() {
        let mut ev = OpenAiEvents::new(Stamp::new(Kind::Chat, "r"), true);
        let mut out = BytesMut::new();
        for (text, finish) in [("b", "null"), (" a", "\"eos_token\"")] {
            let chunk = format!(
                r#"{{"id": "", "model": "tgi", "choices": [{{"index": 0, "delta": {{"role": "assistant", "content": "{text}"}}, "finish_reason": {finish}}}]}}"#
            );
            ev.event(chunk.as_bytes(), &mut out);
        }
        ev.event(br#"{"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}}"#, &mut out);
        ev.end(&mut out);
        let got = events(&out);
        assert_eq!(got.len(), 4, "{got:?}");
        let first: Value = serde_json::from_str(&got[0]).unwrap();
        let second: Value = serde_json::from_str(&got[1]).unwrap();
        let last: Value = serde_json::from_str(&got[2]).unwrap();
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert!(second["choices"][0]["delta"].get("role").is_none());
        assert_eq!(second["choices"][0]["finish_reason"], "stop");
        assert_eq!(first["id"], second["id"]);
        assert_eq!(
            (first["model"].as_str(), first["object"].as_str()),
            (Some("r"), Some("chat.completion.chunk"))
        );
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["total_tokens"], 4);
        assert_eq!(got[3], "[DONE]");
    }

    #[test]
    fn without_include_usage_there_is_no_usage_chunk_and_a_failure_is_an_error_event() {
        let mut ev = OpenAiEvents::new(Stamp::new(Kind::Completion, "r"), false);
        let mut out = BytesMut::new();
        ev.event(
            br#"{"choices": [{"text": "b", "finish_reason": null}], "usage": null}"#,
            &mut out,
        );
        ev.fail(
            &StreamError::new(StreamErrorKind::ModelError, "boom"),
            &mut out,
        );
        let got = events(&out);
        let chunk: Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(chunk["object"], "text_completion");
        assert!(chunk.get("usage").is_none());
        let err: Value = serde_json::from_str(&got[1]).unwrap();
        assert_eq!(err["error"]["message"], "boom");
        let mut end = BytesMut::new();
        ev.end(&mut end);
        assert_eq!(&end[..], b"data: [DONE]\n\n");
    }
}
