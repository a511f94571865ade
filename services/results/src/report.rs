//! What a triage decision tells the hospital's systems, and whether it tells them anything:
//! pure, no I/O, the clock passed in.
//!
//! Delivered: every decision version the AI or the worklist changed while the study is still
//! unread — CRITICAL, URGENT and ROUTINE with the findings over their threshold, and
//! NOT_ASSESSABLE with its reason ("not assessed by AI: …"), since a radiologist must know the
//! AI did not look. Not delivered: AI_PENDING (the AI has said nothing yet; an SR saying "pending"
//! would only be superseded), READ (the radiologist's own report exists by then) and decisions
//! older than `max_age` (a service started on a long-compacted worklist does not flood the PACS
//! with old studies).

use cxrflow_contracts::{EpochMillis, FindingScore, TriageDecision, TriageTier, WorklistStatus};
use serde::{Deserialize, Serialize};

/// The statement every output carries, in these words.
pub const TRIAGE_AID_STATEMENT: &str = "cxrflow AI triage result: a worklist prioritisation aid, \
not a diagnosis. Not verified by a radiologist; the images must be read by a radiologist.";

/// What a scored result adds when no patient age reached the AI.
pub const AGE_UNKNOWN_SUMMARY: &str =
    "patient age unknown: not checked against the model's intended age range";

/// One decision version as the outputs state it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultReport {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub modality: String,
    pub site_id: String,
    pub version: i64,
    pub tier: TriageTier,
    pub escalated: bool,
    /// The findings over their operating threshold, most important first.
    pub findings: Vec<FindingScore>,
    pub model_name: Option<String>,
    pub model_version: Option<String>,
    /// Why the AI did not assess the study (tier NOT_ASSESSABLE): code and words.
    pub not_assessed: Option<(String, String)>,
    pub reasons: Vec<String>,
    pub decided_at: EpochMillis,
    pub acquired_at: EpochMillis,
    /// Scored although no patient age reached the AI: the summary says so.
    #[serde(default)]
    pub age_unknown: bool,
}

impl ResultReport {
    /// `study@version`: names the delivery and seeds the UIDs and identifiers derived from it.
    pub fn key(&self) -> String {
        format!("{}@{}", self.study_instance_uid, self.version)
    }

    /// The tier in words.
    pub fn tier_words(&self) -> &'static str {
        tier_words(self.tier)
    }

    /// The model as one string, `name@version` (or "no model" when the AI never scored it).
    pub fn model(&self) -> String {
        match (&self.model_name, &self.model_version) {
            (Some(n), Some(v)) => format!("{n}@{v}"),
            (Some(n), None) => n.clone(),
            _ => "no model result".to_string(),
        }
    }

    /// One line a radiologist reads: tier, findings or the reason not assessed.
    pub fn summary(&self) -> String {
        if let Some((_, reason)) = &self.not_assessed {
            return format!("Not assessed by AI: {reason}");
        }
        let line = self.scored_summary();
        if self.age_unknown {
            format!("{line}; {AGE_UNKNOWN_SUMMARY}")
        } else {
            line
        }
    }

    fn scored_summary(&self) -> String {
        if self.findings.is_empty() {
            return format!(
                "AI triage tier {}: no finding over its threshold",
                self.tier_words()
            );
        }
        let f: Vec<String> = self
            .findings
            .iter()
            .map(|f| {
                format!(
                    "{} {:.2} (threshold {:.2})",
                    f.finding, f.probability, f.threshold
                )
            })
            .collect();
        format!("AI triage tier {}: {}", self.tier_words(), f.join(", "))
    }
}

pub fn tier_words(t: TriageTier) -> &'static str {
    match t {
        TriageTier::Critical => "CRITICAL",
        TriageTier::Urgent => "URGENT",
        TriageTier::Routine => "ROUTINE",
        TriageTier::NotAssessable => "NOT_ASSESSABLE",
        TriageTier::AiPending => "AI_PENDING",
    }
}

/// Why a decision is not delivered (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    AiPending,
    Read,
    TooOld,
}

impl Skip {
    pub fn label(self) -> &'static str {
        match self {
            Skip::AiPending => "ai_pending",
            Skip::Read => "read",
            Skip::TooOld => "too_old",
        }
    }
}

