//! The pure detector core: no I/O. Per model version a reference window (the first N studies
//! after the version is first seen), a sliding count-based detection window (optionally bounded
//! in time) evaluated every `stride` studies, the per-feature tests with Benjamini–Hochberg
//! correction, MMD on embeddings, the unified score, and the alert state machine.
//!
//! Persistence is the caller's: [`ModelDetector::observe`] reports reference studies as they
//! are collected ([`Observed::reference_added`]) and [`ModelDetector::restore_reference`]
//! rebuilds a detector from them.

use std::collections::{BTreeMap, HashMap, VecDeque};

use cxrflow_contracts::{DriftAlert, DriftWindow, RecommendedAction};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::alerting::{AlertBook, EvaluationContext, SignalReading};
use crate::mmd;
use crate::observation::{Channel, LabeledObservation, Observation};
use crate::performance::{AurocComparison, PerformanceConfig, PerformanceTracker};
use crate::reference::{
    compare, Calibration, ChannelWeights, Measurement, MmdSetup, Side, Statistic,
};
use crate::stats::{benjamini_hochberg, strength};

/// Every knob of the detector core.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    pub reference_size: usize,
    pub window_size: usize,
    pub stride: usize,
    /// Optional time bound of the detection window (event time), ms.
    pub max_window_age_ms: Option<i64>,
    /// Fewest studies in the detection window for an evaluation (relevant with a time bound).
    pub min_window: usize,
    /// Fewest values a feature needs on each side to be tested.
    pub min_feature_n: usize,
    /// Categories with fewer studies (reference + window) are pooled for χ².
    pub min_category_total: u64,
    /// BH-adjusted p-value that raises a per-feature alert, and the one that resolves it.
    pub alpha_raise: f64,
    pub alpha_resolve: f64,
    pub mmd_sample: usize,
    pub mmd_permutations: usize,
    pub mmd_z_raise: f64,
    pub mmd_z_resolve: f64,
    pub bootstrap: usize,
    pub weights: ChannelWeights,
    pub score_clip: f64,
    /// Unified score raises at `mean + k·sd` of its bootstrap null, resolves at `mean + k'·sd`.
    pub score_sigma_raise: f64,
    pub score_sigma_resolve: f64,
    /// Floor of the unified raise level, whatever the calibration says.
    pub score_min_raise: f64,
    /// A unified score at or above this recommends RETRAIN.
    pub score_retrain: f64,
    pub cooldown_ms: i64,
    /// Consecutive evaluations above the raise level before an alert is raised.
    pub raise_after: u32,
    pub performance: PerformanceConfig,
    pub seed: u64,
    /// Also run one detector per site (own reference: the site's first `reference_size`
    /// studies), so a drift confined to one site is not diluted by the others' traffic.
    pub per_site: bool,
    /// Most sites watched per model version (bounded memory; later sites are only counted).
    pub max_sites: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            reference_size: 500,
            window_size: 300,
            stride: 50,
            max_window_age_ms: None,
            min_window: 300,
            min_feature_n: 30,
            min_category_total: 5,
            alpha_raise: 1e-3,
            alpha_resolve: 1e-2,
            mmd_sample: 150,
            mmd_permutations: 200,
            mmd_z_raise: 6.0,
            mmd_z_resolve: 3.0,
            bootstrap: 100,
            weights: ChannelWeights::default(),
            score_clip: 3.0,
            score_sigma_raise: 5.0,
            score_sigma_resolve: 3.0,
            score_min_raise: 1.0,
            score_retrain: 2.0,
            cooldown_ms: 3_600_000,
            raise_after: 1,
            performance: PerformanceConfig::default(),
            seed: 0x5eed,
            per_site: true,
            max_sites: 16,
        }
    }
}

/// Identity of a deployed model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelKey {
    pub name: String,
    pub version: String,
}

/// The reference window, ready for comparisons.
#[derive(Debug, Clone)]
pub struct Reference {
    pub observations: Vec<Observation>,
    pub side: Side,
    pub emb_dim: Option<usize>,
    pub mmd: Option<MmdSetup>,
    pub calibration: Calibration,
    pub window: DriftWindow,
}

