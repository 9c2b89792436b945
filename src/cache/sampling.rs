//! Which requests sample: their answers are meant to differ from one call
//! to the next, so a route caches them only with `sampling = true`.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// What of a request body says whether it samples: the rest of it (the
/// prompt, the messages) is skipped unread rather than built into a value.
#[derive(Deserialize)]
struct Probe {
    messages: Option<IgnoredAny>,
    prompt: Option<IgnoredAny>,
    temperature: Option<Value>,
    seed: Option<Value>,
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    temperature: Option<Value>,
    seed: Option<Value>,
    do_sample: Option<Value>,
    top_k: Option<Value>,
    top_p: Option<Value>,
    typical_p: Option<Value>,
}

impl Parameters {
    /// TGI samples when a warper is set (`top_k` above 0, `top_p` or
    /// `typical_p` below 1), `do_sample` or not.
    fn warps(&self) -> bool {
        let num = |v: &Option<Value>| v.as_ref().and_then(Value::as_f64);
        num(&self.top_k).is_some_and(|k| k > 0.0)
            || num(&self.top_p).is_some_and(|p| p < 1.0)
            || num(&self.typical_p).is_some_and(|p| p < 1.0)
    }
}

/// Whether `body`, the body of operation `op` ([`Operation::as_str`]),
/// asks the model to sample without a seed: a JSON object with
/// `parameters.do_sample = true`, a TGI warper in `parameters` (`top_k`
/// above 0, `top_p` or `typical_p` below 1), or a `temperature` above 0 (at
/// the top level, as OpenAI's bodies have it, or in `parameters`, as
/// TGI's); and no `seed` at either place (a seeded request is meant to come
/// out the same). An OpenAI body (a chat or completion, or any body with
/// `messages` or a top-level `prompt`) without a `temperature` samples too:
/// OpenAI's default is 1, and TGI's OpenAI routes (which its SageMaker
/// `/invocations` picks by those keys) decode greedily only at 0. Anything else, JSON or not, is
/// taken as deterministic; so is a body whose `parameters` is not an object.
///
/// [`Operation::as_str`]: crate::config::Operation::as_str
pub fn is_sampling(op: &str, body: &[u8]) -> bool {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_none_or(|i| body[i] != b'{') {
        return false;
    }
    let Ok(top) = serde_json::from_slice::<Probe>(body) else {
        return false;
    };
    let params = top.parameters.as_ref();
    let given = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
    let hot = |t: Option<&Value>| t.and_then(Value::as_f64).is_some_and(|t| t > 0.0);
    let openai =
        matches!(op, "chat" | "completion") || top.messages.is_some() || top.prompt.is_some();
    let do_sample = params
        .and_then(|p| p.do_sample.as_ref())
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || params.is_some_and(Parameters::warps);
    let sampling = do_sample
        || hot(top.temperature.as_ref())
        || hot(params.and_then(|p| p.temperature.as_ref()))
        || (openai && !given(top.temperature.as_ref()));
    let seeded = given(top.seed.as_ref()) || given(params.and_then(|p| p.seed.as_ref()));
    sampling && !seeded
}

#[cfg(test)]
mod tests {
    use super::is_sampling;

    #[test]
    fn sampling_is_do_sample_or_a_temperature_without_a_seed() {
        let yes = [
            r#"{"inputs":"x","parameters":{"do_sample":true}}"#,
            r#"{"inputs":"x","parameters":{"temperature":0.7}}"#,
            r#"{"messages":[],"temperature":1}"#,
            r#" {"prompt":"x","temperature":0.2,"seed":null}"#,
            r#"{"inputs":"x","parameters":{"do_sample":true,"seed":null,"top_p":0.9}}"#,
            r#"{"inputs":"x","parameters":{"top_p":0.9}}"#,
            r#"{"inputs":"x","parameters":{"top_k":50}}"#,
            r#"{"inputs":"x","parameters":{"typical_p":0.5,"max_new_tokens":3}}"#,
        ];
        for body in yes {
            assert!(is_sampling("predict", body.as_bytes()), "{body}");
        }
        let no = [
            r#"{"inputs":"x"}"#,
            r#"{"inputs":"x","parameters":{"do_sample":false,"max_new_tokens":5}}"#,
            r#"{"inputs":"x","parameters":{"temperature":0}}"#,
            r#"{"inputs":"x","parameters":{"do_sample":true,"seed":42}}"#,
            r#"{"messages":[],"temperature":0.9,"seed":1}"#,
            r#"{"inputs":"x","parameters":{"temperature":0.9},"seed":1}"#,
            r#"{"inputs":"x","parameters":"hot","temperature":"high"}"#,
            r#"{"inputs":"x","parameters":{"top_k":0,"top_p":1.0,"typical_p":1}}"#,
            "not json",
            "[1,2]",
            "",
        ];
        for body in no {
            assert!(!is_sampling("predict", body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn an_openai_body_without_a_temperature_samples() {
        let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let prompt = r#"{"model":"m","prompt":"hi","max_tokens":5}"#;
        assert!(is_sampling("chat", chat.as_bytes()));
        // A Messages API body through the predict door too.
        assert!(is_sampling("predict", chat.as_bytes()));
        assert!(is_sampling("completion", prompt.as_bytes()));
        // TGI's SageMaker `/invocations` sends a `prompt` to completions.
        assert!(is_sampling("predict", prompt.as_bytes()));
        for greedy in [
            r#"{"messages":[],"temperature":0}"#,
            r#"{"messages":[],"seed":7}"#,
            r#"{"prompt":"hi","temperature":0.0}"#,
        ] {
            assert!(!is_sampling("chat", greedy.as_bytes()), "{greedy}");
            assert!(!is_sampling("completion", greedy.as_bytes()), "{greedy}");
        }
    }
}
