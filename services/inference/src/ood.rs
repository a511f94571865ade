//! The out-of-distribution gate: before a score is trusted, the image must look like what the
//! model was trained on. An image is described by its preprocessed statistics (intensity
//! moments, percentiles, the 32-bin histogram) and the model's own pooled embedding; the
//! reference is the mean and spread of those features over the validation split, and the
//! distance is the root-mean-square of the standardized differences (a diagonal Mahalanobis
//! distance per feature). The threshold is a high percentile of the validation images' own
//! distances, stored in the model manifest by `cxrflow model calibrate-ood`, so a site can
//! recalibrate on its own validation data. Above it, the prediction is published not
//! assessable ("image unlike the model's training data"); its scores stay on the record for
//! audit but are never used for ranking.

use cxrflow_contracts::ImageStats;
use serde::{Deserialize, Serialize};
use statrs::statistics::{Data, OrderStatistics, Statistics};

/// The method this module implements (stored in the manifest; another value is refused).
pub const METHOD: &str = "standardized-rms/v1";

/// The smallest spread a feature is divided by: a feature that never varied on the validation
/// split (an always-empty histogram bin) would otherwise make any change infinitely far.
pub const MIN_SCALE: f64 = 0.01;

/// The code and the words a refusal carries.
pub const CODE: &str = "ood.distance";

/// The code of a film with no view position that looks lateral (the lateral reference).
pub const LATERAL_CODE: &str = "ood.lateral";

/// The code of an image the gate cannot judge: its features are not the reference's (no
/// statistics, a non-finite embedding, another embedding size). Refused, not scored unjudged.
pub const UNJUDGED_CODE: &str = "ood.no_features";

/// The fewest images a reference (frontal or lateral) is fitted on.
pub const MIN_IMAGES: usize = 20;

/// The names of the features, in order, for an embedding of `embedding_dims` (0: none).
pub fn feature_names(embedding_dims: usize) -> Vec<String> {
    let mut v: Vec<String> = ["mean", "std", "p01", "p05", "p50", "p95", "p99"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend((0..32).map(|i| format!("hist{i:02}")));
    v.extend((0..embedding_dims).map(|i| format!("emb{i:02}")));
    v
}

/// The feature vector of one image: statistics, histogram fractions, embedding. `None` when the
/// statistics carry no 32-bin histogram (an image refused before decoding).
pub fn features(stats: &ImageStats, embedding: Option<&[f32]>) -> Option<Vec<f64>> {
    if stats.histogram.len() != 32 {
        return None;
    }
    let total: i64 = stats.histogram.iter().sum();
    if total <= 0 {
        return None;
    }
    let mut v = vec![
        stats.mean, stats.std, stats.p01, stats.p05, stats.p50, stats.p95, stats.p99,
    ];
    v.extend(stats.histogram.iter().map(|&c| c as f64 / total as f64));
    if let Some(e) = embedding {
        v.extend(e.iter().map(|&x| f64::from(x)));
    }
    v.iter().all(|x| x.is_finite()).then_some(v)
}

/// The training reference, as the manifest stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OodReference {
    pub method: String,
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Distances above this are out of distribution.
    pub threshold: f64,
    /// The percentile of the calibration images' distances the threshold was set at.
    pub percentile: f64,
    /// What it was calibrated on (dataset split) and how many images.
    pub calibrated_on: String,
    pub images: usize,
    /// The lateral reference: what tells a lateral film from a frontal one when nothing names
    /// its view. Absent in manifests calibrated before it (then such a film is scored as
    /// frontal, as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateral: Option<LateralReference>,
}

/// The same features' mean and spread over a split's lateral images. A film whose view
/// nothing names is lateral-looking when its distance to this reference is below `limit` times
/// its distance to the frontal one. The limit is the `percentile`-th lowest of the frontal
/// calibration images' own ratios, so about that share of frontal films without a view is
/// refused with the laterals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateralReference {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub limit: f64,
    pub percentile: f64,
    pub images: usize,
}

