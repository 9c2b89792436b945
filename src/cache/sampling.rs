//! Which requests sample: their answers are meant to differ from one call
//! to the next, so a route caches them only with `sampling = true`.

use serde_json::Value;

/// Whether `body` asks the model to sample without a seed: a JSON object
/// with `parameters.do_sample = true`, or a `temperature` above 0 (at the
/// top level, as OpenAI's bodies have it, or in `parameters`, as TGI's);
/// and no `seed` at either place (a seeded request is meant to come out the
/// same). Anything else, JSON or not, is taken as deterministic.
pub fn is_sampling(body: &[u8]) -> bool {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_none_or(|i| body[i] != b'{') {
        return false;
    }
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let params = top.get("parameters").and_then(Value::as_object);
    let get = |key: &str| {
        top.get(key)
            .filter(|v| !v.is_null())
            .or_else(|| params.and_then(|p| p.get(key)).filter(|v| !v.is_null()))
    };
    let do_sample = params
        .and_then(|p| p.get("do_sample"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let hot = [
        top.get("temperature"),
        params.and_then(|p| p.get("temperature")),
    ]
    .into_iter()
    .flatten()
    .any(|t| t.as_f64().is_some_and(|t| t > 0.0));
    (do_sample || hot) && get("seed").is_none()
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
        ];
        for body in yes {
            assert!(is_sampling(body.as_bytes()), "{body}");
        }
        let no = [
            r#"{"inputs":"x"}"#,
            r#"{"inputs":"x","parameters":{"do_sample":false,"max_new_tokens":5}}"#,
            r#"{"inputs":"x","parameters":{"temperature":0}}"#,
            r#"{"inputs":"x","parameters":{"do_sample":true,"seed":42}}"#,
            r#"{"messages":[],"temperature":0.9,"seed":1}"#,
            r#"{"inputs":"x","parameters":{"temperature":0.9},"seed":1}"#,
            "not json",
            "[1,2]",
            "",
        ];
        for body in no {
            assert!(!is_sampling(body.as_bytes()), "{body}");
        }
    }
}
