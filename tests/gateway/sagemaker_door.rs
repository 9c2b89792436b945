//! The SageMaker-compatible door, called by AWS's own Rust SDK
//! (`aws-sdk-sagemakerruntime`): both backend kinds answer it alike, every
//! failure is the SDK's modelled error, streams are AWS event streams, and
//! callers sign with the client table's AWS keys, checked as AWS checks
//! them.

use std::time::{Duration, SystemTime};

use aws_sdk_sagemakerruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::{
    InvokeEndpointError, InvokeEndpointOutput,
};
use aws_sdk_sagemakerruntime::operation::RequestId;
use aws_sdk_sagemakerruntime::primitives::Blob;
use aws_sdk_sagemakerruntime::types::error::ResponseStreamError;
use aws_sdk_sagemakerruntime::types::ResponseStream;
use aws_sdk_sagemakerruntime::Client;
use infergate::emulator::{FaultConfig, InjectedError, StreamError};

use crate::common::model::expected_sse;
use crate::common::sdk::{sdk_client, sigv4_headers};
use crate::common::{Harness, Setup, ACCESS_KEY, BODY, CONFIG};

const WEB_AKID: &str = "AKIAINFERGATEWEB01";
const WEB_SECRET: &str = "web-door-secret-canary-7731";
const JS_AKID: &str = "AKIAINFERGATEJS0001";
const JS_SECRET: &str = "js-door-secret-canary-5519";
const JS_TOKEN: &str = "js-door-session-token-canary-0c4f";
const WEB_BEARER: &str = "web-bearer-canary-key";

/// Two clients with AWS keys: `web` (routes `sm`, `hf`, `both`) and `js`.
fn keyed_config(doors: &str) -> String {
    format!(
        r#"{CONFIG}
[clients.web]
api_key = "{WEB_BEARER}"
routes = ["sm", "hf", "both"]
aws_access_key_id = "{WEB_AKID}"
aws_secret_access_key = "${{WEB_AWS_SECRET}}"

[clients.js]
api_key = "js-bearer-canary-key"
routes = ["js"]
aws_access_key_id = "{JS_AKID}"
aws_secret_access_key = "${{JS_AWS_SECRET}}"
aws_session_token = "${{JS_AWS_TOKEN}}"
{doors}
"#
    )
}

async fn keyed(doors: &str) -> Harness {
    Harness::with(Setup {
        config: keyed_config(doors),
        extra_vars: vec![
            ("WEB_AWS_SECRET".into(), WEB_SECRET.into()),
            ("JS_AWS_SECRET".into(), JS_SECRET.into()),
            ("JS_AWS_TOKEN".into(), JS_TOKEN.into()),
        ],
        ..Setup::default()
    })
    .await
}

fn web(h: &Harness) -> Client {
    sdk_client(&h.base, WEB_AKID, WEB_SECRET, None)
}

/// Any key will do while `server.auth = "none"`.
fn anyone(h: &Harness) -> Client {
    sdk_client(&h.base, "AKIDANYONE", "any-secret", None)
}

async fn invoke(
    client: &Client,
    endpoint: &str,
) -> Result<InvokeEndpointOutput, SdkError<InvokeEndpointError>> {
    client
        .invoke_endpoint()
        .endpoint_name(endpoint)
        .content_type("application/json")
        .accept("application/json")
        .body(Blob::new(BODY))
        .send()
        .await
}

/// The error's code, as botocore and the SDKs name it.
fn code(e: &SdkError<InvokeEndpointError>) -> String {
    e.as_service_error()
        .and_then(|s| s.code())
        .unwrap_or_else(|| panic!("not a service error: {e:?}"))
        .to_owned()
}

fn message(e: &SdkError<InvokeEndpointError>) -> String {
    e.as_service_error()
        .and_then(|s| s.message())
        .unwrap_or_default()
        .to_owned()
}

/// The answer names `want` in `x-amzn-ErrorType` (`Type:namespace`).
fn assert_error_type(res: &reqwest::Response, want: &str) {
    let kind = res.headers()["x-amzn-errortype"].to_str().unwrap();
    assert_eq!(kind.split(':').next(), Some(want), "{kind}");
}

