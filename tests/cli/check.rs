//! `check` and `serve` on configs with errors: every error by its key
//! path, and never a value from the environment.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::child::{run, wait_timeout, write_temp, BIN};

#[test]
fn check_accepts_the_example_config() {
    let (code, stdout, stderr) = run(
        &["check", "--config", "config/infergate.example.toml"],
        &[
            ("HF_TOKEN", "hf_example"),
            ("WEB_APP_KEY", "web-app-key-example"),
        ],
    );
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("flan"), "{stdout}");
    assert!(
        !stdout.contains("hf_example") && !stdout.contains("web-app-key-example"),
        "the summary never prints a token or a key"
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
