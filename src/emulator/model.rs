//! The deterministic fake model both emulators share, and the wire shapes of
//! the model servers it is served by: TGI (generate, and the OpenAI chat and
//! text completions in [`chat`]), DJL serving's LMI container ([`lmi`]) and
//! text-embeddings-inference (`embed.rs`: [`embed()`] and TEI's shapes).
//!
//! The text model answers with the words of its input in reverse order: the
//! first token is the last word, every later token carries a leading space,
//! and at most `max_new_tokens` (default [`DEFAULT_MAX_NEW_TOKENS`]) are
//! produced. So `"one two three"` generates `["three", " two", " one"]` and the
//! text `"three two one"`. The embedding model maps a text to an
//! [`EMBEDDING_DIM`]-dimensional vector derived from FNV hashes of its words.
//! Because the SageMaker and the Hugging Face emulator both call them, the same
//! input gives the same answer whichever backend serves it — which is what
//! lets a gateway test fail over between them and compare bodies.
//!
//! Token ids and logprobs are derived from the token text (FNV-1a), so they are
//! stable across runs too. The request parsers here play each server's
//! validation: they return the message the server would put in its error
//! (TGI's 422 `validation`, LMI's 424, TEI's `Validation`); each emulator
//! wraps that in its own error shape.

use serde_json::{json, Value};

pub mod chat;
mod embed;
pub mod lmi;

pub use chat::{
    chat_chunks, chat_completion, completion, completion_chunks, parse_chat, parse_completion,
    usage, ChatRequest, CompletionRequest,
};
pub use embed::{
    base64_f32, count_tokens, embed, embed_response, openai_embeddings, parse_embed,
    parse_openai_embed, tei_error, EmbedRequest, Embeddings, EncodingFormat, OpenAiEmbedRequest,
    EMBEDDING_DIM, MAX_CLIENT_BATCH_SIZE, MAX_INPUT_LENGTH, TEI_VALIDATION_STATUS,
};

/// Tokens generated when the request does not say.
pub const DEFAULT_MAX_NEW_TOKENS: u32 = 20;
/// What `/info` and chat completions report as the model.
pub const DEFAULT_MODEL_ID: &str = "infergate/reverse-words";
/// Token id of the end-of-sequence token, sent alone when nothing is generated.
pub const EOS_TOKEN_ID: u32 = 2;
// Generated sequences per request are capped so no input can make the
// emulator allocate without bound.
const MAX_RETURN_SEQUENCES: u64 = 64;

/// The model: the input's words in reverse order, each after the first with a
/// leading space, at most `max_new_tokens` of them.
pub fn generate(inputs: &str, max_new_tokens: Option<u32>) -> Vec<String> {
    let max = max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS) as usize;
    inputs
        .split_whitespace()
        .rev()
        .take(max)
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// The text a list of tokens decodes to.
pub fn generated_text(tokens: &[String]) -> String {
    tokens.concat()
}

/// A stable token id in a 32k vocabulary, above the special ids.
pub fn token_id(text: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    3 + h % 31_997
}

/// A stable, plausible log-probability for a token.
pub fn token_logprob(text: &str) -> f64 {
    -f64::from(token_id(text) % 1000) / 1000.0
}

/// Why generation stopped, as TGI names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` reached.
    Length,
    /// The model ran out of words.
    EosToken,
}

impl FinishReason {
    pub fn as_tgi(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::EosToken => "eos_token",
        }
    }

    pub fn as_openai(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::EosToken => "stop",
        }
    }
}

/// One run of the model with the bookkeeping the wire shapes need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    pub tokens: Vec<String>,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
}

impl Generation {
    pub fn run(inputs: &str, max_new_tokens: Option<u32>) -> Self {
        let tokens = generate(inputs, max_new_tokens);
        let prompt_tokens = inputs.split_whitespace().count();
        let finish_reason = if prompt_tokens > tokens.len() {
            FinishReason::Length
        } else {
            FinishReason::EosToken
        };
        Generation {
            tokens,
            prompt_tokens,
            finish_reason,
        }
    }

    pub fn text(&self) -> String {
        generated_text(&self.tokens)
    }

    fn details(&self) -> Value {
        json!({
            "finish_reason": self.finish_reason.as_tgi(),
            "generated_tokens": self.tokens.len(),
            "seed": null,
        })
    }
}

// === TGI request parsing ===

