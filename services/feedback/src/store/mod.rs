//! The study store: predictions, radiologists' reports and labeled examples, behind one async
//! interface with two real implementations, [`SqliteStore`] (the embedded default) and
//! [`ScyllaStore`] (the distributed shape). Both run the same test suite (`suite.rs`).
//!
//! The decisions that make the service idempotent — which report is current, whether a labeled
//! example is new, changed, unchanged or a redelivery — are pure functions here, so both
//! implementations decide identically; the implementations only persist.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use cxrflow_contracts::{EpochMillis, LabeledExample, ModelRole, Prediction, RadiologistReport};
use sha2::{Digest, Sha256};

pub mod cql;
mod scylla;
mod sqlite;
#[cfg(test)]
mod suite;

pub use self::scylla::{ScyllaArgs, ScyllaStore};
pub use self::sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite store {path}: {detail}")]
    Sqlite { path: String, detail: String },
    #[error("scylla store {keyspace}: {detail}")]
    Scylla { keyspace: String, detail: String },
    #[error("stored {what} for study {study} does not decode: {detail}")]
    Corrupt {
        what: &'static str,
        study: String,
        detail: String,
    },
    #[error("store URI {0:?}: expected sqlite:PATH or scylla://host:port/keyspace")]
    BadUri(String),
    #[error("store configuration: {0}")]
    Config(String),
}

/// Where a record came from on Kafka (the physical topic), kept with what it produced so a
/// redelivery of the same record can be told apart from a second copy of the same report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// Where a report stands in the join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportState {
    /// No PRODUCTION/CANARY prediction yet.
    Pending,
    /// At least one labeled example was built from it.
    Joined,
    /// Waited past the bound and was dead-lettered (`feedback.unknown_study`). A prediction
    /// that still arrives later joins it anyway: ground truth is too valuable to drop.
    Expired,
}

impl ReportState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Pending => "pending",
            ReportState::Joined => "joined",
            ReportState::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> ReportState {
        match s {
            "joined" => ReportState::Joined,
            "expired" => ReportState::Expired,
            _ => ReportState::Pending,
        }
    }
}

/// The current report of a study with its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    pub report: RadiologistReport,
    pub state: ReportState,
    pub received_at: EpochMillis,
    pub source: SourceRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// First report for the study.
    Inserted,
    /// A correction: newer `read_ended_at` than the stored one; it is current now.
    Superseded,
    /// The stored report again (same id, read time and labels): nothing changed.
    Duplicate,
    /// Older than (or conflicting at the same read time with) the stored one: ignored.
    Stale,
}

