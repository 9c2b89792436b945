//! The fault matrix: each fault scenario at a fixed request rate, one table
//! row each.
//!
//! ```text
//! cargo run --release --example fault_matrix [-- --rate 200 --seconds 3]
//! ```
//!
//! For every scenario, fresh emulators (a TGI-format SageMaker endpoint and
//! an HF endpoint, zero latency unless the scenario says otherwise) and a
//! fresh gateway start in-process on loopback, with the same config loader,
//! server and upstream client as `infergate serve`. The load is open loop:
//! request `i` is sent at `start + i / rate` whatever the earlier ones are
//! doing, so a slow gateway builds a backlog instead of slowing the load.
//! The row reports the client's success rate, the upstream amplification
//! (requests the emulators received, and attempts the gateway made, per
//! client request) and the latency the client saw (all requests).

// An example panics on a failed setup step, as start-up code does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The emulators' options, the in-process gateway and loopback helpers the
// tests use.
#[allow(dead_code)]
#[path = "../tests/common/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../tests/common/net.rs"]
mod net;
#[allow(dead_code)]
#[path = "../tests/common/wait.rs"]
mod wait;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use infergate::config::Config;
use infergate::emulator::{
    self, EmulatorHandle, FaultConfig, HuggingFaceOptions, InjectedError, ModelFormat,
    SageMakerOptions,
};
use infergate::gateway::BuildOptions;
use tokio::time::Instant;

use harness::{hf_options, sm_options, static_credentials, Served, BODY, HF_TOKEN, SECRET_KEY};

/// The client gives up on a request after this long, so every run is bounded.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One fault scenario.
struct Scenario {
    name: &'static str,
    /// The route's backends, in order: `sm`, `hf`, `down` (a closed port).
    backends: &'static [&'static str],
    /// Extra keys of the route.
    route_keys: &'static str,
    sm: FaultConfig,
    hf: FaultConfig,
    /// One line on the setup, printed under the table.
    about: &'static str,
}

fn faults(f: impl FnOnce(&mut FaultConfig)) -> FaultConfig {
    let mut c = FaultConfig::default();
    f(&mut c);
    c
}

fn scenarios() -> Vec<Scenario> {
    let none = FaultConfig::default;
    vec![
        Scenario {
            name: "healthy",
            backends: &["sm", "hf"],
            route_keys: "",
            sm: none(),
            hf: none(),
            about: "route [sm, hf]; no faults",
        },
        Scenario {
            name: "one of two backends 30% 503",
            backends: &["sm", "hf"],
            route_keys: "",
            sm: faults(|f| {
                f.error_rate = 0.3;
                f.error = InjectedError::ServiceUnavailable;
            }),
            hf: none(),
            about: "route [sm, hf]; sm answers 30% of requests 503 ServiceUnavailable",
        },
        Scenario {
            name: "single backend 30% 503",
            backends: &["sm"],
            route_keys: "",
            sm: faults(|f| {
                f.error_rate = 0.3;
                f.error = InjectedError::ServiceUnavailable;
            }),
            hf: none(),
            about: "route [sm]; sm answers 30% 503; default retry budget (20% + 10/s over 10s)",
        },
        Scenario {
            name: "SageMaker throttling 100%, HF healthy",
            backends: &["sm", "hf"],
            route_keys: "",
            sm: faults(|f| {
                f.error_rate = 1.0;
                f.error = InjectedError::ThrottlingException;
            }),
            hf: none(),
            about: "route [sm, hf]; every sm request gets ThrottlingException (ejected after 5)",
        },
        Scenario {
            name: "HF cold start, SageMaker healthy",
            backends: &["sm", "hf"],
            route_keys: "",
            sm: none(),
            hf: faults(|f| f.cold_start = Some(Duration::from_secs(2))),
            about: "route [sm, hf]; hf scaled to zero, a replica takes 2s to start",
        },
        Scenario {
            name: "connection resets 10%",
            backends: &["sm", "hf"],
            route_keys: "",
            sm: faults(|f| f.reset_rate = 0.1),
            hf: faults(|f| f.reset_rate = 0.1),
            about: "route [sm, hf]; both reset 10% of connections before answering",
        },
        Scenario {
            name: "one backend hung, per_try_timeout 200ms",
            backends: &["sm", "hf"],
            route_keys: "per_try_timeout = \"200ms\"",
            sm: faults(|f| f.latency = Duration::from_secs(10)),
            hf: none(),
            about: "route [sm, hf], per_try_timeout 200ms; sm answers after 10s",
        },
        Scenario {
            name: "one backend down (closed port)",
            backends: &["down", "hf"],
            route_keys: "",
            sm: none(),
            hf: none(),
            about: "route [down, hf]; down is a loopback port nothing listens on",
        },
    ]
}

