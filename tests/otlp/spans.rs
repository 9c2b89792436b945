//! The spans of requests: their ids, attributes and status, what is not
//! exported, and what the shutdown sends.

use std::time::Duration;

use infergate::emulator::InjectedError;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use crate::common::wait_for;
use crate::gateway::{seen_traceparent, Gw};
use crate::receiver::{attr, hex, string};
use crate::{PARENT_ID, TRACEPARENT, TRACE_ID};

// === spans ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_continues_the_clients_trace_with_the_id_the_backend_saw() {
    let gw = Gw::start(Duration::from_millis(50)).await;
    assert_eq!(gw.post("/v1/predict/sm", Some(TRACEPARENT)).await, 200);
    let (trace, span_id, flags) = seen_traceparent(&gw.sm);
    assert_eq!(trace, TRACE_ID);
    assert_eq!(flags, "01");
    assert_ne!(span_id, PARENT_ID);

    let got = gw.receiver.wait_for_span(&span_id).await;
    let span = &got.span;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.span_id), span_id);
    assert_eq!(hex(&span.parent_span_id), PARENT_ID);
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.name, "POST /v1/predict/sm");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert!(span.start_time_unix_nano > 0);
    // Sampled, and the parent is remote (the OTLP span flags' bits 8 and 9).
    assert_eq!(span.flags & 0xff, 0x01);
    assert_eq!(span.flags & 0x300, 0x300);
    let a = &span.attributes;
    assert_eq!(attr(a, "http.route"), string("/v1/predict/sm").as_ref());
    assert_eq!(attr(a, "http.request.method"), string("POST").as_ref());
    assert_eq!(attr(a, "infergate.route"), string("sm").as_ref());
    assert_eq!(attr(a, "infergate.backend"), string("sm").as_ref());
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(1)));
    assert_eq!(attr(a, "infergate.stream"), Some(&Value::BoolValue(false)));
    assert_eq!(attr(a, "infergate.complete"), Some(&Value::BoolValue(true)));
    assert_eq!(attr(a, "error.type"), None);
    let status = span.status.clone().unwrap_or_default();
    assert_eq!(status.code, StatusCode::Unset as i32);
    assert_eq!(
        attr(&got.resource, "service.name"),
        string("infergate-test").as_ref()
    );
    assert_eq!(
        attr(&got.resource, "service.version"),
        string(env!("CARGO_PKG_VERSION")).as_ref()
    );
    assert_eq!(got.scope, "infergate");

    let receiver = gw.shutdown().await;
    for (method, path, content_type) in receiver.requests() {
        assert_eq!(
            (method.as_str(), path.as_str(), content_type.as_str()),
            ("POST", "/v1/traces", "application/x-protobuf")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_trace_context_is_a_root_span() {
    let gw = Gw::start(Duration::from_millis(50)).await;
    assert_eq!(gw.post("/v1/predict/hf", None).await, 200);
    let (trace, span_id, _) = seen_traceparent(&gw.hf);
    let got = gw.receiver.wait_for_span(&span_id).await;
    assert_eq!(hex(&got.span.trace_id), trace);
    assert!(got.span.parent_span_id.is_empty(), "a root span");
    assert_eq!(got.span.flags & 0x300, 0x100, "no remote parent");
    assert_eq!(got.span.name, "POST /v1/predict/hf");
    let a = &got.span.attributes;
    assert_eq!(attr(a, "infergate.backend"), string("hf").as_ref());
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(1)));

    // A stream is a span too, ended when the stream ends.
    assert_eq!(
        gw.post("/v1/predict/hf/stream", Some(TRACEPARENT)).await,
        200
    );
    let (trace, span_id, _) = seen_traceparent(&gw.hf);
    assert_eq!(trace, TRACE_ID);
    let got = gw.receiver.wait_for_span(&span_id).await;
    assert_eq!(got.span.name, "POST /v1/predict/hf/stream");
    assert_eq!(hex(&got.span.parent_span_id), PARENT_ID);
    let a = &got.span.attributes;
    assert_eq!(
        attr(a, "http.route"),
        string("/v1/predict/hf/stream").as_ref()
    );
    assert_eq!(attr(a, "infergate.stream"), Some(&Value::BoolValue(true)));
    assert_eq!(attr(a, "infergate.route"), string("hf").as_ref());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_and_5xx_is_an_error() {
    let gw = Gw::start(Duration::from_millis(50)).await;
    // One failure, then success: two attempts, one span.
    gw.sm
        .faults()
        .fail_next(1, InjectedError::ServiceUnavailable);
    assert_eq!(gw.post("/v1/predict/sm", Some(TRACEPARENT)).await, 200);
    let (_, span_id, _) = seen_traceparent(&gw.sm);
    let got = gw.receiver.wait_for_span(&span_id).await;
    let a = &got.span.attributes;
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(2)));
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(
        got.span.status.clone().unwrap_or_default().code,
        StatusCode::Unset as i32
    );

    // Every attempt fails: the answer is a 5xx and the span an error.
    gw.hf.faults().fail_next(3, InjectedError::Status(503));
    let status = gw.post("/v1/predict/hf", Some(TRACEPARENT)).await;
    assert!(status >= 500, "{status}");
    let (_, span_id, _) = seen_traceparent(&gw.hf);
    let got = gw.receiver.wait_for_span(&span_id).await;
    let a = &got.span.attributes;
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&Value::IntValue(i64::from(status)))
    );
    assert_eq!(attr(a, "error.type"), string(&status.to_string()).as_ref());
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(3)));
    assert_eq!(
        got.span.status.clone().unwrap_or_default().code,
        StatusCode::Error as i32
    );

    // A 4xx is not an error of the server's span.
    let before = gw.receiver.spans().len();
    assert_eq!(gw.post("/v1/predict/nope", Some(TRACEPARENT)).await, 404);
    wait_for("the 404's span", || gw.receiver.spans().len() > before).await;
    let spans = gw.receiver.spans();
    let got = spans.last().unwrap();
    assert_eq!(hex(&got.span.trace_id), TRACE_ID);
    let a = &got.span.attributes;
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&Value::IntValue(404))
    );
    assert_eq!(attr(a, "infergate.backend"), None);
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(0)));
    assert_eq!(
        got.span.status.clone().unwrap_or_default().code,
        StatusCode::Unset as i32
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_the_client_did_not_sample_is_not_exported() {
    let gw = Gw::start(Duration::from_millis(50)).await;
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    assert_eq!(gw.post("/v1/predict/sm", Some(unsampled)).await, 200);
    let (trace, _, flags) = seen_traceparent(&gw.sm);
    assert_eq!(
        (trace.as_str(), flags.as_str()),
        ("0af7651916cd43dd8448eb211c80319c", "00")
    );
    // Spans leave in order: once the next one is there, the first would be.
    assert_eq!(gw.post("/v1/predict/sm", Some(TRACEPARENT)).await, 200);
    let (_, span_id, _) = seen_traceparent(&gw.sm);
    gw.receiver.wait_for_span(&span_id).await;
    let receiver = gw.shutdown().await;
    let traces: Vec<String> = receiver
        .spans()
        .iter()
        .map(|g| hex(&g.span.trace_id))
        .collect();
    assert_eq!(traces, [TRACE_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_what_is_queued() {
    // Batches would wait a minute: only the shutdown sends them.
    let gw = Gw::start(Duration::from_secs(60)).await;
    for _ in 0..5 {
        assert_eq!(gw.post("/v1/predict/both", None).await, 200);
    }
    // The span ids the backends saw, whichever served each request.
    let ids: Vec<String> = [&gw.sm, &gw.hf]
        .iter()
        .flat_map(|e| e.counters().recent())
        .map(|r| {
            let tp = r.headers["traceparent"].to_str().unwrap().to_owned();
            tp.split('-').nth(2).unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 5);
    // Not synchronisation but a window: a batch sent early (before the
    // minute's delay or the shutdown) would have arrived by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        gw.receiver.spans().is_empty(),
        "nothing sent before shutdown"
    );
    let receiver = gw.shutdown().await;
    let spans = receiver.spans();
    assert_eq!(spans.len(), 5);
    for got in &spans {
        assert!(ids.contains(&hex(&got.span.span_id)));
        assert_eq!(got.span.name, "POST /v1/predict/both");
    }
}

/// A client's span names it (`infergate.client`) and holds none of its
/// key, whatever the answer; a refused key's span names no one.
#[tokio::test]
async fn a_span_names_the_client_and_never_holds_its_key() {
    const KEY: &str = "canary-span-client-key-5e0c";
    let extra = format!("[clients.canary]\napi_key = \"{KEY}\"\nroutes = [\"hf\"]\n");
    let gw = Gw::start_with(Duration::from_millis(50), &extra).await;
    assert_eq!(gw.post_as("/v1/predict/hf", None, Some(KEY)).await, 200);
    let (_, span_id, _) = seen_traceparent(&gw.hf);
    let got = gw.receiver.wait_for_span(&span_id).await;
    assert_eq!(
        attr(&got.span.attributes, "infergate.client"),
        string("canary").as_ref()
    );
    // Refused: another route (403), a wrong key (401).
    assert_eq!(gw.post_as("/v1/predict/sm", None, Some(KEY)).await, 403);
    let wrong = format!("{KEY}0");
    assert_eq!(gw.post_as("/v1/predict/hf", None, Some(&wrong)).await, 401);
    let receiver = gw.shutdown().await;
    let spans = format!("{:?}", receiver.spans());
    assert!(spans.contains("canary"), "the client's spans were exported");
    assert!(
        !spans.contains(KEY),
        "a client key in an exported span: {spans}"
    );
}
