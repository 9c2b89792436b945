//! Every gateway error as a TGI (or TEI) server answers it: `{"error",
//! "error_type"}`, so huggingface_hub's `InferenceClient` raises the
//! exception its users catch (`ValidationError` for `validation`,
//! `GenerationError` for `generation`, `OverloadedError` for `overloaded`,
//! `IncompleteGenerationError` for `incomplete_generation`; an HTTP error
//! otherwise). TGI answers bad input with 422, an overloaded queue with
//! 429 and a failed generation with 424 or 500.

use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

use crate::backend::FailureKind;
use crate::body::ResBody;
use crate::config::Container;
use crate::error::{error_headers, json_reply, ApiError};

/// An error in TGI's shape.
#[derive(Debug, Clone)]
pub struct TgiError {
    pub status: StatusCode,
    pub message: String,
    pub error_type: &'static str,
    /// `WWW-Authenticate`, `Retry-After`, `x-ratelimit-*`, as the error
    /// asks.
    pub headers: Box<HeaderMap>,
}

impl TgiError {
    /// TGI's 422 for input it cannot take.
    pub fn validation(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
            error_type: "validation",
            headers: Box::default(),
        }
    }

    pub fn response(&self) -> Response<ResBody> {
        let body = json!({"error": self.message, "error_type": self.error_type});
        json_reply(self.status, body.to_string(), (*self.headers).clone())
    }
}

/// `err` as TGI would answer it.
pub fn of_api_error(err: &ApiError) -> TgiError {
    of_failure(err, None)
}

/// `err`, a failure of a backend running `container`, as TGI would answer
/// it: LMI's 424 is its validation error, TGI's own 424 a failed generation.
pub fn of_failure(err: &ApiError, container: Option<Container>) -> TgiError {
    let status = err.status();
    let mut headers = HeaderMap::new();
    error_headers(&mut headers, err);
    let base = TgiError {
        status,
        message: err.to_string(),
        error_type: type_of(status),
        headers: Box::new(headers),
    };
    match err {
        // The request's own faults: TGI's validation error.
        ApiError::BadRequest(_) | ApiError::NotServed { .. } | ApiError::BodyRead(_) => TgiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error_type: "validation",
            ..base
        },
        ApiError::Upstream(f)
            if f.kind == FailureKind::InvalidInput
                || (container == Some(Container::Lmi) && status.as_u16() == 424) =>
        {
            TgiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                error_type: "validation",
                ..base
            }
        }
        // A model that failed rather than refused: TGI's 500.
        ApiError::Upstream(f) if f.model_status.is_some_and(|s| s >= 500) => TgiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_type: "incomplete_generation",
            ..base
        },
        _ => base,
    }
}

/// TGI's `error_type` for a status.
fn type_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 422 => "validation",
        424 => "generation",
        429 | 503 => "overloaded",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        500 => "incomplete_generation",
        _ => "backend",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Failure;

    #[test]
    fn errors_carry_the_types_huggingface_hub_maps() {
        let e = of_api_error(&ApiError::BadRequest("bad".into()));
        assert_eq!((e.status.as_u16(), e.error_type), (422, "validation"));
        let e = of_api_error(&ApiError::Overloaded);
        assert_eq!((e.status.as_u16(), e.error_type), (503, "overloaded"));
        assert_eq!(e.response().headers()["retry-after"], "1");
        let e = of_api_error(&ApiError::Unauthenticated);
        assert!(e.response().headers().contains_key("www-authenticate"));
        let mut f = Failure::new(FailureKind::ModelError, "Input validation error");
        f.client_status = Some(422);
        let e = of_api_error(&ApiError::Upstream(f));
        assert_eq!((e.status.as_u16(), e.error_type), (422, "validation"));
        let mut f = Failure::new(FailureKind::ServerError, "CUDA out of memory");
        f.model_status = Some(500);
        f.status = Some(500);
        let e = of_api_error(&ApiError::Upstream(f));
        assert_eq!(
            (e.status.as_u16(), e.error_type),
            (500, "incomplete_generation")
        );
    }
}
