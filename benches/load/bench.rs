//! The run: direct, nginx (when present) and through-gateway slices
//! alternated per scenario, the maximum sustained rate of each path, the
//! effect of scraping `/metrics`, and many concurrent streams.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

use infergate::backend::sigv4::{sign_request, Signer};
use infergate::emulator::EmulatorHandle;

use crate::gateway::GatewayProcess;
use crate::generate::{hist, nanos, Lane, Load, Recorder, Target};
use crate::nginx::NginxProcess;
use crate::opts::Opts;
use crate::procfs::{open_fds, reset_peak, status_value};
use crate::results::{added, overhead, q_us, quantiles, GatewaySample, Side};
use crate::{
    ACCESS_KEY, ENDPOINT, HF_TOKEN, MAX_RATE_STEPS, PROMPT_WORDS, REGION, SECRET_KEY,
    SUSTAINED_ERRORS, SUSTAINED_P99,
};

// === the run ===

/// The three paths a request can take to the emulator.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    Direct,
    Nginx,
    Gateway,
    /// The gateway with a client's key and local limits (`--only auth`).
    Auth,
    /// The same with the limits in Redis, far from them (requests go
    /// ahead, Redis charged just after: `rate_limits.headroom` 0.5).
    AuthRedis,
    /// The same with every request waiting for Redis (`headroom = 1`).
    AuthRedisWait,
    /// The bench's gateway, on a route whose every request is also sent
    /// to a shadow backend (`--only shadow`).
    Shadowed,
    /// The bench's gateway, on a route with a response cache: the same
    /// request every time, so a hit after the first (`--only shadow`).
    Cached,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Nginx => "nginx",
            Via::Gateway => "through",
            Via::Auth => "auth_local",
            Via::AuthRedis => "auth_redis",
            Via::AuthRedisWait => "auth_redis_wait",
            Via::Shadowed => "shadowed",
            Via::Cached => "cached",
        }
    }
}

/// How the paths of a scenario share its time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Schedule {
    /// One path's slice after the other's, round after round.
    Alternated,
    /// Every path at once, their requests interleaved one by one.
    Interleaved,
}

/// The gateway's path for a route (nginx serves the HF route at the same).
pub fn predict_path(route: &str, stream: bool) -> String {
    if stream {
        format!("/v1/predict/{route}/stream")
    } else {
        format!("/v1/predict/{route}")
    }
}

/// `b − a` for latency (and, for streams, TTFB and per-event time).
fn diffs(a: &Side, b: &Side, stream: bool) -> Value {
    let h = |s: &Side, f: fn(&Recorder) -> &Mutex<hdrhistogram::Histogram<u64>>| {
        f(&s.rec).lock().unwrap().clone()
    };
    let mut v = json!({ "latency": added(&h(a, |r| &r.latency), &h(b, |r| &r.latency)) });
    if stream {
        v["ttfb"] = added(&h(a, |r| &r.ttfb), &h(b, |r| &r.ttfb));
        v["per_event"] = added(&h(a, |r| &r.per_event), &h(b, |r| &r.per_event));
    }
    v
}

pub struct Bench {
    pub opts: Opts,
    pub rt: Runtime,
    pub client: reqwest::Client,
    pub gw: GatewayProcess,
    /// The baseline proxy, when an nginx binary was found and started.
    pub nginx: Option<NginxProcess>,
    pub sm: EmulatorHandle,
    pub hf: EmulatorHandle,
    pub prompt: String,
    /// The gateways with keys, for `--only auth`.
    pub auth: Option<crate::auth::AuthGateways>,
}

