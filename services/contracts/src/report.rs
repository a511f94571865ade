//! What makes a radiologist's report usable: one set of rules that triage applies before it
//! publishes a report and feedback applies before a report touches its store, so a report the
//! worklist accepts is one feedback can learn from.

use std::collections::BTreeSet;

use crate::findings;
use crate::records::{EpochMillis, FindingLabel, RadiologistReport};

/// Why a report can never be used. The report id is not repeated here: whoever reports the
/// error names the report (a dead letter's detail, an HTTP answer about one request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("no study UID")]
    MissingStudyUid,
    #[error("no reader id")]
    MissingReader,
    #[error("read ended at {ended} before it started at {started}")]
    ReadEndedBeforeStart {
        started: EpochMillis,
        ended: EpochMillis,
    },
    /// Every label naming a finding outside the 14, in label order.
    #[error("unknown findings {0:?} (not CheXpert's 14)")]
    UnknownFindings(Vec<String>),
    #[error("finding {0:?} labelled twice")]
    FindingLabelledTwice(String),
}

impl RadiologistReport {
    /// Checks the report: a study UID and a reader, a read that ends after it starts, and
    /// [`RadiologistReport::validate_labels`].
    pub fn validate(&self) -> Result<(), ReportError> {
        if self.study_instance_uid.trim().is_empty() {
            return Err(ReportError::MissingStudyUid);
        }
        if self.reader_ref.trim().is_empty() {
            return Err(ReportError::MissingReader);
        }
        if self.read_ended_at < self.read_started_at {
            return Err(ReportError::ReadEndedBeforeStart {
                started: self.read_started_at,
                ended: self.read_ended_at,
            });
        }
        Self::validate_labels(&self.labels)
    }

    /// Checks labels alone (the worklist does before it builds the report): each names one of
    /// the 14 findings, none twice.
    pub fn validate_labels(labels: &[FindingLabel]) -> Result<(), ReportError> {
        let unknown: Vec<String> = labels
            .iter()
            .filter(|l| !findings::is_known(&l.finding))
            .map(|l| l.finding.clone())
            .collect();
        if !unknown.is_empty() {
            return Err(ReportError::UnknownFindings(unknown));
        }
        let mut seen = BTreeSet::new();
        match labels.iter().find(|l| !seen.insert(l.finding.as_str())) {
            Some(l) => Err(ReportError::FindingLabelledTwice(l.finding.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::LabelState;

    fn label(finding: &str) -> FindingLabel {
        FindingLabel {
            finding: finding.into(),
            state: LabelState::Present,
        }
    }

    #[test]
    fn each_rule() {
        let ok = RadiologistReport {
            report_id: "r1".into(),
            study_instance_uid: "1.2".into(),
            site_id: "a".into(),
            reader_ref: "reader".into(),
            read_started_at: 10,
            read_ended_at: 20,
            labels: vec![label("Edema"), label("No Finding")],
            tier_at_read: None,
        };
        assert_eq!(ok.validate(), Ok(()));
        let mut r = ok.clone();
        r.study_instance_uid = " ".into();
        assert_eq!(r.validate(), Err(ReportError::MissingStudyUid));
        let mut r = ok.clone();
        r.reader_ref.clear();
        assert_eq!(r.validate(), Err(ReportError::MissingReader));
        let mut r = ok.clone();
        r.read_ended_at = 9;
        assert_eq!(
            r.validate(),
            Err(ReportError::ReadEndedBeforeStart {
                started: 10,
                ended: 9
            })
        );
        let mut r = ok.clone();
        r.labels
            .extend([label("Hernia"), label("Edema"), label("Mass")]);
        let e = r.validate().unwrap_err();
        assert_eq!(
            e,
            ReportError::UnknownFindings(vec!["Hernia".into(), "Mass".into()])
        );
        assert!(e.to_string().contains("Hernia"), "{e}");
        let mut r = ok;
        r.labels.push(label("Edema"));
        assert_eq!(
            r.validate().unwrap_err().to_string(),
            "finding \"Edema\" labelled twice"
        );
    }
}
