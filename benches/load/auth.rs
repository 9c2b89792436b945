//! What client keys and limits add (`--only auth`): the same unary HF
//! request through four gateway processes in one run, all at once (each at
//! the bench's rate, their requests interleaved one by one, so that every
//! side meets the same machine at the same moments):
//! the bench's usual gateway (no client, no limit), one that checks a
//! client's key and takes a token from a local rate limit (the client's and
//! the route's, `rate_limits.store = "memory"`), and two that keep both in
//! a real redis-server (`store = "redis"`): with the default
//! `rate_limits.headroom`, so that a request far from its limits goes ahead
//! and Redis takes its cost just after, and with `headroom = 1`, every
//! request waiting for Redis's decision. Every side gets the same request,
//! the client's key included (the plain gateway ignores it), so that what
//! differs is what the gateway does with it. Reported: each one's CPU per
//! request and latency, the added CPU of key + local limit (target ≤ 2 µs),
//! and the added p50 of each Redis side against a loopback round trip to
//! the same Redis measured all along the same run, under the same load (a
//! PING a millisecond on one connection; target ≤ 1 RTT).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bench::{Bench, Schedule, Via};
use crate::gateway::{gateway_config, start_named, GatewayProcess};
use crate::net::free_port;
use crate::results::{fmt_added, fmt_us, paired_cpu, q_us, Side};

macro_rules! bench_key {
    () => {
        "ig-bench-client-key-0123456789abcdef"
    };
}

/// The bench client's key.
pub const KEY: &str = bench_key!();

/// How the bench client sends it.
pub const BEARER: &str = concat!("Bearer ", bench_key!());

/// The gateways with keys: local limits, and Redis limits if a
/// redis-server could be started.
pub struct AuthGateways {
    pub local: GatewayProcess,
    pub redis: Option<RedisSides>,
    pub note: String,
}

/// The two gateways keeping their limits in one Redis (each under a key
/// prefix of its own), and that Redis.
pub struct RedisSides {
    /// Default `headroom`: far from the limits a request goes ahead.
    pub ahead: GatewayProcess,
    /// `headroom = 1`: every request waits for Redis.
    pub wait: GatewayProcess,
    pub server: RedisProcess,
}

