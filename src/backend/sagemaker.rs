//! A SageMaker real-time endpoint: `InvokeEndpoint`, SigV4-signed.
//!
//! `POST {base}/endpoints/{name}/invocations`, where the base is
//! `https://runtime.sagemaker.{region}.amazonaws.com` (`.com.cn` in the China
//! partition, `runtime-fips` when asked) or the configured `endpoint_url` (a
//! VPC interface endpoint, an emulator). Every attempt is signed afresh over
//! the exact bytes sent. Error answers are classified the way AWS's SDKs read
//! them: the type from `x-amzn-ErrorType`, else the body's `code`/`__type`,
//! cut at the first `:` and after a `#`.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::provider::SharedCredentialsProvider;
use http::{header, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::credentials::CredentialSource;
use super::events::Events;
use super::exchange::{exchange, Outgoing, Wire};
use super::format::{self, Host};
use super::sigv4::{sign_request, Signer};
use super::{
    clip, describe, retry_after, BuildError, Failure, FailureKind, UpstreamRequest,
    UpstreamResponse,
};
use crate::config::{Container, SageMakerConfig};
use crate::metrics::Metrics;
use crate::protocol::sagemaker::ErrorType;
use crate::upstream::{Client, Egress, Target};

/// The response headers of a success the client gets back.
static RETURNED: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    HeaderName::from_static("x-amzn-invoked-production-variant"),
    HeaderName::from_static("x-amzn-sagemaker-custom-attributes"),
    HeaderName::from_static("x-amzn-sagemaker-new-session-id"),
    HeaderName::from_static("x-amzn-sagemaker-closed-session-id"),
    HeaderName::from_static("x-amzn-requestid"),
];

/// The response headers of a stream the client gets back.
static STREAM_RETURNED: [HeaderName; 4] = [
    HeaderName::from_static("x-amzn-invoked-production-variant"),
    HeaderName::from_static("x-amzn-sagemaker-custom-attributes"),
    HeaderName::from_static("x-amzn-sagemaker-new-session-id"),
    HeaderName::from_static("x-amzn-sagemaker-closed-session-id"),
];

/// SageMaker's answers: `InvokeEndpoint`'s headers the client gets back;
/// of a stream, the variant, the custom attributes and the session headers
/// (its own framing headers are the gateway's to set); streams in the AWS
/// event stream.
static WIRE: Wire = Wire {
    returned: &RETURNED,
    stream_returned: &STREAM_RETURNED,
    framing: Events::aws,
    classify: classify_error,
};

/// One SageMaker endpoint.
#[derive(Debug)]
pub struct SageMaker {
    name: String,
    region: String,
    url: reqwest::Url,
    target: Target,
    /// `InvokeEndpointWithResponseStream`'s.
    stream_target: Target,
    /// The `Host` header the upstream client sends, as signed.
    host: String,
    credentials: Arc<CredentialSource>,
    fixed_headers: Vec<(HeaderName, HeaderValue)>,
}

impl SageMaker {
    /// Builds the backend with aws-config's default credential chain, or
    /// with `provider` when given (the demo, tests).
    pub async fn from_config(
        name: &str,
        cfg: &SageMakerConfig,
        provider: Option<SharedCredentialsProvider>,
        metrics: &Metrics,
        egress: &Egress,
    ) -> Result<Self, BuildError> {
        let source = match provider {
            Some(p) => CredentialSource::from_provider(p),
            None => CredentialSource::from_config(cfg).await,
        };
        let credentials = Arc::new(source.observed(metrics.clone(), name));
        let url = invocations_url(cfg, "invocations")?;
        let stream_url = invocations_url(cfg, "invocations-response-stream")?;
        let host = host_header(&url);
        Ok(Self {
            name: name.to_string(),
            region: cfg.region.clone(),
            target: egress.target(&url)?,
            stream_target: egress.target(&stream_url)?,
            url,
            host,
            credentials,
            fixed_headers: cfg.headers.clone(),
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    pub(super) async fn call(
        &self,
        client: &Client,
        req: &UpstreamRequest,
        container: Container,
    ) -> Result<UpstreamResponse, Failure> {
        let plan = format::plan(
            container,
            Host::SageMaker,
            req.op,
            req.stream,
            &req.body,
            &self.name,
        )
        .map_err(|e| Failure::new(FailureKind::InvalidInput, e.to_string()))?;
        let credentials = self.credentials.get().await.map_err(|e| {
            // The provider's error chain may name roles, accounts and local
            // endpoints: it goes to the log, the client gets the gist.
            tracing::warn!(backend = %self.name, error = %e, "no AWS credentials");
            Failure::new(
                FailureKind::Credentials,
                format!(
                    "backend \"{}\": the gateway could not obtain AWS credentials; see the gateway's log",
                    self.name
                ),
            )
        })?;
        let (content_type, accept) = if plan.json {
            let json = HeaderValue::from_static("application/json");
            (Some(json.clone()), Some(json))
        } else {
            (req.content_type.clone(), req.accept.clone())
        };
        let mut headers = self.request_headers(req, content_type, accept);
        let target = if req.stream {
            &self.stream_target
        } else {
            &self.target
        };
        let signer = Signer {
            credentials: &credentials,
            region: &self.region,
            time: SystemTime::now(),
        };
        sign_request(
            signer,
            "POST",
            &self.host,
            target.uri().path(),
            &mut headers,
            &plan.body,
        )
        .map_err(|e| {
            tracing::error!(backend = %self.name, error = %e, "could not sign a request");
            Failure::new(
                FailureKind::Internal,
                format!(
                    "backend \"{}\": the gateway could not sign the request",
                    self.name
                ),
            )
        })?;

        // Trace context goes unsigned, like X-Amzn-Trace-Id: a tracing
        // proxy on the way may rewrite it.
        if let Some(trace) = &req.trace {
            trace.inject(&mut headers);
        }
        let outgoing = Outgoing {
            target,
            headers,
            body: plan.body,
            reshape: plan.reshape,
            events: plan.events,
        };
        exchange(client, outgoing, req, &WIRE, &self.name).await
    }

    /// The request's headers before signing.
    fn request_headers(
        &self,
        req: &UpstreamRequest,
        content_type: Option<HeaderValue>,
        accept: Option<HeaderValue>,
    ) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(8);
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, ct);
        }
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, accept);
        }
        for (name, value) in &self.fixed_headers {
            headers.insert(name.clone(), value.clone());
        }
        // The client's own X-Amzn-SageMaker-* headers, unless the operator
        // pinned that header in config.
        for (name, value) in &req.sagemaker_headers {
            if !self.fixed_headers.iter().any(|(n, _)| n == name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        if req.stream {
            // InvokeEndpointWithResponseStream takes fewer headers.
            for name in NOT_STREAMED {
                headers.remove(*name);
            }
        }
        headers
    }
}

