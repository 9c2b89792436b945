//! The fake embedding model and text-embeddings-inference's (TEI) wire shapes:
//! `/embed` (`{"inputs", "normalize", "truncate"}` → `[[f32]]`), the
//! OpenAI-compatible `/v1/embeddings`, and TEI's `{"error", "error_type"}`.
//!
//! [`embed`] gives every word a pseudo-random vector seeded by its FNV-1a
//! hash and mean-pools them, so the same text always gets the same vector,
//! on either emulator, and texts sharing words are closer than texts that
//! do not. A "token" is a word here, as in the text model.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::parse_object;

pub use crate::protocol::openai::base64_f32;

/// Length of every embedding vector.
pub const EMBEDDING_DIM: usize = 16;
/// Most inputs one request may carry (TEI's `--max-client-batch-size`).
pub const MAX_CLIENT_BATCH_SIZE: usize = 32;
/// Most tokens an input may have unless `truncate` is set.
pub const MAX_INPUT_LENGTH: usize = 512;
/// The status of a TEI validation error: TEI answers `Validation` with 413
/// (and a tokenizer's refusal with 422).
pub const TEI_VALIDATION_STATUS: u16 = 413;

const DESERIALIZE: &str = "Failed to deserialize the JSON body into the target type";

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// SplitMix64: spreads one seed over as many values as needed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A word's vector: components in [-1, 1), exact in f32 (24-bit values).
fn word_vector(word: &str) -> [f32; EMBEDDING_DIM] {
    let mut state = fnv1a64(word.as_bytes());
    let mut v = [0.0; EMBEDDING_DIM];
    for x in &mut v {
        let bits = (splitmix64(&mut state) >> 40) as u32;
        *x = bits as f32 / (1u32 << 23) as f32 - 1.0;
    }
    v
}

/// How many tokens (words) a text has.
pub fn count_tokens(text: &str) -> usize {
    text.split_whitespace().count()
}

/// The embedding of `text`: the mean of its words' vectors, L2-normalised
/// when `normalize` (a text without words embeds as the zero vector).
pub fn embed(text: &str, normalize: bool) -> Vec<f32> {
    pool(text.split_whitespace(), normalize)
}

fn pool<'a>(words: impl Iterator<Item = &'a str>, normalize: bool) -> Vec<f32> {
    let mut sum = [0.0f32; EMBEDDING_DIM];
    let mut n = 0u32;
    for w in words {
        for (s, x) in sum.iter_mut().zip(word_vector(w)) {
            *s += x;
        }
        n += 1;
    }
    if n > 0 {
        let n = n as f32;
        sum.iter_mut().for_each(|s| *s /= n);
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if normalize && norm > 0.0 {
        sum.iter_mut().for_each(|s| *s /= norm);
    }
    sum.to_vec()
}

/// A TEI embedding request (`/embed`, `/`, SageMaker `/invocations`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedRequest {
    pub inputs: Vec<String>,
    /// Default true.
    pub normalize: bool,
    /// Cut inputs to [`MAX_INPUT_LENGTH`] tokens instead of refusing them.
    pub truncate: bool,
}

/// How `/v1/embeddings` encodes each vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// Standard base64 of the little-endian f32 bytes.
    Base64,
}

/// An OpenAI embeddings request (`/v1/embeddings`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAiEmbedRequest {
    pub embed: EmbedRequest,
    pub encoding_format: EncodingFormat,
}

/// `key` as a list of input strings (a string is a list of one); the error
/// is TEI's validation message.
fn inputs(map: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let wrong =
        || format!("{DESERIALIZE}: {key}: data did not match any variant of untagged enum Input");
    let inputs = match map.get(key) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(wrong))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(wrong()),
        None => return Err(format!("{DESERIALIZE}: missing field `{key}`")),
    };
    if inputs.is_empty() || inputs.iter().any(String::is_empty) {
        return Err(format!("`{key}` cannot be empty"));
    }
    if inputs.len() > MAX_CLIENT_BATCH_SIZE {
        return Err(format!(
            "batch size {} > maximum allowed batch size {MAX_CLIENT_BATCH_SIZE}",
            inputs.len()
        ));
    }
    Ok(inputs)
}

fn bool_or(map: &Map<String, Value>, key: &str, default: bool) -> Result<bool, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!(
            "{DESERIALIZE}: {key}: invalid type, expected a boolean"
        )),
    }
}

/// Refuses an input over [`MAX_INPUT_LENGTH`] tokens unless truncating.
fn check_lengths(req: &EmbedRequest) -> Result<(), String> {
    if req.truncate {
        return Ok(());
    }
    match req.inputs.iter().map(|i| count_tokens(i)).max() {
        Some(n) if n > MAX_INPUT_LENGTH => Err(format!(
            "Input validation error: `inputs` must have less than {MAX_INPUT_LENGTH} tokens. Given: {n}"
        )),
        _ => Ok(()),
    }
}

