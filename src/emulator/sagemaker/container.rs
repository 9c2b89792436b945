//! The model containers behind an emulated endpoint: what each
//! [`ModelFormat`] answers on `/invocations` (a whole body) and on the
//! stream route (the payload bytes SageMaker frames into PayloadParts), and
//! how each refuses bad input (its status and its own error body, which
//! SageMaker wraps in a 424 ModelError).
//!
//! | format | answers | streams | refuses with |
//! | --- | --- | --- | --- |
//! | TGI | generate `[{"generated_text"}]`, chat, completions | SSE (`data:`…, `[DONE]` for chat and completions) | 400, the HF toolkit's JSON |
//! | LMI | generate `{"generated_text"}`, chat (`chatcmpl-` id) | JSON lines; a mid-stream error is a last line | 424 `{"error", "code": 424}` |
//! | TEI | embeddings `[[f32]]` | no | 413 `{"error", "error_type": "Validation"}` (TEI answers its validation errors 413) |
//! | JumpStart text2text | `{"generated_texts"}` / `{"generated_text"}` | no | 400, the HF toolkit's JSON |

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Value};

use super::errors::toolkit_error;
use super::{header_str, ModelFormat};
use crate::emulator::faults::FaultConfig;
use crate::emulator::model::{self, lmi, Generation, TgiRequest};

/// The answer of the container, before SageMaker's headers are added.
#[derive(Debug)]
pub(super) struct Output {
    pub content_type: &'static str,
    pub body: Bytes,
    /// Tokens generated: the answer takes `token_latency` for each.
    pub tokens: usize,
}

/// Why the container refused a request: its status and its error body.
#[derive(Debug)]
pub(super) struct ContainerError {
    pub status: u16,
    pub body: String,
}

impl ContainerError {
    /// The HF inference toolkit's 400 (TGI and JumpStart formats).
    fn toolkit(message: String) -> Self {
        ContainerError {
            status: 400,
            body: toolkit_error(400, &message),
        }
    }

    /// LMI's 424 `{"error", "code"}`.
    fn lmi(message: String) -> Self {
        ContainerError {
            status: lmi::ERROR_STATUS,
            body: lmi::error_body(&message),
        }
    }

    /// TEI's validation error.
    fn tei(message: String) -> Self {
        ContainerError {
            status: model::TEI_VALIDATION_STATUS,
            body: model::tei_error(&message, "Validation").to_string(),
        }
    }
}

/// Why the stream route was refused.
pub(super) enum StreamRefusal {
    /// The container does not stream (SageMaker's ValidationError).
    NotSupported,
    Container(ContainerError),
}

/// What the stream route sends: the payload bytes (one element per token
/// event), their content type, and after how many events the injected
/// exception frame replaces the rest (`None`: no exception frame).
pub(super) struct StreamPayload {
    pub events: Vec<Bytes>,
    pub content_type: &'static str,
    pub error_after: Option<usize>,
}

fn json_output(v: &Value, tokens: usize) -> Output {
    Output {
        content_type: "application/json",
        body: Bytes::from(v.to_string()),
        tokens,
    }
}

fn media_type(headers: &HeaderMap) -> String {
    header_str(headers, "content-type")
        .and_then(|ct| ct.split(';').next().map(|s| s.trim().to_ascii_lowercase()))
        .unwrap_or_default()
}

