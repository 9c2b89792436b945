//! Picking a backend from a route's pool for one attempt.
//!
//! Candidates come in tiers, best first: not yet tried for this request and
//! available (an ejected backend whose ejection ran out counts, as its
//! probe); not yet tried but cold; tried and available; tried and cold; and
//! last, "panic mode", ejected or unhealthy backends, so a route always has
//! somewhere to go. Saturated backends (at `max_in_flight`) are skipped; when
//! only saturated ones are left, the request is shed.
//!
//! Within a tier the route's policy decides: `p2c` draws two by weight and
//! keeps the one with the lower peak-EWMA × (in-flight + 1) / weight, as
//! Finagle and tower do; `weighted` draws one by weight; `priority` takes the
//! first in config order (spillover).

use tokio::time::Instant;

use super::health::{Availability, InFlight};
use super::PoolMember;
use crate::config::Balance;

/// The outcome of a pick.
#[derive(Debug)]
pub enum Pick {
    /// Send the attempt to `pool[index]`; `slot` holds its in-flight place.
    Chosen { index: usize, slot: InFlight },
    /// Every eligible backend is at its concurrency limit.
    Shed,
    /// No eligible backend at all.
    Empty,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Tier {
    Fresh,
    FreshCold,
    Retry,
    RetryCold,
    Panic,
}

/// Picks a backend among the members for which `eligible` holds.
pub fn pick(
    balance: Balance,
    pool: &[PoolMember],
    tried: &[usize],
    eligible: &dyn Fn(usize) -> bool,
    now: Instant,
    rng: &mut fastrand::Rng,
) -> Pick {
    let mut tiers: [Vec<usize>; 5] = Default::default();
    let mut saturated = false;
    for (i, m) in pool.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let fresh = !tried.contains(&i);
        let tier = match m.state.availability(now) {
            Availability::Available | Availability::Probe if fresh => Tier::Fresh,
            Availability::Available | Availability::Probe => Tier::Retry,
            Availability::Cold if fresh => Tier::FreshCold,
            Availability::Cold => Tier::RetryCold,
            Availability::Ejected(_) | Availability::Unhealthy => Tier::Panic,
            Availability::Saturated => {
                saturated = true;
                continue;
            }
        };
        tiers[tier as usize].push(i);
    }
    for (t, mut candidates) in tiers.into_iter().enumerate() {
        let panic = t == Tier::Panic as usize;
        while !candidates.is_empty() {
            let at = choose(balance, pool, &candidates, now, rng);
            let index = candidates.swap_remove(at);
            let state = &pool[index].state;
            let slot = if panic {
                state.begin_anyway(now)
            } else {
                state.begin(now)
            };
            match slot {
                Some(slot) => return Pick::Chosen { index, slot },
                // Lost a race for the last slot or for the probe.
                None => saturated = true,
            }
        }
    }
    if saturated {
        Pick::Shed
    } else {
        Pick::Empty
    }
}

/// Position in `candidates` (non-empty) of the member to use.
fn choose(
    balance: Balance,
    pool: &[PoolMember],
    candidates: &[usize],
    now: Instant,
    rng: &mut fastrand::Rng,
) -> usize {
    match balance {
        Balance::Priority => candidates
            .iter()
            .enumerate()
            .min_by_key(|(_, &i)| i)
            .map_or(0, |(pos, _)| pos),
        Balance::Weighted => weighted(pool, candidates, rng.u64(..)),
        Balance::P2c => {
            if candidates.len() == 1 {
                return 0;
            }
            let a = weighted(pool, candidates, rng.u64(..));
            let mut b = weighted(pool, candidates, rng.u64(..));
            if a == b {
                // Draw the second among the others, so there are two choices.
                b = (a + 1 + rng.usize(..candidates.len() - 1)) % candidates.len();
            }
            let load = |pos: usize| {
                let m = &pool[candidates[pos]];
                m.state.cost(now) / f64::from(m.weight.max(1))
            };
            if load(b) < load(a) {
                b
            } else {
                a
            }
        }
    }
}

