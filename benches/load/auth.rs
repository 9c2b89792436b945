//! What client keys and limits add (`--only auth`): the same unary HF
//! request through four gateway processes in one run, slices alternated:
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

use crate::bench::{Bench, Via};
use crate::gateway::{gateway_config, start_named, GatewayProcess};
use crate::net::free_port;
use crate::results::{fmt_added, fmt_us, paired_cpu, q_us};

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

/// The scenario's report, as JSON.
pub fn auth_cost(bench: &mut Bench) -> Value {
    let (rate, secs) = (bench.opts.rate, bench.opts.secs);
    let Some(auth) = &bench.auth else {
        return Value::Null;
    };
    let mut vias = vec![Via::Gateway, Via::Auth];
    if auth.redis.is_some() {
        vias.extend([Via::AuthRedis, Via::AuthRedisWait]);
    }
    let note = auth.note.clone();
    let has_redis = auth.redis.is_some();
    eprintln!("load bench: auth and limits at {rate}/s, {secs} s per side");
    // Round trips to the same Redis all along the run, under the same load
    // as the decisions (a PING a millisecond on one connection).
    let port = auth.redis.as_ref().map(|r| r.server.port);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = port.map(|port| {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || ping_until(port, &stop))
    });
    // The same request on every side, key included (the plain gateway
    // ignores it): what differs is what a gateway does with it.
    let bearer = reqwest::header::HeaderValue::from_static(BEARER);
    let make = |b: &Bench, via: Via| {
        let mut target = b.target(via, "hf", false);
        target.headers.insert("authorization", bearer.clone());
        target
    };
    // Short slices, many rounds: the added CPU is read from slices paired
    // round by round, with its 95% interval.
    let rounds = bench.opts.rounds;
    bench.opts.rounds = rounds.max(AUTH_ROUNDS);
    let sides = bench.alternated("hf", rate, secs, &vias, &make);
    bench.opts.rounds = rounds;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut rtts = pinger.and_then(|p| p.join().ok()).unwrap_or_default();
    let side = |via: Via| sides.iter().find(|s| s.name == via.name());
    let json_of = |via: Via| side(via).map(|s| s.json_with_cpu());
    let added = |via: Via| match (side(Via::Gateway), side(via)) {
        (Some(plain), Some(other)) => {
            let (mean, half, pairs) = paired_cpu(plain, other);
            json!({"mean_us": mean, "ci95_half_width_us": half, "pairs": pairs})
        }
        _ => Value::Null,
    };
    let plain = json_of(Via::Gateway).unwrap_or(Value::Null);
    let local = json_of(Via::Auth).unwrap_or(Value::Null);
    let cpu = |v: &Value| v["cpu_us_per_request"].as_f64().unwrap_or(f64::NAN);
    let mut v = json!({
        "rate": rate,
        "plain": plain,
        "auth_local": local,
        "added_cpu_us_auth_local": cpu(&local) - cpu(&plain),
        "added_cpu_paired_auth_local": added(Via::Auth),
        "added_p50_us_auth_local": q_us(&local, "latency", "p50") - q_us(&plain, "latency", "p50"),
        "redis": note,
    });
    if !has_redis {
        return v;
    }
    rtts.sort_unstable();
    let rtt_p50 = rtts
        .get(rtts.len() / 2)
        .map_or(f64::NAN, |n| *n as f64 / 1e3);
    v["redis_ping_rtt_p50_us"] = json!(rtt_p50);
    v["redis_pings"] = json!(rtts.len());
    for (via, suffix) in [(Via::AuthRedis, ""), (Via::AuthRedisWait, "_wait")] {
        let Some(redis) = json_of(via) else { continue };
        v[format!("added_p50_us_redis{suffix}_vs_local")] =
            json!(q_us(&redis, "latency", "p50") - q_us(&local, "latency", "p50"));
        v[format!("added_cpu_us_redis{suffix}")] = json!(cpu(&redis) - cpu(&plain));
        v[format!("added_cpu_paired_redis{suffix}")] = added(via);
        v[via.name()] = redis;
    }
    v
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
        "\n### Client keys and limits (same run, alternated)\n\n\
         | gateway | CPU per request | p50 | p99 |\n|---|---|---|---|\n",
    );
    for (key, name) in [
        ("plain", "no client, no limit"),
        ("auth_local", "key + local limits (client, route)"),
        (
            "auth_redis",
            "key + Redis limits, far from them (default headroom)",
        ),
        (
            "auth_redis_wait",
            "key + Redis limits, every request waiting (headroom = 1)",
        ),
    ] {
        let s = &v[key];
        if s.is_null() {
            continue;
        }
        out.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            fmt_us(s["cpu_us_per_request"].as_f64().unwrap_or(f64::NAN)),
            fmt_us(q_us(s, "latency", "p50")),
            fmt_us(q_us(s, "latency", "p99")),
        ));
    }
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let paired = &v["added_cpu_paired_auth_local"];
    let (mean, half) = (
        paired["mean_us"].as_f64().unwrap_or(f64::NAN),
        paired["ci95_half_width_us"].as_f64().unwrap_or(f64::NAN),
    );
    out.push_str(&format!(
        "\n- key + local limit: CPU {} ± {:.1} µs per request (mean of {} slices paired round by \
         round, 95% interval; target ≤ 2 µs: {}), p50 {}\n",
        fmt_added(mean),
        half,
        paired["pairs"],
        verdict(mean, half, 2.0),
        fmt_added(f("added_p50_us_auth_local")),
    ));
    if v.get("auth_redis").is_some() {
        out.push_str(&format!(
            "- Redis decision, far from the limits: p50 {} over the local one, CPU {}; \
             waiting for Redis every time: p50 {}, CPU {}; a PING round trip to the same Redis \
             during the run: p50 {} (target: ≤ 1 round trip)\n",
            fmt_added(f("added_p50_us_redis_vs_local")),
            fmt_added(f("added_cpu_us_redis")),
            fmt_added(f("added_p50_us_redis_wait_vs_local")),
            fmt_added(f("added_cpu_us_redis_wait")),
            fmt_us(f("redis_ping_rtt_p50_us")),
        ));
    } else {
        out.push_str(&format!("- Redis: {}\n", v["redis"].as_str().unwrap_or("")));
    }
    out
}
