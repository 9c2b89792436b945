//! The SageMaker runtime emulator over real loopback sockets: routes, formats,
//! every error shape and header, SigV4 (requests signed here with the
//! `aws-sigv4` crate, independently of the gateway's signer), sessions, the
//! event stream and its faults, resets, latency, cold start, counters and the
//! control routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::Message;
use infergate::emulator::model;
use infergate::emulator::sagemaker::{self, ModelFormat, SageMakerOptions};
use infergate::emulator::{Credential, EmulatorHandle, FaultConfig, InjectedError, StreamError};
use serde_json::{json, Value};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

struct Key<'a> {
    id: &'a str,
    secret: &'a str,
    token: Option<&'a str>,
}

const KEY: Key<'static> = Key {
    id: AKID,
    secret: SECRET,
    token: None,
};

async fn start(opts: SageMakerOptions) -> EmulatorHandle {
    sagemaker::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap()
}

async fn start_default() -> EmulatorHandle {
    start(SageMakerOptions::default()).await
}

fn signed_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    key: &Key<'_>,
    time: SystemTime,
) -> Vec<(String, String)> {
    let identity: Identity = Credentials::new(
        key.id,
        key.secret,
        key.token.map(str::to_owned),
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
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

struct Call<'a> {
    path: String,
    body: Vec<u8>,
    headers: Vec<(&'a str, &'a str)>,
    key: Option<&'a Key<'a>>,
    time: SystemTime,
    client: reqwest::Client,
}

fn call<'a>(path: &str, body: impl Into<Vec<u8>>) -> Call<'a> {
    Call {
        path: path.to_owned(),
        body: body.into(),
        headers: vec![("content-type", "application/json")],
        key: None,
        time: SystemTime::now(),
        client: reqwest::Client::new(),
    }
}

impl<'a> Call<'a> {
    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }
    fn signed(mut self, key: &'a Key<'a>) -> Self {
        self.key = Some(key);
        self
    }
    fn at(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }
    fn client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }
    async fn try_send(self, emu: &EmulatorHandle) -> reqwest::Result<reqwest::Response> {
        let url = format!("{}{}", emu.url(), self.path);
        let mut req = self.client.post(&url).body(self.body.clone());
        for (k, v) in &self.headers {
            req = req.header(*k, *v);
        }
        if let Some(key) = self.key {
            for (k, v) in signed_headers(&url, &self.headers, &self.body, key, self.time) {
                req = req.header(k, v);
            }
        }
        req.send().await
    }
    async fn send(self, emu: &EmulatorHandle) -> reqwest::Response {
        self.try_send(emu).await.unwrap()
    }
}

fn invoke<'a>(body: impl Into<Vec<u8>>) -> Call<'a> {
    call("/endpoints/flan/invocations", body)
}

fn stream<'a>(body: impl Into<Vec<u8>>) -> Call<'a> {
    call("/endpoints/flan/invocations-response-stream", body)
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Checks the parts every AWS error has and returns the body.
async fn aws_error(resp: reqwest::Response, status: u16, error_type: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let et = header(&resp, "x-amzn-errortype").expect("x-amzn-ErrorType");
    assert_eq!(et.split(':').next(), Some(error_type), "{et}");
    assert!(et.contains(":http://internal.amazon.com/coral/"), "{et}");
    assert_eq!(header(&resp, "x-amzn-requestid").unwrap().len(), 36);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    resp.json().await.unwrap()
}

fn decode_frames(body: &[u8]) -> Result<Vec<Message>, aws_smithy_eventstream::error::Error> {
    let mut buf = body;
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(read_message_from(&mut buf)?);
    }
    Ok(out)
}

fn header_of(m: &Message, name: &str) -> String {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .map(|h| h.value().as_string().unwrap().as_str().to_owned())
        .unwrap_or_default()
}

fn expected_sse(inputs: &str, max_new_tokens: Option<u32>) -> String {
    let gen = model::Generation::run(inputs, max_new_tokens);
    model::generate_stream_events(&gen, false)
        .iter()
        .map(|e| format!("data:{e}\n\n"))
        .collect()
}

