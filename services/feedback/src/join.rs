//! The join of radiologists' reports with predictions.
//!
//! Delivery guarantee: **at-least-once**, from the stage runtime: an input offset is committed
//! only after the labeled examples it produced are acknowledged. The catch, and how it is met:
//! a record redelivered after a crash runs the join again. The store remembers which input
//! record produced each stored labeled example, so a *redelivered* record emits its example
//! again (its first copy may never have reached the broker), while a *second copy* of the same
//! report at another offset emits nothing. Consumers of `cxr.labeled.v1` are idempotent by study
//! key for the rare duplicate.
//!
//! Either record may arrive first. Both paths store their record, then join what the store
//! holds for the study — the current report with the latest PRODUCTION and CANARY predictions
//! (SHADOW predictions are stored but never labeled) — so whichever arrives second emits.
//! Work on one study is serialised by a striped lock, so the read-compare-write in the store is
//! atomic for the study within this process; Kafka's partitioning by study UID keeps a study on
//! one consumer across processes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use cxrflow_common::time::now_millis;
use cxrflow_common::{Inbound, Outbound, Processor, StageError};
use cxrflow_contracts::{topics, Codec, LabeledExample, ModelRole, Prediction, RadiologistReport};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::FeedbackError;
use crate::metrics::FeedbackMetrics;
use crate::performance::Performance;
use crate::store::{
    PredictionOutcome, ReportOutcome, SourceRef, StoreError, StoredReport, StudyStore,
};
use crate::validate;

/// Striped per-study locks: bounded memory, and two studies rarely share a stripe.
pub struct StudyLocks {
    stripes: Vec<Mutex<()>>,
}

impl StudyLocks {
    pub fn new(stripes: usize) -> StudyLocks {
        StudyLocks {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    pub async fn lock(&self, study: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        study.hash(&mut h);
        self.stripes[(h.finish() % self.stripes.len() as u64) as usize]
            .lock()
            .await
    }
}

impl Default for StudyLocks {
    fn default() -> Self {
        StudyLocks::new(256)
    }
}

fn transient(e: StoreError) -> StageError {
    FeedbackError::from(e).into()
}

/// Builds the labeled example of `report` joined with `pred`.
pub fn labeled_example(
    report: &RadiologistReport,
    pred: &Prediction,
    labeled_at: i64,
) -> LabeledExample {
    LabeledExample {
        study: pred.study.clone(),
        report_id: report.report_id.clone(),
        reader_ref: report.reader_ref.clone(),
        read_started_at: report.read_started_at,
        read_ended_at: report.read_ended_at,
        model_name: pred.model_name.clone(),
        model_version: pred.model_version.clone(),
        model_role: pred.model_role,
        probabilities: pred.findings.clone(),
        labels: report.labels.clone(),
        blob_uri: pred.blob_uri.clone(),
        tier_at_read: report.tier_at_read.clone(),
        labeled_at,
    }
}

/// The feedback service's [`Processor`]: consumes `cxr.feedback.v1` and `cxr.predictions.v1`,
/// produces `cxr.labeled.v1`.
pub struct FeedbackProcessor {
    pub codec: Arc<Codec>,
    pub store: Arc<dyn StudyStore>,
    pub locks: Arc<StudyLocks>,
    pub performance: Arc<Performance>,
    pub metrics: FeedbackMetrics,
}

impl FeedbackProcessor {
    async fn on_report(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        let report: RadiologistReport = msg.decode(&self.codec)?;
        let uid = report.study_instance_uid.clone();
        validate::report(&report)
            .map_err(|e| StageError::from(FeedbackError::from(e)).for_study(&uid))?;
        let _guard = self.locks.lock(&uid).await;
        let outcome = self
            .store
            .put_report(&report, &source(msg), now_millis())
            .await
            .map_err(transient)?;
        self.metrics.report(outcome);
        if outcome == ReportOutcome::Stale {
            return Ok(vec![]);
        }
        // Duplicates still join: only the store can tell a redelivery from a second copy.
        self.join(&uid, msg).await
    }

    async fn on_prediction(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        let pred: Prediction = msg.decode(&self.codec)?;
        let uid = pred.study.study_instance_uid.clone();
        if uid.trim().is_empty() {
            return Err(FeedbackError::PredictionWithoutStudy.into());
        }
        let _guard = self.locks.lock(&uid).await;
        let outcome = self.store.put_prediction(&pred).await.map_err(transient)?;
        if outcome == PredictionOutcome::Stale || pred.model_role == ModelRole::Shadow {
            return Ok(vec![]);
        }
        self.join(&uid, msg).await
    }

    /// Joins the study's current report with its labelable predictions; returns what to emit.
    /// The caller holds the study's lock.
    async fn join(&self, uid: &str, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        let Some(StoredReport { report, .. }) = self.store.report(uid).await.map_err(transient)?
        else {
            return Ok(vec![]);
        };
        let preds = self.store.predictions(uid).await.map_err(transient)?;
        let src = source(msg);
        let now = now_millis();
        let mut out = Vec::new();
        for pred in preds.iter().filter(|p| p.model_role != ModelRole::Shadow) {
            let ex = labeled_example(&report, pred, now);
            let outcome = self.store.put_labeled(&ex, &src).await.map_err(transient)?;
            self.metrics.labeled(&ex, outcome);
            if outcome.emits() {
                self.performance.observe(&ex);
                out.push(Outbound::record(&self.codec, &ex)?);
            }
        }
        Ok(out)
    }
}

fn source(msg: &Inbound) -> SourceRef {
    SourceRef {
        topic: msg.topic.clone(),
        partition: msg.partition,
        offset: msg.offset,
    }
}

impl Processor for FeedbackProcessor {
    async fn process(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        match msg.logical.as_str() {
            topics::FEEDBACK => self.on_report(msg).await,
            topics::PREDICTIONS => self.on_prediction(msg).await,
            other => Err(FeedbackError::UnexpectedTopic(other.to_string()).into()),
        }
    }
}
