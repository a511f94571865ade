//! The two-sample tests and their helpers, pure functions over slices.
//!
//! - Kolmogorov–Smirnov: the statistic `D` is computed exactly (a merge over the two sorted
//!   samples, ties handled); `statrs` 0.18 has no Kolmogorov distribution, so the p-value is
//!   the asymptotic series `Q(λ) = 2 Σ_{k≥1} (-1)^{k-1} exp(-2 k² λ²)` with the effective sample
//!   size `n_e = n m / (n + m)` and Stephens' small-sample correction
//!   `λ = (√n_e + 0.12 + 0.11/√n_e) · D` (Numerical Recipes §14.3). It is conservative with
//!   ties (integer ages), which only makes the detector quieter.
//! - Chi-squared test of homogeneity on a 2×k table (reference vs window counts), p-value from
//!   `statrs::distribution::ChiSquared`. Categories too rare for the χ² approximation are
//!   pooled first (Cochran's rule).
//! - Benjamini–Hochberg adjusted p-values across the tests of one evaluation.
//! - AUROC (Mann–Whitney, ties counted half).

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Smallest p-value reported: keeps `-log10(p)` finite.
pub const P_FLOOR: f64 = 1e-300;

/// Result of a two-sample test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
}

/// The exact two-sample KS statistic of two **sorted** samples (NaN-free).
pub fn ks_statistic_sorted(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        // Step past every value equal to the smaller head in both samples, so ties move both
        // empirical CDFs together before the gap is measured.
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    d
}

/// The Kolmogorov survival function `Q(λ) = P(K > λ)` by its alternating series.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if !lambda.is_finite() || lambda <= 0.0 {
        return 1.0;
    }
    // Below ~0.27 the series converges too slowly to be useful and Q(λ) > 0.999999.
    if lambda < 0.27 {
        return 1.0;
    }
    let a2 = -2.0 * lambda * lambda;
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let kf = k as f64;
        let term = sign * 2.0 * (a2 * kf * kf).exp();
        sum += term;
        if term.abs() <= 1e-16 * sum.abs() || term.abs() < 1e-300 {
            break;
        }
        sign = -sign;
    }
    sum.clamp(P_FLOOR, 1.0)
}

/// Two-sample KS test of two **sorted** samples.
pub fn ks_test_sorted(a: &[f64], b: &[f64]) -> TestResult {
    let d = ks_statistic_sorted(a, b);
    if a.is_empty() || b.is_empty() {
        return TestResult {
            statistic: d,
            p_value: 1.0,
        };
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let ne = n * m / (n + m);
    let sq = ne.sqrt();
    let lambda = (sq + 0.12 + 0.11 / sq) * d;
    TestResult {
        statistic: d,
        p_value: kolmogorov_sf(lambda),
    }
}

/// Two-sample KS test; sorts copies of the samples. NaNs must have been excluded.
pub fn ks_test(a: &[f64], b: &[f64]) -> TestResult {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    ks_test_sorted(&a, &b)
}

/// Chi-squared test of homogeneity for two rows of category counts (same category order).
/// Categories with a combined count below `min_expected_total` are pooled into one bin; a table
/// with fewer than two non-empty columns has nothing to compare (p = 1).
pub fn chi2_homogeneity(reference: &[u64], window: &[u64], min_total: u64) -> TestResult {
    let none = TestResult {
        statistic: 0.0,
        p_value: 1.0,
    };
    let mut cols: Vec<(f64, f64)> = Vec::new();
    let (mut rare_r, mut rare_w) = (0u64, 0u64);
    for (&r, &w) in reference.iter().zip(window) {
        if r + w == 0 {
            continue;
        }
        if r + w < min_total {
            rare_r += r;
            rare_w += w;
        } else {
            cols.push((r as f64, w as f64));
        }
    }
    if rare_r + rare_w > 0 {
        cols.push((rare_r as f64, rare_w as f64));
    }
    let nr: f64 = cols.iter().map(|c| c.0).sum();
    let nw: f64 = cols.iter().map(|c| c.1).sum();
    if cols.len() < 2 || nr == 0.0 || nw == 0.0 {
        return none;
    }
    let n = nr + nw;
    let mut stat = 0.0;
    for (r, w) in &cols {
        let total = r + w;
        let er = nr * total / n;
        let ew = nw * total / n;
        stat += (r - er).powi(2) / er + (w - ew).powi(2) / ew;
    }
    let df = (cols.len() - 1) as f64;
    let p = ChiSquared::new(df).map(|c| c.sf(stat)).unwrap_or(1.0);
    TestResult {
        statistic: stat,
        p_value: if p.is_finite() {
            p.clamp(P_FLOOR, 1.0)
        } else {
            1.0
        },
    }
}

/// Benjamini–Hochberg adjusted p-values (step-up, monotone), in the input order.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut idx: Vec<usize> = (0..m).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adj = vec![1.0; m];
    let mut running: f64 = 1.0;
    for (rank, &i) in idx.iter().enumerate().rev() {
        let v = (p[i] * m as f64 / (rank + 1) as f64).min(1.0);
        running = running.min(v);
        adj[i] = running.max(P_FLOOR);
    }
    adj
}

/// Area under the ROC curve of `scores` for binary `labels`: the one implementation
/// (`cxrflow_common::stats::auroc`). `None` when either class is empty.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    cxrflow_common::stats::auroc(&pairs)
}

