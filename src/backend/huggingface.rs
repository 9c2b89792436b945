//! A Hugging Face Inference Endpoint (public, token-protected, or private
//! behind AWS PrivateLink: to the gateway, a base URL and maybe a token).
//!
//! `POST {url}` with the body as given, `Authorization: Bearer <token>` when
//! a token is configured. A 401/403 means the gateway's token is wrong: a
//! misconfiguration reported as 502, never the client's fault. A model's 4xx
//! (TGI's 422 `validation`, the toolkit's 400) keeps its status, like a
//! SageMaker `ModelError`.

use http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::Value;

use super::events::Events;
use super::exchange::{exchange, Outgoing, Wire};
use super::format::{self, HfRoute, Host};
use super::{clip, describe, retry_after, Failure, FailureKind, UpstreamRequest, UpstreamResponse};
use crate::config::{Container, HealthCheckConfig, HuggingFaceConfig};
use crate::upstream::{Client, Target};

/// The response headers of a success the client gets back.
static RETURNED: [HeaderName; 11] = [
    header::CONTENT_TYPE,
    HeaderName::from_static("x-compute-type"),
    HeaderName::from_static("x-compute-time"),
    HeaderName::from_static("x-compute-characters"),
    HeaderName::from_static("x-total-time"),
    HeaderName::from_static("x-inference-time"),
    HeaderName::from_static("x-queue-time"),
    HeaderName::from_static("x-validation-time"),
    HeaderName::from_static("x-generated-tokens"),
    HeaderName::from_static("x-prompt-tokens"),
    HeaderName::from_static("x-compute-tokens"),
];

/// An HF endpoint's answers: the response headers (TGI's timing headers
/// included) the client gets back; none on a stream, so the events look the
/// same whichever backend served them; streams in server-sent events.
static WIRE: Wire = Wire {
    returned: &RETURNED,
    stream_returned: &[],
    framing: Events::sse,
    classify: classify_error,
};

/// One HF Inference Endpoint.
#[derive(Debug)]
pub struct HuggingFace {
    url: reqwest::Url,
    /// Each route of TGI's and TEI's routers under the endpoint's URL, in
    /// the order of [`HfRoute::ALL`].
    targets: Vec<Target>,
    /// `Bearer <token>`, marked sensitive so it is never logged by the
    /// HTTP stack.
    authorization: Option<HeaderValue>,
    /// The active health check: its URL (`{url}{path}`) and settings.
    health_check: Option<(Target, HealthCheckConfig)>,
}

impl HuggingFace {
    /// The endpoint of `cfg`, each of its URLs made a [`Target`] by
    /// `target` (the gateway's [`crate::upstream::Egress::target`]).
    pub fn from_config<E>(
        cfg: &HuggingFaceConfig,
        target: impl Fn(&reqwest::Url) -> Result<Target, E>,
    ) -> Result<Self, E> {
        let authorization = cfg.token.as_ref().and_then(|t| {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose())).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        let base = cfg.url.as_str().trim_end_matches('/');
        let mut targets = Vec::with_capacity(HfRoute::ALL.len());
        for route in HfRoute::ALL {
            let url = match route {
                HfRoute::Root => cfg.url.clone(),
                other => reqwest::Url::parse(&format!("{base}{}", other.path()))
                    .unwrap_or_else(|_| cfg.url.clone()),
            };
            targets.push(target(&url)?);
        }
        let health_check = match &cfg.health_check {
            Some(hc) => match reqwest::Url::parse(&format!("{base}{}", hc.path)) {
                Ok(url) => Some((target(&url)?, hc.clone())),
                Err(_) => None,
            },
            None => None,
        };
        Ok(Self {
            targets,
            url: cfg.url.clone(),
            authorization,
            health_check,
        })
    }

    /// The active health check's settings, when configured.
    pub fn health_check(&self) -> Option<&HealthCheckConfig> {
        self.health_check.as_ref().map(|(_, hc)| hc)
    }

    /// `GET` on the health URL with the backend's token; `true` on a 2xx
    /// within the check's timeout.
    pub async fn probe_health(&self, client: &Client) -> Option<bool> {
        let (target, hc) = self.health_check.as_ref()?;
        let mut headers = HeaderMap::new();
        if let Some(auth) = &self.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        let sent = client.send(Method::GET, target, headers, bytes::Bytes::new());
        let healthy = match tokio::time::timeout(hc.timeout, sent).await {
            Ok(Ok(res)) => res.status().is_success(),
            _ => false,
        };
        Some(healthy)
    }

    /// The URL requests go to.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Whether requests carry a bearer token.
    pub fn has_token(&self) -> bool {
        self.authorization.is_some()
    }

