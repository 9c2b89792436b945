//! Both backend kinds over HTTPS, unary and streamed, trusted through the
//! gateway-wide `upstream.tls_ca_file` or a backend's own `tls_ca_file`
//! (which takes its place). These need the gateway's rustls client.

use crate::common::tls::{Pki, HOST};
use crate::common::{ACCESS_KEY, BODY};
use crate::support::{
    ca_line, hf_config, hf_https, localhost, predict, serve, sm_config, sm_https,
};
use http::Version;
use infergate::emulator::model::{self, Generation};
use serde_json::{json, Value};

/// `/v1/predict/{route}`'s answer to [`BODY`].
fn expected_answer() -> Value {
    let tokens = model::generate("one stable inference URL", Some(8));
    json!([{ "generated_text": model::generated_text(&tokens) }])
}

const STREAM_INPUTS: &str = "a stream over TLS through the gateway";

fn stream_body() -> String {
    json!({"inputs": STREAM_INPUTS, "parameters": {"max_new_tokens": 5}}).to_string()
}

/// The data of each event of an SSE body.
pub fn sse_data(text: &str) -> Vec<String> {
    assert!(
        text.ends_with("\n\n"),
        "the body ends inside an event: {text:?}"
    );
    text.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|block| {
            let line = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .unwrap_or_else(|| panic!("not a data event: {block:?}"));
            line.strip_prefix(' ').unwrap_or(line).to_string()
        })
        .collect()
}

fn expected_events() -> Vec<String> {
    model::generate_stream_events(&Generation::run(STREAM_INPUTS, Some(5)), false)
}

#[tokio::test]
async fn hugging_face_over_https_trusted_through_upstream_ca() {
    let pki = Pki::new();
    let emu = hf_https(pki.leaf.options()).await;
    let gw = serve(&hf_config(&localhost(&emu), &ca_line(&pki.ca), "")).await;

    let res = predict(&gw.base, "hf", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.json::<Value>().await.unwrap(), expected_answer());
    let seen = emu.counters().last().unwrap();
    assert_eq!(seen.path, "/");
    assert_eq!(seen.server_name.as_deref(), Some(HOST));

    let res = predict(&gw.base, "hf/stream", &stream_body()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(sse_data(&res.text().await.unwrap()), expected_events());
    assert_eq!(emu.counters().last().unwrap().path, "/generate_stream");
    assert_eq!(emu.counters().stream_requests(), 1);
    assert_eq!(emu.connections().handshake_failures(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn sagemaker_over_https_trusted_through_its_own_ca() {
    let pki = Pki::new();
    let emu = sm_https(pki.leaf.options()).await;
    // The gateway-wide CA is the wrong one: the backend's own replaces it.
    let config = sm_config(
        &localhost(&emu),
        &ca_line(&pki.untrusted_ca),
        &ca_line(&pki.ca),
    );
    let gw = serve(&config).await;

    let res = predict(&gw.base, "sm", BODY).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let res = predict(&gw.base, "sm", BODY).await;
    assert_eq!(res.json::<Value>().await.unwrap(), expected_answer());
    // The emulator verified the signature, the signed host included.
    assert_eq!(emu.counters().auth_rejections(), 0);
    let seen = emu.counters().last().unwrap();
    assert_eq!(seen.path, "/endpoints/flan-t5-small/invocations");
    assert!(seen.headers["authorization"]
        .to_str()
        .unwrap()
        .contains(ACCESS_KEY));
    assert_eq!(seen.server_name.as_deref(), Some(HOST));
    if seen.version == Version::HTTP_11 {
        let port = emu.addr().port();
        assert_eq!(seen.headers["host"], format!("{HOST}:{port}").as_str());
    }

    let res = predict(&gw.base, "sm/stream", &stream_body()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(sse_data(&res.text().await.unwrap()), expected_events());
    assert_eq!(
        emu.counters().last().unwrap().path,
        "/endpoints/flan-t5-small/invocations-response-stream"
    );
    assert_eq!(emu.counters().auth_rejections(), 0);
    gw.stop().await;
}