/// A redis-server of the bench's own, on a free port.
pub struct RedisProcess {
    child: Child,
    pub port: u16,
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisProcess {
    fn start() -> Result<Self, String> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.answers() {
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    /// Whether it answers a PING.
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        ping(&mut s).is_some()
    }
}

/// One PING round trip on `s`, in ns.
fn ping(s: &mut TcpStream) -> Option<u64> {
    let mut buf = [0u8; 64];
    let start = Instant::now();
    s.write_all(b"PING\r\n").ok()?;
    let got = s.read(&mut buf).ok()?;
    (got >= 7).then(|| start.elapsed().as_nanos() as u64)
}

/// A PING a millisecond on one connection until `stop`: the round trips.
fn ping_until(port: u16, stop: &std::sync::atomic::AtomicBool) -> Vec<u64> {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let _ = s.set_nodelay(true);
    let mut rtts = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match ping(&mut s) {
            Some(rtt) => rtts.push(rtt),
            None => break,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    rtts
}

/// The bench's gateway config with a client (key, a rate limit it never
/// reaches) and a route limit, its buckets in `store`.
fn config(base: &str, store: &str) -> String {
    let base = base.replace(
        "[routes.hf]\nbackends = [\"hf\"]\n",
        "[routes.hf]\nbackends = [\"hf\"]\nrate_limit = { requests_per_second = 1000000, burst = 1000000 }\n",
    );
    format!(
        "{base}\n[clients.bench]\napi_key = \"{KEY}\"\nadmin = true\n\
         rate_limit = {{ requests_per_second = 1000000, burst = 1000000 }}\n\
         [rate_limits]\n{store}\n"
    )
}

impl AuthGateways {
    pub fn start(
        sm: &str,
        hf: &str,
        slow: &str,
        workers: Option<usize>,
        log: Option<&str>,
    ) -> Self {
        let base = gateway_config(sm, hf, slow, hf, workers);
        let local = start_named(&config(&base, "store = \"memory\""), log, "auth-local");
        let (redis, note) = match RedisProcess::start() {
            Ok(server) => {
                let store = |extra: &str| {
                    let url = format!("redis://127.0.0.1:{}", server.port);
                    let store = format!(
                        "store = \"redis\"\nredis_url = \"{url}\"\ntimeout = \"100ms\"\n{extra}"
                    );
                    config(&base, &store)
                };
                let ahead = start_named(&store("key_prefix = \"ahead\""), log, "auth-redis");
                let wait = store("key_prefix = \"wait\"\nheadroom = 1.0");
                let wait = start_named(&wait, log, "auth-redis-wait");
                let sides = RedisSides {
                    ahead,
                    wait,
                    server,
                };
                (
                    Some(sides),
                    "a redis-server of its own on loopback".to_string(),
                )
            }
            Err(e) => (None, format!("{e}: no Redis side in this run")),
        };
        Self { local, redis, note }
    }
}

/// The scenario's report, as JSON: the plain gateway and the one with
/// local limits at once (the added CPU), then the local one and the two
/// Redis ones at once (the added latency), with the Redis round trip
/// measured all along that part.
pub fn auth_cost(bench: &mut Bench) -> Value {
    let (rate, secs) = (bench.opts.rate, bench.opts.secs);
    let Some(auth) = &bench.auth else {
        return Value::Null;
    };
    let note = auth.note.clone();
    let port = auth.redis.as_ref().map(|r| r.server.port);
    eprintln!(
        "load bench: auth and limits at {rate}/s per side, sides at once, {secs} s each part"
    );
    let sides = interleaved(bench, &[Via::Gateway, Via::Auth]);
    let json_of = |sides: &[Side], via: Via| {
        let side = sides.iter().find(|s| s.name == via.name());
        side.map_or(Value::Null, Side::json_with_cpu)
    };
    let (plain, local) = (json_of(&sides, Via::Gateway), json_of(&sides, Via::Auth));
    let mut v = json!({
        "rate": rate,
        "plain": plain,
        "auth_local": local,
        "added_cpu_paired_auth_local": added_cpu(&sides, Via::Gateway, Via::Auth),
        "added_p50_us_auth_local": q_us(&local, "latency", "p50") - q_us(&plain, "latency", "p50"),
        "redis": note,
    });
    let Some(port) = port else {
        return v;
    };
    // Round trips to the same Redis all along, under the same load as the
    // decisions (a PING a millisecond on one connection).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || ping_until(port, &stop))
    };
    let sides = interleaved(bench, &[Via::Auth, Via::AuthRedis, Via::AuthRedisWait]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut rtts = pinger.join().unwrap_or_default();
    rtts.sort_unstable();
    let rtt_p50 = rtts
        .get(rtts.len() / 2)
        .map_or(f64::NAN, |n| *n as f64 / 1e3);
    v["redis_ping_rtt_p50_us"] = json!(rtt_p50);
    v["redis_pings"] = json!(rtts.len());
    let local = json_of(&sides, Via::Auth);
    for (via, suffix) in [(Via::AuthRedis, ""), (Via::AuthRedisWait, "_wait")] {
        let redis = json_of(&sides, via);
        v[format!("added_p50_us_redis{suffix}_vs_local")] =
            json!(q_us(&redis, "latency", "p50") - q_us(&local, "latency", "p50"));
        v[format!("added_cpu_paired_redis{suffix}_vs_local")] = added_cpu(&sides, Via::Auth, via);
        v[via.name()] = redis;
    }
    v["auth_local_beside_redis"] = local;
    v
}

/// `vias` at once at the bench's rate each, their requests interleaved,
/// in many short slices; the same request on every side, key included
/// (the plain gateway ignores it), so that what differs is what a gateway
/// does with it.
fn interleaved(bench: &mut Bench, vias: &[Via]) -> Vec<Side> {
    let (rate, secs) = (bench.opts.rate, bench.opts.secs);
    let bearer = reqwest::header::HeaderValue::from_static(BEARER);
    let make = |b: &Bench, via: Via| {
        let mut target = b.target(via, "hf", false);
        target.headers.insert("authorization", bearer.clone());
        target
    };
    let rounds = bench.opts.rounds;
    bench.opts.rounds = rounds.max(AUTH_ROUNDS);
    let sides = bench.compare("hf", rate, secs, vias, &make, Schedule::Interleaved);
    bench.opts.rounds = rounds;
    sides
}

/// What `other` adds to `base` in CPU per request: the mean of their
/// slices paired one by one (each pair over the same moments of the
/// machine), with its 95% interval.
fn added_cpu(sides: &[Side], base: Via, other: Via) -> Value {
    let side = |via: Via| sides.iter().find(|s| s.name == via.name());
    let Some((base, other)) = side(base).zip(side(other)) else {
        return Value::Null;
    };
    let (mean, half, pairs) = paired_cpu(base, other);
    json!({"mean_us": mean, "ci95_half_width_us": half, "pairs": pairs})
}

/// Rounds of the scenario at least (`--rounds` may ask for more): the
/// pairs the added CPU is estimated from.
const AUTH_ROUNDS: usize = 20;

/// Whether a mean with a 95% interval of `half` is within `limit`.
fn verdict(mean: f64, half: f64, limit: f64) -> &'static str {
    if mean + half <= limit {
        "met"
    } else if mean - half > limit {
        "not met"
    } else if mean <= limit {
        "met at the mean, within the interval of not"
    } else {
        "over at the mean, within the interval of met"
    }
}

/// The scenario as a markdown table.
pub fn auth_table(v: &Value) -> String {
    let mut out = String::from(
        "\n### Client keys and limits (same run; the sides of each part at once, requests \
         interleaved)\n\n| part | gateway | CPU per request | p50 | p99 |\n|---|---|---|---|---|\n",
    );
    for (key, part, name) in [
        ("plain", "CPU", "no client, no limit"),
        ("auth_local", "CPU", "key + local limits (client, route)"),
        ("auth_local_beside_redis", "Redis", "key + local limits"),
        (
            "auth_redis",
            "Redis",
            "key + Redis limits, far from them (default headroom)",
        ),
        (
            "auth_redis_wait",
            "Redis",
            "key + Redis limits, every request waiting (headroom = 1)",
        ),
    ] {
        let s = &v[key];
        if s.is_null() {
            continue;
        }
        out.push_str(&format!(
            "| {part} | {name} | {} | {} | {} |\n",
            fmt_us(s["cpu_us_per_request"].as_f64().unwrap_or(f64::NAN)),
            fmt_us(q_us(s, "latency", "p50")),
            fmt_us(q_us(s, "latency", "p99")),
        ));
    }
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let paired = |k: &str| {
        let p = &v[k];
        let g = |f: &str| p[f].as_f64().unwrap_or(f64::NAN);
        (g("mean_us"), g("ci95_half_width_us"), p["pairs"].clone())
    };
    let (mean, half, pairs) = paired("added_cpu_paired_auth_local");
    out.push_str(&format!(
        "\n- key + local limit: CPU {} ± {:.1} µs per request (mean of {pairs} slices paired one \
         by one, 95% interval; target ≤ 2 µs: {}), p50 {}\n",
        fmt_added(mean),
        half,
        verdict(mean, half, 2.0),
        fmt_added(f("added_p50_us_auth_local")),
    ));
    if v.get("auth_redis").is_none() {
        out.push_str(&format!("- Redis: {}\n", v["redis"].as_str().unwrap_or("")));
        return out;
    }
    let cpu = |k: &str| {
        let (mean, half, _) = paired(k);
        format!("{} ± {half:.1} µs", fmt_added(mean))
    };
    out.push_str(&format!(
        "- Redis decision, far from the limits: p50 {} over the local one, CPU {}; waiting for \
         Redis every time: p50 {}, CPU {}; a PING round trip to the same Redis during that part: \
         p50 {} (target: ≤ 1 round trip)\n",
        fmt_added(f("added_p50_us_redis_vs_local")),
        cpu("added_cpu_paired_redis_vs_local"),
        fmt_added(f("added_p50_us_redis_wait_vs_local")),
        cpu("added_cpu_paired_redis_wait_vs_local"),
        fmt_us(f("redis_ping_rtt_p50_us")),
    ));
    out
}
