//! Payload adapters: one [`Operation`] of the core, in the shapes of the
//! [`Container`] a backend runs, both ways.
//!
//! What a door hands the core, and gets back, for each operation:
//!
//! | operation | request body | answer | stream events |
//! | --- | --- | --- | --- |
//! | predict | the client's, as sent | the container's, as sent | the container's |
//! | generate | TGI's `{"inputs", "parameters"}` | `{"generated_text", "details"?}` | TGI's token events |
//! | chat | OpenAI's chat request | `chat.completion` | `chat.completion.chunk`s |
//! | completion | OpenAI's completions request | `text_completion` | `text_completion` chunks |
//! | embed | `{"inputs": text \| [text]}` | `[[number]]`, a vector per input | none |
//!
//! A [`Plan`] says, for one attempt, which route of an HF endpoint the
//! request takes (SageMaker has one, `/invocations`), the body to send, how
//! a whole answer is reshaped ([`Reshape`]) and how stream events are
//! ([`EventMap`]). TGI answers most of it natively; LMI streams JSON lines
//! with its own token shape and has no completions; the toolkit and
//! JumpStart answer generate (and completions through it) whole.

mod completion;
mod jumpstart;
mod lmi;

use bytes::Bytes;
use serde_json::{Map, Value};

use completion::Dialect;
pub use jumpstart::{jumpstart_request, jumpstart_response};
pub(crate) use lmi::{EventMap, Mapped};

use crate::config::{Container, Operation};
pub(crate) use crate::protocol::tgi::TgiRoute as HfRoute;

/// Why a request could not be adapted: the client's fault, a 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdaptError {
    #[error("the request body must be JSON for this route's backend \"{backend}\" (container {container}): {detail}")]
    NotJson {
        backend: String,
        container: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Shape(String),
}

pub(super) fn not_json(backend: &str, container: Container, e: &serde_json::Error) -> AdaptError {
    AdaptError::NotJson {
        backend: backend.to_string(),
        container: container.as_str(),
        detail: e.to_string(),
    }
}

/// How a whole answer is turned into the operation's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reshape {
    /// As it came.
    Pass,
    /// `[{"generated_text"}]` (TGI on `/invocations`, the toolkit) or an
    /// object (LMI) → the object.
    FirstOfList,
    /// JumpStart's `{"generated_texts"}` → `[{"generated_text"}]`.
    JumpStartList,
    /// JumpStart's → `{"generated_text"}`.
    JumpStartOne,
    /// A generate answer (reshaped by the inner step) → `text_completion`.
    Completion(Inner),
}

/// The step before a generate answer becomes a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inner {
    FirstOfList,
    JumpStartOne,
}

impl Reshape {
    /// The reshaped body; `None` when the answer is not what the container
    /// promises.
    pub fn apply(self, raw: &[u8]) -> Option<Bytes> {
        match self {
            Reshape::Pass => Some(Bytes::copy_from_slice(raw)),
            Reshape::FirstOfList => first_of_list(raw),
            Reshape::JumpStartList => jumpstart_response(raw),
            Reshape::JumpStartOne => first_of_list(&jumpstart_response(raw)?),
            Reshape::Completion(inner) => {
                let generated = match inner {
                    Inner::FirstOfList => first_of_list(raw)?,
                    Inner::JumpStartOne => Reshape::JumpStartOne.apply(raw)?,
                };
                completion::of_generate(&generated)
            }
        }
    }
}

