//! Whole-proxy load benchmark: direct-to-emulator versus through infergate,
//! in the same run, on this machine.
//!
//! ```text
//! cargo bench --bench load                # full run, about 2.5 minutes
//! cargo bench --bench load -- --quick     # about 35 s
//! ```
//!
//! The SageMaker and Hugging Face emulators run in this process (zero added
//! latency) next to the load generator; the gateway runs as a separate
//! process (`infergate serve`, the binary cargo built with this bench) so its
//! CPU time (`/proc/<pid>/stat`) and memory (`/proc/<pid>/status`) are read
//! apart from the load generator's. The load is open-loop at a fixed rate:
//! request `i` is due at `t0 + i / rate` and its latency is measured from
//! that due time, so a stall anywhere (generator, gateway, emulator) shows
//! in the latency instead of silently lowering the rate (coordinated
//! omission). Direct and through-gateway slices alternate so drift on this
//! shared machine hits both alike. Output: a markdown report on stdout and
//! the same data as JSON in `target/infergate-bench.json`. The method and
//! the latest results are in BENCHMARKS.md.
//!
//! Flags (unknown ones, such as the `--bench` cargo passes, are ignored):
//! `--quick`; `--rate N` (unary requests/s, default 1000); `--stream-rate N`
//! (streams/s, default 1000); `--duration S` (seconds per side per unary
//! scenario); `--streams N` (concurrent slow streams, default 1000);
//! `--log-level L` (the gateway's, default: its own default, `info`);
//! `--only a,b` (scenarios among hf, sm, hf-stream, sm-stream, metrics, max,
//! streams).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use tokio::runtime::{Handle, Runtime};

use infergate::backend::sigv4::{sign_request, Signer};
use infergate::emulator::{
    self, Credential, EmulatorHandle, FaultConfig, HuggingFaceOptions, ModelFormat,
    SageMakerOptions,
};

const ACCESS_KEY: &str = "AKIDINFERGATEBENCH";
const SECRET_KEY: &str = "bench-secret-key-5d1e";
const HF_TOKEN: &str = "hf_bench_token_0b7d";
const REGION: &str = "us-east-1";
const ENDPOINT: &str = "flan-t5-small";
/// Words in each prompt: the emulators' model answers one token per word.
const PROMPT_WORDS: usize = 20;
/// The p99 a rate must keep to count as sustained.
const SUSTAINED_P99: Duration = Duration::from_millis(10);
/// The error share a rate may have to count as sustained.
const SUSTAINED_ERRORS: f64 = 0.001;
const MAX_RATE_STEPS: &[f64] = &[
    500.0, 1000.0, 2000.0, 3000.0, 5000.0, 7500.0, 10000.0, 12500.0, 15000.0, 20000.0, 25000.0,
    30000.0, 40000.0,
];

// === options ===

#[derive(Clone, Debug)]
struct Opts {
    quick: bool,
    rate: f64,
    stream_rate: f64,
    /// Measured seconds per side, unary scenarios and the metrics test.
    secs: f64,
    /// Measured seconds per side, stream scenarios.
    stream_secs: f64,
    /// Direct/through alternations the measured time is cut into.
    rounds: usize,
    warmup: Duration,
    step: Duration,
    streams: usize,
    log_level: Option<String>,
    /// The gateway's `server.workers`; its default (one per CPU) when unset.
    workers: Option<usize>,
    only: Option<Vec<String>>,
}

impl Opts {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = if quick {
            Opts {
                quick,
                rate: 1000.0,
                stream_rate: 1000.0,
                secs: 1.2,
                stream_secs: 0.8,
                rounds: 1,
                warmup: Duration::from_millis(200),
                step: Duration::from_millis(500),
                streams: 1000,
                log_level: None,
                workers: None,
                only: None,
            }
        } else {
            Opts {
                quick,
                rate: 1000.0,
                stream_rate: 1000.0,
                secs: 10.0,
                stream_secs: 6.0,
                rounds: 5,
                warmup: Duration::from_millis(500),
                step: Duration::from_secs(2),
                streams: 1000,
                log_level: None,
                workers: None,
                only: None,
            }
        };
        let value = |i: usize| args.get(i + 1).cloned().unwrap_or_default();
        let number = |i: usize, flag: &str| -> f64 {
            value(i)
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0)
                .unwrap_or_else(|| panic!("{flag} needs a positive number"))
        };
        for (i, a) in args.iter().enumerate() {
            match a.as_str() {
                "--rate" => o.rate = number(i, a),
                "--stream-rate" => o.stream_rate = number(i, a),
                "--duration" => o.secs = number(i, a),
                "--streams" => o.streams = number(i, a) as usize,
                "--log-level" => o.log_level = Some(value(i)),
                "--workers" => o.workers = Some(number(i, a) as usize),
                "--only" => o.only = Some(value(i).split(',').map(str::to_string).collect()),
                _ => {}
            }
        }
        o
    }

    fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == scenario))
    }
}

