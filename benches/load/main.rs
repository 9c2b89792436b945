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
//! streams, auth: the cost of client keys and of local and Redis limits,
//! [`auth`]; shadow: what shadow traffic and a cache hit change for the
//! client, [`shadow`]).
// A benchmark panics on a failed setup step, as start-up code does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod bench;
mod gateway;
// The emulators' options and loopback helpers the tests use.
mod generate;
#[allow(dead_code)]
#[path = "../../tests/common/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../../tests/common/net.rs"]
mod net;
mod nginx;
mod opts;
mod procfs;
mod report;
mod results;
mod shadow;
#[allow(dead_code)]
#[path = "../../tests/common/wait.rs"]
mod wait;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use infergate::emulator::{self, FaultConfig, HuggingFaceOptions, ModelFormat};

use harness::{hf_options, sm_options};
pub use harness::{ACCESS_KEY, HF_TOKEN, SECRET_KEY};
pub const REGION: &str = "us-east-1";
pub const ENDPOINT: &str = "flan-t5-small";
/// Words in each prompt: the emulators' model answers one token per word.
pub const PROMPT_WORDS: usize = 20;
/// The p99 a rate must keep to count as sustained.
pub const SUSTAINED_P99: Duration = Duration::from_millis(10);
/// The error share a rate may have to count as sustained.
pub const SUSTAINED_ERRORS: f64 = 0.001;
pub const MAX_RATE_STEPS: &[f64] = &[
    500.0, 1000.0, 2000.0, 3000.0, 5000.0, 7500.0, 10000.0, 12500.0, 15000.0, 20000.0, 25000.0,
    30000.0, 40000.0,
];

use crate::bench::{Bench, Via};
use crate::gateway::{gateway_bin, gateway_config, start_gateway, target_dir};
use crate::nginx::{nginx_bin, NginxProcess};
use crate::opts::Opts;
use crate::procfs::{command_output, locked_versions, read_first, status_value};
use crate::report::{
    cpu_bound, header, max_table, memory_table, metrics_table, nginx_targets, stream_table,
    targets, unary_table, vs_nginx_max,
};