/// The report a decision leads to, or why none.
pub fn plan(d: &TriageDecision, now: EpochMillis, max_age_ms: i64) -> Result<ResultReport, Skip> {
    if d.tier == TriageTier::AiPending {
        return Err(Skip::AiPending);
    }
    if d.status == WorklistStatus::Read {
        return Err(Skip::Read);
    }
    if max_age_ms > 0 && now.saturating_sub(d.decided_at) > max_age_ms {
        return Err(Skip::TooOld);
    }
    let not_assessed = (d.tier == TriageTier::NotAssessable).then(|| {
        (
            d.not_assessable_code
                .clone()
                .unwrap_or_else(|| "unknown".to_string()),
            d.not_assessable_reason
                .clone()
                .unwrap_or_else(|| "no reason given".to_string()),
        )
    });
    let findings = if not_assessed.is_some() {
        vec![]
    } else {
        d.top_findings
            .iter()
            .filter(|f| f.probability.is_finite() && f.probability >= f.threshold)
            .cloned()
            .collect()
    };
    let age_unknown = not_assessed.is_none() && d.study.patient_age_years.is_none();
    Ok(ResultReport {
        study_instance_uid: d.study.study_instance_uid.clone(),
        series_instance_uid: d.study.series_instance_uid.clone(),
        sop_instance_uid: d.study.sop_instance_uid.clone(),
        modality: d.study.modality.clone(),
        site_id: d.study.site_id.clone(),
        version: d.version,
        tier: d.tier,
        escalated: d.status == WorklistStatus::Escalated,
        findings,
        model_name: d.model_name.clone(),
        model_version: d.model_version.clone(),
        not_assessed,
        reasons: d.reasons.clone(),
        decided_at: d.decided_at,
        acquired_at: d.study.acquired_at,
        age_unknown,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cxrflow_contracts::{OrderPriority, StudyContext};

    pub fn decision(tier: TriageTier) -> TriageDecision {
        TriageDecision {
            study: StudyContext {
                site_id: "site-a".into(),
                study_instance_uid: "1.2.826.0.1.3680043.8.498.1".into(),
                series_instance_uid: "1.2.826.0.1.3680043.8.498.1.1".into(),
                sop_instance_uid: "1.2.826.0.1.3680043.8.498.1.1.1".into(),
                accession_number: Some("acc-00".into()),
                patient_ref: "pt-00".into(),
                modality: "CR".into(),
                view_position: Some("PA".into()),
                patient_age_years: Some(61),
                patient_sex: None,
                acquired_at: 1_700_000_000_000,
                published_at: 1_700_000_000_000,
                priority_hint: OrderPriority::Routine,
            },
            version: 2,
            status: WorklistStatus::Open,
            tier,
            score: 0.9,
            deadline: 1_700_000_000_000,
            top_findings: vec![
                FindingScore {
                    finding: "Pneumothorax".into(),
                    probability: 0.91,
                    threshold: 0.4,
                    critical: true,
                    urgent: false,
                },
                FindingScore {
                    finding: "Cardiomegaly".into(),
                    probability: 0.2,
                    threshold: 0.5,
                    critical: false,
                    urgent: false,
                },
            ],
            model_name: Some("cxr-small".into()),
            model_version: Some("1.2.0".into()),
            reasons: vec!["critical finding Pneumothorax 0.91 >= threshold 0.40".into()],
            escalations: 0,
            blob_uri: "file:///x".into(),
            decided_at: 1_700_000_001_000,
            not_assessable_reason: None,
            not_assessable_code: None,
            read_at: None,
        }
    }

    #[test]
    fn only_findings_over_threshold_are_reported() {
        let r = plan(&decision(TriageTier::Critical), 1_700_000_002_000, 0).unwrap();
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].finding, "Pneumothorax");
        assert!(r.summary().contains("CRITICAL"), "{}", r.summary());
        assert_eq!(r.key(), "1.2.826.0.1.3680043.8.498.1@2");
    }

    #[test]
    fn pending_read_and_old_decisions_are_not_delivered() {
        let now = 1_700_000_002_000;
        assert_eq!(
            plan(&decision(TriageTier::AiPending), now, 0),
            Err(Skip::AiPending)
        );
        let mut d = decision(TriageTier::Critical);
        d.status = WorklistStatus::Read;
        assert_eq!(plan(&d, now, 0), Err(Skip::Read));
        let d = decision(TriageTier::Critical);
        assert_eq!(plan(&d, now + 10_000, 5_000), Err(Skip::TooOld));
        assert!(plan(&d, now, 5_000).is_ok());
    }

    #[test]
    fn a_score_without_a_patient_age_says_so() {
        let now = 1_700_000_002_000;
        let mut d = decision(TriageTier::Critical);
        let aged = plan(&d, now, 0).unwrap();
        assert!(!aged.age_unknown);
        d.study.patient_age_years = None;
        let r = plan(&d, now, 0).unwrap();
        assert_eq!(
            r.summary(),
            format!(
                "AI triage tier CRITICAL: Pneumothorax 0.91 (threshold 0.40); patient age \
                 unknown: not checked against the model's intended age range"
            )
        );
        assert_eq!(
            r.summary(),
            format!("{}; {AGE_UNKNOWN_SUMMARY}", aged.summary())
        );
        // A study the AI did not assess says why, and nothing about an age it never used.
        let mut na = decision(TriageTier::NotAssessable);
        na.study.patient_age_years = None;
        na.not_assessable_reason = Some("image unlike the training data".into());
        let r = plan(&na, now, 0).unwrap();
        assert!(!r.age_unknown);
        assert!(!r.summary().contains("patient age"), "{}", r.summary());
    }

    #[test]
    fn not_assessable_states_why_and_lists_no_finding() {
        let mut d = decision(TriageTier::NotAssessable);
        d.not_assessable_code = Some("ood.distance".into());
        d.not_assessable_reason = Some("image unlike the training data".into());
        let r = plan(&d, 1_700_000_002_000, 0).unwrap();
        assert!(r.findings.is_empty());
        assert_eq!(
            r.summary(),
            "Not assessed by AI: image unlike the training data"
        );
    }
}