// === /proc readings ===

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a process, in clock ticks (all its threads).
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), or `Threads`.
fn status_value(pid: &str, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS.
fn reset_peak(pid: &str) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn read_first(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
}

/// Versions of a few dependencies, from the lockfile.
fn locked_versions(names: &[&str]) -> Vec<(String, String)> {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
        .unwrap_or_default();
    let mut out = Vec::new();
    for name in names {
        let header = format!("name = \"{name}\"\nversion = \"");
        if let Some(pos) = lock.find(&header) {
            let rest = &lock[pos + header.len()..];
            if let Some(end) = rest.find('"') {
                out.push(((*name).to_string(), rest[..end].to_string()));
            }
        }
    }
    out
}

// === the gateway process ===

struct GatewayProcess {
    child: Child,
    pid: String,
    base: String,
    log: PathBuf,
    config: PathBuf,
}

impl GatewayProcess {
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The gateway binary: the one cargo built for this bench, or
/// `INFERGATE_BENCH_GATEWAY` (another build, to compare two in one session).
fn gateway_bin() -> PathBuf {
    let bin = std::env::var_os("INFERGATE_BENCH_GATEWAY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_infergate")),
        PathBuf::from,
    );
    if !bin.exists() {
        eprintln!(
            "load bench: the gateway binary {} does not exist; run `cargo bench --bench load` \
             (which builds it) or `cargo build --release` first",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

fn target_dir() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_infergate"));
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn gateway_config(sm: &str, hf: &str, slow: &str, workers: Option<usize>) -> String {
    let workers = workers.map_or(String::new(), |n| format!("workers = {n}\n"));
    format!(
        r#"# Written by benches/load.rs.
[server]
listen = "127.0.0.1:0"
request_timeout = "30s"
shutdown_grace = "1s"
{workers}
[backends.hf]
kind = "huggingface"
url = "{hf}"
token = "${{HF_TOKEN}}"

[backends.slow]
kind = "huggingface"
url = "{slow}"
token = "${{HF_TOKEN}}"

[backends.sm]
kind = "sagemaker"
endpoint_name = "{ENDPOINT}"
region = "{REGION}"
endpoint_url = "{sm}"

[routes.hf]
backends = ["hf"]

[routes.sm]
backends = ["sm"]

[routes.slow]
backends = ["slow"]
"#
    )
}

fn start_gateway(config: &str, log_level: Option<&str>) -> GatewayProcess {
    let bin = gateway_bin();
    let dir = target_dir();
    let path = std::env::temp_dir().join(format!("infergate-bench-{}.toml", std::process::id()));
    std::fs::write(&path, config).unwrap();
    let log = dir.join("infergate-bench-gateway.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(&bin);
    cmd.args(["serve", "--config"])
        .arg(&path)
        .args(["--listen", &listen])
        .env_clear()
        .env("HOME", std::env::temp_dir())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("HF_TOKEN", HF_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    if let Some(level) = log_level {
        cmd.env("INFERGATE_LOG_LEVEL", level);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
    let pid = child.id().to_string();
    GatewayProcess {
        child,
        pid,
        base: format!("http://{listen}"),
        log,
        config: path,
    }
}

// === load generation ===

/// One kind of request, sent over and over.
struct Target {
    url: reqwest::Url,
    headers: HeaderMap,
    body: Bytes,
    stream: bool,
    timeout: Duration,
}

enum Failure {
    Status(u16),
    Transport(String),
    Empty,
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Status(s) => format!("status {s}"),
            Failure::Transport(e) => format!("transport: {e}"),
            Failure::Empty => "a stream with no events".to_string(),
        }
    }
}

fn hist() -> Histogram<u64> {
    // Nanoseconds, 1 ns to 120 s, 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000_000, 3).unwrap()
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What one side of a scenario observed, over all its slices.
struct Recorder {
    latency: Mutex<Histogram<u64>>,
    ttfb: Mutex<Histogram<u64>>,
    per_event: Mutex<Histogram<u64>>,
    lateness: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    err_status: AtomicU64,
    err_transport: AtomicU64,
    err_cap: AtomicU64,
    events: AtomicU64,
    in_flight: AtomicUsize,
    first_error: Mutex<Option<String>>,
    sent: AtomicU64,
    /// Wall time of the slices (due span or last completion, the later).
    elapsed: Mutex<Duration>,
    /// The gateway's CPU ticks and this process's during the slices.
    gw_ticks: AtomicU64,
    own_ticks: AtomicU64,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Recorder {
            latency: Mutex::new(hist()),
            ttfb: Mutex::new(hist()),
            per_event: Mutex::new(hist()),
            lateness: Mutex::new(hist()),
            ok: AtomicU64::new(0),
            err_status: AtomicU64::new(0),
            err_transport: AtomicU64::new(0),
            err_cap: AtomicU64::new(0),
            events: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            sent: AtomicU64::new(0),
            elapsed: Mutex::new(Duration::ZERO),
            gw_ticks: AtomicU64::new(0),
            own_ticks: AtomicU64::new(0),
        })
    }

    fn errors(&self) -> u64 {
        self.err_status.load(Ordering::Relaxed)
            + self.err_transport.load(Ordering::Relaxed)
            + self.err_cap.load(Ordering::Relaxed)
    }

    fn record(&self, due: Instant, end: Instant, result: Result<(Option<Instant>, u64), Failure>) {
        match result {
            Ok((first, events)) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let _ = self.latency.lock().unwrap().record(nanos(end - due));
                if let Some(first) = first {
                    let _ = self.ttfb.lock().unwrap().record(nanos(first - due));
                    self.events.fetch_add(events, Ordering::Relaxed);
                    if events > 1 {
                        let per = (end - first) / u32::try_from(events - 1).unwrap_or(u32::MAX);
                        let _ = self.per_event.lock().unwrap().record(nanos(per));
                    }
                }
            }
            Err(f) => {
                match f {
                    Failure::Status(_) | Failure::Empty => &self.err_status,
                    Failure::Transport(_) => &self.err_transport,
                }
                .fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap();
                if first.is_none() {
                    *first = Some(f.describe());
                }
            }
        }
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count() as u64
}

async fn send(client: &reqwest::Client, t: &Target) -> Result<(Option<Instant>, u64), Failure> {
    let transport = |e: reqwest::Error| Failure::Transport(e.to_string());
    let mut res = client
        .post(t.url.clone())
        .headers(t.headers.clone())
        .body(t.body.clone())
        .timeout(t.timeout)
        .send()
        .await
        .map_err(transport)?;
    if !res.status().is_success() {
        let status = res.status().as_u16();
        let _ = res.bytes().await;
        return Err(Failure::Status(status));
    }
    if !t.stream {
        res.bytes().await.map_err(transport)?;
        return Ok((None, 0));
    }
    let mut first = None;
    let mut all = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(transport)? {
        if first.is_none() {
            first = Some(Instant::now());
        }
        all.extend_from_slice(&chunk);
    }
    let events = count(&all, b"data:").saturating_sub(count(&all, b"data:[DONE]"));
    if events == 0 {
        return Err(Failure::Empty);
    }
    Ok((first, events))
}

/// Waits until `due`: sleeps, then yields for the last `spin`.
fn wait_until(due: Instant, spin: Duration) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > spin {
            std::thread::sleep(left - spin);
        } else {
            std::thread::yield_now();
        }
    }
}

struct Load<'a> {
    rt: &'a Handle,
    client: &'a reqwest::Client,
    gw_pid: &'a str,
}

