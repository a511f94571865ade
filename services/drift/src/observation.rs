//! One study as the detector sees it: the features of every channel, validated.
//!
//! Bad input never reaches a test: a missing statistic, a NaN, an unknown category or an
//! out-of-range age is left out of that feature (the rest of the study still counts) and
//! reported as an [`Exclusion`], which the service turns into a metric.

use cxrflow_contracts::{
    ImageStats, LabelState, LabeledExample, Prediction, StudyContext, FINDINGS,
};
use serde::{Deserialize, Serialize};

/// The drift channels, as named on alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    Input,
    Metadata,
    Output,
    Representation,
    Performance,
    Unified,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Input => "INPUT",
            Channel::Metadata => "METADATA",
            Channel::Output => "OUTPUT",
            Channel::Representation => "REPRESENTATION",
            Channel::Performance => "PERFORMANCE",
            Channel::Unified => "UNIFIED",
        }
    }
}

/// Image statistics tested as continuous features, in [`Observation::continuous`] order.
pub const STAT_FEATURES: [&str; 5] = [
    "stats.mean",
    "stats.std",
    "stats.p05",
    "stats.p50",
    "stats.p95",
];
/// Index of the age in [`Observation::continuous`].
pub const AGE_INDEX: usize = STAT_FEATURES.len();
/// Index of the first finding probability in [`Observation::continuous`] (then [`FINDINGS`] order).
pub const PROB_INDEX: usize = AGE_INDEX + 1;
/// Number of fixed continuous features.
pub const N_CONTINUOUS: usize = PROB_INDEX + FINDINGS.len();

/// Name and channel of fixed continuous feature `i`.
pub fn continuous_feature(i: usize) -> (String, Channel) {
    if i < AGE_INDEX {
        (STAT_FEATURES[i].to_string(), Channel::Input)
    } else if i == AGE_INDEX {
        ("age".to_string(), Channel::Metadata)
    } else {
        (format!("p.{}", FINDINGS[i - PROB_INDEX]), Channel::Output)
    }
}

/// Categorical metadata features, in [`Observation::categorical`] order.
pub const CATEGORICAL_FEATURES: [&str; 4] = ["view_position", "sex", "modality", "site"];

/// One study's features. `None` means absent or excluded.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Observation {
    pub study_uid: String,
    /// Event time (acquisition), ms since the epoch.
    pub at: i64,
    pub site: Option<String>,
    /// `N_CONTINUOUS` values: stats, age, finding probabilities.
    pub continuous: Vec<Option<f64>>,
    /// View position, sex, modality, site — normalised.
    pub categorical: [Option<String>; 4],
    pub embedding: Option<Vec<f64>>,
}

/// A feature value left out of the tests, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exclusion {
    pub feature: &'static str,
    pub reason: &'static str,
}

impl Exclusion {
    fn new(feature: &'static str, reason: &'static str) -> Self {
        Exclusion { feature, reason }
    }
}

/// Normalises a view position; `None` for a value outside the vocabulary.
pub fn normalise_view(v: &str) -> Option<String> {
    let v = v.trim().to_ascii_uppercase().replace(['_', '-'], " ");
    match v.as_str() {
        "PA" => Some("PA".into()),
        "AP" | "AP SUPINE" | "AP ERECT" | "AP PORTABLE" => Some("AP".into()),
        "LL" | "RL" | "LAT" | "LATERAL" | "LLD" | "RLD" => Some("LATERAL".into()),
        _ => None,
    }
}

fn normalise_sex(v: &str) -> Option<String> {
    match v.trim().to_ascii_uppercase().as_str() {
        "M" | "MALE" => Some("M".into()),
        "F" | "FEMALE" => Some("F".into()),
        "O" | "OTHER" => Some("O".into()),
        _ => None,
    }
}

fn normalise_modality(v: &str) -> Option<String> {
    match v.trim().to_ascii_uppercase().as_str() {
        m @ ("CR" | "DX" | "DR") => Some(m.to_string()),
        _ => None,
    }
}

fn categorical(
    value: Option<&str>,
    feature: &'static str,
    norm: fn(&str) -> Option<String>,
    ex: &mut Vec<Exclusion>,
) -> Option<String> {
    match value.map(str::trim) {
        None | Some("") => {
            ex.push(Exclusion::new(feature, "missing"));
            None
        }
        Some(v) => match norm(v) {
            Some(n) => Some(n),
            None => {
                ex.push(Exclusion::new(feature, "unknown_category"));
                None
            }
        },
    }
}

impl Observation {
    fn empty(study: &StudyContext) -> Self {
        Observation {
            study_uid: study.study_instance_uid.clone(),
            // Never after the study arrived: a modality clock running ahead would otherwise
            // date the detection window, and the alerts raised on it, in the future, and hold
            // back their re-emission (cooldown) until real time caught up.
            at: study.acquired_at.min(study.published_at),
            site: None,
            continuous: vec![None; N_CONTINUOUS],
            categorical: Default::default(),
            embedding: None,
        }
    }

