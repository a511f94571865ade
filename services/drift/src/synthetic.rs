//! Synthetic-but-realistic chest X-ray traffic for the drift benchmark and the tests: sites
//! with their own demographics, modality and scanner, PA/AP views (portable AP for older and
//! sicker patients), CheXpert-like finding prevalences that depend on the view, model
//! probabilities that separate the classes imperfectly, 8-bit intensity statistics that depend
//! on site, view and scanner, and a 16-d embedding that is a fixed random projection of the
//! study's latent state (findings, view, intensity, site) plus noise. Each [`Scenario`] changes
//! the generating process at an onset, as the simulator's drift scenarios will.

use cxrflow_contracts::{
    FindingLabel, FindingScore, ImageStats, LabelState, LabeledExample, ModelRole, OrderPriority,
    Prediction, StudyContext, FINDINGS,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::observation::{LabeledObservation, Observation};

/// Embedding dimension of the synthetic model.
pub const EMBEDDING_DIM: usize = 16;
const LATENT: usize = FINDINGS.len() + 3 + 2 + 4 + 6;

/// A kind of drift injected at the onset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    NoDrift,
    /// Portable AP views become the majority (an ICU surge, a ward switching to portables).
    ApSwitch,
    /// A new scanner / processing: brighter and lower contrast.
    IntensityShift,
    /// A new site joins with older, mostly male patients on its own scanner.
    SiteDemographics,
    /// An outbreak: opacity, consolidation and pneumonia become far more common.
    PrevalenceRise,
    /// The frontal gate is bypassed: lateral views leak into the stream.
    LateralLeak,
    /// The model degrades (labels decouple from scores): performance channel only.
    PerformanceDrop,
}

impl Scenario {
    pub const BENCHMARK: [Scenario; 6] = [
        Scenario::NoDrift,
        Scenario::ApSwitch,
        Scenario::IntensityShift,
        Scenario::SiteDemographics,
        Scenario::PrevalenceRise,
        Scenario::LateralLeak,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::NoDrift => "no_drift",
            Scenario::ApSwitch => "ap_view_switch",
            Scenario::IntensityShift => "intensity_contrast_shift",
            Scenario::SiteDemographics => "site_demographics",
            Scenario::PrevalenceRise => "prevalence_rise",
            Scenario::LateralLeak => "lateral_views_leak",
            Scenario::PerformanceDrop => "performance_drop",
        }
    }
}

/// One generated study with everything every record needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticStudy {
    pub uid: String,
    pub at: i64,
    pub site: String,
    pub age: i32,
    pub sex: &'static str,
    pub modality: &'static str,
    pub view: &'static str,
    /// mean, std, p05, p50, p95 on the 8-bit scale.
    pub stats: [f64; 5],
    pub labels: [bool; 14],
    pub probabilities: [f64; 14],
    pub embedding: Vec<f32>,
}

const BASE_PREVALENCE: [f64; 14] = [
    0.0, 0.05, 0.12, 0.25, 0.04, 0.12, 0.07, 0.03, 0.15, 0.05, 0.20, 0.02, 0.03, 0.30,
];
/// Findings more common on portable AP films (sicker, supine, lines and tubes).
const AP_FACTOR: [f64; 14] = [
    1.0, 1.3, 1.2, 1.3, 1.0, 1.6, 1.3, 1.2, 1.3, 1.2, 1.5, 1.0, 1.0, 2.0,
];

