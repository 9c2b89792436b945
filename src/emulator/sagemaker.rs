//! The SageMaker runtime emulator: `InvokeEndpoint` and
//! `InvokeEndpointWithResponseStream` as AWS answers them, down to the error
//! shapes the AWS SDKs parse (`x-amzn-ErrorType`, `x-amzn-RequestId`, JSON
//! `message`/`Message`, ModelError's `OriginalStatusCode`/`OriginalMessage`/
//! `LogStreamArn`), stateful sessions, and header length limits.
//!
//! A request goes: route → body size → SigV4 ([`crate::protocol::sigv4_verify`], when
//! credentials are configured) → endpoint name and header validation → known
//! endpoint → session → cold start (a serverless-style wait) → injected faults
//! → the model container. The container is the shared fake model
//! ([`super::model`]) behind one of four model servers ([`ModelFormat`]):
//! TGI, DJL serving's LMI, text-embeddings-inference (TEI) and the legacy
//! JumpStart text2text. Its rejection of bad input comes back, as on AWS, as
//! a 424 ModelError whose `OriginalStatusCode` and `OriginalMessage` are the
//! container's own status and body (TGI and JumpStart: the HF toolkit's 400;
//! LMI: 424 `{"error", "code": 424}`; TEI: 422 `{"error", "error_type"}`).
//!
//! Choices where AWS leaves it to the container: the request closes its session
//! with `"close_session": true` in the JSON body (top level or in
//! `parameters`); `X-Amzn-SageMaker-Custom-Attributes` is echoed back; TGI and
//! LMI stream only when the body says `"stream": true` (otherwise the JSON
//! answer arrives in one PayloadPart, as behind SageMaker; a streaming body on
//! the buffered route gets the whole stream text back). TGI streams SSE and an
//! injected mid-stream error is an exception frame (`stream_error`); LMI
//! streams JSON lines (`application/jsonlines`) and its mid-stream error is
//! the container's last line with `finish_reason: "error"`, after which the
//! stream ends normally. `stream_split` re-slices either kind of stream at
//! random offsets. TEI and JumpStart cannot stream, so their stream route
//! answers a ValidationError; embeddings take no `token_latency`.
//!
//! The error shapes and the request validation rules live in `errors.rs`
//! beside this file, the containers' answers in `container.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, Method, Response};
use serde_json::Value;

use super::eventstream::{self, StreamFaults};
use super::faults::FaultConfig;
use super::serve::{
    self, apply_faults, set_header, Answer, BodyError, EmuBody, EmuRequest, Emulator,
};
use super::tls::TlsOptions;
use super::{EmulatorHandle, Shared};
use crate::protocol::sigv4_verify::{self, Credential, Expect, Regions, Rejection, VerifyRequest};

mod container;
mod errors;

use container::{ContainerError, StreamRefusal};
use errors::{
    auth_rejection, header_violations, length_violation, unknown_operation, valid_endpoint_name,
    validation, violations_message, NAME_PATTERN,
};

/// The account every emulated endpoint belongs to.
pub const ACCOUNT_ID: &str = "123456789012";
/// SageMaker's request body limit.
pub const MAX_BODY_BYTES: usize = 6_291_456;
/// How long a new stateful session lives.
pub const SESSION_TTL: Duration = Duration::from_secs(20 * 60);
/// The production variant answering when none is requested.
pub const DEFAULT_VARIANT: &str = "AllTraffic";
// Caps the session table so no client can grow it without bound.
const MAX_SESSIONS: usize = 10_000;

