//! Quantiles and the added latency of the gateway, as JSON; the
//! gateway's own overhead from its metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::generate::Recorder;

// === results ===

pub const QUANTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

pub fn quantiles(h: &Histogram<u64>) -> Value {
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

pub struct Side {
    pub name: &'static str,
    pub rate: f64,
    pub rec: Arc<Recorder>,
    /// The gateway's numbers, for a through-gateway side.
    pub gateway: Option<GatewaySample>,
    /// An nginx side: its CPU per request is reported as nginx's.
    pub nginx: bool,
}

#[derive(Clone, Copy, Default)]
pub struct GatewaySample {
    pub peak_rss_kb: u64,
    pub peak_reset: bool,
    pub overhead_mean_us: Option<f64>,
}

impl Side {
    pub fn achieved(&self) -> f64 {
        let secs = self.rec.elapsed.lock().unwrap().as_secs_f64();
        if secs > 0.0 {
            self.rec.ok.load(Ordering::Relaxed) as f64 / secs
        } else {
            0.0
        }
    }

    pub fn cpu_us_per_req(&self, cpu_ns: u64) -> f64 {
        let sent = self.rec.sent.load(Ordering::Relaxed).max(1);
        cpu_ns as f64 / 1e3 / sent as f64
    }

    /// [`Side::json`] with the proxy's CPU per request at the top, for a
    /// comparison of gateways or routes.
    pub fn json_with_cpu(&self) -> Value {
        let mut v = self.json();
        let cpu_ns = self.rec.proxy_cpu_ns.load(Ordering::Relaxed);
        v["cpu_us_per_request"] = json!(self.cpu_us_per_req(cpu_ns));
        v
    }

    pub fn json(&self) -> Value {
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
            "bench_process_cpu_us_per_request": self.cpu_us_per_req(r.own_cpu_ns.load(Ordering::Relaxed)),
        });
        if !r.ttfb.lock().unwrap().is_empty() {
            v["ttfb"] = quantiles(&r.ttfb.lock().unwrap());
            v["per_event"] = quantiles(&r.per_event.lock().unwrap());
            v["events"] = json!(r.events.load(Ordering::Relaxed));
        }
        if self.nginx {
            v["nginx"] = json!({
                "cpu_us_per_request": self.cpu_us_per_req(r.proxy_cpu_ns.load(Ordering::Relaxed)),
            });
        }
        if let Some(g) = self.gateway {
            v["gateway"] = json!({
                "cpu_us_per_request": self.cpu_us_per_req(r.proxy_cpu_ns.load(Ordering::Relaxed)),
                "peak_rss_kb": g.peak_rss_kb,
                "peak_rss_reset_before": g.peak_reset,
                "reported_overhead_mean_us": g.overhead_mean_us,
            });
        }
        v
    }
}

/// `through − direct` at each quantile and at the mean, in µs.
pub fn added(direct: &Histogram<u64>, through: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "mean_us".into(),
        json!((through.mean() - direct.mean()) / 1e3),
    );
    for (name, q) in QUANTILES {
        let d = direct.value_at_quantile(q) as f64;
        let t = through.value_at_quantile(q) as f64;
        m.insert(format!("{name}_us"), json!((t - d) / 1e3));
    }
    Value::Object(m)
}

pub fn fmt_us(us: f64) -> String {
    if us.abs() >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us.abs() >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// What `other` costs over `base` in proxy CPU per request, from their
/// slices paired round by round (one after the other or at once, so each
/// pair shared the machine's state of the moment): the mean difference,
/// the half-width of its 95% interval (Student's t), and the number of
/// pairs.
pub fn paired_cpu(base: &Side, other: &Side) -> (f64, f64, usize) {
    let a = base.rec.slice_cpu_us.lock().unwrap();
    let b = other.rec.slice_cpu_us.lock().unwrap();
    let diffs: Vec<f64> = a.iter().zip(b.iter()).map(|(a, b)| b - a).collect();
    let n = diffs.len();
    if n < 2 {
        return (diffs.first().copied().unwrap_or(f64::NAN), f64::NAN, n);
    }
    let mean = diffs.iter().sum::<f64>() / n as f64;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, t95(n - 1) * (var / n as f64).sqrt(), n)
}

/// Student's t for a two-sided 95% interval with `df` degrees of freedom.
fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    T.get(df.saturating_sub(1)).copied().unwrap_or(1.96)
}

pub fn fmt_added(us: f64) -> String {
    if us >= 0.0 {
        format!("+{}", fmt_us(us))
    } else {
        format!("−{}", fmt_us(-us))
    }
}

pub fn q_us(v: &Value, key: &str, q: &str) -> f64 {
    v[key][format!("{q}_us")].as_f64().unwrap_or(f64::NAN)
}

// === the gateway's own metrics ===

/// Sum and count of `infergate_overhead_seconds` for a route.
pub async fn overhead(client: &reqwest::Client, base: &str, route: &str) -> Option<(f64, f64)> {
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