/// Mean and (sample) standard deviation.
pub fn mean_std(x: &[f64]) -> (f64, f64) {
    if x.is_empty() {
        return (0.0, 0.0);
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    if x.len() < 2 {
        return (mean, 0.0);
    }
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The `q`-quantile of a **sorted** sample (linear interpolation).
pub fn quantile_sorted(x: &[f64], q: f64) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (x.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    x[lo] + (x[hi] - x[lo]) * (pos - lo as f64)
}

/// `-log10(p)`, the "strength" the alert state machine compares against its thresholds.
pub fn strength(p: f64) -> f64 {
    -p.max(P_FLOOR).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn normal_sample(rng: &mut rand::rngs::StdRng, n: usize, shift: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                // Box–Muller keeps the test free of extra dependencies.
                let u1: f64 = rng.random_range(1e-12..1.0);
                let u2: f64 = rng.random();
                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() + shift
            })
            .collect()
    }

    #[test]
    fn kolmogorov_matches_known_values() {
        // Q(λ) tabulated: Q(1.36) ≈ 0.0494, Q(1.63) ≈ 0.0098, Q(0.5) ≈ 0.9639.
        assert!(
            (kolmogorov_sf(1.36) - 0.0494).abs() < 5e-4,
            "{}",
            kolmogorov_sf(1.36)
        );
        assert!(
            (kolmogorov_sf(1.63) - 0.0098).abs() < 3e-4,
            "{}",
            kolmogorov_sf(1.63)
        );
        assert!(
            (kolmogorov_sf(0.5) - 0.9639).abs() < 5e-4,
            "{}",
            kolmogorov_sf(0.5)
        );
        assert_eq!(kolmogorov_sf(0.0), 1.0);
    }

    #[test]
    fn ks_identical_samples_give_p_one() {
        let a: Vec<f64> = (0..300).map(|i| i as f64 * 0.37).collect();
        let r = ks_test(&a, &a);
        assert_eq!(r.statistic, 0.0);
        assert!(r.p_value > 0.999);
    }

    #[test]
    fn ks_statistic_is_exact_on_a_small_case() {
        // a = {1,2,3}, b = {2.5, 4}: F_a(2)=2/3 vs F_b(2)=0 → D = 2/3.
        let r = ks_test(&[1.0, 2.0, 3.0], &[2.5, 4.0]);
        assert!((r.statistic - 2.0 / 3.0).abs() < 1e-12);
        // Disjoint samples: D = 1.
        assert_eq!(ks_statistic_sorted(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        // Ties across samples move together: identical multisets give 0.
        assert!((ks_statistic_sorted(&[1.0, 1.0, 2.0], &[1.0, 2.0]) - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn ks_detects_a_clear_shift_and_not_noise() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = normal_sample(&mut rng, 500, 0.0);
        let b = normal_sample(&mut rng, 300, 0.0);
        let c = normal_sample(&mut rng, 300, 1.0);
        assert!(ks_test(&a, &b).p_value > 0.01);
        assert!(ks_test(&a, &c).p_value < 1e-12);
    }

    #[test]
    fn chi2_known_value() {
        // 2×2 table [[10, 20], [20, 10]]: χ² = 6.667 (no continuity correction), df 1, p ≈ 0.00982.
        let r = chi2_homogeneity(&[10, 20], &[20, 10], 5);
        assert!((r.statistic - 20.0 / 3.0).abs() < 1e-9, "{}", r.statistic);
        assert!((r.p_value - 0.009823).abs() < 1e-4, "{}", r.p_value);
        let same = chi2_homogeneity(&[50, 30, 20], &[50, 30, 20], 5);
        assert!(same.statistic.abs() < 1e-12 && (same.p_value - 1.0).abs() < 1e-12);
        let shifted = chi2_homogeneity(&[350, 150], &[90, 210], 5);
        assert!(shifted.p_value < 1e-20);
        // Only one column: nothing to test.
        assert_eq!(chi2_homogeneity(&[5, 0], &[7, 0], 5).p_value, 1.0);
    }

    #[test]
    fn bh_known_values() {
        // Sorted p: .01 .03 .04 .5 → raw m·p/rank: .04 .06 .0533 .5 → step-up: .04 .0533 .0533 .5
        let adj = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5]);
        assert!((adj[0] - 0.04).abs() < 1e-12);
        assert!((adj[2] - 0.04 * 4.0 / 3.0).abs() < 1e-12);
        assert!((adj[1] - 0.04 * 4.0 / 3.0).abs() < 1e-12);
        assert!((adj[3] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn auroc_known_values() {
        assert_eq!(
            auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            auroc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        assert_eq!(auroc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(auroc(&[0.5, 0.6], &[true, true]), None);
    }

    proptest! {
        #[test]
        fn ks_is_symmetric_and_bounded(a in prop::collection::vec(-1e3f64..1e3, 1..60), b in prop::collection::vec(-1e3f64..1e3, 1..60)) {
            let ab = ks_test(&a, &b);
            let ba = ks_test(&b, &a);
            prop_assert!((ab.statistic - ba.statistic).abs() < 1e-12);
            prop_assert!((0.0..=1.0).contains(&ab.statistic));
            prop_assert!((0.0..=1.0).contains(&ab.p_value));
            prop_assert!(ks_test(&a, &a).statistic == 0.0);
        }

        #[test]
        fn bh_is_at_least_p_and_at_most_one(p in prop::collection::vec(0.0f64..1.0, 1..40)) {
            let adj = benjamini_hochberg(&p);
            for (a, q) in adj.iter().zip(&p) {
                prop_assert!(*a >= *q - 1e-15 && *a <= 1.0);
            }
        }

        #[test]
        fn chi2_p_in_unit_interval(r in prop::collection::vec(0u64..200, 1..8), w in prop::collection::vec(0u64..200, 1..8)) {
            let t = chi2_homogeneity(&r, &w, 5);
            prop_assert!(t.statistic >= 0.0);
            prop_assert!((0.0..=1.0).contains(&t.p_value));
        }
    }
}
