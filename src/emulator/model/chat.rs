//! The OpenAI-compatible shapes TGI serves: chat completions
//! (`/v1/chat/completions`, `/invocations` with `messages`) and text
//! completions (`/v1/completions`, `/invocations` with `prompt`, TGI ≥ 2.4),
//! their request parsers (errors are TGI's 422 `validation` messages) and
//! their whole and streamed answers. TGI sends an empty `id` on both.

use serde_json::{json, Map, Value};

use super::{opt_bool, opt_u32, parse_object, positive, unix_now, Generation, SYSTEM_FINGERPRINT};

/// An OpenAI-style chat request (`/v1/chat/completions`, and SageMaker
/// `/invocations` with `messages`). The prompt is the last user message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatRequest {
    pub prompt: String,
    pub max_tokens: Option<u32>,
    pub stream: bool,
    /// `stream_options.include_usage`: the last chunk carries `usage`.
    pub include_usage: bool,
}

/// An OpenAI-style text completion request (`/v1/completions`, and
/// `/invocations` with `prompt`): one prompt, a string or a list of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletionRequest {
    pub prompt: String,
    pub max_tokens: Option<u32>,
    pub stream: bool,
}

const DESERIALIZE: &str = "Failed to deserialize the JSON body into the target type";

fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        // OpenAI content parts: [{"type":"text","text":"…"}, …]
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

/// `max_completion_tokens`, else `max_tokens`; zero is refused.
fn max_tokens(map: &Map<String, Value>) -> Result<Option<u32>, String> {
    let max = match opt_u32(map, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => opt_u32(map, "max_tokens")?,
    };
    positive(max, "max_tokens")
}

/// `stream_options.include_usage` (false when absent).
fn include_usage(map: &Map<String, Value>) -> Result<bool, String> {
    match map.get("stream_options") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Object(o)) => opt_bool(o, "include_usage"),
        Some(_) => Err(format!(
            "{DESERIALIZE}: stream_options: invalid type, expected a struct"
        )),
    }
}

/// Parses an OpenAI chat body; the error is TGI's 422 validation message.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, String> {
    let map = parse_object(body)?;
    let messages = match map.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err("Input validation error: `messages` cannot be empty".to_owned())
        }
        Some(_) => {
            return Err(format!(
                "{DESERIALIZE}: messages: invalid type, expected a sequence"
            ))
        }
        None => return Err(format!("{DESERIALIZE}: missing field `messages`")),
    };
    let is_user = |m: &&Value| m.get("role").and_then(Value::as_str) == Some("user");
    let last = messages
        .iter()
        .rev()
        .find(is_user)
        .or_else(|| messages.last());
    let prompt = last
        .and_then(|m| m.get("content"))
        .and_then(message_text)
        .ok_or_else(|| format!("{DESERIALIZE}: messages: missing field `content`"))?;
    Ok(ChatRequest {
        prompt,
        max_tokens: max_tokens(&map)?,
        stream: opt_bool(&map, "stream")?,
        include_usage: include_usage(&map)?,
    })
}

/// The one prompt of a completion request: a string, or a list of one string.
fn one_prompt(prompt: Option<&Value>) -> Result<String, String> {
    let prompt = match prompt {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(list)) => match list.as_slice() {
            [Value::String(s)] => s.clone(),
            [] => return Err("Input validation error: `prompt` cannot be empty".to_owned()),
            [_] => {
                return Err(format!(
                    "{DESERIALIZE}: prompt: invalid type, expected a string"
                ))
            }
            _ => {
                return Err(
                    "Input validation error: the emulator takes one prompt per request".to_owned(),
                )
            }
        },
        Some(_) => {
            return Err(format!(
                "{DESERIALIZE}: prompt: invalid type, expected a string or a sequence of strings"
            ))
        }
        None => return Err(format!("{DESERIALIZE}: missing field `prompt`")),
    };
    if prompt.is_empty() {
        return Err("Input validation error: `prompt` cannot be empty".to_owned());
    }
    Ok(prompt)
}