fn is_reset(err: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionReset {
                return true;
            }
        }
        src = e.source();
    }
    false
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// === InvokeEndpoint ===

#[tokio::test]
async fn invoke_tgi_answers_generated_text_with_sagemaker_headers() {
    let emu = start_default().await;
    let body = r#"{"inputs":"one two three","parameters":{"max_new_tokens":2}}"#;
    let resp = invoke(body)
        .header("x-amzn-sagemaker-custom-attributes", "trace=abc")
        .header("x-amzn-sagemaker-target-variant", "Blue")
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(&resp, "x-amzn-invoked-production-variant").as_deref(),
        Some("Blue")
    );
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-custom-attributes").as_deref(),
        Some("trace=abc")
    );
    assert_eq!(header(&resp, "x-amzn-requestid").unwrap().len(), 36);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!([{"generated_text": "three two"}])
    );

    let resp = invoke(r#"{"inputs":"a b"}"#).send(&emu).await;
    assert_eq!(
        header(&resp, "x-amzn-invoked-production-variant").as_deref(),
        Some("AllTraffic")
    );
    assert!(header(&resp, "x-amzn-sagemaker-custom-attributes").is_none());

    assert_eq!(emu.counters().requests(), 2);
    let last = emu.counters().last().unwrap();
    assert_eq!(last.method, http::Method::POST);
    assert_eq!(last.path, "/endpoints/flan/invocations");
    assert_eq!(&last.body[..], br#"{"inputs":"a b"}"#);
    assert_eq!(emu.counters().recent().len(), 2);
    assert_eq!(emu.counters().in_flight(), 0);
    assert_eq!(emu.counters().cancelled(), 0);
}

#[tokio::test]
async fn invoke_tgi_chat_details_and_buffered_stream() {
    let emu = start_default().await;
    let chat = r#"{"messages":[{"role":"user","content":"x y z"}],"max_tokens":2}"#;
    let v: Value = invoke(chat).send(&emu).await.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "z y");
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    let v: Value = invoke(r#"{"inputs":"a b","parameters":{"details":true}}"#)
        .send(&emu)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v[0]["details"]["finish_reason"], "eos_token");
    assert_eq!(v[0]["details"]["generated_tokens"], 2);

    // "stream": true on the buffered route: the container's SSE, whole.
    let resp = invoke(r#"{"inputs":"a b","stream":true}"#).send(&emu).await;
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(resp.text().await.unwrap(), expected_sse("a b", None));
}

#[tokio::test]
async fn jumpstart_text2text_format() {
    let emu = start(SageMakerOptions {
        format: ModelFormat::JumpStartText2Text,
        ..SageMakerOptions::default()
    })
    .await;
    let v: Value =
        invoke(r#"{"text_inputs":"one two three","max_length":2,"num_return_sequences":2}"#)
            .send(&emu)
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(v, json!({"generated_texts": ["three two", "three two"]}));

    let resp = invoke("one two")
        .header("content-type", "application/x-text")
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"generated_text": "two one"})
    );

    let v = aws_error(
        invoke(r#"{"inputs":"a"}"#).send(&emu).await,
        424,
        "ModelError",
    )
    .await;
    assert_eq!(v["OriginalStatusCode"], 400);

    let v = aws_error(
        invoke("a")
            .header("content-type", "text/csv")
            .send(&emu)
            .await,
        424,
        "ModelError",
    )
    .await;
    assert!(v["OriginalMessage"].as_str().unwrap().contains("text/csv"));

    let v = aws_error(
        stream(r#"{"text_inputs":"a"}"#).send(&emu).await,
        400,
        "ValidationError",
    )
    .await;
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("does not support response streaming"));
}

// === validation ===

