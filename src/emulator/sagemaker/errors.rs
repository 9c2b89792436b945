//! The SageMaker runtime's error answers and request validation, as the AWS
//! SDKs parse them: `x-amzn-ErrorType` (`Type:namespace`, the SDK cuts at the
//! `:`), `x-amzn-RequestId`, a JSON body with `message` (service errors) or
//! ModelError's `Message`/`OriginalStatusCode`/`OriginalMessage`/
//! `LogStreamArn`, and AWS's "N validation errors detected: …" wording for
//! the endpoint name and header limits. Also how each [`InjectedError`] looks
//! on this wire.

use http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};

use super::ACCOUNT_ID;
use crate::emulator::faults::InjectedError;
use crate::emulator::serve::{self, json_response, set_header, EmuBody};
use crate::protocol::sigv4_verify::Rejection;

use crate::protocol::sagemaker::{
    error_type_header, AVAILABILITY_NAMESPACE as AVAILABILITY_NS, CORAL_NAMESPACE as CORAL_NS,
    SAGE_NAMESPACE as SAGE_NS,
};
const INJECTED: &str = "(injected by the infergate emulator)";

pub(super) fn aws_error(
    status: StatusCode,
    error_type: &str,
    namespace: &str,
    body: &Value,
) -> Response<EmuBody> {
    let mut resp = json_response(status, body);
    set_header(
        &mut resp,
        "x-amzn-errortype",
        &error_type_header(error_type, namespace),
    );
    set_header(&mut resp, "x-amzn-requestid", &serve::request_id());
    resp
}

pub(super) fn service_error(status: u16, error_type: &str, message: &str) -> Response<EmuBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    aws_error(status, error_type, SAGE_NS, &json!({ "message": message }))
}

pub(super) fn validation(message: &str) -> Response<EmuBody> {
    service_error(400, "ValidationError", message)
}

pub(super) fn auth_rejection(rej: &Rejection) -> Response<EmuBody> {
    let status = StatusCode::from_u16(rej.status).unwrap_or(StatusCode::FORBIDDEN);
    aws_error(
        status,
        rej.error_type,
        CORAL_NS,
        &json!({ "message": rej.message }),
    )
}

pub(super) fn unknown_operation() -> Response<EmuBody> {
    aws_error(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        CORAL_NS,
        &json!({ "message": null }),
    )
}

/// The error JSON the HF inference toolkit (Multi Model Server) answers with.
pub(super) fn toolkit_error(status: u16, message: &str) -> String {
    json!({ "code": status, "type": "InternalServerException", "message": message }).to_string()
}

pub(super) fn violations_message(v: &[String]) -> String {
    let s = if v.len() == 1 { "" } else { "s" };
    format!("{} validation error{s} detected: {}", v.len(), v.join("; "))
}

