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
//! [`performance`] (online metrics, AUROC from `cxrflow_common::stats`), [`export`] (CSV).

use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::{Host, KafkaArgs, ServiceArgs};
use cxrflow_contracts::topics;
use tokio_util::sync::CancellationToken;

pub mod error;
pub mod events;
pub mod export;
#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;
pub mod join;
pub mod performance;
pub mod store;
pub mod sweep;
pub mod validate;

pub use error::FeedbackError;
pub use export::{export, export_csv, ExportArgs, ExportError};
pub use join::FeedbackProcessor;
pub use performance::{Performance, PerformanceReport, UncertaintyPolicy};
pub use store::{ScyllaArgs, ScyllaStore, SqliteStore, StoreError, StoreUri, StudyStore};

pub const SERVICE: &str = "feedback";
pub const DEFAULT_STORE: &str = "sqlite:.cxrflow/feedback.db";

/// `cxrflow feedback` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,

    /// The study store: `sqlite:PATH` (embedded) or `scylla://host:port[,host:port]/keyspace[?rf=N]`.
    #[arg(long = "store", env = "CXRFLOW_FEEDBACK_STORE", default_value = DEFAULT_STORE)]
    pub store: StoreUri,

    #[command(flatten)]
    pub scylla: ScyllaArgs,

    /// How long a report waits for its study's prediction before it is dead-lettered
    /// (`feedback.unknown_study`), in milliseconds.
    #[arg(
        long = "pending-timeout-ms",
        env = "CXRFLOW_FEEDBACK_PENDING_TIMEOUT_MS",
        default_value_t = 600_000
    )]
    pub pending_timeout_ms: u64,

    /// Labeled examples per rolling performance window (per model version and site).
    #[arg(
        long = "window",
        env = "CXRFLOW_FEEDBACK_WINDOW",
        default_value_t = 500
    )]
    pub window: usize,

    /// How UNCERTAIN labels count in the metrics: u-ones (present), u-zeros (absent), ignore.
    #[arg(long = "uncertainty", env = "CXRFLOW_FEEDBACK_UNCERTAINTY", value_enum, default_value_t = UncertaintyPolicy::UOnes)]
    pub uncertainty: UncertaintyPolicy,
}

impl Config {
    /// All service-specific settings at their defaults.
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        Config {
            kafka,
            service,
            store: DEFAULT_STORE.parse().expect("default store URI parses"),
            scylla: ScyllaArgs::default(),
            pending_timeout_ms: 600_000,
            window: 500,
            uncertainty: UncertaintyPolicy::UOnes,
        }
    }

    pub fn pending_timeout(&self) -> Duration {
        Duration::from_millis(self.pending_timeout_ms)
    }
}

/// Runs until `shutdown` is cancelled; returns after draining.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(store = %cfg.store, scylla = %cfg.scylla.describe(), pending_timeout_ms = cfg.pending_timeout_ms, window = cfg.window,
        uncertainty = ?cfg.uncertainty, "feedback configuration");
    let store = store::open(&cfg.store, &cfg.scylla).await?;
    let performance = Arc::new(Performance::new(cfg.window, cfg.uncertainty));
    let metrics = events::FeedbackMetrics::default();
    // The HTTP endpoint stops with the stage, also when the stage fails.
    let http_stop = shutdown.child_token();
    let host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| {
            performance.register(reg);
            metrics.register(reg);
        },
        performance.routes(),
        &http_stop,
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
    let sweep_stop = shutdown.child_token();
    let sweep_task = tokio::spawn(sweep.run(sweep_stop.clone()));
    let processor = Arc::new(FeedbackProcessor {
        codec: host.codec().clone(),
        store,
        locks,
        performance,
        metrics,
    });
    host.ready.set_ready(true);
    let result = cxrflow_common::run_stage(
        &cfg.kafka,
        host.background_stage(vec![topics::FEEDBACK, topics::PREDICTIONS]),
        processor,
        host.deps.clone(),
        shutdown.clone(),
    )
    .await;
    sweep_stop.cancel();
    http_stop.cancel();
    let _ = sweep_task.await;
    let _ = host.http_task.await;
    result?;
    Ok(())
}
