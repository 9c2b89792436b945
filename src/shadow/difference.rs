//! A shadow comparison's [`Difference`] in words, for the diff log
//! ([`super::diff_log`]): `status 200 vs 500`, `generated text differs:
//! first difference at char 12`, `embedding 2 cosine 0.9100 < 0.99`,
//! `JSON differs at /choices/0/message/content`.
//!
//! Only the lines that are written pay for this: the comparison itself
//! keeps no more than positions ([`super::compare`]), and the place where
//! two JSON values part is looked for here, in the bodies parsed again.

use serde_json::Value;

use super::compare::{embeddings, Difference};

/// `difference` in a few words; `primary` and `shadow` are the whole
/// bodies compared, `threshold` the route's cosine threshold.
pub fn describe(difference: &Difference, primary: &[u8], shadow: &[u8], threshold: f64) -> String {
    match *difference {
        Difference::Status { primary, shadow } => format!("status {primary} vs {shadow}"),
        Difference::Bytes { at } => format!("bodies differ: first difference at byte {at}"),
        Difference::Text { at } => {
            format!("generated text differs: first difference at char {at}")
        }
        Difference::Embedding { index, cosine } => {
            format!("embedding {index} cosine {cosine:.4} < {threshold}")
        }
        Difference::EmbeddingShape => embedding_shapes(primary, shadow),
        Difference::Json => match parsed(primary).zip(parsed(shadow)) {
            Some((a, b)) => match json_pointer(&a, &b) {
                Some(at) if at.is_empty() => "JSON differs at the root".to_owned(),
                Some(at) => format!("JSON differs at {at}"),
                None => "JSON differs".to_owned(),
            },
            None => "JSON differs".to_owned(),
        },
    }
}

fn parsed(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

/// How two embeddings answers differ in shape: the count of vectors, or
/// the length of the first vector that differs.
fn embedding_shapes(primary: &[u8], shadow: &[u8]) -> String {
    let vectors = |body: &[u8]| parsed(body).as_ref().and_then(embeddings);
    let (Some(a), Some(b)) = (vectors(primary), vectors(shadow)) else {
        return "embeddings of another shape".to_owned();
    };
    if a.len() != b.len() {
        return format!("{} embeddings vs {}", a.len(), b.len());
    }
    match a.iter().zip(&b).position(|(x, y)| x.len() != y.len()) {
        Some(i) => format!("embedding {i} of {} numbers vs {}", a[i].len(), b[i].len()),
        None => "embeddings of another shape".to_owned(),
    }
}

/// The JSON Pointer (RFC 6901) of the first place where `a` and `b` part,
/// members in the order the parser keeps them; `None` when they are
/// equal. Depth is bounded by the parser's recursion limit.
pub fn json_pointer(a: &Value, b: &Value) -> Option<String> {
    let mut at = String::new();
    first_difference(a, b, &mut at).then_some(at)
}

/// Whether `a` and `b` differ; if so, `at` is extended to where.
fn first_difference(a: &Value, b: &Value, at: &mut String) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, v) in x {
                match y.get(key) {
                    Some(w) if v == w => continue,
                    Some(w) => {
                        push_key(at, key);
                        return first_difference(v, w, at);
                    }
                    None => {
                        push_key(at, key);
                        return true;
                    }
                }
            }
            match y.keys().find(|k| !x.contains_key(*k)) {
                Some(key) => {
                    push_key(at, key);
                    true
                }
                None => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                match (x.get(i), y.get(i)) {
                    (Some(v), Some(w)) if v == w => continue,
                    (Some(v), Some(w)) => {
                        push_key(at, &i.to_string());
                        return first_difference(v, w, at);
                    }
                    _ => {
                        push_key(at, &i.to_string());
                        return true;
                    }
                }
            }
            false
        }
        _ => a != b,
    }
}

/// `/key`, with `~` and `/` escaped as RFC 6901 says.
fn push_key(at: &mut String, key: &str) {
    at.push('/');
    for c in key.chars() {
        match c {
            '~' => at.push_str("~0"),
            '/' => at.push_str("~1"),
            c => at.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointer(a: Value, b: Value) -> Option<String> {
        json_pointer(&a, &b)
    }

    #[test]
    fn the_pointer_names_the_first_place_that_differs() {
        let chat = |t: &str| json!({"id": "x", "choices": [{"message": {"content": t}}]});
        assert_eq!(
            pointer(chat("a"), chat("b")).as_deref(),
            Some("/choices/0/message/content")
        );
        assert_eq!(pointer(chat("a"), chat("a")), None);
        assert_eq!(
            pointer(json!([1, 2]), json!([1, 2, 3])).as_deref(),
            Some("/2")
        );
        assert_eq!(
            pointer(json!({"a": 1}), json!({"a": 1, "b": 2})).as_deref(),
            Some("/b")
        );
        assert_eq!(
            pointer(json!({"a/b~": 1}), json!({"a/b~": 2})).as_deref(),
            Some("/a~1b~0")
        );
        assert_eq!(pointer(json!(1), json!("1")).as_deref(), Some(""));
    }

    #[test]
    fn each_difference_in_words() {
        let say = |d: Difference, a: &str, b: &str| describe(&d, a.as_bytes(), b.as_bytes(), 0.99);
        assert_eq!(
            say(
                Difference::Status {
                    primary: 200,
                    shadow: 500
                },
                "",
                ""
            ),
            "status 200 vs 500"
        );
        assert_eq!(
            say(Difference::Text { at: 4 }, "", ""),
            "generated text differs: first difference at char 4"
        );
        assert_eq!(
            say(
                Difference::Embedding {
                    index: 2,
                    cosine: 0.91
                },
                "",
                ""
            ),
            "embedding 2 cosine 0.9100 < 0.99"
        );
        assert_eq!(
            say(
                Difference::Json,
                r#"{"a": [1, {"b": 2}]}"#,
                r#"{"a": [1, {"b": 3}]}"#
            ),
            "JSON differs at /a/1/b"
        );
        assert_eq!(
            say(Difference::Json, "[1]", "{}"),
            "JSON differs at the root"
        );
        assert_eq!(
            say(Difference::EmbeddingShape, "[[1, 2]]", "[[1, 2], [3, 4]]"),
            "1 embeddings vs 2"
        );
        assert_eq!(
            say(Difference::EmbeddingShape, "[1, 2]", "[1, 2, 3]"),
            "embedding 0 of 2 numbers vs 3"
        );
        assert_eq!(
            say(Difference::Bytes { at: 3 }, "abcd", "abcx"),
            "bodies differ: first difference at byte 3"
        );
    }
}
