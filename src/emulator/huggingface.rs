//! The Hugging Face Inference Endpoint emulator: a model server behind the
//! endpoint's proxy, TGI (text-generation-inference, the default) or TEI
//! (text-embeddings-inference, `tei.rs` beside this file), as
//! [`HuggingFaceOptions::container`] says.
//!
//! The proxy layer checks the bearer token (401 without a valid one; the
//! token is never echoed) and plays scale-to-zero: with `cold_start` set the
//! endpoint starts asleep, the first request starts a replica that is ready
//! after the delay, and meanwhile requests get 503 — unless they carry
//! `X-Scale-Up-Timeout: <seconds>`, which holds them until the replica is ready
//! or the timeout passes. Then come injected faults (inference routes only:
//! a real overloaded server still answers `/health`), then the server's
//! router.
//!
//! TGI: `/` (compat: a list, or SSE with `"stream": true`), `/generate`,
//! `/generate_stream`, `/v1/chat/completions`, `/v1/completions`,
//! `/invocations` (`messages` → chat, `prompt` → completion, else generate,
//! as on SageMaker), `GET /v1/models`, `/health`, `/info`, with TGI's
//! `{"error", "error_type"}` bodies and `x-*-time` headers. SSE events are
//! `data:{json}` without a space; chat and completion streams end with
//! `data:[DONE]` and honour `stream_options.include_usage`.
//!
//! TEI: `/embed` and `/` (`[[f32]]`), `/v1/embeddings` (OpenAI's list, float
//! or base64), `/health`, `/info`, with TEI's `{"error", "error_type"}`
//! (`Validation`, `Backend`, `Overloaded`, `Unhealthy`) and its `x-compute-*`
//! and timing headers; embeddings take `latency` but no `token_latency`.
//!
//! The answers come from the shared fake model ([`super::model`]), so they
//! match the SageMaker emulator's for the same input.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::faults::{FaultConfig, InjectedError};
use super::model::{self, Generation, TgiRequest};
use super::serve::{
    self, apply_faults, json_response, paced, set_header, Answer, BodyError, EmuBody, EmuRequest,
    Emulator,
};
use super::tls::TlsOptions;
use super::{EmulatorHandle, Shared};

mod tei;

/// TGI's (and TEI's) default request body limit.
pub const MAX_BODY_BYTES: usize = 2_000_000;
// Bounds how long `X-Scale-Up-Timeout` may hold a request.
const MAX_SCALE_UP_WAIT: Duration = Duration::from_secs(3600);
const COMPUTE_TYPE: &str = "gpu+optimized";

/// The model server behind the endpoint (CLI `--container`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HuggingFaceContainer {
    /// text-generation-inference.
    #[default]
    #[value(name = "tgi")]
    Tgi,
    /// text-embeddings-inference.
    #[value(name = "tei")]
    Tei,
}

impl HuggingFaceContainer {
    /// The CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            HuggingFaceContainer::Tgi => "tgi",
            HuggingFaceContainer::Tei => "tei",
        }
    }
}

/// How to run a Hugging Face endpoint emulator.
#[derive(Clone, Debug)]
pub struct HuggingFaceOptions {
    /// Required bearer token; `None` makes the endpoint public. Changeable
    /// later with [`EmulatorHandle::set_token`].
    pub token: Option<String>,
    /// What `/info`, `/v1/models` and the OpenAI answers report as the model.
    pub model_id: String,
    /// The model server: TGI (default) or TEI.
    pub container: HuggingFaceContainer,
    pub faults: FaultConfig,
    /// Serve HTTPS with this certificate; `None` serves plain HTTP.
    pub tls: Option<TlsOptions>,
}

impl Default for HuggingFaceOptions {
    fn default() -> Self {
        HuggingFaceOptions {
            token: None,
            model_id: model::DEFAULT_MODEL_ID.to_owned(),
            container: HuggingFaceContainer::Tgi,
            faults: FaultConfig::default(),
            tls: None,
        }
    }
}

/// Starts a Hugging Face endpoint emulator on `listen` (`127.0.0.1:0` for any
/// port).
pub async fn start(
    listen: SocketAddr,
    opts: HuggingFaceOptions,
) -> std::io::Result<EmulatorHandle> {
    let shared = Arc::new(Shared::default());
    shared.faults.set(opts.faults.clone());
    shared.auth.set_token(opts.token);
    serve::start(
        listen,
        HuggingFace {
            model_id: opts.model_id,
            container: opts.container,
        },
        shared,
        opts.tls.as_ref(),
    )
    .await
}

