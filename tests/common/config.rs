//! Test configs made from others by replacing text: each replacement must
//! find its text, so a changed config fails the test that patches it
//! instead of silently turning the patch into a no-op.

/// `text` with every `from` replaced by `to`; panics if there is no `from`.
#[track_caller]
pub fn patch(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the config has no {from:?}:\n{text}");
    text.replace(from, to)
}

/// `text` with its first `from` replaced by `to`; panics if there is none.
#[track_caller]
pub fn patch_first(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the config has no {from:?}:\n{text}");
    text.replacen(from, to, 1)
}

/// `config` with `keys` added to its `[routes.{route}]` table.
#[track_caller]
pub fn with_route_keys(config: &str, route: &str, keys: &str) -> String {
    let table = format!("[routes.{route}]\n");
    patch(config, &table, &format!("{table}{keys}\n"))
}

/// `config` with `keys` added to its `[backends.{backend}]` table.
#[track_caller]
pub fn with_backend_keys(config: &str, backend: &str, keys: &str) -> String {
    let table = format!("[backends.{backend}]\n");
    patch(config, &table, &format!("{table}{keys}\n"))
}

/// A config for the binary: the SageMaker backend `sm` at `sm_url`, the
/// Hugging Face backend `hf` at `hf_url` (its token from `${token_var}`),
/// and a route to each, named after it.
pub fn binary_config(sm_url: &str, hf_url: &str, token_var: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "{sm_url}"
[backends.hf]
kind = "huggingface"
url = "{hf_url}"
token = "${{{token_var}}}"
[routes.sm]
backends = ["sm"]
[routes.hf]
backends = ["hf"]
"#
    )
}
