//! Comparing a shadow's answer with the primary's: pure functions, no I/O.
//!
//! The status first; then the bodies, from the strictest view to the
//! loosest: the same bytes, the same JSON value, the same generated text
//! (TGI's `generated_text`, OpenAI's `choices[0].message.content` or
//! `choices[0].text`; a token-level similarity when they differ), the same
//! embeddings within a cosine threshold. Anything else that is not equal
//! differs.

use http::StatusCode;
use serde_json::Value;

/// How two answers compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Match,
    Differ,
}

/// The verdict, with a similarity in `[0, 1]` when the answers have a
/// kind that measures one (text, embeddings), and where they differ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub verdict: Verdict,
    pub similarity: Option<f64>,
    /// `Some` exactly when the verdict is [`Verdict::Differ`].
    pub difference: Option<Difference>,
}

/// Where two answers part, as far as the comparison saw it on its way (no
/// more work than the verdict took; [`super::difference`] words it, and
/// finds the place in two JSON values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Difference {
    /// Another status.
    Status { primary: u16, shadow: u16 },
    /// Bodies that are not both JSON, apart from this byte on.
    Bytes { at: usize },
    /// Two JSON values with no text or embeddings to compare.
    Json,
    /// The generated texts, apart from this character on.
    Text { at: usize },
    /// The vector at `index` is the least alike: `cosine` under the
    /// threshold.
    Embedding { index: usize, cosine: f64 },
    /// Embeddings of another count or length.
    EmbeddingShape,
}

impl Comparison {
    fn matched(similarity: Option<f64>) -> Self {
        Self {
            verdict: Verdict::Match,
            similarity,
            difference: None,
        }
    }

    fn differ(similarity: Option<f64>, difference: Difference) -> Self {
        Self {
            verdict: Verdict::Differ,
            similarity,
            difference: Some(difference),
        }
    }
}

/// The primary's answer against the shadow's; embeddings match when every
/// vector's cosine similarity is at least `threshold`.
pub fn compare(
    primary: (StatusCode, &[u8]),
    shadow: (StatusCode, &[u8]),
    threshold: f64,
) -> Comparison {
    if primary.0 != shadow.0 {
        let (primary, shadow) = (primary.0.as_u16(), shadow.0.as_u16());
        return Comparison::differ(None, Difference::Status { primary, shadow });
    }
    if primary.1 == shadow.1 {
        return Comparison::matched(Some(1.0));
    }
    let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<Value>(primary.1),
        serde_json::from_slice::<Value>(shadow.1),
    ) else {
        let at = common_prefix(primary.1.iter(), shadow.1.iter());
        return Comparison::differ(None, Difference::Bytes { at });
    };
    if a == b {
        return Comparison::matched(Some(1.0));
    }
    if let (Some(x), Some(y)) = (generated_text(&a), generated_text(&b)) {
        if x == y {
            return Comparison::matched(Some(1.0));
        }
        let at = common_prefix(x.chars(), y.chars());
        return Comparison::differ(Some(token_similarity(x, y)), Difference::Text { at });
    }
    if let (Some(x), Some(y)) = (embeddings(&a), embeddings(&b)) {
        let Some((index, least)) = least_cosine_at(&x, &y) else {
            return Comparison::differ(Some(0.0), Difference::EmbeddingShape);
        };
        return match least >= threshold {
            true => Comparison::matched(Some(least)),
            false => Comparison::differ(
                Some(least),
                Difference::Embedding {
                    index,
                    cosine: least,
                },
            ),
        };
    }
    Comparison::differ(None, Difference::Json)
}

/// How many items `a` and `b` have alike from the start.
fn common_prefix<T: PartialEq>(a: impl Iterator<Item = T>, b: impl Iterator<Item = T>) -> usize {
    a.zip(b).take_while(|(x, y)| x == y).count()
}

/// The generated text of a TGI (`[{"generated_text": …}]`,
/// `{"generated_text": …}`) or OpenAI (`choices[0].message.content`,
/// `choices[0].text`) answer.
pub fn generated_text(v: &Value) -> Option<&str> {
    let one = match v {
        Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    };
    if let Some(text) = one.get("generated_text").and_then(Value::as_str) {
        return Some(text);
    }
    let choice = one.get("choices")?.get(0)?;
    choice
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .or_else(|| choice.get("text").and_then(Value::as_str))
}

/// Jaccard similarity of the whitespace tokens of `a` and `b`: 1 for the
/// same set (two empty texts too), 0 for none in common.
pub fn token_similarity(a: &str, b: &str) -> f64 {
    use std::collections::BTreeSet;
    let x: BTreeSet<&str> = a.split_whitespace().collect();
    let y: BTreeSet<&str> = b.split_whitespace().collect();
    let union = x.union(&y).count();
    if union == 0 {
        return 1.0;
    }
    let common = x.intersection(&y).count();
    common as f64 / union as f64
}

/// The vectors of an embeddings answer: one array of numbers, TEI's array
/// of them, or OpenAI's `data[i].embedding`.
pub fn embeddings(v: &Value) -> Option<Vec<Vec<f64>>> {
    if let Some(one) = numbers(v) {
        return Some(vec![one]);
    }
    let items = match v {
        Value::Array(items) => items.iter().map(numbers).collect(),
        Value::Object(_) => v
            .get("data")?
            .as_array()?
            .iter()
            .map(|d| d.get("embedding").and_then(numbers))
            .collect(),
        _ => None,
    };
    items.filter(|all: &Vec<Vec<f64>>| !all.is_empty())
}