fn config(s: &Scenario) -> String {
    let list: Vec<String> = s.backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1
request_timeout = "5s"
shutdown_grace = "1s"
max_connections = 100000

[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "${{SM_URL}}"

[backends.hf]
kind = "huggingface"
url = "${{HF_URL}}"
token = "${{HF_TOKEN}}"

[backends.down]
kind = "huggingface"
url = "${{DOWN_URL}}"

[routes.r]
backends = [{}]
balance = "weighted"
{}
"#,
        list.join(", "),
        s.route_keys
    )
}

/// A loopback URL nothing listens on.
fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", net::free_port())
}

struct Row {
    requests: usize,
    ok: usize,
    emulator_requests: u64,
    gateway_attempts: f64,
    p50: Duration,
    p99: Duration,
    per_backend: String,
    failures: String,
}

async fn start_emulators(s: &Scenario) -> (EmulatorHandle, EmulatorHandle) {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let sm = emulator::sagemaker::start(
        loopback,
        SageMakerOptions {
            faults: s.sm.clone(),
            ..sm_options(ModelFormat::Tgi)
        },
    )
    .await
    .unwrap();
    let hf = emulator::huggingface::start(
        loopback,
        HuggingFaceOptions {
            faults: s.hf.clone(),
            ..hf_options()
        },
    )
    .await
    .unwrap();
    (sm, hf)
}