impl Reference {
    /// Prepares a reference from its studies: sorted samples, kernel bandwidth, calibration.
    pub fn build(
        observations: Vec<Observation>,
        cfg: &DetectorConfig,
        rng: &mut StdRng,
    ) -> Reference {
        let emb_dim = observations
            .iter()
            .find_map(|o| o.embedding.as_ref().map(Vec::len));
        let side = Side::build(&observations, emb_dim);
        let mmd = (!side.embeddings.is_empty()).then(|| {
            let sample: Vec<Vec<f64>> = side
                .embeddings
                .iter()
                .take(cfg.mmd_sample)
                .cloned()
                .collect();
            MmdSetup {
                bandwidth: mmd::median_bandwidth(&sample),
                reference: sample,
                window_sample: cfg.mmd_sample,
                permutations: cfg.mmd_permutations,
            }
        });
        let calibration = Calibration::bootstrap(
            &observations,
            emb_dim,
            cfg.window_size,
            cfg.mmd_sample,
            mmd.as_ref().map_or(1.0, |m| m.bandwidth),
            cfg.bootstrap,
            cfg.min_feature_n,
            cfg.min_category_total,
            &cfg.weights,
            cfg.score_clip,
            rng,
        );
        Reference {
            window: window_of(observations.iter()),
            observations,
            side,
            emb_dim,
            mmd,
            calibration,
        }
    }

    /// Unified-score raise and resolve levels from the calibration.
    pub fn score_levels(&self, cfg: &DetectorConfig) -> (f64, f64) {
        let c = &self.calibration;
        let cap = cfg.score_clip * 0.95;
        let raise = (c.score_mean + cfg.score_sigma_raise * c.score_sd)
            .max(cfg.score_min_raise)
            .min(cap);
        let resolve = (c.score_mean + cfg.score_sigma_resolve * c.score_sd).min(raise * 0.75);
        (raise, resolve)
    }
}

fn window_of<'a>(obs: impl Iterator<Item = &'a Observation>) -> DriftWindow {
    let (mut start, mut end, mut count) = (i64::MAX, i64::MIN, 0i64);
    for o in obs {
        start = start.min(o.at);
        end = end.max(o.at);
        count += 1;
    }
    if count == 0 {
        (start, end) = (0, 0);
    }
    DriftWindow { start, end, count }
}

/// What one evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub measurements: Vec<Measurement>,
    /// BH-adjusted p-values, parallel to `measurements` (`None` for MMD).
    pub adjusted: Vec<Option<f64>>,
    pub score: Option<f64>,
    pub readings: Vec<SignalReading>,
    pub detection_window: DriftWindow,
}

/// What observing one study did.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The study became part of the reference (persist it).
    pub reference_added: Option<Observation>,
    /// The reference is complete with this study.
    pub reference_completed: bool,
    pub evaluation: Option<Evaluation>,
    pub performance: Option<Vec<AurocComparison>>,
    pub alerts: Vec<DriftAlert>,
}

/// The detector of one model version.
#[derive(Debug, Clone)]
pub struct ModelDetector {
    pub key: ModelKey,
    /// The one site this detector watches; `None` for all traffic of the model version.
    pub site: Option<String>,
    cfg: DetectorConfig,
    collecting: Vec<Observation>,
    reference: Option<Reference>,
    window: VecDeque<Observation>,
    since_eval: usize,
    performance: PerformanceTracker,
    alerts: AlertBook,
    rng: StdRng,
    last_score: Option<f64>,
}

impl ModelDetector {
    pub fn new(key: ModelKey, cfg: DetectorConfig) -> Self {
        Self::scoped(key, None, cfg)
    }

    /// A detector of one site's traffic of the model version (`None`: all traffic).
    pub fn scoped(key: ModelKey, site: Option<String>, cfg: DetectorConfig) -> Self {
        ModelDetector {
            key,
            site,
            performance: PerformanceTracker::new(cfg.performance.clone()),
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            collecting: Vec::new(),
            reference: None,
            window: VecDeque::new(),
            since_eval: 0,
            alerts: AlertBook::default(),
            last_score: None,
        }
    }

    /// Restores the reference studies persisted earlier (complete or not).
    pub fn restore_reference(&mut self, observations: Vec<Observation>) {
        self.reference = None;
        self.collecting = observations;
        if self.collecting.len() >= self.cfg.reference_size {
            let obs = std::mem::take(&mut self.collecting);
            self.reference = Some(Reference::build(obs, &self.cfg, &mut self.rng));
        }
    }