/// Parses a TEI `/embed` body; the error is TEI's `Validation` message.
pub fn parse_embed(body: &[u8]) -> Result<EmbedRequest, String> {
    let map = parse_object(body)?;
    let req = EmbedRequest {
        inputs: inputs(&map, "inputs")?,
        normalize: bool_or(&map, "normalize", true)?,
        truncate: bool_or(&map, "truncate", false)?,
    };
    check_lengths(&req)?;
    Ok(req)
}

/// Parses an OpenAI `/v1/embeddings` body (`input`, `encoding_format`; the
/// vectors are always normalised); the error is TEI's `Validation` message.
pub fn parse_openai_embed(body: &[u8]) -> Result<OpenAiEmbedRequest, String> {
    let map = parse_object(body)?;
    let encoding_format = match map.get("encoding_format") {
        None | Some(Value::Null) => EncodingFormat::Float,
        Some(Value::String(s)) if s == "float" => EncodingFormat::Float,
        Some(Value::String(s)) if s == "base64" => EncodingFormat::Base64,
        Some(other) => {
            let expected = "expected `float` or `base64`";
            return Err(format!(
                "{DESERIALIZE}: encoding_format: unknown variant {other}, {expected}"
            ));
        }
    };
    let embed = EmbedRequest {
        inputs: inputs(&map, "input")?,
        normalize: true,
        truncate: false,
    };
    check_lengths(&embed)?;
    Ok(OpenAiEmbedRequest {
        embed,
        encoding_format,
    })
}

/// One run of the embedding model over a request's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens (words) embedded, over all inputs, after truncation.
    pub prompt_tokens: usize,
    /// Characters of the inputs (TEI's `x-compute-characters`).
    pub characters: usize,
}

impl Embeddings {
    pub fn run(req: &EmbedRequest) -> Self {
        let limit = if req.truncate {
            MAX_INPUT_LENGTH
        } else {
            usize::MAX
        };
        let mut prompt_tokens = 0;
        let vectors = req
            .inputs
            .iter()
            .map(|text| {
                prompt_tokens += count_tokens(text).min(limit);
                pool(text.split_whitespace().take(limit), req.normalize)
            })
            .collect();
        Embeddings {
            vectors,
            prompt_tokens,
            characters: req.inputs.iter().map(|i| i.chars().count()).sum(),
        }
    }
}

/// TEI's `/embed` answer: `[[f32, …], …]`, one vector per input. Serialised
/// from the f32s directly, so each number is the shortest text that reads
/// back as the same f32.
pub fn embed_response(e: &Embeddings) -> String {
    serde_json::to_string(&e.vectors).unwrap_or_else(|_| "[]".to_owned())
}

#[derive(Serialize)]
#[serde(untagged)]
enum Encoded<'a> {
    Float(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct OpenAiEmbedding<'a> {
    object: &'static str,
    embedding: Encoded<'a>,
    index: usize,
}

#[derive(Serialize)]
struct OpenAiUsage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize)]
struct OpenAiList<'a> {
    object: &'static str,
    data: Vec<OpenAiEmbedding<'a>>,
    model: &'a str,
    usage: OpenAiUsage,
}

/// The OpenAI embeddings answer: `{"object": "list", "data": [{"object":
/// "embedding", "embedding", "index"}], "model", "usage"}`.
pub fn openai_embeddings(e: &Embeddings, model_id: &str, format: EncodingFormat) -> String {
    let data = e
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| OpenAiEmbedding {
            object: "embedding",
            embedding: match format {
                EncodingFormat::Float => Encoded::Float(v),
                EncodingFormat::Base64 => Encoded::Base64(base64_f32(v)),
            },
            index,
        })
        .collect();
    let list = OpenAiList {
        object: "list",
        data,
        model: model_id,
        usage: OpenAiUsage {
            prompt_tokens: e.prompt_tokens,
            total_tokens: e.prompt_tokens,
        },
    };
    serde_json::to_string(&list).unwrap_or_else(|_| "{}".to_owned())
}

/// TEI's error body: `{"error", "error_type"}` (`Validation`, `Backend`,
/// `Overloaded`, `Unhealthy`, …).
pub fn tei_error(message: &str, error_type: &str) -> Value {
    json!({ "error": message, "error_type": error_type })
}

#[cfg(test)]
mod tests {

    use super::*;

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn embeddings_are_stable_normalised_and_word_driven() {
        let a = embed("the quick fox", true);
        assert_eq!(a.len(), EMBEDDING_DIM);
        assert_eq!(a, embed("the  quick\tfox", true));
        assert!((norm(&a) - 1.0).abs() < 1e-5, "{}", norm(&a));
        assert_ne!(a, embed("the quick dog", true));
        // Mean pooling: word order does not matter, repetition does not either.
        assert_eq!(embed("fox the quick", true), a);
        assert_eq!(embed("fox fox", false), embed("fox", false));
        let raw = embed("the quick fox", false);
        assert!((norm(&raw) - 1.0).abs() > 1e-3, "{}", norm(&raw));
        let n = norm(&raw);
        assert!(raw.iter().zip(&a).all(|(r, x)| (r / n - x).abs() < 1e-6));
        assert!(raw.iter().all(|x| (-1.0..1.0).contains(x)));
        assert_eq!(embed("   ", true), vec![0.0; EMBEDDING_DIM]);
        // Distinct words get distinct vectors.
        assert_ne!(word_vector("a"), word_vector("b"));
        assert_eq!(count_tokens(" a b  c "), 3);
    }