/// The model server in the container behind the endpoint (CLI `--format`,
/// alias `--container`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelFormat {
    /// Hugging Face DLC / TGI: `{"inputs", "parameters", "stream"}` →
    /// `[{"generated_text"}]`, `{"messages"}` → chat completion, `{"prompt"}`
    /// → text completion; SSE streams.
    #[default]
    #[value(name = "tgi")]
    Tgi,
    /// DJL serving's LMI (rolling batch): `{"inputs", "parameters"}` →
    /// `{"generated_text"}`, `{"messages"}` → chat completion; JSON-lines
    /// streams; bad input is a 424 `{"error", "code"}`.
    #[value(name = "lmi")]
    Lmi,
    /// text-embeddings-inference: `{"inputs", "normalize", "truncate"}` →
    /// `[[f32]]`; no streaming; bad input is a 413 `Validation` error (as TEI answers it).
    #[value(name = "tei")]
    Tei,
    /// JumpStart text2text (legacy): JSON `{"text_inputs", "max_length",
    /// "num_return_sequences"}` → `{"generated_texts"}`, `application/x-text` →
    /// `{"generated_text"}`; no streaming.
    #[value(name = "jumpstart-text2text")]
    JumpStartText2Text,
}

impl ModelFormat {
    /// The CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Tgi => "tgi",
            ModelFormat::Lmi => "lmi",
            ModelFormat::Tei => "tei",
            ModelFormat::JumpStartText2Text => "jumpstart-text2text",
        }
    }
}

/// How to run a SageMaker runtime emulator.
#[derive(Clone, Debug)]
pub struct SageMakerOptions {
    pub region: String,
    /// Endpoint names that exist; empty means any valid name exists.
    pub endpoints: Vec<String>,
    /// (access key id, credential) pairs accepted; empty turns SigV4
    /// verification off. Changeable later with
    /// [`EmulatorHandle::set_credentials`].
    pub credentials: Vec<(String, Credential)>,
    pub format: ModelFormat,
    /// Allowed clock skew of `X-Amz-Date` (AWS: 15 minutes).
    pub max_skew: Duration,
    pub faults: FaultConfig,
    /// Serve HTTPS with this certificate; `None` serves plain HTTP.
    pub tls: Option<TlsOptions>,
}

impl Default for SageMakerOptions {
    fn default() -> Self {
        SageMakerOptions {
            region: "us-east-1".to_owned(),
            endpoints: Vec::new(),
            credentials: Vec::new(),
            format: ModelFormat::Tgi,
            max_skew: Duration::from_secs(15 * 60),
            faults: FaultConfig::default(),
            tls: None,
        }
    }
}

/// Starts a SageMaker runtime emulator on `listen` (`127.0.0.1:0` for any port).
pub async fn start(listen: SocketAddr, opts: SageMakerOptions) -> std::io::Result<EmulatorHandle> {
    let shared = Arc::new(Shared::default());
    shared.faults.set(opts.faults.clone());
    shared.auth.set_credentials(opts.credentials);
    let emu = SageMaker {
        region: opts.region,
        endpoints: opts.endpoints,
        format: opts.format,
        max_skew: opts.max_skew,
        sessions: Mutex::new(HashMap::new()),
    };
    serve::start(listen, emu, shared, opts.tls.as_ref()).await
}

struct SageMaker {
    region: String,
    endpoints: Vec<String>,
    format: ModelFormat,
    max_skew: Duration,
    /// Session id → expiry.
    sessions: Mutex<HashMap<String, SystemTime>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Invoke,
    Stream,
}

enum Session {
    None,
    New { id: String, expires: SystemTime },
    Existing(String),
}

pub(super) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `(endpoint name as sent, operation)` for the two known routes.
fn route<'a>(method: &Method, path: &'a str) -> Option<(&'a str, Op)> {
    if method != Method::POST {
        return None;
    }
    let rest = path.strip_prefix("/endpoints/")?;
    let (name, op) = rest.split_once('/')?;
    match op {
        "invocations" => Some((name, Op::Invoke)),
        "invocations-response-stream" => Some((name, Op::Stream)),
        _ => None,
    }
}

fn wants_close(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    v.get("close_session").and_then(Value::as_bool) == Some(true)
        || v.pointer("/parameters/close_session")
            .and_then(Value::as_bool)
            == Some(true)
}

// === impl SageMaker ===

impl Emulator for SageMaker {
    const MAX_BODY: usize = MAX_BODY_BYTES;