/// The container's answer to `/invocations`.
pub(super) fn invoke(
    format: ModelFormat,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Output, ContainerError> {
    match format {
        ModelFormat::Tgi => model::parse_invocation(body)
            .map(|req| tgi_output(&req))
            .map_err(ContainerError::toolkit),
        ModelFormat::Lmi => lmi::parse(body)
            .map(|req| lmi_output(&req))
            .map_err(ContainerError::lmi),
        ModelFormat::Tei => tei_output(body),
        ModelFormat::JumpStartText2Text => jumpstart_output(headers, body),
    }
}

/// The container's answer on the stream route.
pub(super) fn stream(
    format: ModelFormat,
    body: &[u8],
    faults: &FaultConfig,
) -> Result<StreamPayload, StreamRefusal> {
    match format {
        ModelFormat::Tgi => model::parse_invocation(body)
            .map(|req| tgi_stream(&req, faults))
            .map_err(|m| StreamRefusal::Container(ContainerError::toolkit(m))),
        ModelFormat::Lmi => lmi::parse(body)
            .map(|req| lmi_stream(&req, faults))
            .map_err(|m| StreamRefusal::Container(ContainerError::lmi(m))),
        ModelFormat::Tei | ModelFormat::JumpStartText2Text => Err(StreamRefusal::NotSupported),
    }
}

/// What TGI's `/invocations` answers.
fn tgi_output(req: &TgiRequest) -> Output {
    let id = model::DEFAULT_MODEL_ID;
    match req {
        TgiRequest::Generate(g) if !g.stream => {
            let gen = Generation::run(&g.inputs, g.max_new_tokens);
            json_output(
                &json!([model::generate_response(&gen, g.details)]),
                gen.tokens.len(),
            )
        }
        TgiRequest::Chat(c) if !c.stream => {
            let gen = Generation::run(&c.prompt, c.max_tokens);
            json_output(&model::chat_completion(&gen, id), gen.tokens.len())
        }
        TgiRequest::Completion(c) if !c.stream => {
            let gen = Generation::run(&c.prompt, c.max_tokens);
            json_output(&model::completion(&gen, id), gen.tokens.len())
        }
        // A streaming body on the buffered route: SageMaker hands back the
        // container's whole SSE text.
        streamed => {
            let (body, tokens) = model::sse_text(streamed, id);
            Output {
                content_type: "text/event-stream",
                body,
                tokens,
            }
        }
    }
}

fn tgi_stream(req: &TgiRequest, faults: &FaultConfig) -> StreamPayload {
    if !req.stream() {
        // Without "stream": true the answer is the JSON, in one part.
        let out = tgi_output(req);
        return StreamPayload {
            events: vec![out.body],
            content_type: out.content_type,
            error_after: None,
        };
    }
    let (events, done) = model::stream_events(req, &req.generation(None), model::DEFAULT_MODEL_ID);
    let tokens = events.len();
    let mut events: Vec<Bytes> = events.iter().map(|e| model::sse(e)).collect();
    if done {
        events.push(model::sse("[DONE]"));
    }
    StreamPayload {
        events,
        content_type: "text/event-stream",
        error_after: faults.stream_error_after.filter(|n| *n < tokens),
    }
}

/// What LMI's `/invocations` answers: JSON, or the whole JSON lines of a
/// streaming body.
fn lmi_output(req: &lmi::LmiRequest) -> Output {
    if req.stream() {
        let lines = lmi::stream_lines(req, None);
        let tokens = lines.len();
        let body: Vec<u8> = lines.iter().flat_map(|l| lmi::json_line(l)).collect();
        return Output {
            content_type: lmi::JSON_LINES,
            body: Bytes::from(body),
            tokens,
        };
    }
    let (value, gen) = lmi::answer(req);
    json_output(&value, gen.tokens.len())
}

/// LMI streams JSON lines; an injected mid-stream error is the container's
/// error line, not an exception frame.
fn lmi_stream(req: &lmi::LmiRequest, faults: &FaultConfig) -> StreamPayload {
    if !req.stream() {
        let out = lmi_output(req);
        return StreamPayload {
            events: vec![out.body],
            content_type: out.content_type,
            error_after: None,
        };
    }
    let lines = lmi::stream_lines(req, faults.stream_error_after);
    StreamPayload {
        events: lines.iter().map(|l| lmi::json_line(l)).collect(),
        content_type: lmi::JSON_LINES,
        error_after: None,
    }
}

/// TEI's `/invocations`: one vector per input; no token pacing.
fn tei_output(body: &[u8]) -> Result<Output, ContainerError> {
    let req = model::parse_embed(body).map_err(ContainerError::tei)?;
    let embeddings = model::Embeddings::run(&req);
    Ok(Output {
        content_type: "application/json",
        body: Bytes::from(model::embed_response(&embeddings)),
        tokens: 0,
    })
}

/// JumpStart text2text: raw text or `{"text_inputs", …}`.
fn jumpstart_output(headers: &HeaderMap, body: &[u8]) -> Result<Output, ContainerError> {
    let bad = ContainerError::toolkit;
    match media_type(headers).as_str() {
        "application/x-text" | "text/plain" => {
            let text =
                std::str::from_utf8(body).map_err(|e| bad(format!("input is not UTF-8: {e}")))?;
            let gen = Generation::run(text, None);
            let out = json!({ "generated_text": gen.text() });
            Ok(json_output(&out, gen.tokens.len()))
        }
        "application/json" | "" => {
            let (text, max_length, n) = model::parse_jumpstart(body).map_err(bad)?;
            let gen = Generation::run(&text, max_length);
            let out = json!({ "generated_texts": vec![gen.text(); n] });
            Ok(json_output(&out, gen.tokens.len()))
        }
        other => Err(bad(format!(
            "Content type {other} is not supported; use application/json or application/x-text."
        ))),
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn stream_of(format: ModelFormat, body: &str, faults: &FaultConfig) -> StreamPayload {
        match stream(format, body.as_bytes(), faults) {
            Ok(p) => p,
            Err(_) => panic!("refused: {body}"),
        }
    }

    #[test]
    fn tgi_completions_whole_and_buffered_stream() {
        let h = HeaderMap::new();
        let out = invoke(
            ModelFormat::Tgi,
            &h,
            br#"{"prompt":["a b c"],"max_tokens":2}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "c b");
        assert_eq!(out.tokens, 2);
        let out = invoke(ModelFormat::Tgi, &h, br#"{"prompt":"a b","stream":true}"#).unwrap();
        assert_eq!(out.content_type, "text/event-stream");
        assert!(out.body.ends_with(b"data:[DONE]\n\n"));
    }

    #[test]
    fn tgi_streams_keep_the_exception_fault_and_lmi_does_not() {
        let faults = FaultConfig {
            stream_error_after: Some(1),
            ..FaultConfig::default()
        };
        let p = stream_of(
            ModelFormat::Tgi,
            r#"{"inputs":"a b c","stream":true}"#,
            &faults,
        );
        assert_eq!((p.events.len(), p.error_after), (3, Some(1)));
        let p = stream_of(
            ModelFormat::Lmi,
            r#"{"inputs":"a b c","stream":true}"#,
            &faults,
        );
        assert_eq!(p.error_after, None);
        assert_eq!(p.content_type, "application/jsonlines");
        assert_eq!(p.events.len(), 2);
        assert!(p.events.iter().all(|e| e.ends_with(b"}\n")));
        let last: Value = serde_json::from_slice(&p.events[1]).unwrap();
        assert_eq!(last["details"]["finish_reason"], "error");
    }

    #[test]
    fn lmi_answers_objects_and_refuses_with_424() {
        let h = HeaderMap::new();
        let out = invoke(ModelFormat::Lmi, &h, br#"{"inputs":"a b"}"#).unwrap();
        assert_eq!(&out.body[..], br#"{"generated_text":"b a"}"#);
        let out = invoke(ModelFormat::Lmi, &h, br#"{"inputs":"a b","stream":true}"#).unwrap();
        assert_eq!(out.content_type, "application/jsonlines");
        assert_eq!(out.body.iter().filter(|b| **b == b'\n').count(), 2);
        let Err(e) = invoke(ModelFormat::Lmi, &h, br#"{"prompt":"a"}"#) else {
            panic!("LMI took a prompt")
        };
        assert_eq!(e.status, 424);
        let body: Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(body["code"], 424);
        assert!(body["error"].is_string());
    }

    #[test]
    fn tei_embeds_and_does_not_stream() {
        let h = HeaderMap::new();
        let out = invoke(ModelFormat::Tei, &h, br#"{"inputs":"a b"}"#).unwrap();
        assert_eq!(out.tokens, 0);
        let v: Vec<Vec<f32>> = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v, vec![model::embed("a b", true)]);
        let Err(e) = invoke(ModelFormat::Tei, &h, br#"{"inputs":[]}"#) else {
            panic!("TEI took no input")
        };
        assert_eq!(e.status, 413);
        let body: Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(body["error_type"], "Validation");
        assert!(matches!(
            stream(
                ModelFormat::Tei,
                br#"{"inputs":"a"}"#,
                &FaultConfig::default()
            ),
            Err(StreamRefusal::NotSupported)
        ));
    }
}