    #[test]
    fn parse_embed_validates_like_tei() {
        let r = parse_embed(br#"{"inputs":"a b"}"#).unwrap();
        assert_eq!(
            r,
            EmbedRequest {
                inputs: vec!["a b".to_owned()],
                normalize: true,
                truncate: false
            }
        );
        let r = parse_embed(br#"{"inputs":["a","b"],"normalize":false,"truncate":true}"#).unwrap();
        assert_eq!(r.inputs.len(), 2);
        assert!(!r.normalize && r.truncate);
        let too_many = json!({ "inputs": vec!["w"; MAX_CLIENT_BATCH_SIZE + 1] }).to_string();
        let thirty_two = json!({ "inputs": vec!["w"; MAX_CLIENT_BATCH_SIZE] }).to_string();
        assert!(parse_embed(thirty_two.as_bytes()).is_ok());
        let long = json!({ "inputs": "w ".repeat(MAX_INPUT_LENGTH + 1) }).to_string();
        let long_cut = json!({ "inputs": "w ".repeat(MAX_INPUT_LENGTH + 1), "truncate": true });
        assert!(parse_embed(long_cut.to_string().as_bytes()).is_ok());
        for (body, needle) in [
            (br#"{"input":"a"}"#.to_vec(), "missing field `inputs`"),
            (br#"{"inputs":""}"#.to_vec(), "`inputs` cannot be empty"),
            (br#"{"inputs":[]}"#.to_vec(), "`inputs` cannot be empty"),
            (
                br#"{"inputs":["a",""]}"#.to_vec(),
                "`inputs` cannot be empty",
            ),
            (br#"{"inputs":7}"#.to_vec(), "untagged enum Input"),
            (br#"{"inputs":["a",1]}"#.to_vec(), "untagged enum Input"),
            (br#"{"inputs":"a","normalize":"yes"}"#.to_vec(), "normalize"),
            (b"[".to_vec(), "JSON"),
            (
                too_many.into_bytes(),
                "batch size 33 > maximum allowed batch size 32",
            ),
            (
                long.into_bytes(),
                "must have less than 512 tokens. Given: 513",
            ),
        ] {
            let err = parse_embed(&body).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn parse_openai_embed_reads_input_and_format() {
        let r = parse_openai_embed(br#"{"input":["a","b c"],"model":"x"}"#).unwrap();
        assert_eq!(r.embed.inputs, ["a", "b c"]);
        assert_eq!(r.encoding_format, EncodingFormat::Float);
        let r = parse_openai_embed(br#"{"input":"a","encoding_format":"base64"}"#).unwrap();
        assert_eq!(r.encoding_format, EncodingFormat::Base64);
        let err = parse_openai_embed(br#"{"input":"a","encoding_format":"int8"}"#).unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
        let err = parse_openai_embed(br#"{"inputs":"a"}"#).unwrap_err();
        assert!(err.contains("missing field `input`"), "{err}");
    }

    #[test]
    fn run_counts_tokens_and_characters_and_truncates() {
        let req = parse_embed(br#"{"inputs":["a b","c"]}"#).unwrap();
        let e = Embeddings::run(&req);
        assert_eq!(e.vectors, vec![embed("a b", true), embed("c", true)]);
        assert_eq!((e.prompt_tokens, e.characters), (3, 4));
        let words: Vec<String> = (0..MAX_INPUT_LENGTH + 3).map(|i| format!("w{i}")).collect();
        let req = EmbedRequest {
            inputs: vec![words.join(" ")],
            normalize: true,
            truncate: true,
        };
        let e = Embeddings::run(&req);
        assert_eq!(e.prompt_tokens, MAX_INPUT_LENGTH);
        assert_eq!(
            e.vectors[0],
            embed(&words[..MAX_INPUT_LENGTH].join(" "), true)
        );
    }

    #[test]
    fn responses_round_trip_the_f32s() {
        let e = Embeddings::run(&parse_embed(br#"{"inputs":["x y","z"]}"#).unwrap());
        let back: Vec<Vec<f32>> = serde_json::from_str(&embed_response(&e)).unwrap();
        assert_eq!(back, e.vectors);
        let v: Value =
            serde_json::from_str(&openai_embeddings(&e, "m", EncodingFormat::Float)).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "m");
        assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(v["data"][1]["object"], "embedding");
        assert_eq!(v["data"][1]["index"], 1);
        let second: Vec<f32> = serde_json::from_value(v["data"][1]["embedding"].clone()).unwrap();
        assert_eq!(second, e.vectors[1]);
        let v: Value =
            serde_json::from_str(&openai_embeddings(&e, "m", EncodingFormat::Base64)).unwrap();
        assert_eq!(v["data"][0]["embedding"], base64_f32(&e.vectors[0]));
    }

    #[test]
    fn tei_error_shape() {
        assert_eq!(
            tei_error("m", "Validation"),
            json!({"error": "m", "error_type": "Validation"})
        );
    }
}