    async fn handle(&self, req: EmuRequest, shared: &Arc<Shared>) -> Answer {
        let EmuRequest { parts, body } = req;
        let Some((raw_name, op)) = route(&parts.method, parts.uri.path()) else {
            return Ok(unknown_operation());
        };
        let body = match body {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Ok(validation(&violations_message(&[format!(
                    "Value at 'body' failed to satisfy constraint: Member must have length less than or equal to {MAX_BODY_BYTES}"
                )])))
            }
            Err(BodyError::Io) => return Ok(validation("Could not read the request body.")),
        };
        if shared.auth.verifies_signatures() {
            if let Err(rej) = self.verify(&parts, &body, shared) {
                shared.counters.auth_rejected();
                return Ok(auth_rejection(&rej));
            }
        }
        let name = percent_encoding::percent_decode_str(raw_name)
            .decode_utf8_lossy()
            .into_owned();
        let mut violations = Vec::new();
        if let Some(v) = length_violation(&name, "endpointName", 0, 63) {
            violations.push(v);
        } else if !valid_endpoint_name(&name) {
            violations.push(format!(
                "Value '{name}' at 'endpointName' failed to satisfy constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}"
            ));
        }
        violations.extend(header_violations(&parts.headers));
        if !violations.is_empty() {
            return Ok(validation(&violations_message(&violations)));
        }
        if !self.endpoints.is_empty() && !self.endpoints.contains(&name) {
            return Ok(validation(&format!(
                "Endpoint {name} of account {ACCOUNT_ID} not found."
            )));
        }
        let session = match self.session(&parts.headers, op) {
            Ok(s) => s,
            Err(message) => return Ok(validation(&message)),
        };
        // A sleeping endpoint holds requests while it starts (serverless).
        while let Some(ready_at) = shared.faults.wake() {
            tokio::time::sleep_until(ready_at).await;
        }
        if let Some(e) = apply_faults(shared).await? {
            let res = errors::injected(&self.region, &name, e);
            return Ok(serve::with_retry_after(res, &shared.faults));
        }
        let variant = header_str(&parts.headers, "x-amzn-sagemaker-target-variant")
            .unwrap_or_else(|| DEFAULT_VARIANT.to_owned());
        let mut resp = match op {
            Op::Invoke => match self.invoke(&parts.headers, &body, shared).await {
                Ok(out) => {
                    let mut resp = Response::new(EmuBody::full(out.body));
                    set_header(&mut resp, "content-type", out.content_type);
                    self.finish_session(&mut resp, session, &body);
                    resp
                }
                Err(resp) => return Ok(self.container_error(resp, &name)),
            },
            Op::Stream => match self.stream(&body, shared) {
                Ok(resp) => resp,
                Err(e) => return Ok(self.stream_refusal(e, &name)),
            },
        };
        set_header(&mut resp, "x-amzn-invoked-production-variant", &variant);
        set_header(&mut resp, "x-amzn-requestid", &serve::request_id());
        if let Some(attrs) = parts.headers.get("x-amzn-sagemaker-custom-attributes") {
            resp.headers_mut()
                .insert("x-amzn-sagemaker-custom-attributes", attrs.clone());
        }
        Ok(resp)
    }
}