#[tokio::test]
async fn unknown_endpoint_and_bad_names_are_validation_errors() {
    let emu = start(SageMakerOptions {
        endpoints: vec!["flan".to_owned()],
        ..SageMakerOptions::default()
    })
    .await;
    let ok = invoke(r#"{"inputs":"a"}"#).send(&emu).await;
    assert_eq!(ok.status(), 200);

    let resp = call("/endpoints/other/invocations", r#"{"inputs":"a"}"#)
        .send(&emu)
        .await;
    let v = aws_error(resp, 400, "ValidationError").await;
    assert_eq!(
        v["message"],
        "Endpoint other of account 123456789012 not found."
    );

    let resp = call("/endpoints/bad_name/invocations", "{}")
        .send(&emu)
        .await;
    let v = aws_error(resp, 400, "ValidationError").await;
    assert_eq!(
        v["message"],
        "1 validation error detected: Value 'bad_name' at 'endpointName' failed to satisfy constraint: \
         Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
    );

    let long = "a".repeat(64);
    let resp = call(&format!("/endpoints/{long}/invocations"), "{}")
        .send(&emu)
        .await;
    let v = aws_error(resp, 400, "ValidationError").await;
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("length less than or equal to 63"));

    let resp = call("/endpoints/flan/predict", "{}").send(&emu).await;
    aws_error(resp, 404, "UnknownOperationException").await;
}

#[tokio::test]
async fn header_limits_and_body_size_are_validation_errors() {
    let emu = start_default().await;
    let long_attrs = "a".repeat(1025);
    let resp = invoke(r#"{"inputs":"a"}"#)
        .header("x-amzn-sagemaker-custom-attributes", &long_attrs)
        .header("x-amzn-sagemaker-target-variant", "v")
        .send(&emu)
        .await;
    let v = aws_error(resp, 400, "ValidationError").await;
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.starts_with("1 validation error detected: Value 'aaa"),
        "{msg}"
    );
    assert!(msg.contains("at 'customAttributes' failed to satisfy constraint: Member must have length less than or equal to 1024"));

    let long_session = "s".repeat(257);
    let resp = invoke("{}")
        .header("x-amzn-sagemaker-session-id", &long_session)
        .header("x-amzn-sagemaker-inference-id", &"i".repeat(65))
        .send(&emu)
        .await;
    let v = aws_error(resp, 400, "ValidationError").await;
    let msg = v["message"].as_str().unwrap();
    assert!(msg.starts_with("2 validation errors detected: "), "{msg}");
    assert!(msg.contains("'inferenceId'") && msg.contains("'sessionId'"));

    let big = vec![b'x'; sagemaker::MAX_BODY_BYTES + 1];
    let v = aws_error(invoke(big).send(&emu).await, 400, "ValidationError").await;
    assert!(v["message"].as_str().unwrap().contains("6291456"));
    // The largest allowed body gets through validation to the model.
    let max = vec![b'x'; sagemaker::MAX_BODY_BYTES];
    aws_error(invoke(max).send(&emu).await, 424, "ModelError").await;
}

#[tokio::test]
async fn bad_input_is_a_model_error_wrapping_the_containers_400() {
    let emu = start(SageMakerOptions {
        region: "eu-west-1".to_owned(),
        ..SageMakerOptions::default()
    })
    .await;
    for body in [
        "not json",
        r#"{"parameters":{}}"#,
        r#"{"inputs":"a","parameters":{"max_new_tokens":0}}"#,
    ] {
        let v = aws_error(invoke(body).send(&emu).await, 424, "ModelError").await;
        assert_eq!(v["OriginalStatusCode"], 400);
        assert_eq!(
            v["LogStreamArn"],
            "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/Endpoints/flan"
        );
        let original = v["OriginalMessage"].as_str().unwrap();
        let container: Value = serde_json::from_str(original).unwrap();
        assert_eq!(container["code"], 400);
        let msg = v["Message"].as_str().unwrap();
        assert_eq!(
            msg,
            format!(
                "Received client error (400) from primary with message \"{original}\". See \
                 https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEventViewer:group=/aws/sagemaker/Endpoints/flan \
                 in account 123456789012 for more information."
            )
        );
    }
}

// === injected errors ===

#[tokio::test]
async fn every_injected_error_has_its_aws_shape() {
    let emu = start_default().await;
    let cases = [
        (
            InjectedError::ValidationError,
            400,
            "ValidationError",
            "message",
        ),
        (
            InjectedError::ModelError {
                original_status: 500,
            },
            424,
            "ModelError",
            "Message",
        ),
        (
            InjectedError::ModelNotReadyException,
            429,
            "ModelNotReadyException",
            "message",
        ),
        (
            InjectedError::InternalFailure,
            500,
            "InternalFailure",
            "message",
        ),
        (
            InjectedError::ServiceUnavailable,
            503,
            "ServiceUnavailable",
            "message",
        ),
        (
            InjectedError::InternalDependencyException,
            530,
            "InternalDependencyException",
            "message",
        ),
        (
            InjectedError::Status(429),
            429,
            "ModelNotReadyException",
            "message",
        ),
        (
            InjectedError::Status(502),
            502,
            "InternalFailure",
            "message",
        ),
    ];
    for (error, status, error_type, member) in cases {
        emu.faults().fail_next(1, error);
        let v = aws_error(
            invoke(r#"{"inputs":"a"}"#).send(&emu).await,
            status,
            error_type,
        )
        .await;
        assert!(
            v[member].as_str().unwrap().contains("injected"),
            "{error:?}: {v}"
        );
        if let InjectedError::ModelError { original_status } = error {
            assert_eq!(v["OriginalStatusCode"], original_status);
            assert!(v["Message"]
                .as_str()
                .unwrap()
                .starts_with("Received server error (500)"));
        }
    }
    emu.faults()
        .fail_next(1, InjectedError::ThrottlingException);
    let v = aws_error(invoke("{}").send(&emu).await, 400, "ThrottlingException").await;
    assert_eq!(v, json!({"message": null}));
    assert_eq!(emu.counters().errors_injected(), cases.len() as u64 + 1);
    // Budget consumed: the next request reaches the model.
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 200);
    assert_eq!(emu.faults().get().fail_next, 0);
}

#[tokio::test]
async fn error_rate_one_fails_every_request() {
    let emu = start(SageMakerOptions {
        faults: FaultConfig {
            error_rate: 1.0,
            error: InjectedError::InternalFailure,
            ..FaultConfig::default()
        },
        ..SageMakerOptions::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 500);
    }
    emu.faults().update(|f| f.error_rate = 0.0);
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 200);
    assert_eq!(emu.counters().errors_injected(), 3);
}

