//! What is specific to one backend kind: Hugging Face's bearer token,
//! SageMaker's SigV4 signature, headers and credentials, and the JumpStart
//! payload adapter.

use crate::common::{error_json, patch, Harness, Setup, BODY, CONFIG, HF_TOKEN, SECRET_KEY};
use crate::expected_answer;
use serde_json::{json, Value};

#[tokio::test]
async fn wrong_aws_secret_is_a_gateway_misconfiguration() {
    let h = Harness::with(Setup {
        sm_secret: "not-the-secret".into(),
        ..Setup::default()
    })
    .await;
    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["x-infergate-attempts"], "1");
    let e = error_json(res).await;
    assert_eq!(e["type"], "upstream_auth_rejected");
    assert_eq!(e["upstream_status"], 403);
    let text = e.to_string();
    assert!(!text.contains("not-the-secret"));
    assert!(!text.contains(SECRET_KEY));
    assert_eq!(h.sm.counters().auth_rejections(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_hf_token_is_a_gateway_misconfiguration() {
    let h = Harness::start().await;
    h.hf.set_token(Some("some-other-token".into()));
    let res = h.predict("hf", BODY).await;
    assert_eq!(res.status(), 502);
    let e = error_json(res).await;
    assert_eq!(e["type"], "upstream_auth_rejected");
    assert_eq!(e["upstream_status"], 401);
    assert!(!e.to_string().contains(HF_TOKEN));
    h.shutdown().await;
}

#[tokio::test]
async fn hf_gets_the_bearer_token_and_sagemaker_a_sigv4_signature() {
    let h = Harness::start().await;
    assert_eq!(h.predict("hf", BODY).await.status(), 200);
    assert_eq!(h.predict("sm", BODY).await.status(), 200);
    let hf = h.hf.counters().last().unwrap();
    assert_eq!(
        hf.headers["authorization"],
        format!("Bearer {HF_TOKEN}").as_str()
    );
    let sm = h.sm.counters().last().unwrap();
    let auth = sm.headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDINFERGATETEST/"));
    assert!(auth.contains("/us-east-1/sagemaker/aws4_request"));
    assert!(sm.headers.get("x-amz-date").is_some());
    assert!(sm.headers.get("x-amz-content-sha256").is_none());
    assert_eq!(sm.path, "/endpoints/flan-t5-small/invocations");
    h.shutdown().await;
}

#[tokio::test]
async fn public_hf_endpoint_gets_no_authorization() {
    let config = patch(CONFIG, "token = \"${HF_TOKEN}\"\n", "");
    let h = Harness::with_config(config).await;
    h.hf.set_token(None);
    assert_eq!(h.predict("hf", BODY).await.status(), 200);
    assert!(h
        .hf
        .counters()
        .last()
        .unwrap()
        .headers
        .get("authorization")
        .is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn sagemaker_headers_pass_both_ways() {
    let h = Harness::start().await;
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("content-type", "application/json")
        .header("x-amzn-sagemaker-custom-attributes", "trace=abc")
        .header("x-amzn-sagemaker-target-variant", "variant-b")
        .header("x-amzn-sagemaker-inference-id", "inf-1")
        .header("x-amzn-sagemaker-session-id", "NEW_SESSION")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-amzn-invoked-production-variant"],
        "variant-b"
    );
    assert_eq!(
        res.headers()["x-amzn-sagemaker-custom-attributes"],
        "trace=abc"
    );
    let session = res.headers()["x-amzn-sagemaker-new-session-id"]
        .to_str()
        .unwrap();
    assert!(session.contains("; Expires="), "{session}");
    let seen = h.sm.counters().last().unwrap();
    assert_eq!(seen.headers["x-amzn-sagemaker-inference-id"], "inf-1");
    // The signed headers include the forwarded ones.
    let auth = seen.headers["authorization"].to_str().unwrap();
    assert!(auth.contains("x-amzn-sagemaker-custom-attributes"));
    h.shutdown().await;
}

#[tokio::test]
async fn fixed_config_headers_are_sent() {
    let config = patch(CONFIG,
        "endpoint_url = \"${SM_URL}\"\n",
        "endpoint_url = \"${SM_URL}\"\ntarget_variant = \"pinned\"\ncustom_attributes = \"from-config\"\n",
    );
    let h = Harness::with_config(config).await;
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("content-type", "application/json")
        .header("x-amzn-sagemaker-target-variant", "client-choice")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-amzn-invoked-production-variant"], "pinned");
    let seen = h.sm.counters().last().unwrap();
    assert_eq!(
        seen.headers["x-amzn-sagemaker-custom-attributes"],
        "from-config"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn invalid_sagemaker_header_is_the_clients_400() {
    let h = Harness::start().await;
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("x-amzn-sagemaker-target-variant", "v".repeat(64))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(error_json(res).await["type"], "bad_request");
    assert_eq!(h.sm.counters().requests(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn jumpstart_backend_is_adapted_both_ways() {
    let h = Harness::start().await;
    let res = h.predict("js", BODY).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v, expected_answer());
    let seen = h.js.counters().last().unwrap();
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        sent,
        json!({"text_inputs": "one stable inference URL", "max_length": 8})
    );
    h.shutdown().await;
}

#[tokio::test]
async fn non_json_to_an_adapted_backend_is_a_400() {
    let h = Harness::start().await;
    let res = h.predict("js", "not json").await;
    assert_eq!(res.status(), 400);
    let e = error_json(res).await;
    assert_eq!(e["type"], "invalid_input");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .starts_with("the request body must be JSON for this route's backend \"js\""));
    assert_eq!(h.js.counters().requests(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn no_aws_credentials_is_credentials_unavailable_and_fails_over() {
    use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
    #[derive(Debug)]
    struct Nothing;
    impl ProvideCredentials for Nothing {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "internal-detail-canary: role arn:aws:iam::123456789012:role/x",
            )))
        }
    }
    let h = Harness::with(Setup {
        credentials: Some(aws_credential_types::provider::SharedCredentialsProvider::new(Nothing)),
        ..Setup::default()
    })
    .await;
    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 502);
    let e = error_json(res).await;
    assert_eq!(e["type"], "credentials_unavailable");
    assert!(!e.to_string().contains("internal-detail-canary"), "{e}");
    assert_eq!(h.sm.counters().requests(), 0);
    // The route with a second backend is served by it.
    for _ in 0..5 {
        let res = h.predict("both", BODY).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-infergate-backend"], "hf");
    }
    h.shutdown().await;
}
