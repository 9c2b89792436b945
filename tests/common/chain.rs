//! aws-config's default credential chain, confined to what a test sets, in
//! front of one SageMaker backend. Such a test sets process environment
//! variables, so it is alone in its binary.

/// Confines the default chain: no profile files, no instance metadata, and
/// none of the variables in `unset`.
pub fn confine_aws_chain(unset: &[&str]) {
    for var in unset {
        std::env::remove_var(var);
    }
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/infergate-test/config");
    std::env::set_var(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/infergate-test/credentials",
    );
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
}

/// A config of the SageMaker backend `sm` at `url` (with `extra` keys,
/// its credentials from the default chain) and a route `sm` to it that
/// makes one attempt, so each request is one signed call.
pub fn sagemaker_config(url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "{url}"
{extra}
[routes.sm]
backends = ["sm"]
attempts = 1
"#
    )
}

/// POSTs `body` to route `sm` at `base` and asserts a 200.
pub async fn predict_sm(client: &reqwest::Client, base: &str, body: &'static str, what: &str) {
    let res = client
        .post(format!("{base}/v1/predict/sm"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{what}: {text}");
}
