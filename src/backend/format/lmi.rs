//! LMI's stream events in the operation's shapes. LMI (DJL serving)
//! streams JSON lines: for `inputs`, `{"token": {"id", "text",
//! "log_prob"}, "generated_text", "details"}` per token (the whole text and
//! the details on the last); for `messages`, `chat.completion.chunk`s. A
//! failure after the 200 is one more line whose `finish_reason` is
//! `"error"`, which ends the stream as an error here.

use bytes::Bytes;
use serde_json::{json, Value};

use super::completion::completion;
use super::to_bytes;
use crate::backend::events::{StreamError, StreamErrorKind};
use crate::protocol::openai::finish_reason;

/// How each event of an LMI stream is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventMap {
    /// LMI's token lines → TGI's token events, numbered from `index`.
    Generate { index: u64 },
    /// LMI's token lines → `text_completion` chunks.
    Completion,
    /// LMI's chat chunks, as they are.
    Chat,
    /// LMI's lines as they are (a predict stream), but its error line
    /// ends the stream, carrying the line as LMI wrote it.
    Errors,
}

/// One event, rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mapped {
    Event(Bytes),
    /// The model failed: the stream ends with this.
    Fail(StreamError),
}

const FAILED: &str = "the model failed during the stream";

impl EventMap {
    /// `event` (one JSON document) in the operation's shape.
    pub fn map(&mut self, event: Bytes) -> Mapped {
        let Ok(v) = serde_json::from_slice::<Value>(&event) else {
            return Mapped::Event(event);
        };
        match self {
            EventMap::Errors if failed(&v) || chat_failure(&v).is_some() => {
                Mapped::Fail(StreamError {
                    event: Some(event),
                    ..StreamError::new(StreamErrorKind::ModelError, FAILED)
                })
            }
            EventMap::Errors => Mapped::Event(event),
            EventMap::Chat => match chat_failure(&v) {
                Some(message) => fail(message),
                None => Mapped::Event(event),
            },
            EventMap::Generate { index } => {
                if failed(&v) {
                    return fail(FAILED.to_string());
                }
                let out = tgi_event(&v, *index);
                *index += 1;
                Mapped::Event(to_bytes(&out))
            }
            EventMap::Completion => {
                if failed(&v) {
                    return fail(FAILED.to_string());
                }
                let text = token(&v).get("text").and_then(Value::as_str).unwrap_or("");
                let last = !v.get("generated_text").is_none_or(Value::is_null);
                let reason = last.then(|| {
                    v.pointer("/details/finish_reason")
                        .and_then(Value::as_str)
                        .map_or("stop", finish_reason)
                });
                Mapped::Event(to_bytes(&completion(text, reason)))
            }
        }
    }
}

fn fail(message: String) -> Mapped {
    Mapped::Fail(StreamError::new(
        StreamErrorKind::ModelError,
        crate::backend::clip(&message),
    ))
}

fn token(v: &Value) -> &Value {
    v.get("token").unwrap_or(&Value::Null)
}

/// A generate line that reports the failure.
fn failed(v: &Value) -> bool {
    let reason = |p: &str| v.pointer(p).and_then(Value::as_str) == Some("error");
    reason("/details/finish_reason") || reason("/finish_reason")
}

/// A chat chunk that reports the failure: its message.
fn chat_failure(v: &Value) -> Option<String> {
    let choice = v.pointer("/choices/0")?;
    if choice.get("finish_reason").and_then(Value::as_str) != Some("error") {
        return None;
    }
    let said = choice
        .pointer("/delta/content")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    Some(said.unwrap_or(FAILED).to_string())
}

/// LMI's token line as TGI's `generate_stream` event.
fn tgi_event(v: &Value, index: u64) -> Value {
    let t = token(v);
    let details = v.get("details").filter(|d| !d.is_null()).map(|d| {
        json!({
            "finish_reason": d.get("finish_reason").cloned().unwrap_or(Value::Null),
            "generated_tokens": d.get("generated_tokens").cloned().unwrap_or(Value::Null),
            "seed": d.get("seed").cloned().unwrap_or(Value::Null),
        })
    });
    json!({
        "index": index,
        "token": {
            "id": t.get("id").cloned().unwrap_or(Value::Null),
            "text": t.get("text").cloned().unwrap_or_else(|| Value::String(String::new())),
            "logprob": t.get("log_prob").or_else(|| t.get("logprob")).cloned().unwrap_or(Value::Null),
            "special": t.get("special").cloned().unwrap_or(Value::Bool(false)),
        },
        "generated_text": v.get("generated_text").cloned().unwrap_or(Value::Null),
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(m: Mapped) -> Value {
        match m {
            Mapped::Event(b) => serde_json::from_slice(&b).unwrap(),
            Mapped::Fail(e) => panic!("failed: {e:?}"),
        }
    }

    #[test]
    fn token_lines_become_tgi_events() {
        let mut map = EventMap::Generate { index: 0 };
        let first = event(map.map(Bytes::from_static(
            br#"{"token": {"id": 7, "text": "b", "log_prob": -0.5}, "generated_text": null, "details": null}"#,
        )));
        assert_eq!(
            first,
            json!({"index": 0, "token": {"id": 7, "text": "b", "logprob": -0.5, "special": false},
                "generated_text": null, "details": null})
        );
        let last = event(map.map(Bytes::from_static(
            br#"{"token": {"id": 8, "text": " a", "log_prob": -0.1}, "generated_text": "b a", "details": {"finish_reason": "eos_token", "generated_tokens": 2, "inputs": "a b"}}"#,
        )));
        assert_eq!(last["index"], 1);
        assert_eq!(last["generated_text"], "b a");
        assert_eq!(
            last["details"],
            json!({"finish_reason": "eos_token", "generated_tokens": 2, "seed": null})
        );
    }

    #[test]
    fn an_error_line_ends_the_stream() {
        let line = br#"{"token": {"id": -1, "text": "", "log_prob": -1.0}, "generated_text": null, "details": {"finish_reason": "error", "generated_tokens": 1}}"#;
        for mut map in [EventMap::Generate { index: 0 }, EventMap::Completion] {
            assert!(
                matches!(map.map(Bytes::from_static(line)), Mapped::Fail(e) if e.kind == StreamErrorKind::ModelError)
            );
        }
        let chunk = br#"{"choices": [{"index": 0, "delta": {"content": "out of memory"}, "finish_reason": "error"}]}"#;
        match EventMap::Chat.map(Bytes::from_static(chunk)) {
            Mapped::Fail(e) => assert_eq!(e.message, "out of memory"),
            Mapped::Event(_) => panic!("not failed"),
        }
        let fine =
            br#"{"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": null}]}"#;
        assert!(matches!(
            EventMap::Chat.map(Bytes::from_static(fine)),
            Mapped::Event(_)
        ));
    }

    #[test]
    fn token_lines_become_completion_chunks() {
        let mut map = EventMap::Completion;
        let chunk = event(map.map(Bytes::from_static(
            br#"{"token": {"id": 8, "text": " a"}, "generated_text": "b a", "details": {"finish_reason": "length"}}"#,
        )));
        assert_eq!(chunk["choices"][0]["text"], " a");
        assert_eq!(chunk["choices"][0]["finish_reason"], "length");
        let chunk = event(map.map(Bytes::from_static(
            br#"{"token": {"text": "b"}, "generated_text": null}"#,
        )));
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    }
}
