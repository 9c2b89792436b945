//! The tests' usual gateway, exporting to a fresh receiver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use infergate::config::Config;
use infergate::emulator::{self, EmulatorHandle, ModelFormat};
use infergate::gateway::BuildOptions;
use infergate::telemetry::otlp::{BatchOptions, OtlpSink};

use crate::common::{Served, BODY};
use crate::receiver::Receiver;

// === the gateway ===

/// `(trace id, parent id, flags)` of the `traceparent` a backend saw last.
pub fn seen_traceparent(emulator: &EmulatorHandle) -> (String, String, String) {
    let seen = emulator.counters().last().unwrap();
    let v = seen.headers["traceparent"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "{v}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

pub struct Gw {
    pub base: String,
    served: Served,
    sink: Arc<OtlpSink>,
    pub sm: EmulatorHandle,
    pub hf: EmulatorHandle,
    pub client: reqwest::Client,
    pub receiver: Receiver,
}

impl Gw {
    /// The tests' usual gateway (routes `sm`, `hf`, `both`), exporting to a
    /// fresh receiver in batches sent every `delay`.
    pub async fn start(delay: Duration) -> Self {
        Self::start_with(delay, "").await
    }

    /// The same, with `extra` appended to the config.
    pub async fn start_with(delay: Duration, extra: &str) -> Self {
        let receiver = Receiver::start().await;
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let sm = emulator::sagemaker::start(loopback, crate::common::sm_options(ModelFormat::Tgi))
            .await
            .unwrap();
        let hf = emulator::huggingface::start(loopback, crate::common::hf_options())
            .await
            .unwrap();
        let vars: HashMap<&str, String> = HashMap::from([
            ("SM_URL", sm.url()),
            ("JS_URL", sm.url()),
            ("HF_URL", hf.url()),
            ("HF_TOKEN", crate::common::HF_TOKEN.to_owned()),
            ("OTLP_URL", receiver.url.clone()),
        ]);
        let text = format!(
            "{}\n[telemetry]\notlp_endpoint = \"${{OTLP_URL}}\"\nservice_name = \"infergate-test\"\notlp_timeout = \"2s\"\n{extra}",
            crate::common::CONFIG
        );
        let config = Config::from_toml(&text, &|k| vars.get(k).cloned())
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let sink = Arc::new(
            OtlpSink::with_batch(
                &config.telemetry,
                BatchOptions {
                    scheduled_delay: Some(delay),
                    ..BatchOptions::default()
                },
            )
            .unwrap(),
        );
        assert_eq!(sink.endpoint(), format!("{}/v1/traces", receiver.url));
        let credentials = config
            .backends
            .iter()
            .map(|b| {
                (
                    b.name.clone(),
                    crate::common::static_credentials(crate::common::SECRET_KEY),
                )
            })
            .collect();
        let served = Served::start(
            config,
            BuildOptions {
                credentials,
                spans: Some(Arc::clone(&sink) as Arc<dyn infergate::telemetry::SpanSink>),
            },
        )
        .await;
        Gw {
            base: served.base.clone(),
            served,
            sink,
            sm,
            hf,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            receiver,
        }
    }

    /// POSTs `BODY` to `path`, with `traceparent` when given; reads the
    /// whole answer. Returns the status.
    pub async fn post(&self, path: &str, traceparent: Option<&str>) -> u16 {
        self.post_as(path, traceparent, None).await
    }

    /// [`Gw::post`] with a client's key, as a bearer token and `x-api-key`.
    pub async fn post_as(&self, path: &str, traceparent: Option<&str>, key: Option<&str>) -> u16 {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(BODY);
        if let Some(key) = key {
            req = req.bearer_auth(key).header("x-api-key", key);
        }
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let _ = res.bytes().await.unwrap();
        status
    }

    /// Stops the server, then the exporter (sending what is queued).
    pub async fn shutdown(self) -> Receiver {
        self.served.stop().await;
        let sink = self.sink;
        tokio::task::spawn_blocking(move || sink.shutdown(Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
        self.receiver
    }
}
