//! `server.workers`: several workers, each with its own listening socket on
//! the one address, its own runtime and its own upstream connections. Every
//! worker answers both backends (SigV4 included), new connections are spread
//! over the workers, and a shutdown drains the requests in flight on all of
//! them.

#[cfg(test)]
mod common;

use std::time::Duration;

use common::{patch, wait_for, Harness};
use infergate::emulator::model::Generation;
use infergate::server;
use support::{accepted, fresh_connections, harness, requests_on_fresh_connections, with_workers};

/// The gateway with several workers, and how it spread the connections.
#[cfg(test)]
mod support {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::common::{patch, Harness, CONFIG};

    pub fn with_workers(n: usize) -> String {
        patch(CONFIG, "[server]\n", &format!("[server]\nworkers = {n}\n"))
    }

    pub async fn harness(workers: usize) -> Harness {
        Harness::with_config(with_workers(workers)).await
    }

    /// A client that opens a new connection for every request, so that the
    /// kernel picks a worker every time.
    pub fn fresh_connections() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// `n` predict requests on the HF route, each on a connection of its
    /// own, sent at once; each task ends with the answer's status.
    pub fn requests_on_fresh_connections(
        h: &Harness,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<reqwest::Result<u16>>> {
        let client = fresh_connections();
        (0..n)
            .map(|i| {
                let client = client.clone();
                let url = h.url("/v1/predict/hf");
                tokio::spawn(async move {
                    client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(format!(r#"{{"inputs":"a{i} b{i}"}}"#))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                })
            })
            .collect()
    }

    /// `infergate_connections_accepted_total` by worker.
    pub async fn accepted(h: &Harness) -> BTreeMap<usize, f64> {
        let text = h.get_text("/metrics").await;
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "infergate_connections_accepted_total")
            .map(|s| {
                let worker = s.labels.get("worker").unwrap().parse().unwrap();
                let prometheus_parse::Value::Counter(n) = s.value else {
                    panic!("not a counter: {s:?}");
                };
                (worker, n)
            })
            .collect()
    }
}

const WORKERS: usize = 4;

#[tokio::test]
async fn binding_several_workers_shares_one_port() {
    let listeners = server::bind_workers(([127, 0, 0, 1], 0).into(), 3)
        .await
        .unwrap();
    assert_eq!(listeners.len(), 3);
    let port = listeners[0].local_addr().unwrap().port();
    assert_ne!(port, 0);
    for l in &listeners {
        assert_eq!(l.local_addr().unwrap().port(), port);
    }
    // A port held by a socket that does not share it stays refused.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = server::bind_workers(taken.local_addr().unwrap(), 2)
        .await
        .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("could not listen on 127.0.0.1:"));
    // So does a port another group of workers shares (a second gateway
    // started on the same address must not split the traffic silently).
    let addr = listeners[0].local_addr().unwrap();
    let err = server::bind_workers(addr, 2).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    // Once the first group is gone, the address is free again.
    drop(listeners);
    assert_eq!(server::bind_workers(addr, 2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn fewer_connection_slots_than_workers_still_serve_every_connection() {
    // An idle worker holds no slot: with 4 workers and 2 slots, every new
    // connection, whichever worker the kernel gives it to, is served.
    let config = patch(
        &with_workers(WORKERS),
        "[server]\n",
        "[server]\nmax_connections = 2\n",
    );
    let h = Harness::with_config(config).await;
    assert_eq!(h.gateway.config.server.max_connections, 2);
    let client = fresh_connections();
    for i in 0..24 {
        let res = client.get(h.url("/healthz")).send().await;
        assert_eq!(res.map(|r| r.status()).unwrap(), 200, "connection {i}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn connections_are_spread_over_the_workers_and_every_one_answers() {
    let h = harness(WORKERS).await;
    assert_eq!(h.gateway.config.server.worker_count(), WORKERS);
    let before: f64 = accepted(&h).await.values().sum();
    let client = fresh_connections();
    let n = 48;
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = client.clone();
        let route = if i % 2 == 0 { "sm" } else { "hf" };
        let url = h.url(&format!("/v1/predict/{route}"));
        tasks.push(tokio::spawn(async move {
            let inputs = format!("w{i} x{i} y{i}");
            let res = client
                .post(url)
                .header("content-type", "application/json")
                .body(format!(r#"{{"inputs":"{inputs}"}}"#))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "route {route}");
            assert_eq!(res.headers()["x-infergate-backend"], route);
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(
                body[0]["generated_text"],
                Generation::run(&inputs, None).text(),
                "route {route}"
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = accepted(&h).await;
    let total: f64 = after.values().sum();
    assert!(total - before >= f64::from(n), "{after:?}");
    assert!(after.keys().all(|w| *w < WORKERS), "{after:?}");
    // 48 connections hashed over 4 sockets: all on one has odds of 4^-47.
    let busy = after.values().filter(|c| **c > 0.0).count();
    assert!(busy >= 2, "connections per worker: {after:?}");
    assert_eq!(h.sm.counters().auth_rejections(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_requests_on_every_worker_finish() {
    // Requests slow enough that all 16 are in flight together even on a
    // loaded machine, and a grace period longer than they take.
    let config = patch(
        &with_workers(WORKERS),
        "shutdown_grace = \"1s\"",
        "shutdown_grace = \"10s\"",
    );
    let h = Harness::with_config(config).await;
    h.hf.faults().update(|f| f.latency = Duration::from_secs(2));
    let tasks = requests_on_fresh_connections(&h, 16);
    let counters = h.hf.counters();
    wait_for("all 16 requests in flight", || counters.in_flight() == 16).await;
    let spread = accepted(&h).await;
    let busy = spread.values().filter(|c| **c > 0.0).count();
    assert!(
        busy >= 2,
        "the requests in flight are on one worker: {spread:?}"
    );
    let base = h.base.clone();
    let gateway = std::sync::Arc::clone(&h.gateway);
    let stopping = tokio::spawn(h.shutdown());
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200, "spread: {spread:?}");
    }
    stopping.await.unwrap();
    assert!(!gateway.is_ready());
    // Every worker's socket is closed.
    for _ in 0..8 {
        let refused = fresh_connections()
            .get(format!("{base}/healthz"))
            .send()
            .await;
        assert!(refused.is_err(), "a worker still accepts");
    }
}

#[tokio::test]
async fn connections_open_at_once_are_placed_evenly_over_the_workers() {
    // The kernel hashes connections over the workers' sockets blind to
    // load; a pool of connections opened together must still end up even,
    // each worker holding its share for as long as the pool lives.
    let h = harness(WORKERS).await;
    h.hf.faults()
        .update(|f| f.latency = Duration::from_millis(1500));
    let before = accepted(&h).await;
    let per_worker = 12;
    let n = WORKERS * per_worker;
    let tasks = requests_on_fresh_connections(&h, n);
    let counters = h.hf.counters();
    wait_for("every request in flight", || {
        counters.in_flight() == n as u64
    })
    .await;
    let after = accepted(&h).await;
    let placed: Vec<f64> = (0..WORKERS)
        .map(|w| after.get(&w).copied().unwrap_or(0.0) - before.get(&w).copied().unwrap_or(0.0))
        .collect();
    let (least, most) = placed
        .iter()
        .fold((f64::MAX, 0.0_f64), |(l, m), c| (l.min(*c), m.max(*c)));
    // A worker keeps a connection while it is within one of the least
    // busy, and two workers accepting at the same instant may both pick the
    // same one: within three. (Hashed blindly, 48 connections over four
    // workers are that even about one time in ten.)
    assert!(most - least <= 3.0, "connections per worker: {placed:?}");
    assert!(placed.iter().sum::<f64>() >= n as f64, "{placed:?}");
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    h.shutdown().await;
}
