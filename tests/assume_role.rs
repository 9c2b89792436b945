//! `role_arn` on a SageMaker backend: the gateway assumes the role with STS,
//! authorised by the default chain's credentials, and signs with the role's
//! session credentials.
//!
//! A loopback STS stand-in (reached through `AWS_ENDPOINT_URL_STS`, as any AWS
//! SDK honours) verifies the AssumeRole call's own SigV4 signature with the
//! emulator's independent verifier, checks the role ARN, session name and
//! external id, and answers AWS's XML. The SageMaker emulator accepts only
//! the role's credentials. This file holds one test: it sets process
//! environment variables.

#[cfg(test)]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::chain::{confine_aws_chain, predict_sm, sagemaker_config};
use infergate::config::Config;
use infergate::emulator::{self, Credential};
use infergate::gateway::BuildOptions;
use sts::start_sts;

/// The STS stand-in.
#[cfg(test)]
mod sts {
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use aws_smithy_types::date_time::Format;
    use aws_smithy_types::DateTime;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use infergate::emulator::Credential;
    use infergate::protocol::sigv4_verify::{verify, Expect, Regions, VerifyRequest};
    use tokio::net::TcpListener;

    use super::{ROLE_ARN, ROLE_KEY, ROLE_SECRET, ROLE_TOKEN, SOURCE_KEY, SOURCE_SECRET};

    pub fn form(body: &[u8]) -> HashMap<String, String> {
        String::from_utf8_lossy(body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned();
                (k.to_string(), v)
            })
            .collect()
    }

    /// An STS stand-in answering AssumeRole for [`ROLE_ARN`] only.
    pub async fn start_sts(calls: Arc<AtomicU32>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let calls = calls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let calls = calls.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let lookup = |key: &str| {
                                (key == SOURCE_KEY).then(|| Credential {
                                    secret_access_key: SOURCE_SECRET.into(),
                                    session_token: None,
                                })
                            };
                            let signed = verify(
                                &VerifyRequest {
                                    method: parts.method.as_str(),
                                    path: parts.uri.path(),
                                    query: parts.uri.query(),
                                    headers: &parts.headers,
                                    body: &body,
                                },
                                &Expect {
                                    regions: Regions::Only("us-east-1"),
                                    service: "sts",
                                    now: SystemTime::now(),
                                    max_skew: Duration::from_secs(900),
                                    explain_mismatch: true,
                                },
                                &lookup,
                            );
                            let f = form(&body);
                            let ok = signed.is_ok()
                                && f.get("Action").map(String::as_str) == Some("AssumeRole")
                                && f.get("RoleArn").map(String::as_str) == Some(ROLE_ARN)
                                && f.get("RoleSessionName").map(String::as_str)
                                    == Some("gw-session")
                                && f.get("ExternalId").map(String::as_str) == Some("ext-123");
                            if !ok {
                                let mut res = hyper::Response::new(Full::new(Bytes::from(format!(
                                    "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                                     <Message>{signed:?} {f:?}</Message></Error></ErrorResponse>"
                                ))));
                                *res.status_mut() = hyper::StatusCode::FORBIDDEN;
                                return Ok::<_, Infallible>(res);
                            }
                            calls.fetch_add(1, Ordering::SeqCst);
                            let expires =
                                DateTime::from(SystemTime::now() + Duration::from_secs(3600))
                                    .fmt(Format::DateTime)
                                    .unwrap();
                            let xml = format!(
                                r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
      <AssumeRoleResult>
        <AssumedRoleUser>
          <AssumedRoleId>AROA3XFRBF535PLBIFPI4:gw-session</AssumedRoleId>
          <Arn>arn:aws:sts::123456789012:assumed-role/invoke-flan/gw-session</Arn>
        </AssumedRoleUser>
        <Credentials>
          <AccessKeyId>{ROLE_KEY}</AccessKeyId>
          <SecretAccessKey>{ROLE_SECRET}</SecretAccessKey>
          <SessionToken>{ROLE_TOKEN}</SessionToken>
          <Expiration>{expires}</Expiration>
        </Credentials>
      </AssumeRoleResult>
      <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
    </AssumeRoleResponse>"#
                            );
                            let mut res = hyper::Response::new(Full::new(Bytes::from(xml)));
                            res.headers_mut()
                                .insert("content-type", "text/xml".parse().unwrap());
                            Ok(res)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }
}

const SOURCE_KEY: &str = "AKIDSOURCECHAIN";
const SOURCE_SECRET: &str = "source-chain-secret";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/invoke-flan";
const ROLE_KEY: &str = "ASIAASSUMEDROLE";
const ROLE_SECRET: &str = "assumed-role-secret";
const ROLE_TOKEN: &str = "assumed-role-session-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagemaker_requests_are_signed_with_the_assumed_role() {
    let mut opts = common::sm_options(emulator::ModelFormat::Tgi);
    opts.credentials = vec![(
        ROLE_KEY.into(),
        Credential {
            secret_access_key: ROLE_SECRET.into(),
            session_token: Some(ROLE_TOKEN.into()),
        },
    )];
    let sm = emulator::sagemaker::start(([127, 0, 0, 1], 0).into(), opts)
        .await
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let sts = start_sts(calls.clone()).await;

    confine_aws_chain(&[
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
    ]);
    std::env::set_var("AWS_ACCESS_KEY_ID", SOURCE_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SOURCE_SECRET);
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ENDPOINT_URL_STS", format!("http://{sts}"));

    let toml = sagemaker_config(
        &sm.url(),
        &format!(
            "role_arn = \"{ROLE_ARN}\"\nrole_session_name = \"gw-session\"\nexternal_id = \"ext-123\""
        ),
    );
    let config = Config::from_toml(&toml, &|_| None).unwrap();
    let served = common::Served::start(config, BuildOptions::default()).await;
    let base = served.base.clone();

    let client = reqwest::Client::new();
    for i in 0..5 {
        predict_sm(
            &client,
            &base,
            r#"{"inputs": "assume the role"}"#,
            &format!("request {i}"),
        )
        .await;
    }
    let seen = sm.counters().last().unwrap();
    let auth = seen.headers["authorization"].to_str().unwrap();
    assert!(auth.contains(&format!("Credential={ROLE_KEY}/")), "{auth}");
    assert_eq!(seen.headers["x-amz-security-token"], ROLE_TOKEN);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the role's credentials are cached"
    );

    served.stop().await;
}
