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
        const NEED: usize = 20;
        if samples.len() < NEED {
            return Err(OodError::TooFew {
                need: NEED,
                got: samples.len(),
            });
        }
        if !(percentile > 0.0 && percentile <= 100.0) {
            return Err(OodError::Percentile(percentile));
        }
        let dims = samples[0].len();
        if let Some(bad) = samples.iter().find(|s| s.len() != dims) {
            return Err(OodError::Mixed {
                a: dims,
                b: bad.len(),
            });
        }
        let column = |j: usize| samples.iter().map(move |s| s[j]);
        let mean: Vec<f64> = (0..dims).map(|j| column(j).mean()).collect();
        let scale: Vec<f64> = (0..dims)
            .map(|j| column(j).std_dev().max(MIN_SCALE))
            .collect();
        let mut r = OodReference {
            method: METHOD.to_string(),
            features: feature_names(embedding_dims),
            mean,
            scale,
            threshold: f64::INFINITY,
            percentile,
            calibrated_on: calibrated_on.to_string(),
            images: samples.len(),
        };
        let distances: Vec<f64> = samples.iter().filter_map(|s| r.distance(s)).collect();
        r.threshold = Data::new(distances).quantile(percentile / 100.0);
        Ok(r)
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
        if self.mean.len() != n || self.scale.len() != n {
            return Err(format!(
                "ood has {n} feature names, {} means and {} scales",
                self.mean.len(),
                self.scale.len()
            ));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0)
            || self.scale.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err("ood threshold, means and scales must be finite, scales positive".into());
        }
        Ok(())
    }

    /// The distance of an image's features from the reference; `None` when the features are not
    /// the reference's (another embedding size).
    pub fn distance(&self, x: &[f64]) -> Option<f64> {
        if x.len() != self.mean.len() || x.is_empty() {
            return None;
        }
        let sum: f64 = x
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((v, m), s)| ((v - m) / s).powi(2))
            .sum();
        Some((sum / x.len() as f64).sqrt())
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

    #[test]
    fn an_image_without_statistics_has_no_features() {
        let mut s = stats(0.5, 3);
        s.histogram.clear();
        assert_eq!(features(&s, None), None);
    }
}
