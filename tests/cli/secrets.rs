//! Canary secrets sent through every path never reach the logs (even at
//! debug level), `/metrics`, `/v1/routes` or any answer.

use std::path::Path;
use std::process::Command;

use crate::common::child::{listen_addr, write_temp, Running, Stream, BIN};
use crate::common::{binary_config, with_backend_keys};
use infergate::emulator::{self, Credential, EmulatorHandle};

/// The only credentials the SageMaker emulator accepts: the canary key id
/// with `secret` and session `token`.
fn canary_aws(secret: &str, token: &str) -> Vec<(String, Credential)> {
    vec![(
        "ASIACANARYKEY".to_string(),
        Credential {
            secret_access_key: secret.into(),
            session_token: Some(token.into()),
        },
    )]
}

/// Both emulators, taking only the canary credentials and token.
async fn canary_emulators(
    aws_secret: &str,
    aws_token: &str,
    hf_token: &str,
) -> (EmulatorHandle, EmulatorHandle) {
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut sm_opts = crate::common::sm_options(emulator::ModelFormat::Tgi);
    sm_opts.credentials = canary_aws(aws_secret, aws_token);
    let sm = emulator::sagemaker::start(loopback, sm_opts).await.unwrap();
    let hf = emulator::huggingface::start(
        loopback,
        emulator::HuggingFaceOptions {
            token: Some(hf_token.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (sm, hf)
}

/// `serve` at debug level with `config` and `args`, the canaries in its
/// environment as the AWS chain and `CANARY_HF_TOKEN`.
fn serve(
    config: &Path,
    args: &[&str],
    aws_secret: &str,
    aws_token: &str,
    hf_token: &str,
) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--log-level", "debug"])
        .args(args)
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", "ASIACANARYKEY")
        .env("AWS_SECRET_ACCESS_KEY", aws_secret)
        .env("AWS_SESSION_TOKEN", aws_token)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CANARY_HF_TOKEN", hf_token);
    cmd
}

/// One request to the SageMaker door signed with the client's AWS key,
/// which must succeed, and one with a wrong secret: the refusal's body.
async fn door_answers(base: &str, secret: &str) -> String {
    use aws_sdk_sagemakerruntime::primitives::Blob;
    let call = |secret: &str| {
        crate::common::sdk::sdk_client(base, "AKIACANARYCLIENT0001", secret, None)
            .invoke_endpoint()
            .endpoint_name("hf")
            .content_type("application/json")
            .body(Blob::new(r#"{"inputs": "canary"}"#))
            .send()
    };
    let ok = call(secret).await;
    assert!(ok.is_ok(), "{ok:?}");
    let refused = call("not-the-secret").await.unwrap_err();
    let raw = refused.raw_response().expect("an answer");
    assert_eq!(raw.status().as_u16(), 403);
    String::from_utf8_lossy(raw.body().bytes().unwrap_or_default()).into_owned()
}

/// Canary secrets sent through every path never reach the logs, even at
/// debug level: the HF token, the AWS secret key and session token, and the
/// client's own key.
#[tokio::test]
async fn no_secret_reaches_the_logs_at_debug_level() {
    use infergate::emulator::InjectedError;

    const AWS_SECRET: &str = "canary-aws-secret-0d9e";
    const AWS_TOKEN: &str = "canary-aws-session-token-5b1c";
    const HF_SECRET: &str = "hf_canary_token_77aa";
    const CLIENT_KEY: &str = "canary-client-key-31f0";
    const CLIENT_AWS_SECRET: &str = "canary-client-aws-secret-9c2e";
    const REDIS_PASSWORD: &str = "canary-redis-password-4e1d";

    let (sm, hf) = canary_emulators(AWS_SECRET, AWS_TOKEN, HF_SECRET).await;
    // The client key is a configured client's: it is checked on every
    // request, and a wrong one is refused, without either reaching a log.
    // Its AWS secret is read from the environment; the limits' Redis (with
    // a password in its URL) cannot be reached, so its errors are logged.
    let text = binary_config(&sm.url(), &hf.url(), "CANARY_HF_TOKEN");
    let text = format!(
        "{text}\n[clients.canary]\napi_key = \"{CLIENT_KEY}\"\nadmin = true\n\
         rate_limit = {{ requests_per_second = 100, burst = 100 }}\n\
         aws_access_key_id = \"AKIACANARYCLIENT0001\"\n\
         aws_secret_access_key = \"${{CANARY_CLIENT_AWS_SECRET}}\"\n\
         [rate_limits]\nstore = \"redis\"\ntimeout = \"100ms\"\n\
         redis_url = \"redis://:{REDIS_PASSWORD}@127.0.0.1:1\"\n"
    );
    let config = write_temp("canary.toml", &text);
    let mut cmd = serve(&config, &[], AWS_SECRET, AWS_TOKEN, HF_SECRET);
    cmd.env("CANARY_CLIENT_AWS_SECRET", CLIENT_AWS_SECRET);
    let mut gw = Running::spawn(cmd, Stream::Stderr);
    let addr = listen_addr(&gw.wait_for_line("infergate listening"));
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
    // A key one character off.
    let res = client
        .post(format!("{base}/v1/predict/hf"))
        .header("authorization", format!("Bearer {CLIENT_KEY}0"))
        .body(r#"{"inputs": "canary"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let refused = res.text().await.unwrap();
    assert!(!refused.contains(CLIENT_KEY), "{refused}");
    // The SageMaker door, signed with the client's AWS key, then with a
    // wrong secret (a mismatch: AWS would quote the canonical request).
    let door = door_answers(&base, CLIENT_AWS_SECRET).await;
    // Retries, then failure.
    sm.faults().fail_next(1, InjectedError::ThrottlingException);
    assert_eq!(send("sm").await.unwrap().status(), 200);
    // Auth failures on both backends.
    hf.set_token(Some("another-token".into()));
    let res = send("hf").await.unwrap();
    assert_eq!(res.status(), 502);
    let body = res.text().await.unwrap();
    sm.set_credentials(vec![]);
    sm.set_credentials(canary_aws("another-secret", AWS_TOKEN));
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
    let operator = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(CLIENT_KEY)
            .send()
    };
    let metrics = operator("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("infergate_ratelimit_store_errors_total"));
    let routes = operator("/v1/routes").await.unwrap().text().await.unwrap();

    gw.stop();
    let logs = gw.output();
    assert!(
        logs.contains("request"),
        "access log lines are written: {logs}"
    );
    assert!(
        logs.contains("no decision from the store"),
        "the store's errors are logged: {logs}"
    );
    for canary in [
        AWS_SECRET,
        AWS_TOKEN,
        HF_SECRET,
        CLIENT_KEY,
        CLIENT_AWS_SECRET,
        REDIS_PASSWORD,
        "Signature=",
    ] {
        assert!(
            !logs.contains(canary),
            "{canary} leaked into the logs:\n{logs}"
        );
        for (what, text) in [
            ("an error body", &body),
            ("an error body", &body2),
            ("the 401", &refused),
            ("the SageMaker door's refusal", &door),
            ("/metrics", &metrics),
            ("/v1/routes", &routes),
        ] {
            assert!(!text.contains(canary), "{canary} leaked into {what}");
        }
    }
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
    use infergate::emulator::{FaultConfig, InjectedError};

    const AWS_SECRET: &str = "canary-aws-secret-6b2f";
    const AWS_TOKEN: &str = "canary-aws-session-token-e41a";
    const HF_SECRET: &str = "hf_canary_token_c9d3";
    const CLIENT_KEY: &str = "canary-client-key-8a7e";
    const CLIENT_COOKIE: &str = "canary-client-cookie-1f5b";
    const CLIENT_PROXY: &str = "canary-proxy-auth-3d90";

    let aws = |secret: &str| canary_aws(secret, AWS_TOKEN);
    let (sm, hf) = canary_emulators(AWS_SECRET, AWS_TOKEN, HF_SECRET).await;
    // Ejection off: every failure below reaches the backend it names.
    let text = binary_config(&sm.url(), &hf.url(), "CANARY_HF_TOKEN");
    let text = with_backend_keys(&text, "sm", "eject_after = 0");
    let text = with_backend_keys(&text, "hf", "eject_after = 0");
    let text =
        format!("{text}[routes.both]\nbackends = [\"sm\", \"hf\"]\nbalance = \"priority\"\n");
    let config = write_temp("canary-paths.toml", &text);
    let mut gw = Running::spawn(
        serve(
            &config,
            &["--log-format", format],
            AWS_SECRET,
            AWS_TOKEN,
            HF_SECRET,
        ),
        Stream::Stderr,
    );
    let base = format!(
        "http://{}",
        listen_addr(&gw.wait_for_line("infergate listening"))
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

    gw.stop();
    let logs = gw.output();
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