    /// Forgets the reference: the next `reference_size` studies form a new one.
    pub fn reset_reference(&mut self) {
        self.reference = None;
        self.collecting.clear();
        self.window.clear();
        self.since_eval = 0;
        self.alerts = AlertBook::default();
    }

    /// Reference studies collected so far while the reference is incomplete.
    pub fn collecting_len(&self) -> usize {
        self.collecting.len()
    }

    pub fn reference(&self) -> Option<&Reference> {
        self.reference.as_ref()
    }

    pub fn last_score(&self) -> Option<f64> {
        self.last_score
    }

    pub fn alert_book(&self) -> &AlertBook {
        &self.alerts
    }

    /// Feeds one study.
    pub fn observe(&mut self, obs: Observation) -> Observed {
        let mut out = Observed::default();
        if self.reference.is_none() {
            self.collecting.push(obs.clone());
            out.reference_added = Some(obs);
            if self.collecting.len() >= self.cfg.reference_size {
                let ref_obs = std::mem::take(&mut self.collecting);
                self.reference = Some(Reference::build(ref_obs, &self.cfg, &mut self.rng));
                out.reference_completed = true;
            }
            return out;
        }
        let newest = obs.at;
        self.window.push_back(obs);
        while self.window.len() > self.cfg.window_size {
            self.window.pop_front();
        }
        if let Some(age) = self.cfg.max_window_age_ms {
            while self.window.front().is_some_and(|o| o.at < newest - age) {
                self.window.pop_front();
            }
        }
        self.since_eval += 1;
        if self.since_eval < self.cfg.stride
            || self.window.len() < self.cfg.min_window.min(self.cfg.window_size)
        {
            return out;
        }
        self.since_eval = 0;
        let eval = self.evaluate();
        let ctx = self.context(&eval.detection_window);
        out.alerts = self.alerts.observe(
            &eval.readings,
            &ctx,
            self.cfg.cooldown_ms,
            self.cfg.raise_after,
        );
        out.evaluation = Some(eval);
        out
    }

    /// Feeds one labeled study (performance channel).
    pub fn observe_labeled(&mut self, l: LabeledObservation) -> Observed {
        let mut out = Observed::default();
        let at = l.at;
        if let Some((cmp, reading)) = self.performance.observe(l, &mut self.rng) {
            let rw = window_of_labeled(self.performance.reference.iter().map(|o| o.at));
            let dw = window_of_labeled(self.performance.window.iter().map(|o| o.at));
            let ctx = EvaluationContext {
                model_name: self.key.name.clone(),
                model_version: self.key.version.clone(),
                site_id: self.site.clone(),
                scope: self.site.clone(),
                reference_window: rw,
                detection_window: dw,
                at,
            };
            out.alerts =
                self.alerts
                    .observe(&[reading], &ctx, self.cfg.cooldown_ms, self.cfg.raise_after);
            out.performance = Some(cmp);
        }
        out
    }

    fn context(&self, detection: &DriftWindow) -> EvaluationContext {
        // Name the site when the whole detection window comes from one.
        let mut sites = self.window.iter().filter_map(|o| o.site.as_deref());
        let first = sites.next();
        let single = first.filter(|f| sites.all(|s| s == *f)).map(str::to_string);
        EvaluationContext {
            model_name: self.key.name.clone(),
            model_version: self.key.version.clone(),
            site_id: self.site.clone().or(single),
            scope: self.site.clone(),
            reference_window: self.reference.as_ref().map(|r| r.window.clone()).unwrap_or(
                DriftWindow {
                    start: 0,
                    end: 0,
                    count: 0,
                },
            ),
            detection_window: detection.clone(),
            at: detection.end,
        }
    }

