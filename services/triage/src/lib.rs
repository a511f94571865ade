//! cxrflow's triage service: consumes `cxr.scan.v1` (every study goes on the worklist as
//! AI_PENDING), `cxr.dlq.v1` (a study-path failure makes its study NOT_ASSESSABLE),
//! `cxr.predictions.v1` (PRODUCTION and CANARY roles re-rank; SHADOW predictions are ignored)
//! and `cxr.feedback.v1`, and maintains the radiologists' worklist on `cxr.triage.v1`
//! (compacted, key = study UID). The AI only reorders: see [`intake`]. It owns the ordering policy ([`policy`]), the
//! worklist state ([`worklist`]), its rebuild from the topic ([`rebuild`]), the escalation tick
//! ([`engine`]) and the worklist page and API ([`http`]).
//!
//! One replica owns the whole worklist (see [`engine`] for how it would scale out).

pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod policy;
pub mod rebuild;
pub mod worklist;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use cxrflow_common::Host;
use cxrflow_contracts::topics;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::engine::{Engine, EngineSettings, TriageProcessor};
use crate::metrics::TriageMetrics;
use crate::worklist::Worklist;

pub use config::Config;

/// The service name: consumer group `cxrflow-triage`, metrics `cxrflow_triage_…`.
pub const SERVICE: &str = "triage";

/// Runs until `shutdown` is cancelled; returns after draining.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with_clock(cfg, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with an injected clock (tests simulate hours of waiting with a [`clock::ManualClock`]).
pub async fn run_with_clock(
    cfg: Config,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_observed(cfg, clock, shutdown, None).await
}

/// A started triage service, as tests and the embedded stack see it once it is ready.
#[derive(Clone)]
pub struct Running {
    pub http_addr: std::net::SocketAddr,
    pub engine: Arc<Engine>,
}

/// [`run_with_clock`] that hands out the running service once it is ready (after the rebuild).
pub async fn run_observed(
    cfg: Config,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    on_ready: Option<tokio::sync::oneshot::Sender<Running>>,
) -> anyhow::Result<()> {
    let policy = cfg
        .policy()
        .map_err(|e| anyhow::anyhow!("triage policy: {e}"))?;
    tracing::info!(?policy, ordering = ?cfg.ordering, tick_ms = cfg.tick_ms, read_retention_ms = cfg.read_retention_ms,
        "triage configuration");
    let blobs = match cfg.blob_store.open() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(error = %e, "blob store unavailable: thumbnails disabled");
            None
        }
    };
    let metrics = TriageMetrics::default();
    let slot: Arc<OnceLock<Arc<Engine>>> = Arc::new(OnceLock::new());
    let routes = http::routes(http::WebState {
        engine: slot.clone(),
        blobs,
        viewer_url: Some(cfg.viewer_url.clone()).filter(|u| !u.is_empty()),
    });
    let mut host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| metrics.register(reg),
        routes,
    )
    .await?;
    let engine = Arc::new(Engine::new(
        Worklist::new(policy),
        host.deps.producer.clone(),
        host.codec().clone(),
        clock,
        metrics,
        EngineSettings {
            read_retention_ms: cfg.read_retention_ms,
            pending_feedback_ms: cfg.pending_feedback_ms,
            closed_memory_ms: 24 * 3_600_000,
            ordering: cfg.ordering,
            overdue_ms: cfg.ai_overdue_ms.max(1),
            dead_letter_wait_ms: cfg.dead_letter_wait_ms.max(0),
        },
    ));
    let _ = slot.set(engine.clone());

    // The worklist is rebuilt before any prediction is processed, and only then are we ready.
    let (kafka, codec, e2) = (cfg.kafka.clone(), host.codec().clone(), engine.clone());
    let timeout = Duration::from_millis(cfg.rebuild_timeout_ms.max(1) as u64);
    let stats = tokio::task::spawn_blocking(move || {
        let now = e2.now();
        rebuild::rebuild(&kafka, &codec, &mut e2.worklist(), now, timeout)
    })
    .await
    .context("rebuild task")??;
    engine.mark_rebuilt();
    tracing::info!(
        records = stats.records,
        tombstones = stats.tombstones,
        undecodable = stats.undecodable,
        studies = engine.worklist().len(),
        "worklist rebuilt from {}",
        cfg.kafka.topic(topics::TRIAGE)
    );
    if let Some(tx) = on_ready {
        let running = Running {
            http_addr: host.http_addr,
            engine: engine.clone(),
        };
        host.on_ready(move || {
            let _ = tx.send(running);
        });
    }
    let every = Duration::from_millis(cfg.tick_ms.max(10) as u64);
    let e = engine.clone();
    host.spawn(|stop| e.run_ticks(every, stop));
    // Scan events put every study on the worklist (AI_PENDING) before any AI result, and dead
    // letters of the study path mark the ones the AI will not rank: the worklist is complete
    // whatever fails downstream.
    let stage = host.stage(vec![
        topics::SCAN,
        topics::DLQ,
        topics::PREDICTIONS,
        topics::FEEDBACK,
    ]);
    host.serve(stage, Arc::new(TriageProcessor { engine }), &shutdown)
        .await
}