/// Request headers `InvokeEndpointWithResponseStream` does not take.
const NOT_STREAMED: &[&str] = &[
    "accept",
    "x-amzn-sagemaker-target-model",
    "x-amzn-sagemaker-enable-explanations",
];

/// `{base}/endpoints/{name}/{operation}`.
fn invocations_url(cfg: &SageMakerConfig, operation: &str) -> Result<reqwest::Url, BuildError> {
    let raw = format!(
        "{}/endpoints/{}/{operation}",
        cfg.base_url(),
        cfg.endpoint_name
    );
    reqwest::Url::parse(&raw).map_err(|source| BuildError::Url { url: raw, source })
}

/// The `Host` header value an HTTP client sends for `url`.
fn host_header(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The error type as AWS's SDKs read it.
fn error_type(headers: &HeaderMap, body: &Value) -> Option<String> {
    let raw = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            ["code", "__type"]
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_str).map(str::to_string))
        })?;
    let before_colon = raw.split(':').next().unwrap_or_default();
    let after_hash = before_colon.rsplit('#').next().unwrap_or_default();
    Some(after_hash.to_string())
}

fn message_of(body: &Value) -> Option<String> {
    ["message", "Message", "errorMessage"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str).map(str::to_string))
}

/// The model's own message out of a `ModelError`'s `OriginalMessage`, which
/// is the container's body: often JSON with a `message` or `error`.
fn model_message(original: &str) -> String {
    match serde_json::from_str::<Value>(original) {
        Ok(v) => ["message", "error", "Message"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| original.to_string()),
        Err(_) => original.to_string(),
    }
}

/// A rejection of the gateway's credentials. AWS's message is not passed on:
/// after a signature mismatch it quotes the canonical request, session token
/// included.
fn auth_rejected(backend: &str, kind: &str) -> Failure {
    Failure::new(
        FailureKind::AuthRejected,
        format!(
            "backend \"{backend}\": SageMaker rejected the gateway's AWS credentials ({kind}); check the gateway's credentials and the backend's region"
        ),
    )
}