struct HuggingFace {
    model_id: String,
    container: HuggingFaceContainer,
}

fn tgi_error(status: StatusCode, error: &str, error_type: &str) -> Response<EmuBody> {
    json_response(status, &json!({ "error": error, "error_type": error_type }))
}

fn validation(message: &str) -> Response<EmuBody> {
    tgi_error(StatusCode::UNPROCESSABLE_ENTITY, message, "validation")
}

fn unauthorized(message: &str) -> Response<EmuBody> {
    json_response(StatusCode::UNAUTHORIZED, &json!({ "error": message }))
}

fn scaled_to_zero() -> Response<EmuBody> {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({
            "error": "503 Service Unavailable: the endpoint is scaled to zero and a replica is starting; retry later or send X-Scale-Up-Timeout",
            "error_type": "unavailable",
        }),
    )
}

/// TGI's answer for a status, as an injected fault.
fn status_error(status: u16) -> Response<EmuBody> {
    let status = match StatusCode::from_u16(status) {
        Ok(s) if s.is_client_error() || s.is_server_error() => s,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let (error, error_type) = match status.as_u16() {
        422 => (
            "Input validation error: injected by the infergate emulator",
            "validation",
        ),
        424 => (
            "Request failed during generation: Server error: injected by the infergate emulator",
            "generation",
        ),
        429 => ("Model is overloaded", "overloaded"),
        500 => ("Incomplete generation", "incomplete_generation"),
        503 => ("503 Service Unavailable", "unavailable"),
        s if s < 500 => (
            "Bad request: injected by the infergate emulator",
            "validation",
        ),
        _ => (
            "Server error: injected by the infergate emulator",
            "server_error",
        ),
    };
    tgi_error(status, error, error_type)
}

/// The status an injected error answers with (TGI and TEI alike).
fn injected_status(e: InjectedError) -> u16 {
    match e {
        InjectedError::ValidationError => 422,
        InjectedError::ModelError { .. } => 424,
        InjectedError::ModelNotReadyException | InjectedError::ServiceUnavailable => 503,
        InjectedError::InternalFailure => 500,
        InjectedError::InternalDependencyException => 502,
        InjectedError::ThrottlingException => 429,
        InjectedError::Status(s) => s,
    }
}

fn injected(e: InjectedError) -> Response<EmuBody> {
    status_error(injected_status(e))
}

/// `X-Scale-Up-Timeout` in seconds (fractions allowed), if valid.
fn scale_up_timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("x-scale-up-timeout")?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(MAX_SCALE_UP_WAIT.as_secs_f64()),
    ))
}

/// Token check; the configured token is compared, never echoed.
/// The error is the 401 message.
fn authorized(headers: &HeaderMap, token: &str) -> Result<(), &'static str> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err("Authorization header is required");
    };
    // The auth scheme is case-insensitive (RFC 9110); the token is not.
    let bytes = value.as_bytes();
    let is_bearer = bytes
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer "));
    let presented = bytes.get(7..).filter(|_| is_bearer);
    if presented.map(|p| p.trim_ascii()) == Some(token.as_bytes()) {
        Ok(())
    } else {
        Err("Invalid credentials in Authorization header")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Compat,
    Generate,
    GenerateStream,
    Chat,
    Completions,
    Invocations,
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

impl Emulator for HuggingFace {
    const MAX_BODY: usize = MAX_BODY_BYTES;

    async fn handle(&self, req: EmuRequest, shared: &Arc<Shared>) -> Answer {
        let started = Instant::now();
        // The endpoint's proxy answers first, then the faults, then the server.
        if let Some(refused) = check_token(&req.parts.headers, shared) {
            return Ok(refused);
        }
        if let Some(unavailable) = wait_for_replica(&req.parts.headers, shared, started).await {
            return Ok(unavailable);
        }
        let mut answer = match self.container {
            HuggingFaceContainer::Tgi => self.tgi(req, shared, started).await,
            HuggingFaceContainer::Tei => tei::handle(&self.model_id, req, shared, started).await,
        };
        if let (Ok(resp), Some(value)) = (&mut answer, shared.faults.get().cache_control) {
            set_header(resp, "cache-control", &value);
        }
        answer
    }
}

/// The proxy's token check: `Some` is its 401.
fn check_token(headers: &HeaderMap, shared: &Shared) -> Option<Response<EmuBody>> {
    let token = shared.auth.token()?;
    let message = authorized(headers, &token).err()?;
    shared.counters.auth_rejected();
    Some(unauthorized(message))
}

/// Scale-to-zero: `None` once a replica is ready, else the 503, at once or
/// when `X-Scale-Up-Timeout` runs out before the replica is ready.
async fn wait_for_replica(
    headers: &HeaderMap,
    shared: &Shared,
    started: Instant,
) -> Option<Response<EmuBody>> {
    let mut ready_at = shared.faults.wake()?;
    let Some(wait) = scale_up_timeout(headers) else {
        return Some(scaled_to_zero());
    };
    let deadline = started + wait;
    loop {
        if ready_at > deadline {
            tokio::time::sleep_until(deadline).await;
            return Some(scaled_to_zero());
        }
        tokio::time::sleep_until(ready_at).await;
        match shared.faults.wake() {
            None => return None,
            // Put back to sleep meanwhile: wait for the new replica.
            Some(next) => ready_at = next,
        }
    }
}

/// The body parsed for `route`, and its length (what `x-compute-characters`
/// reports); else TGI's 413 or 422.
fn read_request(
    route: Route,
    body: Result<Bytes, BodyError>,
) -> ControlFlow<Response<EmuBody>, (TgiRequest, usize)> {
    let body = match body {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return ControlFlow::Break(tgi_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Payload too large: the limit is {MAX_BODY_BYTES} bytes"),
                "validation",
            ))
        }
        Err(BodyError::Io) => {
            return ControlFlow::Break(validation("Failed to read the request body"))
        }
    };
    let parsed = match route {
        Route::Chat => model::parse_chat(&body).map(TgiRequest::Chat),
        Route::Completions => model::parse_completion(&body).map(TgiRequest::Completion),
        Route::Invocations => model::parse_invocation(&body),
        Route::Compat | Route::Generate | Route::GenerateStream => {
            model::parse_generate(&body).map(TgiRequest::Generate)
        }
    };
    match parsed {
        Ok(req) => ControlFlow::Continue((req, body.len())),
        Err(message) => ControlFlow::Break(validation(&message)),
    }
}