    pub(super) async fn call(
        &self,
        client: &Client,
        req: &UpstreamRequest,
        name: &str,
        container: Container,
    ) -> Result<UpstreamResponse, Failure> {
        let plan = format::plan(
            container,
            Host::HuggingFace,
            req.op,
            req.stream,
            &req.body,
            name,
        )
        .map_err(|e| Failure::new(FailureKind::InvalidInput, e.to_string()))?;
        let mut headers = HeaderMap::with_capacity(4);
        if plan.json {
            let json = HeaderValue::from_static("application/json");
            headers.insert(header::CONTENT_TYPE, json.clone());
            headers.insert(header::ACCEPT, json);
        } else {
            if let Some(ct) = &req.content_type {
                headers.insert(header::CONTENT_TYPE, ct.clone());
            }
            if let Some(accept) = &req.accept {
                headers.insert(header::ACCEPT, accept.clone());
            }
        }
        if req.stream {
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        if let Some(auth) = &self.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        headers.insert(
            const { HeaderName::from_static("x-request-id") },
            req.request_id.clone(),
        );
        if let Some(trace) = &req.trace {
            trace.inject(&mut headers);
        }
        if let Some(wait) = req.scale_up_timeout {
            // Whole seconds, at least one: the endpoint holds the request
            // while a replica starts instead of answering 503.
            let secs = wait.as_secs().max(1);
            headers.insert(
                const { HeaderName::from_static("x-scale-up-timeout") },
                crate::header_numbers::number(secs),
            );
        }
        let outgoing = Outgoing {
            target: &self.targets[plan.route as usize],
            headers,
            body: plan.body,
            reshape: plan.reshape,
            events: plan.events,
        };
        exchange(client, outgoing, req, &WIRE, name).await
    }
}

/// The message of a TGI (`{"error", "error_type"}`) or toolkit
/// (`{"error"}`) error body, else the body as text.
fn message_of(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => ["error", "message"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| v.to_string()),
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

/// Turns an HF endpoint error answer into a [`Failure`].
pub(crate) fn classify_error(
    backend: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Failure {
    let message = clip(&message_of(body));
    let described = |what: &str| describe(backend, what, &message);
    let mut failure = match status {
        401 | 403 => Failure::new(
            FailureKind::AuthRejected,
            format!(
                "backend \"{backend}\" rejected the gateway's Hugging Face token ({status}); check the backend's token in the gateway's configuration"
            ),
        ),
        404 | 405 => Failure::new(
            FailureKind::Rejected,
            described(&format!("endpoint answered {status}; check the backend's url")),
        ),
        408 => Failure::new(FailureKind::Timeout, described("endpoint timed out")),
        // A paused endpoint answers this; another backend may serve.
        400 if message.contains("Invalid state") => Failure::new(
            FailureKind::Unavailable,
            described("endpoint is paused"),
        )
        .retryable(false),
        429 => Failure::new(FailureKind::Throttled, described("endpoint is overloaded")),
        503 => {
            let mut f = Failure::new(
                FailureKind::Unavailable,
                described("endpoint is unavailable (scaled to zero or starting)"),
            );
            f.cold = true;
            f
        }
        500 | 502 | 504 => Failure::new(
            FailureKind::ServerError,
            described(&format!("endpoint answered {status}")),
        )
        .retryable(true),
        s if (400..500).contains(&s) => {
            let mut f = Failure::new(FailureKind::ModelError, message.clone());
            f.client_status = Some(s);
            f
        }
        _ => Failure::new(
            FailureKind::ServerError,
            described(&format!("endpoint answered {status}")),
        ),
    };
    failure.status = Some(status);
    // A TGI or toolkit 500 is the model's; 502 and 504 are the endpoint's.
    if status == 500 {
        failure.model_status = Some(500);
    }
    failure.retry_after = retry_after(headers);
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tgi_validation_error_keeps_its_status_and_message() {
        let f = classify_error(
            "hf",
            422,
            &HeaderMap::new(),
            br#"{"error": "Input validation error: `inputs` must not be empty", "error_type": "validation"}"#,
        );
        assert_eq!(f.kind, FailureKind::ModelError);
        assert_eq!(f.client_status, Some(422));
        assert_eq!(
            f.message,
            "Input validation error: `inputs` must not be empty"
        );
    }

    #[test]
    fn token_rejection_never_blames_the_client() {
        let f = classify_error("hf", 401, &HeaderMap::new(), b"Unauthorized");
        assert_eq!(f.kind, FailureKind::AuthRejected);
        assert!(!f.retryable);
    }

    #[test]
    fn overload_and_cold_start_are_retryable() {
        let f = classify_error(
            "hf",
            429,
            &HeaderMap::new(),
            br#"{"error":"Model is overloaded","error_type":"overloaded"}"#,
        );
        assert_eq!(f.kind, FailureKind::Throttled);
        assert!(f.retryable);
        let f = classify_error("hf", 503, &HeaderMap::new(), b"");
        assert_eq!(f.kind, FailureKind::Unavailable);
        assert!(f.retryable);
    }
}
