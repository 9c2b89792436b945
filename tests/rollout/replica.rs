//! The replicas: gateway processes on ports of their own, each with a
//! config file it can be told to reload, and the emulators behind them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::child::{Running, Stream, BIN};
use crate::common::{hf_options, sm_options, ACCESS_KEY, HF_TOKEN, SECRET_KEY};
use crate::watch::Timeline;
use crate::{EXIT_WAIT, SHUTDOWN_DELAY, TOKEN_LATENCY, WAIT};
use infergate::emulator::{self, EmulatorHandle, ModelFormat};

/// The two emulators, in-process, pacing their tokens.
pub struct Emulators {
    sm: EmulatorHandle,
    hf: EmulatorHandle,
}

impl Emulators {
    pub async fn start() -> Self {
        let loopback = ([127, 0, 0, 1], 0).into();
        let sm = emulator::sagemaker::start(loopback, sm_options(ModelFormat::Tgi))
            .await
            .unwrap();
        let hf = emulator::huggingface::start(loopback, hf_options())
            .await
            .unwrap();
        for e in [&sm, &hf] {
            e.faults().update(|f| f.token_latency = TOKEN_LATENCY);
        }
        Self { sm, hf }
    }
}

// === the replicas ===

/// How a replica learns of its new config.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// It watches its file (the default), polled every 200 ms.
    Watch,
    /// It does not watch; SIGHUP tells it.
    Signal,
}

/// One gateway process on its own port with its own config file; killed
/// when dropped.
pub struct Replica {
    pub name: &'static str,
    pub port: u16,
    config: PathBuf,
    reload: Reload,
    sm_url: String,
    hf_url: String,
    process: Option<Running>,
    /// The output of its earlier runs.
    past: Vec<String>,
    pub client: reqwest::Client,
}

