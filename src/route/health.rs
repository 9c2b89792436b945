//! What the gateway knows of each backend's health: in-flight requests,
//! peak-EWMA latency, passive outlier ejection, scale-to-zero coldness and
//! the results of active health checks.
//!
//! One [`BackendState`] per backend, shared by every route that lists it.
//! Passive ejection follows Envoy's outlier detection: `eject_after`
//! consecutive failures eject the backend for `ejection_time × ejections`
//! (capped at `max_ejection_time`); when that passes, one probe request
//! decides whether it comes back. A backend is never ejected when that would
//! leave one of its routes with no available backend. An HF endpoint that
//! answered 503 (scaled to zero) is *cold*: avoided while another backend can
//! serve, for one `ejection_time` at a time, and cleared by its next success.
//!
//! This module only receives observations: attempts' outcomes, and active
//! health check results through [`BackendState::set_healthy`]. The probes
//! themselves are the backends' own, started by the gateway: no HTTP call
//! is made here, and no backend kind is known.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwap;
use std::time::Duration;

use tokio::time::Instant;

use super::ewma::{PeakEwma, DEFAULT_DECAY, DEFAULT_RTT};
use crate::config::OutlierConfig;

/// Whether a backend can take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Available,
    /// Its ejection has run out: one probe request may go.
    Probe,
    /// Answered 503 while scaling from zero: use only when nothing else can.
    Cold,
    /// Ejected until then.
    Ejected(Instant),
    /// At `max_in_flight`.
    Saturated,
    /// An active health check failed.
    Unhealthy,
}

/// How an attempt ended, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Response headers arrived after this long.
    Success(Duration),
    /// A failure of the backend (connection, timeout, 5xx, throttling, auth).
    Failure,
    /// The backend is scaling from zero (HF 503).
    Cold,
    /// An answer that says nothing about the backend's health (the model
    /// rejected the input, the client went away).
    Neutral,
}

#[derive(Debug)]
struct Inner {
    ewma: PeakEwma,
    consecutive_failures: u32,
    /// Ejections so far; the multiplier of the next ejection time.
    ejections: u32,
    ejected_until: Option<Instant>,
    /// When the last ejection ended (its probe succeeded).
    recovered_at: Option<Instant>,
    probing: bool,
    /// Cold until then, or until a success. Past it, the backend is tried
    /// again (and marked cold again if it still is).
    cold_until: Option<Instant>,
    /// Set by active health checks.
    unhealthy: bool,
}

/// A snapshot for `/v1/routes` and metrics.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub availability: Availability,
    pub in_flight: u32,
    pub ewma: Duration,
    pub ejections: u32,
    pub consecutive_failures: u32,
}

/// One backend's live state.
#[derive(Debug)]
pub struct BackendState {
    name: String,
    in_flight: AtomicU32,
    max_in_flight: Option<u32>,
    outlier: OutlierConfig,
    inner: Mutex<Inner>,
    /// For each route listing this backend, the route's other backends:
    /// consulted before ejecting, so no route loses its last backend.
    siblings: ArcSwap<Vec<Vec<Weak<BackendState>>>>,
}

/// Holds one in-flight slot; dropping it gives the slot back. An attempt
/// reports how it ended with [`InFlight::finish`].
#[derive(Debug)]
pub struct InFlight {
    state: Arc<BackendState>,
    started: Instant,
    /// This attempt is the single probe of an ejected backend.
    probe: bool,
    finished: bool,
}