/// Stream generator; deterministic for a seed.
pub struct StudyGenerator {
    rng: StdRng,
    projection: Vec<[f64; LATENT]>,
    scenario: Scenario,
    onset: usize,
    count: usize,
    start_ms: i64,
    /// Event-time spacing of studies.
    pub spacing_ms: i64,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl StudyGenerator {
    /// Traffic that follows `scenario` from study number `onset` on (never, for NoDrift).
    pub fn new(seed: u64, scenario: Scenario, onset: usize) -> Self {
        // The projection is the "model": fixed whatever the traffic seed.
        let mut prng = StdRng::seed_from_u64(0xC4E57);
        let n = Normal::new(0.0, 1.0 / (LATENT as f64).sqrt()).expect("valid normal");
        let projection = (0..EMBEDDING_DIM)
            .map(|_| std::array::from_fn(|_| n.sample(&mut prng)))
            .collect();
        StudyGenerator {
            rng: StdRng::seed_from_u64(seed),
            projection,
            scenario,
            onset,
            count: 0,
            start_ms: 1_700_000_000_000,
            spacing_ms: 60_000,
        }
    }

    /// Whether the drift is active for the next study.
    pub fn drifting(&self) -> bool {
        self.scenario != Scenario::NoDrift && self.count >= self.onset
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        Normal::new(mean, sd)
            .map(|n| n.sample(&mut self.rng))
            .unwrap_or(mean)
    }

    pub fn next_study(&mut self) -> SyntheticStudy {
        let drift = if self.drifting() {
            self.scenario
        } else {
            Scenario::NoDrift
        };
        let i = self.count;
        self.count += 1;
        let r: f64 = self.rng.random();
        let (site, site_idx) = if drift == Scenario::SiteDemographics && r < 0.4 {
            ("S4", 3)
        } else {
            let r: f64 = self.rng.random();
            if r < 0.5 {
                ("S1", 0)
            } else if r < 0.8 {
                ("S2", 1)
            } else {
                ("S3", 2)
            }
        };
        let (age_mean, age_sd, male) = match site_idx {
            0 => (60.0, 17.0, 0.55),
            1 => (55.0, 18.0, 0.5),
            2 => (50.0, 16.0, 0.48),
            _ => (74.0, 9.0, 0.72),
        };
        let age = self.normal(age_mean, age_sd).round().clamp(18.0, 95.0);
        let sex = if self.rng.random_bool(male) { "M" } else { "F" };
        let modality = match site_idx {
            0 | 3 => "DX",
            1 if self.rng.random_bool(0.7) => "DX",
            _ => "CR",
        };
        let p_ap = match drift {
            Scenario::ApSwitch => 0.75,
            _ => 0.25 + if age > 70.0 { 0.15 } else { 0.0 },
        };
        let view = if drift == Scenario::LateralLeak && self.rng.random_bool(0.12) {
            "LATERAL"
        } else if self.rng.random_bool(p_ap) {
            "AP"
        } else {
            "PA"
        };
        let mut labels = [false; 14];
        for f in 1..14 {
            let mut p = BASE_PREVALENCE[f] * (1.0 + (age - 55.0) / 100.0);
            if view == "AP" {
                p *= AP_FACTOR[f];
            }
            if drift == Scenario::PrevalenceRise {
                p *= match f {
                    3 => 1.8,
                    6 => 2.8,
                    7 => 4.0,
                    _ => 1.0,
                };
            }
            labels[f] = self.rng.random_bool(p.clamp(0.0, 0.95));
        }
        labels[0] = !labels[1..].iter().any(|x| *x);
        let mut probabilities = [0.0; 14];
        for f in 0..14 {
            let sep = if drift == Scenario::PerformanceDrop {
                0.6
            } else {
                2.6
            };
            let mut logit = -2.0 + sep * if labels[f] { 1.0 } else { 0.0 } + self.normal(0.0, 1.0);
            if view == "AP" && f != 0 {
                logit += 0.25;
            }
            if view == "LATERAL" {
                logit += self.normal(0.0, 0.8);
            }
            probabilities[f] = sigmoid(logit);
        }
        let site_offset = [0.0, -6.0, 5.0, 10.0][site_idx];
        let view_offset = match view {
            "AP" => -8.0,
            "LATERAL" => 15.0,
            _ => 0.0,
        };
        let (shift, contrast) = if drift == Scenario::IntensityShift {
            (9.0, 0.9)
        } else {
            (0.0, 1.0)
        };
        let mean = (self.normal(128.0 + site_offset + view_offset, 12.0) + shift).clamp(5.0, 250.0);
        let std_base =
            55.0 - if view == "AP" { 4.0 } else { 0.0 } - if view == "LATERAL" { 8.0 } else { 0.0 };
        let std = (self.normal(std_base, 6.0) * contrast).max(1.0);
        let p05 = (mean - 1.55 * std + self.normal(0.0, 4.0)).clamp(0.0, 255.0);
        let p50 = (mean + 3.0 + self.normal(0.0, 5.0)).clamp(0.0, 255.0);
        let p95 = (mean + 1.5 * std + self.normal(0.0, 4.0)).clamp(0.0, 255.0);
        let mut latent = [0.0; LATENT];
        for f in 0..14 {
            latent[f] = if labels[f] { 1.0 } else { 0.0 } + 0.3 * (probabilities[f] - 0.5);
        }
        let v = match view {
            "PA" => 14,
            "AP" => 15,
            _ => 16,
        };
        latent[v] = 1.5;
        latent[17] = (mean - 128.0) / 12.0;
        latent[18] = (std - 55.0) / 6.0;
        latent[19 + site_idx] = 0.7;
        for l in latent.iter_mut().skip(23) {
            *l = self.normal(0.0, 1.0);
        }
        let mut embedding = Vec::with_capacity(EMBEDDING_DIM);
        for k in 0..EMBEDDING_DIM {
            let dot: f64 = self.projection[k]
                .iter()
                .zip(&latent)
                .map(|(a, b)| a * b)
                .sum();
            embedding.push((dot + self.normal(0.0, 0.15)) as f32);
        }
        SyntheticStudy {
            uid: format!("1.2.826.0.1.3680043.10.{i}"),
            at: self.start_ms + i as i64 * self.spacing_ms,
            site: site.to_string(),
            age: age as i32,
            sex,
            modality,
            view,
            stats: [mean, std, p05, p50, p95],
            labels,
            probabilities,
            embedding,
        }
    }
}

impl SyntheticStudy {
    pub fn context(&self) -> StudyContext {
        StudyContext {
            site_id: self.site.clone(),
            study_instance_uid: self.uid.clone(),
            series_instance_uid: format!("{}.1", self.uid),
            sop_instance_uid: format!("{}.1.1", self.uid),
            accession_number: None,
            patient_ref: format!("p-{}", self.uid),
            modality: self.modality.to_string(),
            view_position: Some(self.view.to_string()),
            patient_age_years: Some(self.age),
            patient_sex: Some(self.sex.to_string()),
            acquired_at: self.at,
            published_at: self.at,
            priority_hint: OrderPriority::Routine,
        }
    }