impl ReportOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportOutcome::Inserted => "inserted",
            ReportOutcome::Superseded => "superseded",
            ReportOutcome::Duplicate => "duplicate",
            ReportOutcome::Stale => "stale",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionOutcome {
    /// New, or newer than the stored prediction of the same study and role.
    Stored,
    /// The stored prediction again.
    Unchanged,
    /// Older than the stored one of the same study, role and image, or of another image of the
    /// study that tells less (see [`decide_prediction`]): ignored.
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabeledOutcome {
    /// First example for the study and role: emit it.
    Inserted,
    /// Different report or prediction than the stored example (a correction): emit it.
    Updated,
    /// The same example, produced earlier by another input record: emit nothing.
    Unchanged,
    /// The same example, produced earlier by *this* input record: the record is being
    /// redelivered (its first output may never have been acknowledged), so emit it again.
    Redelivered,
}

impl LabeledOutcome {
    pub fn emits(self) -> bool {
        !matches!(self, LabeledOutcome::Unchanged)
    }
}

/// Everything the feedback service persists. Implementations only store and fetch; the
/// decisions are the pure functions of this module, so every implementation agrees.
///
/// Read-modify-write methods (`put_*`) are atomic per study within one process only when the
/// caller serialises work per study (the processor does, with striped locks); across processes
/// Kafka's partitioning by study UID keeps a study on one consumer.
#[async_trait]
pub trait StudyStore: Send + Sync {
    /// Stores `p` as the latest prediction of its study and role unless a newer one is stored.
    async fn put_prediction(&self, p: &Prediction) -> Result<PredictionOutcome, StoreError>;
    /// The latest prediction of every role stored for `study`.
    async fn predictions(&self, study: &str) -> Result<Vec<Prediction>, StoreError>;
    /// Stores `r` as the study's current report when it is new or a correction (see
    /// [`decide_report`]); a new or corrected report starts [`ReportState::Pending`].
    async fn put_report(
        &self,
        r: &RadiologistReport,
        source: &SourceRef,
        received_at: EpochMillis,
    ) -> Result<ReportOutcome, StoreError>;
    /// The study's current report.
    async fn report(&self, study: &str) -> Result<Option<StoredReport>, StoreError>;
    /// Reports still pending that were received before `received_before`, oldest first.
    async fn pending_reports(
        &self,
        received_before: EpochMillis,
    ) -> Result<Vec<StoredReport>, StoreError>;
    /// Marks the study's current report `state` if it still is `report_id`; false otherwise.
    async fn set_report_state(
        &self,
        study: &str,
        report_id: &str,
        state: ReportState,
    ) -> Result<bool, StoreError>;
    /// Stores a labeled example for (study, role) and marks the study's report joined; the
    /// outcome (see [`decide_labeled`]) says whether to emit it.
    async fn put_labeled(
        &self,
        ex: &LabeledExample,
        source: &SourceRef,
    ) -> Result<LabeledOutcome, StoreError>;
    /// The current labeled example of `study` for `role`.
    async fn labeled(
        &self,
        study: &str,
        role: ModelRole,
    ) -> Result<Option<LabeledExample>, StoreError>;
    /// Current labeled examples of `model_version` labeled at or after `since`, oldest first.
    async fn labeled_since(
        &self,
        model_version: &str,
        since: EpochMillis,
    ) -> Result<Vec<LabeledExample>, StoreError>;
}

/// Whether `new` replaces `stored` as the study's current report.
pub fn decide_report(stored: Option<&RadiologistReport>, new: &RadiologistReport) -> ReportOutcome {
    match stored {
        None => ReportOutcome::Inserted,
        Some(old) if new.read_ended_at > old.read_ended_at => ReportOutcome::Superseded,
        Some(old) if old == new => ReportOutcome::Duplicate,
        // Same read time with other content, or older: the stored one stays (deterministic,
        // whatever order the two arrive in — ties keep the first).
        Some(_) => ReportOutcome::Stale,
    }
}

/// Whether `new` replaces `stored` as the prediction of its study and role that reports are
/// joined with. Of one image, the newest. Of a study of several images (a PA and its lateral, a
/// repeat film), the one that tells most about the study, whatever order they arrive in: a
/// scored image over a not-assessable one (a lateral's prediction after its PA's would
/// otherwise label the study with no scores), then the most suspicious, by its highest
/// probability over its finding's threshold, as triage ranks a study by its most urgent image.
pub fn decide_prediction(stored: Option<&Prediction>, new: &Prediction) -> PredictionOutcome {
    let Some(old) = stored else {
        return PredictionOutcome::Stored;
    };
    if old == new {
        return PredictionOutcome::Unchanged;
    }
    let replaces = if old.study.sop_instance_uid == new.study.sop_instance_uid {
        new.predicted_at >= old.predicted_at
    } else {
        match (scored(old), scored(new)) {
            (false, true) => true,
            (true, false) => false,
            (true, true) => suspicion(new) > suspicion(old),
            // Two not assessable: the newest, as for one image.
            (false, false) => new.predicted_at >= old.predicted_at,
        }
    };
    if replaces {
        PredictionOutcome::Stored
    } else {
        PredictionOutcome::Stale
    }
}

/// Whether a prediction scored its image.
fn scored(p: &Prediction) -> bool {
    p.assessable && !p.findings.is_empty()
}

/// A scored image's highest probability over its finding's threshold.
fn suspicion(p: &Prediction) -> f64 {
    p.findings
        .iter()
        .filter(|f| f.threshold > 0.0 && f.probability.is_finite())
        .map(|f| f.probability / f.threshold)
        .fold(0.0, f64::max)
}

/// What a stored labeled example is compared by: the report and prediction it joins, not the
/// time it was built.
pub fn fingerprint(ex: &LabeledExample) -> String {
    let identity = serde_json::json!({
        "report_id": ex.report_id,
        "reader": ex.reader_ref,
        "read_started_at": ex.read_started_at,
        "read_ended_at": ex.read_ended_at,
        "labels": ex.labels,
        "tier": ex.tier_at_read,
        "model_name": ex.model_name,
        "model_version": ex.model_version,
        "probabilities": ex.probabilities,
        "blob_uri": ex.blob_uri,
    });
    let digest = Sha256::digest(identity.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a labeled example with `new_fp`, produced by `source`, is news.
pub fn decide_labeled(
    stored: Option<(&str, &str)>,
    new_fp: &str,
    source: &SourceRef,
) -> LabeledOutcome {
    match stored {
        None => LabeledOutcome::Inserted,
        Some((fp, _)) if fp != new_fp => LabeledOutcome::Updated,
        Some((_, src)) if src == source.to_string() => LabeledOutcome::Redelivered,
        Some(_) => LabeledOutcome::Unchanged,
    }
}

pub(crate) fn role_str(role: ModelRole) -> &'static str {
    match role {
        ModelRole::Production => "PRODUCTION",
        ModelRole::Canary => "CANARY",
        ModelRole::Shadow => "SHADOW",
    }
}

/// Days since the Unix epoch of a timestamp (the export partition of the ScyllaDB store).
pub(crate) fn epoch_day(ms: EpochMillis) -> i32 {
    ms.div_euclid(86_400_000) as i32
}

/// Which store to open: `sqlite:PATH` or `scylla://host:port[,host:port]/keyspace[?rf=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUri {
    Sqlite(PathBuf),
    Scylla {
        nodes: Vec<String>,
        keyspace: String,
        replication_factor: u32,
    },
}

impl FromStr for StoreUri {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadUri(s.to_string());
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(StoreUri::Sqlite(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("scylla://").ok_or_else(bad)?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = rest.split_once('/').ok_or_else(bad)?;
        let valid_ks = !keyspace.is_empty()
            && keyspace.len() <= 48
            && keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && keyspace
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic());
        if !valid_ks || hosts.is_empty() {
            return Err(bad());
        }
        let mut replication_factor = 1;
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("rf" | "replication_factor", v)) => {
                    replication_factor = v.parse().map_err(|_| bad())?
                }
                _ => return Err(bad()),
            }
        }
        Ok(StoreUri::Scylla {
            nodes: hosts.split(',').map(str::to_string).collect(),
            keyspace: keyspace.to_string(),
            replication_factor,
        })
    }
}

