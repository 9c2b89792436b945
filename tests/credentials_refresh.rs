//! The SageMaker backend takes its credentials from aws-config's default
//! chain, caches them and refreshes them before they expire.
//!
//! A loopback container-credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`,
//! as ECS and EKS Pod Identity provide) hands out short-lived session
//! credentials, a new set on each call; the SageMaker emulator accepts only
//! the sets that have not expired. Requests keep succeeding across several
//! rotations, and the endpoint is called far less often than requests are
//! made. This file holds one test: it sets process environment variables.

#[cfg(test)]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::chain::{confine_aws_chain, predict_sm, sagemaker_config};
use endpoint::start_credentials_endpoint;
use infergate::config::Config;
use infergate::emulator::{self, Credential};
use infergate::gateway::BuildOptions;

/// The container-credentials endpoint.
#[cfg(test)]
mod endpoint {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use aws_smithy_types::date_time::Format;
    use aws_smithy_types::DateTime;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use infergate::emulator::{Credential, EmulatorHandle};
    use tokio::net::TcpListener;

    use super::{CONTAINER_TOKEN, LIFETIME};

    pub struct Issued {
        key: String,
        credential: Credential,
        expires: SystemTime,
    }

    /// Serves fresh credentials on every call and tells the emulator which sets
    /// are valid.
    pub async fn start_credentials_endpoint(
        sm: Arc<EmulatorHandle>,
        calls: Arc<AtomicU32>,
    ) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issued: Arc<Mutex<Vec<Issued>>> = Arc::default();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (sm, calls, issued) = (sm.clone(), calls.clone(), issued.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (sm, calls, issued) = (sm.clone(), calls.clone(), issued.clone());
                        async move {
                            // The chain must send the container authorization token.
                            let authorized = req
                                .headers()
                                .get("authorization")
                                .is_some_and(|v| v == CONTAINER_TOKEN);
                            if !authorized {
                                let mut res =
                                    hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                                *res.status_mut() = hyper::StatusCode::FORBIDDEN;
                                return Ok::<_, Infallible>(res);
                            }
                            let n = calls.fetch_add(1, Ordering::SeqCst);
                            let now = SystemTime::now();
                            let expires = now + LIFETIME;
                            let key = format!("ASIAROTATION{n:04}");
                            let secret = format!("rotating-secret-{n}");
                            let token = format!("rotating-session-token-{n}");
                            let mut issued = issued.lock().unwrap();
                            issued.push(Issued {
                                key: key.clone(),
                                credential: Credential {
                                    secret_access_key: secret.clone(),
                                    session_token: Some(token.clone()),
                                },
                                expires,
                            });
                            // The emulator accepts only sets that have not expired.
                            issued.retain(|i| i.expires > now);
                            sm.set_credentials(
                                issued
                                    .iter()
                                    .map(|i| (i.key.clone(), i.credential.clone()))
                                    .collect(),
                            );
                            let body = serde_json::json!({
                                "AccessKeyId": key,
                                "SecretAccessKey": secret,
                                "Token": token,
                                "Expiration": DateTime::from(expires).fmt(Format::DateTime).unwrap(),
                            });
                            Ok(hyper::Response::new(Full::new(Bytes::from(
                                body.to_string(),
                            ))))
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

/// Lifetime of each set of credentials handed out.
const LIFETIME: Duration = Duration::from_secs(2);
const CONTAINER_TOKEN: &str = "container-auth-token-canary";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_succeed_across_credential_rotations() {
    let sm = Arc::new(
        emulator::sagemaker::start(
            ([127, 0, 0, 1], 0).into(),
            common::sm_options(emulator::ModelFormat::Tgi),
        )
        .await
        .unwrap(),
    );
    // Nothing is accepted until the endpoint hands out a first set.
    sm.set_credentials(vec![(
        "AKIDNOBODYHAS".into(),
        Credential {
            secret_access_key: "x".into(),
            session_token: None,
        },
    )]);
    let calls = Arc::new(AtomicU32::new(0));
    let creds_addr = start_credentials_endpoint(sm.clone(), calls.clone()).await;

    // Only the container endpoint may provide credentials.
    confine_aws_chain(&[
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ]);
    std::env::set_var(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        format!("http://{creds_addr}/v2/credentials"),
    );
    std::env::set_var("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN);

    let toml = sagemaker_config(&sm.url(), "");
    let config = Config::from_toml(&toml, &|_| None).unwrap();
    let served = common::Served::start(config, BuildOptions::default()).await;
    let base = served.base.clone();

    let client = reqwest::Client::new();
    let mut keys = std::collections::BTreeSet::new();
    let mut requests = 0u32;
    let started = tokio::time::Instant::now();
    // Run until at least four sets were used (bounded in time).
    while keys.len() < 4 && started.elapsed() < Duration::from_secs(20) {
        predict_sm(
            &client,
            &base,
            r#"{"inputs": "rotate"}"#,
            &format!("request {requests}"),
        )
        .await;
        requests += 1;
        let seen = sm.counters().last().unwrap();
        let auth = seen.headers["authorization"].to_str().unwrap().to_string();
        let key = auth
            .split("Credential=")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap()
            .to_string();
        assert!(seen.headers.get("x-amz-security-token").is_some());
        keys.insert(key);
        // Pacing, not synchronisation: the requests spread over several
        // credential lifetimes.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(keys.len() >= 4, "only {} credential sets used", keys.len());
    let fetched = calls.load(Ordering::SeqCst);
    assert!(
        fetched * 3 < requests,
        "credentials are cached: {fetched} fetches for {requests} requests"
    );
    assert_eq!(sm.counters().auth_rejections(), 0);

    served.stop().await;
}
