//! A sample of studies prepared for testing ([`Side`]), the comparison of two sides into
//! per-feature [`Measurement`]s, and the reference window with its bootstrap calibration of
//! the unified drift score (CheXstray's MMC standardisation; MMC+'s uncertainty band).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::Rng;

use crate::mmd;
use crate::observation::{
    continuous_feature, Channel, Observation, CATEGORICAL_FEATURES, N_CONTINUOUS,
};
use crate::stats::{self, mean_std, TestResult};

/// Which statistic a measurement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    Ks,
    Chi2,
    Mmd,
}

impl Statistic {
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Ks => "KS",
            Statistic::Chi2 => "CHI2",
            Statistic::Mmd => "MMD",
        }
    }
}

/// One feature's comparison of a window against the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub feature: String,
    pub channel: Channel,
    pub statistic: Statistic,
    pub value: f64,
    /// Raw p-value (`None` where not computed, e.g. MMD during calibration).
    pub p_value: Option<f64>,
    /// MMD only: standardised excess over the permutation null.
    pub z: Option<f64>,
    /// Values in the reference and window that entered the test.
    pub n_reference: usize,
    pub n_window: usize,
}

/// A sample prepared for testing: sorted values per continuous feature, category counts,
/// embeddings.
#[derive(Debug, Clone)]
pub struct Side {
    /// Fixed continuous features, then one per embedding dimension; each sorted, NaN-free.
    pub continuous: Vec<Vec<f64>>,
    pub categories: Vec<BTreeMap<String, u64>>,
    /// Embeddings of the expected dimension (most recent last).
    pub embeddings: Vec<Vec<f64>>,
}

impl Side {
    /// Builds a side from observations; `emb_dim` fixes the embedding dimension (others are
    /// left out — the service counts them when they arrive).
    pub fn build<'a>(
        obs: impl IntoIterator<Item = &'a Observation>,
        emb_dim: Option<usize>,
    ) -> Side {
        let d = emb_dim.unwrap_or(0);
        let mut continuous = vec![Vec::new(); N_CONTINUOUS + d];
        let mut categories = vec![BTreeMap::new(); CATEGORICAL_FEATURES.len()];
        let mut embeddings = Vec::new();
        for o in obs {
            for (i, v) in o.continuous.iter().enumerate().take(N_CONTINUOUS) {
                if let Some(v) = v {
                    continuous[i].push(*v);
                }
            }
            for (i, c) in o.categorical.iter().enumerate() {
                if let Some(c) = c {
                    *categories[i].entry(c.clone()).or_insert(0) += 1;
                }
            }
            if let Some(e) = &o.embedding {
                if e.len() == d && d > 0 {
                    for (k, v) in e.iter().enumerate() {
                        continuous[N_CONTINUOUS + k].push(*v);
                    }
                    embeddings.push(e.clone());
                }
            }
        }
        for c in &mut continuous {
            c.sort_by(f64::total_cmp);
        }
        Side {
            continuous,
            categories,
            embeddings,
        }
    }
}

/// Feature name and channel of continuous column `i` (fixed features, then embedding dims).
pub fn column(i: usize) -> (String, Channel) {
    if i < N_CONTINUOUS {
        continuous_feature(i)
    } else {
        (format!("emb.{}", i - N_CONTINUOUS), Channel::Representation)
    }
}

/// How the representation channel is compared.
#[derive(Debug, Clone)]
pub struct MmdSetup {
    /// The reference subsample the window is compared with.
    pub reference: Vec<Vec<f64>>,
    /// Kernel bandwidth (median heuristic on the reference subsample).
    pub bandwidth: f64,
    /// Most recent window embeddings used.
    pub window_sample: usize,
    pub permutations: usize,
}

/// Compares `win` against `refs` feature by feature. Features with fewer than `min_n` values
/// on either side are skipped. MMD runs when `mmd` is given and both sides have embeddings;
/// with `permutations == 0` only its statistic is computed.
pub fn compare(
    refs: &Side,
    win: &Side,
    mmd_setup: Option<&MmdSetup>,
    min_n: usize,
    min_category_total: u64,
    rng: &mut StdRng,
) -> Vec<Measurement> {
    let mut out = Vec::new();
    for (i, (r, w)) in refs.continuous.iter().zip(&win.continuous).enumerate() {
        if r.len() < min_n || w.len() < min_n {
            continue;
        }
        let t = stats::ks_test_sorted(r, w);
        let (feature, channel) = column(i);
        out.push(measurement(
            feature,
            channel,
            Statistic::Ks,
            t,
            r.len(),
            w.len(),
        ));
    }
    for (i, (r, w)) in refs.categories.iter().zip(&win.categories).enumerate() {
        let (nr, nw) = (
            r.values().sum::<u64>() as usize,
            w.values().sum::<u64>() as usize,
        );
        if nr < min_n || nw < min_n {
            continue;
        }
        let mut keys: Vec<&String> = r.keys().chain(w.keys()).collect();
        keys.sort();
        keys.dedup();
        let rc: Vec<u64> = keys
            .iter()
            .map(|k| r.get(*k).copied().unwrap_or(0))
            .collect();
        let wc: Vec<u64> = keys
            .iter()
            .map(|k| w.get(*k).copied().unwrap_or(0))
            .collect();
        let t = stats::chi2_homogeneity(&rc, &wc, min_category_total);
        out.push(measurement(
            CATEGORICAL_FEATURES[i].to_string(),
            Channel::Metadata,
            Statistic::Chi2,
            t,
            nr,
            nw,
        ));
    }
    if let Some(m) = mmd_setup {
        let start = win.embeddings.len().saturating_sub(m.window_sample);
        let recent = &win.embeddings[start..];
        if m.reference.len() >= min_n.min(m.window_sample)
            && recent.len() >= min_n.min(m.window_sample)
        {
            let (value, p, z) = if m.permutations > 0 {
                let r = mmd::mmd_permutation_test(
                    &m.reference,
                    recent,
                    m.bandwidth,
                    m.permutations,
                    rng,
                );
                (r.mmd2, Some(r.p_value), Some(r.z()))
            } else {
                (mmd::mmd2(&m.reference, recent, m.bandwidth), None, None)
            };
            out.push(Measurement {
                feature: "embedding".into(),
                channel: Channel::Representation,
                statistic: Statistic::Mmd,
                value,
                p_value: p,
                z,
                n_reference: m.reference.len(),
                n_window: recent.len(),
            });
        }
    }
    out
}