impl InFlight {
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records how the attempt ended and frees the slot. Returns `true` when
    /// this ejected the backend.
    pub fn finish(mut self, obs: Observation, now: Instant) -> bool {
        self.finished = true;
        self.state.observe(obs, self.probe, now)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.probe && !self.finished {
            // A cancelled probe told nothing: let the next request probe.
            self.state.lock().probing = false;
        }
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BackendState {
    pub fn new(name: &str, max_in_flight: Option<u32>, outlier: OutlierConfig) -> Self {
        Self {
            name: name.to_string(),
            in_flight: AtomicU32::new(0),
            max_in_flight,
            outlier,
            inner: Mutex::new(Inner {
                ewma: PeakEwma::new(DEFAULT_RTT, DEFAULT_DECAY, Instant::now()),
                consecutive_failures: 0,
                ejections: 0,
                ejected_until: None,
                recovered_at: None,
                probing: false,
                cold_until: None,
                unhealthy: false,
            }),
            siblings: ArcSwap::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records the other backends of each route listing this one: at start,
    /// and again with the new route table at each reload.
    pub fn set_siblings(&self, siblings: Vec<Vec<Weak<BackendState>>>) {
        self.siblings.store(Arc::new(siblings));
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the counters in a
        // state worse than stale; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether the backend can take a request at `now`.
    pub fn availability(&self, now: Instant) -> Availability {
        let inner = self.lock();
        self.availability_locked(&inner, now)
    }

    fn availability_locked(&self, inner: &Inner, now: Instant) -> Availability {
        if let Some(until) = inner.ejected_until {
            if now < until || inner.probing {
                return Availability::Ejected(until);
            }
            return Availability::Probe;
        }
        if inner.unhealthy {
            return Availability::Unhealthy;
        }
        if self
            .max_in_flight
            .is_some_and(|max| self.in_flight() >= max)
        {
            return Availability::Saturated;
        }
        if inner.cold_until.is_some_and(|until| now < until) {
            return Availability::Cold;
        }
        Availability::Available
    }

    /// The p2c load: peak-EWMA latency × (in-flight + 1).
    pub fn cost(&self, now: Instant) -> f64 {
        let ewma = self.lock().ewma.estimate(now);
        ewma * f64::from(self.in_flight() + 1)
    }

    /// Takes an in-flight slot for an attempt. Fails at `max_in_flight`, or
    /// when the backend is waiting for its probe and another request already
    /// is that probe.
    pub fn begin(self: &Arc<Self>, now: Instant) -> Option<InFlight> {
        let probe = {
            let mut inner = self.lock();
            match inner.ejected_until {
                Some(until) if now < until || inner.probing => return None,
                Some(_) => {
                    inner.probing = true;
                    true
                }
                None => false,
            }
        };
        let slot = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                match self.max_in_flight {
                    Some(max) if n >= max => None,
                    _ => Some(n + 1),
                }
            });
        if slot.is_err() {
            if probe {
                self.lock().probing = false;
            }
            return None;
        }
        Some(InFlight {
            state: Arc::clone(self),
            started: now,
            probe,
            finished: false,
        })
    }

    /// Takes a slot even when ejected: the route has nothing better (panic
    /// mode). Still bounded by `max_in_flight`.
    pub fn begin_anyway(self: &Arc<Self>, now: Instant) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                match self.max_in_flight {
                    Some(max) if n >= max => None,
                    _ => Some(n + 1),
                }
            })
            .ok()
            .map(|_| InFlight {
                state: Arc::clone(self),
                started: now,
                probe: false,
                finished: false,
            })
    }

