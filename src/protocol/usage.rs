//! How many tokens an answer took, as the backends report it: TGI's
//! `x-generated-tokens` and `x-prompt-tokens` headers (HF Inference
//! Endpoints send them on every text-generation answer), else the body's
//! OpenAI `usage` (`total_tokens`, or `prompt_tokens` + `completion_tokens`)
//! or TGI's `details.generated_tokens` (with `"details": true`), for one
//! answer or an array of them. A stream's tokens are its events, counted by
//! whoever relays it.

use http::HeaderMap;
use serde_json::Value;

/// TGI's token count headers: every value of both, summed.
pub fn from_headers(headers: &HeaderMap) -> Option<u64> {
    let mut found = false;
    let mut total = 0u64;
    for name in ["x-generated-tokens", "x-prompt-tokens"] {
        for value in headers.get_all(name) {
            if let Some(n) = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                found = true;
                total = total.saturating_add(n);
            }
        }
    }
    found.then_some(total)
}

/// The tokens a JSON answer body reports, if it does.
pub fn from_body(body: &[u8]) -> Option<u64> {
    let value: Value = serde_json::from_slice(body).ok()?;
    match &value {
        Value::Array(answers) => answers
            .iter()
            .map(from_answer)
            .try_fold(0u64, |sum, n| Some(sum.saturating_add(n?))),
        answer => from_answer(answer),
    }
}

fn from_answer(answer: &Value) -> Option<u64> {
    if let Some(usage) = answer.get("usage") {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64);
        let parts = || Some(n("prompt_tokens")?.saturating_add(n("completion_tokens")?));
        return n("total_tokens").or_else(parts);
    }
    answer
        .get("details")?
        .get("generated_tokens")
        .and_then(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn tgi_headers_count_generated_and_prompt_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(from_headers(&h), None);
        h.insert("x-generated-tokens", HeaderValue::from_static("12"));
        h.insert("x-prompt-tokens", HeaderValue::from_static("5"));
        assert_eq!(from_headers(&h), Some(17));
        h.insert("x-generated-tokens", HeaderValue::from_static("many"));
        assert_eq!(from_headers(&h), Some(5));
    }

    #[test]
    fn bodies_report_openai_usage_or_tgi_details() {
        let openai = br#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;
        assert_eq!(from_body(openai), Some(21));
        let parts = br#"{"usage":{"prompt_tokens":9,"completion_tokens":3}}"#;
        assert_eq!(from_body(parts), Some(12));
        let tgi = br#"[{"generated_text":"a b","details":{"generated_tokens":2}},{"generated_text":"c","details":{"generated_tokens":1}}]"#;
        assert_eq!(from_body(tgi), Some(3));
        assert_eq!(from_body(br#"[{"generated_text":"no details"}]"#), None);
        assert_eq!(from_body(b"not json"), None);
    }
}
