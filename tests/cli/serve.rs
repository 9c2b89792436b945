//! `demo`, `serve` with several workers, and `healthcheck` against them.

use std::process::Command;
use std::time::Duration;

use crate::common::child::{listen_addr, run, wait_timeout, write_temp, Running, Stream, BIN};

#[tokio::test]
async fn demo_serves_the_flan_route_and_healthcheck_sees_it() {
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--listen", "127.0.0.1:0"]);
    let mut demo = Running::spawn(cmd, Stream::Stdout);
    let line = demo.wait_for_line("gateway listening on ");
    let base = line.rsplit(' ').next().unwrap().to_string();
    let client = reqwest::Client::new();
    let mut backends = std::collections::HashSet::new();
    for _ in 0..20 {
        let res = client
            .post(format!("{base}/v1/predict/flan"))
            .header("content-type", "application/json")
            .body(r#"{"inputs": "one stable inference URL"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        backends.insert(
            res.headers()["x-infergate-backend"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(backends.len(), 2, "both demo backends serve: {backends:?}");
    let (code, _, _) = run(&["healthcheck", "--url", &format!("{base}/healthz")], &[]);
    assert_eq!(code, 0);
    demo.stop();
    let out = demo.output();
    assert!(out.contains("curl -i"), "the demo prints curl commands");

    // Nothing listens there any more.
    let (code, _, _) = run(&["healthcheck", "--url", &format!("{base}/healthz")], &[]);
    assert_eq!(code, 1);
}

/// `serve` with several workers: all answer on the one address, and
/// SIGTERM drains them and exits 0, with the drain logged once.
#[tokio::test]
async fn serve_with_workers_answers_and_stops_cleanly_on_sigterm() {
    use infergate::emulator;
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let hf = emulator::huggingface::start(loopback, emulator::HuggingFaceOptions::default())
        .await
        .unwrap();
    let config = write_temp(
        "workers.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 3\nshutdown_grace = \"5s\"\n\
             [backends.hf]\nkind = \"huggingface\"\nurl = \"{}\"\n\
             [routes.hf]\nbackends = [\"hf\"]\n",
            hf.url()
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env("INFERGATE_LOG_LEVEL", "info");
    let mut gw = Running::spawn(cmd, Stream::Stderr);
    let line = gw.wait_for_line("infergate listening");
    assert!(line.contains("workers=3"), "{line}");
    let base = format!("http://{}", listen_addr(&line));
    // A new connection for each request: the kernel picks the worker.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for i in 0..12 {
        let res = client
            .post(format!("{base}/v1/predict/hf"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"inputs": "a{i} b{i}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let pid = gw.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    assert_eq!(
        wait_timeout(&mut gw.child, Duration::from_secs(15)),
        Some(0)
    );
    gw.stop();
    let out = gw.output();
    assert_eq!(out.matches("draining connections").count(), 1, "{out}");
    // Every request's access line was written before the exit.
    assert_eq!(out.matches("infergate::access").count(), 12, "{out}");
}
