//! The TGI-compatible door: `/hf/{route}` behaves as a text-generation-
//! inference (or, for an embeddings route, a text-embeddings-inference)
//! endpoint, so huggingface_hub's `InferenceClient(base_url=…)`, the
//! text-generation clients and LangChain's `HuggingFaceEndpoint` call a
//! route as they call an HF endpoint, whichever backend serves it.
//!
//! Paths under `/hf/{route}`: `POST /` (generate, a stream when the body
//! says `"stream": true`, TGI's one-element list otherwise; embeddings on
//! an embeddings route), `/generate`, `/generate_stream`,
//! `/v1/chat/completions`, `/v1/completions`, `/embed`; `GET /info`,
//! `/health`. Who is calling (the client's key as `Authorization: Bearer`)
//! comes first, then the route and the client's routes and limits, then
//! the body. Streams are written `data: {json}` with the space, `data:
//! [DONE]` after chat and completion streams as TGI sends it, a failure as
//! TGI's error event; every error is TGI's `{"error", "error_type"}`
//! ([`errors`]).

mod errors;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response};
use serde_json::{json, Value};
use tokio::time::Instant;
use tower::Service;

use crate::backend::events::StreamError;
use crate::backend::{UpstreamBody, UpstreamResponse};
use crate::body::{BoxError, ResBody};
use crate::clients::{Client, Identity};
use crate::config::{Door, DoorKind, Operation};
use crate::core::{CoreRequest, CoreResponse};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::layers::{Access, Answer};
use crate::limits::Charge;
use crate::protocol::tgi::TgiRoute;
use crate::route::Route;

use self::errors::{of_api_error, TgiError};
use super::openai::answer::{completion, Kind, Stamp};
use super::openai::events::{push, tgi_error_event, OpenAiEvents};
use super::openai::{json_response, read_answer, request, reshaped};
use super::predict::{
    admit, answered, begin, call_core, core_request, gateway_headers, log_failure, read_within,
    record, recorded, success,
};
use super::stream::{DoorEvents, Wire};

/// The route and the call of a door path; `None` when the path is not
/// under `/hf/`; the call is `None` for a path TGI does not have.
pub fn parse_path(path: &str) -> Option<(&str, Option<TgiRoute>)> {
    let rest = path.strip_prefix("/hf/")?;
    let (route, sub) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    Some((route, TgiRoute::of_path(sub)))
}

/// Serves one request of the TGI door.
pub async fn serve<B, C>(
    gw: &Arc<Gateway>,
    core: C,
    route: &str,
    call: Option<TgiRoute>,
    req: Request<B>,
) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    C: Service<CoreRequest, Response = CoreResponse, Error = Infallible>,
{
    let caller = match gw.callers.identify(req.headers()) {
        Identity::Anonymous => None,
        Identity::Client(client) => Some(client),
        // In the access log, as on the other doors.
        Identity::Unknown => {
            let (_, _, access) = begin(gw, &req, Door::Tgi(call.unwrap_or(TgiRoute::Root)));
            return recorded(of_api_error(&ApiError::Unauthenticated).response(), access);
        }
    };
    let found = gw.routes.get(route).filter(|r| r.on_door(DoorKind::Tgi));
    let Some(found) = found.cloned() else {
        let (_, _, access) = begin(gw, &req, Door::Tgi(call.unwrap_or(TgiRoute::Root)));
        return refused(
            of_api_error(&ApiError::UnknownRoute(route.to_string())),
            access,
        );
    };
    if caller.as_ref().is_some_and(|c| !c.may_use(&found.name)) {
        let (_, _, mut access) = begin(gw, &req, Door::Tgi(call.unwrap_or(TgiRoute::Root)));
        access.client = caller.clone();
        access.route = Some(Arc::clone(&found));
        return refused(
            of_api_error(&ApiError::Forbidden(found.name.clone())),
            access,
        );
    }
    let Some(call) = call else {
        let path = req.uri().path().to_string();
        return Answer::unrecorded(of_api_error(&ApiError::NotFound(path)).response());
    };
    let method = req.method();
    let get = matches!(call, TgiRoute::Info | TgiRoute::Health);
    let allowed = if get { "GET" } else { "POST" };
    if method.as_str() != allowed && !(get && method == Method::HEAD) {
        let err = ApiError::MethodNotAllowed {
            method: method.to_string(),
            allowed,
        };
        let mut res = of_api_error(&err).response();
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allowed));
        return Answer::unrecorded(res);
    }
    match call {
        TgiRoute::Info | TgiRoute::Health => {
            let (_, _, mut access) = begin(gw, &req, Door::Tgi(call));
            access.client = caller.clone();
            access.route = Some(Arc::clone(&found));
            let response = match call {
                TgiRoute::Info => json_response(&info(&found)),
                _ => health(&found),
            };
            recorded(response, access)
        }
        call => operation(gw, core, &found, call, req, caller).await,
    }
}

