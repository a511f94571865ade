//! What makes a report unusable, with the stable reasons its dead letter carries.

use cxrflow_contracts::{findings, RadiologistReport};

/// Why a report can never be processed: `(reason, detail)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Invalid {
    pub reason: &'static str,
    pub detail: String,
}

fn invalid(reason: &'static str, detail: impl Into<String>) -> Invalid {
    Invalid {
        reason,
        detail: detail.into(),
    }
}

/// Checks a report before it touches the store.
pub fn report(r: &RadiologistReport) -> Result<(), Invalid> {
    if r.study_instance_uid.trim().is_empty() {
        return Err(invalid(
            "feedback.missing_study_uid",
            format!("report {} has no study UID", r.report_id),
        ));
    }
    if r.reader_ref.trim().is_empty() {
        return Err(invalid(
            "feedback.missing_reader",
            format!("report {} has no reader id", r.report_id),
        ));
    }
    if r.read_ended_at < r.read_started_at {
        return Err(invalid(
            "feedback.read_ended_before_start",
            format!(
                "report {}: read ended at {} before it started at {}",
                r.report_id, r.read_ended_at, r.read_started_at
            ),
        ));
    }
    let unknown: Vec<&str> = r
        .labels
        .iter()
        .map(|l| l.finding.as_str())
        .filter(|f| !findings::is_known(f))
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(
            "feedback.unknown_finding",
            format!(
                "report {} labels findings that are not CheXpert's 14: {unknown:?}",
                r.report_id
            ),
        ));
    }
    Ok(())
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
    }
}