impl fmt::Display for StoreUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUri::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUri::Scylla {
                nodes,
                keyspace,
                replication_factor,
            } => write!(
                f,
                "scylla://{}/{keyspace}?rf={replication_factor}",
                nodes.join(",")
            ),
        }
    }
}

/// Opens (and migrates) the store `uri` names; `access` holds the credentials and TLS settings
/// of a `scylla://` store.
pub async fn open(uri: &StoreUri, access: &ScyllaArgs) -> Result<Arc<dyn StudyStore>, StoreError> {
    Ok(match uri {
        StoreUri::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        StoreUri::Scylla {
            nodes,
            keyspace,
            replication_factor,
        } => Arc::new(ScyllaStore::connect(nodes, keyspace, *replication_factor, access).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse() {
        assert_eq!(
            "sqlite:.cxrflow/feedback.db".parse::<StoreUri>().unwrap(),
            StoreUri::Sqlite(".cxrflow/feedback.db".into())
        );
        assert_eq!(
            "scylla://10.0.0.1:9042,10.0.0.2:9042/cxrflow?rf=3"
                .parse::<StoreUri>()
                .unwrap(),
            StoreUri::Scylla {
                nodes: vec!["10.0.0.1:9042".into(), "10.0.0.2:9042".into()],
                keyspace: "cxrflow".into(),
                replication_factor: 3
            }
        );
        for bad in [
            "postgres://x",
            "sqlite:",
            "scylla://h:1/",
            "scylla://h:1/bad-ks",
            "scylla://h:1/ks?x=1",
        ] {
            assert!(bad.parse::<StoreUri>().is_err(), "{bad}");
        }
    }

    #[test]
    fn labeled_decisions() {
        let src = SourceRef {
            topic: "t".into(),
            partition: 0,
            offset: 7,
        };
        let other = SourceRef {
            offset: 8,
            ..src.clone()
        };
        assert_eq!(decide_labeled(None, "a", &src), LabeledOutcome::Inserted);
        assert_eq!(
            decide_labeled(Some(("a", "t/0/7")), "a", &src),
            LabeledOutcome::Redelivered
        );
        assert_eq!(
            decide_labeled(Some(("a", "t/0/7")), "a", &other),
            LabeledOutcome::Unchanged
        );
        assert_eq!(
            decide_labeled(Some(("a", "t/0/7")), "b", &other),
            LabeledOutcome::Updated
        );
    }
}
