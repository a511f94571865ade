//! Operating points: each finding's threshold chosen on a labelled validation split to a stated
//! target (sensitivity, specificity or flag rate), the CRITICAL tier held to a budget of the
//! studies it may flag, and what the choice gives per finding and per tier (flag rate,
//! sensitivity with its exact 95% interval, specificity, PPV). Pure: `cxrflow model calibrate`
//! scores the images and writes the result into the manifest.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, ContinuousCDF};

/// What an operating point must reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The most specific threshold whose sensitivity is at least this.
    Sensitivity(f64),
    /// The most sensitive threshold whose specificity is at least this.
    Specificity(f64),
    /// The most sensitive threshold that flags at most this share of the images.
    FlagRate(f64),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Sensitivity(v) => write!(f, "sensitivity>={v}"),
            Target::Specificity(v) => write!(f, "specificity>={v}"),
            Target::FlagRate(v) => write!(f, "flag-rate<={v}"),
        }
    }
}

impl FromStr for Target {
    type Err = String;
    /// `sensitivity=0.9`, `specificity=0.95` or `flag-rate=0.1` (also with `>=`/`<=`).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (kind, value) = s
            .split_once(">=")
            .or_else(|| s.split_once("<="))
            .or_else(|| s.split_once('='))
            .ok_or_else(|| {
                format!("expected sensitivity=V, specificity=V or flag-rate=V, got {s:?}")
            })?;
        let v: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("target {s:?}: {value:?} is not a number"))?;
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("target {s:?}: {v} is not within [0, 1]"));
        }
        match kind.trim().to_ascii_lowercase().as_str() {
            "sensitivity" | "sens" => Ok(Target::Sensitivity(v)),
            "specificity" | "spec" => Ok(Target::Specificity(v)),
            "flag-rate" | "flag_rate" => Ok(Target::FlagRate(v)),
            other => Err(format!(
                "target {s:?}: unknown measure {other:?} (sensitivity, specificity, flag-rate)"
            )),
        }
    }
}

/// One image's probability for one finding and its label (None: uncertain or unlabelled, left
/// out of sensitivity and specificity but counted in the flag rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub probability: f64,
    pub truth: Option<bool>,
}

/// Confusion counts at a threshold (`probability >= threshold` flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub images: usize,
    pub flagged: usize,
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub tn: usize,
}

impl Counts {
    pub fn add(&mut self, flagged: bool, truth: Option<bool>) {
        self.images += 1;
        self.flagged += usize::from(flagged);
        match (flagged, truth) {
            (true, Some(true)) => self.tp += 1,
            (true, Some(false)) => self.fp += 1,
            (false, Some(true)) => self.fn_ += 1,
            (false, Some(false)) => self.tn += 1,
            (_, None) => {}
        }
    }

    pub fn at(samples: &[Sample], threshold: f64) -> Counts {
        let mut c = Counts::default();
        for s in samples {
            c.add(flags(s.probability, threshold), s.truth);
        }
        c
    }

    pub fn positives(&self) -> usize {
        self.tp + self.fn_
    }

    pub fn negatives(&self) -> usize {
        self.tn + self.fp
    }

    pub fn flag_rate(&self) -> f64 {
        ratio(self.flagged, self.images).unwrap_or(0.0)
    }

    pub fn sensitivity(&self) -> Option<f64> {
        ratio(self.tp, self.positives())
    }

    pub fn specificity(&self) -> Option<f64> {
        ratio(self.tn, self.negatives())
    }