/// Turns a SageMaker error answer into a [`Failure`].
pub(crate) fn classify_error(
    backend: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Failure {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let kind = error_type(headers, &json).unwrap_or_default();
    let message = message_of(&json).unwrap_or_default();
    let described = |what: &str| describe(backend, what, &clip(&message));
    let mut failure = match kind.as_str() {
        "ModelError" => {
            let original_status = json
                .get("OriginalStatusCode")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok());
            let original = json
                .get("OriginalMessage")
                .and_then(Value::as_str)
                .map(model_message)
                .unwrap_or_else(|| message.clone());
            let mut f = Failure::new(FailureKind::ModelError, clip(&original));
            f.log_stream_arn = json
                .get("LogStreamArn")
                .and_then(Value::as_str)
                .map(|arn| clip(arn).into());
            match original_status {
                // The container is overloaded (TGI's 429): transient.
                Some(429) => {
                    f = Failure::new(FailureKind::Throttled, described("the model is overloaded"));
                }
                Some(s) if (400..500).contains(&s) => f.client_status = Some(s),
                // The model itself failed: not the client's fault.
                other => {
                    f.kind = FailureKind::ServerError;
                    f.model_status = Some(other.unwrap_or(500));
                }
            }
            f
        }
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" => {
            Failure::new(FailureKind::Throttled, described("throttled by SageMaker"))
        }
        "ModelNotReadyException" => {
            let mut f = Failure::new(FailureKind::Unavailable, described("model not ready"));
            f.cold = true;
            f
        }
        "ServiceUnavailable" => Failure::new(
            FailureKind::Unavailable,
            described("SageMaker is unavailable"),
        ),
        "InternalFailure" => {
            Failure::new(FailureKind::ServerError, described("SageMaker failed")).retryable(true)
        }
        "InternalDependencyException" => Failure::new(
            FailureKind::ServerError,
            described("SageMaker dependency failed"),
        ),
        "ValidationError" => Failure::new(
            FailureKind::Rejected,
            described("SageMaker rejected the request"),
        ),
        "InvalidSignatureException"
        | "UnrecognizedClientException"
        | "MissingAuthenticationTokenException"
        | "IncompleteSignatureException"
        | "AccessDeniedException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId" => auth_rejected(backend, &kind),
        _ => match status {
            401 | 403 => auth_rejected(backend, "access denied"),
            500 | 502 | 503 | 504 => Failure::new(
                if status == 503 {
                    FailureKind::Unavailable
                } else {
                    FailureKind::ServerError
                },
                described(&format!("SageMaker answered {status}")),
            )
            .retryable(true),
            s if s >= 500 => Failure::new(
                FailureKind::ServerError,
                described(&format!("SageMaker answered {status}")),
            ),
            _ => Failure::new(
                FailureKind::Rejected,
                described(&format!("SageMaker answered {status}")),
            ),
        },
    };
    failure.status = Some(status);
    failure.service_error = ErrorType::from_name(&kind);
    failure.retry_after = retry_after(headers);
    failure.upstream_request_id = headers
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .map(clip);
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(kind: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-amzn-errortype", HeaderValue::from_str(kind).unwrap());
        h
    }

    #[test]
    fn an_unparsable_url_keeps_its_message_and_its_source() {
        let cfg = SageMakerConfig {
            endpoint_name: "x".into(),
            region: "not a region".into(),
            endpoint_url: None,
            fips: false,
            profile: None,
            role_arn: None,
            role_session_name: None,
            external_id: None,
            headers: Vec::new(),
        };
        let err = invocations_url(&cfg, "invocations").unwrap_err();
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(
            err.to_string(),
            format!("invalid SageMaker URL https://runtime.sagemaker.not a region.amazonaws.com/endpoints/x/invocations: {source}")
        );
    }

    #[test]
    fn host_header_keeps_non_default_ports_only() {
        let u = reqwest::Url::parse("http://127.0.0.1:9001/endpoints/x/invocations").unwrap();
        assert_eq!(host_header(&u), "127.0.0.1:9001");
        let u =
            reqwest::Url::parse("https://runtime.sagemaker.us-east-1.amazonaws.com:443/x").unwrap();
        assert_eq!(host_header(&u), "runtime.sagemaker.us-east-1.amazonaws.com");
    }

    #[test]
    fn error_type_is_cut_like_the_sdks_do() {
        let f = classify_error(
            "sm",
            400,
            &headers("ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/"),
            br#"{"message": null}"#,
        );
        assert_eq!(f.kind, FailureKind::Throttled);
        assert!(f.retryable);
        let f = classify_error(
            "sm",
            429,
            &HeaderMap::new(),
            br#"{"__type": "com.amazon.sagemaker#ModelNotReadyException", "Message": "not ready"}"#,
        );
        assert_eq!(f.kind, FailureKind::Unavailable);
        assert_eq!(f.message, "backend \"sm\": model not ready: not ready");
    }

    #[test]
    fn model_error_with_a_client_status_keeps_it_and_the_models_message() {
        let body = serde_json::json!({
            "Message": "Received client error (400) from primary with message \"...\"",
            "OriginalStatusCode": 400,
            "OriginalMessage": "{\"code\": 400, \"type\": \"InternalServerException\", \"message\": \"bad input\"}",
            "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/x"
        });
        let f = classify_error(
            "sm",
            424,
            &headers("ModelError"),
            body.to_string().as_bytes(),
        );
        assert_eq!(f.kind, FailureKind::ModelError);
        assert_eq!(f.client_status, Some(400));
        assert_eq!(f.status, Some(424));
        assert_eq!(f.message, "bad input");
        assert!(!f.retryable);
    }

    #[test]
    fn model_error_with_a_server_status_is_not_the_clients_fault() {
        let body = serde_json::json!({"Message": "m", "OriginalStatusCode": 500, "OriginalMessage": "boom"});
        let f = classify_error(
            "sm",
            424,
            &headers("ModelError"),
            body.to_string().as_bytes(),
        );
        assert_eq!(f.kind, FailureKind::ServerError);
        assert!(!f.retryable);
    }

    #[test]
    fn signature_rejection_is_a_gateway_misconfiguration() {
        let f = classify_error(
            "sm",
            403,
            &headers("InvalidSignatureException"),
            br#"{"message": "The request signature we calculated does not match"}"#,
        );
        assert_eq!(f.kind, FailureKind::AuthRejected);
        assert!(!f.retryable);
    }
}
