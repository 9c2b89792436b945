//! AWS's own SageMaker runtime client, pointed at an emulator or the
//! gateway, with retries off so each call is exactly one request; and
//! requests signed with aws-sigv4 by hand, for what the SDK will not send.

use aws_sdk_sagemakerruntime::config::retry::RetryConfig;
use aws_sdk_sagemakerruntime::config::{Credentials, Region};
use aws_sdk_sagemakerruntime::Client;

/// A client of `url` in us-east-1, signing with these credentials.
pub fn sdk_client(url: &str, key_id: &str, secret: &str, token: Option<&str>) -> Client {
    let config = aws_sdk_sagemakerruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new(
            key_id,
            secret,
            token.map(str::to_owned),
            None,
            "test",
        ))
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// The headers that sign a POST of `body` to `url` for `sagemaker` in
/// us-east-1 at `time`, with `(key id, secret, session token)`.
pub fn sigv4_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    (id, secret, token): (&str, &str, Option<&str>),
    time: std::time::SystemTime,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_smithy_runtime_api::client::identity::Identity;
    let identity: Identity =
        Credentials::new(id, secret, token.map(str::to_owned), None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("sagemaker")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let req = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
