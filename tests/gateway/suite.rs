//! The suite every backend kind must pass, once per kind: the gateway's
//! headers, what is forwarded, model errors, retries, throttling, resets,
//! the deadline and the body limit.

use std::time::Duration;

use crate::common::{error_json, patch, Harness, Setup, BODY, CONFIG};
use crate::expected_answer;
use infergate::emulator::{FaultConfig, InjectedError};
use serde_json::Value;

/// The error each emulator answers for "the service is unavailable".
fn unavailable(route: &str) -> InjectedError {
    match route {
        "hf" => InjectedError::Status(503),
        _ => InjectedError::ServiceUnavailable,
    }
}

fn throttled(route: &str) -> InjectedError {
    match route {
        "hf" => InjectedError::Status(429),
        _ => InjectedError::ThrottlingException,
    }
}

macro_rules! backend_suite {
    ($module:ident, $route:literal) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn success_carries_the_gateway_headers() {
                let h = Harness::start().await;
                let res = h.predict($route, BODY).await;
                assert_eq!(res.status(), 200);
                assert_eq!(res.headers()["x-infergate-backend"], $route);
                assert_eq!(res.headers()["x-infergate-attempts"], "1");
                assert_eq!(res.headers()["x-request-id"].len(), 32);
                let v: Value = res.json().await.unwrap();
                assert_eq!(v, expected_answer());
                assert_eq!(h.emulator($route).counters().requests(), 1);
                h.shutdown().await;
            }

            #[tokio::test]
            async fn client_request_id_is_echoed() {
                let h = Harness::start().await;
                let res = h
                    .client
                    .post(h.url(concat!("/v1/predict/", $route)))
                    .header("content-type", "application/json")
                    .header("x-request-id", "client-id-42")
                    .body(BODY)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                assert_eq!(res.headers()["x-request-id"], "client-id-42");
                h.shutdown().await;
            }

            #[tokio::test]
            async fn client_authorization_and_hop_by_hop_headers_are_not_forwarded() {
                let h = Harness::start().await;
                let res = h
                    .client
                    .post(h.url(concat!("/v1/predict/", $route)))
                    .header("content-type", "application/json")
                    .header("accept", "application/json")
                    .header("authorization", "Bearer client-key-canary")
                    .header("connection", "x-private")
                    .header("x-private", "secret")
                    .header("te", "trailers")
                    .header("proxy-authorization", "Basic Zm9vOmJhcg==")
                    .body(BODY)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                let seen = h.emulator($route).counters().last().unwrap();
                let auth = seen.headers["authorization"].to_str().unwrap();
                assert!(!auth.contains("client-key-canary"));
                for name in ["x-private", "te", "proxy-authorization"] {
                    assert!(seen.headers.get(name).is_none(), "{name} was forwarded");
                }
                assert_eq!(seen.headers["content-type"], "application/json");
                assert_eq!(seen.headers["accept"], "application/json");
                h.shutdown().await;
            }

            #[tokio::test]
            async fn model_rejection_keeps_the_4xx() {
                let h = Harness::start().await;
                h.emulator($route).faults().fail_next(
                    1,
                    if $route == "hf" {
                        InjectedError::Status(422)
                    } else {
                        InjectedError::ModelError {
                            original_status: 400,
                        }
                    },
                );
                let res = h.predict($route, BODY).await;
                let status = res.status().as_u16();
                assert_eq!(status, if $route == "hf" { 422 } else { 400 });
                assert_eq!(res.headers()["x-infergate-attempts"], "1", "never retried");
                let e = error_json(res).await;
                assert_eq!(e["type"], "model_error");
                assert_eq!(e["backend"], $route);
                assert_eq!(e["route"], $route);
                assert!(!e["message"].as_str().unwrap().is_empty());
                assert_eq!(h.emulator($route).counters().requests(), 1);
                h.shutdown().await;
            }

            #[tokio::test]
            async fn unavailable_backend_is_retried_then_503_with_retry_after() {
                let h = Harness::start().await;
                h.emulator($route).faults().set(FaultConfig {
                    error_rate: 1.0,
                    error: unavailable($route),
                    ..FaultConfig::default()
                });
                let res = h.predict($route, BODY).await;
                assert_eq!(res.status(), 503);
                assert_eq!(res.headers()["x-infergate-attempts"], "3");
                assert!(res.headers().get("retry-after").is_some());
                let e = error_json(res).await;
                assert_eq!(e["type"], "backend_unavailable");
                assert_eq!(e["upstream_status"], 503);
                assert_eq!(h.emulator($route).counters().requests(), 3);
                h.shutdown().await;
            }

            #[tokio::test]
            async fn one_transient_failure_is_absorbed() {
                let h = Harness::start().await;
                h.emulator($route).faults().fail_next(1, throttled($route));
                let res = h.predict($route, BODY).await;
                assert_eq!(res.status(), 200);
                assert_eq!(res.headers()["x-infergate-attempts"], "2");
                h.shutdown().await;
            }

            #[tokio::test]
            async fn throttling_that_persists_is_a_429() {
                let h = Harness::start().await;
                h.emulator($route).faults().set(FaultConfig {
                    error_rate: 1.0,
                    error: throttled($route),
                    ..FaultConfig::default()
                });
                let res = h.predict($route, BODY).await;
                assert_eq!(res.status(), 429);
                assert!(res.headers().get("retry-after").is_some());
                assert_eq!(error_json(res).await["type"], "rate_limited");
                h.shutdown().await;
            }

            #[tokio::test]
            async fn connection_reset_is_retried() {
                let h = Harness::start().await;
                h.emulator($route).faults().update(|f| f.reset_next = 1);
                let res = h.predict($route, BODY).await;
                assert_eq!(res.status(), 200);
                assert_eq!(res.headers()["x-infergate-attempts"], "2");
                assert_eq!(h.emulator($route).counters().resets_injected(), 1);
                h.shutdown().await;
            }

            #[tokio::test]
            async fn deadline_is_a_504() {
                let h = Harness::with(Setup {
                    config: patch(
                        CONFIG,
                        &format!("[routes.{}]\n", $route),
                        &format!("[routes.{}]\ntimeout = \"300ms\"\n", $route),
                    ),
                    ..Setup::default()
                })
                .await;
                h.emulator($route)
                    .faults()
                    .update(|f| f.latency = Duration::from_secs(3));
                let res = h.predict($route, BODY).await;
                assert_eq!(res.status(), 504);
                let e = error_json(res).await;
                assert_eq!(e["type"], "deadline_exceeded");
                assert_eq!(
                    e["message"],
                    "no answer within the request deadline of 300ms"
                );
                h.shutdown().await;
            }

            #[tokio::test]
            async fn body_over_the_limit_never_reaches_the_backend() {
                let h = Harness::start().await;
                let big = format!(r#"{{"inputs": "{}"}}"#, "x".repeat(2000));
                let res = h.predict($route, &big).await;
                assert_eq!(res.status(), 413);
                assert_eq!(error_json(res).await["type"], "payload_too_large");
                // Chunked, no declared length.
                let chunks = vec![Ok::<_, std::io::Error>(big.into_bytes())];
                let res = h
                    .client
                    .post(h.url(concat!("/v1/predict/", $route)))
                    .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                        chunks,
                    )))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 413);
                assert_eq!(h.emulator($route).counters().requests(), 0);
                h.shutdown().await;
            }
        }
    };
}

backend_suite!(sagemaker, "sm");
backend_suite!(huggingface, "hf");
backend_suite!(jumpstart, "js");
