//! Backends: one upstream model endpoint each, SageMaker or Hugging Face.
//!
//! A backend turns the gateway's [`UpstreamRequest`] into one HTTP exchange
//! with its endpoint: adapt the payload ([`format`]), build the URL,
//! authenticate (SigV4 via [`sigv4`] and [`credentials`], or a bearer token),
//! send on the upstream client it is handed (each worker has its own), and
//! classify the answer into an [`UpstreamResponse`] or a [`Failure`]
//! (`exchange` does the part both kinds share). A backend's active health
//! probe is its own too ([`health_check`]), and reports its results through
//! a callback. It knows nothing about routes, retries or balancing;
//! [`crate::dispatch`] decides what to do with a failure. Backends are a
//! closed enum, one file each: two kinds do not need `Box<dyn>`.

pub mod credentials;
pub mod events;
pub(crate) mod exchange;
pub mod format;
pub mod health_check;
pub mod huggingface;
pub mod sagemaker;
pub mod sigv4;

use std::fmt;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::config::{BackendConfig, BackendKind as BackendKindConfig, Container, Operation};
use crate::upstream::{find_source, Client, ConnectError, ConnectErrorKind, Egress, Target};

pub use health_check::HealthCheck;
pub use huggingface::HuggingFace;
pub use sagemaker::SageMaker;

/// Why a backend could not be built from its (validated) config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A URL put together from the config does not parse.
    #[error("invalid SageMaker URL {url}: {source}")]
    Url {
        url: String,
        #[source]
        source: UrlParseError,
    },
    /// The environment's proxy for the backend cannot be used.
    #[error(transparent)]
    Proxy(#[from] crate::upstream::EgressError),
}

/// The `url` crate's parse error, named through reqwest's `Url` so that the
/// crate need not depend on `url` itself.
pub type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// One configured backend.
#[derive(Debug)]
pub struct Backend {
    /// The backend's config name (`[backends.NAME]`), used in headers, logs
    /// and metrics.
    pub name: String,
    /// The name as an `x-infergate-backend` value, made once (`None` if a
    /// name could not be one).
    name_header: Option<HeaderValue>,
    /// Per-attempt timeout, when the config sets one.
    pub timeout: Option<Duration>,
    /// The model server behind the endpoint.
    pub container: Container,
    pub kind: BackendKind,
}

/// The closed set of backend kinds.
#[derive(Debug)]
pub enum BackendKind {
    SageMaker(SageMaker),
    HuggingFace(HuggingFace),
}

impl Backend {
    /// A public HF backend at `url`, with no token, health check or
    /// timeout: for the balancer's and dispatcher's tests and the hot-path
    /// benchmark, which pick backends without calling them.
    pub fn huggingface(name: &str, url: reqwest::Url) -> Self {
        let cfg = crate::config::HuggingFaceConfig {
            url,
            token: None,
            health_check: None,
        };
        let direct = |url: &reqwest::Url| Ok::<_, std::convert::Infallible>(Target::direct(url));
        let Ok(hf) = HuggingFace::from_config(&cfg, direct);
        let kind = BackendKind::HuggingFace(hf);
        Self::new(name.to_string(), None, Container::Tgi, kind)
    }

    fn new(
        name: String,
        timeout: Option<Duration>,
        container: Container,
        kind: BackendKind,
    ) -> Self {
        Self {
            name_header: HeaderValue::from_str(&name).ok(),
            name,
            timeout,
            container,
            kind,
        }
    }

    /// The backend's name as a header value, for the answers it gives.
    pub fn name_header(&self) -> Option<&HeaderValue> {
        self.name_header.as_ref()
    }

    /// Builds a backend from its validated config. SageMaker backends resolve
    /// their credential chain here (no network call until the first request),
    /// unless `credentials` supplies a provider.
    pub async fn from_config(
        cfg: &BackendConfig,
        credentials: Option<SharedCredentialsProvider>,
        metrics: &crate::metrics::Metrics,
        egress: &Egress,
    ) -> Result<Self, BuildError> {
        let kind = match &cfg.kind {
            BackendKindConfig::SageMaker(sm) => BackendKind::SageMaker(
                SageMaker::from_config(&cfg.name, sm, credentials, metrics, egress).await?,
            ),
            BackendKindConfig::HuggingFace(hf) => {
                BackendKind::HuggingFace(HuggingFace::from_config(hf, |u| egress.target(u))?)
            }
        };
        Ok(Self::new(
            cfg.name.clone(),
            cfg.timeout,
            cfg.container,
            kind,
        ))
    }

