//! TEI mode of the Hugging Face emulator: text-embeddings-inference behind the
//! endpoint's proxy (the proxy's token check and scale-to-zero have run).
//!
//! Routes: `POST /embed` and `POST /` (`{"inputs", "normalize", "truncate"}`
//! → `[[f32]]`), `POST /v1/embeddings` (OpenAI's list; `encoding_format`
//! `float` or `base64`), `GET /health` (200, empty), `GET /info` (TEI's);
//! another method on these paths is 405, another path 404. Faults apply to
//! the embedding routes only, as in TGI mode, with the same statuses; every
//! error is TEI's `{"error", "error_type"}`. Answers carry TEI's
//! `x-compute-*` and timing headers (milliseconds).

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{injected_status, ms, COMPUTE_TYPE, MAX_BODY_BYTES};
use crate::emulator::faults::InjectedError;
use crate::emulator::model::{self, Embeddings};
use crate::emulator::serve::{
    self, apply_faults, json_response, set_header, Answer, BodyError, EmuBody, EmuRequest,
};
use crate::emulator::Shared;

const INJECTED: &str = "injected by the infergate emulator";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Embed,
    OpenAi,
}

/// Serves one request in TEI mode.
pub(super) async fn handle(
    model_id: &str,
    req: EmuRequest,
    shared: &Arc<Shared>,
    started: Instant,
) -> Answer {
    let EmuRequest { parts, body } = req;
    let route = match route(&parts.method, parts.uri.path(), model_id) {
        ControlFlow::Continue(route) => route,
        ControlFlow::Break(answered) => return Ok(answered),
    };
    if let Some(e) = apply_faults(shared).await? {
        return Ok(serve::with_retry_after(injected(e), &shared.faults));
    }
    let body = match read_body(body) {
        ControlFlow::Continue(body) => body,
        ControlFlow::Break(refused) => return Ok(refused),
    };
    let inference_started = Instant::now();
    let answered = match route {
        Route::Embed => model::parse_embed(&body).map(|req| {
            let e = Embeddings::run(&req);
            (model::embed_response(&e), e)
        }),
        Route::OpenAi => model::parse_openai_embed(&body).map(|req| {
            let e = Embeddings::run(&req.embed);
            (
                model::openai_embeddings(&e, model_id, req.encoding_format),
                e,
            )
        }),
    };
    Ok(match answered {
        Ok((json, e)) => success(json, &e, started, inference_started),
        Err(message) => validation(&message),
    })
}

/// TEI's router: the embedding route asked for, or the whole answer.
fn route(method: &Method, path: &str, model_id: &str) -> ControlFlow<Response<EmuBody>, Route> {
    use ControlFlow::{Break, Continue};
    match (method, path) {
        (&Method::GET, "/health") => Break(serve::empty_response(StatusCode::OK)),
        (&Method::GET, "/info") => Break(json_response(StatusCode::OK, &info(model_id))),
        (&Method::POST, "/embed" | "/") => Continue(Route::Embed),
        (&Method::POST, "/v1/embeddings") => Continue(Route::OpenAi),
        (_, "/" | "/embed" | "/v1/embeddings" | "/health" | "/info") => {
            Break(serve::empty_response(StatusCode::METHOD_NOT_ALLOWED))
        }
        _ => Break(serve::empty_response(StatusCode::NOT_FOUND)),
    }
}

fn read_body(body: Result<Bytes, BodyError>) -> ControlFlow<Response<EmuBody>, Bytes> {
    match body {
        Ok(b) => ControlFlow::Continue(b),
        Err(BodyError::TooLarge) => ControlFlow::Break(tei_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("Payload too large: the limit is {MAX_BODY_BYTES} bytes"),
            "Validation",
        )),
        Err(BodyError::Io) => ControlFlow::Break(validation("Failed to read the request body")),
    }
}

fn tei_error(status: StatusCode, error: &str, error_type: &str) -> Response<EmuBody> {
    json_response(status, &model::tei_error(error, error_type))
}

fn validation(message: &str) -> Response<EmuBody> {
    let status = StatusCode::from_u16(model::TEI_VALIDATION_STATUS)
        .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    tei_error(status, message, "Validation")
}

