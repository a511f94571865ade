//! `cxrflow drift` settings: every flag of the drift service and the detector configuration
//! they describe.

use std::path::PathBuf;

use clap::Args;
use cxrflow_common::{KafkaArgs, ServiceArgs};

use crate::detector::DetectorConfig;
use crate::reference::ChannelWeights;

/// `cxrflow drift` settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    /// SQLite store of reference windows.
    #[arg(
        long = "drift-db",
        env = "CXRFLOW_DRIFT_DB",
        default_value = ".cxrflow/drift.db"
    )]
    pub drift_db: PathBuf,
    /// Studies in a model version's reference window (the first ones after it is first seen).
    #[arg(
        long = "drift-reference-size",
        env = "CXRFLOW_DRIFT_REFERENCE_SIZE",
        default_value_t = 500
    )]
    pub reference_size: usize,
    /// Studies in the sliding detection window.
    #[arg(
        long = "drift-window-size",
        env = "CXRFLOW_DRIFT_WINDOW_SIZE",
        default_value_t = 300
    )]
    pub window_size: usize,
    /// Studies between evaluations.
    #[arg(
        long = "drift-stride",
        env = "CXRFLOW_DRIFT_STRIDE",
        default_value_t = 50
    )]
    pub stride: usize,
    /// Optional time bound of the detection window (event time), ms; 0 = none.
    #[arg(
        long = "drift-window-max-age-ms",
        env = "CXRFLOW_DRIFT_WINDOW_MAX_AGE_MS",
        default_value_t = 0
    )]
    pub window_max_age_ms: i64,
    /// Fewest studies in a (time-bounded) detection window for an evaluation; 0 = window size.
    #[arg(
        long = "drift-min-window",
        env = "CXRFLOW_DRIFT_MIN_WINDOW",
        default_value_t = 0
    )]
    pub min_window: usize,
    /// BH-adjusted p-value that raises a feature alert.
    #[arg(
        long = "drift-alpha-raise",
        env = "CXRFLOW_DRIFT_ALPHA_RAISE",
        default_value_t = 1e-3
    )]
    pub alpha_raise: f64,
    /// BH-adjusted p-value above which a feature alert resolves.
    #[arg(
        long = "drift-alpha-resolve",
        env = "CXRFLOW_DRIFT_ALPHA_RESOLVE",
        default_value_t = 1e-2
    )]
    pub alpha_resolve: f64,
    /// Permutations of the MMD test.
    #[arg(
        long = "drift-mmd-permutations",
        env = "CXRFLOW_DRIFT_MMD_PERMUTATIONS",
        default_value_t = 200
    )]
    pub mmd_permutations: usize,
    /// Bootstrap replicates of the reference (unified-score calibration).
    #[arg(
        id = "drift_bootstrap",
        long = "drift-bootstrap",
        env = "CXRFLOW_DRIFT_BOOTSTRAP",
        default_value_t = 100
    )]
    pub bootstrap: usize,
    /// Unified-score weights `input,metadata,output,representation`.
    #[arg(
        long = "drift-score-weights",
        env = "CXRFLOW_DRIFT_SCORE_WEIGHTS",
        default_value = "1,1,1,1"
    )]
    pub score_weights: String,
    /// A unified score at or above this recommends RETRAIN.
    #[arg(
        long = "drift-score-retrain",
        env = "CXRFLOW_DRIFT_SCORE_RETRAIN",
        default_value_t = 2.0
    )]
    pub score_retrain: f64,
    /// Least time between UPDATED alerts of one raised alert (event time), ms.
    #[arg(
        long = "drift-cooldown-ms",
        env = "CXRFLOW_DRIFT_COOLDOWN_MS",
        default_value_t = 3_600_000
    )]
    pub cooldown_ms: i64,
    /// Labeled studies in the performance reference and window.
    #[arg(
        long = "drift-perf-reference-size",
        env = "CXRFLOW_DRIFT_PERF_REFERENCE_SIZE",
        default_value_t = 500
    )]
    pub perf_reference_size: usize,
    #[arg(
        long = "drift-perf-window-size",
        env = "CXRFLOW_DRIFT_PERF_WINDOW_SIZE",
        default_value_t = 300
    )]
    pub perf_window_size: usize,
    /// Seed of every resampling (permutations, bootstrap).
    #[arg(
        long = "drift-seed",
        env = "CXRFLOW_DRIFT_SEED",
        default_value_t = 0x5eed
    )]
    pub seed: u64,
    /// Also watch each site separately (its own reference window), so a drift at one site is
    /// not diluted by the others' traffic.
    #[arg(
        long = "drift-per-site",
        env = "CXRFLOW_DRIFT_PER_SITE",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub per_site: bool,
    /// Most sites watched separately per model version (bounded memory).
    #[arg(
        long = "drift-max-sites",
        env = "CXRFLOW_DRIFT_MAX_SITES",
        default_value_t = 16
    )]
    pub max_sites: usize,
    /// Studies (per model version) and labeled reports remembered so that a replayed record
    /// is not counted twice (bounded memory; the oldest are forgotten first). Was
    /// `--drift-join-capacity` while drift joined the preprocessed stream (then a quarter).
    #[arg(
        long = "drift-dedup-capacity",
        alias = "drift-join-capacity",
        env = "CXRFLOW_DRIFT_DEDUP_CAPACITY",
        default_value_t = 80_000
    )]
    pub dedup_capacity: usize,
}