/// TGI's timing and token-count headers on a whole (non-streamed) answer.
fn set_tgi_headers(
    resp: &mut Response<EmuBody>,
    gen: &Generation,
    body_len: usize,
    total_time: Duration,
    inference: Duration,
    per_token: Duration,
) {
    set_header(resp, "x-compute-type", COMPUTE_TYPE);
    set_header(
        resp,
        "x-compute-time",
        &total_time.as_secs_f64().to_string(),
    );
    set_header(resp, "x-compute-characters", &body_len.to_string());
    set_header(resp, "x-total-time", &ms(total_time));
    set_header(resp, "x-validation-time", "0");
    set_header(
        resp,
        "x-queue-time",
        &ms(total_time.saturating_sub(inference)),
    );
    set_header(resp, "x-inference-time", &ms(inference));
    set_header(resp, "x-time-per-token", &ms(per_token));
    set_header(resp, "x-prompt-tokens", &gen.prompt_tokens.to_string());
    set_header(resp, "x-generated-tokens", &gen.tokens.len().to_string());
}

impl HuggingFace {
    /// TGI: its router, then the faults, then the model.
    async fn tgi(&self, req: EmuRequest, shared: &Arc<Shared>, started: Instant) -> Answer {
        let EmuRequest { parts, body } = req;
        let route = match self.route(&parts.method, parts.uri.path()) {
            ControlFlow::Continue(route) => route,
            ControlFlow::Break(answered) => return Ok(answered),
        };
        if let Some(e) = apply_faults(shared).await? {
            return Ok(serve::with_retry_after(injected(e), &shared.faults));
        }
        let (req, body_len) = match read_request(route, body) {
            ControlFlow::Continue(read) => read,
            ControlFlow::Break(refused) => return Ok(refused),
        };
        let faults = shared.faults.get();
        let stream = match route {
            Route::GenerateStream => true,
            Route::Generate => false,
            Route::Compat | Route::Chat | Route::Completions | Route::Invocations => req.stream(),
        };
        if stream {
            shared.counters.stream_started();
            return Ok(self.stream(&req, &faults));
        }
        Ok(self.answer(route, &req, body_len, &faults, started).await)
    }

