//! Triage's configuration: the shared Kafka and service settings plus the ordering policy's
//! overrides, the escalation tick, retention and rebuild bounds, each with a `CXRFLOW_…`
//! environment variable and a default that suits the embedded stack.

use cxrflow_common::{BlobStoreArgs, KafkaArgs, ServiceArgs};

use crate::http;
use crate::policy::{parse_duration_ms, TriagePolicy};
use crate::worklist::OrderingMode;

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

    /// Reading deadlines from the start of a study's wait (its acquisition; see
    /// `--late-arrival-limit`) per tier, overriding the defaults
    /// (CRITICAL=30m,URGENT=2h,ROUTINE=8h,NOT_ASSESSABLE=8h).
    #[arg(long = "sla", env = "CXRFLOW_TRIAGE_SLA", default_value = "")]
    pub sla: String,

    /// Longest wait per tier before a study is escalated, overriding the defaults
    /// (CRITICAL=30m,URGENT=2h,ROUTINE=90m,NOT_ASSESSABLE=90m).
    #[arg(long = "wait-cap", env = "CXRFLOW_TRIAGE_WAIT_CAP", default_value = "")]
    pub wait_cap: String,

    /// A study acquired longer than this before it arrived (a prior, a migrated study, a wrong
    /// modality clock) is timed from its arrival: deadlines and wait caps count from it, so it
    /// is not escalated at once above every CRITICAL study acquired since. Within it (an
    /// outage's backlog) a study is timed from its acquisition.
    #[arg(long = "late-arrival-limit", env = "CXRFLOW_TRIAGE_LATE_ARRIVAL_LIMIT", default_value = "24h", value_parser = parse_duration_ms)]
    pub late_arrival_limit_ms: i64,

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
            late_arrival_limit_ms: TriagePolicy::default().late_arrival_limit_ms,
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
        p.late_arrival_limit_ms = self.late_arrival_limit_ms;
        Ok(p)
    }
}
