//! InvokeEndpoint: the formats, validation, and every injected error in its
//! AWS shape.

use crate::client::{aws_error, call, header, invoke, start, start_default, stream};
use crate::common::model::expected_sse;
use infergate::emulator::sagemaker::{self, ModelFormat, SageMakerOptions};
use infergate::emulator::{FaultConfig, InjectedError};
use serde_json::{json, Value};

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
