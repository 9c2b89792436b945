//! The OpenAI-compatible door: `POST /v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `GET /v1/models[/{model}]`, so the
//! `openai` client (and what is built on it) calls a route by changing its
//! `base_url` to the gateway's `/v1`. `model` is the route's name.
//!
//! A request goes: who is calling (the client's key as `Authorization:
//! Bearer`; 401 before anything else) → the body (within the server's
//! deadline: the route is named in it) → the route (404 `model_not_found`)
//! → the client's routes (403) and limits (429) → the core, as the
//! operation ([`request`]). Whatever container served it, the answer comes
//! back in one shape ([`answer`]): a stream as OpenAI's server-sent events
//! ([`events`]), every error as OpenAI's ([`errors`]).

pub(super) mod answer;
mod errors;
pub(super) mod events;
pub(super) mod request;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::time::Instant;
use tower::Service;

use crate::backend::{UpstreamBody, UpstreamResponse};
use crate::body::{BoxError, ResBody};
use crate::clients::{Client, Identity};
use crate::config::{Door, DoorKind, Operation};
use crate::core::{CoreRequest, CoreResponse};
use crate::error::json_reply;
use crate::gateway::Gateway;
use crate::layers::{Access, Answer};
use crate::limits::Charge;
use crate::route::Route;

use self::answer::{Encoding, Kind, Stamp};
use self::errors::{of_api_error, OaiError};
use super::predict::{
    admit, answered, begin, call_core, core_request, gateway_headers, log_failure, read_within,
    record, recorded, success,
};
use super::stream::Wire;

/// The door's paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `POST` of an operation.
    Op(Operation),
    /// `GET /v1/models`.
    Models,
    /// `GET /v1/models/{model}`.
    Model(String),
}

/// The call a path names; `None` for any other path.
pub fn parse_path(path: &str) -> Option<Call> {
    Some(match path {
        "/v1/chat/completions" => Call::Op(Operation::Chat),
        "/v1/completions" => Call::Op(Operation::Completion),
        "/v1/embeddings" => Call::Op(Operation::Embed),
        "/v1/models" => Call::Models,
        other => {
            let model = other.strip_prefix("/v1/models/")?;
            let model = percent_encoding::percent_decode_str(model)
                .decode_utf8()
                .ok()?;
            Call::Model(model.into_owned())
        }
    })
}

/// Serves one request of the OpenAI door.
pub async fn serve<B, C>(gw: &Arc<Gateway>, core: C, call: Call, req: Request<B>) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    C: Service<CoreRequest, Response = CoreResponse, Error = Infallible>,
{
    let caller = match gw.callers.identify(req.headers()) {
        Identity::Anonymous => None,
        Identity::Client(client) => Some(client),
        // In the access log, as on the other doors: a refused caller is
        // worth seeing there.
        Identity::Unknown => {
            let err = of_api_error(&crate::error::ApiError::Unauthenticated, "");
            let op = match call {
                Call::Op(op) => op,
                // `/v1/models`' own path.
                Call::Models | Call::Model(_) => Operation::Predict,
            };
            let (_, _, access) = begin(gw, &req, Door::OpenAi(op));
            return recorded(err.response(), access);
        }
    };
    let allowed = match &call {
        Call::Op(_) => "POST",
        Call::Models | Call::Model(_) => "GET",
    };
    if req.method().as_str() != allowed && !(allowed == "GET" && req.method() == Method::HEAD) {
        return Answer::unrecorded(method_not_allowed(req.method(), allowed));
    }
    match call {
        Call::Op(op) => operation(gw, core, op, req, caller).await,
        Call::Models | Call::Model(_) => {
            // In the access log: a client's listing is its traffic too.
            let (_, _, mut access) = begin(gw, &req, Door::OpenAi(Operation::Predict));
            access.client = caller.clone();
            let response = match &call {
                Call::Model(name) => model(gw, caller.as_deref(), name),
                _ => models(gw, caller.as_deref()),
            };
            recorded(response, access)
        }
    }
}

fn method_not_allowed(method: &Method, allowed: &'static str) -> Response<ResBody> {
    let err = OaiError {
        status: http::StatusCode::METHOD_NOT_ALLOWED,
        ..OaiError::invalid(None, format!("method {method} not allowed; use {allowed}"))
    };
    let mut res = err.response();
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    res
}

