//! What Kubernetes does to the gateway, under load. Two replicas
//! (the real binary, `serve --config F`) in front of a SageMaker and a
//! Hugging Face emulator, behind a real HAProxy that health-checks
//! `/readyz` and speaks h2c to one replica, HTTP/1.1 to the other. A load
//! generator sends 200 requests a second through HAProxy: half unary, half
//! streams (a quarter of them longer than the shutdown delay), one in five
//! with a prompt too large for HAProxy to send again. Meanwhile each
//! replica in turn is stopped with SIGTERM and started again on its port
//! (a rolling restart); then both take a new config (one by noticing its
//! file changed, the other on SIGHUP), a broken file is refused, and a
//! SIGHUP with nothing changed changes nothing; then both stop at once.
//!
//! What must hold: no client request fails (every unary answer is a 200
//! with the model's text), no stream is cut (every one ends with its final
//! event), every replica exits 0 on SIGTERM, HAProxy takes each stopping
//! replica out of rotation on its 503 from `/readyz` (not on finding its
//! port closed), streams run through each restart's drain, and the new
//! config is applied (the metrics say so, under a new hash, and the new
//! route answers on each replica).
//!
//! Why it can hold: on SIGTERM a replica answers `/readyz` with 503 for
//! `server.shutdown_delay` while still serving, so HAProxy takes it out of
//! rotation before it stops accepting; then it asks its connections to
//! close (HTTP/1.1: `Connection: close`; h2: GOAWAY) and lets the requests
//! and streams in flight finish. What HAProxy would still see fail (a
//! refused connection, a pooled connection closed as a request went out on
//! it) it retries on the other replica (`retry-on`, `redispatch`), but only
//! while it holds the whole request: a larger one is lost unless the
//! replica left the rotation first.

#[cfg(test)]
mod common;
#[cfg(test)]
#[path = "rollout/load.rs"]
mod load;
#[cfg(test)]
#[path = "rollout/replica.rs"]
mod replica;
#[cfg(test)]
#[path = "rollout/watch.rs"]
mod watch;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::haproxy::{HaProxy, Server};
use load::{Load, Outcomes, Report, Stop};
use replica::{config_hash, Emulators, Reload, Replica};
use watch::{Monitor, Timeline, World};

