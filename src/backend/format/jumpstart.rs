//! JumpStart's legacy text2text containers: they speak `{"text_inputs":
//! …, "max_length": …}` in and `{"generated_texts": […]}` out, where the
//! canonical shape is `{"inputs": …, "parameters": {…}}` in and
//! `[{"generated_text": …}]` out; rewritten both ways so the client sees
//! the same answer whichever backend served it.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{not_json, AdaptError};
use crate::config::Container;

/// Canonical parameter names that JumpStart text2text spells differently.
const RENAMED: &[(&str, &str)] = &[("max_new_tokens", "max_length")];

/// Rewrites a canonical request for a JumpStart text2text container.
pub fn jumpstart_request(body: &[u8], backend: &str) -> Result<Bytes, AdaptError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| not_json(backend, Container::JumpStartText2Text, &e))?;
    let Value::Object(mut obj) = value else {
        return Err(AdaptError::Shape(
            "the request body must be a JSON object with \"inputs\"".into(),
        ));
    };
    let inputs = match obj.remove("inputs") {
        Some(v @ Value::String(_)) => v,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Value::Array(items),
        Some(_) => {
            return Err(AdaptError::Shape(
                "\"inputs\" must be a string or a list of strings".into(),
            ))
        }
        None => return Err(AdaptError::Shape("missing \"inputs\"".into())),
    };
    let mut out = Map::new();
    out.insert("text_inputs".into(), inputs);
    match obj.remove("parameters") {
        None | Some(Value::Null) => {}
        Some(Value::Object(params)) => {
            for (k, v) in params {
                let key = RENAMED
                    .iter()
                    .find(|(from, _)| *from == k)
                    .map(|(_, to)| (*to).to_string())
                    .unwrap_or(k);
                out.insert(key, v);
            }
        }
        Some(_) => return Err(AdaptError::Shape("\"parameters\" must be an object".into())),
    }
    serde_json::to_vec(&Value::Object(out))
        .map(Bytes::from)
        .map_err(|e| AdaptError::Shape(e.to_string()))
}

/// Rewrites a JumpStart text2text answer into the canonical
/// `[{"generated_text": …}]`. `None` when the answer is not that shape.
pub fn jumpstart_response(body: &[u8]) -> Option<Bytes> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let texts: Vec<Value> = match &value {
        Value::Object(obj) => match (obj.get("generated_texts"), obj.get("generated_text")) {
            (Some(Value::Array(texts)), _) => texts.clone(),
            (None, Some(text @ Value::String(_))) => vec![text.clone()],
            _ => return None,
        },
        _ => return None,
    };
    let out: Vec<Value> = texts
        .into_iter()
        .map(|t| {
            let mut m = Map::new();
            m.insert("generated_text".into(), t);
            Value::Object(m)
        })
        .collect();
    serde_json::to_vec(&out).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_renames_inputs_and_flattens_parameters() {
        let body = json!({"inputs": "hello", "parameters": {"max_new_tokens": 5, "top_k": 3}});
        let out = jumpstart_request(body.to_string().as_bytes(), "sm").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"text_inputs": "hello", "max_length": 5, "top_k": 3})
        );
    }

    #[test]
    fn request_rejects_what_it_cannot_adapt() {
        let err = jumpstart_request(b"not json", "sm").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("the request body must be JSON for this route's backend \"sm\" (container jumpstart-text2text)"));
        assert_eq!(
            jumpstart_request(b"{}", "sm").unwrap_err(),
            AdaptError::Shape("missing \"inputs\"".into())
        );
        assert!(jumpstart_request(br#"{"inputs": 3}"#, "sm").is_err());
        assert!(jumpstart_request(br#"{"inputs": "x", "parameters": 1}"#, "sm").is_err());
    }

    #[test]
    fn response_becomes_the_canonical_list() {
        let out = jumpstart_response(br#"{"generated_texts": ["a", "b"]}"#).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!([{"generated_text": "a"}, {"generated_text": "b"}]));
        let out = jumpstart_response(br#"{"generated_text": "a"}"#).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!([{"generated_text": "a"}]));
        assert!(jumpstart_response(b"[1]").is_none());
        assert!(jumpstart_response(b"nope").is_none());
    }
}
