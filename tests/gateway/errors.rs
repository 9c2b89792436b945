//! The JSON error contract: each way an upstream or a request goes wrong
//! gets its status and error `type`.

use crate::common::net::{raw_upstream, refusing_port};
use crate::common::{error_json, patch, patch_first, Harness, BODY, CONFIG};
use infergate::emulator::{FaultConfig, InjectedError};

#[tokio::test]
async fn unreachable_backend_is_a_502() {
    // A port nothing listens on, held so that nothing can meanwhile.
    let (_held, port) = refusing_port();
    let config = patch(
        CONFIG,
        "url = \"${HF_URL}\"",
        &format!("url = \"http://127.0.0.1:{port}\""),
    );
    let h = Harness::with_config(config).await;
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
async fn unknown_sagemaker_endpoint_is_upstream_rejected() {
    let config = patch_first(
        CONFIG,
        "endpoint_name = \"flan-t5-small\"",
        "endpoint_name = \"no-such-endpoint\"",
    );
    let h = Harness::with_config(config).await;
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
    let (addr, _) = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\nconnection: close\r\n\r\n[1, 2, 3]",
    )
    .await;
    let config = patch(
        CONFIG,
        "endpoint_url = \"${JS_URL}\"",
        &format!("endpoint_url = \"http://{addr}\""),
    );
    let h = Harness::with_config(config).await;
    let res = h.predict("js", BODY).await;
    assert_eq!(res.status(), 502);
    let e = error_json(res).await;
    assert_eq!(e["type"], "upstream_protocol_error");
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
