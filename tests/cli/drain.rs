//! What SIGTERM does before the drain: `/readyz` answers 503 for
//! `server.shutdown_delay` while the gateway still accepts and serves, so
//! a load balancer (or Kubernetes' endpoint update) stops sending first;
//! then an HTTP/1 answer in flight is sent with `Connection: close`, and
//! the process exits 0. A second signal cuts the delay short.

use std::process::Command;
use std::time::Duration;

use infergate::emulator;

use crate::common::child::{listen_addr, wait_timeout, write_temp, Running, Stream, BIN};
use crate::common::wait::wait_until;

fn gateway(hf_url: &str, delay: &str) -> (Running, String) {
    let config = write_temp(
        "drain.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_delay = \"{delay}\"\nshutdown_grace = \"10s\"\n\
             [backends.hf]\nkind = \"huggingface\"\nurl = \"{hf_url}\"\n\
             [routes.hf]\nbackends = [\"hf\"]\n"
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env("INFERGATE_LOG_LEVEL", "info");
    let gw = Running::spawn(cmd, Stream::Stderr);
    let line = gw.wait_for_line("infergate listening");
    (gw, format!("http://{}", listen_addr(&line)))
}

fn signal(gw: &Running, name: &str) {
    let pid = gw.child.id().to_string();
    let status = Command::new("kill").args([name, &pid]).status().unwrap();
    assert!(status.success());
}

async fn predict(client: &reqwest::Client, base: &str) -> reqwest::Response {
    client
        .post(format!("{base}/v1/predict/hf"))
        .header("content-type", "application/json")
        .body(r#"{"inputs": "a b"}"#)
        .send()
        .await
        .unwrap()
}

async fn readyz(client: &reqwest::Client, base: &str) -> Option<u16> {
    let res = client.get(format!("{base}/readyz")).send().await.ok()?;
    Some(res.status().as_u16())
}

#[tokio::test]
async fn sigterm_turns_readyz_503_while_the_gateway_serves_on_then_drains() {
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let hf = emulator::huggingface::start(loopback, emulator::HuggingFaceOptions::default())
        .await
        .unwrap();
    let (mut gw, base) = gateway(&hf.url(), "2s");
    // One kept-alive connection, and fresh ones: both are served on.
    let kept = reqwest::Client::new();
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert_eq!(readyz(&fresh, &base).await, Some(200));
    assert_eq!(predict(&kept, &base).await.status(), 200);

    signal(&gw, "-TERM");
    wait_until("/readyz answering 503", || async {
        readyz(&fresh, &base).await == Some(503)
    })
    .await;
    // Not ready, and still serving: new connections and the kept one.
    assert_eq!(predict(&fresh, &base).await.status(), 200);
    let res = predict(&kept, &base).await;
    assert_eq!(res.status(), 200);
    // A slow answer begun now ends after the drain began: HTTP/1 says the
    // connection closes after it.
    hf.faults()
        .update(|f| f.latency = Duration::from_millis(3000));
    let res = predict(&kept, &base).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("connection").map(|v| v.to_str().unwrap()),
        Some("close"),
        "{:?}",
        res.headers()
    );
    assert_eq!(res.text().await.unwrap(), r#"[{"generated_text":"b a"}]"#);
    assert_eq!(
        wait_timeout(&mut gw.child, Duration::from_secs(15)),
        Some(0)
    );
    gw.stop();
    let out = gw.output();
    assert!(out.contains("/readyz answers 503"), "{out}");
    assert_eq!(out.matches("draining connections").count(), 1, "{out}");
}

#[tokio::test]
async fn a_second_signal_cuts_the_delay_short() {
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let hf = emulator::huggingface::start(loopback, emulator::HuggingFaceOptions::default())
        .await
        .unwrap();
    let (mut gw, base) = gateway(&hf.url(), "10m");
    let client = reqwest::Client::new();
    signal(&gw, "-TERM");
    wait_until("/readyz answering 503", || async {
        readyz(&client, &base).await == Some(503)
    })
    .await;
    signal(&gw, "-INT");
    // Ten minutes were asked; the second signal ends the wait at once.
    assert_eq!(
        wait_timeout(&mut gw.child, Duration::from_secs(15)),
        Some(0)
    );
    gw.stop();
    assert!(
        gw.output().contains("a second signal: draining now"),
        "{}",
        gw.output()
    );
}