/// A position in `candidates`, drawn with probability proportional to weight.
pub fn weighted(pool: &[PoolMember], candidates: &[usize], random: u64) -> usize {
    let total: u64 = candidates
        .iter()
        .map(|&i| u64::from(pool[i].weight.max(1)))
        .sum();
    let mut point = random % total.max(1);
    for (pos, &i) in candidates.iter().enumerate() {
        let w = u64::from(pool[i].weight.max(1));
        if point < w {
            return pos;
        }
        point -= w;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::config::OutlierConfig;
    use crate::route::health::{BackendState, Observation};
    use std::sync::Arc;
    use std::time::Duration;

    fn outlier() -> OutlierConfig {
        OutlierConfig {
            eject_after: 2,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
        }
    }

    fn pool(weights: &[u32], max_in_flight: Option<u32>) -> Vec<PoolMember> {
        let members: Vec<PoolMember> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| PoolMember {
                series: None,
                backend: Arc::new(Backend::huggingface(
                    &format!("b{i}"),
                    reqwest::Url::parse("http://127.0.0.1:1/").unwrap(),
                )),
                state: Arc::new(BackendState::new(
                    &format!("b{i}"),
                    max_in_flight,
                    outlier(),
                )),
                weight: *w,
            })
            .collect();
        for m in &members {
            let others = members
                .iter()
                .filter(|o| !Arc::ptr_eq(&o.state, &m.state))
                .map(|o| Arc::downgrade(&o.state))
                .collect();
            m.state.set_siblings(vec![others]);
        }
        members
    }

    fn all(_: usize) -> bool {
        true
    }

    fn chosen(p: Pick) -> (usize, InFlight) {
        match p {
            Pick::Chosen { index, slot } => (index, slot),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn weighted_draw_splits_the_range_exactly() {
        let p = pool(&[3, 1], None);
        let picks: Vec<usize> = (0..8).map(|r| weighted(&p, &[0, 1], r)).collect();
        assert_eq!(picks, vec![0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn untried_backends_come_first_in_every_policy() {
        let p = pool(&[100, 1], None);
        let mut rng = fastrand::Rng::with_seed(1);
        for balance in [Balance::P2c, Balance::Weighted, Balance::Priority] {
            for _ in 0..50 {
                let (i, _) = chosen(pick(balance, &p, &[0], &all, Instant::now(), &mut rng));
                assert_eq!(i, 1, "{balance:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn priority_spills_over_when_the_first_is_saturated() {
        let p = pool(&[1, 1, 1], Some(1));
        let mut rng = fastrand::Rng::with_seed(1);
        let now = Instant::now();
        let (a, _sa) = chosen(pick(Balance::Priority, &p, &[], &all, now, &mut rng));
        let (b, _sb) = chosen(pick(Balance::Priority, &p, &[], &all, now, &mut rng));
        let (c, _sc) = chosen(pick(Balance::Priority, &p, &[], &all, now, &mut rng));
        assert_eq!((a, b, c), (0, 1, 2));
        assert!(matches!(
            pick(Balance::Priority, &p, &[], &all, now, &mut rng),
            Pick::Shed
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn p2c_prefers_the_less_loaded() {
        let p = pool(&[1, 1], None);
        let now = Instant::now();
        // b0 is slow: a 500 ms answer.
        p[0].state
            .begin(now)
            .unwrap()
            .finish(Observation::Success(Duration::from_millis(500)), now);
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100 {
            let (i, _) = chosen(pick(Balance::P2c, &p, &[], &all, now, &mut rng));
            assert_eq!(i, 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn p2c_respects_weights_when_loads_are_equal() {
        let p = pool(&[9, 1], None);
        let mut rng = fastrand::Rng::with_seed(5);
        let now = Instant::now();
        let mut counts = [0u32; 2];
        for _ in 0..2000 {
            let (i, _) = chosen(pick(Balance::P2c, &p, &[], &all, now, &mut rng));
            counts[i] += 1;
        }
        // Equal cost: the weight divides it, so b0 wins every contest it is in.
        assert!(counts[0] > 1800, "{counts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn ejected_backends_are_skipped_until_nothing_else_is_left() {
        let p = pool(&[1, 1], None);
        let now = Instant::now();
        for _ in 0..2 {
            p[0].state
                .begin(now)
                .unwrap()
                .finish(Observation::Failure, now);
        }
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..20 {
            let (i, _) = chosen(pick(Balance::Weighted, &p, &[], &all, now, &mut rng));
            assert_eq!(i, 1);
        }
        // Only the ejected one is eligible: panic mode still sends there.
        let (i, _) = chosen(pick(Balance::Weighted, &p, &[], &|i| i == 0, now, &mut rng));
        assert_eq!(i, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cold_backends_are_used_only_when_nothing_else_can() {
        let p = pool(&[1, 1], None);
        let now = Instant::now();
        p[1].state
            .begin(now)
            .unwrap()
            .finish(Observation::Cold, now);
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20 {
            let (i, _) = chosen(pick(Balance::Weighted, &p, &[], &all, now, &mut rng));
            assert_eq!(i, 0);
        }
        let (i, _) = chosen(pick(Balance::Weighted, &p, &[0], &all, now, &mut rng));
        assert_eq!(i, 1, "after the warm one was tried, the cold one");
    }

    #[tokio::test(start_paused = true)]
    async fn property_every_pick_is_eligible_and_never_saturated() {
        let mut rng = fastrand::Rng::with_seed(1234);
        for _case in 0..300 {
            let n = rng.usize(1..8);
            let weights: Vec<u32> = (0..n).map(|_| rng.u32(1..10)).collect();
            let limit = rng.bool().then(|| rng.u32(1..3));
            let p = pool(&weights, limit);
            let now = Instant::now();
            let tried: Vec<usize> = (0..n).filter(|_| rng.bool()).collect();
            let allowed: Vec<bool> = (0..n).map(|_| rng.u8(..) > 40).collect();
            let balance = [Balance::P2c, Balance::Weighted, Balance::Priority][rng.usize(..3)];
            let mut held = Vec::new();
            for _ in 0..10 {
                match pick(balance, &p, &tried, &|i| allowed[i], now, &mut rng) {
                    Pick::Chosen { index, slot } => {
                        assert!(allowed[index]);
                        if let Some(max) = limit {
                            assert!(p[index].state.in_flight() <= max);
                        }
                        held.push(slot);
                    }
                    Pick::Shed => assert!(limit.is_some()),
                    Pick::Empty => assert!(!allowed.iter().any(|a| *a)),
                }
            }
        }
    }
}