/// `v` as a non-empty array of numbers.
fn numbers(v: &Value) -> Option<Vec<f64>> {
    let items = v.as_array()?;
    if items.is_empty() {
        return None;
    }
    items.iter().map(Value::as_f64).collect()
}

/// The least cosine similarity of the vectors pairwise; `None` when their
/// counts or lengths differ.
pub fn least_cosine(a: &[Vec<f64>], b: &[Vec<f64>]) -> Option<f64> {
    least_cosine_at(a, b).map(|(_, least)| least)
}

/// [`least_cosine`] and the index of the first pair that has it.
fn least_cosine_at(a: &[Vec<f64>], b: &[Vec<f64>]) -> Option<(usize, f64)> {
    if a.len() != b.len() {
        return None;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| cosine(x, y))
        .enumerate()
        .try_fold((0, 1.0_f64), |least, (i, c)| {
            c.map(|c| if c < least.1 { (i, c) } else { least })
        })
}

/// The cosine similarity of two vectors, clamped to `[0, 1]` (opposite
/// vectors agree no less than unrelated ones); two zero vectors are the
/// same, one is not.
pub fn cosine(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    let dot: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let nx = x.iter().map(|a| a * a).sum::<f64>().sqrt();
    let ny = y.iter().map(|b| b * b).sum::<f64>().sqrt();
    if nx == 0.0 || ny == 0.0 {
        return Some(if nx == ny { 1.0 } else { 0.0 });
    }
    Some((dot / (nx * ny)).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: StatusCode = StatusCode::OK;

    fn cmp(a: &str, b: &str) -> Comparison {
        compare((OK, a.as_bytes()), (OK, b.as_bytes()), 0.99)
    }

    #[test]
    fn another_status_differs() {
        let c = compare((OK, b"x"), (StatusCode::BAD_REQUEST, b"x"), 0.99);
        let status = Difference::Status {
            primary: 200,
            shadow: 400,
        };
        assert_eq!(c, Comparison::differ(None, status));
    }

    #[test]
    fn the_same_bytes_or_json_match() {
        assert_eq!(cmp("not json", "not json"), Comparison::matched(Some(1.0)));
        assert_eq!(
            cmp(r#"{"a": 1, "b": [2]}"#, r#"{"b":[2],"a":1}"#).verdict,
            Verdict::Match
        );
        assert_eq!(
            cmp("not json", "not jsox"),
            Comparison::differ(None, Difference::Bytes { at: 7 })
        );
        assert_eq!(
            cmp(r#"{"a": 1}"#, r#"{"a": 2}"#),
            Comparison::differ(None, Difference::Json)
        );
    }

    #[test]
    fn generated_text_is_compared_by_tokens() {
        let c = cmp(
            r#"[{"generated_text": "a b c d"}]"#,
            r#"[{"generated_text": "a b c e"}]"#,
        );
        assert_eq!(c.verdict, Verdict::Differ);
        assert_eq!(c.similarity, Some(3.0 / 5.0));
        assert_eq!(c.difference, Some(Difference::Text { at: 6 }));
        // Other fields may differ; the text decides.
        let c = cmp(
            r#"{"generated_text": "a b", "details": {"x": 1}}"#,
            r#"{"generated_text": "a b", "details": {"x": 2}}"#,
        );
        assert_eq!(c, Comparison::matched(Some(1.0)));
        let chat = |t: &str| {
            format!(r#"{{"id": "{t}", "choices": [{{"message": {{"content": "{t}"}}}}]}}"#)
        };
        assert_eq!(cmp(&chat("x y"), &chat("x z")).similarity, Some(1.0 / 3.0));
        let completion = |id: &str| format!(r#"{{"id": "{id}", "choices": [{{"text": "same"}}]}}"#);
        assert_eq!(
            cmp(&completion("1"), &completion("2")).verdict,
            Verdict::Match
        );
    }

    #[test]
    fn token_similarity_bounds() {
        assert_eq!(token_similarity("", ""), 1.0);
        assert_eq!(token_similarity("a", "b"), 0.0);
        assert_eq!(token_similarity("a  b", "b a"), 1.0);
    }

    #[test]
    fn embeddings_match_within_the_threshold() {
        let c = cmp("[1.0, 0.0]", "[0.999, 0.01]");
        assert_eq!(c.verdict, Verdict::Match);
        assert!(c.similarity.unwrap() > 0.99);
        let c = cmp("[[1, 0], [0, 1]]", "[[1, 0], [1, 0]]");
        let second = Difference::Embedding {
            index: 1,
            cosine: 0.0,
        };
        assert_eq!(c, Comparison::differ(Some(0.0), second));
        let openai =
            |v: &str| format!(r#"{{"model": "{v}", "data": [{{"embedding": [{v}, 1]}}]}}"#);
        assert_eq!(cmp(&openai("1"), &openai("1.0001")).verdict, Verdict::Match);
        assert_eq!(cmp(&openai("1"), &openai("-5")).verdict, Verdict::Differ);
        // Vectors of another length or count never match.
        assert_eq!(
            cmp("[1, 2]", "[1, 2, 3]"),
            Comparison::differ(Some(0.0), Difference::EmbeddingShape)
        );
        assert_eq!(
            compare((OK, b"[1, 0]"), (OK, b"[1, 1]"), 0.5).verdict,
            Verdict::Match
        );
    }

    #[test]
    fn cosine_of_zero_vectors() {
        assert_eq!(cosine(&[0.0], &[0.0]), Some(1.0));
        assert_eq!(cosine(&[0.0], &[1.0]), Some(0.0));
        assert_eq!(cosine(&[1.0], &[-1.0]), Some(0.0));
    }
}
