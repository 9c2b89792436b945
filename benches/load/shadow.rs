//! What shadow traffic and the response cache change for the client
//! (`--only shadow`): the same HF request through the bench's gateway in
//! one run, slices alternated, on three routes: `hf` (plain),
//! `hf-shadowed` (every request also sent to a shadow backend on the same
//! emulator and the answers compared, off the request path) and
//! `hf-cached` (the same request every time: a hit after the first).
//! Reported: each one's latency and the gateway's CPU per request, and the
//! latency each adds to plain at the mean, p50 and p99. The shadow should
//! add none (its call starts once the client has the answer); its CPU is a
//! second upstream call and a comparison. The candidate is an emulator
//! process of its own, and while the scenario runs the gateway and it are
//! pinned to one CPU and the load generator to the others ([`Pinning`]):
//! on two CPUs shared by everything, the shadow's work would otherwise
//! delay the client reading its answer, which is the machine's contention
//! and not the request path. Unary and streamed.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bench::{Bench, Schedule, Via};
use crate::gateway::gateway_bin;
use crate::net::free_port;
use crate::results::{fmt_added, fmt_us, q_us};

const VIAS: [Via; 3] = [Via::Gateway, Via::Shadowed, Via::Cached];

/// The shadow's candidate: an HF emulator process of its own
/// (`infergate emulate huggingface`), so that its work can be kept off the
/// load generator's core.
pub struct Candidate {
    child: Child,
    pub url: String,
}