    /// TGI's router: the inference route asked for, or the whole answer for
    /// anything else (`/health`, `/info`, `/v1/models`, 405, 404).
    fn route(&self, method: &Method, path: &str) -> ControlFlow<Response<EmuBody>, Route> {
        use ControlFlow::{Break, Continue};
        match (method, path) {
            (&Method::GET, "/health") => Break(serve::empty_response(StatusCode::OK)),
            (&Method::GET, "/info") => Break(json_response(StatusCode::OK, &self.info())),
            (&Method::GET, "/v1/models") => Break(json_response(StatusCode::OK, &self.models())),
            (&Method::POST, "/") => Continue(Route::Compat),
            (&Method::POST, "/generate") => Continue(Route::Generate),
            (&Method::POST, "/generate_stream") => Continue(Route::GenerateStream),
            (&Method::POST, "/v1/chat/completions") => Continue(Route::Chat),
            (&Method::POST, "/v1/completions") => Continue(Route::Completions),
            (&Method::POST, "/invocations") => Continue(Route::Invocations),
            (
                _,
                "/"
                | "/generate"
                | "/generate_stream"
                | "/v1/chat/completions"
                | "/v1/completions"
                | "/invocations"
                | "/v1/models"
                | "/health"
                | "/info",
            ) => Break(serve::empty_response(StatusCode::METHOD_NOT_ALLOWED)),
            _ => Break(serve::empty_response(StatusCode::NOT_FOUND)),
        }
    }

    /// The whole answer, sent after `token_latency` per generated token.
    async fn answer(
        &self,
        route: Route,
        req: &TgiRequest,
        body_len: usize,
        faults: &FaultConfig,
        started: Instant,
    ) -> Response<EmuBody> {
        let alter = faults.alter_inputs_containing.as_deref();
        let (value, gen) = self.generate(route, req, alter);
        let inference_started = Instant::now();
        let n = u32::try_from(gen.tokens.len()).unwrap_or(u32::MAX);
        let total = faults.token_latency.saturating_mul(n);
        if !total.is_zero() {
            tokio::time::sleep(total).await;
        }
        let inference = inference_started.elapsed();
        let mut resp = json_response(StatusCode::OK, &value);
        let total_time = started.elapsed();
        set_tgi_headers(
            &mut resp,
            &gen,
            body_len,
            total_time,
            inference,
            faults.token_latency,
        );
        resp
    }

    /// The JSON answer and the generation behind it; the compat and
    /// `/invocations` routes wrap a generate answer in a list.
    /// A prompt containing `alter` (when set) gets its first generated
    /// token replaced.
    fn generate(&self, route: Route, req: &TgiRequest, alter: Option<&str>) -> (Value, Generation) {
        let gen = req.generation(alter);
        let value = match req {
            TgiRequest::Generate(g) => {
                let one = model::generate_response(&gen, g.details);
                match route {
                    Route::Compat | Route::Invocations => json!([one]),
                    _ => one,
                }
            }
            TgiRequest::Chat(_) => model::chat_completion(&gen, &self.model_id),
            TgiRequest::Completion(_) => model::completion(&gen, &self.model_id),
        };
        (value, gen)
    }

    /// TGI's `/v1/models`: the one model it serves.
    fn models(&self) -> Value {
        json!({
            "object": "list",
            "data": [{
                "id": self.model_id,
                "object": "model",
                "created": 0,
                "owned_by": self.model_id,
            }],
        })
    }

    fn info(&self) -> Value {
        json!({
            "model_id": self.model_id,
            "model_sha": null,
            "model_dtype": "torch.float16",
            "model_device_type": "cpu",
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": 128,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": 1024,
            "max_total_tokens": 2048,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": "3.0.0",
            "sha": null,
            "docker_label": "infergate-emulator",
        })
    }