fn measurement(
    feature: String,
    channel: Channel,
    statistic: Statistic,
    t: TestResult,
    nr: usize,
    nw: usize,
) -> Measurement {
    Measurement {
        feature,
        channel,
        statistic,
        value: t.statistic,
        p_value: Some(t.p_value),
        z: None,
        n_reference: nr,
        n_window: nw,
    }
}

/// Null behaviour of every metric, from bootstrap replicates of the reference.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    /// Per feature: mean and standard deviation of the metric over replicates.
    pub metrics: BTreeMap<String, (f64, f64)>,
    /// Mean and standard deviation of the unified score over replicates.
    pub score_mean: f64,
    pub score_sd: f64,
    pub replicates: usize,
}

/// Unified-score weights per channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelWeights {
    pub input: f64,
    pub metadata: f64,
    pub output: f64,
    pub representation: f64,
}

impl Default for ChannelWeights {
    fn default() -> Self {
        ChannelWeights {
            input: 1.0,
            metadata: 1.0,
            output: 1.0,
            representation: 1.0,
        }
    }
}

impl ChannelWeights {
    fn of(&self, c: Channel) -> f64 {
        match c {
            Channel::Input => self.input,
            Channel::Metadata => self.metadata,
            Channel::Output => self.output,
            Channel::Representation => self.representation,
            _ => 0.0,
        }
    }
}

/// Smallest standard deviation a metric is standardised by (a metric constant over the
/// reference replicates, e.g. χ² of a category the reference never varies in).
const SD_FLOOR: f64 = 1e-6;

impl Calibration {
    /// Standardised metric of one measurement, clipped to `±clip`.
    pub fn z(&self, m: &Measurement, clip: f64) -> Option<f64> {
        let (mean, sd) = self.metrics.get(&m.feature)?;
        Some(((m.value - mean) / sd.max(SD_FLOOR)).clamp(-clip, clip))
    }

    /// The unified score: per channel the mean standardised metric, then the weighted mean
    /// over channels with at least one metric.
    pub fn score(&self, ms: &[Measurement], weights: &ChannelWeights, clip: f64) -> Option<f64> {
        let mut per: BTreeMap<Channel, (f64, usize)> = BTreeMap::new();
        for m in ms {
            if let Some(z) = self.z(m, clip) {
                let e = per.entry(m.channel).or_insert((0.0, 0));
                e.0 += z;
                e.1 += 1;
            }
        }
        let (mut num, mut den) = (0.0, 0.0);
        for (c, (sum, n)) in per {
            let w = weights.of(c);
            if w > 0.0 && n > 0 {
                num += w * sum / n as f64;
                den += w;
            }
        }
        (den > 0.0).then(|| num / den)
    }

    /// Bootstrap calibration: each replicate draws a pseudo-reference (size of the reference)
    /// and a pseudo-window (size `window`) independently, with replacement, from the reference
    /// — two independent samples from the reference distribution, as a real window is under no
    /// drift — and measures every metric between them.
    #[allow(clippy::too_many_arguments)]
    pub fn bootstrap(
        reference: &[Observation],
        emb_dim: Option<usize>,
        window: usize,
        mmd_sample: usize,
        bandwidth: f64,
        replicates: usize,
        min_n: usize,
        min_category_total: u64,
        weights: &ChannelWeights,
        clip: f64,
        rng: &mut StdRng,
    ) -> Calibration {
        let n = reference.len();
        if n == 0 {
            return Calibration::default();
        }
        let mut runs: Vec<Vec<Measurement>> = Vec::with_capacity(replicates);
        for _ in 0..replicates {
            let pseudo_ref: Vec<&Observation> =
                (0..n).map(|_| &reference[rng.random_range(0..n)]).collect();
            let pseudo_win: Vec<&Observation> = (0..window)
                .map(|_| &reference[rng.random_range(0..n)])
                .collect();
            let rs = Side::build(pseudo_ref.iter().copied(), emb_dim);
            let ws = Side::build(pseudo_win.iter().copied(), emb_dim);
            let setup = MmdSetup {
                reference: rs.embeddings.iter().take(mmd_sample).cloned().collect(),
                bandwidth,
                window_sample: mmd_sample,
                permutations: 0,
            };
            runs.push(compare(
                &rs,
                &ws,
                Some(&setup),
                min_n,
                min_category_total,
                rng,
            ));
        }
        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for run in &runs {
            for m in run {
                values.entry(m.feature.clone()).or_default().push(m.value);
            }
        }
        let mut cal = Calibration {
            metrics: values.into_iter().map(|(k, v)| (k, mean_std(&v))).collect(),
            replicates,
            ..Calibration::default()
        };
        let scores: Vec<f64> = runs
            .iter()
            .filter_map(|r| cal.score(r, weights, clip))
            .collect();
        let (m, s) = mean_std(&scores);
        cal.score_mean = m;
        cal.score_sd = s;
        cal
    }
}
