//! `POST /endpoints/{route}/invocations` and
//! `/endpoints/{route}/invocations-response-stream`: the SageMaker
//! runtime's `InvokeEndpoint` and `InvokeEndpointWithResponseStream`, so
//! boto3, the AWS SDKs and the SageMaker Python SDK call a route by
//! changing only their endpoint URL. The route's name plays the endpoint's;
//! a base path before `/endpoints` is allowed (botocore keeps an
//! `endpoint_url`'s path as a prefix).
//!
//! A request goes: the whole body (its hash is signed) → who is calling
//! (the caller's SigV4 signature, checked as AWS checks it against the
//! client table's `aws_access_key_id`s, by [`crate::protocol::sigv4_verify`];
//! with `server.auth = "none"` any signature or none) → the route (an
//! unknown one is AWS's `ValidationError`) → the client's routes and
//! limits → the core. The answer comes back as SageMaker gives it:
//! `x-amzn-RequestId`, `X-Amzn-Invoked-Production-Variant` (the backend's
//! name when the backend does not say), the session and custom-attribute
//! headers; a stream as AWS event-stream frames ([`super::stream`]); every
//! error in SageMaker's shape ([`errors`]). The caller's signature never
//! travels on: backends are called with the gateway's own credentials.

pub mod errors;

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use percent_encoding::percent_decode_str;
use tokio::time::Instant;
use tower::Service;

use crate::body::{BoxError, ResBody};
use crate::clients::Client;
use crate::config::DoorKind;
use crate::core::{CoreRequest, CoreResponse};
use crate::gateway::Gateway;
use crate::layers::{Access, Answer};
use crate::limits::Charge;
use crate::protocol::sigv4_verify::{self, Credential, Expect, Regions, VerifyRequest};
use crate::route::Route;

use self::errors::{SmError, REQUEST_ID};
use super::predict::{
    admit, answered, begin, call_core, core_request, gateway_headers, log_failure, read_within,
    record, recorded, success,
};
use super::stream::Wire;

/// How far a caller's `X-Amz-Date` may be from the gateway's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

const INVOKED_VARIANT: HeaderName = HeaderName::from_static("x-amzn-invoked-production-variant");
/// What `InvokeEndpointWithResponseStream` sends its `Accept` as.
const STREAM_ACCEPT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-accept");

/// The SageMaker runtime operations a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `InvokeEndpoint`.
    Invoke,
    /// `InvokeEndpointWithResponseStream`.
    InvokeStream,
    /// `InvokeEndpointAsync`: not served; answered so in SageMaker's shape.
    InvokeAsync,
}

/// The endpoint name (percent-decoded) and the operation of a SageMaker
/// runtime path, after any base path; `None` for any other path.
pub fn parse_path(path: &str) -> Option<(Cow<'_, str>, Operation)> {
    let (rest, op) = [
        ("/invocations-response-stream", Operation::InvokeStream),
        ("/async-invocations", Operation::InvokeAsync),
        ("/invocations", Operation::Invoke),
    ]
    .into_iter()
    .find_map(|(suffix, op)| path.strip_suffix(suffix).map(|rest| (rest, op)))?;
    let at = rest.rfind("/endpoints/")?;
    let name = &rest[at + "/endpoints/".len()..];
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let name = percent_decode_str(name).decode_utf8().ok()?;
    Some((name, op))
}