impl LateralReference {
    /// An image's distance to this reference over `to_frontal`, its distance to the frontal one
    /// (`None` for another feature set, or an image exactly at the frontal mean).
    pub fn ratio(&self, x: &[f64], to_frontal: f64) -> Option<f64> {
        let to_lateral = rms(x, &self.mean, &self.scale)?;
        (to_frontal > 0.0).then(|| to_lateral / to_frontal)
    }
}

/// The root-mean-square standardized difference of `x` from `mean` (`None` for another length).
fn rms(x: &[f64], mean: &[f64], scale: &[f64]) -> Option<f64> {
    if x.len() != mean.len() || x.is_empty() {
        return None;
    }
    let sum: f64 = x
        .iter()
        .zip(mean)
        .zip(scale)
        .map(|((v, m), s)| ((v - m) / s).powi(2))
        .sum();
    Some((sum / x.len() as f64).sqrt())
}

/// Checks a reference's `n` means and scales (finite, scales positive) and its positive limit.
fn check_moments(
    what: &str,
    n: usize,
    mean: &[f64],
    scale: &[f64],
    limit: f64,
) -> Result<(), String> {
    if mean.len() != n || scale.len() != n {
        return Err(format!(
            "{what} reference has {} means and {} scales for {n} feature names",
            mean.len(),
            scale.len()
        ));
    }
    if !(limit.is_finite() && limit > 0.0)
        || scale.iter().any(|s| !(s.is_finite() && *s > 0.0))
        || mean.iter().any(|m| !m.is_finite())
    {
        return Err(format!(
            "{what} limit, means and scales must be finite, limit and scales positive"
        ));
    }
    Ok(())
}

/// Each feature's mean and spread (at least [`MIN_SCALE`]) over `samples`, all of length `dims`.
fn moments(samples: &[Vec<f64>], dims: usize) -> (Vec<f64>, Vec<f64>) {
    let column = |j: usize| samples.iter().map(move |s| s[j]);
    let mean = (0..dims).map(|j| column(j).mean()).collect();
    let scale = (0..dims)
        .map(|j| column(j).std_dev().max(MIN_SCALE))
        .collect();
    (mean, scale)
}