// === SigV4 ===

fn with_key(token: Option<&str>) -> SageMakerOptions {
    SageMakerOptions {
        credentials: vec![(
            AKID.to_owned(),
            Credential {
                secret_access_key: SECRET.to_owned(),
                session_token: token.map(str::to_owned),
            },
        )],
        ..SageMakerOptions::default()
    }
}

#[tokio::test]
async fn signatures_are_verified_from_the_received_bytes() {
    let emu = start(with_key(None)).await;
    let body = r#"{"inputs":"a b"}"#;
    let resp = invoke(body)
        .header("x-amzn-sagemaker-custom-attributes", "c=1")
        .signed(&KEY)
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);

    let v = aws_error(
        invoke(body).send(&emu).await,
        403,
        "MissingAuthenticationTokenException",
    )
    .await;
    assert_eq!(v["message"], "Missing Authentication Token");

    let wrong = Key {
        secret: "not-the-secret",
        ..KEY
    };
    let resp = invoke(body).signed(&wrong).send(&emu).await;
    assert_eq!(
        header(&resp, "x-amzn-errortype").as_deref(),
        Some(
            "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"
        )
    );
    let v = aws_error(resp, 403, "InvalidSignatureException").await;
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("The request signature we calculated does not match"));

    let stale = SystemTime::now() - Duration::from_secs(20 * 60);
    let resp = invoke(body).signed(&KEY).at(stale).send(&emu).await;
    assert_eq!(resp.status(), 403);

    // A signed header changed after signing: the signature no longer matches.
    let url = format!("{}/endpoints/flan/invocations", emu.url());
    let signed = signed_headers(
        &url,
        &[("content-type", "application/json")],
        body.as_bytes(),
        &KEY,
        SystemTime::now(),
    );
    let mut req = reqwest::Client::new()
        .post(&url)
        .body(body)
        .header("content-type", "text/plain");
    for (k, v) in signed {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 403);

    assert_eq!(emu.counters().auth_rejections(), 4);
    assert_eq!(emu.counters().requests(), 5);
}

