//! Picking a backend from a route's pool.
//!
//! For now a weighted random pick that prefers backends not yet tried for
//! this request, so a retry fails over to another backend when the route has
//! one. The pick is a pure function of the pool, the tried set and a random
//! number, which keeps it exact to test.

use super::PoolMember;

/// Picks an index of `pool` with probability proportional to its weight,
/// among the members not in `tried`; when every member was tried, among all.
/// `None` only for an empty pool.
pub fn pick_weighted(pool: &[PoolMember], tried: &[usize], random: u64) -> Option<usize> {
    let candidates = |i: &usize| !tried.contains(i);
    let untried_weight: u64 = (0..pool.len())
        .filter(candidates)
        .map(|i| u64::from(pool[i].weight))
        .sum();
    let (use_all, total) = if untried_weight > 0 {
        (false, untried_weight)
    } else {
        (true, pool.iter().map(|m| u64::from(m.weight)).sum())
    };
    if total == 0 {
        return None;
    }
    let mut point = random % total;
    for (i, member) in pool.iter().enumerate() {
        if !use_all && tried.contains(&i) {
            continue;
        }
        let w = u64::from(member.weight);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::backend::{Backend, BackendKind, HuggingFace};
    use crate::config::HuggingFaceConfig;
    use std::sync::Arc;

    fn pool(weights: &[u32]) -> Vec<PoolMember> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| PoolMember {
                backend: Arc::new(Backend {
                    name: format!("b{i}"),
                    timeout: None,
                    kind: BackendKind::HuggingFace(HuggingFace::from_config(&HuggingFaceConfig {
                        url: reqwest::Url::parse("http://127.0.0.1:1/").unwrap(),
                        token: None,
                    })),
                }),
                weight: *w,
            })
            .collect()
    }

    #[test]
    fn weights_split_the_random_range_exactly() {
        let p = pool(&[3, 1]);
        let picks: Vec<usize> = (0..8).map(|r| pick_weighted(&p, &[], r).unwrap()).collect();
        assert_eq!(picks, vec![0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn untried_members_come_first() {
        let p = pool(&[100, 1]);
        for r in 0..50 {
            assert_eq!(pick_weighted(&p, &[0], r), Some(1));
            assert_eq!(pick_weighted(&p, &[1], r), Some(0));
        }
    }

    #[test]
    fn all_tried_falls_back_to_all() {
        let p = pool(&[1, 1]);
        assert_eq!(pick_weighted(&p, &[0, 1], 0), Some(0));
        assert_eq!(pick_weighted(&p, &[0, 1], 1), Some(1));
        assert_eq!(pick_weighted(&[], &[], 7), None);
    }
}