    /// Metadata (age, view, sex, modality, site) from the study context.
    fn metadata(&mut self, study: &StudyContext, ex: &mut Vec<Exclusion>) {
        let site = study.site_id.trim();
        if site.is_empty() {
            ex.push(Exclusion::new("site", "missing"));
        } else {
            self.site = Some(site.to_string());
            self.categorical[3] = Some(site.to_string());
        }
        self.categorical[0] = categorical(
            study.view_position.as_deref(),
            "view_position",
            normalise_view,
            ex,
        );
        self.categorical[1] = categorical(study.patient_sex.as_deref(), "sex", normalise_sex, ex);
        self.categorical[2] = categorical(
            Some(study.modality.as_str()),
            "modality",
            normalise_modality,
            ex,
        );
        self.continuous[AGE_INDEX] = match study.patient_age_years {
            None => {
                ex.push(Exclusion::new("age", "missing"));
                None
            }
            Some(a) if (0..=120).contains(&a) => Some(a as f64),
            Some(_) => {
                ex.push(Exclusion::new("age", "out_of_range"));
                None
            }
        };
    }

    /// The image statistics (input channel). A prediction written before schema version 3
    /// carries none; an upstream stage that could not compute them fills the block with zeros
    /// and no histogram. Either way the statistics are excluded as missing.
    fn image_stats(&mut self, stats: Option<&ImageStats>, ex: &mut Vec<Exclusion>) {
        let values = stats
            .map(|s| (s, [s.mean, s.std, s.p05, s.p50, s.p95]))
            .filter(|(s, v)| !(s.histogram.is_empty() && v.iter().all(|v| *v == 0.0)))
            .map(|(_, v)| v);
        for i in 0..STAT_FEATURES.len() {
            self.continuous[i] = match values.map(|v| v[i]) {
                None => {
                    ex.push(Exclusion::new(STAT_FEATURES[i], "missing"));
                    None
                }
                Some(v) if !v.is_finite() || (i == 1 && v < 0.0) => {
                    ex.push(Exclusion::new(STAT_FEATURES[i], "non_finite"));
                    None
                }
                Some(v) => Some(v),
            };
        }
    }

    /// The features of one study, all from its prediction: image statistics (carried over
    /// from the preprocessed record), metadata, finding probabilities and embedding.
    pub fn from_prediction(p: &Prediction) -> (Self, Vec<Exclusion>) {
        let mut ex = Vec::new();
        let mut o = Observation::empty(&p.study);
        o.metadata(&p.study, &mut ex);
        o.image_stats(p.input_stats.as_ref(), &mut ex);
        for f in &p.findings {
            match FINDINGS.iter().position(|n| *n == f.finding) {
                None => ex.push(Exclusion::new("probability", "unknown_finding")),
                Some(i) if f.probability.is_finite() && (0.0..=1.0).contains(&f.probability) => {
                    o.continuous[PROB_INDEX + i] = Some(f.probability)
                }
                Some(_) => ex.push(Exclusion::new("probability", "non_finite")),
            }
        }
        if let Some(e) = &p.embedding {
            if !e.is_empty() && e.iter().all(|v| v.is_finite()) {
                o.embedding = Some(e.iter().map(|v| *v as f64).collect());
            } else {
                ex.push(Exclusion::new("embedding", "non_finite"));
            }
        }
        (o, ex)
    }
}

/// One labeled study for the performance channel: the probability and the binary label of each
/// finding that was read as present or absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabeledObservation {
    pub study_uid: String,
    pub at: i64,
    /// Per finding (in [`FINDINGS`] order): `(probability, present)` where both are usable.
    pub findings: Vec<Option<(f64, bool)>>,
}

impl LabeledObservation {
    pub fn from_labeled(l: &LabeledExample) -> (Self, Vec<Exclusion>) {
        let mut ex = Vec::new();
        let mut findings = vec![None; FINDINGS.len()];
        for (i, name) in FINDINGS.iter().enumerate() {
            let label = l
                .labels
                .iter()
                .find(|x| x.finding == *name)
                .map(|x| x.state);
            let prob = l
                .probabilities
                .iter()
                .find(|x| x.finding == *name)
                .map(|x| x.probability);
            let present = match label {
                Some(LabelState::Present) => true,
                Some(LabelState::Absent) => false,
                // Uncertain or not assessed: no ground truth for this finding.
                _ => continue,
            };
            match prob {
                Some(p) if p.is_finite() && (0.0..=1.0).contains(&p) => {
                    findings[i] = Some((p, present))
                }
                Some(_) => ex.push(Exclusion::new("label_probability", "non_finite")),
                None => ex.push(Exclusion::new("label_probability", "missing")),
            }
        }
        for x in &l.labels {
            if !FINDINGS.contains(&x.finding.as_str()) {
                ex.push(Exclusion::new("label", "unknown_finding"));
            }
        }
        (
            LabeledObservation {
                study_uid: l.study.study_instance_uid.clone(),
                at: l.labeled_at,
                findings,
            },
            ex,
        )
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    /// A study from a modality whose clock runs a day ahead is dated at its arrival.
    #[test]
    fn an_observation_is_never_dated_after_its_arrival() {
        use cxrflow_testkit::records::{prediction, study};
        let arrived = 1_700_000_000_000;
        let ahead = prediction(StudyContext {
            acquired_at: arrived + 20 * 3_600_000,
            published_at: arrived,
            ..study("ahead")
        });
        assert_eq!(Observation::from_prediction(&ahead).0.at, arrived);
        let on_time = prediction(StudyContext {
            acquired_at: arrived - 60_000,
            published_at: arrived,
            ..study("on-time")
        });
        assert_eq!(
            Observation::from_prediction(&on_time).0.at,
            arrived - 60_000
        );
    }
}
