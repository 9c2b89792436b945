//! The retry budget: retries may add at most a fixed share of a route's
//! traffic, plus a small floor, over a sliding window.
//!
//! As Finagle's `RetryBudget` and tower's `TpsBudget` do: every client
//! request deposits `ratio` of a retry, every retry withdraws one, and a
//! reserve of `min_per_second × window` lets a quiet route still retry. The
//! window slides in ten slots, so old traffic stops paying for new retries.
//! Without a budget, retries during an outage multiply the load on the very
//! backends that are failing.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RetryBudgetConfig;

const SLOTS: usize = 10;

#[derive(Debug)]
struct Window {
    /// Start of the current slot.
    slot_start: Instant,
    current: usize,
    deposits: [u64; SLOTS],
    withdrawals: [u64; SLOTS],
}

/// A route's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    reserve: f64,
    slot_len: Duration,
    window: Mutex<Window>,
}

impl RetryBudget {
    pub fn new(cfg: &RetryBudgetConfig, now: Instant) -> Self {
        let window = cfg.window.max(Duration::from_millis(10));
        Self {
            ratio: cfg.ratio.clamp(0.0, 1.0),
            reserve: f64::from(cfg.min_per_second) * window.as_secs_f64(),
            slot_len: window / SLOTS as u32,
            window: Mutex::new(Window {
                slot_start: now,
                current: 0,
                deposits: [0; SLOTS],
                withdrawals: [0; SLOTS],
            }),
        }
    }

    fn lock(&self, now: Instant) -> std::sync::MutexGuard<'_, Window> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        // Advance the window, clearing the slots that fell out of it.
        let elapsed = now.saturating_duration_since(w.slot_start);
        let steps = (elapsed.as_nanos() / self.slot_len.as_nanos().max(1)) as usize;
        if steps > 0 {
            for _ in 0..steps.min(SLOTS) {
                w.current = (w.current + 1) % SLOTS;
                let c = w.current;
                w.deposits[c] = 0;
                w.withdrawals[c] = 0;
            }
            w.slot_start += self.slot_len * steps.min(u32::MAX as usize) as u32;
        }
        w
    }

    /// Records a client request.
    pub fn deposit(&self, now: Instant) {
        let mut w = self.lock(now);
        let c = w.current;
        w.deposits[c] += 1;
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn withdraw(&self, now: Instant) -> bool {
        let mut w = self.lock(now);
        let deposits: u64 = w.deposits.iter().sum();
        let withdrawals: u64 = w.withdrawals.iter().sum();
        let balance = self.ratio * deposits as f64 + self.reserve - withdrawals as f64;
        if balance >= 1.0 {
            let c = w.current;
            w.withdrawals[c] += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
        RetryBudget::new(
            &RetryBudgetConfig {
                ratio,
                min_per_second,
                window: Duration::from_secs(10),
            },
            Instant::now(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_requests() {
        let b = budget(0.2, 0);
        let now = Instant::now();
        for _ in 0..100 {
            b.deposit(now);
        }
        let allowed = (0..100).filter(|_| b.withdraw(now)).count();
        assert_eq!(allowed, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_lets_a_quiet_route_retry() {
        let b = budget(0.2, 10);
        let now = Instant::now();
        let allowed = (0..1000).filter(|_| b.withdraw(now)).count();
        assert_eq!(allowed, 100, "10 per second over a 10 s window");
    }

    #[tokio::test(start_paused = true)]
    async fn old_traffic_stops_paying_for_new_retries() {
        let b = budget(0.5, 0);
        let t0 = Instant::now();
        for _ in 0..100 {
            b.deposit(t0);
        }
        // Past the window, the deposits are gone.
        let later = t0 + Duration::from_secs(11);
        assert!(!b.withdraw(later));
        // Withdrawals also leave the window with time.
        let b = budget(0.1, 0);
        for _ in 0..10 {
            b.deposit(t0);
        }
        assert!(b.withdraw(t0));
        assert!(!b.withdraw(t0));
        let t1 = t0 + Duration::from_secs(5);
        for _ in 0..10 {
            b.deposit(t1);
        }
        assert!(b.withdraw(t1));
        assert!(!b.withdraw(t1));
    }

    #[tokio::test(start_paused = true)]
    async fn property_withdrawals_never_exceed_the_budget() {
        let mut rng = fastrand::Rng::with_seed(42);
        for _case in 0..100 {
            let ratio = rng.f64();
            let floor = rng.u32(0..5);
            let b = budget(ratio, floor);
            let start = Instant::now();
            let mut t = start;
            let (mut deposits, mut withdrawn) = (0u64, 0u64);
            // Stay within one window so the bound is exact.
            for _ in 0..500 {
                t += Duration::from_millis(rng.u64(0..15));
                if rng.bool() {
                    b.deposit(t);
                    deposits += 1;
                } else if b.withdraw(t) {
                    withdrawn += 1;
                }
            }
            assert!(t - start < Duration::from_secs(9));
            let bound = ratio * deposits as f64 + f64::from(floor) * 10.0;
            assert!(withdrawn as f64 <= bound + 1e-9, "{withdrawn} > {bound}");
        }
    }
}
