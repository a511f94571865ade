//! cxrflow inference: `cxr.preprocessed.v1` → `cxr.predictions.v1`.
//!
//! Owns the model directory and manifest ([`manifest`]), ONNX Runtime sessions on the CPU or
//! the CUDA execution provider with the provider proven by a profiled run ([`session`]),
//! micro-batching across records and partitions ([`batcher`]), the serving set of model
//! versions with hot reload ([`registry`]), canary/shadow rollout on `cxr.models.v1`
//! ([`rollout`]), automatic rollback of a candidate on its own evidence ([`rules`],
//! [`auto_rollback`]) and the per-record processor ([`processor`]). `testmodel` (feature
//! `test-support`) generates tiny ONNX models for tests.

pub mod auto_rollback;
pub mod batcher;
pub mod calibration;
pub mod cli;
mod config;
pub mod embedding;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod ood;
pub mod placement;
pub mod processor;
pub mod registry;
pub mod rollout;
pub mod rules;
pub mod serving;
pub mod session;
#[cfg(any(test, feature = "test-support"))]
pub mod testmodel;

use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::auth::Routes;
use cxrflow_common::{Host, KafkaArgs};
use cxrflow_contracts::{topics, Codec, ModelRollout};
use tokio_util::sync::CancellationToken;

pub use auto_rollback::AutoRollback;
pub use config::Config;
pub use metrics::InferenceMetrics;
pub use processor::InferenceProcessor;
pub use registry::ModelRegistry;
pub use rollout::{promote, rollback, stage_candidate, stage_model_dir, CandidateRole};
pub use session::Device;

pub const SERVICE: &str = "inference";

/// Follows `cxr.models.v1` from the beginning (a throwaway group: every replica reads every
/// decision) and applies this model's records with a higher revision.
async fn follow_rollouts(
    kafka: KafkaArgs,
    codec: Arc<Codec>,
    registry: Arc<ModelRegistry>,
    shutdown: CancellationToken,
) {
    cxrflow_common::kafka::follow(
        kafka,
        &codec,
        topics::MODELS,
        "cxrflow-inference-models",
        shutdown,
        |r: ModelRollout| {
            let registry = registry.clone();
            async move {
                registry.apply(&r).await;
            }
        },
    )
    .await
}

/// Runs until `shutdown` is cancelled; returns after draining.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(models_dir = %cfg.models_dir.display(), model = %cfg.model, device = %cfg.device,
        max_batch = cfg.max_batch, max_wait_ms = cfg.max_wait_ms, intra_op_threads = cfg.intra_op_threads,
        canary_max_bad_rate = cfg.canary_max_bad_rate, candidate_max_p99_ms = cfg.candidate_max_p99_ms,
        drift_rollback_severity = ?cfg.drift_rollback_severity, drift_rollback_on_retrain = cfg.drift_rollback_on_retrain,
        "inference configuration");
    let metrics = InferenceMetrics::default();
    let mut host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| metrics.register(reg),
        Routes::new(),
    )
    .await?;
    let registry = ModelRegistry::open(
        &cfg.models_dir,
        &cfg.model,
        cfg.session_options(),
        cfg.ort_dylib.clone(),
        cfg.batch_policy(),
        metrics.clone(),
    )
    .await?;
    // The rollout in force before serving anything: read the compacted topic to its end.
    let (k, c) = (cfg.kafka.clone(), host.codec().clone());
    let latest = tokio::task::spawn_blocking(move || rollout::read_latest_blocking(&k, &c)).await?;
    match latest {
        Ok(all) => {
            if let Some(r) = all.get(registry.name()) {
                registry.apply(r).await;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the models topic at start; following it from now")
        }
    }
    let (kafka, codec) = (cfg.kafka.clone(), host.codec().clone());
    let r = registry.clone();
    host.spawn(|stop| follow_rollouts(kafka, codec, r, stop));
    if cfg.reload_interval_ms > 0 {
        let r = registry.clone();
        let every = Duration::from_millis(cfg.reload_interval_ms);
        host.spawn(|stop| r.watch_dir(every, stop));
    }
    let auto = AutoRollback::new(
        registry.clone(),
        cfg.kafka.clone(),
        metrics.clone(),
        cfg.rule_settings(),
    );
    if cfg.rule_settings().drift.enabled() {
        let (kafka, codec, a) = (cfg.kafka.clone(), host.codec().clone(), auto.clone());
        host.spawn(|stop| auto_rollback::follow_drift(kafka, codec, a, stop));
    }
    let processor = Arc::new(InferenceProcessor {
        codec: host.codec().clone(),
        registry,
        metrics,
        auto,
    });
    let stage = host.stage(vec![topics::PREPROCESSED]);
    host.serve(stage, processor, &shutdown).await
}