/// How a stream read through the SDK ended: cleanly, or with this error.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    Error(String),
}

/// Every `PayloadPart`'s bytes, joined, the production variant and the end.
async fn stream(client: &Client, endpoint: &str) -> (String, Option<String>, End) {
    let mut out = client
        .invoke_endpoint_with_response_stream()
        .endpoint_name(endpoint)
        .content_type("application/json")
        .body(Blob::new(BODY))
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_type(), Some("text/event-stream"));
    let variant = out.invoked_production_variant().map(str::to_owned);
    let mut bytes = Vec::new();
    let end = loop {
        match out.body.recv().await {
            Ok(Some(ResponseStream::PayloadPart(p))) => {
                bytes.extend_from_slice(p.bytes().unwrap().as_ref());
            }
            Ok(Some(other)) => panic!("unexpected event {other:?}"),
            Ok(None) => break End::Clean,
            Err(e) => {
                let end = match e.as_service_error() {
                    Some(ResponseStreamError::ModelStreamError(m)) => format!(
                        "ModelStreamError {}: {}",
                        m.error_code().unwrap_or("-"),
                        m.message().unwrap_or("-")
                    ),
                    Some(ResponseStreamError::InternalStreamFailure(m)) => {
                        format!("InternalStreamFailure: {}", m.message().unwrap_or("-"))
                    }
                    _ => format!("{e:?}"),
                };
                break End::Error(end);
            }
        }
    };
    (String::from_utf8(bytes).unwrap(), variant, end)
}