impl Replica {
    pub fn new(name: &'static str, emulators: &Emulators, reload: Reload) -> Self {
        let port = crate::common::net::free_port();
        let (sm_url, hf_url) = (emulators.sm.url(), emulators.hf.url());
        let config = crate::common::child::write_temp(&format!("{name}.toml"), "");
        let replica = Self {
            name,
            port,
            config,
            reload,
            sm_url,
            hf_url,
            process: None,
            past: Vec::new(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        write_atomically(&replica.config, &replica.config_text(false));
        replica
    }

    /// Its config; `reloaded` is the new one: route `sm` with a timeout of
    /// its own and a new route `late`.
    pub fn config_text(&self, reloaded: bool) -> String {
        let watch = match self.reload {
            Reload::Watch => "watch_interval = \"200ms\"",
            Reload::Signal => "watch_config = false",
        };
        let (sm_timeout, late) = if reloaded {
            (
                "timeout = \"8s\"\n",
                "\n[routes.late]\nbackends = [\"hf\"]\n",
            )
        } else {
            ("", "")
        };
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
workers = 2
request_timeout = "10s"
shutdown_delay = "{delay}ms"
shutdown_grace = "5s"
{watch}

[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "{sm}"

[backends.hf]
kind = "huggingface"
url = "{hf}"
token = "${{ROLLOUT_HF_TOKEN}}"

[routes.sm]
backends = ["sm"]
{sm_timeout}
[routes.hf]
backends = ["hf"]
{late}"#,
            port = self.port,
            delay = SHUTDOWN_DELAY.as_millis(),
            sm = self.sm_url,
            hf = self.hf_url,
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn start(&mut self, timeline: &Timeline) {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config", self.config.to_str().unwrap()])
            .env_remove("INFERGATE_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("INFERGATE_LOG_FORMAT")
            .env("INFERGATE_LOG_LEVEL", "info")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/nonexistent/infergate-test/config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/infergate-test/credentials",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ROLLOUT_HF_TOKEN", HF_TOKEN);
        self.process = Some(Running::spawn(cmd, Stream::Stderr));
        timeline.note(&format!("{} started on port {}", self.name, self.port));
    }

    pub fn pid(&self) -> String {
        self.process.as_ref().unwrap().child.id().to_string()
    }

    pub fn signal(&self, signal: &str, timeline: &Timeline) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.name);
        timeline.note(&format!("{}: SIG{signal}", self.name));
    }

    /// Waits until `/readyz` answers 200; fails at once if the process
    /// exits first (a config it refuses).
    pub async fn wait_ready(&mut self, timeline: &Timeline) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(res) = self.client.get(self.url("/readyz")).send().await {
                if res.status() == 200 {
                    timeline.note(&format!("{}: /readyz 200", self.name));
                    return;
                }
            }
            let process = self.process.as_mut().unwrap();
            let exited = process.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                process.stop();
                panic!(
                    "{} did not become ready on port {} (exit: {exited:?}):\n{}\n\ntimeline:\n{}",
                    self.name,
                    self.port,
                    process.output(),
                    timeline.text()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit, at most [`EXIT_WAIT`] (then kills
    /// it): its exit code, `None` when killed or signalled.
    pub async fn wait_exit(&mut self, timeline: &Timeline) -> Option<i32> {
        let mut process = self.process.take().unwrap();
        let deadline = Instant::now() + EXIT_WAIT;
        let code = loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                timeline.note(&format!("{}: no exit within {EXIT_WAIT:?}", self.name));
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        process.stop();
        timeline.note(&format!("{}: exited with {code:?}", self.name));
        self.past.push(process.output());
        code
    }

    /// SIGTERM, then its exit code.
    pub async fn terminate(&mut self, timeline: &Timeline) -> Option<i32> {
        self.signal("TERM", timeline);
        self.wait_exit(timeline).await
    }

    /// Writes the new config; SIGHUP for the replica that does not watch.
    pub fn reload(&self, timeline: &Timeline) {
        write_atomically(&self.config, &self.config_text(true));
        timeline.note(&format!("{}: new config written", self.name));
        if self.reload == Reload::Signal {
            self.signal("HUP", timeline);
        }
    }

    /// Writes a config that parses but cannot be valid: a route to a
    /// backend that does not exist.
    pub fn break_config(&self, timeline: &Timeline) {
        let broken = format!(
            "{}\n[routes.broken]\nbackends = [\"no-such-backend\"]\n",
            self.config_text(true)
        );
        write_atomically(&self.config, &broken);
        timeline.note(&format!("{}: a broken config written", self.name));
    }

    pub async fn metrics(&self) -> String {
        match self.client.get(self.url("/metrics")).send().await {
            Ok(res) => res.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Everything it wrote, this run and the earlier ones: the lines that
    /// are not access lines, and the access lines of failed requests.
    pub fn output(&self) -> String {
        let mut all = self.past.clone();
        if let Some(p) = &self.process {
            all.push(p.output());
        }
        all.iter()
            .enumerate()
            .map(|(i, out)| {
                let lines: Vec<&str> = out
                    .lines()
                    .filter(|l| !l.contains("infergate::access") || !l.contains("status=200"))
                    .collect();
                format!("--- {} run {i}:\n{}", self.name, lines.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Replaces a file as a Kubernetes ConfigMap update does: whole, never
/// seen half-written.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A metric's value by its labels, from Prometheus text.
pub fn sample(metrics: &str, name: &str, label: (&str, &str)) -> Option<f64> {
    let lines = metrics.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).ok()?;
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// How many reloads the metrics count with one of `results`.
pub fn reloads(metrics: &str, results: &[&str]) -> f64 {
    results
        .iter()
        .filter_map(|r| sample(metrics, "infergate_config_reloads_total", ("result", r)))
        .sum()
}

/// The `hash` label of `infergate_config_info`.
pub fn config_hash(metrics: &str) -> Option<String> {
    let lines = metrics.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).ok()?;
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "infergate_config_info")
        .and_then(|s| s.labels.get("hash").map(str::to_string))
}