    /// Records how an attempt ended; `probe` when it was the single probe of
    /// an ejected backend. Returns `true` when this ejected the backend.
    fn observe(&self, obs: Observation, probe: bool, now: Instant) -> bool {
        let mut inner = self.lock();
        let was_probe = probe;
        if probe {
            inner.probing = false;
        }
        match obs {
            Observation::Success(rtt) => {
                inner.ewma.observe(rtt, now);
                inner.consecutive_failures = 0;
                inner.cold_until = None;
                if inner.ejected_until.take().is_some() {
                    inner.recovered_at = Some(now);
                } else if inner.ejections > 0
                    && inner.recovered_at.is_some_and(|at| {
                        now.saturating_duration_since(at) >= self.outlier.base_ejection
                    })
                {
                    // Healthy for a whole base ejection time: the next
                    // ejection is shorter again.
                    inner.ejections -= 1;
                    inner.recovered_at = Some(now);
                }
                false
            }
            Observation::Cold => {
                // Check again after a base ejection time: a cold backend
                // that is never tried would never be seen to wake up.
                inner.cold_until = Some(now + self.outlier.base_ejection);
                false
            }
            Observation::Neutral => {
                if was_probe {
                    // A probe that told nothing: let another request probe.
                    inner.ejected_until = inner.ejected_until.map(|_| now);
                }
                false
            }
            Observation::Failure => {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                let threshold = self.outlier.eject_after;
                let due = was_probe || (threshold > 0 && inner.consecutive_failures >= threshold);
                if !due {
                    return false;
                }
                // Look at the siblings without holding this lock: two
                // backends failing at once must not wait on each other.
                drop(inner);
                let others = self.others_available(now);
                let mut inner = self.lock();
                if !others {
                    // Nowhere else to go: it stays in use.
                    inner.consecutive_failures = 0;
                    if was_probe {
                        inner.ejected_until = None;
                    }
                    return false;
                }
                inner.ejections = inner.ejections.saturating_add(1);
                let time = self
                    .outlier
                    .base_ejection
                    .saturating_mul(inner.ejections)
                    .min(self.outlier.max_ejection);
                inner.ejected_until = Some(now + time);
                inner.consecutive_failures = 0;
                tracing::warn!(
                    backend = %self.name,
                    ejection_secs = time.as_secs_f64(),
                    ejections = inner.ejections,
                    "backend ejected"
                );
                true
            }
        }
    }

    /// Records an attempt the request's deadline cut short: a failure, as a
    /// timeout of the attempt itself would have been. Returns `true` when
    /// this ejected the backend.
    pub fn record_timeout(&self, now: Instant) -> bool {
        self.observe(Observation::Failure, false, now)
    }

    /// Sets the result of an active health check.
    pub fn set_healthy(&self, healthy: bool) {
        let mut inner = self.lock();
        if inner.unhealthy == healthy {
            tracing::info!(backend = %self.name, healthy, "health check state changed");
        }
        inner.unhealthy = !healthy;
    }