#[tokio::test]
async fn session_tokens_and_credential_rotation() {
    let emu = start(with_key(Some("the-session-token"))).await;
    let body = r#"{"inputs":"a"}"#;
    let temp = Key {
        token: Some("the-session-token"),
        ..KEY
    };
    assert_eq!(invoke(body).signed(&temp).send(&emu).await.status(), 200);
    assert_eq!(invoke(body).signed(&KEY).send(&emu).await.status(), 403);

    emu.set_credentials(vec![(
        "ASIANEWKEY".to_owned(),
        Credential {
            secret_access_key: "new-secret".to_owned(),
            session_token: None,
        },
    )]);
    assert_eq!(invoke(body).signed(&temp).send(&emu).await.status(), 403);
    let new = Key {
        id: "ASIANEWKEY",
        secret: "new-secret",
        token: None,
    };
    assert_eq!(invoke(body).signed(&new).send(&emu).await.status(), 200);
    emu.set_credentials(Vec::new());
    assert_eq!(invoke(body).send(&emu).await.status(), 200);
    assert_eq!(emu.counters().auth_rejections(), 2);
}

#[tokio::test]
async fn h2c_requests_are_served_and_verified() {
    let emu = start(with_key(None)).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = invoke(r#"{"inputs":"a b"}"#)
        .signed(&KEY)
        .client(client)
        .send(&emu)
        .await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!([{"generated_text": "b a"}])
    );
}

// === sessions ===