    /// The image statistics preprocess computes and inference carries onto the prediction.
    pub fn image_stats(&self) -> ImageStats {
        let [mean, std, p05, p50, p95] = self.stats;
        ImageStats {
            mean,
            std,
            p01: p05 * 0.5,
            p05,
            p50,
            p95,
            p99: (p95 + 10.0).min(255.0),
            histogram: vec![1; 16],
            original_width: 2048,
            original_height: 2048,
            bits_stored: 12,
            photometric: "MONOCHROME2".into(),
        }
    }

    pub fn prediction(&self, model_name: &str, model_version: &str) -> Prediction {
        Prediction {
            study: self.context(),
            blob_uri: format!("file:///blobs/{}", self.uid),
            model_name: model_name.into(),
            model_version: model_version.into(),
            model_role: ModelRole::Production,
            execution_provider: "cpu".into(),
            assessable: true,
            findings: self.scores(),
            batch_size: 1,
            inference_ms: 10.0,
            predicted_at: self.at,
            embedding: Some(self.embedding.clone()),
            input_stats: Some(self.image_stats()),
            not_assessable_reason: None,
            not_assessable_code: None,
            ood_distance: None,
        }
    }

    fn scores(&self) -> Vec<FindingScore> {
        FINDINGS
            .iter()
            .zip(self.probabilities)
            .map(|(f, p)| FindingScore {
                finding: f.to_string(),
                probability: p,
                threshold: 0.5,
                critical: false,
                urgent: false,
            })
            .collect()
    }

    pub fn labeled(&self, model_name: &str, model_version: &str) -> LabeledExample {
        LabeledExample {
            study: self.context(),
            report_id: format!("r-{}", self.uid),
            reader_ref: "reader-1".into(),
            read_started_at: self.at,
            read_ended_at: self.at,
            model_name: model_name.into(),
            model_version: model_version.into(),
            model_role: ModelRole::Production,
            probabilities: self.scores(),
            labels: FINDINGS
                .iter()
                .zip(self.labels)
                .map(|(f, l)| FindingLabel {
                    finding: f.to_string(),
                    state: if l {
                        LabelState::Present
                    } else {
                        LabelState::Absent
                    },
                })
                .collect(),
            blob_uri: format!("file:///blobs/{}", self.uid),
            tier_at_read: None,
            labeled_at: self.at,
        }
    }

    /// The study as the detector sees it (what the service builds from its prediction).
    pub fn observation(&self) -> Observation {
        Observation::from_prediction(&self.prediction("m", "1")).0
    }

    pub fn labeled_observation(&self) -> LabeledObservation {
        LabeledObservation::from_labeled(&self.labeled("m", "1")).0
    }
}
