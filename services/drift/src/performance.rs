//! Performance drift from ground truth: per finding, the AUROC of a rolling window of labeled
//! studies against the AUROC of the reference (the first labeled studies of the model version),
//! with a bootstrap confidence interval of the difference, so a small window does not alarm.
//!
//! The interval is the normal bootstrap interval `Δ ± z·se*` (both samples resampled
//! independently), Bonferroni-corrected over the findings tested; an alert needs the interval
//! to lie entirely below zero (the window is worse than the reference).

use std::collections::{BTreeMap, VecDeque};

use cxrflow_contracts::{RecommendedAction, FINDINGS};
use rand::rngs::StdRng;
use rand::Rng;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::alerting::SignalReading;
use crate::observation::{Channel, LabeledObservation};
use crate::stats::{auroc, mean_std, strength};

/// Settings of the performance channel.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceConfig {
    pub reference_size: usize,
    pub window_size: usize,
    pub stride: usize,
    pub bootstrap: usize,
    /// Fewest positives and negatives a finding needs on each side to be tested.
    pub min_class: usize,
    /// Family-wise level at which the interval must exclude zero to raise.
    pub alpha_raise: f64,
    /// Level above which a raised alert resolves.
    pub alpha_resolve: f64,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            reference_size: 500,
            window_size: 300,
            stride: 50,
            bootstrap: 200,
            min_class: 10,
            alpha_raise: 0.01,
            alpha_resolve: 0.2,
        }
    }
}

/// One finding's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct AurocComparison {
    pub finding: &'static str,
    pub reference: f64,
    pub window: f64,
    pub delta: f64,
    pub se: f64,
    /// Bonferroni-corrected one-sided p-value of "window worse than reference".
    pub p_adjusted: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Rolling performance of one model version.
#[derive(Debug, Clone)]
pub struct PerformanceTracker {
    cfg: PerformanceConfig,
    pub reference: Vec<LabeledObservation>,
    pub window: VecDeque<LabeledObservation>,
    since_eval: usize,
}

fn pairs<'a>(obs: impl Iterator<Item = &'a LabeledObservation>, i: usize) -> (Vec<f64>, Vec<bool>) {
    obs.filter_map(|o| o.findings.get(i).copied().flatten())
        .unzip()
}

fn resampled_auroc(s: &[f64], l: &[bool], rng: &mut StdRng) -> Option<f64> {
    let n = s.len();
    let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
    let s2: Vec<f64> = idx.iter().map(|&i| s[i]).collect();
    let l2: Vec<bool> = idx.iter().map(|&i| l[i]).collect();
    auroc(&s2, &l2)
}

impl PerformanceTracker {
    pub fn new(cfg: PerformanceConfig) -> Self {
        PerformanceTracker {
            cfg,
            reference: Vec::new(),
            window: VecDeque::new(),
            since_eval: 0,
        }
    }

    /// Adds a labeled study; returns the readings when an evaluation is due.
    pub fn observe(
        &mut self,
        o: LabeledObservation,
        rng: &mut StdRng,
    ) -> Option<(Vec<AurocComparison>, SignalReading)> {
        if self.reference.len() < self.cfg.reference_size {
            self.reference.push(o);
            return None;
        }
        self.window.push_back(o);
        while self.window.len() > self.cfg.window_size {
            self.window.pop_front();
        }
        self.since_eval += 1;
        if self.window.len() < self.cfg.window_size || self.since_eval < self.cfg.stride {
            return None;
        }
        self.since_eval = 0;
        let cmp = self.compare(rng);
        let reading = self.reading(&cmp)?;
        Some((cmp, reading))
    }

