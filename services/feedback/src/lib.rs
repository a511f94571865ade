//! cxrflow feedback: joins radiologists' final labels (`cxr.feedback.v1`) with the model's
//! predictions (`cxr.predictions.v1`), keeps both and the joined labeled examples in the study
//! store (SQLite embedded, ScyllaDB distributed), publishes each labeled example on
//! `cxr.labeled.v1` for retraining, dead-letters bad reports and reports whose study never gets
//! a prediction, measures online performance (AUROC, sensitivity/specificity at the manifest
//! thresholds, time to read) and exports CheXpert-style CSVs.
//!
//! Module map: [`join`] (the processor and its delivery guarantee), [`store`] (the
//! `StudyStore` interface, [`store::SqliteStore`], [`store::ScyllaStore`], CQL in
//! [`store::cql`]), [`validate`] (bad input), [`sweep`] (unknown-study timeout),
//! [`performance`] (online metrics, AUROC from `cxrflow_common::stats`), [`export`] (CSV),
//! [`metrics`] (counters and notable events), [`config`] (flags).

use std::sync::Arc;

use cxrflow_common::Host;
use cxrflow_contracts::topics;
use tokio_util::sync::CancellationToken;

pub mod config;
pub mod error;
pub mod export;
#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;
pub mod join;
pub mod metrics;
pub mod performance;
pub mod store;
pub mod sweep;
pub mod validate;

pub use config::{Config, DEFAULT_STORE};
pub use error::FeedbackError;
pub use export::{export, export_csv, ExportArgs, ExportError};
pub use join::FeedbackProcessor;
pub use metrics::FeedbackMetrics;
pub use performance::{Performance, PerformanceReport, UncertaintyPolicy};
pub use store::{ScyllaArgs, ScyllaStore, SqliteStore, StoreError, StoreUri, StudyStore};

/// The service name: consumer group `cxrflow-feedback`, metrics `cxrflow_feedback_…`.
pub const SERVICE: &str = "feedback";

/// Runs until `shutdown` is cancelled; returns after draining.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(store = %cfg.store, scylla = %cfg.scylla.describe(), pending_timeout_ms = cfg.pending_timeout_ms, window = cfg.window,
        uncertainty = ?cfg.uncertainty, "feedback configuration");
    let store = store::open(&cfg.store, &cfg.scylla).await?;
    let performance = Arc::new(Performance::new(cfg.window, cfg.uncertainty));
    let metrics = FeedbackMetrics::default();
    let mut host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| {
            performance.register(reg);
            metrics.register(reg);
        },
        performance.routes(),
    )
    .await?;
    let locks = Arc::new(join::StudyLocks::default());
    let sweep = sweep::Sweep {
        store: store.clone(),
        locks: locks.clone(),
        deps: host.deps.clone(),
        metrics: metrics.clone(),
        service: SERVICE,
        bound: cfg.pending_timeout(),
    };
    host.spawn(|stop| sweep.run(stop));
    let processor = Arc::new(FeedbackProcessor {
        codec: host.codec().clone(),
        store,
        locks,
        performance,
        metrics,
    });
    let stage = host.background_stage(vec![topics::FEEDBACK, topics::PREDICTIONS]);
    host.serve(stage, processor, &shutdown).await
}