    /// Whether every route of this backend keeps another backend that can
    /// serve. Called without this backend's lock; siblings are locked one at
    /// a time.
    fn others_available(&self, now: Instant) -> bool {
        self.siblings.load().iter().all(|others| {
            others.iter().filter_map(Weak::upgrade).any(|o| {
                matches!(
                    o.availability(now),
                    Availability::Available | Availability::Probe | Availability::Saturated
                )
            })
        })
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            availability: self.availability_locked(&inner, now),
            in_flight: self.in_flight(),
            ewma: Duration::from_secs_f64(inner.ewma.estimate(now).max(0.0) / 1e9),
            ejections: inner.ejections,
            consecutive_failures: inner.consecutive_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier() -> OutlierConfig {
        OutlierConfig {
            eject_after: 3,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
        }
    }

    /// Two backends sharing one route.
    fn pair() -> (Arc<BackendState>, Arc<BackendState>) {
        let a = Arc::new(BackendState::new("a", None, outlier()));
        let b = Arc::new(BackendState::new("b", None, outlier()));
        a.set_siblings(vec![vec![Arc::downgrade(&b)]]);
        b.set_siblings(vec![vec![Arc::downgrade(&a)]]);
        (a, b)
    }

    fn fail(s: &Arc<BackendState>, n: u32, now: Instant) -> bool {
        let mut ejected = false;
        for _ in 0..n {
            match s.begin(now) {
                Some(slot) => ejected |= slot.finish(Observation::Failure, now),
                None => ejected |= s.observe(Observation::Failure, false, now),
            }
        }
        ejected
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_for_a_growing_time() {
        let (a, _b) = pair();
        let t0 = Instant::now();
        assert!(!fail(&a, 2, t0));
        assert!(fail(&a, 1, t0));
        assert_eq!(
            a.availability(t0),
            Availability::Ejected(t0 + Duration::from_secs(30))
        );
        assert!(a.begin(t0).is_none(), "no request while ejected");

        // The ejection runs out: one probe, and it fails: ejected twice as long.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(a.availability(t1), Availability::Probe);
        let probe = a.begin(t1).unwrap();
        assert!(a.begin(t1).is_none(), "a single probe at a time");
        assert!(probe.finish(Observation::Failure, t1));
        assert_eq!(
            a.availability(t1),
            Availability::Ejected(t1 + Duration::from_secs(60))
        );

        // A successful probe brings it back.
        let t2 = t1 + Duration::from_secs(60);
        let probe = a.begin(t2).unwrap();
        assert!(!probe.finish(Observation::Success(Duration::from_millis(5)), t2));
        assert_eq!(a.availability(t2), Availability::Available);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_is_capped() {
        let (a, _b) = pair();
        let mut t = Instant::now();
        for _ in 0..20 {
            fail(&a, 3, t);
            match a.availability(t) {
                Availability::Ejected(until) => {
                    assert!(until - t <= Duration::from_secs(300));
                    t = until;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_available_backend_of_a_route_is_never_ejected() {
        let (a, b) = pair();
        let t = Instant::now();
        assert!(fail(&a, 3, t));
        assert!(!fail(&b, 10, t), "b is the route's last available backend");
        assert_eq!(b.availability(t), Availability::Available);
        // Alone in its route, a backend is never ejected either.
        let solo = Arc::new(BackendState::new("solo", None, outlier()));
        solo.set_siblings(vec![vec![]]);
        assert!(!fail(&solo, 10, t));
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_count() {
        let (a, _b) = pair();
        let t = Instant::now();
        fail(&a, 2, t);
        a.begin(t)
            .unwrap()
            .finish(Observation::Success(Duration::from_millis(1)), t);
        assert!(!fail(&a, 2, t));
        assert_eq!(a.availability(t), Availability::Available);
    }

    #[tokio::test(start_paused = true)]
    async fn max_in_flight_bounds_the_slots() {
        let s = Arc::new(BackendState::new("s", Some(2), outlier()));
        let t = Instant::now();
        let one = s.begin(t).unwrap();
        let _two = s.begin(t).unwrap();
        assert!(s.begin(t).is_none());
        assert_eq!(s.availability(t), Availability::Saturated);
        drop(one);
        assert_eq!(s.in_flight(), 1);
        assert!(s.begin(t).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn cold_until_the_next_success() {
        let s = Arc::new(BackendState::new("s", None, outlier()));
        let t = Instant::now();
        s.begin(t).unwrap().finish(Observation::Cold, t);
        assert_eq!(s.availability(t), Availability::Cold);
        s.begin(t)
            .unwrap()
            .finish(Observation::Success(Duration::from_millis(1)), t);
        assert_eq!(s.availability(t), Availability::Available);
    }

    #[tokio::test(start_paused = true)]
    async fn cold_is_checked_again_after_an_ejection_time() {
        let s = Arc::new(BackendState::new("s", None, outlier()));
        let t = Instant::now();
        s.begin(t).unwrap().finish(Observation::Cold, t);
        assert_eq!(
            s.availability(t + Duration::from_secs(29)),
            Availability::Cold
        );
        assert_eq!(
            s.availability(t + Duration::from_secs(30)),
            Availability::Available
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cost_grows_with_in_flight() {
        let s = Arc::new(BackendState::new("s", None, outlier()));
        let t = Instant::now();
        let idle = s.cost(t);
        let _slot = s.begin(t).unwrap();
        assert!((s.cost(t) - 2.0 * idle).abs() < 1.0);
    }
}
