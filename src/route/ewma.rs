//! Peak-EWMA latency: the load estimate the p2c balancer compares.
//!
//! As in Finagle and tower's `PeakEwma`: a new sample above the estimate
//! replaces it at once (a backend that slows down is penalised immediately),
//! a sample below it is blended in with a weight that grows with the time
//! since the last update, and reading the estimate decays it toward zero, so
//! a backend that was slow long ago is tried again.

use std::time::Duration;

use tokio::time::Instant;

/// Time constant of the decay: after this long, a sample weighs 1 - 1/e.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// The estimate a backend starts with, before any answer was seen.
pub const DEFAULT_RTT: Duration = Duration::from_millis(20);

/// A peak-sensitive exponentially weighted moving average of latency.
#[derive(Debug, Clone, Copy)]
pub struct PeakEwma {
    estimate_ns: f64,
    updated: Instant,
    decay_ns: f64,
}

impl PeakEwma {
    pub fn new(initial: Duration, decay: Duration, now: Instant) -> Self {
        Self {
            estimate_ns: nanos(initial),
            updated: now,
            decay_ns: nanos(decay).max(1.0),
        }
    }

    /// Folds in one observed latency.
    pub fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = nanos(rtt);
        if rtt > self.estimate_ns {
            self.estimate_ns = rtt;
        } else {
            let elapsed = nanos(now.saturating_duration_since(self.updated));
            let decay = (-elapsed / self.decay_ns).exp();
            self.estimate_ns = self.estimate_ns * decay + rtt * (1.0 - decay);
        }
        self.updated = now;
    }

    /// The current estimate in nanoseconds, decayed to `now` (as if a zero
    /// sample arrived), without changing the state.
    pub fn estimate(&self, now: Instant) -> f64 {
        let elapsed = nanos(now.saturating_duration_since(self.updated));
        self.estimate_ns * (-elapsed / self.decay_ns).exp()
    }
}

fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[tokio::test(start_paused = true)]
    async fn a_peak_replaces_the_estimate_at_once() {
        let now = Instant::now();
        let mut e = PeakEwma::new(ms(10), DEFAULT_DECAY, now);
        e.observe(ms(500), now);
        assert!((e.estimate(now) - 500e6).abs() < 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn lower_samples_blend_in_by_elapsed_time() {
        let start = Instant::now();
        let mut e = PeakEwma::new(ms(100), ms(1000), start);
        // One time constant later, a sample of 0 leaves 1/e of the estimate.
        e.observe(Duration::ZERO, start + ms(1000));
        let want = 100e6 / std::f64::consts::E;
        assert!(
            (e.estimate(start + ms(1000)) - want).abs() < 1e3,
            "{}",
            e.estimate(start + ms(1000))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reading_decays_toward_zero() {
        let start = Instant::now();
        let e = PeakEwma::new(ms(100), ms(1000), start);
        assert!((e.estimate(start) - 100e6).abs() < 1.0);
        assert!(e.estimate(start + ms(5000)) < 100e6 * 0.01);
    }

    #[tokio::test(start_paused = true)]
    async fn stays_between_min_and_max_of_its_inputs() {
        let start = Instant::now();
        let mut e = PeakEwma::new(ms(50), ms(200), start);
        let mut t = start;
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            t += ms(rng.u64(0..50));
            let sample = ms(rng.u64(1..100));
            e.observe(sample, t);
            let v = e.estimate(t);
            assert!((0.0..=100e6).contains(&v), "{v}");
        }
    }
}
