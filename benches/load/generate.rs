//! Open-loop load: requests sent at their due time, whatever the earlier
//! ones are doing, and what each side observed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::HeaderMap;
use tokio::runtime::Handle;

use crate::procfs::CpuSample;

// === load generation ===

/// One kind of request, sent over and over.
pub struct Target {
    pub url: reqwest::Url,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub stream: bool,
    pub timeout: Duration,
}

pub enum Failure {
    Status(u16),
    Transport(String),
    Empty,
}

impl Failure {
    pub fn describe(&self) -> String {
        match self {
            Failure::Status(s) => format!("status {s}"),
            Failure::Transport(e) => format!("transport: {e}"),
            Failure::Empty => "a stream with no events".to_string(),
        }
    }
}

pub fn hist() -> Histogram<u64> {
    // Nanoseconds, 1 ns to 120 s, 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000_000, 3).unwrap()
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What one side of a scenario observed, over all its slices.
pub struct Recorder {
    pub latency: Mutex<Histogram<u64>>,
    pub ttfb: Mutex<Histogram<u64>>,
    pub per_event: Mutex<Histogram<u64>>,
    pub lateness: Mutex<Histogram<u64>>,
    pub ok: AtomicU64,
    pub err_status: AtomicU64,
    pub err_transport: AtomicU64,
    pub err_cap: AtomicU64,
    pub events: AtomicU64,
    pub in_flight: AtomicUsize,
    pub first_error: Mutex<Option<String>>,
    pub sent: AtomicU64,
    /// Wall time of the slices (due span or last completion, the later).
    pub elapsed: Mutex<Duration>,
    /// The proxy's CPU time (the gateway's, or nginx's on an nginx side)
    /// and this process's during the slices, in ns.
    pub proxy_cpu_ns: AtomicU64,
    pub own_cpu_ns: AtomicU64,
    /// The proxy's CPU per request sent, in µs, slice by slice: what a
    /// comparison of sides alternated in rounds pairs up.
    pub slice_cpu_us: Mutex<Vec<f64>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
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
            proxy_cpu_ns: AtomicU64::new(0),
            own_cpu_ns: AtomicU64::new(0),
            slice_cpu_us: Mutex::new(Vec::new()),
        })
    }

    pub fn errors(&self) -> u64 {
        self.err_status.load(Ordering::Relaxed)
            + self.err_transport.load(Ordering::Relaxed)
            + self.err_cap.load(Ordering::Relaxed)
    }

    pub fn record(
        &self,
        due: Instant,
        end: Instant,
        result: Result<(Option<Instant>, u64), Failure>,
    ) {
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

pub fn count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count() as u64
}

pub async fn send(client: &reqwest::Client, t: &Target) -> Result<(Option<Instant>, u64), Failure> {
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
pub fn wait_until(due: Instant, spin: Duration) {
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

pub struct Load<'a> {
    pub rt: &'a Handle,
    pub client: &'a reqwest::Client,
    /// The processes whose CPU time a slice records as the proxy's.
    pub proxy: Vec<String>,
}

/// One kind of request of an interleaved slice ([`Load::lanes`]), the
/// proxy whose CPU time it is charged, and its recorder.
pub struct Lane<'a> {
    pub target: Arc<Target>,
    pub proxy: &'a [String],
    pub rec: &'a Arc<Recorder>,
}

impl Load<'_> {
    /// One open-loop slice: `rate` requests/s for `dur`, paced from this
    /// (non-runtime) thread; waits for the stragglers.
    pub fn slice(
        &self,
        target: &Arc<Target>,
        rate: f64,
        dur: Duration,
        cap: usize,
        rec: &Arc<Recorder>,
    ) {
        let lane = Lane {
            target: Arc::clone(target),
            proxy: &self.proxy,
            rec,
        };
        self.lanes(&[lane], rate, dur, cap);
    }

    /// One open-loop slice of several lanes at once, `rate` requests/s
    /// each for `dur`, their requests interleaved one by one (lane 0, 1,
    /// …, 0, 1, …): every lane meets the same machine at the same moment,
    /// so what differs between their CPU times is what their proxies do.
    /// Each lane's slice records its proxy's CPU time, and its share of
    /// this process's.
    pub fn lanes(&self, lanes: &[Lane<'_>], rate: f64, dur: Duration, cap: usize) {
        let k = lanes.len().max(1);
        let n = (rate * dur.as_secs_f64()).round().max(1.0) as u64;
        let total_rate = rate * k as f64;
        let period = Duration::from_secs_f64(1.0 / total_rate);
        // Below ~2,000/s, yield-spin the last 50 µs so the schedule is kept to
        // a few µs; above, sleeping alone (and sending what is due in a batch)
        // keeps the pacer from taking a core.
        let spin = if total_rate <= 2000.0 {
            Duration::from_micros(50)
        } else {
            Duration::ZERO
        };
        let own = ["self".to_string()];
        let own0 = CpuSample::of(&own);
        let proxy0: Vec<_> = lanes.iter().map(|l| CpuSample::of(l.proxy)).collect();
        let t0 = Instant::now() + Duration::from_millis(2);
        for i in 0..n * k as u64 {
            let due = t0 + period.mul_f64(i as f64);
            let lane = &lanes[(i % k as u64) as usize];
            let rec = lane.rec;
            wait_until(due, spin);
            let _ = rec.lateness.lock().unwrap().record(nanos(due.elapsed()));
            rec.sent.fetch_add(1, Ordering::Relaxed);
            if rec.in_flight.load(Ordering::Relaxed) >= cap {
                rec.err_cap.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            rec.in_flight.fetch_add(1, Ordering::Relaxed);
            let client = self.client.clone();
            let target = Arc::clone(&lane.target);
            let rec = Arc::clone(rec);
            self.rt.spawn(async move {
                let result = send(&client, &target).await;
                rec.record(due, Instant::now(), result);
                rec.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        let span = t0 + period.mul_f64((n * k as u64) as f64);
        let timeout = lanes.iter().map(|l| l.target.timeout).max();
        let limit = Instant::now() + timeout.unwrap_or_default() + Duration::from_secs(1);
        let busy = || {
            lanes
                .iter()
                .any(|l| l.rec.in_flight.load(Ordering::Relaxed) > 0)
        };
        while busy() && Instant::now() < limit {
            std::thread::sleep(Duration::from_micros(500));
        }
        let end = Instant::now().max(span);
        let own_ns = CpuSample::of(&own).since(&own0) / k as u64;
        for (lane, before) in lanes.iter().zip(&proxy0) {
            let rec = lane.rec;
            *rec.elapsed.lock().unwrap() += end - t0;
            let proxy_ns = CpuSample::of(lane.proxy).since(before);
            rec.proxy_cpu_ns.fetch_add(proxy_ns, Ordering::Relaxed);
            let per_request = proxy_ns as f64 / 1e3 / n as f64;
            rec.slice_cpu_us.lock().unwrap().push(per_request);
            rec.own_cpu_ns.fetch_add(own_ns, Ordering::Relaxed);
        }
    }
}
