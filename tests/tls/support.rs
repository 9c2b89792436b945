//! HTTPS emulators, a gateway in front of them in-process, and the same as a
//! child process for the proxy tests (a proxy comes from the gateway
//! process's environment, which a test must not change for its siblings).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use crate::common::child::ChildGateway;
use crate::common::{hf_options, sm_options, static_credentials, Served, HF_TOKEN, SECRET_KEY};
use infergate::config::Config;
use infergate::emulator::{self, EmulatorHandle, ModelFormat, TlsOptions};
use infergate::gateway::BuildOptions;

/// The log level of a child gateway here: what it must never log would
/// show at the most it logs.
pub const DEBUG_LOG: (&str, &str) = ("INFERGATE_LOG_LEVEL", "debug");

pub fn loopback() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

/// A Hugging Face emulator (token required) serving `tls`.
pub async fn hf_https(tls: TlsOptions) -> EmulatorHandle {
    emulator::huggingface::start(
        loopback(),
        emulator::HuggingFaceOptions {
            tls: Some(tls),
            ..hf_options()
        },
    )
    .await
    .unwrap()
}

/// A SageMaker emulator (signatures verified) serving `tls`.
pub async fn sm_https(tls: TlsOptions) -> EmulatorHandle {
    emulator::sagemaker::start(
        loopback(),
        emulator::SageMakerOptions {
            tls: Some(tls),
            ..sm_options(ModelFormat::Tgi)
        },
    )
    .await
    .unwrap()
}

/// `https://localhost:PORT`: the certificate's host name, sent as SNI.
pub fn localhost(emu: &EmulatorHandle) -> String {
    emu.url_for("localhost")
}

/// A config with route `hf` on backend `hf` at `url`; `upstream` and
/// `backend` are extra lines for `[upstream]` and `[backends.hf]`.
pub fn hf_config(url: &str, upstream: &str, backend: &str) -> String {
    one_route(
        "hf",
        &format!("kind = \"huggingface\"\nurl = \"{url}\"\ntoken = \"${{HF_TOKEN}}\"\n{backend}"),
        upstream,
    )
}

/// A config with route `sm` on SageMaker backend `sm` at `url`.
pub fn sm_config(url: &str, upstream: &str, backend: &str) -> String {
    one_route(
        "sm",
        &format!(
            "kind = \"sagemaker\"\nendpoint_name = \"flan-t5-small\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{url}\"\n{backend}"
        ),
        upstream,
    )
}

/// Route `name` (two attempts) on backend `name`, whose table holds
/// `backend`; `upstream` goes in `[upstream]`.
fn one_route(name: &str, backend: &str, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
request_timeout = "10s"
shutdown_grace = "1s"

[upstream]
{upstream}

[backends.{name}]
{backend}

[routes.{name}]
backends = ["{name}"]
attempts = 2
"#
    )
}

/// `tls_ca_file = "PATH"`.
pub fn ca_line(path: &std::path::Path) -> String {
    format!("tls_ca_file = {:?}", path.display().to_string())
}

/// The gateway serving `config` in this process, with the test's static
/// AWS credentials and `HF_TOKEN`.
pub async fn serve(config: &str) -> Served {
    let vars = HashMap::from([("HF_TOKEN", HF_TOKEN.to_string())]);
    let config = Config::from_toml(config, &|k| vars.get(k).cloned())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    let credentials = config
        .backends
        .iter()
        .map(|b| (b.name.clone(), static_credentials(SECRET_KEY)))
        .collect();
    Served::start(
        config,
        BuildOptions {
            credentials,
            ..BuildOptions::default()
        },
    )
    .await
}

/// A client for the gateway itself (plain HTTP, never through a proxy).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POSTs `body` to `/v1/predict/{path}` on `base`.
pub async fn predict(base: &str, path: &str, body: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/v1/predict/{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}
