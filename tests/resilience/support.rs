//! The configs these tests build (the `sm` and `hf` backends with extra
//! keys, and routes over them) and what they read back.

use std::net::SocketAddr;

use crate::common::Harness;
use futures_util::StreamExt;
use infergate::emulator::{self, EmulatorHandle, FaultConfig, InjectedError, ModelFormat};

pub const SERVER: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 4096
request_timeout = "5s"
shutdown_grace = "1s"
"#;

/// A TGI-format SageMaker backend at `${url_var}`, with extra keys.
pub fn sm_backend(name: &str, url_var: &str, extra: &str) -> String {
    format!(
        "\n[backends.{name}]\nkind = \"sagemaker\"\nendpoint_name = \"flan-t5-small\"\n\
         region = \"us-east-1\"\nendpoint_url = \"${{{url_var}}}\"\n{extra}\n"
    )
}

/// An HF backend at `url` (a `${VAR}` or a literal URL), with extra keys.
pub fn hf_backend(name: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[backends.{name}]\nkind = \"huggingface\"\nurl = \"{url}\"\ntoken = \"${{HF_TOKEN}}\"\n{extra}\n"
    )
}

/// A route over `backends` (in order), with extra keys.
pub fn route(name: &str, backends: &[&str], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "\n[routes.{name}]\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// The server section, the `sm` and `hf` backends (with extra keys each)
/// and the given routes.
pub fn config(sm_extra: &str, hf_extra: &str, routes: &[String]) -> String {
    let mut c = String::from(SERVER);
    c += &sm_backend("sm", "SM_URL", sm_extra);
    c += &hf_backend("hf", "${HF_URL}", hf_extra);
    for r in routes {
        c += r;
    }
    c
}

/// Sends `n` requests, `concurrency` at a time; returns their statuses.
pub async fn send_many(h: &Harness, route: &str, n: usize, concurrency: usize) -> Vec<u16> {
    futures_util::stream::iter(0..n)
        .map(|_| async { h.call(route).await.0 })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// The sum of the series of metric `name` whose labels include `labels`.
pub async fn metric(h: &Harness, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = h.get_text("/metrics").await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let have: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            labels
                .iter()
                .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()))
                .then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

/// One more TGI-format SageMaker emulator, for routes of two SageMaker
/// backends.
pub async fn second_sagemaker() -> EmulatorHandle {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    emulator::sagemaker::start(loopback, crate::common::sm_options(ModelFormat::Tgi))
        .await
        .unwrap()
}

pub fn failing(rate: f64, error: InjectedError) -> FaultConfig {
    FaultConfig {
        error_rate: rate,
        error,
        ..FaultConfig::default()
    }
}
