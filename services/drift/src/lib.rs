//! cxrflow's drift service: watches a deployed model's traffic for a changing hospital —
//! inputs (image statistics), metadata (view, sex, age, modality, site), outputs (finding
//! probabilities), representations (embeddings) and performance (AUROC against labels) — and
//! publishes alerts on `cxr.drift.v1` for the retraining system. Also the reference consumer of
//! those alerts, [`retrain_trigger`].
//!
//! The method follows CheXstray (Soin et al. 2022) and MMC+ (Merkow et al. 2024): a reference
//! window per model version, a sliding detection window, per-feature two-sample tests with
//! multiple-testing correction ([`stats`]), MMD on embeddings ([`mmd`]), a unified score
//! standardised against bootstrap replicates of the reference ([`reference`]), and alert
//! hygiene ([`alerting`]). The core ([`detector`]) does no I/O; [`service`] puts it on Kafka.

pub mod alerting;
pub mod cli;
pub mod config;
pub mod detector;
pub mod error;
pub mod metrics;
pub mod mmd;
pub mod observation;
pub mod performance;
pub mod reference;
pub mod retrain_export;
pub mod retrain_trigger;
pub mod service;
pub mod stats;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod synthetic;

pub use config::Config;
pub use detector::{DetectorConfig, DriftDetector, ModelDetector, ModelKey};
pub use retrain_trigger::{run_retrain_trigger, TriggerConfig};
pub use service::Engine;
pub use store::reset_reference;

use std::sync::{Arc, Mutex};

use cxrflow_common::auth::Routes;
use cxrflow_common::Host;
use cxrflow_contracts::topics;
use tokio_util::sync::CancellationToken;

use crate::metrics::DriftMetrics;
use crate::service::DriftProcessor;
use crate::store::DriftStore;

/// The service name: consumer group `cxrflow-drift`, metrics `cxrflow_drift_…`.
pub const SERVICE: &str = "drift";

/// Runs the drift service until `shutdown` is cancelled; returns after draining.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let detector = cfg.detector()?;
    tracing::info!(db = %cfg.drift_db.display(), ?detector, "drift configuration");
    let store = DriftStore::open(&cfg.drift_db)?;
    let metrics = DriftMetrics::default();
    let host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| metrics.register(reg),
        Routes::new(),
    )
    .await?;
    let processor = Arc::new(DriftProcessor {
        codec: host.codec().clone(),
        engine: Arc::new(Mutex::new(Engine::new(
            detector,
            store,
            metrics,
            cfg.dedup_capacity,
        ))),
    });
    let stage = host.background_stage(vec![topics::PREDICTIONS, topics::LABELED]);
    host.serve(stage, processor, &shutdown).await
}
