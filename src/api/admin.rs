//! Operator endpoints: `/healthz` (alive), `/readyz` (config loaded and
//! listener up, not draining), `/metrics` (Prometheus text), `/v1/routes`
//! (the routes and backends the gateway runs, as JSON) and `POST
//! /v1/reload` (read the config file again).

use std::sync::Arc;
use std::time::SystemTime;

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use crate::backend::BackendKind;
use crate::body::full;
use crate::body::ResBody;
use crate::gateway::Gateway;
use crate::route::health::Availability;
use crate::route::Route;
use tokio::time::Instant;

/// Serves one of the admin paths (the caller matched the path and method).
pub fn handle(gw: &Arc<Gateway>, path: &str) -> Response<ResBody> {
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if gw.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            let now = Instant::now();
            for (backend, state) in gw.backends.iter().zip(&gw.states) {
                let snap = state.snapshot(now);
                gw.metrics
                    .backend(&backend.name, snap.in_flight, state_name(snap.availability));
            }
            for cache in gw.routes.iter().filter_map(|r| r.cache.as_ref()) {
                cache.set_gauges();
            }
            let mut res = Response::new(full(gw.metrics.encode()));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        _ => json_response(&routes(gw)),
    }
}

/// `POST /v1/reload`: what the reload did, 200 when the new config serves,
/// 422 with every error when it was refused (the running config serves
/// on), 409 when this gateway runs no config file it could read again.
pub async fn reload(gw: &Arc<Gateway>) -> Response<ResBody> {
    let outcome = match gw.reload_handle() {
        Some(handle) => handle.reload().await,
        None => None,
    };
    let Some(outcome) = outcome else {
        let mut res = json_response(&json!({"error": {
            "type": "reload_unavailable",
            "message": "this gateway was not started from a config file it can read again",
        }}));
        *res.status_mut() = StatusCode::CONFLICT;
        return res;
    };
    let mut res = json_response(&json!({
        "result": outcome.result(),
        "hash": outcome.hash,
        "errors": outcome.errors,
        "needs_restart": outcome.needs_restart,
    }));
    if !outcome.applied {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    res
}

fn text(status: StatusCode, body: &'static str) -> Response<ResBody> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn json_response(v: &Value) -> Response<ResBody> {
    let mut res = Response::new(full(v.to_string()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The `state` of a backend in `/v1/routes` and in metrics.
pub fn state_name(a: Availability) -> &'static str {
    match a {
        Availability::Available | Availability::Probe => "available",
        Availability::Ejected(_) => "ejected",
        Availability::Cold => "cold",
        Availability::Saturated => "saturated",
        Availability::Unhealthy => "unhealthy",
    }
}

/// The route table as JSON, with each backend's live state. Never includes
/// a token or credential.
fn routes(gw: &Gateway) -> Value {
    let now = Instant::now();
    let wall = SystemTime::now();
    let routes: Vec<Value> = gw
        .routes
        .iter()
        .map(|r| {
            let backends: Vec<Value> = r
                .pool
                .iter()
                .map(|m| {
                    let b = &m.backend;
                    let (url, auth) = match &b.kind {
                        BackendKind::SageMaker(sm) => (sm.url().as_str().to_string(), "sigv4"),
                        BackendKind::HuggingFace(hf) => (
                            hf.url().as_str().to_string(),
                            if hf.has_token() { "bearer" } else { "none" },
                        ),
                    };
                    let snap = m.state.snapshot(now);
                    let ejected_until = match snap.availability {
                        Availability::Ejected(until) => {
                            let left = until.saturating_duration_since(now);
                            Some(humantime::format_rfc3339_seconds(wall + left).to_string())
                        }
                        _ => None,
                    };
                    json!({
                        "name": b.name,
                        "kind": b.kind_name(),
                        "container": b.container.as_str(),
                        "weight": m.weight,
                        "url": url,
                        "auth": auth,
                        "state": state_name(snap.availability),
                        "ejected_until": ejected_until,
                        "ejections": snap.ejections,
                        "consecutive_failures": snap.consecutive_failures,
                        "in_flight": snap.in_flight,
                        "ewma_ms": (snap.ewma.as_secs_f64() * 1e6).round() / 1e3,
                    })
                })
                .collect();
            json!({
                "name": r.name,
                "path": format!("/v1/predict/{}", r.name),
                "doors": doors(gw, r),
                "balance": r.balance.as_str(),
                "hedge_after_ms": r.hedge_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "sessions": r.sessions.as_ref().map(|s| s.len()),
                "timeout_ms": u64::try_from(r.timeout.as_millis()).unwrap_or(u64::MAX),
                "attempts": r.attempts,
                "backends": backends,
                "shadow": shadows(r),
            })
        })
        .collect();
    json!({ "routes": routes })
}

/// Each shadow of a route with its share and what it found so far.
fn shadows(route: &Route) -> Value {
    let Some(shadows) = &route.shadow else {
        return json!([]);
    };
    let list: Vec<Value> = shadows
        .targets
        .iter()
        .map(|s| {
            let a = s.agreement();
            json!({
                "backend": s.backend.name,
                "percent": s.percent,
                "match": a.matched,
                "differ": a.differ,
                "shadow_error": a.shadow_error,
                "dropped": a.dropped,
                "agreement": a.rate(),
            })
        })
        .collect();
    Value::Array(list)
}

/// The doors that serve a route, by name, each with its paths.
fn doors(gw: &Gateway, route: &Route) -> Value {
    let serves = |op, stream| route.pool.iter().any(|m| m.backend.serves(op, stream));
    let doors = gw
        .config
        .doors
        .of_route(&route.name, route.doors.as_deref(), serves)
        .into_iter();
    Value::Object(
        doors
            .map(|(d, paths)| (d.to_owned(), json!(paths)))
            .collect(),
    )
}