#[tokio::test]
async fn stateful_sessions_open_continue_and_close() {
    let emu = start_default().await;
    let resp = invoke(r#"{"inputs":"a"}"#)
        .header("x-amzn-sagemaker-session-id", "NEW_SESSION")
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    let new = header(&resp, "x-amzn-sagemaker-new-session-id").unwrap();
    let (id, expires) = new.split_once("; Expires=").unwrap();
    assert!(!id.is_empty());
    assert_eq!(expires.len(), "2024-01-01T00:00:00Z".len());
    let expires = humantime::parse_rfc3339(expires).unwrap();
    let ahead = expires.duration_since(SystemTime::now()).unwrap();
    assert!(ahead > Duration::from_secs(19 * 60) && ahead <= Duration::from_secs(20 * 60));

    let resp = invoke(r#"{"inputs":"a"}"#)
        .header("x-amzn-sagemaker-session-id", id)
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-amzn-sagemaker-new-session-id").is_none());

    // Streams may use a session but not open one.
    let resp = stream(r#"{"inputs":"a","stream":true}"#)
        .header("x-amzn-sagemaker-session-id", id)
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    let resp = stream("{}")
        .header("x-amzn-sagemaker-session-id", "NEW_SESSION")
        .send(&emu)
        .await;
    aws_error(resp, 400, "ValidationError").await;

    let resp = invoke(r#"{"inputs":"a","close_session":true}"#)
        .header("x-amzn-sagemaker-session-id", id)
        .send(&emu)
        .await;
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-closed-session-id").as_deref(),
        Some(id)
    );

    for unknown in [id, "never-opened"] {
        let resp = invoke(r#"{"inputs":"a"}"#)
            .header("x-amzn-sagemaker-session-id", unknown)
            .send(&emu)
            .await;
        let v = aws_error(resp, 400, "ValidationError").await;
        assert!(v["message"].as_str().unwrap().contains(unknown));
    }
}

// === InvokeEndpointWithResponseStream ===

#[tokio::test]
async fn response_stream_carries_tgi_sse_in_payload_parts() {
    let emu = start_default().await;
    let resp = stream(r#"{"inputs":"one two three","stream":true}"#)
        .header("x-amzn-sagemaker-accept", "text/event-stream")
        .header("x-amzn-sagemaker-custom-attributes", "k=v")
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/vnd.amazon.eventstream")
    );
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(
        header(&resp, "x-amzn-invoked-production-variant").as_deref(),
        Some("AllTraffic")
    );
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-custom-attributes").as_deref(),
        Some("k=v")
    );
    let frames = decode_frames(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(frames.len(), 3);
    for f in &frames {
        assert_eq!(header_of(f, ":message-type"), "event");
        assert_eq!(header_of(f, ":event-type"), "PayloadPart");
        assert_eq!(header_of(f, ":content-type"), "application/octet-stream");
    }
    let text: Vec<u8> = frames.iter().flat_map(|f| f.payload().to_vec()).collect();
    assert_eq!(
        String::from_utf8(text).unwrap(),
        expected_sse("one two three", None)
    );
    let last: Value = serde_json::from_str(
        std::str::from_utf8(frames[2].payload())
            .unwrap()
            .trim()
            .strip_prefix("data:")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["generated_text"], "three two one");
    assert_eq!(emu.counters().stream_requests(), 1);

    // Without "stream": true the TGI container answers JSON, in one part.
    let resp = stream(r#"{"inputs":"a b"}"#).send(&emu).await;
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-content-type").as_deref(),
        Some("application/json")
    );
    let frames = decode_frames(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(&frames[0].payload()[..], br#"[{"generated_text":"b a"}]"#);
}

#[tokio::test]
async fn response_stream_split_corrupt_and_errors() {
    let emu = start_default().await;
    let inputs = "w1 w2 w3 w4 w5 w6";
    let body = format!(r#"{{"inputs":"{inputs}","stream":true}}"#);

    emu.faults().update(|f| f.stream_split = Some(7));
    let frames =
        decode_frames(&stream(body.clone()).send(&emu).await.bytes().await.unwrap()).unwrap();
    assert!(frames.len() > 6);
    assert!(frames.iter().all(|f| (1..=7).contains(&f.payload().len())));
    let text: Vec<u8> = frames.iter().flat_map(|f| f.payload().to_vec()).collect();
    assert_eq!(String::from_utf8(text).unwrap(), expected_sse(inputs, None));

    emu.faults().set(FaultConfig {
        corrupt_crc_at: Some(2),
        ..FaultConfig::default()
    });
    let bytes = stream(body.clone()).send(&emu).await.bytes().await.unwrap();
    assert!(decode_frames(&bytes).is_err());
    let mut buf = &bytes[..];
    assert!(read_message_from(&mut buf).is_ok());
    assert!(read_message_from(&mut buf).is_ok());
    assert!(read_message_from(&mut buf).is_err());

    for (kind, name) in [
        (StreamError::ModelStreamError, "ModelStreamError"),
        (StreamError::InternalStreamFailure, "InternalStreamFailure"),
    ] {
        emu.faults().set(FaultConfig {
            stream_error_after: Some(2),
            stream_error: kind,
            ..FaultConfig::default()
        });
        let frames =
            decode_frames(&stream(body.clone()).send(&emu).await.bytes().await.unwrap()).unwrap();
        assert_eq!(frames.len(), 3);
        let ex = &frames[2];
        assert_eq!(header_of(ex, ":message-type"), "exception");
        assert_eq!(header_of(ex, ":exception-type"), name);
        assert_eq!(header_of(ex, ":content-type"), "application/json");
        let payload: Value = serde_json::from_slice(ex.payload()).unwrap();
        assert!(payload["Message"].is_string());
        if kind == StreamError::ModelStreamError {
            assert_eq!(payload["ErrorCode"], "StreamBroken");
        }
    }

    // Errors before the stream starts are ordinary JSON errors.
    emu.faults().set(FaultConfig::default());
    aws_error(stream("not json").send(&emu).await, 424, "ModelError").await;
    emu.faults()
        .fail_next(1, InjectedError::ModelNotReadyException);
    aws_error(stream(body).send(&emu).await, 429, "ModelNotReadyException").await;
}

#[tokio::test]
async fn chat_stream_ends_with_done() {
    let emu = start_default().await;
    let body = r#"{"messages":[{"role":"user","content":"a b"}],"stream":true}"#;
    let frames = decode_frames(&stream(body).send(&emu).await.bytes().await.unwrap()).unwrap();
    let text: Vec<u8> = frames.iter().flat_map(|f| f.payload().to_vec()).collect();
    let text = String::from_utf8(text).unwrap();
    assert!(text.ends_with("data:[DONE]\n\n"), "{text}");
    assert_eq!(text.matches("chat.completion.chunk").count(), 2);
}

// === transport faults, timing, counters ===

#[tokio::test]
async fn reset_faults_cut_the_connection() {
    let emu = start_default().await;
    emu.faults().update(|f| f.reset_next = 1);
    let err = invoke(r#"{"inputs":"a"}"#)
        .try_send(&emu)
        .await
        .unwrap_err();
    assert!(is_reset(&err), "{err:?}");
    assert_eq!(emu.counters().resets_injected(), 1);
    assert_eq!(emu.counters().cancelled(), 0);
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 200);

    emu.faults().update(|f| f.reset_rate = 1.0);
    let err = stream(r#"{"inputs":"a","stream":true}"#)
        .try_send(&emu)
        .await
        .unwrap_err();
    assert!(is_reset(&err), "{err:?}");
    assert_eq!(emu.counters().resets_injected(), 2);
}

#[tokio::test]
async fn latency_and_cold_start_delay_the_answer() {
    let emu = start(SageMakerOptions {
        faults: FaultConfig {
            latency: Duration::from_millis(60),
            ..FaultConfig::default()
        },
        ..SageMakerOptions::default()
    })
    .await;
    let t = Instant::now();
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(60));

    // Serverless-style cold start: the first request waits for the replica.
    emu.faults().set(FaultConfig {
        cold_start: Some(Duration::from_millis(80)),
        ..FaultConfig::default()
    });
    let t = Instant::now();
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(80));
    assert_eq!(
        emu.faults().scale_state(),
        infergate::emulator::ScaleState::Ready
    );
}

#[tokio::test]
async fn in_flight_and_cancelled_streams_are_counted() {
    let emu = start(SageMakerOptions {
        faults: FaultConfig {
            token_latency: Duration::from_millis(50),
            ..FaultConfig::default()
        },
        ..SageMakerOptions::default()
    })
    .await;
    let mut resp = stream(r#"{"inputs":"a b c d e f g h i j k l m n o p q r s t","stream":true}"#)
        .send(&emu)
        .await;
    assert!(resp.chunk().await.unwrap().is_some());
    assert_eq!(emu.counters().in_flight(), 1);
    drop(resp);
    wait_for("cancelled", || emu.counters().cancelled() == 1).await;
    assert_eq!(emu.counters().in_flight(), 0);
    assert_eq!(emu.counters().max_in_flight(), 1);
}

#[tokio::test]
async fn control_routes_work_out_of_process() {
    let emu = start_default().await;
    let client = reqwest::Client::new();
    let base = emu.url();
    let put = client
        .put(format!("{base}/_emulator/faults"))
        .body(r#"{"fail_next":1,"error":"InternalFailure","latency":"1ms"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(put.json::<Value>().await.unwrap()["latency"], "1ms");
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 500);
    let bad = client
        .put(format!("{base}/_emulator/faults"))
        .body(r#"{"error_rate":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let c: Value = client
        .get(format!("{base}/_emulator/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["requests"], 1);
    assert_eq!(c["errors_injected"], 1);
    let reqs: Value = client
        .get(format!("{base}/_emulator/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reqs[0]["path"], "/endpoints/flan/invocations");
    assert_eq!(reqs[0]["body"], r#"{"inputs":"a"}"#);
    let reset = client
        .post(format!("{base}/_emulator/counters/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(emu.counters().requests(), 0);
    assert!(emu.counters().last().is_none());
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let emu = start_default().await;
    let addr = emu.addr();
    emu.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let emu = start_default().await;
    let addr = emu.addr();
    drop(emu);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "server still accepting after drop"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
