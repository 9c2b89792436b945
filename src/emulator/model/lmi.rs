//! The wire shapes of DJL serving's LMI container (rolling batch), as
//! SageMaker endpoints run it.
//!
//! `{"inputs", "parameters"}` generates `{"generated_text"}` (an object, not
//! TGI's list; `details` when asked); `{"messages"}` is an OpenAI chat
//! completion with a `chatcmpl-` id and model `lmi`. Streams (`"stream":
//! true`) are JSON lines (`application/jsonlines`), one per token, without
//! SSE's `data:` or a `[DONE]`: generate lines are `{"token": {"id", "text",
//! "log_prob"}, "generated_text", "details"}` with the whole text and the
//! details on the last; chat lines are `chat.completion.chunk`s. A failure
//! mid-stream is one more line (`finish_reason: "error"`), after which the
//! stream just ends. Invalid input is the container's 424
//! `{"error", "code": 424}`.

use bytes::Bytes;
use serde_json::{json, Value};

use super::chat::chunk_count;
use super::{
    parse_chat, parse_generate, parse_object, unix_now, usage, ChatRequest, GenerateRequest,
    Generation, EOS_TOKEN_ID,
};

/// What LMI's chat completions report as the model.
pub const MODEL_ID: &str = "lmi";
/// The status LMI answers invalid input with.
pub const ERROR_STATUS: u16 = 424;
/// Content type of LMI's streams.
pub const JSON_LINES: &str = "application/jsonlines";

const STREAM_ERROR: &str =
    "The model failed during generation (injected by the infergate emulator)";

/// What an LMI container is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LmiRequest {
    Generate(GenerateRequest),
    Chat(ChatRequest),
}

impl LmiRequest {
    pub fn stream(&self) -> bool {
        match self {
            LmiRequest::Generate(g) => g.stream,
            LmiRequest::Chat(c) => c.stream,
        }
    }
}

/// Parses an LMI body: `messages` means chat, `inputs` generate; anything
/// else (a `prompt`, say) is refused. The error is the container's message.
pub fn parse(body: &[u8]) -> Result<LmiRequest, String> {
    let map = parse_object(body)?;
    if map.contains_key("messages") {
        parse_chat(body).map(LmiRequest::Chat)
    } else if map.contains_key("inputs") {
        parse_generate(body).map(LmiRequest::Generate)
    } else {
        Err("Invalid request: the body must have `inputs` (text generation) or `messages` (chat completions)".to_owned())
    }
}

/// The container's error body: `{"error": message, "code": 424}`.
pub fn error_body(message: &str) -> String {
    json!({ "error": message, "code": ERROR_STATUS }).to_string()
}

/// A random OpenAI-style id: `chatcmpl-` and 16 hex digits.
pub fn chat_id() -> String {
    format!("chatcmpl-{:016x}", fastrand::u64(..))
}

fn details(gen: &Generation, inputs: &str) -> Value {
    json!({
        "finish_reason": gen.finish_reason.as_tgi(),
        "generated_tokens": gen.tokens.len(),
        "inputs": inputs,
    })
}

/// `{"generated_text"}`, with `details` when asked.
pub fn generate_response(gen: &Generation, inputs: &str, with_details: bool) -> Value {
    let mut v = json!({ "generated_text": gen.text() });
    if with_details {
        v["details"] = details(gen, inputs);
    }
    v
}

/// The JSON of the generate stream's lines, one per token; the last carries
/// the whole text and the details. An empty generation sends the
/// end-of-sequence token alone.
pub fn token_lines(gen: &Generation, inputs: &str) -> Vec<String> {
    if gen.tokens.is_empty() {
        let line = json!({
            "token": {"id": EOS_TOKEN_ID, "text": "", "log_prob": 0.0},
            "generated_text": "",
            "details": details(gen, inputs),
        });
        return vec![line.to_string()];
    }
    let n = gen.tokens.len();
    gen.tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let last = i + 1 == n;
            json!({
                "token": {"id": super::token_id(t), "text": t, "log_prob": super::token_logprob(t)},
                "generated_text": if last { Value::String(gen.text()) } else { Value::Null },
                "details": if last { details(gen, inputs) } else { Value::Null },
            })
            .to_string()
        })
        .collect()
}

/// The line a generate stream ends with when the model fails after `sent`
/// tokens.
pub fn generate_error_line(sent: usize, inputs: &str) -> String {
    json!({
        "token": {"id": -1, "text": "", "log_prob": -1.0},
        "generated_text": null,
        "details": {"finish_reason": "error", "generated_tokens": sent, "inputs": inputs},
    })
    .to_string()
}

