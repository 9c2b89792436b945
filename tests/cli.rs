//! The `infergate` binary as a user runs it: `check`, `serve`, `demo`,
//! `healthcheck`, and what reaches its logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_infergate");

fn write_temp(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "infergate-cli-test-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("INFERGATE_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_example_config() {
    let (code, stdout, stderr) = run(
        &["check", "--config", "config/infergate.example.toml"],
        &[("HF_TOKEN", "hf_example")],
    );
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("flan"), "{stdout}");
    assert!(
        !stdout.contains("hf_example"),
        "the summary never prints a token"
    );
}

#[test]
fn check_lists_every_error_with_its_key_path() {
    let path = write_temp(
        "bad.toml",
        r#"
[server]
listn = "127.0.0.1:8080"

[backends.sm-flan]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"

[backends.hf-flan]
kind = "huggingface"
url = "https://example.invalid"

[routes.flan]
backends = ["sm-flan", "hf-flann"]
"#,
    );
    let (code, stdout, stderr) = run(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "stdout: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.contains(&r#"routes.flan.backends[1]: unknown backend "hf-flann""#),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("server.listn: ")),
        "{stderr}"
    );
    assert!(lines[0].contains("has 2 errors"), "{stderr}");
}

#[test]
fn check_reads_infergate_config_from_the_environment() {
    let path = write_temp(
        "env.toml",
        r#"
[backends.hf]
kind = "huggingface"
url = "${HF_URL:-https://example.invalid}"
[routes.r]
backends = ["hf"]
"#,
    );
    let (code, _stdout, stderr) = run(&["check"], &[("INFERGATE_CONFIG", path.to_str().unwrap())]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn serve_refuses_to_start_on_invalid_config() {
    let path = write_temp(
        "invalid.toml",
        r#"
[backends.hf]
kind = "huggingface"
url = "${MISSING_URL_FOR_TEST}"
[routes.r]
backends = ["hf"]
"#,
    );
    let mut child = Command::new(BIN)
        .args(["serve", "--config", path.to_str().unwrap()])
        .env_remove("MISSING_URL_FOR_TEST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("serve exited");
    assert_eq!(status, 1);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr
            .contains(r#"backends.hf.url: environment variable "MISSING_URL_FOR_TEST" is not set"#),
        "{stderr}"
    );
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// A child process whose output lines are collected as they come.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    rx: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(mut cmd: Command, from_stdout: bool) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (stream, notify) in [
            (Box::new(stdout) as Box<dyn Read + Send>, from_stdout),
            (Box::new(stderr) as Box<dyn Read + Send>, !from_stdout),
        ] {
            let lines = lines.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line.clone());
                    if notify {
                        let _ = tx.send(line);
                    }
                }
            });
        }
        Self { child, lines, rx }
    }

    /// Waits for a line containing `needle` on the watched stream.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => panic!(
                    "no line with {needle:?}; output so far:\n{}",
                    self.lines.lock().unwrap().join("\n")
                ),
            }
        }
    }

    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        let out = self.lines.lock().unwrap().join("\n");
        out
    }
}

#[tokio::test]
async fn demo_serves_the_flan_route_and_healthcheck_sees_it() {
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--listen", "127.0.0.1:0"]);
    let demo = Running::spawn(cmd, true);
    let line = demo.wait_for("gateway listening on ");
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
    let out = demo.stop();
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
    let mut gw = Running::spawn(cmd, false);
    let line = gw.wait_for("infergate listening");
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
    let out = gw.stop();
    assert_eq!(out.matches("draining connections").count(), 1, "{out}");
    // Every request's access line was written before the exit.
    assert_eq!(out.matches("infergate::access").count(), 12, "{out}");
}

