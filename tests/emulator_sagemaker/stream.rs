//! InvokeEndpointWithResponseStream: TGI's SSE in event-stream payload
//! parts, split, corrupted and cut by errors.

use crate::client::{aws_error, decode_frames, header, header_of, start_default, stream};
use crate::common::model::expected_sse;
use aws_smithy_eventstream::frame::read_message_from;
use infergate::emulator::{FaultConfig, InjectedError, StreamError};
use serde_json::Value;

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