impl Drop for Candidate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Candidate {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(gateway_bin())
            .args(["emulate", "huggingface", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the candidate emulator starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the candidate emulator listens");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// `taskset` for every thread of `pid`; whether it took.
fn pin(pid: &str, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-cp", cpus, pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The CPUs `pid` may run on, as the kernel lists them (`0-1`, `0,2-3`).
fn allowed_cpus(pid: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_string())
}

/// The CPU numbers of a kernel CPU list.
fn cpu_numbers(list: &str) -> Vec<usize> {
    let range = |part: &str| -> Vec<usize> {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
            (Ok(a), Ok(b)) => (a..=b).collect(),
            _ => Vec::new(),
        }
    };
    list.split(',').flat_map(range).collect()
}

/// The processes pinned for the scenario, each with the CPUs it had
/// before: dropped, it gives each those CPUs back (read before pinning,
/// since once pinned a process's own view of the machine is the pinned
/// one: `available_parallelism` then counts one CPU).
struct Pinning {
    saved: Vec<(String, String)>,
    /// What was done, for the report.
    note: Option<String>,
}

impl Pinning {
    /// The gateway and the candidate on the first CPU this process may use,
    /// this process (load generator and primary emulator) on the rest,
    /// when there are two or more and `taskset` is there: then the
    /// shadow's work (the gateway's second call, the candidate's answer)
    /// cannot take the CPU the client needs to read its answer, and only
    /// what the shadow adds to the request's path shows.
    fn apart(gw: &str, candidate: Option<&Candidate>) -> Self {
        let own = std::process::id().to_string();
        let mut pids = vec![gw.to_string(), own.clone()];
        pids.extend(candidate.map(|c| c.child.id().to_string()));
        let saved: Vec<_> = pids
            .iter()
            .filter_map(|pid| Some((pid.clone(), allowed_cpus(pid)?)))
            .collect();
        let mut pinning = Self { saved, note: None };
        let cpus = allowed_cpus(&own).map_or_else(Vec::new, |l| cpu_numbers(&l));
        let [first, rest @ ..] = cpus.as_slice() else {
            return pinning;
        };
        if rest.is_empty() || pinning.saved.len() != pids.len() {
            return pinning;
        }
        let first = first.to_string();
        let rest = rest
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let pinned = pids
            .iter()
            .all(|pid| pin(pid, if *pid == own { &rest } else { &first }));
        pinning.note = pinned.then(|| {
            format!(
                "gateway and candidate on CPU {first}, load generator and primary emulator on CPUs {rest}"
            )
        });
        pinning
    }
}

impl Drop for Pinning {
    /// Every pinned process back on the CPUs it had, even when a later
    /// pin failed.
    fn drop(&mut self) {
        for (pid, cpus) in &self.saved {
            pin(pid, cpus);
        }
    }
}

/// The scenario's report, as JSON: one part per kind of request.
pub fn shadow_cost(bench: &mut Bench, candidate: Option<&Candidate>) -> Value {
    let gw = bench.gw.pid.clone();
    let pinning = Pinning::apart(&gw, candidate);
    let mut v = json!({
        "candidate": if candidate.is_some() { "an emulator process of its own" } else { "the primary's emulator" },
        "pinning": pinning.note.clone().unwrap_or_else(|| "none (one CPU, or no taskset): the shadow's work shares the client's CPU".into()),
    });
    for stream in [false, true] {
        let (rate, secs) = if stream {
            (bench.opts.stream_rate, bench.opts.stream_secs)
        } else {
            (bench.opts.rate, bench.opts.secs)
        };
        eprintln!(
            "load bench: shadow and cache ({}) at {rate}/s, {secs} s per side",
            kind(stream)
        );
        let make = move |b: &Bench, via: Via| b.target(via, "hf", stream);
        let sides = bench.compare("hf", rate, secs, &VIAS, &make, Schedule::Alternated);
        let json_of = |via: Via| {
            let side = sides.iter().find(|s| s.name == via.name())?;
            Some(side.json_with_cpu())
        };
        let plain = json_of(Via::Gateway).unwrap_or(Value::Null);
        let mut part = json!({ "rate": rate, "plain": plain });
        for via in [Via::Shadowed, Via::Cached] {
            let side = json_of(via).unwrap_or(Value::Null);
            let added: serde_json::Map<String, Value> = ["mean", "p50", "p99"]
                .into_iter()
                .map(|q| {
                    let d = q_us(&side, "latency", q) - q_us(&plain, "latency", q);
                    (format!("{q}_us"), json!(d))
                })
                .collect();
            part[format!("added_latency_{}", via.name())] = Value::Object(added);
            part[via.name()] = side;
        }
        v[kind(stream)] = part;
    }
    drop(pinning);
    v
}

fn kind(stream: bool) -> &'static str {
    if stream {
        "stream"
    } else {
        "unary"
    }
}

/// The scenario as a markdown table.
pub fn shadow_table(v: &Value) -> String {
    let mut out = String::from(
        "\n### Shadow traffic and the response cache (same run, alternated)\n\n\
         | request | route | CPU per request | mean | p50 | p99 | added mean / p50 / p99 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for stream in [false, true] {
        let part = &v[kind(stream)];
        if part.is_null() {
            continue;
        }
        for (key, name) in [
            ("through", "plain"),
            ("shadowed", "shadowed, 100%"),
            ("cached", "cached, every request a hit"),
        ] {
            let side = if key == "through" {
                &part["plain"]
            } else {
                &part[key]
            };
            if side.is_null() {
                continue;
            }
            let added = &part[format!("added_latency_{key}")];
            let added = if added.is_null() {
                "—".to_string()
            } else {
                ["mean", "p50", "p99"]
                    .map(|q| fmt_added(added[format!("{q}_us")].as_f64().unwrap_or(f64::NAN)))
                    .join(" / ")
            };
            out.push_str(&format!(
                "| {} at {}/s | {name} | {} | {} | {} | {} | {added} |\n",
                kind(stream),
                part["rate"],
                fmt_us(side["cpu_us_per_request"].as_f64().unwrap_or(f64::NAN)),
                fmt_us(q_us(side, "latency", "mean")),
                fmt_us(q_us(side, "latency", "p50")),
                fmt_us(q_us(side, "latency", "p99")),
            ));
        }
    }
    out.push_str(&format!(
        "\n- The shadowed route's CPU includes its shadow call and the comparison; \
         its latency should match plain's (the shadow call starts once the client has the answer).\n\
         - Candidate: {}; pinning: {}.\n",
        v["candidate"].as_str().unwrap_or(""),
        v["pinning"].as_str().unwrap_or(""),
    ));
    out
}
