//! The AWS event-stream frames of SageMaker's
//! `InvokeEndpointWithResponseStream`, as a server writes them: what the
//! SageMaker emulator sends and what the SageMaker-compatible door sends.
//! Written with aws-smithy-eventstream, the crate the AWS SDKs decode with.

use std::io;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Bytes, BytesMut};

/// The exceptions SageMaker sends mid-stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    /// The container failed (`ModelStreamError`, with an `ErrorCode`).
    ModelStreamError,
    /// The service failed (`InternalStreamFailure`).
    InternalStreamFailure,
}

impl Exception {
    /// The `:exception-type` header's value, the SDK's error type.
    pub fn name(self) -> &'static str {
        match self {
            Exception::ModelStreamError => "ModelStreamError",
            Exception::InternalStreamFailure => "InternalStreamFailure",
        }
    }
}

/// A `PayloadPart` event carrying raw model bytes. Header order matches the
/// frames SageMaker sends (and the reference frame decoded in
/// backend::events' tests).
pub fn payload_part(payload: Bytes) -> Message {
    Message::new_from_parts(
        vec![
            Header::new(":event-type", HeaderValue::String("PayloadPart".into())),
            Header::new(
                ":content-type",
                HeaderValue::String("application/octet-stream".into()),
            ),
            Header::new(":message-type", HeaderValue::String("event".into())),
        ],
        payload,
    )
}

/// An exception message: `{"Message": …}`, and for a `ModelStreamError`
/// its `ErrorCode` when there is one.
pub fn exception(kind: Exception, message: &str, error_code: Option<&str>) -> Message {
    let mut payload = serde_json::json!({ "Message": message });
    if let (Exception::ModelStreamError, Some(code)) = (kind, error_code) {
        payload["ErrorCode"] = code.into();
    }
    Message::new_from_parts(
        vec![
            Header::new(":exception-type", HeaderValue::String(kind.name().into())),
            Header::new(
                ":content-type",
                HeaderValue::String("application/json".into()),
            ),
            Header::new(":message-type", HeaderValue::String("exception".into())),
        ],
        Bytes::from(payload.to_string()),
    )
}

/// The frame bytes of a message.
pub fn encode(message: &Message) -> io::Result<BytesMut> {
    let mut buf = BytesMut::new();
    write_message_to(message, &mut buf).map_err(io::Error::other)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    const VECTOR: &str = "00000077000000593c670ae60b3a6576656e742d7479706507000b5061796c6f6164506172740d3a636f6e74656e742d747970650700186170706c69636174696f6e2f6f637465742d73747265616d0d3a6d6573736167652d747970650700056576656e747b22746f6b656e223a226869227d4350430f";

    #[test]
    fn payload_part_matches_the_checked_vector() {
        let frame = encode(&payload_part(Bytes::from_static(br#"{"token":"hi"}"#))).unwrap();
        assert_eq!(frame.len(), 119);
        assert_eq!(hex::encode(&frame), VECTOR);
    }

    #[test]
    fn exception_frames_decode() {
        let m = exception(Exception::ModelStreamError, "broken", Some("StreamBroken"));
        let frame = encode(&m).unwrap();
        let msg = read_message_from(&frame[..]).unwrap();
        let names: Vec<_> = msg
            .headers()
            .iter()
            .map(|h| h.name().as_str().to_owned())
            .collect();
        assert_eq!(names, [":exception-type", ":content-type", ":message-type"]);
        let payload: serde_json::Value = serde_json::from_slice(msg.payload()).unwrap();
        assert_eq!(payload["ErrorCode"], "StreamBroken");
        assert_eq!(payload["Message"], "broken");
        let m = exception(Exception::InternalStreamFailure, "down", Some("ignored"));
        let payload: serde_json::Value = serde_json::from_slice(m.payload()).unwrap();
        assert_eq!(payload, serde_json::json!({"Message": "down"}));
    }
}
