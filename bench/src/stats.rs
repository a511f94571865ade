//! Summaries of latency samples and completion times: percentiles by the nearest-rank rule and
//! the steady-state rate of a run (its warm-up and tail left out).

use serde::Serialize;

/// The `q`-quantile (0..=1) of `sorted` by the nearest-rank rule; `None` when empty.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Count, mean and the percentiles a latency table needs, in the samples' unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let mean = (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        Summary {
            n: v.len(),
            mean,
            p50: percentile(&v, 0.50),
            p90: percentile(&v, 0.90),
            p99: percentile(&v, 0.99),
            max: v.last().copied(),
        }
    }
}

/// Completions per second between the 10th and the 90th percentile of the completion times
/// (milliseconds): the start-up ramp and the draining tail do not count. `None` with fewer
/// than 10 completions or a zero-length window.
pub fn steady_rate(completed_at_ms: &[f64]) -> Option<f64> {
    let mut t: Vec<f64> = completed_at_ms.to_vec();
    if t.len() < 10 {
        return None;
    }
    t.sort_by(f64::total_cmp);
    let lo = t.len() / 10;
    let hi = t.len() - 1 - t.len() / 10;
    let span_s = (t[hi] - t[lo]) / 1e3;
    (span_s > 0.0).then(|| (hi - lo) as f64 / span_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
    }

    #[test]
    fn summary_ignores_non_finite_samples() {
        let s = Summary::of(&[3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!(s.n, 3);
        assert_eq!(s.mean, Some(2.0));
        assert_eq!(s.p50, Some(2.0));
        assert_eq!(s.max, Some(3.0));
        assert_eq!(Summary::of(&[]).p99, None);
    }

    #[test]
    fn steady_rate_skips_ramp_and_tail() {
        // 100 completions 100 ms apart (10/s), then a straggler 60 s later.
        let mut t: Vec<f64> = (0..100).map(|i| f64::from(i) * 100.0).collect();
        t.push(70_000.0);
        let r = steady_rate(&t).unwrap();
        assert!((r - 10.0).abs() < 0.2, "{r}");
        assert_eq!(steady_rate(&[1.0, 2.0]), None);
    }
}
