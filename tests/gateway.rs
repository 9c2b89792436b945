//! The gateway end to end over loopback sockets, against both emulators.
//!
//! `backend_suite!` is the shared suite every backend kind must pass; the
//! tests after it cover what is specific to one kind, failover, the body
//! limit, the admin endpoints and the JSON error contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{error_json, Harness, Setup, HF_TOKEN, SECRET_KEY};
use infergate::emulator::{EmulatorHandle, FaultConfig, InjectedError};
use serde_json::{json, Value};

const BODY: &str = r#"{"inputs": "one stable inference URL", "parameters": {"max_new_tokens": 8}}"#;

/// The emulator behind a single-backend route.
fn emulator<'a>(h: &'a Harness, route: &str) -> &'a EmulatorHandle {
    match route {
        "sm" => &h.sm,
        "hf" => &h.hf,
        "js" => &h.js,
        other => panic!("no emulator for route {other}"),
    }
}

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
                assert_eq!(emulator(&h, $route).counters().requests(), 1);
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
                let seen = emulator(&h, $route).counters().last().unwrap();
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
                emulator(&h, $route).faults().fail_next(
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
                assert_eq!(emulator(&h, $route).counters().requests(), 1);
                h.shutdown().await;
            }

            #[tokio::test]
            async fn unavailable_backend_is_retried_then_503_with_retry_after() {
                let h = Harness::start().await;
                emulator(&h, $route).faults().set(FaultConfig {
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
                assert_eq!(emulator(&h, $route).counters().requests(), 3);
                h.shutdown().await;
            }

            #[tokio::test]
            async fn one_transient_failure_is_absorbed() {
                let h = Harness::start().await;
                emulator(&h, $route)
                    .faults()
                    .fail_next(1, throttled($route));
                let res = h.predict($route, BODY).await;
                assert_eq!(res.status(), 200);
                assert_eq!(res.headers()["x-infergate-attempts"], "2");
                h.shutdown().await;
            }

            #[tokio::test]
            async fn throttling_that_persists_is_a_429() {
                let h = Harness::start().await;
                emulator(&h, $route).faults().set(FaultConfig {
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
                emulator(&h, $route).faults().update(|f| f.reset_next = 1);
                let res = h.predict($route, BODY).await;
                assert_eq!(res.status(), 200);
                assert_eq!(res.headers()["x-infergate-attempts"], "2");
                assert_eq!(emulator(&h, $route).counters().resets_injected(), 1);
                h.shutdown().await;
            }

            #[tokio::test]
            async fn deadline_is_a_504() {
                let h = Harness::with(Setup {
                    config: common::CONFIG.replace(
                        &format!("[routes.{}]\n", $route),
                        &format!("[routes.{}]\ntimeout = \"300ms\"\n", $route),
                    ),
                    ..Setup::default()
                })
                .await;
                emulator(&h, $route)
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
                assert_eq!(emulator(&h, $route).counters().requests(), 0);
                h.shutdown().await;
            }
        }
    };
}

/// What both backends answer for [`BODY`]: the emulators share one model.
fn expected_answer() -> Value {
    let tokens = infergate::emulator::model::generate("one stable inference URL", Some(8));
    json!([{ "generated_text": infergate::emulator::model::generated_text(&tokens) }])
}

backend_suite!(sagemaker, "sm");
backend_suite!(huggingface, "hf");
backend_suite!(jumpstart, "js");

#[tokio::test]
async fn both_backends_answer_alike_and_share_the_traffic() {
    let h = Harness::start().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        let res = h.predict("both", BODY).await;
        assert_eq!(res.status(), 200);
        seen.insert(
            res.headers()["x-infergate-backend"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        let v: Value = res.json().await.unwrap();
        assert_eq!(v, expected_answer());
    }
    assert_eq!(
        seen.len(),
        2,
        "40 requests at equal weight reach both backends"
    );
    assert_eq!(h.sm.counters().requests() + h.hf.counters().requests(), 40);
    h.shutdown().await;
}

#[tokio::test]
async fn weights_are_respected() {
    let config = common::CONFIG.replace(
        "[routes.both]\nbackends = [\"sm\", \"hf\"]",
        "[routes.both]\nbackends = [{ backend = \"sm\", weight = 1000 }, { backend = \"hf\", weight = 1 }]",
    );
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    for _ in 0..30 {
        assert_eq!(h.predict("both", BODY).await.status(), 200);
    }
    // With p2c the weight divides each backend's load: hf wins a draw only
    // when sm is a thousand times busier, which sequential requests never make it.
    assert!(h.hf.counters().requests() < 5);
    h.shutdown().await;
}

#[tokio::test]
async fn throttled_sagemaker_fails_over_to_hf() {
    let h = Harness::start().await;
    h.sm.faults().set(FaultConfig {
        error_rate: 1.0,
        error: InjectedError::ThrottlingException,
        ..FaultConfig::default()
    });
    let mut failed_over = 0;
    for _ in 0..10 {
        let res = h.predict("both", BODY).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-infergate-backend"], "hf");
        failed_over += u32::from(res.headers()["x-infergate-attempts"] == "2");
    }
    assert_eq!(h.hf.counters().requests(), 10);
    assert!(
        h.sm.counters().requests() > 0,
        "the throttled backend was tried"
    );
    assert!(failed_over > 0);
    h.shutdown().await;
}

#[tokio::test]
async fn cold_hf_endpoint_fails_over_to_sagemaker() {
    let h = Harness::start().await;
    h.hf.faults().set(FaultConfig {
        cold_start: Some(Duration::from_secs(60)),
        ..FaultConfig::default()
    });
    let mut failed_over = 0;
    for _ in 0..10 {
        let res = h.predict("both", BODY).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-infergate-backend"], "sm");
        failed_over += u32::from(res.headers()["x-infergate-attempts"] == "2");
    }
    assert!(h.hf.counters().requests() > 0, "the cold backend was tried");
    assert!(failed_over > 0);
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_aws_secret_is_a_gateway_misconfiguration() {
    let h = Harness::with(Setup {
        sm_secret: "not-the-secret".into(),
        ..Setup::default()
    })
    .await;
    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["x-infergate-attempts"], "1");
    let e = error_json(res).await;
    assert_eq!(e["type"], "upstream_auth_rejected");
    assert_eq!(e["upstream_status"], 403);
    let text = e.to_string();
    assert!(!text.contains("not-the-secret"));
    assert!(!text.contains(SECRET_KEY));
    assert_eq!(h.sm.counters().auth_rejections(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn wrong_hf_token_is_a_gateway_misconfiguration() {
    let h = Harness::start().await;
    h.hf.set_token(Some("some-other-token".into()));
    let res = h.predict("hf", BODY).await;
    assert_eq!(res.status(), 502);
    let e = error_json(res).await;
    assert_eq!(e["type"], "upstream_auth_rejected");
    assert_eq!(e["upstream_status"], 401);
    assert!(!e.to_string().contains(HF_TOKEN));
    h.shutdown().await;
}

#[tokio::test]
async fn hf_gets_the_bearer_token_and_sagemaker_a_sigv4_signature() {
    let h = Harness::start().await;
    assert_eq!(h.predict("hf", BODY).await.status(), 200);
    assert_eq!(h.predict("sm", BODY).await.status(), 200);
    let hf = h.hf.counters().last().unwrap();
    assert_eq!(
        hf.headers["authorization"],
        format!("Bearer {HF_TOKEN}").as_str()
    );
    let sm = h.sm.counters().last().unwrap();
    let auth = sm.headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDINFERGATETEST/"));
    assert!(auth.contains("/us-east-1/sagemaker/aws4_request"));
    assert!(sm.headers.get("x-amz-date").is_some());
    assert!(sm.headers.get("x-amz-content-sha256").is_none());
    assert_eq!(sm.path, "/endpoints/flan-t5-small/invocations");
    h.shutdown().await;
}

#[tokio::test]
async fn public_hf_endpoint_gets_no_authorization() {
    let config = common::CONFIG.replace("token = \"${HF_TOKEN}\"\n", "");
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    h.hf.set_token(None);
    assert_eq!(h.predict("hf", BODY).await.status(), 200);
    assert!(h
        .hf
        .counters()
        .last()
        .unwrap()
        .headers
        .get("authorization")
        .is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn sagemaker_headers_pass_both_ways() {
    let h = Harness::start().await;
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("content-type", "application/json")
        .header("x-amzn-sagemaker-custom-attributes", "trace=abc")
        .header("x-amzn-sagemaker-target-variant", "variant-b")
        .header("x-amzn-sagemaker-inference-id", "inf-1")
        .header("x-amzn-sagemaker-session-id", "NEW_SESSION")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-amzn-invoked-production-variant"],
        "variant-b"
    );
    assert_eq!(
        res.headers()["x-amzn-sagemaker-custom-attributes"],
        "trace=abc"
    );
    let session = res.headers()["x-amzn-sagemaker-new-session-id"]
        .to_str()
        .unwrap();
    assert!(session.contains("; Expires="), "{session}");
    let seen = h.sm.counters().last().unwrap();
    assert_eq!(seen.headers["x-amzn-sagemaker-inference-id"], "inf-1");
    // The signed headers include the forwarded ones.
    let auth = seen.headers["authorization"].to_str().unwrap();
    assert!(auth.contains("x-amzn-sagemaker-custom-attributes"));
    h.shutdown().await;
}

#[tokio::test]
async fn fixed_config_headers_are_sent() {
    let config = common::CONFIG.replace(
        "endpoint_url = \"${SM_URL}\"\n",
        "endpoint_url = \"${SM_URL}\"\ntarget_variant = \"pinned\"\ncustom_attributes = \"from-config\"\n",
    );
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("content-type", "application/json")
        .header("x-amzn-sagemaker-target-variant", "client-choice")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-amzn-invoked-production-variant"], "pinned");
    let seen = h.sm.counters().last().unwrap();
    assert_eq!(
        seen.headers["x-amzn-sagemaker-custom-attributes"],
        "from-config"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn invalid_sagemaker_header_is_the_clients_400() {
    let h = Harness::start().await;
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("x-amzn-sagemaker-target-variant", "v".repeat(64))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(error_json(res).await["type"], "bad_request");
    assert_eq!(h.sm.counters().requests(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn jumpstart_backend_is_adapted_both_ways() {
    let h = Harness::start().await;
    let res = h.predict("js", BODY).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v, expected_answer());
    let seen = h.js.counters().last().unwrap();
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        sent,
        json!({"text_inputs": "one stable inference URL", "max_length": 8})
    );
    h.shutdown().await;
}

#[tokio::test]
async fn non_json_to_an_adapted_backend_is_a_400() {
    let h = Harness::start().await;
    let res = h.predict("js", "not json").await;
    assert_eq!(res.status(), 400);
    let e = error_json(res).await;
    assert_eq!(e["type"], "invalid_input");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .starts_with("the request body must be JSON for this route's backend \"js\""));
    assert_eq!(h.js.counters().requests(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn unreachable_backend_is_a_502() {
    // A port nothing listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = common::CONFIG.replace(
        "url = \"${HF_URL}\"",
        &format!("url = \"http://127.0.0.1:{port}\""),
    );
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    let res = h.predict("hf", BODY).await;
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["x-infergate-attempts"], "3");
    assert_eq!(error_json(res).await["type"], "upstream_unreachable");
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_route_and_path_and_method() {
    let h = Harness::start().await;
    let res = h.predict("nope", BODY).await;
    assert_eq!(res.status(), 404);
    assert!(res.headers().get("x-request-id").is_some());
    let e = error_json(res).await;
    assert_eq!(e["type"], "unknown_route");
    assert_eq!(e["message"], "unknown route \"nope\"");
    assert_eq!(e["request_id"].as_str().unwrap().len(), 32);

    let res = h.client.get(h.url("/v1/predict/sm")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "POST");
    assert_eq!(error_json(res).await["type"], "method_not_allowed");

    let res = h.client.get(h.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(error_json(res).await["type"], "not_found");
    h.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints() {
    let h = Harness::start().await;
    let res = h.client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = h.client.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let routes: Value = h
        .client
        .get(h.url("/v1/routes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let both = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "both")
        .unwrap();
    assert_eq!(both["backends"][0]["name"], "sm");
    assert_eq!(both["backends"][0]["auth"], "sigv4");
    assert_eq!(both["backends"][1]["name"], "hf");
    assert_eq!(both["backends"][1]["auth"], "bearer");
    assert!(!routes.to_string().contains(HF_TOKEN));

    assert_eq!(h.predict("sm", BODY).await.status(), 200);
    let metrics = h
        .client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(
        r#"infergate_requests_total{backend="sm",code_class="2xx",outcome="success",route="sm"} 1"#
    ));
    h.shutdown().await;
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let h = Harness::start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = client
        .post(h.url("/v1/predict/hf"))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    h.shutdown().await;
}

/// A loopback server that answers every request with the same raw HTTP
/// response, for upstream answers the emulators do not give.
async fn fixed_upstream(response: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                // Read the head and the declared body, then answer.
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn unknown_sagemaker_endpoint_is_upstream_rejected() {
    let config = common::CONFIG.replacen(
        "endpoint_name = \"flan-t5-small\"",
        "endpoint_name = \"no-such-endpoint\"",
        1,
    );
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["x-infergate-attempts"], "1");
    let e = error_json(res).await;
    assert_eq!(e["type"], "upstream_rejected");
    assert_eq!(e["upstream_status"], 400);
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("Endpoint no-such-endpoint of account 123456789012 not found."));
    assert!(!e["upstream_request_id"].as_str().unwrap().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn persistent_internal_failure_is_upstream_error() {
    let h = Harness::start().await;
    h.sm.faults().set(FaultConfig {
        error_rate: 1.0,
        error: InjectedError::InternalFailure,
        ..FaultConfig::default()
    });
    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 502);
    assert_eq!(
        res.headers()["x-infergate-attempts"],
        "3",
        "InternalFailure is retried"
    );
    let e = error_json(res).await;
    assert_eq!(e["type"], "upstream_error");
    assert_eq!(e["upstream_status"], 500);
    h.shutdown().await;
}

#[tokio::test]
async fn an_answer_of_the_wrong_shape_is_upstream_protocol_error() {
    let addr = fixed_upstream(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\nconnection: close\r\n\r\n[1, 2, 3]",
    )
    .await;
    let config = common::CONFIG.replace(
        "endpoint_url = \"${JS_URL}\"",
        &format!("endpoint_url = \"http://{addr}\""),
    );
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    let res = h.predict("js", BODY).await;
    assert_eq!(res.status(), 502);
    let e = error_json(res).await;
    assert_eq!(e["type"], "upstream_protocol_error");
    h.shutdown().await;
}

#[tokio::test]
async fn no_aws_credentials_is_credentials_unavailable_and_fails_over() {
    use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
    #[derive(Debug)]
    struct Nothing;
    impl ProvideCredentials for Nothing {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "internal-detail-canary: role arn:aws:iam::123456789012:role/x",
            )))
        }
    }
    let h = Harness::with(Setup {
        credentials: Some(aws_credential_types::provider::SharedCredentialsProvider::new(Nothing)),
        ..Setup::default()
    })
    .await;
    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 502);
    let e = error_json(res).await;
    assert_eq!(e["type"], "credentials_unavailable");
    assert!(!e.to_string().contains("internal-detail-canary"), "{e}");
    assert_eq!(h.sm.counters().requests(), 0);
    // The route with a second backend is served by it.
    for _ in 0..5 {
        let res = h.predict("both", BODY).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-infergate-backend"], "hf");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn per_try_timeout_fails_over_and_alone_is_upstream_timeout() {
    let config = common::CONFIG
        .replace(
            "[routes.both]\n",
            "[routes.both]\nper_try_timeout = \"200ms\"\nbalance = \"priority\"\n",
        )
        .replace(
            "[routes.sm]\n",
            "[routes.sm]\nper_try_timeout = \"100ms\"\n",
        );
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(2));
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");

    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 504);
    assert_eq!(res.headers()["x-infergate-attempts"], "3");
    assert_eq!(error_json(res).await["type"], "upstream_timeout");
    h.shutdown().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = common::CONFIG.replace("[routes.hf]\n", "[routes.hf]\ntimeout = \"300ms\"\n");
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"POST /v1/predict/hf HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"inputs\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&answer).contains("request_timeout") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway answered");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""type":"request_timeout""#), "{text}");
    assert_eq!(h.hf.counters().requests(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_non_ascii_content_type_is_the_clients_400() {
    let h = Harness::start().await;
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(b"application/json; x=\xe9").unwrap(),
        )
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let e = error_json(res).await;
    assert_eq!(e["type"], "bad_request");
    assert_eq!(e["message"], "header content-type must be visible ASCII");
    assert_eq!(h.sm.counters().requests(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn idle_client_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = common::CONFIG.replace(
        "shutdown_grace = \"1s\"\n",
        "shutdown_grace = \"1s\"\nidle_timeout = \"200ms\"\n",
    );
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer, then the server closes the idle keep-alive connection.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut all = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the idle connection was closed");
    assert!(String::from_utf8_lossy(&closed).starts_with("HTTP/1.1 200"));
    h.shutdown().await;
}

#[tokio::test]
async fn oversized_headers_get_the_json_error_shape() {
    let h = Harness::start().await;
    let res = h
        .client
        .post(h.url("/v1/predict/hf"))
        .header("x-big", "a".repeat(70 * 1024))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);
    let e = error_json(res).await;
    assert_eq!(e["type"], "headers_too_large");
    assert_eq!(h.hf.counters().requests(), 0);
    h.shutdown().await;
}

/// The state `/v1/routes` reports for a backend of a route.
async fn backend_state(h: &Harness, route: &str, backend: &str) -> String {
    let routes: Value = h
        .client
        .get(h.url("/v1/routes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == route)
        .and_then(|r| {
            r["backends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["name"] == backend)
        })
        .map(|b| b["state"].as_str().unwrap().to_string())
        .unwrap()
}

#[tokio::test]
async fn active_health_checks_take_a_failing_endpoint_out_and_back() {
    let config = common::CONFIG.replace(
        "token = \"${HF_TOKEN}\"\n",
        "token = \"${HF_TOKEN}\"\nhealth_check_interval = \"50ms\"\nhealth_check_timeout = \"1s\"\n",
    );
    let h = Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await;
    // The check fails (the endpoint now refuses the token): unhealthy.
    h.hf.set_token(Some("rotated-elsewhere".into()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backend_state(&h, "both", "hf").await != "unhealthy" {
        assert!(tokio::time::Instant::now() < deadline, "never unhealthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = h.hf.counters().requests();
    for _ in 0..10 {
        let res = h.predict("both", BODY).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-infergate-backend"], "sm");
    }
    // Only health checks reached hf, no predictions.
    let seen: Vec<String> =
        h.hf.counters()
            .recent()
            .into_iter()
            .skip(before as usize)
            .map(|r| r.path)
            .collect();
    assert!(seen.iter().all(|p| p == "/health"), "{seen:?}");
    // The check passes again: back in rotation.
    h.hf.set_token(Some(HF_TOKEN.into()));
    while backend_state(&h, "both", "hf").await != "available" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never available again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.shutdown().await;
}
