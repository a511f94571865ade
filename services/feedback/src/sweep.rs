//! The unknown-study sweep: a report whose study has no PRODUCTION/CANARY prediction within
//! the bound is dead-lettered (`feedback.unknown_study`).
//!
//! Why a periodic task and not a lazy check: a lazy check needs a later record of the same
//! study to trigger it, and the study is exactly the one for which nothing else arrives. The
//! sweep reads the store's pending reports (bounded work: only pending ones are indexed),
//! sends each dead letter and waits for the broker's acknowledgement, and only then marks the
//! report expired — at-least-once: a crash in between dead-letters it again on restart. It
//! holds the study's lock, so a prediction joining at that moment either wins (the report is no
//! longer pending) or finds it expired and still joins it (ground truth is not dropped).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::kafka::stage::sleep_or_cancel;
use cxrflow_common::time::now_millis;
use cxrflow_common::StageDeps;
use cxrflow_contracts::DeadLetter;
use tokio_util::sync::CancellationToken;

use crate::error::FeedbackError;
use crate::join::StudyLocks;
use crate::metrics::FeedbackMetrics;
use crate::store::{ReportState, StoredReport, StudyStore};

pub struct Sweep {
    pub store: Arc<dyn StudyStore>,
    pub locks: Arc<StudyLocks>,
    pub deps: StageDeps,
    pub metrics: FeedbackMetrics,
    pub service: &'static str,
    /// How long a report may wait for its prediction.
    pub bound: Duration,
}

impl Sweep {
    /// How often to look: a quarter of the bound, between 100 ms and 30 s.
    pub fn interval(&self) -> Duration {
        (self.bound / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.once().await {
                tracing::warn!(error = %e, "unknown-study sweep failed; retrying next round");
            }
            if sleep_or_cancel(self.interval(), &shutdown).await {
                return;
            }
        }
    }

    /// One round; returns how many reports were dead-lettered.
    pub async fn once(&self) -> anyhow::Result<usize> {
        let cutoff = now_millis() - self.bound.as_millis() as i64;
        let mut n = 0;
        for pending in self.store.pending_reports(cutoff).await? {
            let uid = pending.report.study_instance_uid.clone();
            let _guard = self.locks.lock(&uid).await;
            match self.store.report(&uid).await? {
                Some(now) if now.state == ReportState::Pending && now.report == pending.report => {}
                _ => continue, // joined or replaced meanwhile
            }
            let dl = self.dead_letter(&pending);
            self.deps
                .producer
                .send(&self.deps.codec, &dl, &BTreeMap::new())
                .await?;
            self.deps.metrics.dead_lettered(
                &dl.reason,
                &dl.error,
                &pending.source.topic,
                pending.source.partition,
                pending.source.offset,
                Some(&uid),
            );
            self.metrics.unknown_study();
            self.store
                .set_report_state(&uid, &pending.report.report_id, ReportState::Expired)
                .await?;
            n += 1;
        }
        Ok(n)
    }

    fn dead_letter(&self, p: &StoredReport) -> DeadLetter {
        let uid = &p.report.study_instance_uid;
        let e = FeedbackError::UnknownStudy {
            study: uid.clone(),
            bound: self.bound,
            report_id: p.report.report_id.clone(),
            received_at: p.received_at,
        };
        DeadLetter {
            stage: self.service.to_string(),
            reason: e.reason().to_string(),
            error: e.to_string(),
            source_topic: p.source.topic.clone(),
            source_partition: p.source.partition,
            source_offset: p.source.offset,
            key: Some(uid.as_bytes().to_vec()),
            // The report as it was consumed, re-encoded: replaying the dead letter feeds it back.
            payload: self.deps.codec.encode(&p.report).ok(),
            headers: BTreeMap::new(),
            study_instance_uid: Some(uid.clone()),
            failed_at: now_millis(),
            replay_count: 0,
        }
    }
}
