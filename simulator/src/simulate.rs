//! A whole simulated run against a live stack: replay studies as a gateway, read them as
//! radiologists from the triage worklist, then summarise what a hospital would measure.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxrflow_common::kafka::snapshot::read_to_end;
use cxrflow_common::kafka::Producer;
use cxrflow_common::registry::codec_for;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{topics, Codec, TriageDecision};
use tokio_util::sync::CancellationToken;

use crate::dataset::open_dataset;
use crate::readers::{run_readers, ReaderConfig};
use crate::replay::{publish, select_studies, Arrival, Pace};
use crate::report::{self, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct SimConfig {
    /// Dataset root (the directory holding `CheXpert-v1.0-small/`, or that directory itself).
    #[arg(long, env = "CXRFLOW_SIM_DATASET")]
    pub dataset: PathBuf,
    /// Which label file to replay (held-out patients only by default).
    #[arg(long, default_value = "heldout.csv")]
    pub table: String,
    /// Number of studies to replay.
    #[arg(long, default_value_t = 300)]
    pub studies: usize,
    /// Arrival rate, studies per second.
    #[arg(long, default_value_t = 8.0)]
    pub rate: f64,
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrival: Arrival,
    /// Images up to this size travel inline; larger ones by file:// reference.
    #[arg(long, default_value_t = 256 * 1024)]
    pub inline_max: u64,
    /// Number of sites the studies are spread over.
    #[arg(long, default_value_t = 2)]
    pub sites: usize,
    /// Simulated radiologists.
    #[arg(long, default_value_t = 2)]
    pub readers: usize,
    /// Median read time per study, milliseconds (log-normal).
    #[arg(long, default_value_t = 350)]
    pub median_read_ms: u64,
    /// Base URL of the triage service's HTTP endpoint.
    #[arg(
        long,
        env = "CXRFLOW_SIM_TRIAGE_URL",
        default_value = "http://127.0.0.1:8084"
    )]
    pub triage_url: String,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where report.json and report.html go.
    #[arg(long, default_value = ".cxrflow/report")]
    pub report_dir: PathBuf,
    /// Give up waiting for reads after this long.
    #[arg(long, default_value_t = 900)]
    pub timeout_s: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimRunError {
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("dataset has no studies to replay in {0}")]
    Empty(String),
    #[error(transparent)]
    Replay(#[from] crate::replay::ReplayError),
    #[error("{0}")]
    Setup(String),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

fn count(kafka: &KafkaArgs, topic: &str) -> Vec<cxrflow_common::kafka::snapshot::SnapshotRecord> {
    read_to_end(kafka, topic, Duration::from_secs(60)).unwrap_or_default()
}

/// Runs the simulation and writes the report.
pub async fn simulate(
    kafka: &KafkaArgs,
    cfg: &SimConfig,
    shutdown: CancellationToken,
) -> Result<Report, SimRunError> {
    let ds = open_dataset(&cfg.dataset)?;
    let sites: Vec<String> = (1..=cfg.sites.max(1))
        .map(|i| format!("site-{i:02}"))
        .collect();
    let studies = select_studies(&ds, &cfg.table, cfg.studies, cfg.seed, &sites);
    if studies.is_empty() {
        return Err(SimRunError::Empty(ds.dir.display().to_string()));
    }
    let (codec, _) = codec_for(kafka)
        .await
        .map_err(|e| SimRunError::Setup(e.to_string()))?;
    let producer = Producer::new(kafka).map_err(|e| SimRunError::Setup(e.to_string()))?;
    let by_uid: Arc<HashMap<_, _>> =
        Arc::new(studies.iter().map(|s| (s.uid.clone(), s.clone())).collect());
    tracing::info!(
        studies = studies.len(),
        rate = cfg.rate,
        readers = cfg.readers,
        "simulation: replaying"
    );
    let started = Instant::now();
    let reader_cfg = ReaderConfig {
        readers: cfg.readers,
        median_read: Duration::from_millis(cfg.median_read_ms),
        triage_url: cfg.triage_url.trim_end_matches('/').to_string(),
        seed: cfg.seed,
    };
    let read_stop = shutdown.child_token();
    let readers = tokio::spawn(run_readers(
        reader_cfg,
        by_uid.clone(),
        producer.clone(),
        codec.clone(),
        read_stop.clone(),
    ));
    let total = studies.len();
    let pace = Pace {
        arrival: cfg.arrival,
        rate: cfg.rate,
        inline_max: cfg.inline_max,
        seed: cfg.seed,
    };
    let published = publish(&producer, &codec, &studies, pace, |n| {
        if n % 50 == 0 || n == total {
            tracing::info!(published = n, total, "simulation: replay progress");
        }
    })
    .await?;
    let timeout = tokio::time::sleep(Duration::from_secs(cfg.timeout_s));
    tokio::pin!(timeout);
    let mut readers = readers;
    let events = tokio::select! {
        r = &mut readers => r.unwrap_or_default(),
        _ = &mut timeout => {
            tracing::warn!("simulation: timed out waiting for reads");
            read_stop.cancel();
            readers.await.unwrap_or_default()
        }
    };
    let duration_s = started.elapsed().as_secs_f64();
    let (k, c, readers) = (kafka.clone(), codec.clone(), cfg.readers.max(1));
    let report = tokio::task::spawn_blocking(move || {
        summarise(&k, &c, &published, &events, readers, duration_s)
    })
    .await
    .map_err(|e| SimRunError::Setup(e.to_string()))?;
    report::write(&report, &cfg.report_dir)?;
    Ok(report)
}

fn summarise(
    kafka: &KafkaArgs,
    codec: &Codec,
    published: &[crate::replay::Published],
    events: &[crate::readers::ReadEvent],
    readers: usize,
    duration_s: f64,
) -> Report {
    let published_at: HashMap<&str, i64> = published
        .iter()
        .map(|p| (p.uid.as_str(), p.published_at))
        .collect();
    let mut first_decision: HashMap<String, i64> = HashMap::new();
    let mut decisions_by_uid: HashMap<String, HashSet<i64>> = HashMap::new();
    for r in count(kafka, topics::TRIAGE) {
        let Some(d) = r
            .payload
            .and_then(|p| codec.decode::<TriageDecision>(&p).ok())
        else {
            continue;
        };
        let uid = d.study.study_instance_uid.clone();
        decisions_by_uid
            .entry(uid.clone())
            .or_default()
            .insert(d.version);
        let e = first_decision.entry(uid).or_insert(d.decided_at);
        *e = (*e).min(d.decided_at);
    }
    let latency: Vec<f64> = first_decision
        .iter()
        .filter_map(|(uid, at)| published_at.get(uid.as_str()).map(|p| (at - p) as f64))
        .collect();
    let on_worklist = first_decision
        .keys()
        .filter(|u| published_at.contains_key(u.as_str()))
        .count();
    let dlq = count(kafka, topics::DLQ).len();
    let drift = count(kafka, topics::DRIFT).len();
    // Each study has one worklist entry by construction (compacted, keyed by study); a reader
    // reading the same study twice would be the visible duplicate.
    let mut seen = HashSet::new();
    let dup_reads = events
        .iter()
        .filter(|e| !seen.insert(e.uid.clone()))
        .count();
    report::build(&report::RunFacts {
        published: published.len(),
        on_worklist,
        duplicates: dup_reads,
        latency_ms: latency,
        events: events.to_vec(),
        readers,
        dead_letters: dlq,
        drift_alerts: drift,
        duration_s,
    })
}