fn check_samples(samples: &[Vec<f64>], need: usize) -> Result<usize, OodError> {
    if samples.len() < need {
        return Err(OodError::TooFew {
            need,
            got: samples.len(),
        });
    }
    let dims = samples[0].len();
    if let Some(bad) = samples.iter().find(|s| s.len() != dims) {
        return Err(OodError::Mixed {
            a: dims,
            b: bad.len(),
        });
    }
    Ok(dims)
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OodError {
    #[error("OOD calibration needs at least {need} images, got {got}")]
    TooFew { need: usize, got: usize },
    #[error("OOD calibration images have {a} and {b} features: one feature set for all")]
    Mixed { a: usize, b: usize },
    #[error("OOD percentile {0} must be within (0, 100]")]
    Percentile(f64),
}

impl OodReference {
    /// Fits the reference on calibration images' features and sets the threshold at their own
    /// distances' `percentile` (e.g. 99.5).
    pub fn fit(
        samples: &[Vec<f64>],
        embedding_dims: usize,
        percentile: f64,
        calibrated_on: &str,
    ) -> Result<OodReference, OodError> {
        if !(percentile > 0.0 && percentile <= 100.0) {
            return Err(OodError::Percentile(percentile));
        }
        let dims = check_samples(samples, MIN_IMAGES)?;
        let (mean, scale) = moments(samples, dims);
        let mut r = OodReference {
            method: METHOD.to_string(),
            features: feature_names(embedding_dims),
            mean,
            scale,
            threshold: f64::INFINITY,
            percentile,
            calibrated_on: calibrated_on.to_string(),
            images: samples.len(),
            lateral: None,
        };
        let distances: Vec<f64> = samples.iter().filter_map(|s| r.distance(s)).collect();
        r.threshold = Data::new(distances).quantile(percentile / 100.0);
        Ok(r)
    }

    /// Fits the lateral reference on lateral images' features and sets its limit at the
    /// `percentile`-th lowest ratio of the `frontal` calibration images (e.g. 0.5: about one
    /// frontal film in 200 without a view is refused with the laterals).
    pub fn fit_lateral(
        &mut self,
        laterals: &[Vec<f64>],
        frontal: &[Vec<f64>],
        percentile: f64,
    ) -> Result<(), OodError> {
        if !(percentile > 0.0 && percentile < 100.0) {
            return Err(OodError::Percentile(percentile));
        }
        let dims = check_samples(laterals, MIN_IMAGES)?;
        if dims != self.mean.len() {
            return Err(OodError::Mixed {
                a: self.mean.len(),
                b: dims,
            });
        }
        let (mean, scale) = moments(laterals, dims);
        let mut lateral = LateralReference {
            mean,
            scale,
            limit: f64::INFINITY,
            percentile,
            images: laterals.len(),
        };
        let ratios: Vec<f64> = frontal
            .iter()
            .filter_map(|x| lateral.ratio(x, self.distance(x)?))
            .collect();
        if ratios.is_empty() {
            return Err(OodError::TooFew { need: 1, got: 0 });
        }
        lateral.limit = Data::new(ratios).quantile(percentile / 100.0);
        self.lateral = Some(lateral);
        Ok(())
    }

    /// How much nearer the lateral reference an image is than the frontal one: its distance to
    /// the lateral reference over its distance to the frontal one. `None` without a lateral
    /// reference or for another feature set.
    pub fn lateral_ratio(&self, x: &[f64]) -> Option<f64> {
        self.lateral.as_ref()?.ratio(x, self.distance(x)?)
    }

    /// The ratio of a film that looks lateral (below the limit); `None` when it does not, or
    /// when there is no lateral reference to ask.
    pub fn looks_lateral(&self, x: &[f64]) -> Option<f64> {
        let limit = self.lateral.as_ref()?.limit;
        self.lateral_ratio(x).filter(|r| *r < limit)
    }

    /// Checks that the reference is usable with features of this length.
    pub fn validate(&self) -> Result<(), String> {
        if self.method != METHOD {
            return Err(format!(
                "ood.method {:?} unsupported ({METHOD} only)",
                self.method
            ));
        }
        let n = self.features.len();
        check_moments("ood", n, &self.mean, &self.scale, self.threshold)?;
        if let Some(l) = &self.lateral {
            check_moments("ood lateral", n, &l.mean, &l.scale, l.limit)?;
        }
        Ok(())
    }

    /// The distance of an image's features from the reference; `None` when the features are not
    /// the reference's (another embedding size).
    pub fn distance(&self, x: &[f64]) -> Option<f64> {
        rms(x, &self.mean, &self.scale)
    }

    /// The distance in units of the threshold (above 1: out of distribution).
    pub fn relative(&self, x: &[f64]) -> Option<f64> {
        self.distance(x).map(|d| d / self.threshold)
    }
}

/// The words a refusal carries, with how far out the image is.
pub fn reason(relative: f64) -> String {
    format!("image unlike the model's training data ({relative:.1}× the calibrated limit)")
}

/// What the gate makes of one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Like the training data: scored. `relative` is the distance in units of the threshold.
    Passed { relative: f64 },
    /// Unlike the training data (`ood.distance`, with `relative` > 1).
    Distant { relative: f64 },
    /// No view named, and nearer the lateral films than the frontal ones (`ood.lateral`).
    LooksLateral {
        relative: f64,
        ratio: f64,
        limit: f64,
    },
    /// Features the reference cannot judge (`ood.no_features`).
    Unjudged,
}

impl Judgement {
    /// The refusal's code and words; `None` for a pass.
    pub fn refusal(&self) -> Option<(&'static str, String)> {
        match *self {
            Judgement::Passed { .. } => None,
            Judgement::Distant { relative } => Some((CODE, reason(relative))),
            Judgement::LooksLateral { ratio, limit, .. } => {
                Some((LATERAL_CODE, lateral_reason(ratio, limit)))
            }
            Judgement::Unjudged => Some((
                UNJUDGED_CODE,
                "the out-of-distribution gate could not judge the image (its statistics or \
                 embedding are missing or not the reference's)"
                    .into(),
            )),
        }
    }