    pub fn ppv(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Whether a probability flags at a threshold (a NaN never does).
pub fn flags(probability: f64, threshold: f64) -> bool {
    probability.is_finite() && probability >= threshold
}

/// The exact (Clopper–Pearson) 95% interval of a proportion `x / n`.
pub fn clopper_pearson(x: usize, n: usize) -> Option<[f64; 2]> {
    if n == 0 || x > n {
        return None;
    }
    let (x, n) = (x as f64, n as f64);
    let lo = if x == 0.0 {
        0.0
    } else {
        Beta::new(x, n - x + 1.0).ok()?.inverse_cdf(0.025)
    };
    let hi = if x == n {
        1.0
    } else {
        Beta::new(x + 1.0, n - x).ok()?.inverse_cdf(0.975)
    };
    Some([lo, hi])
}

/// The candidate thresholds: every distinct finite probability, and one above them all (flags
/// nothing), ascending.
fn candidates(samples: &[Sample]) -> Vec<f64> {
    let mut v: Vec<f64> = samples
        .iter()
        .map(|s| s.probability)
        .filter(|p| p.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    let top = v.last().copied().unwrap_or(0.0);
    v.push(next_above(top));
    v
}

fn next_above(p: f64) -> f64 {
    if p < 1.0 {
        (p + 1e-6).min(1.0)
    } else {
        f64::from_bits(p.to_bits() + 1)
    }
}

/// The threshold that meets `target` (or comes nearest: the most sensitive threshold when no
/// threshold meets a specificity or flag-rate target, the least when none meets a sensitivity
/// target), and whether it was met.
pub fn choose(samples: &[Sample], target: Target) -> (f64, bool) {
    let cands = candidates(samples);
    // Ascending thresholds: sensitivity and flag rate fall, specificity rises.
    match target {
        Target::Sensitivity(want) => {
            let best = cands.iter().rev().find(|t| {
                Counts::at(samples, **t)
                    .sensitivity()
                    .is_some_and(|s| s >= want)
            });
            match best {
                Some(t) => (*t, true),
                None => (cands[0], false),
            }
        }
        Target::Specificity(want) => {
            let best = cands.iter().find(|t| {
                Counts::at(samples, **t)
                    .specificity()
                    .is_some_and(|s| s >= want)
            });
            match best {
                Some(t) => (*t, true),
                None => (*cands.last().unwrap_or(&1.0), false),
            }
        }
        Target::FlagRate(want) => {
            let best = cands
                .iter()
                .find(|t| Counts::at(samples, **t).flag_rate() <= want);
            match best {
                Some(t) => (*t, true),
                None => (*cands.last().unwrap_or(&1.0), false),
            }
        }
    }
}

/// What a finding's threshold gives on the calibration split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// The target asked for, e.g. `sensitivity>=0.9`.
    pub target: String,
    /// Whether the threshold meets it (false when the tier budget or the model prevented it).
    pub met: bool,
    pub images: usize,
    pub positives: usize,
    pub flag_rate: f64,
    pub sensitivity: Option<f64>,
    /// Exact 95% interval of the sensitivity (few positives make it wide).
    pub sensitivity_ci95: Option<[f64; 2]>,
    pub specificity: Option<f64>,
    pub ppv: Option<f64>,
}

impl OperatingPoint {
    pub fn measure(samples: &[Sample], threshold: f64, target: Target) -> OperatingPoint {
        let c = Counts::at(samples, threshold);
        let met = match target {
            Target::Sensitivity(v) => c.sensitivity().is_some_and(|s| s >= v),
            Target::Specificity(v) => c.specificity().is_some_and(|s| s >= v),
            Target::FlagRate(v) => c.flag_rate() <= v,
        };
        OperatingPoint {
            target: target.to_string(),
            met,
            images: c.images,
            positives: c.positives(),
            flag_rate: c.flag_rate(),
            sensitivity: c.sensitivity(),
            sensitivity_ci95: clopper_pearson(c.tp, c.positives()),
            specificity: c.specificity(),
            ppv: c.ppv(),
        }
    }
}

/// One image of the calibration split: a probability and a label per finding, in the manifest's
/// finding order.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredImage {
    pub probabilities: Vec<f64>,
    pub truth: Vec<Option<bool>>,
}

/// A tier's size and accuracy at the chosen thresholds: a study is flagged when any finding of
/// the tier is over its threshold, and positive when any of them is positive by ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierMeasure {
    pub findings: Vec<String>,
    pub images: usize,
    pub flagged: usize,
    pub flag_rate: f64,
    pub positives: usize,
    pub sensitivity: Option<f64>,
    pub sensitivity_ci95: Option<[f64; 2]>,
    pub ppv: Option<f64>,
}

