//! The triage service's own metrics, and the notable events that log and count together.

use cxrflow_common::metrics::Labels;
use cxrflow_contracts::{EpochMillis, TriageDecision, TriageTier, WorklistStatus};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

fn tier_label(t: TriageTier) -> String {
    match t {
        TriageTier::Critical => "CRITICAL",
        TriageTier::Urgent => "URGENT",
        TriageTier::Routine => "ROUTINE",
        TriageTier::NotAssessable => "NOT_ASSESSABLE",
        TriageTier::AiPending => "AI_PENDING",
    }
    .to_string()
}

/// The bounded cause label of a NOT_ASSESSABLE code: its first part, from a known set.
fn cause_label(code: Option<&str>) -> String {
    const KNOWN: &[&str] = &[
        "ai",
        "blob",
        "codec",
        "decode",
        "eligibility",
        "inference",
        "ingest",
        "integrity",
        "model",
        "ood",
        "triage",
        "view",
    ];
    let area = code.and_then(|c| c.split('.').next()).unwrap_or("");
    if KNOWN.contains(&area) { area } else { "other" }.to_string()
}

fn status_label(s: WorklistStatus) -> String {
    match s {
        WorklistStatus::Open => "OPEN",
        WorklistStatus::Escalated => "ESCALATED",
        WorklistStatus::Read => "READ",
    }
    .to_string()
}

fn histogram() -> Histogram {
    // 1 minute .. ~34 hours.
    Histogram::new(exponential_buckets(60.0, 2.0, 12))
}

#[derive(Clone)]
pub struct TriageMetrics {
    worklist: Family<Labels, Gauge>,
    escalations: Counter,
    decisions: Family<Labels, Counter>,
    tombstones: Counter,
    time_in_queue: Family<Labels, Histogram, fn() -> Histogram>,
    ignored: Family<Labels, Counter>,
    unmatched_feedback: Counter,
    reports_submitted: Counter,
    unranked: Family<Labels, Counter>,
    overdue: Counter,
    dead_letters: Family<Labels, Counter>,
    reopened: Counter,
}

impl Default for TriageMetrics {
    fn default() -> Self {
        TriageMetrics {
            worklist: Family::default(),
            escalations: Counter::default(),
            decisions: Family::default(),
            tombstones: Counter::default(),
            time_in_queue: Family::new_with_constructor(histogram),
            ignored: Family::default(),
            unmatched_feedback: Counter::default(),
            reports_submitted: Counter::default(),
            unranked: Family::default(),
            overdue: Counter::default(),
            dead_letters: Family::default(),
            reopened: Counter::default(),
        }
    }
}

