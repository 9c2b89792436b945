//! Phase two for a route's shadow keys: `shadow = [{ backend, percent }]`,
//! `shadow_max_in_flight` and `shadow_cosine_threshold` ([`crate::shadow`]
//! sends and compares).

use std::collections::BTreeSet;

use super::bounds::{self, integer};
use super::diag::{index_path, key_path, Diagnostics};
use super::raw::RawRoute;
use super::{ShadowConfig, DEFAULT_SHADOW_COSINE_THRESHOLD, DEFAULT_SHADOW_MAX_IN_FLIGHT};

/// The validated shadow keys of one route.
pub(super) struct Shadow {
    pub(super) shadow: Vec<ShadowConfig>,
    pub(super) shadow_max_in_flight: u32,
    pub(super) shadow_cosine_threshold: f64,
}

/// The shadow keys of the route at `path`, each shadow's backend checked
/// against `declared` and against the shadows before it.
pub(super) fn shadow(
    raw: &mut RawRoute,
    path: &str,
    declared: &BTreeSet<String>,
    diag: &mut Diagnostics,
) -> Shadow {
    let list_path = key_path(path, "shadow");
    let mut shadow = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, entry) in raw
        .shadow
        .take()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let entry_path = index_path(&list_path, i);
        let backend_path = key_path(&entry_path, "backend");
        let percent_path = key_path(&entry_path, "percent");
        let percent = match entry.percent {
            None => {
                diag.error(&percent_path, "required, e.g. percent = 5");
                None
            }
            // Also false for NaN.
            Some(p) if (0.0..=100.0).contains(&p) => Some(p),
            Some(_) => {
                diag.error(&percent_path, "must be between 0 and 100");
                None
            }
        };
        let Some(backend) = entry.backend else {
            diag.error(&backend_path, "required");
            continue;
        };
        if !declared.contains(&backend) {
            let shown = diag.show(&backend_path, &backend);
            diag.error(&backend_path, format!("unknown backend {shown}"));
            continue;
        }
        if !seen.insert(backend.clone()) {
            let shown = diag.show(&backend_path, &backend);
            diag.error(&entry_path, format!("backend {shown} is listed twice"));
            continue;
        }
        if let Some(percent) = percent {
            shadow.push(ShadowConfig { backend, percent });
        }
    }
    let shadow_max_in_flight = integer(
        raw.shadow_max_in_flight,
        &key_path(path, "shadow_max_in_flight"),
        bounds::SHADOW_MAX_IN_FLIGHT,
        DEFAULT_SHADOW_MAX_IN_FLIGHT,
        diag,
    );
    let shadow_cosine_threshold = match raw.shadow_cosine_threshold {
        None => DEFAULT_SHADOW_COSINE_THRESHOLD,
        Some(t) if (0.0..=1.0).contains(&t) => t,
        Some(_) => {
            diag.error(
                &key_path(path, "shadow_cosine_threshold"),
                "must be between 0.0 and 1.0",
            );
            DEFAULT_SHADOW_COSINE_THRESHOLD
        }
    };
    Shadow {
        shadow,
        shadow_max_in_flight,
        shadow_cosine_threshold,
    }
}
