//! Certificates the gateway must refuse: one from a CA it was not told to
//! trust, one for another host name, and the test CA when no `tls_ca_file`
//! names it. Each is a connect failure (`upstream_unreachable`, a message
//! that says TLS), tried no more often than the route's attempts. These
//! need the gateway's rustls client.

use crate::common::tls::{LeafFiles, Pki};
use crate::common::{error_json, wait_for, BODY};
use crate::support::{
    ca_line, hf_config, hf_https, localhost, predict, serve, sm_config, sm_https,
};
use infergate::emulator::EmulatorHandle;

/// The route's `attempts` in [`hf_config`] and [`sm_config`].
const ATTEMPTS: u64 = 2;

/// One request to `route`, refused: its error, and the handshakes the
/// emulator saw fail, no more than the attempts made.
async fn refused(emu: &EmulatorHandle, config: &str, route: &str) -> serde_json::Value {
    let gw = serve(config).await;
    let res = predict(&gw.base, route, BODY).await;
    assert_eq!(res.status(), 502);
    let attempts: u64 = res.headers()["x-infergate-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let e = error_json(res).await;
    gw.stop().await;

    assert_eq!(e["type"], "upstream_unreachable", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("TLS"), "{message}");
    assert_eq!(e["route"], route);
    assert_eq!(e["backend"], route);
    assert!(e["request_id"].is_string());

    // Every attempt was one connection whose handshake failed; none retried
    // behind the route's back.
    assert!((1..=ATTEMPTS).contains(&attempts), "{attempts} attempts");
    let c = emu.connections();
    wait_for("every refused handshake", || {
        c.handshake_failures() == c.accepted()
    })
    .await;
    assert_eq!(c.accepted(), attempts);
    assert_eq!(c.handshakes(), 0);
    assert_eq!(emu.counters().requests(), 0);
    e
}

async fn hf_serving(leaf: &LeafFiles) -> EmulatorHandle {
    hf_https(leaf.options()).await
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let pki = Pki::new();
    let emu = hf_serving(&pki.untrusted_leaf).await;
    let config = hf_config(&localhost(&emu), &ca_line(&pki.ca), "");
    refused(&emu, &config, "hf").await;
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let pki = Pki::new();
    let emu = hf_serving(&pki.wrong_host).await;
    let config = hf_config(&localhost(&emu), &ca_line(&pki.ca), "");
    refused(&emu, &config, "hf").await;
}

#[tokio::test]
async fn the_test_ca_is_not_trusted_unless_named() {
    let pki = Pki::new();
    let emu = hf_serving(&pki.leaf).await;
    refused(&emu, &hf_config(&localhost(&emu), "", ""), "hf").await;
}

#[tokio::test]
async fn a_backends_own_ca_file_replaces_the_upstream_one() {
    // The backend trusts only the untrusted CA, so the gateway-wide CA,
    // which signed the leaf, must not count for it.
    let pki = Pki::new();
    let emu = sm_https(pki.leaf.options()).await;
    let config = sm_config(
        &localhost(&emu),
        &ca_line(&pki.ca),
        &ca_line(&pki.untrusted_ca),
    );
    refused(&emu, &config, "sm").await;
}

#[tokio::test]
async fn a_refused_certificate_is_not_tried_again_on_the_same_backend() {
    // The route allows two attempts on its one backend; a certificate that
    // was refused once would be refused again, so only one is made.
    let pki = Pki::new();
    let emu = hf_serving(&pki.untrusted_leaf).await;
    let gw = serve(&hf_config(&localhost(&emu), &ca_line(&pki.ca), "")).await;
    let res = predict(&gw.base, "hf", BODY).await;
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["x-infergate-attempts"], "1");
    gw.stop().await;
    let c = emu.connections();
    wait_for("the refused handshake", || c.handshake_failures() == 1).await;
    assert_eq!(c.accepted(), 1);
}