/// Requests a second the load generator sends.
const RATE: u32 = 200;
/// Emulators' time per token: a stream of [`STREAM_TOKENS`] takes ~320 ms,
/// one of [`LONG_STREAM_TOKENS`] 1.6 s (past the replicas' 1 s shutdown
/// delay), a unary answer of [`UNARY_TOKENS`] ~160 ms.
const TOKEN_LATENCY: Duration = Duration::from_millis(40);
const STREAM_TOKENS: u32 = 8;
const LONG_STREAM_TOKENS: u32 = 40;
/// How long a stopping replica answers 503 on /readyz while it serves on,
/// before it closes its connections (`server.shutdown_delay`).
const SHUTDOWN_DELAY: Duration = Duration::from_secs(1);
const UNARY_TOKENS: u32 = 4;
/// Longest a replica is given to exit after SIGTERM: its delay (1 s), the
/// streams in flight, and far more for a loaded machine.
const EXIT_WAIT: Duration = Duration::from_secs(15);
/// Longest any other condition (a replica ready, HAProxy's view, a reload,
/// some requests done) is waited for.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_and_a_reload_under_load_lose_nothing() {
    let started = Instant::now();
    let timeline = Timeline::new();
    let emulators = Emulators::start().await;
    let mut replicas = [
        Replica::new("r0", &emulators, Reload::Watch),
        Replica::new("r1", &emulators, Reload::Signal),
    ];
    let servers: Vec<Server> = replicas
        .iter()
        .map(|r| Server {
            name: r.name.to_string(),
            port: r.port,
            // One drain of each kind: GOAWAY on h2, `Connection: close`
            // on HTTP/1.1.
            h2: r.name == "r0",
        })
        .collect();
    for r in &mut replicas {
        r.start(&timeline);
    }
    for r in &mut replicas {
        r.wait_ready(&timeline).await;
    }
    let proxy = HaProxy::start(&servers);
    let monitor = Monitor::start(proxy.stats(), timeline.clone());
    let outcomes = Outcomes::default();
    let world = World {
        proxy: &proxy,
        monitor: &monitor,
        timeline: &timeline,
        outcomes: Arc::clone(&outcomes),
    };
    for r in &replicas {
        world.wait_status(r, "UP", &replicas).await;
    }

    let load = Load::start(proxy.url(""), timeline.clone(), outcomes);
    world.wait_done(&load, 100, &replicas).await;

    // The rolling restart: one replica at a time, the next only once
    // HAProxy sends to the restarted one again.
    let mut stops = Vec::new();
    for i in 0..replicas.len() {
        let at = timeline.since();
        let code = replicas[i].terminate(&timeline).await;
        stops.push(Stop::new(replicas[i].name, at, code));
        replicas[i].start(&timeline);
        replicas[i].wait_ready(&timeline).await;
        world.wait_status(&replicas[i], "UP", &replicas).await;
        world.wait_done(&load, 100, &replicas).await;
    }

    // The reload, under the same load: a route's timeout changed and a new
    // route, on both replicas, each by its own way of noticing.
    let hashes: Vec<Option<String>> = {
        let mut v = Vec::new();
        for r in &replicas {
            v.push(config_hash(&r.metrics().await));
        }
        v
    };
    for r in &replicas {
        r.reload(&timeline);
    }
    for (r, before) in replicas.iter().zip(&hashes) {
        world.wait_reloaded(r, before, &replicas).await;
        world.check_late_route(r, &replicas).await;
    }
    load.include_late_route();
    timeline.note("the load includes the new route");
    world.wait_done(&load, 100, &replicas).await;
    // A broken file is refused and the config before it keeps serving
    // (r0 watches its file); a SIGHUP with nothing changed changes nothing.
    replicas[0].break_config(&timeline);
    world
        .wait_reload(&replicas[0], &["rejected"], 0.0, &replicas)
        .await;
    world.check_late_route(&replicas[0], &replicas).await;
    world.reload_unchanged(&replicas[1], &replicas).await;
    world.wait_done(&load, 100, &replicas).await;

    load.finish().await;
    timeline.note("load stopped; every request has its outcome");
    // The last stop, both at once, as a deployment deleted.
    let at = timeline.since();
    for r in &mut replicas {
        r.signal("TERM", &timeline);
    }
    for r in &mut replicas {
        let code = r.wait_exit(&timeline).await;
        stops.push(Stop::new(r.name, at, code));
    }
    // Its log says why HAProxy took each out of rotation (below).
    for r in &replicas {
        world.wait_status(r, "DOWN", &replicas).await;
    }

    let outcomes = world.outcomes.lock().unwrap();
    let report = Report::new(&outcomes, &proxy, &stops, started.elapsed());
    // Straight to the process's stderr, past the test harness's capture,
    // so that CI logs show the numbers on success too.
    let _ = writeln!(std::io::stderr(), "{}", report.summary());
    let lost = report.lost();
    // The restarts happened under load: streams ran on each replica when
    // it closed its connections, or the drain was not put to the test.
    let idle_drains: Vec<&Stop> = stops[..2]
        .iter()
        .filter(|s| report.through_drain(s) == 0)
        .collect();
    drop(outcomes);
    let bad_exits: Vec<&Stop> = stops.iter().filter(|s| s.code != Some(0)).collect();
    // Each replica was stopped twice; each time HAProxy must have taken it
    // out of rotation on its draining /readyz, while it still accepted,
    // not on finding its port closed (which only HAProxy's retries made
    // harmless, and which a Kubernetes Service does not retry).
    let not_drained: Vec<(&str, Vec<String>)> = replicas
        .iter()
        .map(|r| (r.name, proxy.down_reasons(r.name)))
        .filter(|(_, reasons)| {
            reasons.len() != 2 || reasons.iter().any(|r| !r.contains("code: 503"))
        })
        .collect();
    if lost > 0 || !bad_exits.is_empty() || !not_drained.is_empty() || !idle_drains.is_empty() {
        world.fail(
            &format!(
                "{lost} requests failed or cut; stops not ending in exit 0: {bad_exits:?}; \
                 replicas HAProxy took out of rotation otherwise than on /readyz's 503 (two \
                 stops each): {not_drained:?}; restarts with no stream running through the \
                 drain: {idle_drains:?}"
            ),
            &replicas,
        );
    }
}