impl Load<'_> {
    /// One open-loop slice: `rate` requests/s for `dur`, paced from this
    /// (non-runtime) thread; waits for the stragglers.
    fn slice(
        &self,
        target: &Arc<Target>,
        rate: f64,
        dur: Duration,
        cap: usize,
        rec: &Arc<Recorder>,
    ) {
        let n = (rate * dur.as_secs_f64()).round().max(1.0) as u64;
        let period = Duration::from_secs_f64(1.0 / rate);
        // Below ~2,000/s, yield-spin the last 50 µs so the schedule is kept to
        // a few µs; above, sleeping alone (and sending what is due in a batch)
        // keeps the pacer from taking a core.
        let spin = if rate <= 2000.0 {
            Duration::from_micros(50)
        } else {
            Duration::ZERO
        };
        let gw0 = cpu_ticks(self.gw_pid);
        let own0 = cpu_ticks("self");
        let t0 = Instant::now() + Duration::from_millis(2);
        for i in 0..n {
            let due = t0 + period.mul_f64(i as f64);
            wait_until(due, spin);
            let _ = rec.lateness.lock().unwrap().record(nanos(due.elapsed()));
            rec.sent.fetch_add(1, Ordering::Relaxed);
            if rec.in_flight.load(Ordering::Relaxed) >= cap {
                rec.err_cap.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            rec.in_flight.fetch_add(1, Ordering::Relaxed);
            let client = self.client.clone();
            let target = Arc::clone(target);
            let rec = Arc::clone(rec);
            self.rt.spawn(async move {
                let result = send(&client, &target).await;
                rec.record(due, Instant::now(), result);
                rec.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        let span = t0 + period.mul_f64(n as f64);
        let limit = Instant::now() + target.timeout + Duration::from_secs(1);
        while rec.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < limit {
            std::thread::sleep(Duration::from_micros(500));
        }
        let end = Instant::now().max(span);
        *rec.elapsed.lock().unwrap() += end - t0;
        rec.gw_ticks.fetch_add(
            cpu_ticks(self.gw_pid).saturating_sub(gw0),
            Ordering::Relaxed,
        );
        rec.own_ticks
            .fetch_add(cpu_ticks("self").saturating_sub(own0), Ordering::Relaxed);
    }
}

// === results ===

const QUANTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

fn quantiles(h: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    for (name, q) in QUANTILES {
        m.insert(
            format!("{name}_us"),
            json!(h.value_at_quantile(q) as f64 / 1e3),
        );
    }
    m.insert("mean_us".into(), json!(h.mean() / 1e3));
    m.insert("max_us".into(), json!(h.max() as f64 / 1e3));
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

struct Side {
    name: &'static str,
    rate: f64,
    rec: Arc<Recorder>,
    /// The gateway's numbers, for a through-gateway side.
    gateway: Option<GatewaySample>,
}

#[derive(Clone, Copy, Default)]
struct GatewaySample {
    peak_rss_kb: u64,
    peak_reset: bool,
    overhead_mean_us: Option<f64>,
}

impl Side {
    fn achieved(&self) -> f64 {
        let secs = self.rec.elapsed.lock().unwrap().as_secs_f64();
        if secs > 0.0 {
            self.rec.ok.load(Ordering::Relaxed) as f64 / secs
        } else {
            0.0
        }
    }

    fn cpu_us_per_req(&self, ticks: u64, tck: u64) -> f64 {
        let sent = self.rec.sent.load(Ordering::Relaxed).max(1);
        ticks as f64 * 1e6 / tck as f64 / sent as f64
    }

    fn json(&self, tck: u64) -> Value {
        let r = &self.rec;
        let mut v = json!({
            "side": self.name,
            "target_rate": self.rate,
            "achieved_rate": self.achieved(),
            "sent": r.sent.load(Ordering::Relaxed),
            "ok": r.ok.load(Ordering::Relaxed),
            "errors": {
                "total": r.errors(),
                "status": r.err_status.load(Ordering::Relaxed),
                "transport": r.err_transport.load(Ordering::Relaxed),
                "concurrency_cap": r.err_cap.load(Ordering::Relaxed),
                "first": *r.first_error.lock().unwrap(),
            },
            "latency": quantiles(&r.latency.lock().unwrap()),
            "pacer_lateness": quantiles(&r.lateness.lock().unwrap()),
            "bench_process_cpu_us_per_request": self.cpu_us_per_req(r.own_ticks.load(Ordering::Relaxed), tck),
        });
        if !r.ttfb.lock().unwrap().is_empty() {
            v["ttfb"] = quantiles(&r.ttfb.lock().unwrap());
            v["per_event"] = quantiles(&r.per_event.lock().unwrap());
            v["events"] = json!(r.events.load(Ordering::Relaxed));
        }
        if let Some(g) = self.gateway {
            v["gateway"] = json!({
                "cpu_us_per_request": self.cpu_us_per_req(r.gw_ticks.load(Ordering::Relaxed), tck),
                "peak_rss_kb": g.peak_rss_kb,
                "peak_rss_reset_before": g.peak_reset,
                "reported_overhead_mean_us": g.overhead_mean_us,
            });
        }
        v
    }
}

fn added(direct: &Histogram<u64>, through: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    for (name, q) in QUANTILES {
        let d = direct.value_at_quantile(q) as f64;
        let t = through.value_at_quantile(q) as f64;
        m.insert(format!("{name}_us"), json!((t - d) / 1e3));
    }
    Value::Object(m)
}

fn fmt_us(us: f64) -> String {
    if us.abs() >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us.abs() >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

fn fmt_added(us: f64) -> String {
    if us >= 0.0 {
        format!("+{}", fmt_us(us))
    } else {
        format!("−{}", fmt_us(-us))
    }
}

fn q_us(v: &Value, key: &str, q: &str) -> f64 {
    v[key][format!("{q}_us")].as_f64().unwrap_or(f64::NAN)
}

// === the gateway's own metrics ===

/// Sum and count of `infergate_overhead_seconds` for a route.
async fn overhead(client: &reqwest::Client, base: &str, route: &str) -> Option<(f64, f64)> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let label = format!("route=\"{route}\"");
    let find = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    Some((
        find("infergate_overhead_seconds_sum"),
        find("infergate_overhead_seconds_count"),
    ))
}

// === the run ===

struct Bench {
    opts: Opts,
    rt: Runtime,
    client: reqwest::Client,
    gw: GatewayProcess,
    sm: EmulatorHandle,
    hf: EmulatorHandle,
    tck: u64,
    prompt: String,
}

impl Bench {
    fn load(&self) -> Load<'_> {
        Load {
            rt: self.rt.handle(),
            client: &self.client,
            gw_pid: &self.gw.pid,
        }
    }

    fn body(&self, stream: bool) -> Bytes {
        let mut v = json!({"inputs": self.prompt, "parameters": {"max_new_tokens": PROMPT_WORDS}});
        if stream {
            v["stream"] = json!(true);
        }
        Bytes::from(v.to_string())
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h
    }

    fn through(&self, route: &str, stream: bool) -> Target {
        let path = if stream {
            format!("/v1/predict/{route}/stream")
        } else {
            format!("/v1/predict/{route}")
        };
        Target {
            url: reqwest::Url::parse(&format!("{}{path}", self.gw.base)).unwrap(),
            headers: Self::json_headers(),
            body: self.body(false),
            stream,
            timeout: Duration::from_secs(10),
        }
    }

    fn hf_direct(&self, stream: bool) -> Target {
        let path = if stream { "/generate_stream" } else { "/" };
        let mut headers = Self::json_headers();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {HF_TOKEN}")).unwrap(),
        );
        Target {
            url: reqwest::Url::parse(&format!("{}{path}", self.hf.url())).unwrap(),
            headers,
            body: self.body(false),
            stream,
            timeout: Duration::from_secs(10),
        }
    }

    /// A SageMaker request signed now by the load generator, once: the body
    /// never changes and the signature holds for the allowed clock skew, so
    /// the direct side pays no signing per request and the through side's
    /// added latency includes the gateway's signing.
    fn sm_direct(&self, stream: bool) -> Target {
        let op = if stream {
            "invocations-response-stream"
        } else {
            "invocations"
        };
        let path = format!("/endpoints/{ENDPOINT}/{op}");
        let host = self.sm.addr().to_string();
        let body = self.body(stream);
        let creds = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "bench");
        let mut headers = Self::json_headers();
        let signer = Signer {
            credentials: &creds,
            region: REGION,
            time: SystemTime::now(),
        };
        sign_request(signer, "POST", &host, &path, &mut headers, &body).unwrap();
        Target {
            url: reqwest::Url::parse(&format!("{}{path}", self.sm.url())).unwrap(),
            headers,
            body,
            stream,
            timeout: Duration::from_secs(10),
        }
    }

    fn check_gateway(&mut self) {
        if !self.gw.alive() {
            eprintln!(
                "load bench: the gateway exited; last lines of {}:\n{}",
                self.gw.log.display(),
                self.gw.log_tail()
            );
            std::process::exit(1);
        }
    }

    /// Direct and through-gateway sides, alternated in `rounds` slices after a
    /// warm-up of each.
    fn paired(
        &mut self,
        route: &str,
        rate: f64,
        secs: f64,
        direct: &dyn Fn(&Bench) -> Target,
        through: &dyn Fn(&Bench) -> Target,
    ) -> (Side, Side) {
        let cap = 1024;
        let d = Recorder::new();
        let t = Recorder::new();
        {
            let load = self.load();
            let (dt, tt) = (Arc::new(direct(self)), Arc::new(through(self)));
            load.slice(&dt, rate, self.opts.warmup, cap, &Recorder::new());
            load.slice(&tt, rate, self.opts.warmup, cap, &Recorder::new());
        }
        let before = self
            .rt
            .block_on(overhead(&self.client, &self.gw.base, route));
        let peak_reset = reset_peak(&self.gw.pid);
        let slice = Duration::from_secs_f64(secs / self.opts.rounds as f64);
        for _ in 0..self.opts.rounds {
            let load = self.load();
            // Re-made per round: a SageMaker request is signed when made.
            let (dt, tt) = (Arc::new(direct(self)), Arc::new(through(self)));
            load.slice(&dt, rate, slice, cap, &d);
            load.slice(&tt, rate, slice, cap, &t);
        }
        self.check_gateway();
        let after = self
            .rt
            .block_on(overhead(&self.client, &self.gw.base, route));
        let overhead_mean_us = match (before, after) {
            (Some((s0, c0)), Some((s1, c1))) if c1 > c0 => Some((s1 - s0) / (c1 - c0) * 1e6),
            _ => None,
        };
        let sample = GatewaySample {
            peak_rss_kb: status_value(&self.gw.pid, "VmHWM"),
            peak_reset,
            overhead_mean_us,
        };
        (
            Side {
                name: "direct",
                rate,
                rec: d,
                gateway: None,
            },
            Side {
                name: "through",
                rate,
                rec: t,
                gateway: Some(sample),
            },
        )
    }

    fn scenario(&mut self, name: &str, route: &str, stream: bool) -> Value {
        let (rate, secs) = if stream {
            (self.opts.stream_rate, self.opts.stream_secs)
        } else {
            (self.opts.rate, self.opts.secs)
        };
        eprintln!("load bench: {name} at {rate}/s, {secs} s per side");
        let sm = route == "sm";
        let direct = move |b: &Bench| {
            if sm {
                b.sm_direct(stream)
            } else {
                b.hf_direct(stream)
            }
        };
        let route_owned = route.to_string();
        let through = move |b: &Bench| b.through(&route_owned, stream);
        let (d, t) = self.paired(route, rate, secs, &direct, &through);
        let mut v = json!({
            "scenario": name,
            "route": route,
            "stream": stream,
            "direct": d.json(self.tck),
            "through": t.json(self.tck),
            "added": { "latency": added(&d.rec.latency.lock().unwrap(), &t.rec.latency.lock().unwrap()) },
        });
        if stream {
            v["added"]["ttfb"] = added(&d.rec.ttfb.lock().unwrap(), &t.rec.ttfb.lock().unwrap());
            v["added"]["per_event"] = added(
                &d.rec.per_event.lock().unwrap(),
                &t.rec.per_event.lock().unwrap(),
            );
        }
        v
    }

    /// Steps the rate up until p99 passes 10 ms or errors pass 0.1%.
    fn max_rate(&mut self, name: &str, make: &dyn Fn(&Bench) -> Target) -> Value {
        let mut target = make(self);
        target.timeout = Duration::from_secs(3);
        let target = Arc::new(target);
        let mut steps = Vec::new();
        let mut best = 0.0;
        let peak_reset = reset_peak(&self.gw.pid);
        // Warm the connection pools.
        self.load().slice(
            &target,
            MAX_RATE_STEPS[0],
            self.opts.warmup,
            4096,
            &Recorder::new(),
        );
        // `--quick` skips a few steps to stay short.
        let quick_skips = [500.0, 3000.0, 25000.0];
        let rates = MAX_RATE_STEPS
            .iter()
            .copied()
            .filter(|r| !(self.opts.quick && quick_skips.contains(r)));
        'rates: for rate in rates {
            // A failing step runs once more before the search stops: one
            // stall of this shared machine should not end it.
            for attempt in 1..=2 {
                eprintln!("load bench: max rate, {name} at {rate}/s (attempt {attempt})");
                let rec = Recorder::new();
                self.load().slice(&target, rate, self.opts.step, 4096, &rec);
                let side = Side {
                    name: "step",
                    rate,
                    rec,
                    gateway: None,
                };
                let p99 = side.rec.latency.lock().unwrap().value_at_quantile(0.99);
                let sent = side.rec.sent.load(Ordering::Relaxed).max(1);
                let err_share = side.rec.errors() as f64 / sent as f64;
                let pass = p99 <= nanos(SUSTAINED_P99)
                    && err_share <= SUSTAINED_ERRORS
                    && !side.rec.latency.lock().unwrap().is_empty();
                let mut step = side.json(self.tck);
                step["attempt"] = json!(attempt);
                step["gateway_cpu_share"] = json!(
                    side.rec.gw_ticks.load(Ordering::Relaxed) as f64
                        / self.tck as f64
                        / side.rec.elapsed.lock().unwrap().as_secs_f64()
                );
                step["gateway_cpu_us_per_request"] =
                    json!(side.cpu_us_per_req(side.rec.gw_ticks.load(Ordering::Relaxed), self.tck));
                step["error_share"] = json!(err_share);
                step["pass"] = json!(pass);
                steps.push(step);
                if pass {
                    best = rate;
                    std::thread::sleep(Duration::from_millis(200));
                    continue 'rates;
                }
                std::thread::sleep(Duration::from_millis(700));
            }
            break;
        }
        self.check_gateway();
        json!({
            "side": name,
            "max_sustained_rate": best,
            "steps": steps,
            "peak_rss_kb": status_value(&self.gw.pid, "VmHWM"),
            "peak_rss_reset_before": peak_reset,
        })
    }

    fn metrics_effect(&mut self) -> Value {
        let rate = self.opts.rate;
        let secs = self.opts.secs;
        eprintln!("load bench: /metrics scrape effect at {rate}/s, {secs} s per side");
        let without = Recorder::new();
        let with = Recorder::new();
        let target = Arc::new(self.through("hf", false));
        self.load()
            .slice(&target, rate, self.opts.warmup, 1024, &Recorder::new());
        let scrapes = Arc::new(AtomicU64::new(0));
        let scrape_hist = Arc::new(Mutex::new(hist()));
        let slice = Duration::from_secs_f64(secs / self.opts.rounds as f64);
        for _ in 0..self.opts.rounds {
            self.load().slice(&target, rate, slice, 1024, &without);
            let stop = Arc::new(AtomicBool::new(false));
            let task = {
                let stop = Arc::clone(&stop);
                let client = self.client.clone();
                let url = format!("{}/metrics", self.gw.base);
                let scrapes = Arc::clone(&scrapes);
                let scrape_hist = Arc::clone(&scrape_hist);
                self.rt.spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(100));
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let start = Instant::now();
                        if let Ok(res) = client.get(&url).send().await {
                            if res.bytes().await.is_ok() {
                                scrapes.fetch_add(1, Ordering::Relaxed);
                                let _ = scrape_hist.lock().unwrap().record(nanos(start.elapsed()));
                            }
                        }
                    }
                })
            };
            self.load().slice(&target, rate, slice, 1024, &with);
            stop.store(true, Ordering::Relaxed);
            let _ = self.rt.block_on(task);
        }
        let size = self.rt.block_on(async {
            let res = self
                .client
                .get(format!("{}/metrics", self.gw.base))
                .send()
                .await
                .ok()?;
            Some(res.bytes().await.ok()?.len())
        });
        let w = |r: &Arc<Recorder>, name| {
            Side {
                name,
                rate,
                rec: Arc::clone(r),
                gateway: None,
            }
            .json(self.tck)
        };
        let (a, b) = (w(&without, "without_scraper"), w(&with, "with_scraper"));
        let ratio = |q: &str| q_us(&b, "latency", q) / q_us(&a, "latency", q);
        json!({
            "rate": rate,
            "scrape_interval_ms": 100,
            "scrapes": scrapes.load(Ordering::Relaxed),
            "scrape_latency": quantiles(&scrape_hist.lock().unwrap()),
            "metrics_body_bytes": size,
            "without": a,
            "with": b,
            "ratio_p50": ratio("p50"),
            "ratio_p99": ratio("p99"),
        })
    }

    /// Holds `n` slow streams open through the gateway and reads its RSS.
    fn concurrent_streams(&mut self) -> Value {
        let n = self.opts.streams;
        eprintln!("load bench: {n} concurrent streams");
        // Long enough to outlast the ramp; the streams are cut when measured.
        let tokens = 200;
        let prompt = vec!["tok"; tokens].join(" ");
        let body = Bytes::from(
            json!({"inputs": prompt, "parameters": {"max_new_tokens": tokens}}).to_string(),
        );
        let url = format!("{}/v1/predict/slow/stream", self.gw.base);
        let client = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let rss_before = status_value(&self.gw.pid, "VmRSS");
        let fds_before = open_fds(&self.gw.pid);
        let peak_reset = reset_peak(&self.gw.pid);
        let started = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let begin = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            if i % 100 == 0 && i > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            let (started, failed, mut stopped) =
                (Arc::clone(&started), Arc::clone(&failed), stopped.clone());
            tasks.push(self.rt.spawn(async move {
                let res = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let mut res = match res {
                    Ok(r) if r.status().is_success() => r,
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let mut first = true;
                loop {
                    tokio::select! {
                        chunk = res.chunk() => match chunk {
                            Ok(Some(_)) => {
                                if std::mem::take(&mut first) {
                                    started.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            _ => {
                                if first {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                                return;
                            }
                        },
                        _ = stopped.changed() => return,
                    }
                }
            }));
        }
        let limit = Instant::now() + Duration::from_secs(20);
        while started.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n
            && Instant::now() < limit
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let all_open = begin.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        let pid = self.gw.pid.clone();
        let rss_open = status_value(&pid, "VmRSS");
        let hwm_open = status_value(&pid, "VmHWM");
        let threads = status_value(&pid, "Threads");
        let fds = open_fds(&pid);
        let open = started.load(Ordering::Relaxed);
        let _ = stop.send(true);
        for t in tasks {
            let _ = self.rt.block_on(t);
        }
        std::thread::sleep(Duration::from_millis(1000));
        let rss_after = status_value(&pid, "VmRSS");
        self.check_gateway();
        json!({
            "streams": n,
            "open_at_measurement": open,
            "failed": failed.load(Ordering::Relaxed),
            "seconds_to_open_all": all_open.as_secs_f64(),
            "rss_before_kb": rss_before,
            "rss_with_streams_kb": rss_open,
            "peak_rss_kb": hwm_open,
            "peak_rss_reset_before": peak_reset,
            "rss_per_stream_kb": (rss_open as f64 - rss_before as f64) / open.max(1) as f64,
            "rss_after_release_kb": rss_after,
            "threads": threads,
            "open_fds": fds,
            "open_fds_before": fds_before,
        })
    }
}

// === report ===

fn header(meta: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# infergate load benchmark\n");
    for (k, v) in meta.as_object().unwrap() {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(s, "- **{k}**: {v}");
    }
    s
}

fn gateway_cells(v: &Value) -> (String, String, String) {
    match v.get("gateway") {
        Some(g) => (
            fmt_us(g["cpu_us_per_request"].as_f64().unwrap_or(f64::NAN)),
            g["reported_overhead_mean_us"]
                .as_f64()
                .map_or_else(|| "–".into(), fmt_us),
            format!(
                "{:.1} MB",
                g["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0
            ),
        ),
        None => ("–".into(), "–".into(), "–".into()),
    }
}

fn unary_table(scenarios: &[Value]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Unary requests (latency from each request's scheduled send time to the whole answer)\n"
    );
    let _ = writeln!(
        s,
        "| path | side | rate | achieved/s | ok | errors | p50 | p90 | p99 | p99.9 | gateway CPU/req | gateway's own overhead metric (mean) | gateway peak RSS |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for sc in scenarios.iter().filter(|v| v["stream"] == json!(false)) {
        let name = sc["scenario"].as_str().unwrap_or("");
        for side in ["direct", "through"] {
            let v = &sc[side];
            let (cpu, own, rss) = gateway_cells(v);
            let _ = writeln!(
                s,
                "| {name} | {side} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {cpu} | {own} | {rss} |",
                v["target_rate"].as_f64().unwrap_or(0.0),
                v["achieved_rate"].as_f64().unwrap_or(0.0),
                v["ok"],
                v["errors"]["total"],
                fmt_us(q_us(v, "latency", "p50")),
                fmt_us(q_us(v, "latency", "p90")),
                fmt_us(q_us(v, "latency", "p99")),
                fmt_us(q_us(v, "latency", "p99.9")),
            );
        }
        let a = &sc["added"];
        let _ = writeln!(
            s,
            "| {name} | **added** | | | | | **{}** | **{}** | **{}** | **{}** | | | |",
            fmt_added(q_us(a, "latency", "p50")),
            fmt_added(q_us(a, "latency", "p90")),
            fmt_added(q_us(a, "latency", "p99")),
            fmt_added(q_us(a, "latency", "p99.9")),
        );
    }
    s
}

fn stream_table(scenarios: &[Value]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Streams ({PROMPT_WORDS} events each; TTFB from the scheduled send time; per-event = (last byte − first byte) / (events − 1))\n"
    );
    let _ = writeln!(
        s,
        "| path | side | streams/s | achieved/s | ok | errors | TTFB p50 | TTFB p90 | TTFB p99 | TTFB p99.9 | per-event p50 | per-event p99 | whole p50 | whole p99 | gateway CPU/stream | gateway peak RSS |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for sc in scenarios.iter().filter(|v| v["stream"] == json!(true)) {
        let name = sc["scenario"].as_str().unwrap_or("");
        for side in ["direct", "through"] {
            let v = &sc[side];
            let (cpu, _, rss) = gateway_cells(v);
            let _ = writeln!(
                s,
                "| {name} | {side} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {cpu} | {rss} |",
                v["target_rate"].as_f64().unwrap_or(0.0),
                v["achieved_rate"].as_f64().unwrap_or(0.0),
                v["ok"],
                v["errors"]["total"],
                fmt_us(q_us(v, "ttfb", "p50")),
                fmt_us(q_us(v, "ttfb", "p90")),
                fmt_us(q_us(v, "ttfb", "p99")),
                fmt_us(q_us(v, "ttfb", "p99.9")),
                fmt_us(q_us(v, "per_event", "p50")),
                fmt_us(q_us(v, "per_event", "p99")),
                fmt_us(q_us(v, "latency", "p50")),
                fmt_us(q_us(v, "latency", "p99")),
            );
        }
        let a = &sc["added"];
        let _ = writeln!(
            s,
            "| {name} | **added** | | | | | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | | |",
            fmt_added(q_us(a, "ttfb", "p50")),
            fmt_added(q_us(a, "ttfb", "p90")),
            fmt_added(q_us(a, "ttfb", "p99")),
            fmt_added(q_us(a, "ttfb", "p99.9")),
            fmt_added(q_us(a, "per_event", "p50")),
            fmt_added(q_us(a, "per_event", "p99")),
            fmt_added(q_us(a, "latency", "p50")),
            fmt_added(q_us(a, "latency", "p99")),
        );
    }
    s
}

fn max_table(max: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Highest sustained rate (HF path; each step {} s open-loop; sustained = p99 ≤ 10 ms and errors ≤ 0.1%; a failing step runs once more before the search stops)\n",
        max["step_seconds"]
    );
    let _ = writeln!(
        s,
        "| side | step rate | achieved/s | p50 | p99 | errors | gateway CPU (cores) | CPU/req: bench process | CPU/req: gateway | pass |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for side in ["direct", "through"] {
        let Some(steps) = max[side]["steps"].as_array() else {
            continue;
        };
        for st in steps {
            let _ = writeln!(
                s,
                "| {side} | {:.0} | {:.0} | {} | {} | {:.2}% | {:.2} | {} | {} | {} |",
                st["target_rate"].as_f64().unwrap_or(0.0),
                st["achieved_rate"].as_f64().unwrap_or(0.0),
                fmt_us(q_us(st, "latency", "p50")),
                fmt_us(q_us(st, "latency", "p99")),
                st["error_share"].as_f64().unwrap_or(0.0) * 100.0,
                st["gateway_cpu_share"].as_f64().unwrap_or(0.0),
                fmt_us(
                    st["bench_process_cpu_us_per_request"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
                ),
                fmt_us(
                    st["gateway_cpu_us_per_request"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
                ),
                if st["pass"] == json!(true) {
                    "yes"
                } else if st["attempt"] == json!(1) {
                    "no (run again)"
                } else {
                    "no"
                },
            );
        }
    }
    let _ = writeln!(
        s,
        "\n**Sustained**: direct {:.0} /s, through infergate {:.0} /s — ratio **{:.0}%** (gateway peak RSS during its steps: {:.1} MB).",
        max["direct"]["max_sustained_rate"].as_f64().unwrap_or(0.0),
        max["through"]["max_sustained_rate"].as_f64().unwrap_or(0.0),
        max["ratio"].as_f64().unwrap_or(f64::NAN) * 100.0,
        max["through"]["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0
    );
    if let Some(c) = max.get("cpu_bound") {
        let _ = writeln!(
            s,
            "\n**CPU per request** at {:.0}/s, the highest step both sides passed: direct {} (load generator and emulator), through {} ({} of them plus {} in the gateway). With the cores saturated, through/direct cannot pass their ratio: **{:.0}%**.",
            c["rate"].as_f64().unwrap_or(0.0),
            fmt_us(c["direct_us"].as_f64().unwrap_or(f64::NAN)),
            fmt_us(c["through_us"].as_f64().unwrap_or(f64::NAN)),
            fmt_us(c["through_bench_us"].as_f64().unwrap_or(f64::NAN)),
            fmt_us(c["through_gateway_us"].as_f64().unwrap_or(f64::NAN)),
            c["ceiling"].as_f64().unwrap_or(f64::NAN) * 100.0,
        );
    }
    s
}

/// CPU per request of each side at the highest step rate both passed: the
/// ceiling of the sustained ratio when the machine's cores are the limit.
fn cpu_bound(direct: &Value, through: &Value) -> Option<Value> {
    let passed = |side: &Value| -> Vec<Value> {
        side["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .filter(|st| st["pass"] == json!(true))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let (d, t) = (passed(direct), passed(through));
    let t = t
        .iter()
        .rev()
        .find(|t| d.iter().any(|d| d["target_rate"] == t["target_rate"]))?;
    let d = d
        .iter()
        .rev()
        .find(|d| d["target_rate"] == t["target_rate"])?;
    let direct_us = d["bench_process_cpu_us_per_request"].as_f64()?;
    let bench = t["bench_process_cpu_us_per_request"].as_f64()?;
    let gateway = t["gateway_cpu_us_per_request"].as_f64()?;
    Some(json!({
        "rate": t["target_rate"],
        "direct_us": direct_us,
        "through_us": bench + gateway,
        "through_bench_us": bench,
        "through_gateway_us": gateway,
        "ceiling": direct_us / (bench + gateway),
    }))
}

fn memory_table(idle_kb: u64, streams: Option<&Value>, end_idle_kb: u64, peak_kb: u64) -> String {
    let mb = |kb: f64| format!("{:.1} MB", kb / 1024.0);
    let mut s = String::new();
    let _ = writeln!(s, "\n## Gateway memory\n");
    let _ = writeln!(s, "| measure | value |");
    let _ = writeln!(s, "|---|---:|");
    let _ = writeln!(s, "| RSS idle, just started | {} |", mb(idle_kb as f64));
    if let Some(v) = streams {
        let _ = writeln!(
            s,
            "| RSS just before the streams | {} |",
            mb(v["rss_before_kb"].as_f64().unwrap_or(0.0))
        );
        let _ = writeln!(
            s,
            "| RSS with {} concurrent streams open ({} failed, all open after {:.1} s) | {} |",
            v["open_at_measurement"],
            v["failed"],
            v["seconds_to_open_all"].as_f64().unwrap_or(0.0),
            mb(v["rss_with_streams_kb"].as_f64().unwrap_or(0.0))
        );
        let _ = writeln!(
            s,
            "| peak RSS during the streams | {} |",
            mb(v["peak_rss_kb"].as_f64().unwrap_or(0.0))
        );
        let _ = writeln!(
            s,
            "| RSS per open stream | {:.1} KB |",
            v["rss_per_stream_kb"].as_f64().unwrap_or(0.0)
        );
        let _ = writeln!(
            s,
            "| RSS after the streams closed | {} |",
            mb(v["rss_after_release_kb"].as_f64().unwrap_or(0.0))
        );
        let _ = writeln!(
            s,
            "| threads / open fds with the streams open (fds before) | {} / {} ({}) |",
            v["threads"], v["open_fds"], v["open_fds_before"]
        );
    }
    let _ = writeln!(
        s,
        "| RSS idle at the end of the run | {} |",
        mb(end_idle_kb as f64)
    );
    let _ = writeln!(
        s,
        "| peak RSS since the last reset (VmHWM) | {} |",
        mb(peak_kb as f64)
    );
    s
}

fn metrics_table(m: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Does scraping /metrics slow the request path? (HF through infergate at {:.0}/s; scraper every 100 ms; {} scrapes of {} bytes, scrape p50 {})\n",
        m["rate"].as_f64().unwrap_or(0.0),
        m["scrapes"],
        m["metrics_body_bytes"],
        fmt_us(q_us(m, "scrape_latency", "p50"))
    );
    let _ = writeln!(s, "| | p50 | p99 | p99.9 | errors |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (label, key) in [("without scraper", "without"), ("with scraper", "with")] {
        let v = &m[key];
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} |",
            fmt_us(q_us(v, "latency", "p50")),
            fmt_us(q_us(v, "latency", "p99")),
            fmt_us(q_us(v, "latency", "p99.9")),
            v["errors"]["total"]
        );
    }
    let _ = writeln!(
        s,
        "| ratio with / without | {:.2} | {:.2} | | |",
        m["ratio_p50"].as_f64().unwrap_or(f64::NAN),
        m["ratio_p99"].as_f64().unwrap_or(f64::NAN)
    );
    s
}

fn targets(results: &Value) -> (String, Value) {
    let find = |name: &str| {
        results["scenarios"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["scenario"] == json!(name)))
            .cloned()
    };
    let mut rows: Vec<(String, String, String, Option<bool>)> = Vec::new();
    let mut row =
        |target: &str, limit: &str, measured: Option<f64>, ok: &dyn Fn(f64) -> bool, unit: &str| {
            let (text, met) = match measured {
                Some(m) if m.is_finite() => (
                    if unit == "µs" {
                        fmt_added(m)
                    } else if unit == " /s" {
                        format!("{m:.0}{unit}")
                    } else {
                        format!("{m:.1}{unit}")
                    },
                    Some(ok(m)),
                ),
                _ => ("not measured".to_string(), None),
            };
            rows.push((target.to_string(), limit.to_string(), text, met));
        };
    let added = |sc: &str, key: &str, q: &str| find(sc).map(|v| q_us(&v["added"], key, q));
    let rate = results["rate"].as_f64().unwrap_or(0.0);
    row(
        &format!("HF added latency p50 at {rate}/s"),
        "≤ 100 µs",
        added("hf", "latency", "p50"),
        &|m| m <= 100.0,
        "µs",
    );
    row(
        &format!("HF added latency p99 at {rate}/s"),
        "≤ 500 µs",
        added("hf", "latency", "p99"),
        &|m| m <= 500.0,
        "µs",
    );
    row(
        &format!("SageMaker (SigV4) added latency p50 at {rate}/s"),
        "≤ 150 µs",
        added("sm", "latency", "p50"),
        &|m| m <= 150.0,
        "µs",
    );
    row(
        "Stream TTFB added p50 (HF)",
        "≤ 200 µs",
        added("hf-stream", "ttfb", "p50"),
        &|m| m <= 200.0,
        "µs",
    );
    row(
        "Stream TTFB added p50 (SageMaker)",
        "≤ 200 µs",
        added("sm-stream", "ttfb", "p50"),
        &|m| m <= 200.0,
        "µs",
    );
    let max = &results["max_rate"];
    row(
        "Sustained rate through / direct",
        "≥ 70%",
        max["ratio"].as_f64().map(|r| r * 100.0),
        &|m| m >= 70.0,
        "%",
    );
    row(
        "Sustained rate through infergate",
        "≥ 5,000 /s",
        max["through"]["max_sustained_rate"].as_f64(),
        &|m| m >= 5000.0,
        " /s",
    );
    row(
        "Idle RSS",
        "≤ 20 MB",
        results["memory"]["idle_rss_kb"]
            .as_f64()
            .map(|kb| kb / 1024.0),
        &|m| m <= 20.0,
        " MB",
    );
    row(
        "RSS with 1,000 concurrent streams",
        "≤ 100 MB",
        results["memory"]["streams"]["rss_with_streams_kb"]
            .as_f64()
            .map(|kb| kb / 1024.0),
        &|m| m <= 100.0,
        " MB",
    );
    let mut s = String::new();
    let _ = writeln!(s, "\n## Targets (issue 6)\n");
    let _ = writeln!(s, "| target | limit | measured | met |");
    let _ = writeln!(s, "|---|---|---:|---|");
    let mut out = Vec::new();
    for (t, l, m, met) in &rows {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "–",
        };
        let _ = writeln!(s, "| {t} | {l} | {m} | {verdict} |");
        out.push(json!({"target": t, "limit": l, "measured": m, "met": met}));
    }
    let _ = writeln!(
        s,
        "| SigV4 signing of 1 KiB; balancer pick at 10 backends | ≤ 10 µs; ≤ 1 µs | see `cargo bench --bench hot` | – |"
    );
    (s, Value::Array(out))
}

fn main() {
    let opts = Opts::parse();
    // The pacer is this (main) thread: a 1 µs timer slack instead of the
    // default 50 µs lets it sleep closer to each request's due time.
    let slack = std::fs::write("/proc/self/timerslack_ns", "1000").is_ok();
    let run_started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let tck = clock_ticks();
    let loadavg_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Emulators, in this process, with zero added latency.
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (sm, hf, slow) = rt.block_on(async {
        let sm = emulator::sagemaker::start(
            loopback,
            SageMakerOptions {
                region: REGION.into(),
                endpoints: vec![ENDPOINT.into()],
                credentials: vec![(
                    ACCESS_KEY.into(),
                    Credential {
                        secret_access_key: SECRET_KEY.into(),
                        session_token: None,
                    },
                )],
                format: ModelFormat::Tgi,
                ..SageMakerOptions::default()
            },
        )
        .await
        .unwrap();
        let hf = emulator::huggingface::start(
            loopback,
            HuggingFaceOptions {
                token: Some(HF_TOKEN.into()),
                ..HuggingFaceOptions::default()
            },
        )
        .await
        .unwrap();
        let slow = emulator::huggingface::start(
            loopback,
            HuggingFaceOptions {
                token: Some(HF_TOKEN.into()),
                faults: FaultConfig {
                    token_latency: Duration::from_millis(50),
                    ..FaultConfig::default()
                },
                ..HuggingFaceOptions::default()
            },
        )
        .await
        .unwrap();
        (sm, hf, slow)
    });

    // The gateway, as its own process.
    let config = gateway_config(&sm.url(), &hf.url(), &slow.url(), opts.workers);
    let mut gw = start_gateway(&config, opts.log_level.as_deref());
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(15))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = rt.block_on(async {
            matches!(
                client.get(format!("{}/readyz", gw.base)).send().await,
                Ok(r) if r.status().is_success()
            )
        });
        if ok {
            break;
        }
        if !gw.alive() || Instant::now() > ready_by {
            eprintln!(
                "load bench: the gateway did not become ready; last lines of {}:\n{}",
                gw.log.display(),
                gw.log_tail()
            );
            drop(gw);
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = status_value(&gw.pid, "VmRSS");
    let gw_pid = gw.pid.clone();

    let mut bench = Bench {
        opts: opts.clone(),
        rt,
        client,
        gw,
        sm,
        hf,
        tck,
        prompt: (1..=PROMPT_WORDS)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" "),
    };

    let mut scenarios = Vec::new();
    for (name, route, stream) in [
        ("hf", "hf", false),
        ("sm", "sm", false),
        ("hf-stream", "hf", true),
        ("sm-stream", "sm", true),
    ] {
        if opts.runs(name) {
            scenarios.push(bench.scenario(name, route, stream));
        }
    }
    let metrics = opts.runs("metrics").then(|| bench.metrics_effect());
    let streams = opts.runs("streams").then(|| bench.concurrent_streams());
    let max_rate = if opts.runs("max") {
        let direct = bench.max_rate("direct", &|b| b.hf_direct(false));
        std::thread::sleep(Duration::from_millis(300));
        let through = bench.max_rate("through", &|b| b.through("hf", false));
        let d = direct["max_sustained_rate"].as_f64().unwrap_or(0.0);
        let t = through["max_sustained_rate"].as_f64().unwrap_or(0.0);
        let mut v = json!({
            "step_seconds": opts.step.as_secs_f64(),
            "p99_limit_ms": 10,
            "error_limit": SUSTAINED_ERRORS,
            "ratio": if d > 0.0 { t / d } else { f64::NAN },
        });
        if let Some(c) = cpu_bound(&direct, &through) {
            v["cpu_bound"] = c;
        }
        v["direct"] = direct;
        v["through"] = through;
        v
    } else {
        Value::Null
    };
    std::thread::sleep(Duration::from_millis(500));
    let end_idle = status_value(&gw_pid, "VmRSS");
    let peak = status_value(&gw_pid, "VmHWM");

    let cpu = read_first("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let mem = read_first("/proc/meminfo", "MemTotal").unwrap_or_default();
    let git = command_output(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .map(|h| {
        let dirty = command_output(
            "git",
            &[
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
        )
        .is_some_and(|s| !s.is_empty());
        if dirty {
            format!("{h} (with uncommitted changes)")
        } else {
            h
        }
    })
    .unwrap_or_else(|| "unknown".into());
    let deps = locked_versions(&["tokio", "hyper", "reqwest", "aws-sigv4", "hdrhistogram"])
        .into_iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let meta = json!({
        "date": started_at,
        "mode": if opts.quick { "quick" } else { "full" },
        "machine": format!(
            "{} CPUs (nproc), {cpu}, {mem} RAM, Linux {}",
            std::thread::available_parallelism().map_or(0, usize::from),
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()
        ),
        "load average at start / end": format!(
            "{} / {}",
            loadavg_start.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        ),
        "versions": format!(
            "infergate {} (git {git}), {}, {deps}",
            env!("CARGO_PKG_VERSION"),
            command_output("rustc", &["--version"]).unwrap_or_else(|| "rustc unknown".into())
        ),
        "setup": format!("one machine: load generator (tokio, 2 workers, pooled reqwest HTTP/1.1 client) and both emulators (zero added latency) in the bench process; the gateway (`infergate serve`, release build, `server.workers` {}) in its own process; all on 127.0.0.1, sharing the same cores", opts.workers.map_or("default: one per CPU".to_string(), |n| n.to_string())),
        "pacer": format!(
            "the bench's main thread, timer slack {}, sleeping then yield-spinning the last 50 µs below 2,000/s; its lateness (send − due) is in the JSON as pacer_lateness",
            if slack { "set to 1 µs" } else { "left at the default 50 µs" }
        ),
        "gateway binary": gateway_bin().display().to_string(),
        "gateway log level": opts.log_level.clone().unwrap_or_else(|| "default (info: one access-log line per request, to a file)".into()),
        "load": format!(
            "open loop, fixed rate; latency from each request's scheduled time (coordinated omission corrected); HDR histograms (ns, 3 significant digits); unary {} req/s and streams {} /s, {} s and {} s per side, direct and through alternated in {} slices after a {} ms warm-up of each; concurrency cap 1024 in flight (a hit counts as an error)",
            opts.rate, opts.stream_rate, opts.secs, opts.stream_secs, opts.rounds, opts.warmup.as_millis()
        ),
        "requests": format!("POST {{\"inputs\": <{PROMPT_WORDS} words>, \"parameters\": {{\"max_new_tokens\": {PROMPT_WORDS}}}}}: HF direct to `/` (stream `/generate_stream`), SageMaker direct to `/endpoints/{ENDPOINT}/invocations` (stream `invocations-response-stream`, with \"stream\": true), signed once per slice by the load generator; through infergate to `/v1/predict/<route>` and `/v1/predict/<route>/stream`"),
        "gateway CPU and RSS": format!("utime+stime from /proc/<pid>/stat (clock tick {} ms) over the through slices, divided by requests sent; peak RSS = VmHWM of /proc/<pid>/status, reset through /proc/<pid>/clear_refs before each scenario", 1000 / tck.max(1)),
    });
    let mut results = json!({
        "meta": meta,
        "rate": opts.rate,
        "scenarios": scenarios,
        "max_rate": max_rate,
        "metrics_scrape": metrics,
        "memory": {
            "idle_rss_kb": idle_rss,
            "end_idle_rss_kb": end_idle,
            "peak_rss_kb": peak,
            "streams": streams,
        },
        "total_seconds": 0.0,
    });
    let (targets_md, targets_json) = targets(&results);
    results["targets"] = targets_json;
    results["total_seconds"] = json!(run_started.elapsed().as_secs_f64());

    let mut out = header(&results["meta"]);
    let _ = writeln!(
        out,
        "- **run time**: {:.0} s",
        run_started.elapsed().as_secs_f64()
    );
    let sc = results["scenarios"].as_array().cloned().unwrap_or_default();
    if sc.iter().any(|v| v["stream"] == json!(false)) {
        out.push_str(&unary_table(&sc));
    }
    if sc.iter().any(|v| v["stream"] == json!(true)) {
        out.push_str(&stream_table(&sc));
    }
    if !results["max_rate"].is_null() {
        out.push_str(&max_table(&results["max_rate"]));
    }
    out.push_str(&memory_table(
        idle_rss,
        results["memory"]["streams"]
            .as_object()
            .map(|_| &results["memory"]["streams"]),
        end_idle,
        peak,
    ));
    if !results["metrics_scrape"].is_null() {
        out.push_str(&metrics_table(&results["metrics_scrape"]));
    }
    out.push_str(&targets_md);
    let json_path = target_dir().join("infergate-bench.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    let _ = writeln!(out, "\nJSON: `{}`", json_path.display());
    print!("{out}");
    drop(bench);
}