/// Canary secrets sent through every path never reach the logs, even at
/// debug level: the HF token, the AWS secret key and session token, and the
/// client's own key.
#[tokio::test]
async fn no_secret_reaches_the_logs_at_debug_level() {
    use infergate::emulator::{self, Credential, InjectedError};

    const AWS_SECRET: &str = "canary-aws-secret-0d9e";
    const AWS_TOKEN: &str = "canary-aws-session-token-5b1c";
    const HF_SECRET: &str = "hf_canary_token_77aa";
    const CLIENT_KEY: &str = "canary-client-key-31f0";

    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut sm_opts = common::sm_options(emulator::ModelFormat::Tgi);
    sm_opts.credentials = vec![(
        "ASIACANARYKEY".into(),
        Credential {
            secret_access_key: AWS_SECRET.into(),
            session_token: Some(AWS_TOKEN.into()),
        },
    )];
    let sm = emulator::sagemaker::start(loopback, sm_opts).await.unwrap();
    let hf = emulator::huggingface::start(
        loopback,
        emulator::HuggingFaceOptions {
            token: Some(HF_SECRET.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let config = write_temp(
        "canary.toml",
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "{}"
[backends.hf]
kind = "huggingface"
url = "{}"
token = "${{CANARY_HF_TOKEN}}"
[routes.sm]
backends = ["sm"]
[routes.hf]
backends = ["hf"]
"#,
            sm.url(),
            hf.url()
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--log-level",
        "debug",
        "serve",
        "--config",
        config.to_str().unwrap(),
    ])
    .env("AWS_ACCESS_KEY_ID", "ASIACANARYKEY")
    .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    .env("AWS_SESSION_TOKEN", AWS_TOKEN)
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("CANARY_HF_TOKEN", HF_SECRET);
    let gw = Running::spawn(cmd, false);
    let line = gw.wait_for("infergate listening");
    let addr = line
        .split("listen=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let send = |route: &str| {
        client
            .post(format!("{base}/v1/predict/{route}"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {CLIENT_KEY}"))
            .header("x-api-key", CLIENT_KEY)
            .body(r#"{"inputs": "canary"}"#)
            .send()
    };
    // Success on both backends.
    assert_eq!(send("sm").await.unwrap().status(), 200);
    assert_eq!(send("hf").await.unwrap().status(), 200);
    // Retries, then failure.
    sm.faults().fail_next(1, InjectedError::ThrottlingException);
    assert_eq!(send("sm").await.unwrap().status(), 200);
    // Auth failures on both backends.
    hf.set_token(Some("another-token".into()));
    let res = send("hf").await.unwrap();
    assert_eq!(res.status(), 502);
    let body = res.text().await.unwrap();
    sm.set_credentials(vec![]);
    sm.set_credentials(vec![(
        "ASIACANARYKEY".into(),
        Credential {
            secret_access_key: "another-secret".into(),
            session_token: Some(AWS_TOKEN.into()),
        },
    )]);
    let res = send("sm").await.unwrap();
    assert_eq!(res.status(), 502);
    let body2 = res.text().await.unwrap();
    // A model error.
    sm.set_credentials(vec![]);
    sm.faults().fail_next(
        1,
        InjectedError::ModelError {
            original_status: 400,
        },
    );
    assert_eq!(send("sm").await.unwrap().status(), 400);

    let logs = gw.stop();
    assert!(
        logs.contains("request"),
        "access log lines are written: {logs}"
    );
    for canary in [AWS_SECRET, AWS_TOKEN, HF_SECRET, CLIENT_KEY, "Signature="] {
        assert!(
            !logs.contains(canary),
            "{canary} leaked into the logs:\n{logs}"
        );
        assert!(
            !body.contains(canary) && !body2.contains(canary),
            "{canary} leaked into an error body"
        );
    }
}

/// The listening address from the gateway's start line, text or JSON.
fn listen_addr(line: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return v["listen"].as_str().unwrap().to_string();
    }
    line.split("listen=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Canary secrets through every path — successes, retries and failovers,
/// auth failures, streams whole and broken, model errors — at debug level,
/// in both log formats: none reaches the logs, `/metrics`, `/v1/routes` or
/// any body the client gets.
#[tokio::test]
async fn no_secret_reaches_logs_metrics_routes_or_bodies_on_any_path() {
    for format in ["text", "json"] {
        secrets_on_every_path(format).await;
    }
}

async fn secrets_on_every_path(format: &str) {
    use infergate::emulator::{self, Credential, FaultConfig, InjectedError};

    const AWS_SECRET: &str = "canary-aws-secret-6b2f";
    const AWS_TOKEN: &str = "canary-aws-session-token-e41a";
    const HF_SECRET: &str = "hf_canary_token_c9d3";
    const CLIENT_KEY: &str = "canary-client-key-8a7e";
    const CLIENT_COOKIE: &str = "canary-client-cookie-1f5b";
    const CLIENT_PROXY: &str = "canary-proxy-auth-3d90";

    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let aws = |secret: &str| {
        vec![(
            "ASIACANARYKEY".to_string(),
            Credential {
                secret_access_key: secret.into(),
                session_token: Some(AWS_TOKEN.into()),
            },
        )]
    };
    let mut sm_opts = common::sm_options(emulator::ModelFormat::Tgi);
    sm_opts.credentials = aws(AWS_SECRET);
    let sm = emulator::sagemaker::start(loopback, sm_opts).await.unwrap();
    let hf = emulator::huggingface::start(
        loopback,
        emulator::HuggingFaceOptions {
            token: Some(HF_SECRET.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let config = write_temp(
        "canary-paths.toml",
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "{}"
eject_after = 0
[backends.hf]
kind = "huggingface"
url = "{}"
token = "${{CANARY_HF_TOKEN}}"
eject_after = 0
[routes.sm]
backends = ["sm"]
[routes.hf]
backends = ["hf"]
[routes.both]
backends = ["sm", "hf"]
balance = "priority"
"#,
            sm.url(),
            hf.url()
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--log-level",
        "debug",
        "--log-format",
        format,
        "serve",
        "--config",
        config.to_str().unwrap(),
    ])
    .env_remove("RUST_LOG")
    .env_remove("AWS_PROFILE")
    .env("AWS_ACCESS_KEY_ID", "ASIACANARYKEY")
    .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    .env("AWS_SESSION_TOKEN", AWS_TOKEN)
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("CANARY_HF_TOKEN", HF_SECRET);
    let gw = Running::spawn(cmd, false);
    let base = format!(
        "http://{}",
        listen_addr(&gw.wait_for("infergate listening"))
    );
    let client = reqwest::Client::new();
    // Every answer the client gets: status line, headers and body.
    let mut seen: Vec<String> = Vec::new();
    let send = |path: &str| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {CLIENT_KEY}"))
            .header("x-api-key", CLIENT_KEY)
            .header("cookie", format!("session={CLIENT_COOKIE}"))
            .header("proxy-authorization", format!("Basic {CLIENT_PROXY}"))
            .header("x-amz-security-token", CLIENT_KEY)
            .body(r#"{"inputs": "canary words to reverse", "parameters": {"max_new_tokens": 6}}"#)
            .send()
    };
    async fn answer(res: reqwest::Response) -> (u16, String) {
        let status = res.status().as_u16();
        let headers = format!("{:?}", res.headers());
        let body = res.text().await.unwrap();
        (status, format!("{headers}\n{body}"))
    }
    let mut expect = |what: &str, (status, text): (u16, String), want: u16| {
        assert_eq!(status, want, "{what}: {text}");
        seen.push(text);
    };
    let events = |what: &str, text: &str, errors: usize| {
        assert_eq!(
            text.matches("event: error\n").count(),
            errors,
            "{what}: {text}"
        );
    };

    // Success, plain and streamed, on both kinds.
    for route in ["sm", "hf"] {
        expect(
            route,
            answer(send(&format!("/v1/predict/{route}")).await.unwrap()).await,
            200,
        );
        let a = answer(send(&format!("/v1/predict/{route}/stream")).await.unwrap()).await;
        events(route, &a.1, 0);
        expect(route, a, 200);
    }
    // Retries on the same backend and failover, plain and streamed.
    sm.faults().fail_next(1, InjectedError::ThrottlingException);
    expect(
        "sm retry",
        answer(send("/v1/predict/sm").await.unwrap()).await,
        200,
    );
    hf.faults().fail_next(1, InjectedError::Status(503));
    expect(
        "hf retry",
        answer(send("/v1/predict/hf").await.unwrap()).await,
        200,
    );
    sm.faults().fail_next(1, InjectedError::ServiceUnavailable);
    expect(
        "failover",
        answer(send("/v1/predict/both").await.unwrap()).await,
        200,
    );
    sm.faults().fail_next(1, InjectedError::ThrottlingException);
    expect(
        "stream failover",
        answer(send("/v1/predict/both/stream").await.unwrap()).await,
        200,
    );
    // Streams broken after their first events, on both kinds.
    for (route, emu) in [("sm", &sm), ("hf", &hf)] {
        emu.faults().update(|f| f.stream_error_after = Some(2));
        let a = answer(send(&format!("/v1/predict/{route}/stream")).await.unwrap()).await;
        events(route, &a.1, 1);
        expect(route, a, 200);
        emu.faults().set(FaultConfig::default());
    }
    // Errors that persist: retried, then the client's error.
    sm.faults().set(FaultConfig {
        error_rate: 1.0,
        error: InjectedError::InternalFailure,
        ..FaultConfig::default()
    });
    expect(
        "sm 5xx",
        answer(send("/v1/predict/sm").await.unwrap()).await,
        502,
    );
    expect(
        "sm stream 5xx",
        answer(send("/v1/predict/sm/stream").await.unwrap()).await,
        502,
    );
    sm.faults().set(FaultConfig::default());
    // Auth failures on both kinds, plain and streamed, and through failover.
    hf.set_token(Some("another-token".into()));
    expect(
        "hf auth",
        answer(send("/v1/predict/hf").await.unwrap()).await,
        502,
    );
    expect(
        "hf stream auth",
        answer(send("/v1/predict/hf/stream").await.unwrap()).await,
        502,
    );
    sm.set_credentials(aws("another-secret"));
    expect(
        "sm auth",
        answer(send("/v1/predict/sm").await.unwrap()).await,
        502,
    );
    expect(
        "sm stream auth",
        answer(send("/v1/predict/sm/stream").await.unwrap()).await,
        502,
    );
    expect(
        "both auth",
        answer(send("/v1/predict/both").await.unwrap()).await,
        502,
    );
    sm.set_credentials(aws(AWS_SECRET));
    hf.set_token(Some(HF_SECRET.into()));
    // The model's own error, plain and streamed.
    sm.faults().fail_next(
        1,
        InjectedError::ModelError {
            original_status: 400,
        },
    );
    expect(
        "model error",
        answer(send("/v1/predict/sm").await.unwrap()).await,
        400,
    );
    hf.faults().fail_next(1, InjectedError::Status(422));
    expect(
        "stream model error",
        answer(send("/v1/predict/hf/stream").await.unwrap()).await,
        422,
    );
    // The operator endpoints.
    for path in ["/metrics", "/v1/routes", "/healthz", "/readyz"] {
        let res = client.get(format!("{base}{path}")).send().await.unwrap();
        expect(path, answer(res).await, 200);
    }
    let metrics = seen[seen.len() - 4].clone();
    assert!(
        metrics.contains("infergate_stream_errors_total{"),
        "the broken streams were counted: {metrics}"
    );

    let logs = gw.stop();
    assert!(
        logs.contains("attempt failed") && logs.contains("stream failed after it began"),
        "debug and warning lines are written ({format}): {logs}"
    );
    if format == "json" {
        for line in logs.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "not JSON: {line}"
            );
        }
    }
    let bodies = seen.join("\n");
    for canary in [
        AWS_SECRET,
        AWS_TOKEN,
        HF_SECRET,
        CLIENT_KEY,
        CLIENT_COOKIE,
        CLIENT_PROXY,
        "another-secret",
        "another-token",
        "Signature=",
    ] {
        assert!(
            !logs.contains(canary),
            "{canary} leaked into the {format} logs:\n{logs}"
        );
        assert!(
            !bodies.contains(canary),
            "{canary} leaked into an answer, /metrics or /v1/routes:\n{bodies}"
        );
    }
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

/// A config whose values from the environment hold canaries and are
/// invalid: neither `check` nor `serve` prints a value from the
/// environment, only the key paths to fix.
#[test]
fn config_errors_never_print_a_value_from_the_environment() {
    // Each value holds a marker that appears nowhere else.
    let vars: &[(&str, &str, &str)] = &[
        ("CANARY_LISTEN", "zqlistenzq:99999", "zqlistenzq"),
        ("CANARY_TIMEOUT", "zqtimeoutzq", "zqtimeoutzq"),
        ("CANARY_URL", "not a url zqurlzq", "zqurlzq"),
        (
            "CANARY_URL_CREDS",
            "https://user:zqpasswordzq@example.invalid",
            "zqpasswordzq",
        ),
        (
            "CANARY_URL_QUERY",
            "https://example.invalid/?key=zqqueryzq",
            "zqqueryzq",
        ),
        ("CANARY_TOKEN", "hf_zqtokenzq with spaces", "zqtokenzq"),
        ("CANARY_KIND", "zqkindzq", "zqkindzq"),
        ("CANARY_REGION", "zq region zq", "zq region zq"),
        ("CANARY_ENDPOINT", "zqendpointzq/x y", "zqendpointzq"),
        ("CANARY_FORMAT", "zqformatzq", "zqformatzq"),
        ("CANARY_FIPS", "zqfipszq", "zqfipszq"),
        (
            "CANARY_EXTERNAL_ID",
            "zq external id zq",
            "zq external id zq",
        ),
        ("CANARY_ROLE", "zqrolezq", "zqrolezq"),
        ("CANARY_VARIANT", "zqvariantzq\u{7f}", "zqvariantzq"),
        ("CANARY_HC_PATH", "zqhealthzq", "zqhealthzq"),
        ("CANARY_BALANCE", "zqbalancezq", "zqbalancezq"),
        ("CANARY_BACKEND_REF", "zqbackendzq", "zqbackendzq"),
        ("CANARY_PER_TRY", "zqpertryzq", "zqpertryzq"),
    ];
    let envs: Vec<(&str, &str)> = vars.iter().map(|(k, v, _)| (*k, *v)).collect();
    let path = write_temp(
        "canary-invalid.toml",
        r#"
[server]
listen = "${CANARY_LISTEN}"
request_timeout = "${CANARY_TIMEOUT}"

[backends.hf-bad-url]
kind = "huggingface"
url = "${CANARY_URL}"
token = "${CANARY_TOKEN}"

[backends.hf-creds]
kind = "huggingface"
url = "${CANARY_URL_CREDS}"
health_check_interval = "10s"
health_check_path = "${CANARY_HC_PATH}"

[backends.hf-query]
kind = "huggingface"
url = "${CANARY_URL_QUERY}"

[backends.who]
kind = "${CANARY_KIND}"

[backends.sm]
kind = "sagemaker"
endpoint_name = "${CANARY_ENDPOINT}"
region = "${CANARY_REGION}"
format = "${CANARY_FORMAT}"
fips = "${CANARY_FIPS}"
external_id = "${CANARY_EXTERNAL_ID}"
role_arn = "${CANARY_ROLE}"
target_variant = "${CANARY_VARIANT}"

[routes.r]
backends = ["hf-bad-url", "${CANARY_BACKEND_REF}"]
balance = "${CANARY_BALANCE}"
per_try_timeout = "${CANARY_PER_TRY}"
"#,
    );
    let config = path.to_str().unwrap();
    let (code, stdout, stderr) = run(&["check", "--config", config], &envs);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    // Every bad key is reported, by its path.
    for key in [
        "server.listen:",
        "server.request_timeout:",
        "backends.hf-bad-url.url:",
        "backends.hf-bad-url.token:",
        "backends.hf-creds.url:",
        "backends.hf-creds.health_check_path:",
        "backends.hf-query.url:",
        "backends.who.kind:",
        "backends.sm.endpoint_name:",
        "backends.sm.region:",
        "backends.sm.format:",
        "backends.sm.fips:",
        "backends.sm.role_arn:",
        "backends.sm.external_id:",
        "backends.sm.target_variant:",
        "routes.r.backends[1]:",
        "routes.r.balance:",
        "routes.r.per_try_timeout:",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(key)),
            "no error for {key}:\n{stderr}"
        );
    }

    let mut cmd = Command::new(BIN);
    cmd.args(["--log-level", "trace", "serve", "--config", config])
        .env_remove("INFERGATE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let serve_out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(serve_out.contains("routes.r.balance:"), "{serve_out}");

    for (_, _, marker) in vars {
        for (what, text) in [
            ("check stdout", &stdout),
            ("check stderr", &stderr),
            ("serve", &serve_out),
        ] {
            assert!(
                !text.contains(marker),
                "{marker:?} printed by {what}:\n{text}"
            );
        }
    }
    assert!(!stderr.contains("zq") && !serve_out.contains("zq"));
}