/// Measures the tier made of the findings at `members` (indices into the manifest's findings).
/// `exclusive` are the members of more urgent tiers: an image they flag is theirs, not this
/// tier's (a study has one tier), but it still counts as a positive this tier missed if only
/// this tier's findings are positive.
pub fn measure_tier(
    images: &[ScoredImage],
    names: &[String],
    members: &[usize],
    thresholds: &[f64],
    exclusive: &[usize],
) -> TierMeasure {
    let over = |img: &ScoredImage, idx: &[usize]| {
        idx.iter()
            .any(|&i| flags(img.probabilities[i], thresholds[i]))
    };
    let mut c = Counts::default();
    for img in images {
        let taken = over(img, exclusive);
        let flagged = !taken && over(img, members);
        let any_known = members.iter().any(|&i| img.truth[i].is_some());
        let positive = members.iter().any(|&i| img.truth[i] == Some(true));
        let truth = if positive {
            Some(true)
        } else if any_known {
            Some(false)
        } else {
            None
        };
        // An image a more urgent tier takes is read at least as soon: not a miss of this one.
        let truth = if taken && truth == Some(true) {
            None
        } else {
            truth
        };
        c.add(flagged, truth);
    }
    TierMeasure {
        findings: members.iter().map(|&i| names[i].clone()).collect(),
        images: c.images,
        flagged: c.flagged,
        flag_rate: c.flag_rate(),
        positives: c.positives(),
        sensitivity: c.sensitivity(),
        sensitivity_ci95: clopper_pearson(c.tp, c.positives()),
        ppv: c.ppv(),
    }
}

/// Raises the thresholds of the `members` until at most `budget` of the images have any of them
/// over threshold: one step at a time (to the next distinct probability), on the member that
/// flags most images, so a tier of several findings gives up the least it can.
pub fn fit_budget(images: &[ScoredImage], members: &[usize], thresholds: &mut [f64], budget: f64) {
    let rate = |t: &[f64]| {
        let n = images.len().max(1) as f64;
        images
            .iter()
            .filter(|img| members.iter().any(|&i| flags(img.probabilities[i], t[i])))
            .count() as f64
            / n
    };
    while rate(thresholds) > budget {
        let busiest = members.iter().copied().max_by_key(|&i| {
            images
                .iter()
                .filter(|img| flags(img.probabilities[i], thresholds[i]))
                .count()
        });
        let Some(i) = busiest else { return };
        let next = images
            .iter()
            .map(|img| img.probabilities[i])
            .filter(|p| p.is_finite() && *p > thresholds[i])
            .min_by(f64::total_cmp);
        match next {
            Some(p) => thresholds[i] = p,
            None if thresholds[i] <= 1.0 => thresholds[i] = next_above(thresholds[i].max(1.0)),
            None => return,
        }
    }
}

/// How the manifest's thresholds were chosen, written into it by `cxrflow model calibrate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// The labelled images the thresholds were chosen on (dataset split, never the held-out
    /// replay).
    pub split: String,
    pub images: usize,
    /// The CRITICAL tier's budget: at most this share of the split's images.
    pub critical_budget: f64,
    /// Finding → target, for the findings of a tier.
    pub targets: BTreeMap<String, String>,
    /// `critical`, `urgent`: the tiers' sizes and accuracy on the split.
    pub tiers: BTreeMap<String, TierMeasure>,
    /// Uncertain (-1) labels: left out of sensitivity/specificity.
    pub uncertain_labels: String,
}

#[cfg(test)]
#[path = "calibration_tests.rs"]
mod tests;