    /// Compares the current detection window with the reference.
    pub fn evaluate(&mut self) -> Evaluation {
        let detection_window = window_of(self.window.iter());
        let Some(reference) = self.reference.as_ref() else {
            return Evaluation {
                measurements: vec![],
                adjusted: vec![],
                score: None,
                readings: vec![],
                detection_window,
            };
        };
        let cfg = &self.cfg;
        let win = Side::build(self.window.iter(), reference.emb_dim);
        let measurements = compare(
            &reference.side,
            &win,
            reference.mmd.as_ref(),
            cfg.min_feature_n,
            cfg.min_category_total,
            &mut self.rng,
        );
        let adjusted = adjusted_p_values(&measurements);
        let score = reference
            .calibration
            .score(&measurements, &cfg.weights, cfg.score_clip);
        let mut readings: Vec<SignalReading> = [
            Channel::Input,
            Channel::Metadata,
            Channel::Output,
            Channel::Representation,
        ]
        .into_iter()
        .filter_map(|channel| feature_reading(channel, &measurements, &adjusted, cfg))
        .collect();
        readings.extend(mmd_reading(&measurements, cfg));
        readings.extend(score.map(|s| score_reading(s, reference, &measurements, cfg)));
        self.last_score = score;
        Evaluation {
            measurements,
            adjusted,
            score,
            readings,
            detection_window,
        }
    }
}

fn window_of_labeled(ats: impl Iterator<Item = i64>) -> DriftWindow {
    let (mut start, mut end, mut count) = (i64::MAX, i64::MIN, 0i64);
    for a in ats {
        start = start.min(a);
        end = end.max(a);
        count += 1;
    }
    if count == 0 {
        (start, end) = (0, 0);
    }
    DriftWindow { start, end, count }
}

/// Benjamini–Hochberg over the per-feature tests of one evaluation (MMD has its own
/// threshold): the adjusted p-value of each measurement, `None` for MMD.
fn adjusted_p_values(measurements: &[Measurement]) -> Vec<Option<f64>> {
    let tested: Vec<usize> = (0..measurements.len())
        .filter(|&i| measurements[i].statistic != Statistic::Mmd)
        .collect();
    let raw: Vec<f64> = tested
        .iter()
        .map(|&i| measurements[i].p_value.unwrap_or(1.0))
        .collect();
    let adj = benjamini_hochberg(&raw);
    let mut adjusted = vec![None; measurements.len()];
    for (k, &i) in tested.iter().enumerate() {
        adjusted[i] = Some(adj[k]);
    }
    adjusted
}

/// The embedding MMD test, as one reading.
fn mmd_reading(ms: &[Measurement], cfg: &DetectorConfig) -> Option<SignalReading> {
    let m = ms.iter().find(|m| m.statistic == Statistic::Mmd)?;
    let z = m.z.unwrap_or(0.0);
    let mut details = BTreeMap::new();
    details.insert("z".into(), format!("{z:.3}"));
    details.insert("n_reference".into(), m.n_reference.to_string());
    details.insert("n_window".into(), m.n_window.to_string());
    details.insert("permutations".into(), cfg.mmd_permutations.to_string());
    Some(SignalReading {
        channel: Channel::Representation,
        test: "MMD",
        signal: "embedding".into(),
        statistic: "MMD".into(),
        value: m.value,
        p_value: m.p_value,
        threshold: cfg.mmd_z_raise,
        strength: z,
        raise_at: cfg.mmd_z_raise,
        resolve_at: cfg.mmd_z_resolve,
        action: RecommendedAction::Investigate,
        details,
    })
}