/// Parses an OpenAI completions body; the error is TGI's 422 validation
/// message.
pub fn parse_completion(body: &[u8]) -> Result<CompletionRequest, String> {
    let map = parse_object(body)?;
    Ok(CompletionRequest {
        prompt: one_prompt(map.get("prompt"))?,
        max_tokens: max_tokens(&map)?,
        stream: opt_bool(&map, "stream")?,
    })
}

/// OpenAI's `usage` of one generation.
pub fn usage(gen: &Generation) -> Value {
    json!({
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.tokens.len(),
        "total_tokens": gen.prompt_tokens + gen.tokens.len(),
    })
}

/// The token of stream chunk `i` (an empty generation sends one empty
/// chunk) and its `finish_reason` (only on the last).
fn chunk_token(gen: &Generation, i: usize) -> (String, Value) {
    let n = chunk_count(gen);
    let content = gen.tokens.get(i).cloned().unwrap_or_default();
    let finish = if i + 1 == n {
        Value::from(gen.finish_reason.as_openai())
    } else {
        Value::Null
    };
    (content, finish)
}

/// How many chunks a streamed generation sends: one per token, at least one.
pub(super) fn chunk_count(gen: &Generation) -> usize {
    gen.tokens.len().max(1)
}

/// A non-streaming OpenAI chat completion.
pub fn chat_completion(gen: &Generation, model_id: &str) -> Value {
    json!({
        "object": "chat.completion",
        "id": "",
        "created": unix_now(),
        "model": model_id,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": gen.text()},
            "logprobs": null,
            "finish_reason": gen.finish_reason.as_openai(),
        }],
        "usage": usage(gen),
    })
}

/// The JSON of the chat stream chunks, one per token, `finish_reason` on the
/// last (with `usage` there when `include_usage`, else `null`); the caller
/// appends `data:[DONE]`.
pub fn chat_chunks(gen: &Generation, model_id: &str, include_usage: bool) -> Vec<String> {
    let created = unix_now();
    let n = chunk_count(gen);
    (0..n)
        .map(|i| {
            let (content, finish) = chunk_token(gen, i);
            let usage = if include_usage && i + 1 == n {
                usage(gen)
            } else {
                Value::Null
            };
            json!({
                "object": "chat.completion.chunk",
                "id": "",
                "created": created,
                "model": model_id,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [{
                    "index": 0,
                    "delta": {"role": "assistant", "content": content},
                    "logprobs": null,
                    "finish_reason": finish,
                }],
                "usage": usage,
            })
            .to_string()
        })
        .collect()
}

/// A non-streaming OpenAI text completion.
pub fn completion(gen: &Generation, model_id: &str) -> Value {
    json!({
        "id": "",
        "object": "text_completion",
        "created": unix_now(),
        "model": model_id,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{
            "index": 0,
            "text": gen.text(),
            "logprobs": null,
            "finish_reason": gen.finish_reason.as_openai(),
        }],
        "usage": usage(gen),
    })
}