impl TriageMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cxrflow_triage");
        r.register(
            "worklist_studies",
            "Open studies on the worklist, by tier",
            self.worklist.clone(),
        );
        r.register(
            "escalations",
            "Studies escalated for waiting past their tier's cap",
            self.escalations.clone(),
        );
        r.register(
            "decisions_published",
            "Triage decisions published, by status",
            self.decisions.clone(),
        );
        r.register(
            "tombstones_published",
            "Read studies removed after retention",
            self.tombstones.clone(),
        );
        r.register(
            "time_in_queue_seconds",
            "Time from the start of a study's wait (its acquisition; its arrival for a prior or a wrong modality clock, --late-arrival-limit) to the radiologist's read, by tier at read",
            self.time_in_queue.clone(),
        );
        r.register(
            "predictions_ignored",
            "Predictions that changed nothing, by reason",
            self.ignored.clone(),
        );
        r.register(
            "feedback_unmatched",
            "Reports for studies never seen on the worklist, forgotten after the grace period",
            self.unmatched_feedback.clone(),
        );
        r.register(
            "reports_submitted",
            "Reports submitted through the worklist page",
            self.reports_submitted.clone(),
        );
        r.register(
            "studies_unranked",
            "Studies that became NOT_ASSESSABLE (the AI may not rank them), by cause",
            self.unranked.clone(),
        );
        r.register(
            "ai_overdue",
            "Studies still waiting for their AI result past the overdue bound",
            self.overdue.clone(),
        );
        r.register(
            "dead_letters_read",
            "Dead letters read from the study path, by what they did to their study",
            self.dead_letters.clone(),
        );
        r.register(
            "studies_reopened",
            "Read studies put back on the worklist by an image that arrived after their report",
            self.reopened.clone(),
        );
    }

    pub fn set_open(&self, counts: &[(TriageTier, i64)]) {
        for (t, n) in counts {
            self.worklist
                .get_or_create(&vec![("tier", tier_label(*t))])
                .set(*n);
        }
    }

    /// A decision was published and acknowledged; the study has been waiting since
    /// `waiting_since` (`TriagePolicy::wait_start`).
    pub fn published(
        &self,
        d: &TriageDecision,
        previous: Option<&TriageDecision>,
        waiting_since: EpochMillis,
    ) {
        self.decisions
            .get_or_create(&vec![("status", status_label(d.status))])
            .inc();
        let prev_escalations = previous.map_or(0, |p| p.escalations);
        if d.escalations > prev_escalations {
            tracing::info!(tier = ?d.tier, escalations = d.escalations, reason = d.reasons.last().map(String::as_str).unwrap_or(""), "study escalated");
            self.escalations.inc();
        }
        if d.tier == TriageTier::NotAssessable
            && previous.is_none_or(|p| p.tier != TriageTier::NotAssessable)
        {
            tracing::debug!(study = %d.study.study_instance_uid, code = d.not_assessable_code.as_deref().unwrap_or(""),
                reason = d.not_assessable_reason.as_deref().unwrap_or(""), "study not assessable by the AI");
            self.unranked
                .get_or_create(&vec![(
                    "cause",
                    cause_label(d.not_assessable_code.as_deref()),
                )])
                .inc();
        }
        if d.read_at.is_some()
            && d.status != WorklistStatus::Read
            && previous.is_none_or(|p| p.status == WorklistStatus::Read)
        {
            tracing::info!(study = %d.study.study_instance_uid, tier = ?d.tier, "read study open again: an image arrived after its report");
            self.reopened.inc();
        }
        if d.status == WorklistStatus::Read
            && previous.is_none_or(|p| p.status != WorklistStatus::Read)
        {
            // From the start of its wait, as the worklist counts it: a prior acquired years ago
            // would otherwise put decades into the reading room's turnaround quantiles.
            let waited = (d.decided_at - waiting_since).max(0) as f64 / 1000.0;
            self.time_in_queue
                .get_or_create(&vec![("tier", tier_label(d.tier))])
                .observe(waited);
        }
    }

    pub fn tombstoned(&self) {
        self.tombstones.inc();
    }

    pub fn ignored(&self, reason: &'static str) {
        tracing::debug!(reason, "prediction ignored");
        self.ignored
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn unmatched_feedback(&self, n: usize) {
        if n > 0 {
            tracing::warn!(
                count = n,
                "reports for unknown studies forgotten (their prediction never came)"
            );
            self.unmatched_feedback.inc_by(n as u64);
        }
    }

    /// A study's AI result did not come within the bound.
    pub fn overdue(&self, uid: &str, bound_ms: i64) {
        tracing::warn!(study = %uid, bound_ms, "AI result overdue: study marked NOT_ASSESSABLE");
        self.overdue.inc();
    }

    /// A dead letter from the study path was read; `outcome` is what it did (bounded).
    pub fn dead_letter_read(&self, outcome: &'static str) {
        self.dead_letters
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    pub fn report_submitted(&self) {
        self.reports_submitted.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::TriagePolicy;
    use crate::worklist::Worklist;
    use cxrflow_contracts::StudyContext;
    use cxrflow_testkit::records::{prediction, study};

    /// Time in queue counts from the start of the study's wait, as the worklist does: a prior
    /// acquired in 1997 and read 10 minutes after it arrived adds 10 minutes, not 29 years.
    #[test]
    fn time_in_queue_counts_from_the_start_of_the_wait() {
        let m = TriageMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        let arrived = 1_700_000_000_000;
        // The decision the worklist makes of it, then read 10 minutes after it arrived.
        let prior = prediction(StudyContext {
            acquired_at: 861_890_678_000,
            published_at: arrived,
            ..study("prior")
        });
        let mut read = Worklist::new(TriagePolicy::default())
            .on_prediction(&prior, arrived)
            .expect("a decision");
        read.status = WorklistStatus::Read;
        read.decided_at = arrived + 600_000;
        m.published(&read, None, arrived);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let sum = text
            .lines()
            .find(|l| l.starts_with("cxrflow_triage_time_in_queue_seconds_sum"))
            .unwrap_or_else(|| panic!("no sum in {text}"));
        assert!(sum.ends_with(" 600.0"), "{sum}");
    }
}