fn main() {
    let opts = Opts::parse();
    // The pacer is this (main) thread: a 1 µs timer slack instead of the
    // default 50 µs lets it sleep closer to each request's due time.
    let slack = std::fs::write("/proc/self/timerslack_ns", "1000").is_ok();
    let run_started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let loadavg_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Emulators, in this process, with zero added latency.
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (sm, hf, slow) = rt.block_on(async {
        // The tests' endpoint (`ENDPOINT` in `REGION`) and credentials.
        let sm = emulator::sagemaker::start(loopback, sm_options(ModelFormat::Tgi))
            .await
            .unwrap();
        let hf = emulator::huggingface::start(loopback, hf_options())
            .await
            .unwrap();
        let slow = emulator::huggingface::start(
            loopback,
            HuggingFaceOptions {
                faults: FaultConfig {
                    token_latency: Duration::from_millis(50),
                    ..FaultConfig::default()
                },
                ..hf_options()
            },
        )
        .await
        .unwrap();
        (sm, hf, slow)
    });

    // The gateway, as its own process.
    let (sm_url, hf_url, slow_url) = (sm.url(), hf.url(), slow.url());
    // The shadow's candidate, an emulator process of its own (`--only
    // shadow` keeps it and the gateway off the load generator's core).
    let candidate = opts.runs("shadow").then(shadow::Candidate::start);
    let candidate_url = candidate.as_ref().map_or(hf_url.clone(), |c| c.url.clone());
    let config = gateway_config(&sm_url, &hf_url, &slow_url, &candidate_url, opts.workers);
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

    // nginx, the baseline, with as many workers as the gateway has.
    let workers = opts
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let (nginx, nginx_note) = match nginx_bin() {
        None => (
            None,
            "not found (no `nginx` on PATH or in /usr/sbin, INFERGATE_BENCH_NGINX unset): no nginx baseline in this run".to_string(),
        ),
        Some(bin) => match NginxProcess::start(bin, hf.addr().port(), workers) {
            Ok(n) => {
                let note = format!(
                    "{} ({}), {workers} workers, `proxy_pass` to the HF emulator over an upstream keep-alive pool of 64, access log buffered (64 KiB, flushed every 100 ms), config in {}",
                    n.version,
                    n.bin.display(),
                    n.dir.display()
                );
                (Some(n), note)
            }
            Err(e) => {
                eprintln!("load bench: nginx did not start, running without it: {e}");
                (None, format!("did not start ({}): no nginx baseline in this run", e.lines().next().unwrap_or("")))
            }
        },
    };

    let mut bench = Bench {
        opts: opts.clone(),
        rt,
        client,
        gw,
        nginx,
        sm,
        hf,
        prompt: (1..=PROMPT_WORDS)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" "),
        auth: opts.runs("auth").then(|| {
            auth::AuthGateways::start(
                &sm_url,
                &hf_url,
                &slow_url,
                opts.workers,
                opts.log_level.as_deref(),
            )
        }),
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
    let auth = if opts.runs("auth") {
        auth::auth_cost(&mut bench)
    } else {
        Value::Null
    };
    let shadow = if opts.runs("shadow") {
        shadow::shadow_cost(&mut bench, candidate.as_ref())
    } else {
        Value::Null
    };
    let streams = opts.runs("streams").then(|| bench.concurrent_streams());
    let max_rate = if opts.runs("max") {
        let direct = bench.max_rate(Via::Direct);
        std::thread::sleep(Duration::from_millis(300));
        let nginx = bench.paths("hf").contains(&Via::Nginx).then(|| {
            let n = bench.max_rate(Via::Nginx);
            std::thread::sleep(Duration::from_millis(300));
            n
        });
        let through = bench.max_rate(Via::Gateway);
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
        if let Some(n) = nginx {
            v["vs_nginx"] = vs_nginx_max(&n, &through);
            v["nginx"] = n;
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
        "nginx": nginx_note,
        "gateway log level": opts.log_level.clone().unwrap_or_else(|| "default (info: one access-log line per request, to a file)".into()),
        "load": format!(
            "open loop, fixed rate; latency from each request's scheduled time (coordinated omission corrected); HDR histograms (ns, 3 significant digits); unary {} req/s and streams {} /s, {} s and {} s per side, the paths (direct, nginx when present, through infergate) alternated in {} rounds after a {} ms warm-up of each; concurrency cap 1024 in flight (a hit counts as an error)",
            opts.rate, opts.stream_rate, opts.secs, opts.stream_secs, opts.rounds, opts.warmup.as_millis()
        ),
        "requests": format!("POST {{\"inputs\": <{PROMPT_WORDS} words>, \"parameters\": {{\"max_new_tokens\": {PROMPT_WORDS}}}}}: HF direct to `/` (stream `/generate_stream`), SageMaker direct to `/endpoints/{ENDPOINT}/invocations` (stream `invocations-response-stream`, with \"stream\": true), signed once per slice by the load generator; through infergate to `/v1/predict/<route>` and `/v1/predict/<route>/stream`"),
        "gateway CPU and RSS": "time on a CPU of every thread of the proxy (/proc/<pid>/task/<tid>/schedstat, in ns) over the through slices, divided by requests sent; peak RSS = VmHWM of /proc/<pid>/status, reset through /proc/<pid>/clear_refs before each scenario",
    });
    let mut results = json!({
        "meta": meta,
        "rate": opts.rate,
        "scenarios": scenarios,
        "max_rate": max_rate,
        "metrics_scrape": metrics,
        "auth": auth,
        "shadow": shadow,
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
    let (nginx_md, nginx_json) = nginx_targets(&results);
    results["targets_vs_nginx"] = nginx_json;
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
    if !results["shadow"].is_null() {
        out.push_str(&shadow::shadow_table(&results["shadow"]));
    }
    if !results["auth"].is_null() {
        out.push_str(&auth::auth_table(&results["auth"]));
    }
    out.push_str(&targets_md);
    out.push_str(&nginx_md);
    let json_path = target_dir().join("infergate-bench.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    let _ = writeln!(out, "\nJSON: `{}`", json_path.display());
    print!("{out}");
    drop(bench);
}
