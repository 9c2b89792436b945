//! One answer shape whatever served it: the core's answer of each
//! operation as OpenAI's API gives it. A fresh `id` in OpenAI's form per
//! request (TGI sends `""`; the gateway's is the same whichever container
//! served), `object`, `created`, `model` = the route,
//! every `finish_reason` in OpenAI's set; embeddings from TEI's raw array
//! of vectors, as floats or as base64 (what the `openai` client asks for
//! by default).

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::protocol::openai::{base64_f32, finish_reason};

/// What an answer (or a stream's chunks) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

impl Kind {
    fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    /// A fresh id in OpenAI's form (`chatcmpl-…`, `cmpl-…`).
    pub fn new_id(self) -> String {
        let prefix = match self {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        format!(
            "{prefix}-{:016x}{:08x}",
            fastrand::u64(..),
            fastrand::u32(..)
        )
    }
}

/// The seconds since the epoch, for `created`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The members every answer and chunk of a request shares.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Stamp {
    pub fn new(kind: Kind, model: &str) -> Self {
        Self {
            kind,
            id: kind.new_id(),
            created: now(),
            model: model.to_string(),
        }
    }

    /// Sets `id`, `object`, `created` and `model` on `v`, and maps its
    /// choices' `finish_reason`s.
    pub fn apply(&self, v: &mut Map<String, Value>, chunk: bool) {
        v.insert("id".into(), Value::String(self.id.clone()));
        v.insert("object".into(), Value::from(self.kind.object(chunk)));
        v.insert("created".into(), Value::from(self.created));
        v.insert("model".into(), Value::String(self.model.clone()));
        if let Some(Value::Array(choices)) = v.get_mut("choices") {
            for (i, choice) in choices.iter_mut().enumerate() {
                let Value::Object(choice) = choice else {
                    continue;
                };
                choice.entry("index").or_insert_with(|| Value::from(i));
                if let Some(Value::String(reason)) = choice.get("finish_reason") {
                    let mapped = finish_reason(reason);
                    choice.insert("finish_reason".into(), Value::from(mapped));
                }
            }
        }
    }
}

/// A chat completion or a completion, stamped; `None` when the answer is
/// not one (no `choices`).
pub fn completion(raw: &[u8], stamp: &Stamp) -> Option<Bytes> {
    let Ok(Value::Object(mut v)) = serde_json::from_slice::<Value>(raw) else {
        return None;
    };
    if !v.get("choices").is_some_and(Value::is_array) {
        return None;
    }
    stamp.apply(&mut v, false);
    Some(Bytes::from(Value::Object(v).to_string()))
}

/// How the caller wants its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    /// Little-endian `f32`s, base64.
    Base64,
}

/// TEI's `[[number]]` as OpenAI's embeddings list; `tokens` is what the
/// backend counted, when it did. `None` when the answer is not vectors.
/// The floats are written as `f32`s (their shortest form), as TEI wrote
/// them.
pub fn embeddings(
    raw: &[u8],
    model: &str,
    encoding: Encoding,
    tokens: Option<u64>,
) -> Option<Bytes> {
    let vectors: Vec<Vec<f32>> = serde_json::from_slice(raw).ok()?;
    let data: Vec<Embedding<'_>> = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| Embedding {
            object: "embedding",
            index,
            embedding: match encoding {
                Encoding::Float => Vector::Float(vector),
                Encoding::Base64 => Vector::Base64(base64_f32(vector)),
            },
        })
        .collect();
    let tokens = tokens.unwrap_or(0);
    let list = List {
        object: "list",
        data,
        model,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    serde_json::to_vec(&list).ok().map(Bytes::from)
}

#[derive(serde::Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Embedding<'a>>,
    model: &'a str,
    usage: Usage,
}

#[derive(serde::Serialize)]
struct Embedding<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Float(&'a [f32]),
    Base64(String),
}

#[derive(serde::Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tgi_chat_answer_gets_an_id_the_route_and_openais_reasons() {
        let stamp = Stamp::new(Kind::Chat, "route");
        let raw = br#"{"id": "", "object": "chat.completion", "created": 1, "model": "tgi",
            "choices": [{"message": {"role": "assistant", "content": "b a"}, "finish_reason": "eos_token"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}}"#;
        let v: Value = serde_json::from_slice(&completion(raw, &stamp).unwrap()).unwrap();
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(v["model"], "route");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["choices"][0]["index"], 0);
        assert_eq!(v["usage"]["total_tokens"], 4);
        assert!(completion(b"[]", &stamp).is_none());
    }

    #[test]
    fn vectors_become_an_embeddings_list() {
        let raw = b"[[1.0, -2.5], [0.5, 0.0]]";
        let v: Value =
            serde_json::from_slice(&embeddings(raw, "r", Encoding::Float, Some(3)).unwrap())
                .unwrap();
        assert_eq!(v["data"][1]["embedding"], json!([0.5, 0.0]));
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        let v: Value =
            serde_json::from_slice(&embeddings(raw, "r", Encoding::Base64, None).unwrap()).unwrap();
        // 1.0f32 = 00 00 80 3f, -2.5f32 = 00 00 20 c0.
        assert_eq!(v["data"][0]["embedding"], "AACAPwAAIMA=");
        assert!(embeddings(br#"{"a": 1}"#, "r", Encoding::Float, None).is_none());
    }
}