impl Config {
    /// All drift settings at their defaults.
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        let d = DetectorConfig::default();
        Config {
            kafka,
            service,
            drift_db: PathBuf::from(".cxrflow/drift.db"),
            reference_size: d.reference_size,
            window_size: d.window_size,
            stride: d.stride,
            window_max_age_ms: 0,
            min_window: 0,
            alpha_raise: d.alpha_raise,
            alpha_resolve: d.alpha_resolve,
            mmd_permutations: d.mmd_permutations,
            bootstrap: d.bootstrap,
            score_weights: "1,1,1,1".into(),
            score_retrain: d.score_retrain,
            cooldown_ms: d.cooldown_ms,
            perf_reference_size: d.performance.reference_size,
            perf_window_size: d.performance.window_size,
            seed: d.seed,
            per_site: d.per_site,
            max_sites: d.max_sites,
            dedup_capacity: 80_000,
        }
    }

    /// The detector settings these flags describe.
    pub fn detector(&self) -> anyhow::Result<DetectorConfig> {
        let w: Vec<f64> = self
            .score_weights
            .split(',')
            .map(|s| s.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--drift-score-weights {:?}: {e}", self.score_weights))?;
        let [input, metadata, output, representation] = w[..] else {
            anyhow::bail!("--drift-score-weights needs 4 weights (input,metadata,output,representation), got {:?}", self.score_weights);
        };
        anyhow::ensure!(
            self.window_size >= 2 && self.stride >= 1 && self.reference_size >= 2,
            "window, stride and reference sizes must be positive"
        );
        let mut d = DetectorConfig {
            reference_size: self.reference_size,
            window_size: self.window_size,
            stride: self.stride,
            max_window_age_ms: (self.window_max_age_ms > 0).then_some(self.window_max_age_ms),
            min_window: if self.min_window == 0 {
                self.window_size
            } else {
                self.min_window
            },
            alpha_raise: self.alpha_raise,
            alpha_resolve: self.alpha_resolve,
            mmd_permutations: self.mmd_permutations,
            bootstrap: self.bootstrap,
            weights: ChannelWeights {
                input,
                metadata,
                output,
                representation,
            },
            score_retrain: self.score_retrain,
            cooldown_ms: self.cooldown_ms,
            seed: self.seed,
            per_site: self.per_site,
            max_sites: self.max_sites,
            ..DetectorConfig::default()
        };
        d.min_feature_n = d.min_feature_n.min(self.window_size / 2).max(2);
        d.mmd_sample = d.mmd_sample.min(self.window_size);
        d.performance.reference_size = self.perf_reference_size;
        d.performance.window_size = self.perf_window_size;
        d.performance.stride = self.stride;
        Ok(d)
    }
}