#[tokio::test]
async fn the_sdk_gets_the_same_answer_from_either_backend() {
    let h = Harness::start().await;
    let client = anyone(&h);
    let sm = invoke(&client, "sm").await.unwrap();
    let hf = invoke(&client, "hf").await.unwrap();
    assert_eq!(sm.body().unwrap().as_ref(), hf.body().unwrap().as_ref());
    let answer: serde_json::Value = serde_json::from_slice(sm.body().unwrap().as_ref()).unwrap();
    assert_eq!(answer, crate::expected_answer());
    assert_eq!(sm.content_type(), Some("application/json"));
    assert_eq!(hf.content_type(), Some("application/json"));
    // SageMaker's own variant name; for an HF endpoint, the backend's name.
    assert_eq!(sm.invoked_production_variant(), Some("AllTraffic"));
    assert_eq!(hf.invoked_production_variant(), Some("hf"));
    assert!(sm.request_id().is_some_and(|id| !id.is_empty()));
    let routes = h.get_json("/v1/routes").await;
    assert_eq!(
        routes["routes"][0]["doors"]["sagemaker"],
        serde_json::json!([
            "/endpoints/both/invocations",
            "/endpoints/both/invocations-response-stream"
        ])
    );
    // The client's signature stayed here: the emulator saw the gateway's key.
    let seen = h.sm.counters().last().unwrap();
    let auth = seen.headers["authorization"].to_str().unwrap().to_owned();
    assert!(
        auth.contains(ACCESS_KEY) && !auth.contains("AKIDANYONE"),
        "{auth}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn streams_from_either_backend_are_the_same_payload_parts() {
    let h = Harness::start().await;
    let client = anyone(&h);
    let want = expected_sse("one stable inference URL", Some(8));
    let (sm, sm_variant, sm_end) = stream(&client, "sm").await;
    let (hf, hf_variant, hf_end) = stream(&client, "hf").await;
    assert_eq!(sm, want);
    assert_eq!(hf, want);
    assert_eq!((sm_end, hf_end), (End::Clean, End::Clean));
    assert_eq!(sm_variant.as_deref(), Some("AllTraffic"));
    assert_eq!(hf_variant.as_deref(), Some("hf"));
    h.shutdown().await;
}

#[tokio::test]
async fn a_failure_mid_stream_is_the_exception_sagemaker_sends() {
    let h = Harness::start().await;
    h.sm.faults().set(FaultConfig {
        stream_error_after: Some(2),
        stream_error: StreamError::ModelStreamError,
        ..FaultConfig::default()
    });
    let (bytes, _, end) = stream(&anyone(&h), "sm").await;
    assert_eq!(
        end,
        End::Error(
            "ModelStreamError StreamBroken: Model stream broken (injected by the infergate emulator)."
                .into()
        )
    );
    assert_eq!(bytes.matches("data:").count(), 2, "{bytes}");
    h.sm.faults().set(FaultConfig {
        stream_error_after: Some(1),
        stream_error: StreamError::InternalStreamFailure,
        ..FaultConfig::default()
    });
    let (_, _, end) = stream(&anyone(&h), "sm").await;
    assert!(
        matches!(&end, End::Error(e) if e.starts_with("InternalStreamFailure: ")),
        "{end:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn the_models_own_error_event_goes_out_as_the_container_wrote_it() {
    let h = Harness::start().await;
    h.hf.faults().set(FaultConfig {
        stream_error_after: Some(2),
        ..FaultConfig::default()
    });
    let (bytes, _, end) = stream(&anyone(&h), "hf").await;
    assert_eq!(end, End::Clean);
    let events: Vec<&str> = bytes.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 3, "{bytes}");
    let last: serde_json::Value =
        serde_json::from_str(events[2].strip_prefix("data:").unwrap()).unwrap();
    assert_eq!(
        last,
        serde_json::from_str::<serde_json::Value>(&infergate::emulator::model::stream_error_event())
            .unwrap()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn each_failure_is_its_modelled_error() {
    let h = Harness::start().await;
    let client = anyone(&h);

    let e = invoke(&client, "nope").await.unwrap_err();
    assert!(matches!(
        e.as_service_error(),
        Some(InvokeEndpointError::ValidationError(_))
    ));
    assert_eq!(message(&e), "Endpoint nope not found.");

    h.hf.faults().fail_next(1, InjectedError::Status(422));
    let e = invoke(&client, "hf").await.unwrap_err();
    let Some(InvokeEndpointError::ModelError(m)) = e.as_service_error() else {
        panic!("{e:?}");
    };
    assert_eq!(m.original_status_code(), Some(422));
    assert_eq!(m.log_stream_arn(), None);
    assert!(m.original_message().is_some_and(|s| !s.is_empty()));

    h.sm.faults().fail_next(
        1,
        InjectedError::ModelError {
            original_status: 400,
        },
    );
    let e = invoke(&client, "sm").await.unwrap_err();
    let Some(InvokeEndpointError::ModelError(m)) = e.as_service_error() else {
        panic!("{e:?}");
    };
    assert_eq!(m.original_status_code(), Some(400));
    assert!(
        m.log_stream_arn()
            .is_some_and(|arn| arn.starts_with("arn:aws:logs:us-east-1:")),
        "{m:?}"
    );

    for (injected, want) in [
        (InjectedError::ThrottlingException, "ThrottlingException"),
        (
            InjectedError::ModelNotReadyException,
            "ModelNotReadyException",
        ),
        (InjectedError::ServiceUnavailable, "ServiceUnavailable"),
        (InjectedError::InternalFailure, "InternalFailure"),
        (
            InjectedError::InternalDependencyException,
            "InternalDependencyException",
        ),
        (InjectedError::ValidationError, "ValidationError"),
        (
            InjectedError::ModelError {
                original_status: 500,
            },
            "ModelError",
        ),
    ] {
        h.sm.faults().set(FaultConfig {
            error_rate: 1.0,
            error: injected,
            ..FaultConfig::default()
        });
        let e = invoke(&client, "sm").await.unwrap_err();
        assert_eq!(code(&e), want);
        let typed = match e.as_service_error().unwrap() {
            InvokeEndpointError::ModelNotReadyException(_) => "ModelNotReadyException",
            InvokeEndpointError::ServiceUnavailable(_) => "ServiceUnavailable",
            InvokeEndpointError::InternalFailure(_) => "InternalFailure",
            InvokeEndpointError::InternalDependencyException(_) => "InternalDependencyException",
            InvokeEndpointError::ValidationError(_) => "ValidationError",
            InvokeEndpointError::ModelError(m) => {
                assert_eq!(m.original_status_code(), Some(500));
                "ModelError"
            }
            _ => "ThrottlingException",
        };
        assert_eq!(typed, want, "modelled as its own variant");
    }
    h.sm.faults().set(FaultConfig::default());
    // An HF model's 500, as the HF toolkit on SageMaker would answer it.
    h.hf.faults().set(FaultConfig {
        error_rate: 1.0,
        error: InjectedError::Status(500),
        ..FaultConfig::default()
    });
    let e = invoke(&client, "hf").await.unwrap_err();
    let Some(InvokeEndpointError::ModelError(m)) = e.as_service_error() else {
        panic!("{e:?}");
    };
    assert_eq!(m.original_status_code(), Some(500));
    h.shutdown().await;
}

#[tokio::test]
async fn a_backend_refusing_the_gateways_credentials_is_an_internal_dependency() {
    let h = Harness::with(Setup {
        sm_secret: "not-the-emulators-secret".into(),
        ..Setup::default()
    })
    .await;
    let e = invoke(&anyone(&h), "sm").await.unwrap_err();
    assert!(matches!(
        e.as_service_error(),
        Some(InvokeEndpointError::InternalDependencyException(_))
    ));
    h.shutdown().await;
}

#[tokio::test]
async fn a_client_signs_with_its_aws_key() {
    let h = keyed("").await;
    let ok = invoke(&web(&h), "both").await.unwrap();
    assert!(ok.invoked_production_variant().is_some());
    // Each refusal as AWS's request layer words it.
    let cases = [
        (
            sdk_client(&h.base, WEB_AKID, "wrong-secret", None),
            "InvalidSignatureException",
        ),
        (
            sdk_client(&h.base, "AKIAUNKNOWN", WEB_SECRET, None),
            "UnrecognizedClientException",
        ),
        // A session token no client has.
        (
            sdk_client(&h.base, WEB_AKID, WEB_SECRET, Some("a-session-token")),
            "UnrecognizedClientException",
        ),
    ];
    for (client, want) in cases {
        let e = invoke(&client, "sm").await.unwrap_err();
        assert_eq!(code(&e), want);
        assert!(!message(&e).contains(WEB_SECRET));
        assert!(
            !message(&e).contains("POST\n"),
            "no canonical request: {}",
            message(&e)
        );
    }
    // A temporary key pair: with its token only, and for its own routes.
    let js = sdk_client(&h.base, JS_AKID, JS_SECRET, Some(JS_TOKEN));
    let e = invoke(&js, "sm").await.unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException");
    assert!(invoke(&js, "js").await.is_ok());
    for token in [None, Some("another-token")] {
        let e = invoke(&sdk_client(&h.base, JS_AKID, JS_SECRET, token), "js")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "UnrecognizedClientException", "{token:?}");
        assert!(!message(&e).contains(JS_TOKEN));
    }
    // Nothing refused reached a backend, nothing counted against a limit.
    assert_eq!(h.sm.counters().requests(), 0);
    h.shutdown().await;
}

/// A request to the door signed here at `time`, sent without the SDK.
async fn signed_at(h: &Harness, time: SystemTime) -> reqwest::Response {
    signed_with(h, &h.client, time).await
}

/// The same, sent by `client` (HTTP/2 carries the host as `:authority`).
async fn signed_with(h: &Harness, client: &reqwest::Client, time: SystemTime) -> reqwest::Response {
    let url = h.url("/endpoints/sm/invocations");
    let mut req = client
        .post(&url)
        .header("content-type", "application/json")
        .body(BODY);
    for (k, v) in sign_for(&url, WEB_AKID, time) {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

/// The headers that sign a POST of [`BODY`] to `url` with `akid`'s key.
fn sign_for(url: &str, akid: &str, time: SystemTime) -> Vec<(String, String)> {
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let headers = [("content-type", "application/json"), ("host", host)];
    sigv4_headers(
        url,
        &headers,
        BODY.as_bytes(),
        (akid, WEB_SECRET, None),
        time,
    )
}

#[tokio::test]
async fn an_unknown_key_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = keyed("").await;
    let url = h.url("/endpoints/sm/invocations");
    let mut head = format!(
        "POST /endpoints/sm/invocations HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n",
        url.trim_start_matches("http://").split('/').next().unwrap()
    );
    for (k, v) in sign_for(&url, "AKIAUNKNOWNCALLER1", SystemTime::now()) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = tokio::net::TcpStream::connect(
        url.trim_start_matches("http://").split('/').next().unwrap(),
    )
    .await
    .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    // No body is sent: the answer comes anyway, long before the deadline.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
        .await
        .expect("answered before the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("UnrecognizedClientException"), "{text}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_clock_five_minutes_off_is_a_signature_expired() {
    let h = keyed("").await;
    let now = SystemTime::now();
    assert_eq!(
        signed_at(&h, now - Duration::from_secs(60)).await.status(),
        200
    );
    for skewed in [
        now - Duration::from_secs(6 * 60),
        now + Duration::from_secs(6 * 60),
    ] {
        let res = signed_at(&h, skewed).await;
        assert_eq!(res.status(), 403);
        assert_error_type(&res, "InvalidSignatureException");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().starts_with("Signature "),
            "{body}"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn over_http2_the_authority_is_the_signed_host() {
    let h = keyed("").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = signed_with(&h, &h2, SystemTime::now()).await;
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn an_unsigned_or_bearer_request_is_refused_in_the_sagemaker_shape() {
    let h = keyed("").await;
    let url = h.url("/endpoints/sm/invocations");
    for auth in [None, Some(format!("Bearer {WEB_BEARER}"))] {
        let mut req = h
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(BODY);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "{auth:?}");
        assert_error_type(&res, "MissingAuthenticationTokenException");
        assert!(res.headers().get("x-amzn-requestid").is_some());
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["message"], "Missing Authentication Token");
    }
    // Malformed: IncompleteSignatureException, 400.
    let res = h
        .client
        .post(&url)
        .header("authorization", "AWS4-HMAC-SHA256 Credential=x")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_error_type(&res, "IncompleteSignatureException");
    h.shutdown().await;
}

#[tokio::test]
async fn the_accepted_regions_can_be_pinned() {
    let h = keyed("[doors.sagemaker]\nregions = [\"eu-west-1\"]\n").await;
    let e = invoke(&web(&h), "sm").await.unwrap_err();
    assert_eq!(code(&e), "InvalidSignatureException");
    assert_eq!(
        message(&e),
        "Credential should be scoped to a valid region. "
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_base_path_async_invocations_and_other_methods() {
    let h = Harness::start().await;
    let prefixed = sdk_client(&format!("{}/sagemaker", h.base), "AKIDANY", "x", None);
    assert!(invoke(&prefixed, "hf").await.is_ok());
    let res = h
        .client
        .post(h.url("/endpoints/sm/async-invocations"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_error_type(&res, "ValidationError");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("not supported"),
        "{body}"
    );
    let res = h
        .client
        .get(h.url("/endpoints/sm/invocations"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_error_type(&res, "UnknownOperationException");
    h.shutdown().await;
}

#[tokio::test]
async fn the_door_can_be_closed() {
    let config = format!("{CONFIG}\n[doors.sagemaker]\nenabled = false\n");
    let h = Harness::with_config(config).await;
    let res = h
        .client
        .post(h.url("/endpoints/sm/invocations"))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers().get("x-amzn-errortype").is_none());
    let routes = h.get_json("/v1/routes").await;
    let doors = &routes["routes"][0]["doors"];
    assert!(doors.get("sagemaker").is_none(), "{doors}");
    assert!(doors.get("predict").is_some(), "{doors}");
    h.shutdown().await;
}