/// A non-streaming chat completion, with the given id.
pub fn chat_completion(gen: &Generation, id: &str) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": MODEL_ID,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": gen.text()},
            "logprobs": null,
            "finish_reason": gen.finish_reason.as_openai(),
        }],
        "usage": usage(gen),
    })
}

fn chunk(id: &str, created: u64, i: usize, content: &str, finish: Value) -> Value {
    let delta = if i == 0 {
        json!({"role": "assistant", "content": content})
    } else {
        json!({ "content": content })
    };
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

/// The JSON of the chat stream's lines, one chunk per token: the role only in
/// the first delta, `finish_reason` (and `usage`, when `include_usage`) on
/// the last.
pub fn chat_lines(gen: &Generation, id: &str, include_usage: bool) -> Vec<String> {
    let created = unix_now();
    let n = chunk_count(gen);
    (0..n)
        .map(|i| {
            let content = gen.tokens.get(i).map(String::as_str).unwrap_or_default();
            let last = i + 1 == n;
            let finish = if last {
                Value::from(gen.finish_reason.as_openai())
            } else {
                Value::Null
            };
            let mut c = chunk(id, created, i, content, finish);
            if last && include_usage {
                c["usage"] = usage(gen);
            }
            c.to_string()
        })
        .collect()
}

/// The chunk a chat stream ends with when the model fails after `sent`
/// chunks: `finish_reason` `"error"`, the message as the delta's content.
pub fn chat_error_line(sent: usize, id: &str) -> String {
    chunk(id, unix_now(), sent, STREAM_ERROR, Value::from("error")).to_string()
}

/// One JSON line: the JSON and a newline.
pub fn json_line(json: &str) -> Bytes {
    let mut line = String::with_capacity(json.len() + 1);
    line.push_str(json);
    line.push('\n');
    Bytes::from(line)
}

/// The lines of a streamed request, one per token. With `error_after` below
/// the number of lines, the stream stops there with the error line.
pub fn stream_lines(req: &LmiRequest, error_after: Option<usize>) -> Vec<String> {
    let due = |lines: &[String]| error_after.filter(|n| *n < lines.len());
    match req {
        LmiRequest::Generate(g) => {
            let gen = Generation::run(&g.inputs, g.max_new_tokens);
            let mut lines = token_lines(&gen, &g.inputs);
            if let Some(n) = due(&lines) {
                lines.truncate(n);
                lines.push(generate_error_line(n, &g.inputs));
            }
            lines
        }
        LmiRequest::Chat(c) => {
            let gen = Generation::run(&c.prompt, c.max_tokens);
            let id = chat_id();
            let mut lines = chat_lines(&gen, &id, c.include_usage);
            if let Some(n) = due(&lines) {
                lines.truncate(n);
                lines.push(chat_error_line(n, &id));
            }
            lines
        }
    }
}

/// The whole answer to a request that does not stream (the JSON value).
pub fn answer(req: &LmiRequest) -> (Value, Generation) {
    match req {
        LmiRequest::Generate(g) => {
            let gen = Generation::run(&g.inputs, g.max_new_tokens);
            (generate_response(&gen, &g.inputs, g.details), gen)
        }
        LmiRequest::Chat(c) => {
            let gen = Generation::run(&c.prompt, c.max_tokens);
            (chat_completion(&gen, &chat_id()), gen)
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn parse_lines(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn parse_takes_inputs_or_messages_only() {
        assert!(matches!(
            parse(br#"{"inputs":"a","parameters":{"details":true}}"#).unwrap(),
            LmiRequest::Generate(GenerateRequest { details: true, .. })
        ));
        assert!(matches!(
            parse(br#"{"messages":[{"role":"user","content":"a"}],"stream":true}"#).unwrap(),
            LmiRequest::Chat(ChatRequest { stream: true, .. })
        ));
        for (body, needle) in [
            (&br#"{"prompt":"a"}"#[..], "`inputs`"),
            (b"nope", "JSON"),
            (br#"{"inputs":""}"#, "cannot be empty"),
            (br#"{"messages":[]}"#, "cannot be empty"),
            (
                br#"{"inputs":"a","parameters":{"max_new_tokens":0}}"#,
                "strictly positive",
            ),
            (
                br#"{"inputs":"a","parameters":{"max_new_tokens":-2}}"#,
                "max_new_tokens",
            ),
            (
                br#"{"messages":[{"role":"user","content":"a"}],"max_tokens":0}"#,
                "strictly positive",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let body: Value = serde_json::from_str(&error_body("bad")).unwrap();
        assert_eq!(body, json!({"error": "bad", "code": 424}));
    }

    #[test]
    fn generate_is_an_object_with_lmi_details() {
        let gen = Generation::run("a b c", Some(2));
        assert_eq!(
            generate_response(&gen, "a b c", false),
            json!({"generated_text": "c b"})
        );
        assert_eq!(
            generate_response(&gen, "a b c", true)["details"],
            json!({"finish_reason": "length", "generated_tokens": 2, "inputs": "a b c"})
        );
        let gen = Generation::run("a", None);
        assert_eq!(
            generate_response(&gen, "a", true)["details"]["finish_reason"],
            "eos_token"
        );
    }

    #[test]
    fn token_lines_use_log_prob_and_end_with_the_text() {
        let gen = Generation::run("a b", None);
        let lines = parse_lines(&token_lines(&gen, "a b"));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["token"]["text"], "b");
        assert!(lines[0]["token"]["log_prob"].is_f64());
        assert!(lines[0]["token"].get("logprob").is_none());
        assert_eq!(lines[0]["generated_text"], Value::Null);
        assert_eq!(lines[0]["details"], Value::Null);
        assert_eq!(lines[1]["generated_text"], "b a");
        assert_eq!(
            lines[1]["details"],
            json!({"finish_reason": "eos_token", "generated_tokens": 2, "inputs": "a b"})
        );
        let empty = parse_lines(&token_lines(&Generation::run(" ", None), " "));
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0]["generated_text"], "");
        assert_eq!(&json_line("{}")[..], b"{}\n");
    }

    #[test]
    fn chat_shapes_have_an_id_and_the_role_first() {
        let gen = Generation::run("x y z", Some(2));
        let id = chat_id();
        assert!(id.starts_with("chatcmpl-") && id.len() == 25, "{id}");
        assert!(id[9..].chars().all(|c| c.is_ascii_hexdigit()));
        let full = chat_completion(&gen, &id);
        assert_eq!(full["id"], id.as_str());
        assert_eq!(full["model"], "lmi");
        assert_eq!(full["object"], "chat.completion");
        assert_eq!(full["choices"][0]["message"]["content"], "z y");
        assert_eq!(full["choices"][0]["finish_reason"], "length");
        assert_eq!(full["usage"]["total_tokens"], 5);

        let lines = parse_lines(&chat_lines(&gen, &id, false));
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "z"})
        );
        assert_eq!(lines[1]["choices"][0]["delta"], json!({"content": " y"}));
        assert_eq!(lines[0]["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(lines[1]["choices"][0]["finish_reason"], "length");
        assert!(lines
            .iter()
            .all(|l| l.get("usage").is_none() && l["id"] == id.as_str()));
        let lines = parse_lines(&chat_lines(&gen, &id, true));
        assert!(lines[0].get("usage").is_none());
        assert_eq!(lines[1]["usage"]["completion_tokens"], 2);
    }

    #[test]
    fn stream_lines_stop_with_the_error_line() {
        let gen = parse(br#"{"inputs":"a b c","stream":true}"#).unwrap();
        let lines = parse_lines(&stream_lines(&gen, Some(1)));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["token"]["text"], "c");
        assert_eq!(
            lines[1],
            json!({
                "token": {"id": -1, "text": "", "log_prob": -1.0},
                "generated_text": null,
                "details": {"finish_reason": "error", "generated_tokens": 1, "inputs": "a b c"},
            })
        );
        // No error when the generation is no longer than the threshold.
        assert_eq!(stream_lines(&gen, Some(3)).len(), 3);

        let chat =
            parse(br#"{"messages":[{"role":"user","content":"a b"}],"stream":true}"#).unwrap();
        let lines = parse_lines(&stream_lines(&chat, Some(0)));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["choices"][0]["finish_reason"], "error");
        assert_eq!(lines[0]["choices"][0]["delta"]["content"], STREAM_ERROR);
        let lines = parse_lines(&stream_lines(&chat, Some(1)));
        assert_eq!(lines[0]["id"], lines[1]["id"]);
        assert!(lines[1]["choices"][0]["delta"].get("role").is_none());
    }
}
