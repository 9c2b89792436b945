//! Every gateway error as OpenAI's API answers it, so the `openai` client
//! raises the exception its users catch: `{"error": {"message", "type",
//! "param", "code"}}` with the status it maps to its classes (400
//! `BadRequestError`, 401 `AuthenticationError`, 403
//! `PermissionDeniedError`, 404 `NotFoundError`, 422
//! `UnprocessableEntityError`, 429 `RateLimitError`, 5xx
//! `InternalServerError`), `Retry-After` where the client should come back.

use http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};

use crate::backend::FailureKind;
use crate::body::ResBody;
use crate::config::Container;
use crate::error::{error_headers, json_reply, ApiError};
use crate::limits::Scope;

/// An error in OpenAI's shape.
#[derive(Debug, Clone)]
pub struct OaiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
    /// `WWW-Authenticate`, `Retry-After`, `x-ratelimit-*`, as the error
    /// asks.
    pub headers: Box<HeaderMap>,
}

impl OaiError {
    /// A 400 `invalid_request_error` about `param`.
    pub fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
            headers: Box::default(),
        }
    }

    /// The 404 of a model (a route) that does not exist.
    pub fn unknown_model(model: &str) -> Self {
        let shown: String = model.chars().take(128).collect();
        Self {
            status: StatusCode::NOT_FOUND,
            code: Some("model_not_found"),
            ..Self::invalid(
                Some("model"),
                format!("The model `{shown}` does not exist or you do not have access to it."),
            )
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }

    pub fn response(&self) -> Response<ResBody> {
        json_reply(
            self.status,
            self.body().to_string(),
            (*self.headers).clone(),
        )
    }
}

/// `err` as OpenAI would answer it; `model` is the request's.
pub fn of_api_error(err: &ApiError, model: &str) -> OaiError {
    of_failure(err, model, None)
}

/// `err`, a failure of a backend running `container`, as OpenAI would
/// answer it.
pub fn of_failure(err: &ApiError, model: &str, container: Option<Container>) -> OaiError {
    let status = err.status();
    let mut headers = HeaderMap::new();
    error_headers(&mut headers, err);
    let base = OaiError {
        status,
        message: err.to_string(),
        kind: kind_of(status),
        param: None,
        code: None,
        headers: Box::new(headers),
    };
    match err {
        ApiError::UnknownRoute(_) => OaiError::unknown_model(model),
        ApiError::Unauthenticated => OaiError {
            code: Some("invalid_api_key"),
            kind: "invalid_request_error",
            ..base
        },
        ApiError::Forbidden(_) | ApiError::NotAdmin => OaiError {
            kind: "permission_error",
            code: Some("model_not_allowed"),
            ..base
        },
        ApiError::NotServed { .. } => OaiError {
            param: Some("model"),
            code: Some("model_not_supported"),
            ..base
        },
        ApiError::RateLimited(r) => {
            let tokens = matches!(
                r.scope,
                Scope::ClientTokens | Scope::ClientRouteTokens | Scope::RouteTokens
            );
            OaiError {
                kind: if tokens { "tokens" } else { "requests" },
                code: Some("rate_limit_exceeded"),
                ..base
            }
        }
        ApiError::Deadline(_) => OaiError {
            code: Some("timeout"),
            ..base
        },
        ApiError::Upstream(f) => upstream(f, base, container),
        _ => base,
    }
}

/// A backend's failure: a model's rejection of the input keeps its 4xx,
/// but for what OpenAI's clients read as no input error: TEI's 413 and
/// LMI's 424 (its validation error) are a 400, and TGI's 424 (a failed
/// generation, worth a client's retry) a 500.
fn upstream(f: &crate::backend::Failure, base: OaiError, container: Option<Container>) -> OaiError {
    let status = match base.status.as_u16() {
        413 => StatusCode::BAD_REQUEST,
        424 if container == Some(Container::Lmi) => StatusCode::BAD_REQUEST,
        424 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => base.status,
    };
    let code = match f.kind {
        FailureKind::ModelError | FailureKind::InvalidInput => None,
        // One code for every 429, the gateway's limits' and a backend's.
        FailureKind::Throttled => Some("rate_limit_exceeded"),
        other => Some(other.as_str()),
    };
    OaiError {
        status,
        kind: kind_of(status),
        code,
        ..base
    }
}

/// OpenAI's `type` for a status.
fn kind_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 400..=428 | 431 => "invalid_request_error",
        429 => "requests",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Failure;

    #[test]
    fn statuses_and_types_are_openais() {
        let e = of_api_error(&ApiError::UnknownRoute("m".into()), "m");
        assert_eq!(e.status, 404);
        assert_eq!(e.body()["error"]["code"], "model_not_found");
        assert_eq!(e.body()["error"]["param"], "model");
        let e = of_api_error(&ApiError::Unauthenticated, "m");
        assert_eq!((e.status.as_u16(), e.code), (401, Some("invalid_api_key")));
        assert!(e.response().headers().contains_key("www-authenticate"));
        let e = of_api_error(&ApiError::Forbidden("m".into()), "m");
        assert_eq!((e.status.as_u16(), e.kind), (403, "permission_error"));
        let e = of_api_error(&ApiError::NoBackend, "m");
        assert_eq!((e.status.as_u16(), e.kind), (503, "server_error"));
        assert_eq!(e.response().headers()["retry-after"], "1");
    }

    #[test]
    fn a_models_rejection_keeps_its_status_but_a_424_is_lmis_400_or_tgis_500() {
        let mut f = Failure::new(FailureKind::ModelError, "bad input");
        f.client_status = Some(422);
        f.status = Some(422);
        let e = of_api_error(&ApiError::Upstream(f.clone()), "m");
        assert_eq!((e.status.as_u16(), e.kind), (422, "invalid_request_error"));
        assert_eq!(e.message, "bad input");
        f.client_status = Some(424);
        let e = of_failure(&ApiError::Upstream(f.clone()), "m", Some(Container::Lmi));
        assert_eq!(e.status, 400);
        let e = of_failure(&ApiError::Upstream(f), "m", Some(Container::Tgi));
        assert_eq!((e.status.as_u16(), e.kind), (500, "server_error"));
    }
}