/// A TGI `generate` request (`/`, `/generate`, `/generate_stream`, and
/// SageMaker `/invocations` with `inputs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateRequest {
    pub inputs: String,
    pub max_new_tokens: Option<u32>,
    pub details: bool,
    pub stream: bool,
}

/// What a TGI container is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TgiRequest {
    Generate(GenerateRequest),
    Chat(ChatRequest),
    Completion(CompletionRequest),
}

impl TgiRequest {
    pub fn stream(&self) -> bool {
        match self {
            TgiRequest::Generate(g) => g.stream,
            TgiRequest::Chat(c) => c.stream,
            TgiRequest::Completion(c) => c.stream,
        }
    }

    /// The model's run for the request. A prompt containing `alter` (when
    /// set) gets its first generated token replaced by `altered`: a model
    /// that answers some inputs otherwise, for shadow tests.
    pub fn generation(&self, alter: Option<&str>) -> Generation {
        let (prompt, max) = match self {
            TgiRequest::Generate(g) => (&g.inputs, g.max_new_tokens),
            TgiRequest::Chat(c) => (&c.prompt, c.max_tokens),
            TgiRequest::Completion(c) => (&c.prompt, c.max_tokens),
        };
        let mut gen = Generation::run(prompt, max);
        if alter.is_some_and(|a| prompt.contains(a)) {
            if let Some(first) = gen.tokens.first_mut() {
                "altered".clone_into(first);
            }
        }
        gen
    }
}

fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(
            "Failed to deserialize the JSON body into the target type: expected a JSON object"
                .to_owned(),
        ),
        Err(e) => Err(format!("Failed to parse the request body as JSON: {e}")),
    }
}

fn opt_u32(map: &serde_json::Map<String, Value>, key: &str) -> Result<Option<u32>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("Failed to deserialize the JSON body into the target type: `{key}` must be a non-negative integer")),
    }
}

fn opt_bool(map: &serde_json::Map<String, Value>, key: &str) -> Result<bool, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!(
            "Failed to deserialize the JSON body into the target type: `{key}` must be a boolean"
        )),
    }
}

fn positive(max: Option<u32>, key: &str) -> Result<Option<u32>, String> {
    if max == Some(0) {
        return Err(format!(
            "Input validation error: `{key}` must be strictly positive"
        ));
    }
    Ok(max)
}

/// Parses a TGI generate body; the error is TGI's 422 validation message.
pub fn parse_generate(body: &[u8]) -> Result<GenerateRequest, String> {
    let map = parse_object(body)?;
    let inputs = match map.get("inputs") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err("Failed to deserialize the JSON body into the target type: inputs: invalid type, expected a string".to_owned())
        }
        None => return Err("Failed to deserialize the JSON body into the target type: missing field `inputs`".to_owned()),
    };
    if inputs.is_empty() {
        return Err("Input validation error: `inputs` cannot be empty".to_owned());
    }
    let params = match map.get("parameters") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err("Failed to deserialize the JSON body into the target type: parameters: expected an object".to_owned()),
    };
    Ok(GenerateRequest {
        inputs,
        max_new_tokens: positive(opt_u32(&params, "max_new_tokens")?, "max_new_tokens")?,
        details: opt_bool(&params, "details")?,
        stream: opt_bool(&map, "stream")?,
    })
}

/// Parses a TGI `/invocations` body: `messages` means chat, `prompt` a text
/// completion, anything else generate.
pub fn parse_invocation(body: &[u8]) -> Result<TgiRequest, String> {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let has = |key: &str| parsed.as_ref().is_some_and(|v| v.get(key).is_some());
    if has("messages") {
        parse_chat(body).map(TgiRequest::Chat)
    } else if has("prompt") {
        parse_completion(body).map(TgiRequest::Completion)
    } else {
        parse_generate(body).map(TgiRequest::Generate)
    }
}

/// Parses a JumpStart text2text JSON body: `(text_inputs, max_length,
/// num_return_sequences)`.
pub fn parse_jumpstart(body: &[u8]) -> Result<(String, Option<u32>, usize), String> {
    let map = parse_object(body)?;
    let text = match map.get("text_inputs") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("'text_inputs' must be a string".to_owned()),
        None => return Err("'text_inputs'".to_owned()),
    };
    let max_length = positive(opt_u32(&map, "max_length")?, "max_length")?;
    let n = match map.get("num_return_sequences") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=MAX_RETURN_SEQUENCES) => n as usize,
            _ => {
                return Err(format!(
                    "num_return_sequences must be an integer between 1 and {MAX_RETURN_SEQUENCES}"
                ))
            }
        },
    };
    Ok((text, max_length, n))
}

