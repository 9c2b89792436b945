//! The report's figures, computed once from a [`Tally`] for both
//! renderings: the table ([`super::text`]) and `--json` (this type,
//! serialized).

use serde::Serialize;

use super::stats::{mean, percentile, sorted, wilson, Z95};
use super::{Group, Skipped, Tally};
use crate::shadow::line::DiffLine;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// Diff-log lines read, the filters' included.
    pub lines: u64,
    pub skipped: Skipped,
    /// By route, then shadow.
    pub groups: Vec<GroupReport<'a>>,
}

/// One route's one shadow.
#[derive(Debug, Serialize)]
pub struct GroupReport<'a> {
    pub route: &'a str,
    pub shadow: &'a str,
    /// The backends that answered the clients.
    pub primaries: Vec<&'a str>,
    pub calls: u64,
    #[serde(rename = "match")]
    pub matched: u64,
    pub differ: u64,
    pub shadow_error: u64,
    /// `match / (match + differ)`; `None` before any comparison.
    pub agreement: Option<f64>,
    /// Its 95% Wilson score interval.
    pub agreement_ci95: Option<[f64; 2]>,
    pub similarity: Similarity,
    pub latency_ms: Latency,
    /// Worst first: the lowest similarity, then differences without one.
    pub worst: Vec<&'a DiffLine>,
}

/// Over the calls whose answers measure a similarity.
#[derive(Debug, Serialize)]
pub struct Similarity {
    pub answers: usize,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub min: Option<f64>,
}

/// Over the calls the shadow answered (a failed call's time says nothing
/// of the model's).
#[derive(Debug, Serialize)]
pub struct Latency {
    pub answered: usize,
    pub primary: Percentiles,
    pub shadow: Percentiles,
    /// Shadow over primary, percentile by percentile.
    pub ratio: Percentiles,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl<'a> Report<'a> {
    pub fn of(tally: &'a Tally) -> Self {
        Self {
            lines: tally.lines,
            skipped: tally.skipped,
            groups: tally
                .groups
                .iter()
                .map(|((route, shadow), g)| GroupReport::of(route, shadow, g, tally.worst))
                .collect(),
        }
    }
}

impl<'a> GroupReport<'a> {
    fn of(route: &'a str, shadow: &'a str, g: &'a Group, worst: usize) -> Self {
        let compared = g.matched + g.differ;
        let similarity = sorted(g.similarity.clone());
        Self {
            route,
            shadow,
            primaries: g.primaries.iter().map(String::as_str).collect(),
            calls: g.calls,
            matched: g.matched,
            differ: g.differ,
            shadow_error: g.shadow_error,
            agreement: (compared > 0).then(|| g.matched as f64 / compared as f64),
            agreement_ci95: wilson(g.matched, compared, Z95).map(|(lo, hi)| [lo, hi]),
            similarity: Similarity {
                answers: similarity.len(),
                mean: mean(&similarity),
                p50: percentile(&similarity, 50.0),
                min: similarity.first().copied(),
            },
            latency_ms: Latency::of(&g.primary_ms, &g.shadow_ms),
            worst: g.worst(worst),
        }
    }
}

impl Latency {
    fn of(primary_ms: &[f64], shadow_ms: &[f64]) -> Self {
        let primary = Percentiles::of(&sorted(primary_ms.to_vec()));
        let shadow = Percentiles::of(&sorted(shadow_ms.to_vec()));
        let ratio = |s: Option<f64>, p: Option<f64>| match (s, p) {
            (Some(s), Some(p)) if p > 0.0 => Some(s / p),
            _ => None,
        };
        Self {
            answered: primary_ms.len(),
            ratio: Percentiles {
                p50: ratio(shadow.p50, primary.p50),
                p95: ratio(shadow.p95, primary.p95),
                p99: ratio(shadow.p99, primary.p99),
            },
            primary,
            shadow,
        }
    }
}

impl Percentiles {
    fn of(sorted: &[f64]) -> Self {
        Self {
            p50: percentile(sorted, 50.0),
            p95: percentile(sorted, 95.0),
            p99: percentile(sorted, 99.0),
        }
    }
}