/// Whether the route serves anything of this door.
fn serves_openai(route: &Route) -> bool {
    route.on_door(DoorKind::OpenAi)
        && [Operation::Chat, Operation::Completion, Operation::Embed]
            .into_iter()
            .any(|op| route.pool.iter().any(|m| m.backend.serves(op, false)))
}

fn model_json(route: &Route) -> Value {
    json!({"id": route.name, "object": "model", "created": 0, "owned_by": "infergate"})
}

/// The routes the caller may use that serve this door.
fn models(gw: &Gateway, caller: Option<&Client>) -> Response<ResBody> {
    let data: Vec<Value> = gw
        .routes
        .iter()
        .filter(|r| caller.is_none_or(|c| c.may_use(&r.name)) && serves_openai(r))
        .map(|r| model_json(r))
        .collect();
    json_response(&json!({"object": "list", "data": data}))
}

fn model(gw: &Gateway, caller: Option<&Client>, name: &str) -> Response<ResBody> {
    match gw.routes.get(name) {
        Some(r) if caller.is_none_or(|c| c.may_use(&r.name)) && serves_openai(r) => {
            json_response(&model_json(r))
        }
        _ => OaiError::unknown_model(name).response(),
    }
}

pub(super) fn json_response(v: &Value) -> Response<ResBody> {
    json_reply(http::StatusCode::OK, v.to_string(), http::HeaderMap::new())
}

/// A chat, completion or embeddings request.
async fn operation<B, C>(
    gw: &Arc<Gateway>,
    core: C,
    op: Operation,
    req: Request<B>,
    caller: Option<Arc<Client>>,
) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    C: Service<CoreRequest, Response = CoreResponse, Error = Infallible>,
{
    let (started, trace, mut access) = begin(gw, &req, Door::OpenAi(op));
    access.client = caller.clone();
    let (parts, body) = req.into_parts();
    let deadline = started + gw.config.server.request_timeout;
    let raw = match read_within(gw, body, deadline, &mut access).await {
        Ok(raw) => raw,
        Err(e) => return refused(of_api_error(&e, ""), access),
    };
    let asked = match request::read(op, &raw, None) {
        Ok(asked) => asked,
        Err(e) => return refused(e, access),
    };
    access.stream = asked.stream;
    let found = gw
        .routes
        .get(&asked.model)
        .filter(|r| r.on_door(DoorKind::OpenAi));
    let Some(route) = found.cloned() else {
        return refused(OaiError::unknown_model(&asked.model), access);
    };
    access.route = Some(Arc::clone(&route));
    if let Some(client) = &caller {
        if !client.may_use(&route.name) {
            let err = crate::error::ApiError::Forbidden(route.name.clone());
            return refused(of_api_error(&err, &asked.model), access);
        }
    }
    let (rate, charge) = match admit(gw, &route, &mut access).await {
        Ok(admitted) => admitted,
        Err(e) => return refused(of_api_error(&e, &asked.model), access),
    };
    let body = asked.body.clone();
    let mut request = match core_request(&route, &parts, body, trace, started, &access) {
        Ok(request) => request,
        Err(e) => return refused(of_api_error(&e, &asked.model), access),
    };
    request.op = op;
    request.content_type = Some(HeaderValue::from_static("application/json"));
    request.accept = Some(HeaderValue::from_static("application/json"));
    let answer = call_core(core, request).await;
    let response = render(gw, &route, op, &asked, answer, started, &mut access, charge).await;
    answered(response, rate, access)
}

/// A request answered with `err` before the core, recorded in `access`.
fn refused(err: OaiError, access: Access) -> Answer {
    recorded(err.response(), access)
}