fn first_of_list(raw: &[u8]) -> Option<Bytes> {
    match serde_json::from_slice::<Value>(raw).ok()? {
        Value::Array(mut items) if !items.is_empty() => {
            let first = items.swap_remove(0);
            first.is_object().then(|| to_bytes(&first))
        }
        one @ Value::Object(_) => Some(to_bytes(&one)),
        _ => None,
    }
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

/// One attempt's request in the container's shapes, and how its answer
/// comes back.
#[derive(Debug)]
pub(crate) struct Plan {
    pub route: HfRoute,
    pub body: Bytes,
    /// The body is JSON the gateway wrote: sent as `application/json`
    /// (rather than with the client's `Content-Type` and `Accept`).
    pub json: bool,
    pub reshape: Reshape,
    pub events: Option<EventMap>,
}

impl Plan {
    fn new(route: HfRoute, body: Bytes, json: bool) -> Self {
        Self {
            route,
            body,
            json,
            reshape: Reshape::Pass,
            events: None,
        }
    }

    fn reshape(mut self, reshape: Reshape) -> Self {
        self.reshape = reshape;
        self
    }

    fn events(mut self, events: EventMap) -> Self {
        self.events = Some(events);
        self
    }
}

/// Where a backend runs its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    SageMaker,
    HuggingFace,
}

/// The plan for `op` (a stream when `stream`) on `container`, hosted on
/// `host`. The caller has checked that the container serves it.
pub(crate) fn plan(
    container: Container,
    host: Host,
    op: Operation,
    stream: bool,
    body: &Bytes,
    backend: &str,
) -> Result<Plan, AdaptError> {
    use Container::{HfToolkit, JumpStartText2Text as JumpStart, Lmi, Tei, Tgi};
    let on_hf = host == Host::HuggingFace;
    let object = || object(body, backend, container);
    Ok(match (op, container) {
        (Operation::Predict, JumpStart) => {
            let adapted = jumpstart_request(body, backend)?;
            Plan::new(HfRoute::Root, adapted, true).reshape(Reshape::JumpStartList)
        }
        (Operation::Predict, _) if stream && on_hf => {
            Plan::new(HfRoute::GenerateStream, body.clone(), false)
        }
        (Operation::Predict, Lmi) if stream => {
            Plan::new(HfRoute::Root, stream_flag(object()?), true).events(EventMap::Errors)
        }
        (Operation::Predict, _) if stream => Plan::new(HfRoute::Root, stream_flag(object()?), true),
        (Operation::Predict, _) => Plan::new(HfRoute::Root, body.clone(), false),

        (Operation::Generate, Tgi) if on_hf => {
            let route = if stream {
                HfRoute::GenerateStream
            } else {
                HfRoute::Generate
            };
            Plan::new(route, streamed(object()?, false, false), true)
        }
        (Operation::Generate, Tgi) => {
            Plan::new(HfRoute::Root, streamed(object()?, stream, false), true)
                .reshape(Reshape::FirstOfList)
        }
        (Operation::Generate, Lmi) => {
            let plan = Plan::new(HfRoute::Root, streamed(object()?, stream, false), true)
                .reshape(Reshape::FirstOfList);
            plan.events(EventMap::Generate { index: 0 })
        }
        (Operation::Generate, HfToolkit) => {
            let body = without_prompt(pipeline_params(object()?));
            Plan::new(HfRoute::Root, body, true).reshape(Reshape::FirstOfList)
        }
        (Operation::Generate, JumpStart) => {
            let body = to_bytes(&Value::Object(pipeline_params(object()?)));
            Plan::new(HfRoute::Root, jumpstart_request(&body, backend)?, true)
                .reshape(Reshape::JumpStartOne)
        }

        (Operation::Chat, Lmi) => {
            Plan::new(HfRoute::Root, streamed(object()?, stream, true), true).events(EventMap::Chat)
        }
        (Operation::Chat, Tgi) => {
            let route = if on_hf { HfRoute::Chat } else { HfRoute::Root };
            Plan::new(route, streamed(with_model(object()?), stream, true), true)
        }

        (Operation::Completion, Tgi) => {
            let route = if on_hf {
                HfRoute::Completions
            } else {
                HfRoute::Root
            };
            Plan::new(route, streamed(with_model(object()?), stream, true), true)
        }
        (Operation::Completion, Lmi) => {
            let generate = completion::to_generate(object()?, Dialect::Lmi)?;
            Plan::new(HfRoute::Root, streamed(generate, stream, false), true)
                .reshape(Reshape::Completion(Inner::FirstOfList))
                .events(EventMap::Completion)
        }
        (Operation::Completion, HfToolkit) => {
            let generate = completion::to_generate(object()?, Dialect::Toolkit)?;
            Plan::new(HfRoute::Root, to_bytes(&Value::Object(generate)), true)
                .reshape(Reshape::Completion(Inner::FirstOfList))
        }
        (Operation::Completion, JumpStart) => {
            let generate = completion::to_generate(object()?, Dialect::JumpStart)?;
            let adapted = jumpstart_request(&to_bytes(&Value::Object(generate)), backend)?;
            Plan::new(HfRoute::Root, adapted, true)
                .reshape(Reshape::Completion(Inner::JumpStartOne))
        }

        (Operation::Embed, Tei) => {
            let route = if on_hf { HfRoute::Embed } else { HfRoute::Root };
            Plan::new(route, body.clone(), true)
        }
        (Operation::Generate | Operation::Chat | Operation::Completion, Tei)
        | (Operation::Chat, HfToolkit | JumpStart)
        | (Operation::Embed, Tgi | Lmi | HfToolkit | JumpStart) => {
            return Err(AdaptError::Shape(format!(
                "backend \"{backend}\" (container {}) does not serve {}",
                container.as_str(),
                op.describe()
            )))
        }
    })
}