async fn run(s: &Scenario, rate: u32, seconds: u32) -> Row {
    let (sm, hf) = start_emulators(s).await;
    let vars: HashMap<&str, String> = HashMap::from([
        ("SM_URL", sm.url()),
        ("HF_URL", hf.url()),
        ("HF_TOKEN", HF_TOKEN.to_string()),
        ("DOWN_URL", closed_port_url()),
    ]);
    let config = Config::from_toml(&config(s), &|k| vars.get(k).cloned())
        .unwrap_or_else(|e| panic!("scenario {:?}: invalid config:\n{e}", s.name));
    let credentials = HashMap::from([("sm".to_string(), static_credentials(SECRET_KEY))]);
    let served = Served::start(
        config,
        BuildOptions {
            credentials,
            ..BuildOptions::default()
        },
    )
    .await;
    let gateway = Arc::clone(&served.gateway);

    let client = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let url = format!("{}/v1/predict/r", served.base);
    let total = (rate as usize) * (seconds as usize);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at).await;
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            // `None` for a success, else what went wrong.
            let failure = match client
                .post(url)
                .header("content-type", "application/json")
                .body(BODY)
                .send()
                .await
            {
                Ok(res) => {
                    let status = res.status();
                    let attempts = res
                        .headers()
                        .get("x-infergate-attempts")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("?")
                        .to_string();
                    match res.bytes().await {
                        Ok(_) if status.is_success() => None,
                        Ok(body) => {
                            let kind = serde_json::from_slice::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|v| v["error"]["type"].as_str().map(str::to_string))
                                .unwrap_or_default();
                            Some(format!("{} {kind} ({attempts} attempts)", status.as_u16()))
                        }
                        Err(_) => Some("body cut".to_string()),
                    }
                }
                Err(e) if e.is_timeout() => Some("client timeout".to_string()),
                Err(_) => Some("client error".to_string()),
            };
            (failure, sent.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut ok = 0;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        let (failure, took) = t.await.unwrap();
        match failure {
            None => ok += 1,
            Some(f) => *failures.entry(f).or_default() += 1,
        }
        latencies.push(took);
    }
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };

    let metrics = String::from_utf8(gateway.metrics.encode()).unwrap();
    let mut attempts_by_backend: HashMap<String, f64> = HashMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("infergate_upstream_attempts_total{"))
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let backend = series
            .split(['{', ','])
            .find_map(|kv| kv.strip_prefix("backend=\""))
            .map(|b| b.trim_end_matches(['"', '}']).to_string())
            .unwrap_or_default();
        *attempts_by_backend.entry(backend).or_default() += value.parse::<f64>().unwrap();
    }
    let gateway_attempts = attempts_by_backend.values().sum();
    let mut split: Vec<String> = s
        .backends
        .iter()
        .map(|b| {
            let seen = match *b {
                "sm" => sm.counters().requests().to_string(),
                "hf" => hf.counters().requests().to_string(),
                _ => "-".to_string(),
            };
            let tried = attempts_by_backend.get(*b).copied().unwrap_or(0.0);
            format!("{b}: {seen} received / {tried} attempted")
        })
        .collect();
    split.sort();

    let row = Row {
        requests: total,
        ok,
        emulator_requests: sm.counters().requests() + hf.counters().requests(),
        gateway_attempts,
        p50: pct(0.50),
        p99: pct(0.99),
        per_backend: split.join(", "),
        failures: if failures.is_empty() {
            "none".to_string()
        } else {
            failures
                .iter()
                .map(|(f, n)| format!("{n} × {f}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    };
    served.stop().await;
    drop((sm, hf));
    row
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn usage() -> ! {
    eprintln!("usage: fault_matrix [--rate REQUESTS_PER_SECOND] [--seconds SECONDS]");
    std::process::exit(2);
}

fn parse_args() -> (u32, u32) {
    let (mut rate, mut seconds) = (200u32, 3u32);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u32 {
            match args.next().and_then(|v| v.parse::<u32>().ok()) {
                Some(v) if v > 0 => v,
                _ => {
                    eprintln!("{name} takes a whole number greater than 0");
                    usage()
                }
            }
        };
        match arg.as_str() {
            "--rate" => rate = value("--rate"),
            "--seconds" => seconds = value("--seconds"),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other:?}");
                usage()
            }
        }
    }
    (rate, seconds)
}

#[tokio::main]
async fn main() {
    let (rate, seconds) = parse_args();
    let scenarios = scenarios();
    println!(
        "Fault matrix: {rate} requests/s for {seconds} s per scenario, open loop, \
         balance \"weighted\" (equal weights, so a fault on one of two backends meets \
         half the traffic; p2c would steer by latency), otherwise the defaults: attempts 3, \
         retry budget 20% + 10/s over 10 s, eject after 5 consecutive failures for 30 s; \
         request_timeout 5s.\n"
    );
    println!("| scenario | client success | upstream requests / request | gateway attempts / request | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut notes = Vec::new();
    for s in &scenarios {
        let row = run(s, rate, seconds).await;
        let n = row.requests.max(1) as f64;
        println!(
            "| {} | {:.2}% | {:.3} | {:.3} | {} | {} |",
            s.name,
            100.0 * row.ok as f64 / n,
            row.emulator_requests as f64 / n,
            row.gateway_attempts / n,
            ms(row.p50),
            ms(row.p99),
        );
        notes.push(format!(
            "- {}: {}. Upstream: {}. Failures: {}.",
            s.name, s.about, row.per_backend, row.failures
        ));
    }
    println!("\nScenarios:\n");
    for n in notes {
        println!("{n}");
    }
}