/// The unified drift score against the reference's calibrated levels, with its top
/// contributors, as one reading.
fn score_reading(
    s: f64,
    reference: &Reference,
    ms: &[Measurement],
    cfg: &DetectorConfig,
) -> SignalReading {
    let (raise, resolve) = reference.score_levels(cfg);
    let mut details = BTreeMap::new();
    details.insert(
        "reference_score_mean".into(),
        format!("{:.4}", reference.calibration.score_mean),
    );
    details.insert(
        "reference_score_sd".into(),
        format!("{:.4}", reference.calibration.score_sd),
    );
    details.insert(
        "bootstrap_replicates".into(),
        reference.calibration.replicates.to_string(),
    );
    let mut top: Vec<(f64, &str)> = ms
        .iter()
        .filter_map(|m| {
            Some((
                reference.calibration.z(m, cfg.score_clip)?,
                m.feature.as_str(),
            ))
        })
        .collect();
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    details.insert(
        "top_contributors".into(),
        top.iter()
            .take(5)
            .map(|(z, f)| format!("{f}:{z:.2}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    SignalReading {
        channel: Channel::Unified,
        test: "SCORE",
        signal: "drift_score".into(),
        statistic: "SCORE".into(),
        value: s,
        p_value: None,
        threshold: raise,
        strength: s,
        raise_at: raise,
        resolve_at: resolve,
        action: if s >= cfg.score_retrain {
            RecommendedAction::Retrain
        } else {
            RecommendedAction::Investigate
        },
        details,
    }
}

/// The strongest per-feature test of a channel, as one reading (others listed in details).
fn feature_reading(
    channel: Channel,
    ms: &[Measurement],
    adjusted: &[Option<f64>],
    cfg: &DetectorConfig,
) -> Option<SignalReading> {
    let mut in_channel: Vec<(usize, f64)> = ms
        .iter()
        .enumerate()
        .filter(|(_, m)| m.channel == channel && m.statistic != Statistic::Mmd)
        .filter_map(|(i, _)| Some((i, adjusted[i]?)))
        .collect();
    in_channel.sort_by(|a, b| a.1.total_cmp(&b.1));
    let &(best, p) = in_channel.first()?;
    let m = &ms[best];
    let mut details = BTreeMap::new();
    details.insert(
        "raw_p_value".into(),
        format!("{:.3e}", m.p_value.unwrap_or(1.0)),
    );
    details.insert("correction".into(), "benjamini-hochberg".into());
    details.insert("n_reference".into(), m.n_reference.to_string());
    details.insert("n_window".into(), m.n_window.to_string());
    let significant: Vec<String> = in_channel
        .iter()
        .filter(|(_, q)| *q < cfg.alpha_raise)
        .map(|(i, q)| format!("{}:{:.2e}", ms[*i].feature, q))
        .collect();
    details.insert("significant_features".into(), significant.join(","));
    Some(SignalReading {
        channel,
        test: "FEATURES",
        signal: m.feature.clone(),
        statistic: m.statistic.as_str().to_string(),
        value: m.value,
        p_value: Some(p),
        threshold: cfg.alpha_raise,
        strength: strength(p),
        raise_at: strength(cfg.alpha_raise),
        resolve_at: strength(cfg.alpha_resolve),
        action: RecommendedAction::Investigate,
        details,
    })
}

/// Detectors of every model version seen.
#[derive(Debug, Clone)]
pub struct DriftDetector {
    cfg: DetectorConfig,
    models: HashMap<ModelKey, ModelDetector>,
    sites: HashMap<(ModelKey, String), ModelDetector>,
}

impl DriftDetector {
    pub fn new(cfg: DetectorConfig) -> Self {
        DriftDetector {
            cfg,
            models: HashMap::new(),
            sites: HashMap::new(),
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// The detector of `key`, created on first sight.
    pub fn model(&mut self, key: &ModelKey) -> &mut ModelDetector {
        let cfg = &self.cfg;
        self.models
            .entry(key.clone())
            .or_insert_with(|| ModelDetector::new(key.clone(), cfg.clone()))
    }

    pub fn has_model(&self, key: &ModelKey) -> bool {
        self.models.contains_key(key)
    }

    pub fn models(&self) -> impl Iterator<Item = &ModelDetector> {
        self.models.values()
    }

    pub fn observe(&mut self, key: &ModelKey, obs: Observation) -> Observed {
        self.model(key).observe(obs)
    }

    /// The detector of one site's traffic of `key`, created on first sight; `None` when
    /// per-site detection is off or `max_sites` sites of this model version are watched.
    pub fn site(&mut self, key: &ModelKey, site: &str) -> Option<&mut ModelDetector> {
        if !self.cfg.per_site {
            return None;
        }
        let id = (key.clone(), site.to_string());
        if !self.sites.contains_key(&id) {
            let watched = self.sites.keys().filter(|(k, _)| k == key).count();
            if watched >= self.cfg.max_sites {
                return None;
            }
            let d = ModelDetector::scoped(key.clone(), Some(site.to_string()), self.cfg.clone());
            self.sites.insert(id.clone(), d);
        }
        self.sites.get_mut(&id)
    }

    pub fn has_site(&self, key: &ModelKey, site: &str) -> bool {
        self.sites.contains_key(&(key.clone(), site.to_string()))
    }

    /// Feeds a study to the detector of its site (if it has one and per-site detection is on).
    pub fn observe_site(&mut self, key: &ModelKey, obs: Observation) -> Option<Observed> {
        let site = obs.site.clone()?;
        Some(self.site(key, &site)?.observe(obs))
    }

    pub fn observe_labeled(&mut self, key: &ModelKey, l: LabeledObservation) -> Observed {
        self.model(key).observe_labeled(l)
    }
}
