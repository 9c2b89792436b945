//! The real AWS SDK (`aws-sdk-sagemakerruntime`) against the SageMaker
//! emulator: AWS's own client must parse every answer the emulator gives —
//! successes with their headers, each error as its typed variant, auth
//! rejections, and the event stream (split parts, exception frames, a
//! corrupted CRC). Retries are off so each call is exactly one request.

#[cfg(test)]
mod common;

use aws_sdk_sagemakerruntime::error::ProvideErrorMetadata;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_sdk_sagemakerruntime::operation::RequestId;
use aws_sdk_sagemakerruntime::primitives::Blob;
use aws_sdk_sagemakerruntime::types::error::ResponseStreamError;
use aws_sdk_sagemakerruntime::Client;
use common::model::expected_sse;
use common::sdk::sdk_client;
use infergate::emulator::{Credential, EmulatorHandle, FaultConfig, InjectedError, StreamError};
use serde_json::Value;
use support::{read_stream, start};

/// The emulator and streams read through the SDK.
#[cfg(test)]
mod support {
    use super::StreamEnd;
    use aws_sdk_sagemakerruntime::primitives::Blob;
    use aws_sdk_sagemakerruntime::types::ResponseStream;
    use aws_sdk_sagemakerruntime::Client;
    use infergate::emulator::sagemaker::{self, SageMakerOptions};
    use infergate::emulator::{Credential, EmulatorHandle};

    pub async fn start(credentials: Vec<(String, Credential)>) -> EmulatorHandle {
        let opts = SageMakerOptions {
            endpoints: vec!["flan".to_owned()],
            credentials,
            ..SageMakerOptions::default()
        };
        sagemaker::start("127.0.0.1:0".parse().unwrap(), opts)
            .await
            .unwrap()
    }

    /// Concatenates every PayloadPart until the end or the first error.
    pub async fn read_stream(client: &Client, body: &str) -> (Vec<u8>, usize, StreamEnd) {
        let mut out = client
            .invoke_endpoint_with_response_stream()
            .endpoint_name("flan")
            .content_type("application/json")
            .accept("text/event-stream")
            .body(Blob::new(body))
            .send()
            .await
            .unwrap();
        assert_eq!(out.content_type(), Some("text/event-stream"));
        assert_eq!(out.invoked_production_variant(), Some("AllTraffic"));
        let (mut bytes, mut parts) = (Vec::new(), 0);
        loop {
            match out.body.recv().await {
                Ok(Some(ResponseStream::PayloadPart(p))) => {
                    parts += 1;
                    bytes.extend_from_slice(p.bytes().unwrap().as_ref());
                }
                Ok(Some(other)) => panic!("unexpected event {other:?}"),
                Ok(None) => return (bytes, parts, None),
                Err(e) => {
                    let end = match e.as_service_error() {
                        Some(_) => Ok(e.into_service_error()),
                        None => Err(format!("{e:?}")),
                    };
                    return (bytes, parts, Some(end));
                }
            }
        }
    }
}

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";

fn key(secret: &str, token: Option<&str>) -> Vec<(String, Credential)> {
    vec![(
        AKID.to_owned(),
        Credential {
            secret_access_key: secret.to_owned(),
            session_token: token.map(str::to_owned),
        },
    )]
}

fn client(emu: &EmulatorHandle, secret: &str, token: Option<&str>) -> Client {
    sdk_client(&emu.url(), AKID, secret, token)
}

/// Whether an error is the expected typed variant.
type IsVariant = fn(&InvokeEndpointError) -> bool;

/// The SDK marks matching `Unhandled` deprecated for callers; here checking
/// that an error is *not* one of the modelled types is the point.
#[allow(deprecated)]
fn is_unhandled(err: &InvokeEndpointError) -> bool {
    matches!(err, InvokeEndpointError::Unhandled(_))
}

async fn invoke(
    client: &Client,
    body: &str,
) -> Result<
    aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointOutput,
    InvokeEndpointError,
> {
    client
        .invoke_endpoint()
        .endpoint_name("flan")
        .content_type("application/json")
        .body(Blob::new(body))
        .send()
        .await
        .map_err(|e| e.into_service_error())
}

