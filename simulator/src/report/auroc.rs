//! Online AUROC: predictions against the readers' ground truth, cumulatively as reads complete.
//!
//! AUROC is the Mann–Whitney statistic (`cxrflow_common::stats::auroc`, the one implementation).

use std::collections::BTreeMap;

use serde::Serialize;

/// One read study with the production model's scores and the ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredStudy {
    /// When the read ended (the label became known).
    pub at_ms: i64,
    /// Any critical finding present; score = the highest critical finding probability.
    pub critical: (bool, f64),
    /// Per finding: (present, probability); uncertain labels are left out.
    pub findings: Vec<(String, bool, f64)>,
}

pub use cxrflow_common::stats::auroc;

/// The run's AUROC at its end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AurocReport {
    /// Studies with a production prediction and a completed read.
    pub n: usize,
    /// Any critical finding, scored by the highest critical probability.
    pub critical: Option<f64>,
    /// Mean over the findings with both classes present.
    pub macro_auroc: Option<f64>,
    pub per_finding: BTreeMap<String, f64>,
}

pub fn final_auroc(scored: &[ScoredStudy]) -> AurocReport {
    let critical: Vec<(f64, bool)> = scored
        .iter()
        .map(|s| (s.critical.1, s.critical.0))
        .collect();
    let mut by_finding: BTreeMap<&str, Vec<(f64, bool)>> = BTreeMap::new();
    for s in scored {
        for (f, y, p) in &s.findings {
            by_finding.entry(f.as_str()).or_default().push((*p, *y));
        }
    }
    let per_finding: BTreeMap<String, f64> = by_finding
        .into_iter()
        .filter_map(|(f, pairs)| auroc(&pairs).map(|a| (f.to_string(), a)))
        .collect();
    AurocReport {
        n: scored.len(),
        critical: auroc(&critical),
        macro_auroc: (!per_finding.is_empty())
            .then(|| per_finding.values().sum::<f64>() / per_finding.len() as f64),
        per_finding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_random_and_inverted() {
        let perfect = [(0.1, false), (0.2, false), (0.8, true), (0.9, true)];
        assert_eq!(auroc(&perfect), Some(1.0));
        let inverted: Vec<_> = perfect.iter().map(|(s, y)| (*s, !y)).collect();
        assert_eq!(auroc(&inverted), Some(0.0));
        let ties = [(0.5, false), (0.5, true)];
        assert_eq!(auroc(&ties), Some(0.5));
        assert_eq!(auroc(&[(0.3, true)]), None);
    }

    #[test]
    fn matches_the_pairwise_definition() {
        let pairs = [
            (0.3, true),
            (0.1, false),
            (0.4, false),
            (0.35, true),
            (0.8, true),
            (0.4, true),
            (0.2, false),
        ];
        let (mut wins, mut total) = (0.0, 0.0);
        for (sp, yp) in &pairs {
            for (sn, yn) in &pairs {
                if *yp && !*yn {
                    total += 1.0;
                    wins += if sp > sn {
                        1.0
                    } else if sp == sn {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        let a = auroc(&pairs).unwrap();
        assert!((a - wins / total).abs() < 1e-12, "{a} vs {}", wins / total);
    }
}