    /// The distance in units of the threshold, where there is one.
    pub fn relative(&self) -> Option<f64> {
        match *self {
            Judgement::Passed { relative }
            | Judgement::Distant { relative }
            | Judgement::LooksLateral { relative, .. } => Some(relative),
            Judgement::Unjudged => None,
        }
    }
}

/// The gate on an image's features (`None`: none could be taken). `view_named`: its header or
/// scan event names its view, so the lateral reference is not asked.
pub fn judge(reference: &OodReference, x: Option<&[f64]>, view_named: bool) -> Judgement {
    let Some((x, distance)) = x.and_then(|x| Some((x, reference.distance(x)?))) else {
        return Judgement::Unjudged;
    };
    let relative = distance / reference.threshold;
    if relative > 1.0 {
        return Judgement::Distant { relative };
    }
    let lateral = reference.lateral.as_ref().filter(|_| !view_named);
    match lateral.and_then(|l| Some((l.ratio(x, distance)?, l.limit))) {
        Some((ratio, limit)) if ratio < limit => Judgement::LooksLateral {
            relative,
            ratio,
            limit,
        },
        _ => Judgement::Passed { relative },
    }
}

/// The words a lateral-looking film's refusal carries.
pub fn lateral_reason(ratio: f64, limit: f64) -> String {
    format!(
        "no view position, and the image looks like a lateral film: the model reads frontal films only \
         (its distance to lateral films is {ratio:.2} of its distance to frontal ones, below the calibrated {limit:.2})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mean: f64, hist_peak: usize) -> ImageStats {
        let mut histogram = vec![1i64; 32];
        histogram[hist_peak] = 100;
        ImageStats {
            mean,
            std: 0.2,
            p01: 0.01,
            p05: 0.05,
            p50: mean,
            p95: 0.9,
            p99: 0.95,
            histogram,
            original_width: 320,
            original_height: 390,
            bits_stored: 8,
            photometric: "MONOCHROME2".into(),
        }
    }

    fn calibration() -> Vec<Vec<f64>> {
        (0..200)
            .map(|i| {
                let jitter = (i % 10) as f64 / 100.0;
                features(
                    &stats(0.45 + jitter, 14 + i % 3),
                    Some(&[jitter as f32, 0.5]),
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_reference_refuses_what_is_far_and_passes_what_it_was_fitted_on() {
        let r = OodReference::fit(&calibration(), 2, 99.5, "unit").unwrap();
        r.validate().unwrap();
        assert_eq!(r.features.len(), 7 + 32 + 2);
        let inside = calibration()
            .iter()
            .filter(|x| r.relative(x).unwrap() <= 1.0)
            .count();
        assert!(inside >= 199, "{inside} of 200 calibration images inside");
        let far = features(&stats(0.9, 31), Some(&[3.0, -2.0])).unwrap();
        assert!(r.relative(&far).unwrap() > 1.5, "{:?}", r.relative(&far));
        assert_eq!(
            r.distance(&far[..10]),
            None,
            "another feature set is not judged"
        );
    }

    #[test]
    fn calibration_needs_enough_images_and_one_feature_set() {
        let few = calibration()[..5].to_vec();
        assert!(matches!(
            OodReference::fit(&few, 2, 99.5, "x"),
            Err(OodError::TooFew { .. })
        ));
        let mut mixed = calibration();
        mixed[3].pop();
        assert!(matches!(
            OodReference::fit(&mixed, 2, 99.5, "x"),
            Err(OodError::Mixed { .. })
        ));
        assert!(OodReference::fit(&calibration(), 2, 0.0, "x").is_err());
    }

    /// Lateral-like images: darker, histogram peak elsewhere, another embedding.
    fn laterals(n: usize, phase: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| {
                let jitter = ((i + phase) % 7) as f64 / 100.0;
                features(
                    &stats(0.35 + jitter, 8 + (i + phase) % 3),
                    Some(&[0.8 - jitter as f32, -0.4]),
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_lateral_reference_tells_laterals_from_frontals() {
        let frontal = calibration();
        let mut r = OodReference::fit(&frontal, 2, 99.5, "unit").unwrap();
        assert_eq!(
            r.looks_lateral(&laterals(1, 0)[0]),
            None,
            "no reference, no answer"
        );
        r.fit_lateral(&laterals(26, 0), &frontal, 0.5).unwrap();
        r.validate().unwrap();
        let l = r.lateral.as_ref().unwrap();
        assert!(l.limit > 0.0 && l.limit.is_finite() && l.images == 26);
        // Laterals it was not fitted on (another phase of the jitter) look lateral; the frontal
        // calibration images, all but the share the percentile gives up, do not.
        let caught = laterals(40, 3)
            .iter()
            .filter(|x| r.looks_lateral(x).is_some())
            .count();
        assert_eq!(caught, 40);
        let refused = frontal
            .iter()
            .filter(|x| r.looks_lateral(x).is_some())
            .count();
        assert!(refused <= 1, "{refused} of 200 frontals look lateral");
        // The manifest round trip keeps it; a manifest from before it still loads.
        let json = serde_json::to_value(&r).unwrap();
        let back: OodReference = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, r);
        let mut old = json;
        old.as_object_mut().unwrap().remove("lateral");
        let old: OodReference = serde_json::from_value(old).unwrap();
        assert_eq!(old.lateral, None);
        // A lateral reference of another feature set, or too few laterals, is refused.
        let mut bad = r.clone();
        bad.lateral.as_mut().unwrap().mean.pop();
        assert!(bad.validate().unwrap_err().contains("lateral"));
        let mut again = old.clone();
        assert!(matches!(
            again.fit_lateral(&laterals(5, 0), &frontal, 0.5),
            Err(OodError::TooFew { need: 20, got: 5 })
        ));
        assert_eq!(again.lateral, None);
    }

    #[test]
    fn the_gate_judges_distance_then_the_view_and_refuses_what_it_cannot_judge() {
        // Three features: the frontal films about 0, the laterals about 1.
        let r = OodReference {
            method: METHOD.into(),
            features: vec!["a".into(), "b".into(), "c".into()],
            mean: vec![0.0; 3],
            scale: vec![1.0; 3],
            threshold: 2.0,
            percentile: 99.5,
            calibrated_on: "unit".into(),
            images: 100,
            lateral: Some(LateralReference {
                mean: vec![1.0; 3],
                scale: vec![1.0; 3],
                limit: 0.5,
                percentile: 0.5,
                images: 26,
            }),
        };
        r.validate().unwrap();
        let lateral = [0.9, 1.0, 1.1];
        let j = judge(&r, Some(&lateral), false);
        assert!(
            matches!(j, Judgement::LooksLateral { ratio, limit: 0.5, .. } if ratio < 0.2),
            "{j:?}"
        );
        assert_eq!(j.refusal().unwrap().0, LATERAL_CODE);
        assert!(j.relative().unwrap() < 1.0);
        // A named view is not asked; a frontal film passes.
        assert!(matches!(
            judge(&r, Some(&lateral), true),
            Judgement::Passed { .. }
        ));
        assert!(matches!(
            judge(&r, Some(&[0.1, -0.2, 0.0]), false),
            Judgement::Passed { .. }
        ));
        // Far from the frontal films: refused by distance before the view is asked.
        let j = judge(&r, Some(&[5.0, 5.0, 5.0]), false);
        assert!(matches!(j, Judgement::Distant { .. }), "{j:?}");
        assert_eq!(j.refusal().unwrap().0, CODE);
        // No features, or features of another length (no embedding): refused, never scored
        // unjudged.
        for x in [None, Some(&lateral[..2])] {
            let j = judge(&r, x, false);
            assert_eq!(j, Judgement::Unjudged);
            assert_eq!(j.refusal().unwrap().0, UNJUDGED_CODE);
            assert_eq!(j.relative(), None);
        }
    }

    #[test]
    fn an_image_without_statistics_has_no_features() {
        let mut s = stats(0.5, 3);
        s.histogram.clear();
        assert_eq!(features(&s, None), None);
    }
}