/// The JSON of the completion stream chunks, one per token, `finish_reason`
/// on the last; the caller appends `data:[DONE]`.
pub fn completion_chunks(gen: &Generation, model_id: &str) -> Vec<String> {
    let created = unix_now();
    (0..chunk_count(gen))
        .map(|i| {
            let (text, finish) = chunk_token(gen, i);
            json!({
                "id": "",
                "object": "text_completion",
                "created": created,
                "model": model_id,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [{
                    "index": 0,
                    "text": text,
                    "logprobs": null,
                    "finish_reason": finish,
                }],
            })
            .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn parse_chat_takes_last_user_message() {
        let c = parse_chat(
            br#"{"messages":[{"role":"system","content":"be nice"},{"role":"user","content":[{"type":"text","text":"x y"}]}],"max_tokens":1,"stream":true}"#,
        )
        .unwrap();
        assert_eq!(c.prompt, "x y");
        assert_eq!(c.max_tokens, Some(1));
        assert!(c.stream && !c.include_usage);
        assert!(parse_chat(br#"{"messages":[]}"#).is_err());
    }

    #[test]
    fn parse_chat_reads_stream_options() {
        let body = br#"{"messages":[{"role":"user","content":"a"}],"stream":true,"stream_options":{"include_usage":true}}"#;
        assert!(parse_chat(body).unwrap().include_usage);
        let bad = br#"{"messages":[{"role":"user","content":"a"}],"stream_options":true}"#;
        assert!(parse_chat(bad).unwrap_err().contains("stream_options"));
        let bad =
            br#"{"messages":[{"role":"user","content":"a"}],"stream_options":{"include_usage":1}}"#;
        assert!(parse_chat(bad).unwrap_err().contains("include_usage"));
    }

    #[test]
    fn parse_completion_takes_one_prompt() {
        let c = parse_completion(br#"{"prompt":"a b","max_tokens":1,"stream":true}"#).unwrap();
        assert_eq!(
            c,
            CompletionRequest {
                prompt: "a b".to_owned(),
                max_tokens: Some(1),
                stream: true
            }
        );
        let c = parse_completion(br#"{"prompt":["x y"]}"#).unwrap();
        assert_eq!(
            (c.prompt.as_str(), c.max_tokens, c.stream),
            ("x y", None, false)
        );
        for (body, needle) in [
            (&br#"{"model":"m"}"#[..], "missing field `prompt`"),
            (br#"{"prompt":""}"#, "cannot be empty"),
            (br#"{"prompt":[]}"#, "cannot be empty"),
            (br#"{"prompt":["a","b"]}"#, "one prompt"),
            (br#"{"prompt":[1]}"#, "expected a string"),
            (br#"{"prompt":7}"#, "invalid type"),
            (br#"{"prompt":"a","max_tokens":0}"#, "strictly positive"),
            (b"nope", "JSON"),
        ] {
            let err = parse_completion(body).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn chat_shapes() {
        let gen = Generation::run("a b c", Some(2));
        let full = chat_completion(&gen, "m");
        assert_eq!(full["id"], "");
        assert_eq!(full["choices"][0]["message"]["content"], "c b");
        assert_eq!(full["choices"][0]["finish_reason"], "length");
        assert_eq!(full["usage"]["total_tokens"], 5);
        let chunks = chat_chunks(&gen, "m", false);
        assert_eq!(chunks.len(), 2);
        let last: Value = serde_json::from_str(&chunks[1]).unwrap();
        assert_eq!(last["id"], "");
        assert_eq!(last["choices"][0]["delta"]["content"], " b");
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        assert_eq!(last["usage"], Value::Null);
    }

    #[test]
    fn include_usage_puts_usage_on_the_last_chunk_only() {
        let gen = Generation::run("a b c", None);
        let chunks: Vec<Value> = chat_chunks(&gen, "m", true)
            .iter()
            .map(|c| serde_json::from_str(c).unwrap())
            .collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1]["usage"], Value::Null);
        assert_eq!(
            chunks[2]["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
        );
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn completion_shapes() {
        let gen = Generation::run("a b c", Some(2));
        let full = completion(&gen, "m");
        assert_eq!(full["object"], "text_completion");
        assert_eq!(full["id"], "");
        assert_eq!(full["model"], "m");
        assert_eq!(full["system_fingerprint"], SYSTEM_FINGERPRINT);
        assert_eq!(
            full["choices"],
            json!([{"index": 0, "text": "c b", "logprobs": null, "finish_reason": "length"}])
        );
        assert_eq!(full["usage"]["prompt_tokens"], 3);
        assert_eq!(full["usage"]["completion_tokens"], 2);
        let chunks: Vec<Value> = completion_chunks(&gen, "m")
            .iter()
            .map(|c| serde_json::from_str(c).unwrap())
            .collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0]["object"], "text_completion");
        assert_eq!(chunks[0]["choices"][0]["text"], "c");
        assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(chunks[1]["choices"][0]["text"], " b");
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "length");
        assert!(chunks[1].get("usage").is_none());
        // An empty generation still sends one (empty) chunk.
        let empty = completion_chunks(&Generation::run(" ", None), "m");
        assert_eq!(empty.len(), 1);
    }
}