/// TEI's answer for a status, as an injected fault.
fn status_error(status: u16) -> Response<EmuBody> {
    let status = match StatusCode::from_u16(status) {
        Ok(s) if s.is_client_error() || s.is_server_error() => s,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let (error, error_type) = match status.as_u16() {
        424 => (format!("Inference failed: {INJECTED}"), "Backend"),
        429 => ("Model is overloaded".to_owned(), "Overloaded"),
        503 => ("unhealthy".to_owned(), "Unhealthy"),
        s if s < 500 => (format!("Input validation error: {INJECTED}"), "Validation"),
        _ => (format!("Backend error: {INJECTED}"), "Backend"),
    };
    tei_error(status, &error, error_type)
}

fn injected(e: InjectedError) -> Response<EmuBody> {
    status_error(injected_status(e))
}

/// The embeddings with TEI's headers.
fn success(
    json: String,
    e: &Embeddings,
    started: Instant,
    inference_started: Instant,
) -> Response<EmuBody> {
    let inference = inference_started.elapsed();
    let total = started.elapsed();
    let mut resp = Response::new(EmuBody::full(json));
    set_header(&mut resp, "content-type", "application/json");
    set_header(&mut resp, "x-compute-type", COMPUTE_TYPE);
    set_header(&mut resp, "x-compute-time", &ms(total));
    set_header(&mut resp, "x-compute-characters", &e.characters.to_string());
    set_header(&mut resp, "x-compute-tokens", &e.prompt_tokens.to_string());
    set_header(&mut resp, "x-total-time", &ms(total));
    set_header(&mut resp, "x-tokenization-time", "0");
    set_header(
        &mut resp,
        "x-queue-time",
        &ms(total.saturating_sub(inference)),
    );
    set_header(&mut resp, "x-inference-time", &ms(inference));
    resp
}

/// TEI's `/info` for an embedding model.
fn info(model_id: &str) -> Value {
    json!({
        "model_id": model_id,
        "model_sha": null,
        "model_dtype": "float16",
        "model_type": {"embedding": {"pooling": "mean"}},
        "max_concurrent_requests": 512,
        "max_input_length": model::MAX_INPUT_LENGTH,
        "max_batch_tokens": 16384,
        "max_batch_requests": null,
        "max_client_batch_size": model::MAX_CLIENT_BATCH_SIZE,
        "auto_truncate": false,
        "tokenization_workers": 2,
        "version": "1.5.0",
        "sha": null,
        "docker_label": null,
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    fn routed(method: Method, path: &str) -> Result<Route, u16> {
        match route(&method, path, "m") {
            ControlFlow::Continue(r) => Ok(r),
            ControlFlow::Break(resp) => Err(resp.status().as_u16()),
        }
    }

    #[test]
    fn routes() {
        assert_eq!(routed(Method::POST, "/embed"), Ok(Route::Embed));
        assert_eq!(routed(Method::POST, "/"), Ok(Route::Embed));
        assert_eq!(routed(Method::POST, "/v1/embeddings"), Ok(Route::OpenAi));
        assert_eq!(routed(Method::GET, "/health"), Err(200));
        assert_eq!(routed(Method::GET, "/info"), Err(200));
        assert_eq!(routed(Method::GET, "/embed"), Err(405));
        assert_eq!(routed(Method::POST, "/info"), Err(405));
        assert_eq!(routed(Method::POST, "/generate"), Err(404));
        assert_eq!(routed(Method::POST, "/v1/chat/completions"), Err(404));
    }

    #[test]
    fn injected_statuses_have_tei_types() {
        for (e, status) in [
            (InjectedError::ThrottlingException, 429),
            (InjectedError::ValidationError, 422),
            (
                InjectedError::ModelError {
                    original_status: 400,
                },
                424,
            ),
            (InjectedError::ServiceUnavailable, 503),
            (InjectedError::InternalFailure, 500),
            (InjectedError::Status(200), 500),
            (InjectedError::Status(418), 418),
        ] {
            assert_eq!(injected(e).status(), status, "{e:?}");
        }
    }

    #[test]
    fn info_describes_an_embedding_model() {
        let v = info("org/embed");
        assert_eq!(v["model_id"], "org/embed");
        assert_eq!(v["model_type"]["embedding"]["pooling"], "mean");
        assert_eq!(v["max_client_batch_size"], 32);
        assert_eq!(v["max_input_length"], 512);
    }
}
