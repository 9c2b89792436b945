//! One scrape of `/metrics`, parsed, and the expectations on it: whole
//! families by label set.

use std::collections::BTreeMap;

use crate::common::{wait_some, Harness};
use prometheus_parse::{Sample, Scrape, Value};

// === the exposition ===

/// One scrape of `/metrics`: its text and what the parser made of it.
pub struct Metrics {
    pub text: String,
    pub scrape: Scrape,
}

/// `k=v,…` sorted by key: how a series is named in the expectations.
pub fn key(labels: &[(&str, &str)]) -> String {
    let sorted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn sample_key(s: &Sample) -> String {
    let sorted: BTreeMap<&String, &String> = s.labels.iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn number(v: &Value) -> f64 {
    match v {
        Value::Counter(f) | Value::Gauge(f) | Value::Untyped(f) => *f,
        Value::Histogram(buckets) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map(|b| b.count)
            .unwrap(),
        Value::Summary(_) => panic!("the gateway has no summaries"),
    }
}

/// Expected series of one family: label set → value.
pub fn want(series: &[(&[(&str, &str)], f64)]) -> BTreeMap<String, f64> {
    series.iter().map(|(l, v)| (key(l), *v)).collect()
}

impl Metrics {
    pub fn parse(text: String) -> Self {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        Metrics { text, scrape }
    }

    /// Every series of `name` (a family, or `<histogram>_count`/`_sum`).
    pub fn family(&self, name: &str) -> BTreeMap<String, f64> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| (sample_key(s), number(&s.value)))
            .collect()
    }

    /// The value of the series of `name` with exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.family(name).get(&key(labels)).copied()
    }

    /// The series of `name` that are not at 0: every label set the config
    /// makes known is present at 0 from start (tests/metrics_at_start.rs),
    /// so what traffic did shows in the others.
    pub fn counted(&self, name: &str) -> BTreeMap<String, f64> {
        nonzero(self.family(name))
    }

    /// Asserts the whole family: exactly these series with these values,
    /// series at 0 left out on both sides.
    #[track_caller]
    pub fn assert_family(&self, name: &str, series: &[(&[(&str, &str)], f64)]) {
        assert_eq!(
            self.counted(name),
            nonzero(want(series)),
            "{name} in\n{}",
            self.text
        );
    }
}

fn nonzero(series: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    series.into_iter().filter(|(_, v)| *v != 0.0).collect()
}

pub async fn scrape(h: &Harness) -> Metrics {
    let res = h.client.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Metrics::parse(res.text().await.unwrap())
}

/// Scrapes until `cond` holds (what a stream records when its body ends
/// lands just after the client read the last byte).
pub async fn scrape_until(h: &Harness, what: &str, cond: impl Fn(&Metrics) -> bool) -> Metrics {
    wait_some(what, || async {
        let m = scrape(h).await;
        cond(&m).then_some(m)
    })
    .await
}

pub const STATES: &[&str] = &["available", "ejected", "cold", "saturated", "unhealthy"];

/// The backend-state gauges of a gateway whose backends are all in
/// `state` except those listed in `other`.
pub fn states(
    backends: &[&'static str],
    others: &[(&'static str, &'static str)],
) -> Vec<(Vec<(&'static str, &'static str)>, f64)> {
    let mut out = Vec::new();
    for b in backends {
        let now = others
            .iter()
            .find(|(n, _)| n == b)
            .map_or("available", |(_, s)| *s);
        for s in STATES {
            out.push((
                vec![("backend", *b), ("state", *s)],
                f64::from(u8::from(*s == now)),
            ));
        }
    }
    out
}

#[track_caller]
pub fn assert_states(
    m: &Metrics,
    backends: &[&'static str],
    others: &[(&'static str, &'static str)],
) {
    let owned = states(backends, others);
    let series: Vec<(&[(&str, &str)], f64)> =
        owned.iter().map(|(l, v)| (l.as_slice(), *v)).collect();
    m.assert_family("infergate_backend_state", &series);
}

/// The sum of a family's series for one backend.
pub fn per_backend(m: &Metrics, family: &str, backend: &str) -> f64 {
    m.family(family)
        .iter()
        .filter(|(k, _)| k.split(',').any(|l| l == format!("backend={backend}")))
        .map(|(_, v)| v)
        .sum()
}