/// TGI's `/health`: 200 while a backend of the route can take a request
/// now, else 503 (every one ejected, failing its health check, or scaled
/// to zero and waking), as TGI answers while its model is not ready.
fn health(route: &Route) -> Response<ResBody> {
    use crate::route::health::Availability;
    let now = Instant::now();
    let up = route.pool.iter().any(|m| {
        !matches!(
            m.state.availability(now),
            Availability::Ejected(_) | Availability::Unhealthy | Availability::Cold
        )
    });
    if up {
        return Response::new(crate::body::full(Bytes::new()));
    }
    TgiError {
        status: http::StatusCode::SERVICE_UNAVAILABLE,
        error_type: "unhealthy",
        ..TgiError::validation(format!("no backend of route \"{}\" is ready", route.name))
    }
    .response()
}

/// What the route serves, as TGI's (or TEI's) `/info` says it.
fn info(route: &Route) -> Value {
    let serves = |op| route.pool.iter().any(|m| m.backend.serves(op, false));
    let tag = if !serves(Operation::Generate) && serves(Operation::Embed) {
        "feature-extraction"
    } else {
        "text-generation"
    };
    json!({
        "model_id": route.name,
        "model_sha": null,
        "model_pipeline_tag": tag,
        "router": "infergate",
        "version": env!("CARGO_PKG_VERSION"),
        "sha": null,
        "docker_label": null,
    })
}

/// The operation a call asks of `route`, and whether as a stream (`None`:
/// the body decides).
fn operation_of(call: TgiRoute, route: &Route) -> (Operation, Option<bool>) {
    let serves = |op| route.pool.iter().any(|m| m.backend.serves(op, false));
    match call {
        TgiRoute::Root if !serves(Operation::Generate) && serves(Operation::Embed) => {
            (Operation::Embed, Some(false))
        }
        TgiRoute::Root => (Operation::Generate, None),
        TgiRoute::Generate => (Operation::Generate, Some(false)),
        TgiRoute::GenerateStream => (Operation::Generate, Some(true)),
        TgiRoute::Chat => (Operation::Chat, None),
        TgiRoute::Completions => (Operation::Completion, None),
        TgiRoute::Embed | TgiRoute::Info | TgiRoute::Health => (Operation::Embed, Some(false)),
    }
}

/// The body read for `op`: what goes to the core, and whether the body
/// asks for a stream.
fn read_body(op: Operation, raw: &[u8], route: &str) -> Result<(Bytes, bool, bool), TgiError> {
    match op {
        Operation::Chat | Operation::Completion => {
            let asked =
                request::read(op, raw, Some(route)).map_err(|e| TgiError::validation(e.message))?;
            Ok((asked.body, asked.stream, asked.include_usage))
        }
        _ => {
            let body: serde_json::Map<String, Value> =
                serde_json::from_slice(raw).map_err(|e| {
                    TgiError::validation(format!(
                        "Failed to deserialize the JSON body into the target type: {e}"
                    ))
                })?;
            if !body.contains_key("inputs") {
                return Err(TgiError::validation(
                    "Failed to deserialize the JSON body into the target type: missing field `inputs`",
                ));
            }
            let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
            Ok((Bytes::copy_from_slice(raw), stream, false))
        }
    }
}

/// A generate, chat, completion or embed request.
async fn operation<B, C>(
    gw: &Arc<Gateway>,
    core: C,
    route: &Arc<Route>,
    call: TgiRoute,
    req: Request<B>,
    caller: Option<Arc<Client>>,
) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    C: Service<CoreRequest, Response = CoreResponse, Error = Infallible>,
{
    let (op, forced) = operation_of(call, route);
    let (started, trace, mut access) = begin(gw, &req, Door::Tgi(call));
    access.client = caller.clone();
    access.route = Some(Arc::clone(route));
    let (rate, charge) = match admit(gw, route, &mut access).await {
        Ok(admitted) => admitted,
        Err(e) => return refused(of_api_error(&e), access),
    };
    let (parts, body) = req.into_parts();
    let raw = match read_within(gw, body, started + route.timeout, &mut access).await {
        Ok(raw) => raw,
        Err(e) => return refused(of_api_error(&e), access),
    };
    let (body, asked_stream, include_usage) = match read_body(op, &raw, &route.name) {
        Ok(read) => read,
        Err(e) => return refused(e, access),
    };
    access.stream = forced.unwrap_or(asked_stream);
    let mut request = match core_request(route, &parts, body, trace, started, &access) {
        Ok(request) => request,
        Err(e) => return refused(of_api_error(&e), access),
    };
    request.op = op;
    request.content_type = Some(HeaderValue::from_static("application/json"));
    request.accept = None;
    let answer = call_core(core, request).await;
    let shape = Shape {
        call,
        op,
        include_usage,
    };
    let response = render(gw, route, shape, answer, started, &mut access, charge).await;
    answered(response, rate, access)
}