// === TGI / OpenAI response shapes ===

/// `{"generated_text": …}` (plus `details` when asked), TGI's `/generate`.
pub fn generate_response(gen: &Generation, details: bool) -> Value {
    let mut v = json!({ "generated_text": gen.text() });
    if details {
        v["details"] = gen.details();
    }
    v
}

/// One SSE event: `data:{json}\n\n` (TGI puts no space after the colon).
pub fn sse(data: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!("data:{data}\n\n"))
}

/// The JSON of TGI's `/generate_stream` events; `generated_text` (and
/// `details`, when asked) only on the last. An empty generation sends the
/// end-of-sequence token alone, as TGI does.
pub fn generate_stream_events(gen: &Generation, details: bool) -> Vec<String> {
    let n = gen.tokens.len();
    if n == 0 {
        let ev = json!({
            "index": 0,
            "token": {"id": EOS_TOKEN_ID, "text": "</s>", "logprob": 0.0, "special": true},
            "generated_text": "",
            "details": if details { gen.details() } else { Value::Null },
        });
        return vec![ev.to_string()];
    }
    gen.tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let last = i + 1 == n;
            json!({
                "index": i,
                "token": {"id": token_id(t), "text": t, "logprob": token_logprob(t), "special": false},
                "generated_text": if last { Value::String(gen.text()) } else { Value::Null },
                "details": if last && details { gen.details() } else { Value::Null },
            })
            .to_string()
        })
        .collect()
}

