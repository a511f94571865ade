//! Rust types of the records on every topic. Field names and types mirror `schemas/*.avsc`;
//! the round-trip tests in `codec` prove the two agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::AvroRecord;
use crate::topics;

/// Milliseconds since the Unix epoch (Avro `timestamp-millis`).
pub type EpochMillis = i64;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderPriority {
    Stat,
    Urgent,
    #[default]
    Routine,
}

/// What every study record carries forward from the scan event (pseudonymous ids only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyContext {
    pub site_id: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub accession_number: Option<String>,
    pub patient_ref: String,
    pub modality: String,
    pub view_position: Option<String>,
    pub patient_age_years: Option<i32>,
    pub patient_sex: Option<String>,
    pub acquired_at: EpochMillis,
    pub published_at: EpochMillis,
    pub priority_hint: OrderPriority,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanEvent {
    pub event_id: String,
    pub study: StudyContext,
    pub media_type: String,
    #[serde(with = "serde_bytes")]
    pub image_inline: Option<Vec<u8>>,
    pub image_uri: Option<String>,
    pub image_sha256: Option<String>,
    pub image_size_bytes: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestedImage {
    pub event_id: String,
    pub study: StudyContext,
    pub blob_uri: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub media_type: String,
    pub ingested_at: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageStats {
    pub mean: f64,
    pub std: f64,
    pub p01: f64,
    pub p05: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub histogram: Vec<i64>,
    pub original_width: i32,
    pub original_height: i32,
    pub bits_stored: i32,
    pub photometric: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessedImage {
    pub study: StudyContext,
    pub blob_uri: String,
    pub sha256: String,
    pub profile_id: String,
    pub width: i32,
    pub height: i32,
    pub channels: i32,
    #[serde(with = "serde_bytes")]
    pub pixels: Vec<u8>,
    pub frontal: bool,
    pub assessable: bool,
    pub not_assessable_reason: Option<String>,
    pub stats: ImageStats,
    pub preprocessed_at: EpochMillis,
    pub preprocess_ms: f64,
    /// Machine-readable code behind `assessable == false` (`view.lateral`,
    /// `eligibility.modality`, ...). Added in schema version 2.
    #[serde(default)]
    pub not_assessable_code: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelRole {
    #[default]
    Production,
    Canary,
    Shadow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingScore {
    pub finding: String,
    pub probability: f64,
    pub threshold: f64,
    /// Of the CRITICAL tier: above its threshold it makes the study CRITICAL.
    pub critical: bool,
    /// Of the URGENT tier: above its threshold it makes the study URGENT. Added in predictions
    /// schema version 5 (triage 3, labeled 2); false in older records.
    #[serde(default)]
    pub urgent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub study: StudyContext,
    pub blob_uri: String,
    pub model_name: String,
    pub model_version: String,
    pub model_role: ModelRole,
    pub execution_provider: String,
    pub assessable: bool,
    pub findings: Vec<FindingScore>,
    pub batch_size: i32,
    pub inference_ms: f64,
    pub predicted_at: EpochMillis,
    /// Added in schema version 2; absent (None) in version-1 records.
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    /// The statistics of the image the prediction was made from (its preprocessed record's
    /// `stats`), for drift's input channel. Added in schema version 3; None in older records.
    #[serde(default)]
    pub input_stats: Option<ImageStats>,
    /// Why `assessable` is false, in words a radiologist reads. Added in schema version 4.
    #[serde(default)]
    pub not_assessable_reason: Option<String>,
    /// Machine-readable code behind `assessable == false`. Added in schema version 4.
    #[serde(default)]
    pub not_assessable_code: Option<String>,
    /// Distance from the model's training reference in units of its calibrated threshold
    /// (above 1: out of distribution). Added in schema version 4.
    #[serde(default)]
    pub ood_distance: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TriageTier {
    Critical,
    Urgent,
    Routine,
    NotAssessable,
    /// Scanned, AI result not in yet (schema version 2).
    AiPending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorklistStatus {
    Open,
    Escalated,
    Read,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageDecision {
    pub study: StudyContext,
    pub version: i64,
    pub status: WorklistStatus,
    pub tier: TriageTier,
    pub score: f64,
    pub deadline: EpochMillis,
    pub top_findings: Vec<FindingScore>,
    pub model_name: Option<String>,
    pub model_version: Option<String>,
    pub reasons: Vec<String>,
    pub escalations: i32,
    pub blob_uri: String,
    pub decided_at: EpochMillis,
    /// Why the AI does not rank this study (tier NOT_ASSESSABLE). Added in schema version 2.
    #[serde(default)]
    pub not_assessable_reason: Option<String>,
    /// Machine-readable code behind NOT_ASSESSABLE. Added in schema version 2.
    #[serde(default)]
    pub not_assessable_code: Option<String>,
    /// When the study was last read (its report reached triage). An image that reached the
    /// gateway after it opens the study again. Added in schema version 4.
    #[serde(default)]
    pub read_at: Option<EpochMillis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LabelState {
    Present,
    Absent,
    Uncertain,
    NotAssessed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingLabel {
    pub finding: String,
    pub state: LabelState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadiologistReport {
    pub report_id: String,
    pub study_instance_uid: String,
    pub site_id: String,
    pub reader_ref: String,
    pub read_started_at: EpochMillis,
    pub read_ended_at: EpochMillis,
    pub labels: Vec<FindingLabel>,
    pub tier_at_read: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabeledExample {
    pub study: StudyContext,
    pub report_id: String,
    pub reader_ref: String,
    pub read_started_at: EpochMillis,
    pub read_ended_at: EpochMillis,
    pub model_name: String,
    pub model_version: String,
    pub model_role: ModelRole,
    pub probabilities: Vec<FindingScore>,
    pub labels: Vec<FindingLabel>,
    pub blob_uri: String,
    pub tier_at_read: Option<String>,
    pub labeled_at: EpochMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertState {
    Raised,
    Updated,
    Resolved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecommendedAction {
    Investigate,
    Retrain,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftWindow {
    pub start: EpochMillis,
    pub end: EpochMillis,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftAlert {
    pub alert_id: String,
    pub state: AlertState,
    pub channel: String,
    pub signal: String,
    pub statistic: String,
    pub value: f64,
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub reference_window: DriftWindow,
    pub detection_window: DriftWindow,
    pub site_id: Option<String>,
    pub model_name: String,
    pub model_version: String,
    pub severity: Severity,
    pub action: RecommendedAction,
    pub details: BTreeMap<String, String>,
    pub raised_at: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub stage: String,
    pub reason: String,
    pub error: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub payload: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
    pub study_instance_uid: Option<String>,
    pub failed_at: EpochMillis,
    pub replay_count: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateVersion {
    pub version: String,
    pub role: ModelRole,
    pub fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRollout {
    pub model_name: String,
    pub revision: i64,
    pub production_version: String,
    pub candidates: Vec<CandidateVersion>,
    pub decided_by: String,
    pub reason: String,
    pub decided_at: EpochMillis,
}

macro_rules! study_keyed {
    ($($ty:ty => $topic:expr),* $(,)?) => {$(
        impl AvroRecord for $ty {
            const TOPIC: &'static str = $topic;
            fn key(&self) -> String {
                self.study.study_instance_uid.clone()
            }
        }
    )*};
}

study_keyed! {
    ScanEvent => topics::SCAN,
    IngestedImage => topics::INGESTED,
    PreprocessedImage => topics::PREPROCESSED,
    Prediction => topics::PREDICTIONS,
    TriageDecision => topics::TRIAGE,
    LabeledExample => topics::LABELED,
}

impl AvroRecord for RadiologistReport {
    const TOPIC: &'static str = topics::FEEDBACK;
    fn key(&self) -> String {
        self.study_instance_uid.clone()
    }
}

impl AvroRecord for DriftAlert {
    const TOPIC: &'static str = topics::DRIFT;
    /// Keyed by alert id: every state of one alert (RAISED, UPDATED, RESOLVED) stays on one
    /// partition, in order, even when the strongest signal named in it changes.
    fn key(&self) -> String {
        self.alert_id.clone()
    }
}

impl AvroRecord for DeadLetter {
    const TOPIC: &'static str = topics::DLQ;
    fn key(&self) -> String {
        self.study_instance_uid.clone().unwrap_or_else(|| {
            format!(
                "{}-{}-{}",
                self.source_topic, self.source_partition, self.source_offset
            )
        })
    }
}

impl AvroRecord for ModelRollout {
    const TOPIC: &'static str = topics::MODELS;
    fn key(&self) -> String {
        self.model_name.clone()
    }
}
