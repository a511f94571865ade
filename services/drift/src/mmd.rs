//! Maximum mean discrepancy between two sets of embeddings: the joint test of the
//! representation channel (CheXstray tested a VAE latent space, MMC+ foundation-model
//! embeddings; here the deployed model's own projected features).
//!
//! RBF kernel `k(a, b) = exp(-‖a-b‖² / h)` with the median heuristic `h = median ‖a-b‖²`
//! over the reference sample (fixed per reference, so every window is measured with the same
//! kernel), the unbiased MMD² estimator, and a seeded permutation test over the pooled sample.
//! The Gram matrix is computed once per evaluation; each permutation only re-sums it.

use rand::seq::SliceRandom;
use rand::Rng;

/// The result of one permutation test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmdResult {
    /// Unbiased MMD² of the two samples.
    pub mmd2: f64,
    /// `(1 + #{perm ≥ observed}) / (1 + permutations)`.
    pub p_value: f64,
    /// Mean and standard deviation of MMD² over the permutations (the null).
    pub null_mean: f64,
    pub null_sd: f64,
}

impl MmdResult {
    /// Standardised excess over the permutation null.
    pub fn z(&self) -> f64 {
        if self.null_sd > 0.0 {
            (self.mmd2 - self.null_mean) / self.null_sd
        } else {
            0.0
        }
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The median heuristic bandwidth `h` (median pairwise squared distance) of a sample; 1.0 for a
/// degenerate sample.
pub fn median_bandwidth(x: &[Vec<f64>]) -> f64 {
    let mut d = Vec::with_capacity(x.len() * x.len().saturating_sub(1) / 2);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            d.push(sq_dist(&x[i], &x[j]));
        }
    }
    if d.is_empty() {
        return 1.0;
    }
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable_by(mid, f64::total_cmp);
    if *m > 0.0 && m.is_finite() {
        *m
    } else {
        1.0
    }
}

/// Unbiased MMD² given the pooled Gram matrix (row-major, `n × n`) and which rows are in `x`.
fn mmd2_from_gram(gram: &[f64], n: usize, in_x: &[bool]) -> f64 {
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let row = &gram[i * n..(i + 1) * n];
        for j in i + 1..n {
            let k = row[j];
            match (in_x[i], in_x[j]) {
                (true, true) => sxx += k,
                (false, false) => syy += k,
                _ => sxy += k,
            }
        }
    }
    let nx = in_x.iter().filter(|b| **b).count() as f64;
    let ny = n as f64 - nx;
    if nx < 2.0 || ny < 2.0 {
        return 0.0;
    }
    2.0 * sxx / (nx * (nx - 1.0)) + 2.0 * syy / (ny * (ny - 1.0)) - 2.0 * sxy / (nx * ny)
}

/// Unbiased MMD² of `x` and `y` with bandwidth `h`.
pub fn mmd2(x: &[Vec<f64>], y: &[Vec<f64>], h: f64) -> f64 {
    let (pooled, in_x) = pool(x, y);
    let gram = gram(&pooled, h);
    mmd2_from_gram(&gram, pooled.len(), &in_x)
}

fn pool<'a>(x: &'a [Vec<f64>], y: &'a [Vec<f64>]) -> (Vec<&'a [f64]>, Vec<bool>) {
    let pooled: Vec<&[f64]> = x.iter().chain(y).map(Vec::as_slice).collect();
    let in_x: Vec<bool> = (0..pooled.len()).map(|i| i < x.len()).collect();
    (pooled, in_x)
}

fn gram(pooled: &[&[f64]], h: f64) -> Vec<f64> {
    let n = pooled.len();
    let mut g = vec![1.0; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let k = (-sq_dist(pooled[i], pooled[j]) / h).exp();
            g[i * n + j] = k;
            g[j * n + i] = k;
        }
    }
    g
}

/// Permutation test of `x` vs `y` with bandwidth `h`, `permutations` seeded shuffles.
pub fn mmd_permutation_test<R: Rng>(
    x: &[Vec<f64>],
    y: &[Vec<f64>],
    h: f64,
    permutations: usize,
    rng: &mut R,
) -> MmdResult {
    let (pooled, mut in_x) = pool(x, y);
    let n = pooled.len();
    let g = gram(&pooled, h);
    let observed = mmd2_from_gram(&g, n, &in_x);
    let mut null = Vec::with_capacity(permutations);
    let mut exceed = 0usize;
    for _ in 0..permutations {
        in_x.shuffle(rng);
        let v = mmd2_from_gram(&g, n, &in_x);
        if v >= observed {
            exceed += 1;
        }
        null.push(v);
    }
    let (null_mean, null_sd) = crate::stats::mean_std(&null);
    MmdResult {
        mmd2: observed,
        p_value: (1 + exceed) as f64 / (1 + permutations) as f64,
        null_mean,
        null_sd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn cloud(rng: &mut rand::rngs::StdRng, n: usize, d: usize, shift: f64) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                (0..d)
                    .map(|_| rng.random_range(-1.0..1.0) + shift)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn same_distribution_is_not_significant_and_shift_is() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let a = cloud(&mut rng, 120, 8, 0.0);
        let b = cloud(&mut rng, 120, 8, 0.0);
        let c = cloud(&mut rng, 120, 8, 0.4);
        let h = median_bandwidth(&a);
        let same = mmd_permutation_test(&a, &b, h, 200, &mut rng);
        let diff = mmd_permutation_test(&a, &c, h, 200, &mut rng);
        assert!(same.p_value > 0.01, "{same:?}");
        assert!(diff.p_value < 0.01 && diff.z() > 5.0, "{diff:?}");
        assert!((mmd2(&a, &c, h) - diff.mmd2).abs() < 1e-12);
    }

    #[test]
    fn bandwidth_of_degenerate_sample_is_one() {
        assert_eq!(median_bandwidth(&[vec![1.0, 1.0], vec![1.0, 1.0]]), 1.0);
        assert_eq!(median_bandwidth(&[]), 1.0);
    }
}