    /// SSE answer: one event per token every `token_latency`; a TGI error
    /// event replaces the rest after `stream_error_after` tokens. A marked
    /// prompt is answered otherwise, as in [`HuggingFace::generate`].
    fn stream(&self, req: &TgiRequest, faults: &FaultConfig) -> Response<EmuBody> {
        let gen = req.generation(faults.alter_inputs_containing.as_deref());
        let (events, done) = model::stream_events(req, &gen, &self.model_id);
        let mut out: Vec<Bytes> = events.iter().map(|e| model::sse(e)).collect();
        match faults.stream_error_after {
            Some(n) if n < out.len() => {
                out.truncate(n);
                out.push(model::sse(&model::stream_error_event()));
            }
            _ if done => out.push(model::sse("[DONE]")),
            _ => {}
        }
        let mut resp = Response::new(EmuBody::stream(paced(out, faults.token_latency)));
        set_header(&mut resp, "content-type", "text/event-stream");
        set_header(&mut resp, "cache-control", "no-cache");
        set_header(&mut resp, "x-accel-buffering", "no");
        set_header(&mut resp, "x-compute-type", COMPUTE_TYPE);
        resp
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn bearer_check() {
        let mut h = HeaderMap::new();
        assert!(authorized(&h, "t").is_err());
        h.insert("authorization", "Bearer t".parse().unwrap());
        assert!(authorized(&h, "t").is_ok());
        h.insert("authorization", "bearer t".parse().unwrap());
        assert!(authorized(&h, "t").is_ok());
        h.insert("authorization", "Bearer tt".parse().unwrap());
        assert!(authorized(&h, "t").is_err());
        h.insert("authorization", "t".parse().unwrap());
        assert!(authorized(&h, "t").is_err());
    }

    #[test]
    fn scale_up_timeout_header() {
        let mut h = HeaderMap::new();
        assert_eq!(scale_up_timeout(&h), None);
        h.insert("x-scale-up-timeout", "1.5".parse().unwrap());
        assert_eq!(scale_up_timeout(&h), Some(Duration::from_millis(1500)));
        h.insert("x-scale-up-timeout", "-1".parse().unwrap());
        assert_eq!(scale_up_timeout(&h), None);
        h.insert("x-scale-up-timeout", "1e300".parse().unwrap());
        assert_eq!(scale_up_timeout(&h), Some(MAX_SCALE_UP_WAIT));
        h.insert("x-scale-up-timeout", "NaN".parse().unwrap());
        assert_eq!(scale_up_timeout(&h), None);
    }

    fn tgi() -> HuggingFace {
        HuggingFace {
            model_id: "org/m".to_owned(),
            container: HuggingFaceContainer::Tgi,
        }
    }

    fn routed(method: Method, path: &str) -> Result<Route, u16> {
        match tgi().route(&method, path) {
            ControlFlow::Continue(r) => Ok(r),
            ControlFlow::Break(resp) => Err(resp.status().as_u16()),
        }
    }

    #[test]
    fn tgi_routes() {
        assert_eq!(
            routed(Method::POST, "/v1/completions"),
            Ok(Route::Completions)
        );
        assert_eq!(routed(Method::POST, "/invocations"), Ok(Route::Invocations));
        assert_eq!(
            routed(Method::POST, "/v1/chat/completions"),
            Ok(Route::Chat)
        );
        assert_eq!(routed(Method::GET, "/v1/models"), Err(200));
        assert_eq!(routed(Method::POST, "/v1/models"), Err(405));
        assert_eq!(routed(Method::GET, "/v1/completions"), Err(405));
        assert_eq!(routed(Method::GET, "/invocations"), Err(405));
        assert_eq!(routed(Method::POST, "/embed"), Err(404));
    }

    #[test]
    fn models_lists_the_one_model() {
        assert_eq!(
            tgi().models(),
            json!({"object": "list", "data": [
                {"id": "org/m", "object": "model", "created": 0, "owned_by": "org/m"}
            ]})
        );
    }

    #[test]
    fn invocations_wrap_generate_in_a_list() {
        let hf = tgi();
        let req = model::parse_invocation(br#"{"inputs":"a b"}"#).unwrap();
        let (v, _) = hf.generate(Route::Invocations, &req, None);
        assert_eq!(v, json!([{"generated_text": "b a"}]));
        let (v, _) = hf.generate(Route::Generate, &req, None);
        assert_eq!(v, json!({"generated_text": "b a"}));
        let req = model::parse_invocation(br#"{"prompt":"a b"}"#).unwrap();
        let (v, gen) = hf.generate(Route::Invocations, &req, None);
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["model"], "org/m");
        assert_eq!(gen.tokens.len(), 2);
    }

    #[test]
    fn inputs_with_the_marker_are_answered_otherwise() {
        let hf = tgi();
        let marked = model::parse_invocation(br#"{"inputs":"a b MARK"}"#).unwrap();
        let (v, _) = hf.generate(Route::Generate, &marked, Some("MARK"));
        assert_eq!(v, json!({"generated_text": "altered b a"}));
        let plain = model::parse_invocation(br#"{"inputs":"a b"}"#).unwrap();
        let (v, _) = hf.generate(Route::Generate, &plain, Some("MARK"));
        assert_eq!(v, json!({"generated_text": "b a"}));
    }

    #[test]
    fn injected_statuses() {
        assert_eq!(injected(InjectedError::ThrottlingException).status(), 429);
        assert_eq!(injected(InjectedError::Status(200)).status(), 500);
        assert_eq!(injected(InjectedError::Status(1000)).status(), 500);
        assert_eq!(injected(InjectedError::Status(418)).status(), 418);
        assert_eq!(
            injected(InjectedError::InternalDependencyException).status(),
            502
        );
    }
}