/// The core's answer in OpenAI's shapes.
#[allow(clippy::too_many_arguments)]
async fn render(
    gw: &Gateway,
    route: &Route,
    op: Operation,
    asked: &request::Asked,
    answer: CoreResponse,
    started: Instant,
    access: &mut Access,
    charge: Option<Charge>,
) -> Response<ResBody> {
    let (result, timing) = record(answer, access);
    let kind = match op {
        Operation::Completion => Kind::Completion,
        _ => Kind::Chat,
    };
    let mut response = match result {
        Ok(up) if matches!(up.body, UpstreamBody::Events { .. }) => {
            let events =
                events::OpenAiEvents::new(Stamp::new(kind, &route.name), asked.include_usage);
            let wire = Wire::Door(Box::new(events));
            success(gw, route, up, wire, started, access, charge)
        }
        Ok(up) => match whole(up, op, kind, &route.name, asked.encoding).await {
            Ok(up) => success(gw, route, up, Wire::Sse, started, access, charge),
            Err(e) => e.response(),
        },
        Err(err) => {
            let backend = access.backend.as_ref().map(|b| b.name.as_str());
            log_failure(&err, &route.name, backend, &access.request_id);
            let container = access.backend.as_ref().map(|b| b.container);
            errors::of_failure(&err, &route.name, container).response()
        }
    };
    gateway_headers(response.headers_mut(), access, timing, started);
    response
}

/// The most of an answer read to be put in OpenAI's shape.
const MAX_ANSWER_BYTES: usize = 6 * 1024 * 1024;

/// A whole answer, read and put in OpenAI's shape.
async fn whole(
    up: UpstreamResponse,
    op: Operation,
    kind: Kind,
    model: &str,
    encoding: Encoding,
) -> Result<UpstreamResponse, OaiError> {
    let UpstreamResponse {
        status,
        headers,
        body,
    } = up;
    let raw = read_answer(body).await.map_err(|e| bad_answer(&e))?;
    let shaped = match op {
        Operation::Embed => {
            // TEI counts an embedding's tokens in `x-compute-tokens`.
            let tokens = headers
                .get("x-compute-tokens")
                .and_then(|v| v.to_str().ok()?.trim().parse().ok());
            answer::embeddings(&raw, model, encoding, tokens)
        }
        _ => answer::completion(&raw, &Stamp::new(kind, model)),
    }
    .ok_or_else(|| bad_answer("the backend's answer is not what its container answers"))?;
    Ok(reshaped(status, headers, shaped))
}

/// An answer with its body rewritten by the door: JSON, of a new length.
pub(super) fn reshaped(
    status: http::StatusCode,
    mut headers: http::HeaderMap,
    body: Bytes,
) -> UpstreamResponse {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    UpstreamResponse {
        status,
        headers,
        body: UpstreamBody::Full(body),
    }
}

/// A whole answer's bytes (at most [`MAX_ANSWER_BYTES`]), for a door that
/// reshapes it.
pub(super) async fn read_answer(body: UpstreamBody) -> Result<Bytes, String> {
    match body {
        UpstreamBody::Full(bytes) => Ok(bytes),
        UpstreamBody::Stream(body) => read_capped(body, MAX_ANSWER_BYTES).await,
        UpstreamBody::Events { .. } => Err("a stream where none was asked".into()),
    }
}

fn bad_answer(detail: &str) -> OaiError {
    OaiError {
        status: http::StatusCode::BAD_GATEWAY,
        kind: "server_error",
        code: Some("upstream_protocol_error"),
        ..OaiError::invalid(
            None,
            format!("the backend's answer could not be read: {detail}"),
        )
    }
}

/// A body's bytes, at most `limit` of them (`http_body_util::Limited`'s
/// rule and message, without its error conversion, which a boxed body's
/// error cannot go through inside an async function).
async fn read_capped(mut body: crate::body::ResBody, limit: usize) -> Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > limit {
                return Err("length limit exceeded".to_owned());
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_calls() {
        assert_eq!(
            parse_path("/v1/chat/completions"),
            Some(Call::Op(Operation::Chat))
        );
        assert_eq!(
            parse_path("/v1/embeddings"),
            Some(Call::Op(Operation::Embed))
        );
        assert_eq!(parse_path("/v1/models"), Some(Call::Models));
        assert_eq!(
            parse_path("/v1/models/a%20b"),
            Some(Call::Model("a b".into()))
        );
        assert_eq!(parse_path("/v1/predict/x"), None);
        assert_eq!(parse_path("/v1/routes"), None);
    }
}