/// Serves one request of the SageMaker door.
pub async fn invoke<B, C>(
    gw: &Arc<Gateway>,
    core: C,
    endpoint: &str,
    op: Operation,
    req: Request<B>,
) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    C: Service<CoreRequest, Response = CoreResponse, Error = Infallible>,
{
    let (started, trace, mut access) = begin(gw, &req, crate::telemetry::Door::SageMaker);
    access.stream = op == Operation::InvokeStream;
    if req.method() != Method::POST {
        return refused(errors::unknown_operation(), access);
    }
    if op == Operation::InvokeAsync {
        let err = errors::validation(
            "InvokeEndpointAsync is not supported by this gateway: use InvokeEndpoint or InvokeEndpointWithResponseStream.",
        );
        return refused(err, access);
    }
    let (parts, body) = req.into_parts();
    let headers = signed_headers(&parts);
    let signer = Signer::new(gw, &parts, &headers);
    // Before the body: every check of the signature that needs none, so
    // that a caller without a known key costs no upload.
    if let Err(e) = signer.check_head() {
        return refused(e, access);
    }
    // Within the route's deadline, as on the predict door (the route is
    // confirmed to the caller only once its signature is).
    let timeout = gw
        .routes
        .get(endpoint)
        .map_or(gw.config.server.request_timeout, |r| r.timeout);
    let body = match read_within(gw, body, started + timeout, &mut access).await {
        Ok(body) => body,
        Err(e) => return refused(errors::of_api_error(&e, endpoint, None), access),
    };
    let caller = match signer.verify(&body) {
        Ok(caller) => caller,
        Err(e) => return refused(e, access),
    };
    let found = gw
        .routes
        .get(endpoint)
        .filter(|r| r.on_door(DoorKind::SageMaker));
    let Some(route) = found.cloned() else {
        return refused(errors::unknown_endpoint(endpoint), access);
    };
    access.route = Some(Arc::clone(&route));
    if let Some(client) = &caller {
        access.client = Some(Arc::clone(client));
        if !client.may_use(&route.name) {
            return refused(errors::access_denied(&client.name, endpoint), access);
        }
    }
    let (rate, charge) = match admit(gw, &route, &mut access).await {
        Ok(admitted) => admitted,
        Err(e) => return refused(errors::of_api_error(&e, endpoint, None), access),
    };
    let mut request = match core_request(&route, &parts, body, trace, started, &access) {
        Ok(request) => request,
        Err(e) => return refused(errors::of_api_error(&e, endpoint, None), access),
    };
    // The stream operation's own name for `Accept`.
    if request.accept.is_none() {
        request.accept = parts.headers.get(STREAM_ACCEPT).cloned();
    }
    let answer = call_core(core, request).await;
    let response = render(gw, &route, answer, endpoint, started, &mut access, charge);
    answered(response, rate, access)
}

/// The core's answer in SageMaker's shape: the upstream answer with
/// [`answer_headers`] (a stream in event-stream frames), or the error.
fn render(
    gw: &Gateway,
    route: &Route,
    answer: CoreResponse,
    endpoint: &str,
    started: Instant,
    access: &mut Access,
    charge: Option<Charge>,
) -> Response<ResBody> {
    let (result, timing) = record(answer, access);
    let variant = access.backend.as_ref().map(|b| b.name.clone());
    let mut response = match result {
        Ok(up) => {
            let wire = if access.stream {
                Wire::EventStream
            } else {
                Wire::Sse
            };
            let mut res = success(gw, route, up, wire, started, access, charge);
            answer_headers(res.headers_mut(), variant.as_deref(), &access.request_id);
            res
        }
        Err(err) => {
            log_failure(&err, &route.name, variant.as_deref(), &access.request_id);
            errors::of_api_error(&err, endpoint, variant.as_deref()).response(&access.request_id)
        }
    };
    gateway_headers(response.headers_mut(), access, timing, started);
    response
}

/// A request answered with `err` before the core, recorded in `access`.
fn refused(err: SmError, access: Access) -> Answer {
    recorded(err.response(&access.request_id), access)
}

/// `x-amzn-RequestId` (the gateway's request id, the one its log shows)
/// and `X-Amzn-Invoked-Production-Variant` (the backend's own, or for a
/// backend that names none, such as an HF endpoint, the backend's name).
fn answer_headers(headers: &mut HeaderMap, backend: Option<&str>, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, v);
    }
    if !headers.contains_key(INVOKED_VARIANT) {
        if let Some(v) = backend.and_then(|b| HeaderValue::from_str(b).ok()) {
            headers.insert(INVOKED_VARIANT, v);
        }
    }
}

