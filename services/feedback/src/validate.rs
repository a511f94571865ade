//! What makes a report unusable, with the stable reasons its dead letter carries. The rules are
//! the contracts' ([`RadiologistReport::validate`], the ones triage applies before it publishes
//! a report); this module names them as feedback's dead-letter reasons.

use cxrflow_contracts::{RadiologistReport, ReportError};

/// Why a report can never be processed: `(reason, detail)`, and the contracts' error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Invalid {
    pub reason: &'static str,
    pub detail: String,
    #[source]
    pub source: ReportError,
}

impl Invalid {
    /// The report `report_id` broke the rule `e`.
    pub fn new(report_id: &str, e: ReportError) -> Invalid {
        Invalid {
            reason: reason(&e),
            detail: format!("report {report_id}: {e}"),
            source: e,
        }
    }
}

/// Feedback's dead-letter reason for a report error.
fn reason(e: &ReportError) -> &'static str {
    match e {
        ReportError::MissingStudyUid => "feedback.missing_study_uid",
        ReportError::MissingReader => "feedback.missing_reader",
        ReportError::ReadEndedBeforeStart { .. } => "feedback.read_ended_before_start",
        ReportError::UnknownFindings(_) => "feedback.unknown_finding",
        ReportError::FindingLabelledTwice(_) => "feedback.finding_labelled_twice",
    }
}

/// Checks a report before it touches the store.
pub fn report(r: &RadiologistReport) -> Result<(), Invalid> {
    r.validate().map_err(|e| Invalid::new(&r.report_id, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use cxrflow_contracts::{FindingLabel, LabelState};

    #[test]
    fn reasons() {
        let ok = fixtures::report("1.1", "r", 10_000_000, LabelState::Present);
        assert_eq!(report(&ok), Ok(()));
        let mut r = ok.clone();
        r.study_instance_uid = " ".into();
        assert_eq!(report(&r).unwrap_err().reason, "feedback.missing_study_uid");
        let mut r = ok.clone();
        r.reader_ref.clear();
        assert_eq!(report(&r).unwrap_err().reason, "feedback.missing_reader");
        let mut r = ok.clone();
        r.read_ended_at = r.read_started_at - 1;
        assert_eq!(
            report(&r).unwrap_err().reason,
            "feedback.read_ended_before_start"
        );
        let mut r = ok;
        r.labels.push(FindingLabel {
            finding: "Hernia".into(),
            state: LabelState::Present,
        });
        let e = report(&r).unwrap_err();
        assert_eq!(e.reason, "feedback.unknown_finding");
        assert!(e.detail.contains("Hernia"));
        let mut r = fixtures::report("1.1", "r", 10_000_000, LabelState::Present);
        r.labels.push(r.labels[0].clone());
        assert_eq!(
            report(&r).unwrap_err().reason,
            "feedback.finding_labelled_twice"
        );
    }
}
