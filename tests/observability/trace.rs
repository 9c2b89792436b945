//! W3C trace context through both backend kinds, and `server-timing`.

use std::collections::BTreeSet;

use crate::common::{Harness, BODY};
use crate::{PARENT_ID, TRACEPARENT, TRACESTATE, TRACE_ID};
use infergate::emulator::InjectedError;

// === trace context ===

pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `(trace id, parent id, flags)` of a valid version-00 `traceparent`.
fn traceparent(v: &str) -> (String, String, String) {
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "{v}");
    assert_eq!(parts[0], "00", "{v}");
    assert!(is_hex(parts[1], 32) && parts[1] != "0".repeat(32), "{v}");
    assert!(is_hex(parts[2], 16) && parts[2] != "0".repeat(16), "{v}");
    assert!(is_hex(parts[3], 2), "{v}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// `(upstream ms, gateway ms)` from `server-timing`.
fn server_timing(res: &reqwest::Response) -> (f64, f64) {
    let v = res.headers()["server-timing"].to_str().unwrap();
    let mut up = None;
    let mut gw = None;
    for metric in v.split(',') {
        let (name, dur) = metric.trim().split_once(";dur=").unwrap();
        let dur: f64 = dur.parse().unwrap();
        match name {
            "upstream" => up = Some(dur),
            "gateway" => gw = Some(dur),
            // Other metrics (such as time spent in backoff) may come too.
            other => assert!(!other.is_empty() && dur >= 0.0, "{v}"),
        }
    }
    let (up, gw) = (up.unwrap(), gw.unwrap());
    assert!(up >= 0.0 && gw >= 0.0, "{v}");
    (up, gw)
}

#[tokio::test]
async fn trace_context_continues_to_both_backends_with_a_new_span() {
    let h = Harness::start().await;
    for route in ["sm", "hf"] {
        for path in [
            format!("/v1/predict/{route}"),
            format!("/v1/predict/{route}/stream"),
        ] {
            let res = h
                .client
                .post(h.url(&path))
                .header("content-type", "application/json")
                .header("traceparent", TRACEPARENT)
                .header("tracestate", TRACESTATE)
                .body(BODY)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let (up, _) = server_timing(&res);
            assert!(up > 0.0, "{path}: time was spent on the backend");
            let _ = res.bytes().await;
            let seen = h.emulator(route).counters().last().unwrap();
            let (trace, parent, flags) = traceparent(seen.headers["traceparent"].to_str().unwrap());
            assert_eq!(trace, TRACE_ID, "{path}");
            assert_ne!(
                parent, PARENT_ID,
                "{path}: the gateway's hop has its own span"
            );
            assert_eq!(flags, "01", "{path}");
            assert_eq!(seen.headers["tracestate"], TRACESTATE, "{path}");
            assert_eq!(seen.headers.get_all("traceparent").iter().count(), 1);
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_request_without_trace_context_has_none_when_no_span_is_exported() {
    let h = Harness::start().await;
    for route in ["sm", "hf"] {
        let res = h.predict(route, BODY).await;
        assert_eq!(res.status(), 200);
        server_timing(&res);
        let _ = res.bytes().await;
        let seen = h.emulator(route).counters().last().unwrap();
        assert!(seen.headers.get("traceparent").is_none(), "{route}");
        assert!(seen.headers.get("tracestate").is_none(), "{route}");
    }
    // An invalid traceparent is no trace to continue; its tracestate goes.
    let res = h
        .client
        .post(h.url("/v1/predict/hf"))
        .header("content-type", "application/json")
        .header("traceparent", TRACEPARENT.to_uppercase())
        .header("tracestate", TRACESTATE)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = h.hf.counters().last().unwrap();
    assert!(seen.headers.get("traceparent").is_none());
    assert!(seen.headers.get("tracestate").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn server_timing_is_on_errors_and_retries_too() {
    let h = Harness::start().await;
    h.sm.faults()
        .fail_next(1, InjectedError::ServiceUnavailable);
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("content-type", "application/json")
        .header("traceparent", TRACEPARENT)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    server_timing(&res);
    h.hf.faults().fail_next(1, InjectedError::Status(422));
    let res = h.predict("hf", BODY).await;
    assert_eq!(res.status(), 422);
    server_timing(&res);
    // Both attempts of the retried request carried the same trace.
    let recent = h.sm.counters().recent();
    let traces: BTreeSet<String> = recent
        .iter()
        .map(|r| traceparent(r.headers["traceparent"].to_str().unwrap()).0)
        .collect();
    assert_eq!(recent.len(), 2);
    assert_eq!(traces.len(), 1, "a retry stays in its request's trace");
    h.shutdown().await;
}
