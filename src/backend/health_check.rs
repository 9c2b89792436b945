//! Active health checks: a backend probing its own endpoint on an interval.
//!
//! The probe is HTTP with the backend's own URL and credentials, so it lives
//! with the backend; what a result means for balancing is the caller's
//! business: [`spawn`] hands each result to a callback (the gateway's sets
//! the backend's route state), so backends never learn about routes. Only
//! Hugging Face backends have a check (`GET {url}{path}`, 2xx is healthy);
//! a SageMaker endpoint has no health URL of its own.

use std::sync::Arc;
use std::time::Duration;

use super::{Backend, BackendKind};
use crate::upstream::Client;

/// A backend's active health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// Time between the starts of two probes.
    pub interval: Duration,
}

impl Backend {
    /// The backend's active health check, when one is configured.
    pub fn health_check(&self) -> Option<HealthCheck> {
        match &self.kind {
            BackendKind::HuggingFace(hf) => {
                let cfg = hf.health_check()?;
                Some(HealthCheck {
                    interval: cfg.interval,
                })
            }
            BackendKind::SageMaker(_) => None,
        }
    }

    /// Probes once: whether the backend is healthy, or `None` when it has no
    /// active health check.
    pub async fn probe(&self, client: &Client) -> Option<bool> {
        match &self.kind {
            BackendKind::HuggingFace(hf) => hf.probe_health(client).await,
            BackendKind::SageMaker(_) => None,
        }
    }
}

/// Starts `backend`'s active health check, when it has one: a probe every
/// interval on `client`, each result handed to `report`. The task runs
/// until aborted.
pub fn spawn(
    backend: Arc<Backend>,
    client: Client,
    report: impl Fn(bool) + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    let check = backend.health_check()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(check.interval);
        // A slow probe delays the next one rather than bunching them up.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(healthy) = backend.probe(&client).await {
                report(healthy);
            }
        }
    }))
}
