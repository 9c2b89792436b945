//! The SageMaker door's errors in the SageMaker runtime's wire shape, so the
//! AWS SDKs raise their modelled exceptions: `x-amzn-ErrorType`
//! (`Type:namespace`), `x-amzn-RequestId`, and a JSON body with `message`
//! (ModelError: `Message`, `OriginalStatusCode`, `OriginalMessage`).
//!
//! [`of_api_error`] is the table README's "Call it with boto3" section
//! shows: every gateway error maps to the error a real endpoint gives in the
//! same situation. Its `match` has no `_` arm, so a new error must be placed.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use crate::backend::{Failure, FailureKind};
use crate::body::{full, ResBody};
use crate::error::ApiError;
use crate::protocol::sagemaker::{
    error_type_header, ErrorType, AVAILABILITY_NAMESPACE, CORAL_NAMESPACE, SAGE_NAMESPACE,
};
use crate::protocol::sigv4_verify::Rejection;

/// The header the SDKs read a request's id from.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// What SageMaker says of a container that did not answer in time.
const TIMED_OUT: &str =
    "Your invocation timed out while waiting for a response from the container.";

/// One SageMaker-shaped error.
#[derive(Debug, Clone, PartialEq)]
pub struct SmError {
    pub status: StatusCode,
    pub error_type: &'static str,
    namespace: &'static str,
    pub body: Value,
    retry_after: Option<Duration>,
}

impl SmError {
    /// A service error: `{"message": …}`.
    fn service(status: u16, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type,
            namespace: SAGE_NAMESPACE,
            body: json!({ "message": message.into() }),
            retry_after: None,
        }
    }

    fn after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The answer, with the request's id as `x-amzn-RequestId`.
    pub fn response(&self, request_id: &str) -> Response<ResBody> {
        let mut res = Response::new(full(Bytes::from(self.body.to_string())));
        *res.status_mut() = self.status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(&error_type_header(self.error_type, self.namespace)) {
            h.insert(ERROR_TYPE, v);
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(REQUEST_ID, v);
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            h.insert(
                header::RETRY_AFTER,
                crate::header_numbers::number(secs.max(1)),
            );
        }
        res
    }
}

/// `ValidationError` (400): what AWS answers a request it cannot take.
pub fn validation(message: impl Into<String>) -> SmError {
    SmError::service(400, "ValidationError", message)
}

/// What AWS answers a path or method that is no operation.
pub fn unknown_operation() -> SmError {
    SmError {
        namespace: CORAL_NAMESPACE,
        body: json!({ "message": null }),
        ..SmError::service(404, "UnknownOperationException", "")
    }
}

/// A refused signature, as AWS's request layer answers it.
pub fn of_rejection(rej: &Rejection) -> SmError {
    SmError {
        namespace: CORAL_NAMESPACE,
        ..SmError::service(rej.status, rej.error_type, rej.message.clone())
    }
}

/// A client whose key may not use the endpoint, as IAM's denial reads.
pub fn access_denied(client: &str, endpoint: &str) -> SmError {
    SmError {
        namespace: CORAL_NAMESPACE,
        ..SmError::service(
            400,
            "AccessDeniedException",
            format!(
                "User: {client} is not authorized to perform: sagemaker:InvokeEndpoint on resource: endpoint/{endpoint}"
            ),
        )
    }
}

/// What AWS says of an endpoint that does not exist.
pub fn unknown_endpoint(endpoint: &str) -> SmError {
    validation(format!("Endpoint {endpoint} not found."))
}

/// A model's own failure: `ModelError` (424), with the model's status and
/// message as SageMaker relays a container's answer.
fn model_error(
    original_status: u16,
    original_message: &str,
    variant: &str,
    log_stream_arn: Option<&str>,
) -> SmError {
    let side = if original_status < 500 {
        "client"
    } else {
        "server"
    };
    let mut e = SmError {
        body: json!({
            "Message": format!(
                "Received {side} error ({original_status}) from {variant} with message \"{original_message}\"."
            ),
            "OriginalStatusCode": original_status,
            "OriginalMessage": original_message,
        }),
        ..SmError::service(424, "ModelError", "")
    };
    if let Some(arn) = log_stream_arn {
        e.body["LogStreamArn"] = arn.into();
    }
    e
}

