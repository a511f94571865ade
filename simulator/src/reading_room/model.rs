//! Where the studies' ground truth and model scores come from: a synthetic pool with a stated
//! AUROC (binormal, equal variance), or an oracle whose score is the ground truth. Each pool
//! study becomes a `cxr.predictions.v1` [`Prediction`] that triage's own policy tiers.
//!
//! A pool of real predictions joined to their labels is [`super::pool`]'s.

use std::sync::Arc;

use cxrflow_contracts::{FindingScore, ModelRole, OrderPriority, Prediction, StudyContext};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::profile::Arrival;

/// The finding the synthetic model reports: any critical finding (the replay's critical set).
pub const CRITICAL_FINDING: &str = "Critical finding (any)";
/// The synthetic model's operating threshold on its probability.
pub const THRESHOLD: f64 = 0.5;

/// How pool studies are scored.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScoreModel {
    /// Score = ground truth.
    Oracle,
    /// Scores of critical studies ~ N(d', 1), of the rest ~ N(0, 1), with
    /// d' = √2·Φ⁻¹(auroc); thresholded at d'/2 (sensitivity = specificity = Φ(d'/2)).
    Binormal { auroc: f64 },
}

/// One study of the pool: its ground truth and its model probability (for a real prediction,
/// its critical findings' highest exceedance, 0.5 at the threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStudy {
    pub critical: bool,
    pub probability: f64,
    /// The real prediction the study came with, whose findings triage then tiers; none for a
    /// synthetic study (one critical finding with `probability`).
    pub prediction: Option<Arc<Prediction>>,
}

/// Φ⁻¹, the standard normal quantile (statrs).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(p)
}

/// A pool of `n` studies, a `prevalence` share of them critical, scored by `model`.
pub fn synthetic_pool(n: usize, prevalence: f64, model: ScoreModel, seed: u64) -> Vec<PoolStudy> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5c0e_5000);
    // Exactly round(n·prevalence) critical studies, spread evenly, so small pools keep the share.
    let k = (n as f64 * prevalence.clamp(0.0, 1.0)).round() as usize;
    (0..n)
        .map(|i| {
            let critical = (i * k) / n.max(1) != ((i + 1) * k) / n.max(1);
            let probability = match model {
                ScoreModel::Oracle => f64::from(u8::from(critical)),
                ScoreModel::Binormal { auroc } => {
                    let d = std::f64::consts::SQRT_2 * inverse_normal_cdf(auroc.clamp(0.5, 0.999));
                    let z: f64 = StandardNormal.sample(&mut rng);
                    let x = z + if critical { d } else { 0.0 } - d / 2.0;
                    // Logistic of a monotone transform: AUROC unchanged, THRESHOLD at x = 0.
                    1.0 / (1.0 + (-1.7 * x).exp())
                }
            };
            PoolStudy {
                critical,
                probability,
                prediction: None,
            }
        })
        .collect()
}

/// The empirical AUROC of a pool (Mann–Whitney; ties count half): the report's own.
pub fn empirical_auroc(pool: &[PoolStudy]) -> Option<f64> {
    let pairs: Vec<(f64, bool)> = pool.iter().map(|s| (s.probability, s.critical)).collect();
    crate::report::auroc::auroc(&pairs)
}

/// The study UID of an arrival (unique per arrival, even when it shows a pool study again).
pub fn study_uid(a: &Arrival) -> String {
    format!("2.25.{}.{:08}", a.site, a.id)
}

/// The prediction an arrival gets: the pool study's probability for the critical finding,
/// made at acquisition (the pipeline's seconds of latency are below this clock's resolution
/// of interest). `assessable = false` hands the study to the order-priority path of triage's
/// policy (what a worklist without AI does); `hint` is the order priority the worklist sees.
pub fn prediction(
    a: &Arrival,
    site: &str,
    study: &PoolStudy,
    assessable: bool,
    hint: OrderPriority,
) -> Prediction {
    let uid = study_uid(a);
    let context = StudyContext {
        site_id: site.to_string(),
        series_instance_uid: format!("{uid}.1"),
        sop_instance_uid: format!("{uid}.1.1"),
        study_instance_uid: uid,
        accession_number: None,
        patient_ref: format!("pt-{}", a.study),
        modality: "CR".into(),
        view_position: Some("AP".into()),
        patient_age_years: None,
        patient_sex: None,
        acquired_at: a.at,
        published_at: a.arrives_at,
        priority_hint: hint,
    };
    let no_ai = |p: &mut Prediction| {
        if !assessable {
            p.assessable = false;
            p.not_assessable_reason = Some("policy without AI".to_string());
            p.not_assessable_code = Some("sim.no_ai".to_string());
        }
    };
    if let Some(real) = &study.prediction {
        // The real record's findings, flags and model, on this arrival's clock and site.
        let mut p = Prediction::clone(real);
        p.study = context;
        p.model_role = ModelRole::Production;
        p.predicted_at = a.arrives_at;
        no_ai(&mut p);
        return p;
    }
    let mut p = Prediction {
        study: context,
        blob_uri: String::new(),
        model_name: "reading-room-synthetic".into(),
        model_version: "1".into(),
        model_role: ModelRole::Production,
        execution_provider: "none".into(),
        assessable,
        findings: vec![FindingScore {
            finding: CRITICAL_FINDING.into(),
            probability: study.probability,
            threshold: THRESHOLD,
            critical: true,
            urgent: false,
        }],
        batch_size: 1,
        inference_ms: 0.0,
        predicted_at: a.arrives_at,
        embedding: None,
        input_stats: None,
        not_assessable_reason: None,
        not_assessable_code: None,
        ood_distance: None,
    };
    no_ai(&mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_cdf_matches_known_quantiles() {
        assert!(inverse_normal_cdf(0.5).abs() < 1e-9);
        assert!((inverse_normal_cdf(0.975) - 1.959964).abs() < 1e-5);
        assert!((inverse_normal_cdf(0.01) + 2.326348).abs() < 1e-5);
    }

    #[test]
    fn the_pool_has_the_stated_auroc_and_prevalence() {
        let pool = synthetic_pool(20_000, 0.15, ScoreModel::Binormal { auroc: 0.85 }, 3);
        let pos = pool.iter().filter(|s| s.critical).count();
        assert_eq!(pos, 3000);
        let auc = empirical_auroc(&pool).unwrap();
        assert!((auc - 0.85).abs() < 0.015, "{auc}");
        let oracle = synthetic_pool(100, 0.2, ScoreModel::Oracle, 3);
        assert_eq!(empirical_auroc(&oracle), Some(1.0));
    }
}
