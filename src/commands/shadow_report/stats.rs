//! The report's statistics, pure functions: the agreement's Wilson score
//! interval, nearest-rank percentiles and a mean.

/// The normal quantile of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `successes` out of `n` at `z` (Wilson,
/// 1927): unlike the normal approximation it stays within `[0, 1]` and is
/// sound near 0 and 1 and for small `n`. `None` for `n = 0`.
pub fn wilson(successes: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = successes.min(n as u64) as f64 / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Some(((center - half).max(0.0), (center + half).min(1.0)))
}

/// The nearest-rank `p`th percentile (0 < p <= 100) of `sorted`
/// (ascending): the smallest value with at least `p`% of them at or
/// below it. `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `values` sorted ascending (NaN, which no line holds, last).
pub fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-4
    }

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), table I: 81/263 → 0.2553 to 0.3662.
        let (lo, hi) = wilson(81, 263, Z95).unwrap();
        assert!(close(lo, 0.2553) && close(hi, 0.3662), "{lo} {hi}");
        // 15/148 → 0.0624 to 0.1605.
        let (lo, hi) = wilson(15, 148, Z95).unwrap();
        assert!(close(lo, 0.0624) && close(hi, 0.1605), "{lo} {hi}");
        // 70 of 100.
        let (lo, hi) = wilson(70, 100, Z95).unwrap();
        assert!(close(lo, 0.6041) && close(hi, 0.7810), "{lo} {hi}");
    }

    #[test]
    fn wilson_stays_within_bounds_at_the_edges() {
        let (lo, hi) = wilson(0, 10, Z95).unwrap();
        assert!(
            close(lo, 0.0) && lo >= 0.0 && close(hi, 0.2775),
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(10, 10, Z95).unwrap();
        assert!(
            close(lo, 0.7225) && close(hi, 1.0) && hi <= 1.0,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0, Z95), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn mean_and_sorting() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(mean(&[]), None);
        assert_eq!(sorted(vec![3.0, 1.0, 2.0]), [1.0, 2.0, 3.0]);
    }
}
