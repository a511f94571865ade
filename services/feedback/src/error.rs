//! Why a report or prediction could not be joined. Every variant is either *poison* (the record
//! can never succeed: dead-lettered with a stable reason) or *transient* (the study store is
//! down: retried with backoff and never committed). A report whose study never gets a
//! prediction is dead-lettered by the sweep ([`crate::sweep`]) with
//! [`FeedbackError::UnknownStudy`].

use std::time::Duration;

use cxrflow_common::StageError;
use cxrflow_contracts::EpochMillis;

use crate::store::StoreError;
use crate::validate::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// A report that breaks the contracts' rules; the reason names the rule.
    #[error("{}", .0.detail)]
    InvalidReport(#[from] Invalid),
    #[error("prediction has no study UID")]
    PredictionWithoutStudy,
    #[error("feedback does not consume {0}")]
    UnexpectedTopic(String),
    /// No PRODUCTION or CANARY prediction came for the report's study within the bound.
    #[error("no PRODUCTION or CANARY prediction for study {study} within {bound:?} of report {report_id} (received at {received_at})")]
    UnknownStudy {
        study: String,
        bound: Duration,
        report_id: String,
        received_at: EpochMillis,
    },
    /// Transient: the study store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl FeedbackError {
    /// Every reason [`FeedbackError::reason`] returns.
    pub const REASONS: &'static [&'static str] = &[
        "feedback.missing_study_uid",
        "feedback.missing_reader",
        "feedback.read_ended_before_start",
        "feedback.unknown_finding",
        "feedback.finding_labelled_twice",
        "feedback.unexpected_topic",
        "feedback.unknown_study",
        "store",
    ];

    /// The stable reason: the dead letter's `reason` and the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            FeedbackError::InvalidReport(e) => e.reason,
            FeedbackError::PredictionWithoutStudy => "feedback.missing_study_uid",
            FeedbackError::UnexpectedTopic(_) => "feedback.unexpected_topic",
            FeedbackError::UnknownStudy { .. } => "feedback.unknown_study",
            FeedbackError::Store(_) => "store",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, FeedbackError::Store(_))
    }
}

impl From<FeedbackError> for StageError {
    fn from(e: FeedbackError) -> Self {
        StageError::classified(e.reason(), e.is_transient(), e)
    }
}

#[cfg(test)]
mod tests {
    use cxrflow_contracts::ReportError;
    use cxrflow_testkit::reasons::check;

    use super::*;

    /// One of each variant (and of each [`ReportError`]). Adding a variant breaks the matches
    /// below: add it here too.
    fn one_of_each() -> Vec<FeedbackError> {
        let invalid = |e| FeedbackError::InvalidReport(Invalid::new("r1", e));
        let all = vec![
            invalid(ReportError::MissingStudyUid),
            invalid(ReportError::MissingReader),
            invalid(ReportError::ReadEndedBeforeStart {
                started: 2,
                ended: 1,
            }),
            invalid(ReportError::UnknownFindings(vec!["Hernia".into()])),
            invalid(ReportError::FindingLabelledTwice("Edema".into())),
            FeedbackError::PredictionWithoutStudy,
            FeedbackError::UnexpectedTopic("cxr.other.v1".into()),
            FeedbackError::UnknownStudy {
                study: "1.2".into(),
                bound: Duration::from_secs(60),
                report_id: "r1".into(),
                received_at: 5,
            },
            FeedbackError::Store(StoreError::Config("down".into())),
        ];
        for e in &all {
            match e {
                FeedbackError::InvalidReport(i) => match i.source {
                    ReportError::MissingStudyUid
                    | ReportError::MissingReader
                    | ReportError::ReadEndedBeforeStart { .. }
                    | ReportError::UnknownFindings(_)
                    | ReportError::FindingLabelledTwice(_) => {}
                },
                FeedbackError::PredictionWithoutStudy
                | FeedbackError::UnexpectedTopic(_)
                | FeedbackError::UnknownStudy { .. }
                | FeedbackError::Store(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_reason_is_listed_and_classified() {
        let all = one_of_each();
        let retried: Vec<_> = all.iter().filter(|e| e.is_transient()).collect();
        assert!(
            matches!(retried[..], [FeedbackError::Store(_)]),
            "{retried:?}"
        );
        check(
            FeedbackError::REASONS,
            all,
            FeedbackError::reason,
            FeedbackError::is_transient,
        );
    }

    #[test]
    fn an_invalid_report_keeps_its_words_and_its_rule() {
        let e = &one_of_each()[1];
        assert_eq!(e.to_string(), "report r1: no reader id");
        let invalid = std::error::Error::source(e).expect("the validation is kept");
        let rule = invalid.source().expect("the contracts' error is kept");
        assert_eq!(rule.to_string(), "no reader id");
    }
}
