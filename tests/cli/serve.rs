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
    let line = demo.wait_for_line("demo client's API key: ");
    let key = line.rsplit(' ').next().unwrap().to_string();
    let client = reqwest::Client::new();
    // Without the printed key, the route is not served.
    let res = client
        .post(format!("{base}/v1/predict/flan"))
        .body(r#"{"inputs": "no key"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let mut backends = std::collections::HashSet::new();
    for _ in 0..20 {
        let res = client
            .post(format!("{base}/v1/predict/flan"))
            .bearer_auth(&key)
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
    // Every request's access line was written before the exit, in the
    // subscriber's text shape.
    let access: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("infergate::access"))
        .collect();
    assert_eq!(access.len(), 12, "{out}");
    for line in access {
        assert!(
            line.contains("  INFO infergate::access: request request_id=")
                && line.contains(" route=\"hf\" backend=\"hf\" status=200 attempts=1 ")
                && line.ends_with(" complete=true"),
            "{line}"
        );
    }
}

/// A gateway with `workers` workers in front of `hf`, its log filter and
/// format from `envs`, started and listening: the child and its address.
fn hf_gateway(hf_url: &str, workers: usize, envs: &[(&str, &str)]) -> (Running, String) {
    let config = write_temp(
        "access.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = {workers}\nshutdown_grace = \"5s\"\n\
             [backends.hf]\nkind = \"huggingface\"\nurl = \"{hf_url}\"\n\
             [routes.hf]\nbackends = [\"hf\"]\n"
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env_remove("INFERGATE_LOG_LEVEL")
        .env_remove("INFERGATE_LOG_FORMAT");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let gw = Running::spawn(cmd, Stream::Stderr);
    let line = gw.wait_for_line("infergate listening");
    let base = format!("http://{}", listen_addr(&line));
    (gw, base)
}

/// Sends `ids.len()` requests, each on a new connection (the kernel picks
/// the worker), with those request ids.
async fn send_each(base: &str, ids: &[String]) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for id in ids {
        let res = client
            .post(format!("{base}/v1/predict/hf"))
            .header("content-type", "application/json")
            .header("x-request-id", id)
            .body(r#"{"inputs": "a b"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
    }
}

/// SIGTERM, then the exit code once the child has drained.
fn terminate(gw: &mut Running) -> Option<i32> {
    let pid = gw.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let code = wait_timeout(&mut gw.child, Duration::from_secs(15));
    gw.stop();
    code
}

/// Access lines are batched per worker: one shows up while the gateway
/// runs (the periodic flush), and a clean stop writes every line still
/// batched, so N requests leave exactly N lines, each valid JSON.
#[tokio::test]
async fn a_clean_stop_loses_no_access_line() {
    use infergate::emulator;
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let hf = emulator::huggingface::start(loopback, emulator::HuggingFaceOptions::default())
        .await
        .unwrap();
    let (mut gw, base) = hf_gateway(
        &hf.url(),
        2,
        &[("INFERGATE_LOG_FORMAT", "json"), ("RUST_LOG", "info")],
    );
    let ids: Vec<String> = (0..40).map(|i| format!("stop-{i}")).collect();
    let is_access = |l: &String| l.contains(r#""target":"infergate::access""#);
    send_each(&base, &ids[..1]).await;
    gw.wait_for("the first access line, before any stop", |lines| {
        lines.iter().any(is_access)
    })
    .await;
    // The rest, then the stop at once: lines still in a batch must not be lost.
    send_each(&base, &ids[1..]).await;
    assert_eq!(terminate(&mut gw), Some(0), "{}", gw.output());
    let lines = gw.lines();
    let mut logged: Vec<String> = lines
        .iter()
        .filter(|l| is_access(l))
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            assert_eq!(v["status"], 200, "{l}");
            v["request_id"].as_str().unwrap().to_string()
        })
        .collect();
    logged.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(logged, expected, "{}", gw.output());
    // Whole lines only: nothing else on stderr came out cut or joined.
    for l in &lines {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
    }
}

/// The log filter still governs access lines: off for their target, on for
/// the rest.
#[tokio::test]
async fn the_log_filter_turns_access_lines_off() {
    use infergate::emulator;
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let hf = emulator::huggingface::start(loopback, emulator::HuggingFaceOptions::default())
        .await
        .unwrap();
    let (mut gw, base) = hf_gateway(&hf.url(), 1, &[("RUST_LOG", "info,infergate::access=off")]);
    let ids: Vec<String> = (0..5).map(|i| format!("off-{i}")).collect();
    send_each(&base, &ids).await;
    assert_eq!(terminate(&mut gw), Some(0), "{}", gw.output());
    let out = gw.output();
    assert!(out.contains("draining connections"), "{out}");
    assert!(!out.contains("infergate::access"), "{out}");
}