fn throttling(message: String, retry_after: Option<Duration>) -> SmError {
    SmError {
        namespace: AVAILABILITY_NAMESPACE,
        ..SmError::service(400, "ThrottlingException", message)
    }
    .after(retry_after)
}

fn unavailable(message: String, retry_after: Option<Duration>) -> SmError {
    SmError::service(503, "ServiceUnavailable", message).after(retry_after)
}

/// The SageMaker error a real endpoint would give where the gateway gives
/// `err`; `variant` names who served (the backend, as
/// `X-Amzn-Invoked-Production-Variant` does).
pub fn of_api_error(err: &ApiError, endpoint: &str, variant: Option<&str>) -> SmError {
    let message = err.to_string();
    let after = err.retry_after();
    match err {
        ApiError::BadRequest(_)
        | ApiError::NotServed { .. }
        | ApiError::BodyRead(_)
        | ApiError::BodyTimeout
        | ApiError::HeadersTooLarge { .. }
        | ApiError::TooManyHeaders { .. } => validation(message),
        ApiError::PayloadTooLarge { .. } => SmError::service(413, "ValidationError", message),
        ApiError::UnknownRoute(_) => unknown_endpoint(endpoint),
        ApiError::NotFound(_) | ApiError::MethodNotAllowed { .. } => unknown_operation(),
        // A container that does not answer within the invocation timeout.
        ApiError::Deadline(_) => model_error(504, TIMED_OUT, variant.unwrap_or("primary"), None),
        ApiError::NoBackend | ApiError::Overloaded | ApiError::LimitStoreDown => {
            unavailable(message, after)
        }
        ApiError::Unauthenticated => of_rejection(&Rejection {
            status: 403,
            error_type: "MissingAuthenticationTokenException",
            message: "Missing Authentication Token".into(),
        }),
        ApiError::Forbidden(_) | ApiError::NotAdmin => SmError {
            namespace: CORAL_NAMESPACE,
            ..SmError::service(400, "AccessDeniedException", message)
        },
        ApiError::RateLimited(_) => throttling(message, after),
        ApiError::Upstream(f) => upstream(f, message, after, variant),
    }
}

/// A backend's failure as SageMaker's error: what a SageMaker backend
/// answered, where it said; for an HF backend, what the HF inference
/// toolkit on SageMaker would answer (the model's own failures, 4xx and
/// 500, as `ModelError`).
fn upstream(
    f: &Failure,
    message: String,
    after: Option<Duration>,
    variant: Option<&str>,
) -> SmError {
    let variant = variant.unwrap_or("primary");
    let arn = f.log_stream_arn.as_deref();
    if f.kind == FailureKind::ModelError {
        let status = f.client_status.or(f.status).unwrap_or(400);
        return model_error(status, &f.message, variant, arn);
    }
    if let (FailureKind::ServerError, Some(status)) = (f.kind, f.model_status) {
        return model_error(status, &f.message, variant, arn);
    }
    match f.service_error {
        Some(ErrorType::ValidationError) => return validation(message),
        Some(ErrorType::InternalDependencyException) => {
            return SmError::service(530, "InternalDependencyException", message)
        }
        _ => {}
    }
    match f.kind {
        // Also a model that is overloaded (TGI's 429): it asks to slow
        // down, which the SDKs' retry logic understands as throttling.
        FailureKind::Throttled => throttling(message, after),
        FailureKind::Unavailable if f.cold => {
            SmError::service(429, "ModelNotReadyException", message)
        }
        FailureKind::Unavailable | FailureKind::Connect | FailureKind::Io => {
            unavailable(message, after)
        }
        FailureKind::Timeout => model_error(504, TIMED_OUT, variant, None),
        FailureKind::InvalidInput => validation(message),
        FailureKind::ModelError | FailureKind::ServerError | FailureKind::Internal => {
            SmError::service(500, "InternalFailure", message)
        }
        FailureKind::AuthRejected
        | FailureKind::Credentials
        | FailureKind::Rejected
        | FailureKind::Protocol => SmError::service(530, "InternalDependencyException", message),
    }
}