    /// Compares every testable finding of the window with the reference.
    pub fn compare(&self, rng: &mut StdRng) -> Vec<AurocComparison> {
        let mut raw = Vec::new();
        for (i, finding) in FINDINGS.iter().enumerate() {
            let (rs, rl) = pairs(self.reference.iter(), i);
            let (ws, wl) = pairs(self.window.iter(), i);
            let enough = |l: &[bool]| {
                let pos = l.iter().filter(|x| **x).count();
                pos >= self.cfg.min_class && l.len() - pos >= self.cfg.min_class
            };
            if !enough(&rl) || !enough(&wl) {
                continue;
            }
            let (Some(ra), Some(wa)) = (auroc(&rs, &rl), auroc(&ws, &wl)) else {
                continue;
            };
            let deltas: Vec<f64> = (0..self.cfg.bootstrap)
                .filter_map(|_| {
                    Some(resampled_auroc(&ws, &wl, rng)? - resampled_auroc(&rs, &rl, rng)?)
                })
                .collect();
            let (_, se) = mean_std(&deltas);
            raw.push((*finding, ra, wa, se));
        }
        let k = raw.len().max(1) as f64;
        let normal = Normal::standard();
        let z = normal.inverse_cdf(1.0 - self.cfg.alpha_raise / (2.0 * k));
        raw.into_iter()
            .map(|(finding, ra, wa, se)| {
                let delta = wa - ra;
                let p = if se > 0.0 {
                    normal.cdf(delta / se)
                } else if delta < 0.0 {
                    0.0
                } else {
                    1.0
                };
                AurocComparison {
                    finding,
                    reference: ra,
                    window: wa,
                    delta,
                    se,
                    p_adjusted: (p * k).min(1.0),
                    ci_low: delta - z * se,
                    ci_high: delta + z * se,
                }
            })
            .collect()
    }

    fn reading(&self, cmp: &[AurocComparison]) -> Option<SignalReading> {
        let worst = cmp
            .iter()
            .min_by(|a, b| a.p_adjusted.total_cmp(&b.p_adjusted))?;
        let mut details = BTreeMap::new();
        details.insert("reference_auroc".into(), format!("{:.4}", worst.reference));
        details.insert("window_auroc".into(), format!("{:.4}", worst.window));
        details.insert("ci_low".into(), format!("{:.4}", worst.ci_low));
        details.insert("ci_high".into(), format!("{:.4}", worst.ci_high));
        details.insert("ci_level".into(), format!("{}", 1.0 - self.cfg.alpha_raise));
        details.insert("findings_tested".into(), cmp.len().to_string());
        let degraded: Vec<&str> = cmp
            .iter()
            .filter(|c| c.p_adjusted < self.cfg.alpha_raise)
            .map(|c| c.finding)
            .collect();
        details.insert("degraded_findings".into(), degraded.join(","));
        Some(SignalReading {
            channel: Channel::Performance,
            test: "AUROC",
            signal: format!("auroc.{}", worst.finding),
            statistic: "AUROC_DELTA".into(),
            value: worst.delta,
            p_value: Some(worst.p_adjusted),
            threshold: worst.reference,
            strength: strength(worst.p_adjusted),
            raise_at: strength(self.cfg.alpha_raise),
            resolve_at: strength(self.cfg.alpha_resolve),
            action: RecommendedAction::Retrain,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Labeled studies whose "Edema" score separates classes with `signal` strength.
    fn labeled(rng: &mut StdRng, n: usize, signal: f64) -> Vec<LabeledObservation> {
        (0..n)
            .map(|i| {
                let present = rng.random_bool(0.3);
                let p = (rng.random_range(0.0..1.0) + if present { signal } else { 0.0 })
                    / (1.0 + signal);
                let mut findings = vec![None; FINDINGS.len()];
                findings[5] = Some((p, present));
                LabeledObservation {
                    study_uid: format!("s{i}"),
                    at: i as i64,
                    findings,
                }
            })
            .collect()
    }

    fn run(signal_after: f64) -> Vec<SignalReading> {
        let mut rng = StdRng::seed_from_u64(11);
        let mut t = PerformanceTracker::new(PerformanceConfig::default());
        let mut out = Vec::new();
        let mut stream = labeled(&mut rng, 500, 0.8);
        stream.extend(labeled(&mut rng, 600, signal_after));
        for o in stream {
            if let Some((_, r)) = t.observe(o, &mut rng) {
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn stable_performance_stays_quiet_and_a_drop_fires() {
        let stable = run(0.8);
        assert!(!stable.is_empty());
        assert!(stable.iter().all(|r| r.strength < r.raise_at), "{stable:?}");
        let dropped = run(0.1);
        assert!(dropped
            .iter()
            .any(|r| r.strength >= r.raise_at && r.value < 0.0));
    }
}