/// TGI's mid-stream error event payload.
pub fn stream_error_event() -> String {
    json!({
        "error": "Request failed during generation: Server error: the stream was broken (injected by the infergate emulator)",
        "error_type": "generation",
    })
    .to_string()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// TGI reports its version here; the emulator says what it is.
pub const SYSTEM_FINGERPRINT: &str = "3.0.0-infergate-emulator";

/// The SSE body chunks of a streamed TGI request, one per token, and whether a
/// `data:[DONE]` terminator follows them (chat, completions) or not
/// (generate), for the run `gen` of `req` ([`TgiRequest::generation`]).
pub fn stream_events(req: &TgiRequest, gen: &Generation, model_id: &str) -> (Vec<String>, bool) {
    match req {
        TgiRequest::Generate(g) => (generate_stream_events(gen, g.details), false),
        TgiRequest::Chat(c) => (chat_chunks(gen, model_id, c.include_usage), true),
        TgiRequest::Completion(_) => (completion_chunks(gen, model_id), true),
    }
}

/// The whole SSE text of a streamed TGI request, `data:[DONE]` included when
/// it has one: what SageMaker hands back when a streaming body arrives on the
/// buffered route.
pub fn sse_text(req: &TgiRequest, model_id: &str) -> (bytes::Bytes, usize) {
    let (events, done) = stream_events(req, &req.generation(None), model_id);
    let mut text: Vec<u8> = events.iter().flat_map(|e| sse(e).to_vec()).collect();
    if done {
        text.extend_from_slice(&sse("[DONE]"));
    }
    (bytes::Bytes::from(text), events.len())
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn reverses_words_with_leading_spaces() {
        let t = generate("one two  three", None);
        assert_eq!(t, vec!["three", " two", " one"]);
        assert_eq!(generated_text(&t), "three two one");
        assert_eq!(generate("a b c d", Some(2)), vec!["d", " c"]);
        assert!(generate("   ", None).is_empty());
        let long: String = (0..50).map(|i| format!("w{i} ")).collect();
        assert_eq!(generate(&long, None).len(), DEFAULT_MAX_NEW_TOKENS as usize);
    }

    #[test]
    fn finish_reason_and_ids_are_stable() {
        assert_eq!(
            Generation::run("a b c", Some(2)).finish_reason,
            FinishReason::Length
        );
        assert_eq!(
            Generation::run("a b", Some(2)).finish_reason,
            FinishReason::EosToken
        );
        assert_eq!(token_id("hi"), token_id("hi"));
        assert_ne!(token_id("hi"), token_id(" hi"));
        assert!(token_id("x") >= 3 && token_id("x") < 32_000);
        assert!(token_logprob("x") <= 0.0);
    }

    #[test]
    fn parse_generate_validates_like_tgi() {
        let g = parse_generate(
            br#"{"inputs":"a b","parameters":{"max_new_tokens":3,"details":true},"stream":true}"#,
        )
        .unwrap();
        assert_eq!(g.max_new_tokens, Some(3));
        assert!(g.details && g.stream);
        assert!(parse_generate(b"not json").unwrap_err().contains("JSON"));
        assert!(parse_generate(br#"{"parameters":{}}"#)
            .unwrap_err()
            .contains("missing field `inputs`"));
        assert!(parse_generate(br#"{"inputs":""}"#)
            .unwrap_err()
            .contains("cannot be empty"));
        assert!(
            parse_generate(br#"{"inputs":"a","parameters":{"max_new_tokens":0}}"#)
                .unwrap_err()
                .contains("strictly positive")
        );
        assert!(parse_generate(br#"{"inputs":"a","parameters":{"max_new_tokens":-1}}"#).is_err());
        assert!(parse_generate(br#"[1]"#).is_err());
    }

    #[test]
    fn parse_invocation_picks_the_task_by_its_fields() {
        let chat = br#"{"messages":[{"role":"user","content":"a"}],"prompt":"b"}"#;
        assert!(matches!(
            parse_invocation(chat).unwrap(),
            TgiRequest::Chat(_)
        ));
        assert!(matches!(
            parse_invocation(br#"{"prompt":["a b"],"stream":true}"#).unwrap(),
            TgiRequest::Completion(CompletionRequest { stream: true, .. })
        ));
        assert!(matches!(
            parse_invocation(br#"{"inputs":"a"}"#).unwrap(),
            TgiRequest::Generate(_)
        ));
        assert!(parse_invocation(br#"{"prompt":7}"#)
            .unwrap_err()
            .contains("prompt"));
        assert!(parse_invocation(b"{").unwrap_err().contains("JSON"));
    }

    #[test]
    fn sse_text_ends_completions_with_done() {
        let req = parse_invocation(br#"{"prompt":"a b","stream":true}"#).unwrap();
        let (text, tokens) = sse_text(&req, "m");
        let text = std::str::from_utf8(&text).unwrap();
        assert_eq!(tokens, 2);
        assert!(text.starts_with("data:{"), "{text}");
        assert!(text.ends_with("\n\ndata:[DONE]\n\n"), "{text}");
        assert_eq!(text.matches("text_completion").count(), 2);
        let req = parse_invocation(br#"{"inputs":"a b","stream":true}"#).unwrap();
        let (text, _) = sse_text(&req, "m");
        assert!(!std::str::from_utf8(&text).unwrap().contains("[DONE]"));
    }

    #[test]
    fn a_marked_prompt_is_answered_otherwise_streamed_or_not() {
        let marked = parse_invocation(br#"{"inputs":"a b MARK","stream":true}"#).unwrap();
        let gen = marked.generation(Some("MARK"));
        assert_eq!(gen.text(), "altered b a");
        let (events, _) = stream_events(&marked, &gen, "m");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert_eq!(last["generated_text"], "altered b a");
        assert_eq!(marked.generation(None).text(), "MARK b a");
        let plain = parse_invocation(br#"{"prompt":"a b"}"#).unwrap();
        assert_eq!(plain.generation(Some("MARK")).text(), "b a");
    }

    #[test]
    fn parse_jumpstart_bounds_sequences() {
        assert_eq!(
            parse_jumpstart(br#"{"text_inputs":"a b","max_length":5,"num_return_sequences":2}"#)
                .unwrap(),
            ("a b".to_owned(), Some(5), 2)
        );
        assert!(parse_jumpstart(br#"{"text_inputs":"a","num_return_sequences":1000000}"#).is_err());
        assert!(parse_jumpstart(br#"{"inputs":"a"}"#).is_err());
    }

    #[test]
    fn stream_events_put_generated_text_on_the_last() {
        let gen = Generation::run("a b", None);
        let evs = generate_stream_events(&gen, false);
        assert_eq!(evs.len(), 2);
        let first: Value = serde_json::from_str(&evs[0]).unwrap();
        let last: Value = serde_json::from_str(&evs[1]).unwrap();
        assert_eq!(first["generated_text"], Value::Null);
        assert_eq!(first["token"]["text"], "b");
        assert_eq!(last["token"]["text"], " a");
        assert_eq!(last["generated_text"], "b a");
        let empty = generate_stream_events(&Generation::run(" ", None), true);
        let only: Value = serde_json::from_str(&empty[0]).unwrap();
        assert_eq!(only["token"]["special"], true);
        assert_eq!(only["details"]["generated_tokens"], 0);
        assert_eq!(&sse("{}")[..], b"data:{}\n\n");
    }
}