/// The body as a JSON object.
fn object(
    body: &[u8],
    backend: &str,
    container: Container,
) -> Result<Map<String, Value>, AdaptError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AdaptError::Shape(
            "the request body must be a JSON object".into(),
        )),
        Err(e) => Err(not_json(backend, container, &e)),
    }
}

/// The body with `"stream"` set as asked (and left out otherwise); with
/// `usage`, a stream also asks for its token counts on its last event
/// (`stream_options.include_usage`, OpenAI's and TGI's).
fn streamed(mut body: Map<String, Value>, stream: bool, usage: bool) -> Bytes {
    body.remove("stream_options");
    if stream {
        body.insert("stream".into(), Value::Bool(true));
        if usage {
            let options = serde_json::json!({ "include_usage": true });
            body.insert("stream_options".into(), options);
        }
    } else {
        body.remove("stream");
    }
    to_bytes(&Value::Object(body))
}

/// The body with `"stream": true` and the rest as the client sent it (a
/// predict stream: the client's own `stream_options` included).
fn stream_flag(mut body: Map<String, Value>) -> Bytes {
    body.insert("stream".into(), Value::Bool(true));
    to_bytes(&Value::Object(body))
}

/// A chat or completions request with a `model`, which TGI 2.0 requires
/// (and ignores): the door's `model` names the route, not the container's.
fn with_model(mut body: Map<String, Value>) -> Map<String, Value> {
    body.entry("model").or_insert_with(|| Value::from("tgi"));
    body
}

/// TGI's generate parameters that a pipeline does not know and refuses
/// (transformers: "model_kwargs are not used"), which TGI's clients send.
const TGI_ONLY_PARAMETERS: [&str; 8] = [
    "details",
    "decoder_input_details",
    "watermark",
    "top_n_tokens",
    "grammar",
    "adapter_id",
    "best_of",
    "truncate",
];

/// A generate request without [`TGI_ONLY_PARAMETERS`] (and the nulls
/// TGI's clients send for what they leave unset), for the toolkit's and
/// JumpStart's pipelines.
fn pipeline_params(mut body: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Object(params)) = body.get_mut("parameters") {
        params.retain(|k, v| !v.is_null() && !TGI_ONLY_PARAMETERS.contains(&k.as_str()));
    }
    body
}

/// A generate request for the toolkit, which otherwise answers the prompt
/// followed by the generated text (TGI answers the generated text only).
fn without_prompt(mut body: Map<String, Value>) -> Bytes {
    body.remove("stream");
    let params = body
        .entry("parameters")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(params) = params {
        params
            .entry("return_full_text")
            .or_insert(Value::Bool(false));
    }
    to_bytes(&Value::Object(body))
}

#[cfg(test)]
mod tests;
