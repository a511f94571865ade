//! cxrflow ingest: `cxr.scan.v1` → `cxr.ingested.v1`.
//!
//! Owns the front door of the pipeline: validates each scan event (DICOM UIDs, modality, media
//! type, timestamps, sizes), obtains the image (inline, `file://`, `http(s)://`, `s3://`),
//! verifies a declared sha256, writes the image once to the content-addressed blob store (or,
//! when the event names the image's own content address there, references it unread) and
//! deduplicates by SOP instance UID across restarts (an embedded SQLite ledger). Anything that
//! can never succeed goes to `cxr.dlq.v1` with a stable reason; an unreachable source or blob
//! store is retried and never committed.

pub mod config;
pub mod egress;
pub mod error;
pub mod fetch;
pub mod ledger;
pub mod metrics;
pub mod processor;
pub mod uid;
pub mod validate;

use std::sync::Arc;

use anyhow::Context;
use cxrflow_common::auth::Routes;
use cxrflow_common::Host;
use cxrflow_contracts::topics;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::IngestError;
pub use ledger::{Claim, SopLedger};
pub use metrics::IngestMetrics;
pub use processor::Ingest;

/// The service name: consumer group `cxrflow-ingest`, metrics `cxrflow_ingest_…`.
pub const SERVICE: &str = "ingest";

/// Runs until `shutdown` is cancelled; returns after draining.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(service = SERVICE, settings = %cfg.describe(), "ingest configuration");
    let blobs = cfg
        .blob_store
        .open()
        .with_context(|| format!("opening blob store {}", cfg.blob_store.effective_url()))?;
    let ledger = SopLedger::open(&cfg.ingest_db)?;
    let settings = cfg
        .fetch_settings()
        .map_err(|e| anyhow::anyhow!("--ingest-http-allow / --ingest-allow-networks: {e}"))?;
    let fetcher = fetch::Fetcher::new(settings)?;
    let metrics = IngestMetrics::default();
    let host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| metrics.register(reg),
        Routes::new(),
    )
    .await?;
    let processor = Arc::new(Ingest {
        codec: host.codec().clone(),
        blobs,
        ledger,
        fetcher,
        limits: cfg.limits(),
        metrics,
        unreachable: processor::Unreachable::new(std::time::Duration::from_millis(
            cfg.source_give_up_ms,
        )),
    });
    let stage = host.stage(vec![topics::SCAN]);
    host.serve(stage, processor, &shutdown).await
}
