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
use cxrflow_common::{run_stage, BlobStoreArgs, Host, KafkaArgs, ServiceArgs};
use cxrflow_contracts::topics;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::engine::{Engine, EngineSettings, TriageProcessor};
use crate::metrics::TriageMetrics;
use crate::policy::{parse_duration_ms, TriagePolicy};
use crate::worklist::{OrderingMode, Worklist};

fn parse_weight(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected Finding=weight, got {s:?}"))?;
    let w: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("bad weight in {s:?}"))?;
    if !(0.0..=1.0).contains(&w) {
        return Err(format!("weight must be within 0..=1 in {s:?}"));
    }
    Ok((k.trim().to_string(), w))
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Finding weights overriding the defaults, `Finding=weight` (0..1), repeatable
    /// (env: comma-separated), e.g. `--finding-weight "Fracture=0.8"`.
    #[arg(long = "finding-weight", env = "CXRFLOW_TRIAGE_FINDING_WEIGHTS", value_delimiter = ',', value_parser = parse_weight)]
    pub finding_weights: Vec<(String, f64)>,

    /// Reading deadlines from acquisition per tier, overriding the defaults
    /// (CRITICAL=30m,URGENT=2h,ROUTINE=8h,NOT_ASSESSABLE=8h).
    #[arg(long = "sla", env = "CXRFLOW_TRIAGE_SLA", default_value = "")]
    pub sla: String,

    /// Longest wait per tier before a study is escalated, overriding the defaults
    /// (CRITICAL=30m,URGENT=2h,ROUTINE=90m,NOT_ASSESSABLE=90m).
    #[arg(long = "wait-cap", env = "CXRFLOW_TRIAGE_WAIT_CAP", default_value = "")]
    pub wait_cap: String,

    /// How often escalations, tombstones and unmatched reports are checked.
    #[arg(long = "tick", env = "CXRFLOW_TRIAGE_TICK", default_value = "10s", value_parser = parse_duration_ms)]
    pub tick_ms: i64,

    /// How long a read study stays (status READ) before its tombstone.
    #[arg(long = "read-retention", env = "CXRFLOW_TRIAGE_READ_RETENTION", default_value = "1h", value_parser = parse_duration_ms)]
    pub read_retention_ms: i64,

    /// How long a report for a study not yet on the worklist is kept waiting for its prediction.
    #[arg(long = "pending-feedback", env = "CXRFLOW_TRIAGE_PENDING_FEEDBACK", default_value = "10m", value_parser = parse_duration_ms)]
    pub pending_feedback_ms: i64,

    /// Ordering across sites: one list per site, or one pooled list.
    #[arg(
        long = "ordering",
        env = "CXRFLOW_TRIAGE_ORDERING",
        value_enum,
        default_value = "per-site"
    )]
    pub ordering: OrderingMode,

    /// The blob store thumbnails are read from (ingest's and preprocess's).
    #[command(flatten)]
    pub blob_store: BlobStoreArgs,

    /// How long a study may wait for its AI result (AI_PENDING) before it is marked
    /// NOT_ASSESSABLE ("AI result overdue"); the prediction still re-ranks it if it comes.
    #[arg(long = "ai-overdue", env = "CXRFLOW_TRIAGE_AI_OVERDUE", default_value = "5m", value_parser = parse_duration_ms)]
    pub ai_overdue_ms: i64,

    /// How long a dead letter that names an unknown study (and carries no readable record)
    /// waits for the study's scan event before the study is listed from the dead letter alone.
    #[arg(long = "dead-letter-wait", env = "CXRFLOW_TRIAGE_DEAD_LETTER_WAIT", default_value = "60s", value_parser = parse_duration_ms)]
    pub dead_letter_wait_ms: i64,

    /// Upper bound on the start-up rebuild of the worklist from `cxr.triage.v1`.
    #[arg(long = "rebuild-timeout", env = "CXRFLOW_TRIAGE_REBUILD_TIMEOUT", default_value = "120s", value_parser = parse_duration_ms)]
    pub rebuild_timeout_ms: i64,
    /// The PACS viewer's URL for a study, `{study_uid}` replaced by the Study Instance UID (e.g.
    /// `https://pacs.example/viewer?StudyInstanceUIDs={study_uid}` for OHIF); the worklist page
    /// links each study to it. Empty: no link.
    #[arg(long = "viewer-url", env = "CXRFLOW_TRIAGE_VIEWER_URL", default_value = "", value_parser = http::parse_viewer_url)]
    pub viewer_url: String,
}

impl Config {
    /// All service-specific settings at their defaults.
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        Config {
            kafka,
            service,
            finding_weights: vec![],
            sla: String::new(),
            wait_cap: String::new(),
            tick_ms: 10_000,
            read_retention_ms: 3_600_000,
            pending_feedback_ms: 600_000,
            ordering: OrderingMode::PerSite,
            blob_store: BlobStoreArgs::default(),
            ai_overdue_ms: 300_000,
            dead_letter_wait_ms: 60_000,
            rebuild_timeout_ms: 120_000,
            viewer_url: String::new(),
        }
    }

    /// The ordering policy these settings describe.
    pub fn policy(&self) -> Result<TriagePolicy, String> {
        let mut p = TriagePolicy::default();
        p.weights.extend(self.finding_weights.iter().cloned());
        p.sla_ms = p.sla_ms.parse_over(&self.sla)?;
        p.wait_cap_ms = p.wait_cap_ms.parse_over(&self.wait_cap)?;
        Ok(p)
    }
}

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
    let host = Host::start(
        "triage",
        &cfg.kafka,
        &cfg.service,
        |reg| metrics.register(reg),
        routes,
        &shutdown,
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
    host.ready.set_ready(true);
    if let Some(tx) = on_ready {
        let _ = tx.send(Running {
            http_addr: host.http_addr,
            engine: engine.clone(),
        });
    }

    let ticks = tokio::spawn(engine.clone().run_ticks(
        Duration::from_millis(cfg.tick_ms.max(10) as u64),
        shutdown.clone(),
    ));
    let processor = Arc::new(TriageProcessor {
        engine: engine.clone(),
    });
    let stage = run_stage(
        &cfg.kafka,
        // Scan events put every study on the worklist (AI_PENDING) before any AI result, and
        // dead letters of the study path mark the ones the AI will not rank: the worklist is
        // complete whatever fails downstream.
        host.stage(vec![
            topics::SCAN,
            topics::DLQ,
            topics::PREDICTIONS,
            topics::FEEDBACK,
        ]),
        processor,
        host.deps.clone(),
        shutdown.clone(),
    )
    .await;
    host.ready.set_ready(false);
    shutdown.cancel();
    let _ = ticks.await;
    let _ = host.http_task.await;
    stage?;
    Ok(())
}