    /// `"sagemaker"` or `"huggingface"`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            BackendKind::SageMaker(_) => "sagemaker",
            BackendKind::HuggingFace(_) => "huggingface",
        }
    }

    /// Whether the backend can answer a token stream of any operation.
    pub fn can_stream(&self) -> bool {
        self.container.streams()
    }

    /// Whether the backend's container answers `op` (as a stream when
    /// `stream`).
    pub fn serves(&self, op: Operation, stream: bool) -> bool {
        self.container.serves(op, stream)
    }

    /// Sends one attempt. Each call authenticates afresh (a new SigV4
    /// signature with the current credentials), so a retry never reuses a
    /// stale signature.
    pub async fn call(
        &self,
        client: &Client,
        req: &UpstreamRequest,
    ) -> Result<UpstreamResponse, Failure> {
        match &self.kind {
            BackendKind::SageMaker(sm) => sm.call(client, req, self.container).await,
            BackendKind::HuggingFace(hf) => hf.call(client, req, &self.name, self.container).await,
        }
    }
}

/// What the gateway asks of a backend, independent of the backend's kind.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// What is asked: the body is in the operation's shape
    /// ([`format`]).
    pub op: Operation,
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    pub accept: Option<HeaderValue>,
    /// `X-Amzn-SageMaker-*` headers the client sent (validated); SageMaker
    /// backends forward them, others ignore them.
    pub sagemaker_headers: Vec<(HeaderName, HeaderValue)>,
    pub request_id: HeaderValue,
    /// Time this attempt may take until the response headers.
    pub timeout: Duration,
    /// Time left of the request's deadline: bounds the whole exchange,
    /// the response body included.
    pub total: Duration,
    /// For an HF endpoint scaled to zero: how long it may hold the request
    /// while a replica starts (`X-Scale-Up-Timeout`).
    pub scale_up_timeout: Option<Duration>,
    /// A token stream (`generate_stream`, `InvokeEndpointWithResponseStream`)
    /// rather than one answer; `timeout` then bounds the wait for the first
    /// event.
    pub stream: bool,
    /// The request's trace context, sent on as `traceparent`.
    pub trace: Option<crate::trace::TraceContext>,
}

/// A successful upstream answer, its headers already filtered down to what
/// the client may see.
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
}

impl fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// The body of a successful answer: passed through as it arrives, or
/// complete when a payload adapter had to rewrite it.
#[allow(
    clippy::large_enum_variant,
    reason = "the stream's state is moved a few times per request, as the unboxed \
              passed-through body was before it was boxed; boxing it too would cost \
              an allocation per stream"
)]
pub enum UpstreamBody {
    /// Within the request's deadline ([`Deadline`]); boxed so that the
    /// response cache can keep a copy as it passes ([`crate::cache::record`]).
    Stream(crate::body::ResBody),
    Full(Bytes),
    /// A token stream whose first event has arrived.
    Events {
        first: Bytes,
        events: events::Events,
    },
}

/// Why an attempt failed, in terms the dispatcher and the error mapping share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection could be made: nothing reached the backend.
    Connect,
    /// The connection broke (reset, closed) before a response arrived.
    Io,
    /// No response headers within the attempt's time.
    Timeout,
    /// The backend asks us to slow down (SageMaker `ThrottlingException`, HF 429).
    Throttled,
    /// The backend cannot serve now (`ModelNotReadyException`,
    /// `ServiceUnavailable`, an HF endpoint scaled to zero).
    Unavailable,
    /// The model rejected or failed on the input (`ModelError`, HF 4xx).
    ModelError,
    /// The backend refused the gateway's credentials: a misconfiguration.
    AuthRejected,
    /// The gateway could not obtain AWS credentials.
    Credentials,
    /// The service rejected the request for a reason the client cannot fix
    /// (`ValidationError`: unknown endpoint, bad variant; HF 404).
    Rejected,
    /// The service failed (`InternalFailure`, 5xx).
    ServerError,
    /// The answer did not have the shape the protocol promises.
    Protocol,
    /// The client's input cannot be adapted to this backend's container.
    InvalidInput,
    /// The gateway itself failed to build the request (e.g. to sign it).
    Internal,
}

impl FailureKind {
    /// Every kind, for the metrics that are present from start.
    pub const ALL: [FailureKind; 13] = [
        FailureKind::Connect,
        FailureKind::Io,
        FailureKind::Timeout,
        FailureKind::Throttled,
        FailureKind::Unavailable,
        FailureKind::ModelError,
        FailureKind::AuthRejected,
        FailureKind::Credentials,
        FailureKind::Rejected,
        FailureKind::ServerError,
        FailureKind::Protocol,
        FailureKind::InvalidInput,
        FailureKind::Internal,
    ];