pub(super) fn length_violation(
    value: &str,
    member: &str,
    min: usize,
    max: usize,
) -> Option<String> {
    let len = value.chars().count();
    let constraint = if len < min {
        format!("Member must have length greater than or equal to {min}")
    } else if len > max {
        format!("Member must have length less than or equal to {max}")
    } else {
        return None;
    };
    Some(format!(
        "Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

pub(super) const NAME_PATTERN: &str = "^[a-zA-Z0-9](-*[a-zA-Z0-9])*";

pub(super) fn valid_endpoint_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// The request headers SageMaker bounds, with their member names and limits.
const HEADER_LIMITS: [(&str, &str, usize, usize); 8] = [
    (
        "x-amzn-sagemaker-custom-attributes",
        "customAttributes",
        0,
        1024,
    ),
    ("x-amzn-sagemaker-target-model", "targetModel", 1, 1024),
    ("x-amzn-sagemaker-target-variant", "targetVariant", 0, 63),
    (
        "x-amzn-sagemaker-target-container-hostname",
        "targetContainerHostname",
        0,
        63,
    ),
    ("x-amzn-sagemaker-inference-id", "inferenceId", 1, 64),
    (
        "x-amzn-sagemaker-enable-explanations",
        "enableExplanations",
        1,
        64,
    ),
    (
        "x-amzn-sagemaker-inference-component",
        "inferenceComponentName",
        0,
        63,
    ),
    ("x-amzn-sagemaker-session-id", "sessionId", 0, 256),
];

pub(super) fn header_violations(headers: &HeaderMap) -> Vec<String> {
    let mut out = Vec::new();
    for (name, member, min, max) in HEADER_LIMITS {
        let Some(raw) = headers.get(name) else {
            continue;
        };
        let value = String::from_utf8_lossy(raw.as_bytes());
        if let Some(v) = length_violation(&value, member, min, max) {
            out.push(v);
        } else if member == "customAttributes" && !raw.as_bytes().is_ascii() {
            out.push(format!(
                "Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: \\p{{ASCII}}*"
            ));
        }
    }
    out
}

pub(super) fn model_error(
    region: &str,
    name: &str,
    original_status: u16,
    original_message: &str,
) -> Response<EmuBody> {
    let kind = if original_status < 500 {
        "client"
    } else {
        "server"
    };
    let message = format!(
        "Received {kind} error ({original_status}) from primary with message \"{original_message}\". \
         See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:group=/aws/sagemaker/Endpoints/{name} \
         in account {ACCOUNT_ID} for more information."
    );
    let body = json!({
        "Message": message,
        "OriginalStatusCode": original_status,
        "OriginalMessage": original_message,
        "LogStreamArn": format!("arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/{name}"),
    });
    aws_error(StatusCode::FAILED_DEPENDENCY, "ModelError", SAGE_NS, &body)
}

pub(super) fn injected(region: &str, name: &str, e: InjectedError) -> Response<EmuBody> {
    match e {
        InjectedError::ValidationError => validation(&format!("Validation error {INJECTED}.")),
        InjectedError::ModelError { original_status } => {
            let message = toolkit_error(original_status, &format!("Model failed {INJECTED}"));
            model_error(region, name, original_status, &message)
        }
        InjectedError::ModelNotReadyException => service_error(
            429,
            "ModelNotReadyException",
            &format!("Model is not ready to serve inference requests {INJECTED}."),
        ),
        InjectedError::InternalFailure => service_error(
            500,
            "InternalFailure",
            &format!("An internal failure occurred {INJECTED}."),
        ),
        InjectedError::ServiceUnavailable => service_error(
            503,
            "ServiceUnavailable",
            &format!("The service is unavailable; try again later {INJECTED}."),
        ),
        InjectedError::InternalDependencyException => service_error(
            530,
            "InternalDependencyException",
            &format!("Your request caused an exception with an internal dependency {INJECTED}."),
        ),
        InjectedError::ThrottlingException => aws_error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            AVAILABILITY_NS,
            &json!({ "message": null }),
        ),
        InjectedError::Status(s) => match s {
            400 => injected(region, name, InjectedError::ValidationError),
            424 => injected(
                region,
                name,
                InjectedError::ModelError {
                    original_status: 400,
                },
            ),
            429 => injected(region, name, InjectedError::ModelNotReadyException),
            503 => injected(region, name, InjectedError::ServiceUnavailable),
            530 => injected(region, name, InjectedError::InternalDependencyException),
            401..=499 => service_error(
                s,
                "ValidationError",
                &format!("Validation error {INJECTED}."),
            ),
            501..=599 => service_error(
                s,
                "InternalFailure",
                &format!("An internal failure occurred {INJECTED}."),
            ),
            _ => injected(region, name, InjectedError::InternalFailure),
        },
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn endpoint_names() {
        for ok in ["a", "flan-t5", "a--b", "A9"] {
            assert!(valid_endpoint_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "a.b", "é"] {
            assert!(!valid_endpoint_name(bad), "{bad}");
        }
    }

    #[test]
    fn header_limits() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-amzn-sagemaker-target-variant",
            "v".repeat(64).parse().unwrap(),
        );
        h.insert("x-amzn-sagemaker-inference-id", "".parse().unwrap());
        h.insert(
            "x-amzn-sagemaker-custom-attributes",
            http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        let v = header_violations(&h);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("'customAttributes'") && v[0].contains("ASCII"));
        assert!(v[1].contains("'targetVariant'") && v[1].contains("less than or equal to 63"));
        assert!(v[2].contains("'inferenceId'") && v[2].contains("greater than or equal to 1"));
        assert!(violations_message(&v).starts_with("3 validation errors detected: "));
    }
}
