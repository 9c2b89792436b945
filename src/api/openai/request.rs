//! An OpenAI request's body as the core's operation: the `model` (the
//! route's name), what the request asks (stream, usage, how to encode
//! vectors), and the body in the operation's shape. What the door cannot
//! pass on is refused here with the parameter named.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::answer::Encoding;
use super::errors::OaiError;
use crate::config::Operation;

/// One request of the door, read.
#[derive(Debug)]
pub struct Asked {
    pub model: String,
    pub body: Bytes,
    pub stream: bool,
    pub include_usage: bool,
    pub encoding: Encoding,
}

/// The body of a request for `op`, checked; `route` is the route when the
/// path names it (the TGI door), and then any `model` in the body is not.
pub fn read(op: Operation, raw: &[u8], route: Option<&str>) -> Result<Asked, OaiError> {
    let mut body = match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(OaiError::invalid(
                None,
                "the request body must be a JSON object",
            ))
        }
        Err(e) => {
            return Err(OaiError::invalid(
                None,
                format!("the request body is not valid JSON: {e}"),
            ))
        }
    };
    let model = match (route, body.remove("model")) {
        (Some(route), _) => route.to_string(),
        (None, Some(Value::String(m))) if !m.is_empty() => m,
        (None, Some(_)) => {
            return Err(OaiError::invalid(Some("model"), "`model` must be a string"))
        }
        (None, None) => {
            return Err(OaiError::invalid(
                Some("model"),
                "you must provide a model parameter (the gateway's route name)",
            ))
        }
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(OaiError::invalid(
                Some("stream"),
                "`stream` must be a boolean",
            ))
        }
    };
    if !stream && body.get("stream_options").is_some_and(|o| !o.is_null()) {
        return Err(OaiError::invalid(
            Some("stream_options"),
            "`stream_options` is only allowed when `stream` is true",
        ));
    }
    let include_usage = stream
        && body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let mut asked = Asked {
        model,
        body: Bytes::new(),
        stream,
        include_usage,
        encoding: Encoding::Float,
    };
    asked.body = match op {
        Operation::Chat => chat(body)?,
        Operation::Completion => completion(body)?,
        Operation::Embed => {
            let (inputs, encoding) = embeddings(body)?;
            asked.encoding = encoding;
            asked.stream = false;
            inputs
        }
        Operation::Predict | Operation::Generate => to_bytes(body),
    };
    Ok(asked)
}

fn to_bytes(body: Map<String, Value>) -> Bytes {
    Bytes::from(Value::Object(body).to_string())
}

/// `n` other than 1: the containers answer one choice.
fn one_choice(body: &Map<String, Value>) -> Result<(), OaiError> {
    match body.get("n") {
        None | Some(Value::Null) => Ok(()),
        Some(n) if n.as_u64() == Some(1) => Ok(()),
        Some(_) => Err(OaiError::invalid(
            Some("n"),
            "`n` must be 1: the gateway's backends answer one choice",
        )),
    }
}

fn chat(body: Map<String, Value>) -> Result<Bytes, OaiError> {
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(OaiError::invalid(
                Some("messages"),
                "`messages` must not be empty",
            ))
        }
        _ => {
            return Err(OaiError::invalid(
                Some("messages"),
                "`messages` is required and must be a list of messages",
            ))
        }
    }
    one_choice(&body)?;
    Ok(to_bytes(body))
}

fn completion(body: Map<String, Value>) -> Result<Bytes, OaiError> {
    match body.get("prompt") {
        Some(Value::String(_) | Value::Array(_)) => {}
        _ => {
            return Err(OaiError::invalid(
                Some("prompt"),
                "`prompt` is required and must be a string",
            ))
        }
    }
    one_choice(&body)?;
    Ok(to_bytes(body))
}

/// `{"inputs": …}` for TEI, and how the caller wants the vectors.
fn embeddings(mut body: Map<String, Value>) -> Result<(Bytes, Encoding), OaiError> {
    let input = body.remove("input").unwrap_or(Value::Null);
    let texts = match &input {
        Value::String(_) => true,
        Value::Array(items) if !items.is_empty() => {
            items.iter().all(Value::is_string)
                || items.iter().all(Value::is_u64)
                || items
                    .iter()
                    .all(|i| i.as_array().is_some_and(|t| t.iter().all(Value::is_u64)))
        }
        _ => false,
    };
    if !texts {
        return Err(OaiError::invalid(
            Some("input"),
            "`input` must be a string, a non-empty list of strings, or token ids",
        ));
    }
    let encoding = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(_) => {
            return Err(OaiError::invalid(
                Some("encoding_format"),
                "`encoding_format` must be \"float\" or \"base64\"",
            ))
        }
    };
    if body.get("dimensions").is_some_and(|d| !d.is_null()) {
        return Err(OaiError::invalid(
            Some("dimensions"),
            "`dimensions` is not supported: the model's vectors have their own size",
        ));
    }
    let mut out = Map::new();
    out.insert("inputs".into(), input);
    Ok((to_bytes(out), encoding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ask(op: Operation, v: Value) -> Result<Asked, OaiError> {
        read(op, v.to_string().as_bytes(), None)
    }

    #[test]
    fn a_chat_request_names_its_route_and_keeps_the_rest() {
        let a = ask(
            Operation::Chat,
            json!({"model": "r", "messages": [{"role": "user", "content": "a"}], "stream": true,
                "stream_options": {"include_usage": true}, "tools": []}),
        )
        .unwrap();
        assert_eq!(a.model, "r");
        assert!(a.stream && a.include_usage);
        let sent: Value = serde_json::from_slice(&a.body).unwrap();
        assert!(sent.get("model").is_none());
        assert_eq!(sent["tools"], json!([]));
    }

    #[test]
    fn what_cannot_be_passed_on_names_its_parameter() {
        for (op, body, param) in [
            (Operation::Chat, json!({"messages": []}), "model"),
            (Operation::Chat, json!({"model": "r"}), "messages"),
            (
                Operation::Chat,
                json!({"model": "r", "messages": [{}], "n": 2}),
                "n",
            ),
            (
                Operation::Chat,
                json!({"model": "r", "messages": [{}], "stream": "yes"}),
                "stream",
            ),
            (Operation::Completion, json!({"model": "r"}), "prompt"),
            (
                Operation::Chat,
                json!({"model": "r", "messages": [{}], "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (
                Operation::Embed,
                json!({"model": "r", "input": []}),
                "input",
            ),
            (
                Operation::Embed,
                json!({"model": "r", "input": "a", "dimensions": 8}),
                "dimensions",
            ),
            (
                Operation::Embed,
                json!({"model": "r", "input": "a", "encoding_format": "hex"}),
                "encoding_format",
            ),
        ] {
            let e = ask(op, body.clone()).unwrap_err();
            assert_eq!(e.param, Some(param), "{body}");
            assert_eq!(e.status, 400);
        }
        assert!(read(Operation::Chat, b"not json", None).is_err());
        let a = read(
            Operation::Chat,
            br#"{"model": "tgi", "messages": [{}]}"#,
            Some("r"),
        )
        .unwrap();
        assert_eq!(a.model, "r");
    }

    #[test]
    fn embeddings_go_as_inputs() {
        let a = ask(
            Operation::Embed,
            json!({"model": "r", "input": ["a", "b"], "encoding_format": "base64"}),
        )
        .unwrap();
        assert_eq!(a.encoding, Encoding::Base64);
        let sent: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(sent, json!({"inputs": ["a", "b"]}));
        assert!(ask(Operation::Embed, json!({"model": "r", "input": [[1, 2]]})).is_ok());
    }
}