#[tokio::test]
async fn invoke_endpoint_success_is_parsed() {
    let emu = start(key(SECRET, None)).await;
    let client = client(&emu, SECRET, None);
    let out = client
        .invoke_endpoint()
        .endpoint_name("flan")
        .content_type("application/json")
        .custom_attributes("trace=1")
        .session_id("NEW_SESSION")
        .body(Blob::new(r#"{"inputs":"one two three"}"#))
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(out.body().unwrap().as_ref()).unwrap();
    assert_eq!(body[0]["generated_text"], "three two one");
    assert_eq!(out.content_type(), Some("application/json"));
    assert_eq!(out.invoked_production_variant(), Some("AllTraffic"));
    assert_eq!(out.custom_attributes(), Some("trace=1"));
    let session = out.new_session_id().unwrap();
    assert!(session.contains("; Expires="), "{session}");
    let id = session.split(';').next().unwrap();

    let out = client
        .invoke_endpoint()
        .endpoint_name("flan")
        .session_id(id)
        .body(Blob::new(r#"{"inputs":"a","close_session":true}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(out.closed_session_id(), Some(id));
    assert_eq!(emu.counters().requests(), 2);
    assert_eq!(emu.counters().auth_rejections(), 0);
}

#[tokio::test]
async fn every_error_shape_parses_as_its_typed_variant() {
    let emu = start(Vec::new()).await;
    let client = client(&emu, SECRET, None);

    let err = client
        .invoke_endpoint()
        .endpoint_name("missing")
        .body(Blob::new("{}"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let InvokeEndpointError::ValidationError(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        e.message(),
        Some("Endpoint missing of account 123456789012 not found.")
    );
    assert_eq!(err.request_id().map(str::len), Some(36));

    let err = invoke(&client, "not json").await.unwrap_err();
    let InvokeEndpointError::ModelError(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.original_status_code(), Some(400));
    assert!(e.original_message().unwrap().contains("\"code\":400"));
    assert_eq!(
        e.log_stream_arn(),
        Some("arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/flan")
    );
    assert!(e
        .message()
        .unwrap()
        .starts_with("Received client error (400) from primary"));

    let cases: [(InjectedError, IsVariant); 5] = [
        (InjectedError::ModelNotReadyException, |e| {
            matches!(e, InvokeEndpointError::ModelNotReadyException(_))
        }),
        (InjectedError::InternalFailure, |e| {
            matches!(e, InvokeEndpointError::InternalFailure(_))
        }),
        (InjectedError::ServiceUnavailable, |e| {
            matches!(e, InvokeEndpointError::ServiceUnavailable(_))
        }),
        (InjectedError::InternalDependencyException, |e| {
            matches!(e, InvokeEndpointError::InternalDependencyException(_))
        }),
        (InjectedError::ValidationError, |e| {
            matches!(e, InvokeEndpointError::ValidationError(_))
        }),
    ];
    for (injected, is_variant) in cases {
        emu.faults().fail_next(1, injected);
        let err = invoke(&client, r#"{"inputs":"a"}"#).await.unwrap_err();
        assert!(is_variant(&err), "{injected:?} → {err:?}");
        assert!(err.message().unwrap().contains("injected"), "{err:?}");
    }

    emu.faults().fail_next(
        1,
        InjectedError::ModelError {
            original_status: 503,
        },
    );
    let err = invoke(&client, r#"{"inputs":"a"}"#).await.unwrap_err();
    let InvokeEndpointError::ModelError(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.original_status_code(), Some(503));

    emu.faults()
        .fail_next(1, InjectedError::ThrottlingException);
    let err = invoke(&client, r#"{"inputs":"a"}"#).await.unwrap_err();
    assert!(is_unhandled(&err), "{err:?}");
    assert_eq!(err.code(), Some("ThrottlingException"));

    // Retries are off: one request per call.
    assert_eq!(emu.counters().requests(), 9);
}

#[tokio::test]
async fn auth_rejections_and_session_tokens() {
    let emu = start(key(SECRET, Some(TOKEN))).await;

    let good = client(&emu, SECRET, Some(TOKEN));
    assert!(invoke(&good, r#"{"inputs":"a"}"#).await.is_ok());

    let wrong_secret = client(&emu, "not-the-secret", Some(TOKEN));
    let err = invoke(&wrong_secret, r#"{"inputs":"a"}"#)
        .await
        .unwrap_err();
    assert!(is_unhandled(&err), "{err:?}");
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    assert!(err.message().unwrap().contains("signature"));

    let no_token = client(&emu, SECRET, None);
    let err = invoke(&no_token, r#"{"inputs":"a"}"#).await.unwrap_err();
    assert!(err.code().is_some(), "{err:?}");

    // Rotation: the emulator now accepts only a new short-lived key.
    emu.set_credentials(vec![(
        AKID.to_owned(),
        Credential {
            secret_access_key: "rotated".to_owned(),
            session_token: Some("rotated-token".to_owned()),
        },
    )]);
    assert!(invoke(&good, r#"{"inputs":"a"}"#).await.is_err());
    assert!(invoke(
        &client(&emu, "rotated", Some("rotated-token")),
        r#"{"inputs":"a"}"#
    )
    .await
    .is_ok());
    assert_eq!(emu.counters().auth_rejections(), 3);
    assert_eq!(emu.counters().requests(), 5);
}

/// How a stream ended early: a modelled stream error, or any other failure.
pub type StreamEnd = Option<Result<ResponseStreamError, String>>;

#[tokio::test]
async fn response_stream_is_read_by_the_sdk() {
    let emu = start(key(SECRET, None)).await;
    let client = client(&emu, SECRET, None);
    let inputs = "alpha beta gamma delta epsilon";
    let body = format!(r#"{{"inputs":"{inputs}","stream":true}}"#);

    let (bytes, parts, err) = read_stream(&client, &body).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(parts, 5);
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        expected_sse(inputs, None)
    );

    emu.faults().update(|f| f.stream_split = Some(9));
    let (bytes, parts, err) = read_stream(&client, &body).await;
    assert!(err.is_none(), "{err:?}");
    assert!(parts > 5);
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        expected_sse(inputs, None)
    );
    assert_eq!(emu.counters().stream_requests(), 2);
}

#[tokio::test]
async fn stream_errors_surface_through_the_sdk() {
    let emu = start(Vec::new()).await;
    let client = client(&emu, SECRET, None);
    let body = r#"{"inputs":"a b c d","stream":true}"#;

    emu.faults().set(FaultConfig {
        stream_error_after: Some(2),
        ..FaultConfig::default()
    });
    let (_, parts, err) = read_stream(&client, body).await;
    assert_eq!(parts, 2);
    let err = err.unwrap().unwrap();
    let ResponseStreamError::ModelStreamError(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.error_code(), Some("StreamBroken"));
    assert!(e.message().is_some());

    emu.faults().set(FaultConfig {
        stream_error_after: Some(1),
        stream_error: StreamError::InternalStreamFailure,
        ..FaultConfig::default()
    });
    let (_, parts, err) = read_stream(&client, body).await;
    assert_eq!(parts, 1);
    let err = err.unwrap().unwrap();
    assert!(
        matches!(err, ResponseStreamError::InternalStreamFailure(_)),
        "{err:?}"
    );

    emu.faults().set(FaultConfig {
        corrupt_crc_at: Some(1),
        ..FaultConfig::default()
    });
    let (_, parts, err) = read_stream(&client, body).await;
    assert_eq!(parts, 1);
    // Not a modelled error: the frame itself is rejected (CRC mismatch).
    assert!(err.unwrap().is_err());

    // An error before the stream starts is an ordinary typed error.
    emu.faults().set(FaultConfig::default());
    let send = || {
        client
            .invoke_endpoint_with_response_stream()
            .endpoint_name("flan")
            .body(Blob::new(body))
            .send()
    };
    emu.faults().fail_next(1, InjectedError::ServiceUnavailable);
    let err = send().await.unwrap_err().into_service_error();
    assert!(err.is_service_unavailable(), "{err:?}");
    // This operation does not model ModelNotReadyException: code only.
    emu.faults()
        .fail_next(1, InjectedError::ModelNotReadyException);
    let err = send().await.unwrap_err().into_service_error();
    assert_eq!(err.code(), Some("ModelNotReadyException"));
    assert_eq!(emu.counters().requests(), 5);
}