/// The request's headers as a signer signed them: HTTP/2 carries the host
/// as `:authority`, which signers sign as `host`.
fn signed_headers(parts: &http::request::Parts) -> Cow<'_, HeaderMap> {
    match (
        parts.headers.contains_key(header::HOST),
        parts.uri.authority(),
    ) {
        (false, Some(authority)) => {
            let mut h = parts.headers.clone();
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                h.insert(header::HOST, v);
            }
            Cow::Owned(h)
        }
        _ => Cow::Borrowed(&parts.headers),
    }
}

/// Who signed the request, checked against the clients' AWS keys; with
/// authentication off, anyone (any signature or none).
struct Signer<'a> {
    gw: &'a Gateway,
    parts: &'a http::request::Parts,
    headers: &'a HeaderMap,
    expect: Expect<'a>,
}

impl<'a> Signer<'a> {
    fn new(gw: &'a Gateway, parts: &'a http::request::Parts, headers: &'a HeaderMap) -> Self {
        let regions = &gw.config.doors.sagemaker.regions;
        let expect = Expect {
            regions: if regions.is_empty() {
                Regions::Any
            } else {
                Regions::Among(regions)
            },
            service: "sagemaker",
            now: SystemTime::now(),
            max_skew: MAX_SKEW,
            explain_mismatch: false,
        };
        Self {
            gw,
            parts,
            headers,
            expect,
        }
    }

    /// The key store the verifier looks access key ids up in.
    fn credential(&self, id: &str) -> Option<Credential> {
        self.gw
            .callers
            .by_access_key(id)
            .map(|(_, key)| Credential {
                secret_access_key: key.secret_access_key.expose().to_owned(),
                session_token: key.session_token.as_ref().map(|t| t.expose().to_owned()),
            })
    }

    fn check_head(&self) -> Result<(), SmError> {
        if !self.gw.callers.required() {
            return Ok(());
        }
        sigv4_verify::check_head(self.headers, &self.expect, &|id| self.credential(id))
            .map_err(|rej| rejected(&rej))
    }

    /// The client whose signature covers `body`; `None` when
    /// authentication is off.
    fn verify(&self, body: &[u8]) -> Result<Option<Arc<Client>>, SmError> {
        if !self.gw.callers.required() {
            return Ok(None);
        }
        let req = VerifyRequest {
            method: self.parts.method.as_str(),
            path: self.parts.uri.path(),
            query: self.parts.uri.query(),
            headers: self.headers,
            body,
        };
        let verified = sigv4_verify::verify(&req, &self.expect, &|id| self.credential(id))
            .map_err(|rej| rejected(&rej))?;
        // The verifier found the key by this id a moment ago.
        let client = self.gw.callers.by_access_key(&verified.access_key_id);
        Ok(client.map(|(client, _)| Arc::clone(client)))
    }
}

fn rejected(rej: &sigv4_verify::Rejection) -> SmError {
    tracing::debug!(error_type = rej.error_type, "a SigV4 signature was refused");
    errors::of_rejection(rej)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_its_endpoint_and_operation_after_any_base_path() {
        let cases = [
            (
                "/endpoints/flan/invocations",
                Some(("flan", Operation::Invoke)),
            ),
            (
                "/endpoints/flan/invocations-response-stream",
                Some(("flan", Operation::InvokeStream)),
            ),
            (
                "/endpoints/flan/async-invocations",
                Some(("flan", Operation::InvokeAsync)),
            ),
            (
                "/sm/base/endpoints/flan-t5/invocations",
                Some(("flan-t5", Operation::Invoke)),
            ),
            // A route may be named "endpoints" too.
            (
                "/endpoints/endpoints/invocations",
                Some(("endpoints", Operation::Invoke)),
            ),
            (
                "/endpoints/fl%61n/invocations",
                Some(("flan", Operation::Invoke)),
            ),
            ("/endpoints//invocations", None),
            ("/endpoints/a/b/invocations", None),
            ("/endpoints/flan/invocations/", None),
            ("/endpoints/%FF/invocations", None),
            ("/flan/invocations", None),
            ("/v1/predict/flan", None),
        ];
        for (path, want) in cases {
            let got = parse_path(path);
            let got = got.as_ref().map(|(name, op)| (name.as_ref(), *op));
            assert_eq!(got, want, "{path}");
        }
    }
}