fn refused(err: TgiError, access: Access) -> Answer {
    recorded(err.response(), access)
}

/// What the answer is rendered as.
#[derive(Debug, Clone, Copy)]
struct Shape {
    call: TgiRoute,
    op: Operation,
    include_usage: bool,
}

async fn render(
    gw: &Gateway,
    route: &Route,
    shape: Shape,
    answer: CoreResponse,
    started: Instant,
    access: &mut Access,
    charge: Option<Charge>,
) -> Response<ResBody> {
    let (result, timing) = record(answer, access);
    let kind = match shape.op {
        Operation::Completion => Kind::Completion,
        _ => Kind::Chat,
    };
    let mut response = match result {
        Ok(up) if matches!(up.body, UpstreamBody::Events { .. }) => {
            let door: Box<dyn DoorEvents> = match shape.op {
                Operation::Chat | Operation::Completion => Box::new(
                    OpenAiEvents::new(Stamp::new(kind, &route.name), shape.include_usage)
                        .with_tgi_errors(),
                ),
                _ => Box::new(TgiEvents),
            };
            success(gw, route, up, Wire::Door(door), started, access, charge)
        }
        Ok(up) => match whole(up, shape, kind, &route.name).await {
            Ok(up) => success(gw, route, up, Wire::Sse, started, access, charge),
            Err(e) => e.response(),
        },
        Err(err) => {
            let backend = access.backend.as_ref().map(|b| b.name.as_str());
            log_failure(&err, &route.name, backend, &access.request_id);
            let container = access.backend.as_ref().map(|b| b.container);
            errors::of_failure(&err, container).response()
        }
    };
    gateway_headers(response.headers_mut(), access, timing, started);
    response
}

/// A whole answer in TGI's shape: generate's object (a list of one on
/// `/`, as TGI's compat route answers), chat and completions stamped as
/// OpenAI's, TEI's vectors as they are.
async fn whole(
    up: UpstreamResponse,
    shape: Shape,
    kind: Kind,
    model: &str,
) -> Result<UpstreamResponse, TgiError> {
    let UpstreamResponse {
        status,
        headers,
        body,
    } = up;
    let bad = |detail: &str| TgiError {
        status: http::StatusCode::BAD_GATEWAY,
        error_type: "backend",
        ..TgiError::validation(format!("the backend's answer could not be read: {detail}"))
    };
    let raw = read_answer(body).await.map_err(|e| bad(&e))?;
    let parsed: Option<Value> = serde_json::from_slice(&raw).ok();
    let shaped = match shape.op {
        Operation::Chat | Operation::Completion => completion(&raw, &Stamp::new(kind, model)),
        Operation::Embed => parsed.filter(Value::is_array).map(|_| raw.clone()),
        _ => match parsed {
            Some(one @ Value::Object(_)) if shape.call == TgiRoute::Root => {
                Some(Bytes::from(json!([one]).to_string()))
            }
            Some(Value::Object(_)) => Some(raw.clone()),
            _ => None,
        },
    }
    .ok_or_else(|| bad("not what its container answers"))?;
    Ok(reshaped(status, headers, shaped))
}

/// TGI's `generate_stream`: each token event as it is, no `[DONE]`.
struct TgiEvents;

impl DoorEvents for TgiEvents {
    fn event(&mut self, json: &[u8], out: &mut BytesMut) {
        push(out, json);
    }

    fn fail(&mut self, e: &StreamError, out: &mut BytesMut) {
        tgi_error_event(e, out);
    }

    fn end(&mut self, _out: &mut BytesMut) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_route_and_call() {
        assert_eq!(parse_path("/hf/r"), Some(("r", Some(TgiRoute::Root))));
        assert_eq!(parse_path("/hf/r/"), Some(("r", Some(TgiRoute::Root))));
        assert_eq!(
            parse_path("/hf/r/generate_stream"),
            Some(("r", Some(TgiRoute::GenerateStream)))
        );
        assert_eq!(
            parse_path("/hf/r/v1/chat/completions"),
            Some(("r", Some(TgiRoute::Chat)))
        );
        assert_eq!(parse_path("/hf/r/nope"), Some(("r", None)));
        assert_eq!(parse_path("/v1/predict/r"), None);
    }
}
