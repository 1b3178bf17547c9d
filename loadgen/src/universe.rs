//! The symbols a run subscribes to, and which ones each connection picks.
//!
//! Real front-ends watch the popular symbols far more often than the tail, so
//! each connection draws its symbols from a Zipf law over the universe (in the
//! server's order, which for the synthetic market is by popularity).

/// Cumulative Zipf weights over `n` ranks with exponent `s` (0: uniform).
pub fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut total = 0.0;
    (1..=n)
        .map(|rank| {
            total += 1.0 / (rank as f64).powf(s);
            total
        })
        .collect()
}

/// `k` distinct indexes into the universe, drawn by popularity.
pub fn pick(cdf: &[f64], k: usize, rng: &mut fastrand::Rng) -> Vec<usize> {
    let k = k.min(cdf.len());
    let total = *cdf.last().unwrap_or(&1.0);
    let mut chosen = Vec::with_capacity(k);
    while chosen.len() < k {
        let x = rng.f64() * total;
        let i = cdf.partition_point(|&c| c < x).min(cdf.len() - 1);
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen
}

/// Names `L0000`, `L0001` … for a run that drives its own feed.
pub fn made_up(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("L{i:04}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_distinct_and_skewed() {
        let cdf = zipf_cdf(500, 1.0);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut counts = vec![0u32; 500];
        for _ in 0..10_000 {
            let p = pick(&cdf, 5, &mut rng);
            let mut d = p.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 5);
            for i in p {
                counts[i] += 1;
            }
        }
        assert!(
            counts[0] > 10 * counts[400].max(1),
            "{} vs {}",
            counts[0],
            counts[400]
        );
        assert_eq!(
            pick(&cdf[..3], 10, &mut rng).len(),
            3,
            "never more than the universe"
        );
    }
}
