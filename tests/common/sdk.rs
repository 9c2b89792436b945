//! AWS's own SageMaker runtime client, pointed at an emulator, with retries
//! off so each call is exactly one request.

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