    /// The `type` member of the client-facing error JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "upstream_unreachable",
            FailureKind::Io => "upstream_connection_error",
            FailureKind::Timeout => "upstream_timeout",
            FailureKind::Throttled => "rate_limited",
            FailureKind::Unavailable => "backend_unavailable",
            FailureKind::ModelError => "model_error",
            FailureKind::AuthRejected => "upstream_auth_rejected",
            FailureKind::Credentials => "credentials_unavailable",
            FailureKind::Rejected => "upstream_rejected",
            FailureKind::ServerError => "upstream_error",
            FailureKind::Protocol => "upstream_protocol_error",
            FailureKind::InvalidInput => "invalid_input",
            FailureKind::Internal => "internal_error",
        }
    }
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    /// The HTTP status the backend answered, when it answered.
    pub status: Option<u16>,
    /// For a model's own rejection of the input: the 4xx the client gets.
    pub client_status: Option<u16>,
    /// A message safe to show the client (never a credential).
    pub message: String,
    /// How long the backend asked us to wait (`Retry-After`,
    /// `x-amz-retry-after`).
    pub retry_after: Option<Duration>,
    /// Whether trying again (here or on another backend) may succeed.
    pub retryable: bool,
    /// The backend is scaling from zero (HF 503, SageMaker
    /// `ModelNotReadyException`): avoid it while it wakes.
    pub cold: bool,
    /// The upstream's own request id (`x-amzn-RequestId`), for support cases.
    pub upstream_request_id: Option<String>,
    /// Where a SageMaker `ModelError`'s container logs are (its
    /// `LogStreamArn`), for a door that answers in SageMaker's shape.
    pub log_stream_arn: Option<Box<str>>,
    /// The status the model itself failed with (a SageMaker `ModelError`'s
    /// 5xx `OriginalStatusCode`, an HF endpoint's 500), when it was the
    /// model and not the service that failed.
    pub model_status: Option<u16>,
    /// The SageMaker runtime error a SageMaker backend answered.
    pub service_error: Option<crate::protocol::sagemaker::ErrorType>,
    /// The underlying error's cause chain, for the log only: it may name
    /// addresses and internals a client need not see.
    pub cause: Option<String>,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        let retryable = matches!(
            kind,
            FailureKind::Connect
                | FailureKind::Io
                | FailureKind::Timeout
                | FailureKind::Throttled
                | FailureKind::Unavailable
        );
        Self {
            kind,
            status: None,
            client_status: None,
            message: message.into(),
            retry_after: None,
            retryable,
            cold: false,
            upstream_request_id: None,
            log_stream_arn: None,
            model_status: None,
            service_error: None,
            cause: None,
        }
    }

    /// Whether another backend may serve the request: everything but a
    /// model's rejection of the client's input.
    pub fn may_fail_over(&self) -> bool {
        self.kind != FailureKind::ModelError
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Classifies a transport error from the upstream client: no
    /// connection (naming the step that failed: TCP, TLS, the proxy), or a
    /// connection that broke before the answer.
    pub(crate) fn from_transport(err: &crate::upstream::Error, backend: &str) -> Self {
        let mut f = match find_source::<ConnectError>(err) {
            Some(c) if c.kind == ConnectErrorKind::TimedOut => Failure::new(
                FailureKind::Timeout,
                format!("could not connect to backend \"{backend}\": {c}"),
            ),
            // A certificate the gateway does not trust will not be trusted
            // on a second try: only another backend may serve.
            Some(c) if c.kind == ConnectErrorKind::Tls => Failure::new(
                FailureKind::Connect,
                format!("could not connect to backend \"{backend}\": {c}"),
            )
            .retryable(false),
            Some(c) => Failure::new(
                FailureKind::Connect,
                format!("could not connect to backend \"{backend}\": {c}"),
            ),
            None if err.is_connect() => Failure::new(
                FailureKind::Connect,
                format!("could not connect to backend \"{backend}\""),
            ),
            None => Failure::new(
                FailureKind::Io,
                format!("the connection to backend \"{backend}\" failed before a response"),
            ),
        };
        f.cause = Some(cause_chain(err));
        f
    }

    /// No answer in time (no first event, for a stream): the attempt's
    /// timeout ran out.
    pub(crate) fn timed_out(backend: &str, stream: bool) -> Self {
        let message = if stream {
            format!("backend \"{backend}\": no first event in time")
        } else {
            format!("backend \"{backend}\" did not answer in time")
        };
        Failure::new(FailureKind::Timeout, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An error and its sources on one line, for the log.
pub(crate) fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads `x-amz-retry-after` (milliseconds) or `Retry-After` (seconds, or
/// an HTTP date: the time from now until then).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, std::time::SystemTime::now())
}

fn retry_after_at(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("x-amz-retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    match value.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        // A date in the past means "now".
        Err(_) => httpdate::parse_http_date(value)
            .ok()
            .map(|at| at.duration_since(now).unwrap_or_default()),
    }
}

/// `backend "name": what: the upstream's message` (without the last part
/// when the upstream said nothing).
pub(crate) fn describe(backend: &str, what: &str, message: &str) -> String {
    if message.is_empty() {
        format!("backend \"{backend}\": {what}")
    } else {
        format!("backend \"{backend}\": {what}: {message}")
    }
}

/// Shortens an upstream message so a huge error body cannot flood the
/// client's error JSON or the logs.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 1024;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_prefers_the_amz_header_in_milliseconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("x-amz-retry-after", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn retry_after_takes_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:50:07 GMT"),
        );
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:00 GMT"),
        );
        assert_eq!(retry_after_at(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after_at(&h, now), None);
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "é".repeat(1000);
        let c = clip(&s);
        assert!(c.len() <= 1024 + "…".len());
        assert!(c.ends_with('…'));
    }
}
