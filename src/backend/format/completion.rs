//! OpenAI completions for containers that only generate (LMI, the
//! toolkit, JumpStart): the request as a generate request, and the
//! generate answer (or a stream's token) as a `text_completion`.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{to_bytes, AdaptError};
use crate::protocol::openai::finish_reason;

/// Which generate dialect the request is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// LMI: TGI's parameters, with `details` for the finish reason and
    /// the token count.
    Lmi,
    /// The toolkit's pipelines: no `details` (an unknown keyword fails the
    /// pipeline), and `return_full_text: false`.
    Toolkit,
    /// JumpStart: the plain parameters; `jumpstart_request` renames them.
    JumpStart,
}

/// Parameters of OpenAI's that change the answer's shape, which a
/// generate container cannot honour: refused rather than ignored.
const UNSUPPORTED: [&str; 4] = ["echo", "logprobs", "suffix", "best_of"];

/// The OpenAI completions request `body` as `{"inputs", "parameters"}`.
pub(super) fn to_generate(
    mut body: Map<String, Value>,
    dialect: Dialect,
) -> Result<Map<String, Value>, AdaptError> {
    let shape = |m: &str| AdaptError::Shape(m.to_string());
    let prompt = match body.remove("prompt") {
        Some(Value::String(s)) => s,
        Some(Value::Array(items)) => match <[Value; 1]>::try_from(items) {
            Ok([Value::String(s)]) => s,
            _ => return Err(shape(
                "\"prompt\" must be one string: this route's backends take one prompt per request",
            )),
        },
        Some(_) => return Err(shape("\"prompt\" must be a string")),
        None => return Err(shape("missing \"prompt\"")),
    };
    for key in UNSUPPORTED {
        match body.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Number(n)) if key == "best_of" && n.as_u64() == Some(1) => {}
            Some(_) => {
                return Err(shape(&format!(
                    "\"{key}\" is not supported by this route's backends"
                )))
            }
        }
    }
    if let Some(n) = body.get("n").filter(|n| !n.is_null()) {
        if n.as_u64() != Some(1) {
            return Err(shape(
                "\"n\" must be 1: this route's backends answer one choice",
            ));
        }
    }
    let mut params = Map::new();
    if let Some(max) = body.remove("max_tokens").filter(|v| !v.is_null()) {
        params.insert("max_new_tokens".into(), max);
    }
    for key in ["top_p", "seed", "frequency_penalty"] {
        if let Some(v) = body.remove(key).filter(|v| !v.is_null()) {
            params.insert(key.into(), v);
        }
    }
    // OpenAI's 0 means greedy, which TGI refuses as a temperature: left
    // out, decoding is greedy anyway.
    if let Some(t) = body
        .remove("temperature")
        .filter(|t| t.as_f64().is_some_and(|t| t > 0.0))
    {
        params.insert("temperature".into(), t);
        params.insert("do_sample".into(), Value::Bool(true));
    }
    match body.remove("stop") {
        None | Some(Value::Null) => {}
        Some(s @ Value::String(_)) => {
            params.insert("stop".into(), Value::Array(vec![s]));
        }
        Some(list @ Value::Array(_)) => {
            params.insert("stop".into(), list);
        }
        Some(_) => return Err(shape("\"stop\" must be a string or a list of strings")),
    }
    match dialect {
        Dialect::Lmi => {
            params.insert("details".into(), Value::Bool(true));
        }
        Dialect::Toolkit => {
            params.insert("return_full_text".into(), Value::Bool(false));
        }
        Dialect::JumpStart => {}
    }
    let mut out = Map::new();
    out.insert("inputs".into(), Value::String(prompt));
    out.insert("parameters".into(), Value::Object(params));
    if let Some(stream) = body.remove("stream") {
        out.insert("stream".into(), stream);
    }
    Ok(out)
}

/// A generate answer, `{"generated_text", "details"?}`, as a
/// `text_completion`; `None` when it is not one.
pub(super) fn of_generate(generated: &[u8]) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(generated).ok()?;
    let text = v.get("generated_text")?.as_str()?;
    let details = v.get("details");
    let reason = details
        .and_then(|d| d.get("finish_reason"))
        .and_then(Value::as_str)
        .map_or("stop", finish_reason);
    let mut out = completion(text, Some(reason));
    out["usage"] = usage(details);
    Some(to_bytes(&out))
}

/// A `text_completion` (or one of its stream's chunks) with one choice.
pub(super) fn completion(text: &str, finish: Option<&str>) -> Value {
    json!({
        "id": "",
        "object": "text_completion",
        "created": 0,
        "model": "",
        "choices": [{
            "index": 0,
            "text": text,
            "logprobs": null,
            "finish_reason": finish,
        }],
    })
}

/// OpenAI's `usage` from generate `details`: the generated tokens they
/// count (none from a container that gives no details), and the prompt's
/// when they count it. Always there: OpenAI's clients (LangChain's among
/// them) read it from every completion.
fn usage(details: Option<&Value>) -> Value {
    let count = |k: &str| {
        details
            .and_then(|d| d.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let (prompt, generated) = (count("prompt_tokens"), count("generated_tokens"));
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn a_completion_request_becomes_generate() {
        let body = map(json!({"model": "r", "prompt": ["one two"], "max_tokens": 5,
            "temperature": 0, "stop": "x", "stream": true}));
        let out = to_generate(body, Dialect::Lmi).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"inputs": "one two", "stream": true, "parameters": {
                "max_new_tokens": 5, "stop": ["x"], "details": true}})
        );
        let out = to_generate(
            map(json!({"prompt": "a", "temperature": 0.5})),
            Dialect::Toolkit,
        )
        .unwrap();
        assert_eq!(
            out["parameters"],
            json!({"temperature": 0.5, "do_sample": true, "return_full_text": false})
        );
    }

    #[test]
    fn what_generate_cannot_do_is_refused() {
        for body in [
            json!({}),
            json!({"prompt": ["a", "b"]}),
            json!({"prompt": 1}),
            json!({"prompt": "a", "echo": true}),
            json!({"prompt": "a", "n": 2}),
            json!({"prompt": "a", "logprobs": 2}),
        ] {
            assert!(
                to_generate(map(body.clone()), Dialect::Lmi).is_err(),
                "{body}"
            );
        }
        assert!(to_generate(
            map(json!({"prompt": "a", "n": 1, "best_of": 1})),
            Dialect::Lmi
        )
        .is_ok());
    }

    #[test]
    fn a_generate_answer_becomes_a_completion() {
        let out = of_generate(br#"{"generated_text": "b a", "details": {"finish_reason": "eos_token", "generated_tokens": 2}}"#).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "b a");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 0, "completion_tokens": 2, "total_tokens": 2})
        );
        assert!(of_generate(b"[]").is_none());
    }
}