impl Bench {
    /// A load whose slices record the gateway's CPU time.
    pub fn load(&self) -> Load<'_> {
        self.load_for(Via::Gateway)
    }

    /// A load whose slices record the CPU time of the proxy on `via`'s
    /// path (the idle gateway's on the direct path).
    pub fn load_for(&self, via: Via) -> Load<'_> {
        let proxy = match (&self.nginx, via, self.keyed(via)) {
            (Some(n), Via::Nginx, _) => n.pids(),
            (_, _, Some(gw)) => vec![gw.pid.clone()],
            _ => vec![self.gw.pid.clone()],
        };
        Load {
            rt: self.rt.handle(),
            client: &self.client,
            proxy,
        }
    }

    /// The gateway with keys serving `via`, if it is one of theirs.
    fn keyed(&self, via: Via) -> Option<&crate::gateway::GatewayProcess> {
        let auth = self.auth.as_ref()?;
        match via {
            Via::Auth => Some(&auth.local),
            Via::AuthRedis => auth.redis.as_ref().map(|r| &r.ahead),
            Via::AuthRedisWait => auth.redis.as_ref().map(|r| &r.wait),
            _ => None,
        }
    }

    /// The request for `route` on one path.
    pub fn target(&self, via: Via, route: &str, stream: bool) -> Target {
        if let Some(gw) = self.keyed(via) {
            let mut target = self.through(route, stream);
            let path = predict_path(route, stream);
            target.url = reqwest::Url::parse(&format!("{}{path}", gw.base)).unwrap();
            let bearer = HeaderValue::from_static(crate::auth::BEARER);
            target.headers.insert("authorization", bearer);
            return target;
        }
        match via {
            Via::Direct if route == "sm" => self.sm_direct(stream),
            Via::Direct => self.hf_direct(stream),
            Via::Nginx => self.nginx_target(stream),
            // Without their gateway (not started): the plain one.
            Via::Gateway | Via::Auth | Via::AuthRedis | Via::AuthRedisWait => {
                self.through(route, stream)
            }
            Via::Shadowed => self.through(&format!("{route}-shadowed"), stream),
            Via::Cached => self.through(&format!("{route}-cached"), stream),
        }
    }

    /// The HF route through nginx, at the gateway's path: nginx adds the
    /// bearer token, as the gateway does.
    pub fn nginx_target(&self, stream: bool) -> Target {
        let base = self.nginx.as_ref().map_or("", |n| n.base.as_str());
        Target {
            url: reqwest::Url::parse(&format!("{base}{}", predict_path("hf", stream))).unwrap(),
            headers: Self::json_headers(),
            body: self.body(false),
            stream,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn body(&self, stream: bool) -> Bytes {
        let mut v = json!({"inputs": self.prompt, "parameters": {"max_new_tokens": PROMPT_WORDS}});
        if stream {
            v["stream"] = json!(true);
        }
        Bytes::from(v.to_string())
    }

    pub fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h
    }

    pub fn through(&self, route: &str, stream: bool) -> Target {
        let path = predict_path(route, stream);
        Target {
            url: reqwest::Url::parse(&format!("{}{path}", self.gw.base)).unwrap(),
            headers: Self::json_headers(),
            body: self.body(false),
            stream,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn hf_direct(&self, stream: bool) -> Target {
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
    pub fn sm_direct(&self, stream: bool) -> Target {
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

    pub fn check_gateway(&mut self) {
        if !self.gw.alive() {
            eprintln!(
                "load bench: the gateway exited; last lines of {}:\n{}",
                self.gw.log.display(),
                self.gw.log_tail()
            );
            // `exit` runs no destructors: stop nginx first.
            drop(self.nginx.take());
            std::process::exit(1);
        }
        if let Some(n) = self.nginx.as_mut() {
            if !n.alive() {
                eprintln!(
                    "load bench: nginx exited; its error log:\n{}",
                    n.error_log()
                );
                drop(self.nginx.take());
                std::process::exit(1);
            }
        }
    }

    /// Which paths a scenario on `route` compares: nginx proxies the HF
    /// emulator only (the SageMaker one wants SigV4 per request).
    pub fn paths(&self, route: &str) -> Vec<Via> {
        let mut v = vec![Via::Direct];
        if self.nginx.is_some() && route == "hf" {
            v.push(Via::Nginx);
        }
        v.push(Via::Gateway);
        v
    }

    /// The paths' slices in `rounds` rounds after a warm-up of each, one
    /// path after the other or, [`Schedule::Interleaved`], all at once;
    /// one side per path, in `vias`' order.
    pub fn compare(
        &mut self,
        route: &str,
        rate: f64,
        secs: f64,
        vias: &[Via],
        make: &dyn Fn(&Bench, Via) -> Target,
        schedule: Schedule,
    ) -> Vec<Side> {
        let recs: Vec<_> = vias.iter().map(|_| Recorder::new()).collect();
        let warmups: Vec<_> = vias.iter().map(|_| Recorder::new()).collect();
        self.round(vias, &warmups, rate, self.opts.warmup, make, schedule);
        let before = self
            .rt
            .block_on(overhead(&self.client, &self.gw.base, route));
        let peak_reset = reset_peak(&self.gw.pid);
        let slice = Duration::from_secs_f64(secs / self.opts.rounds as f64);
        for _ in 0..self.opts.rounds {
            self.round(vias, &recs, rate, slice, make, schedule);
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
        vias.iter()
            .zip(recs)
            .map(|(&via, rec)| Side {
                name: via.name(),
                rate,
                rec,
                gateway: (via == Via::Gateway).then_some(sample),
                nginx: via == Via::Nginx,
            })
            .collect()
    }

    /// One slice of `dur` of every path, each recorded in its `recs`.
    fn round(
        &self,
        vias: &[Via],
        recs: &[Arc<Recorder>],
        rate: f64,
        dur: Duration,
        make: &dyn Fn(&Bench, Via) -> Target,
        schedule: Schedule,
    ) {
        const CAP: usize = 1024;
        // Re-made per round: a SageMaker request is signed when made.
        let targets: Vec<_> = vias.iter().map(|&via| Arc::new(make(self, via))).collect();
        match schedule {
            Schedule::Alternated => {
                for ((&via, rec), target) in vias.iter().zip(recs).zip(&targets) {
                    self.load_for(via).slice(target, rate, dur, CAP, rec);
                }
            }
            Schedule::Interleaved => {
                let proxies: Vec<_> = vias.iter().map(|&v| self.load_for(v).proxy).collect();
                let lanes: Vec<_> = targets
                    .into_iter()
                    .zip(&proxies)
                    .zip(recs)
                    .map(|((target, proxy), rec)| Lane { target, proxy, rec })
                    .collect();
                self.load().lanes(&lanes, rate, dur, CAP);
            }
        }
    }

    pub fn scenario(&mut self, name: &str, route: &str, stream: bool) -> Value {
        let (rate, secs) = if stream {
            (self.opts.stream_rate, self.opts.stream_secs)
        } else {
            (self.opts.rate, self.opts.secs)
        };
        let vias = self.paths(route);
        eprintln!(
            "load bench: {name} at {rate}/s, {secs} s per side ({})",
            vias.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
        );
        let route_owned = route.to_string();
        let make = move |b: &Bench, via: Via| b.target(via, &route_owned, stream);
        let sides = self.compare(route, rate, secs, &vias, &make, Schedule::Alternated);
        let side = |via: Via| sides.iter().find(|s| s.name == via.name());
        let (d, t) = (side(Via::Direct).unwrap(), side(Via::Gateway).unwrap());
        let mut v = json!({
            "scenario": name,
            "route": route,
            "stream": stream,
            "direct": d.json(),
            "through": t.json(),
            "added": diffs(d, t, stream),
        });
        if let Some(n) = side(Via::Nginx) {
            v["nginx"] = n.json();
            v["nginx_added"] = diffs(d, n, stream);
            let cpu = |v: &Value, who: &str| v[who]["cpu_us_per_request"].as_f64();
            v["vs_nginx"] = diffs(n, t, stream);
            v["vs_nginx"]["cpu_per_request_ratio"] = json!(cpu(&v["through"], "gateway")
                .zip(cpu(&v["nginx"], "nginx"))
                .map(|(g, n)| g / n));
        }
        v
    }

    /// Steps the rate up until p99 passes 10 ms or errors pass 0.1%.
    pub fn max_rate(&mut self, via: Via) -> Value {
        let name = via.name();
        let mut target = self.target(via, "hf", false);
        target.timeout = Duration::from_secs(3);
        let target = Arc::new(target);
        let mut steps = Vec::new();
        let mut best = 0.0;
        let peak_reset = reset_peak(&self.gw.pid);
        // Warm the connection pools.
        self.load_for(via).slice(
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
                self.load_for(via)
                    .slice(&target, rate, self.opts.step, 4096, &rec);
                let side = Side {
                    name: "step",
                    rate,
                    rec,
                    gateway: None,
                    nginx: false,
                };
                let p99 = side.rec.latency.lock().unwrap().value_at_quantile(0.99);
                let sent = side.rec.sent.load(Ordering::Relaxed).max(1);
                let err_share = side.rec.errors() as f64 / sent as f64;
                let pass = p99 <= nanos(SUSTAINED_P99)
                    && err_share <= SUSTAINED_ERRORS
                    && !side.rec.latency.lock().unwrap().is_empty();
                let mut step = side.json();
                step["attempt"] = json!(attempt);
                // The proxy's: the gateway's, or nginx's on the nginx side.
                step["gateway_cpu_share"] = json!(
                    side.rec.proxy_cpu_ns.load(Ordering::Relaxed) as f64
                        / 1e9
                        / side.rec.elapsed.lock().unwrap().as_secs_f64()
                );
                step["gateway_cpu_us_per_request"] =
                    json!(side.cpu_us_per_req(side.rec.proxy_cpu_ns.load(Ordering::Relaxed)));
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

    pub fn metrics_effect(&mut self) -> Value {
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
                nginx: false,
            }
            .json()
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
    pub fn concurrent_streams(&mut self) -> Value {
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