impl SageMaker {
    fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        shared: &Shared,
    ) -> Result<(), Rejection> {
        // Over h2 the host travels as `:authority`; the signer signed it as `host`.
        let mut with_host;
        let mut headers = &parts.headers;
        if !headers.contains_key(header::HOST) {
            if let Some(host) = parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                with_host = parts.headers.clone();
                with_host.insert(header::HOST, host);
                headers = &with_host;
            }
        }
        let req = VerifyRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers,
            body,
        };
        let expect = Expect {
            regions: Regions::Only(&self.region),
            service: "sagemaker",
            now: SystemTime::now(),
            max_skew: self.max_skew,
            explain_mismatch: true,
        };
        sigv4_verify::verify(&req, &expect, &|id| shared.auth.credential(id)).map(|_| ())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, SystemTime>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn session(&self, headers: &HeaderMap, op: Op) -> Result<Session, String> {
        let Some(id) = header_str(headers, "x-amzn-sagemaker-session-id") else {
            return Ok(Session::None);
        };
        let now = SystemTime::now();
        if id == "NEW_SESSION" {
            if op == Op::Stream {
                return Err(String::from(
                    "A new session can't be created with InvokeEndpointWithResponseStream; use InvokeEndpoint with NEW_SESSION.",
                ));
            }
            let mut sessions = self.sessions();
            sessions.retain(|_, expires| *expires > now);
            if sessions.len() >= MAX_SESSIONS {
                return Err(String::from(
                    "The maximum number of open sessions has been reached.",
                ));
            }
            let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            let expires = now + SESSION_TTL;
            sessions.insert(id.clone(), expires);
            return Ok(Session::New { id, expires });
        }
        match self.sessions().get(&id) {
            Some(expires) if *expires > now => Ok(Session::Existing(id)),
            _ => Err(format!("Session {id} is not found or has expired.")),
        }
    }

    fn finish_session(&self, resp: &mut Response<EmuBody>, session: Session, body: &[u8]) {
        match session {
            Session::None => {}
            Session::New { id, expires } => {
                let expires = humantime::format_rfc3339_seconds(expires);
                set_header(
                    resp,
                    "x-amzn-sagemaker-new-session-id",
                    &format!("{id}; Expires={expires}"),
                );
            }
            Session::Existing(id) if wants_close(body) => {
                self.sessions().remove(&id);
                set_header(resp, "x-amzn-sagemaker-closed-session-id", &id);
            }
            Session::Existing(_) => {}
        }
    }

    fn container_error(&self, e: ContainerError, name: &str) -> Response<EmuBody> {
        errors::model_error(&self.region, name, e.status, &e.body)
    }

    fn stream_refusal(&self, e: StreamRefusal, name: &str) -> Response<EmuBody> {
        match e {
            StreamRefusal::NotSupported => validation(&format!(
                "Endpoint {name} of account {ACCOUNT_ID} does not support response streaming: its model container does not stream."
            )),
            StreamRefusal::Container(e) => self.container_error(e, name),
        }
    }

    /// The container's answer to a non-streaming invocation, paced at
    /// `token_latency` per generated token.
    async fn invoke(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        shared: &Shared,
    ) -> Result<container::Output, ContainerError> {
        let out = container::invoke(self.format, headers, body)?;
        let per_token = shared.faults.get().token_latency;
        let total = per_token.saturating_mul(u32::try_from(out.tokens).unwrap_or(u32::MAX));
        if !total.is_zero() {
            tokio::time::sleep(total).await;
        }
        Ok(out)
    }

    fn stream(&self, body: &[u8], shared: &Shared) -> Result<Response<EmuBody>, StreamRefusal> {
        let faults = shared.faults.get();
        let payload = container::stream(self.format, body, &faults)?;
        shared.counters.stream_started();
        let frames = eventstream::frames(
            payload.events,
            StreamFaults {
                token_latency: faults.token_latency,
                split: faults.stream_split,
                corrupt_crc_at: faults.corrupt_crc_at,
                error_after: payload.error_after,
                error: faults.stream_error,
            },
        );
        let mut resp = Response::new(EmuBody::stream(frames));
        set_header(
            &mut resp,
            "content-type",
            "application/vnd.amazon.eventstream",
        );
        set_header(
            &mut resp,
            "x-amzn-sagemaker-content-type",
            payload.content_type,
        );
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(&Method::POST, "/endpoints/a/invocations"),
            Some(("a", Op::Invoke))
        );
        assert_eq!(
            route(&Method::POST, "/endpoints/a-b/invocations-response-stream"),
            Some(("a-b", Op::Stream))
        );
        assert_eq!(route(&Method::GET, "/endpoints/a/invocations"), None);
        assert_eq!(route(&Method::POST, "/endpoints/a/other"), None);
        assert_eq!(route(&Method::POST, "/endpoints/"), None);
    }

    #[test]
    fn close_session_flag() {
        assert!(wants_close(br#"{"inputs":"a","close_session":true}"#));
        assert!(wants_close(
            br#"{"inputs":"a","parameters":{"close_session":true}}"#
        ));
        assert!(!wants_close(br#"{"inputs":"a"}"#));
        assert!(!wants_close(b"\xff"));
    }
}
