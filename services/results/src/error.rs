//! Why a decision's results could not be queued or delivered. An output that cannot be
//! rendered is *poison* (dead-lettered by the stage with a stable reason); a queue that cannot
//! be written is *transient* (retried with backoff, never committed). A destination's refusal
//! is dead-lettered by its delivery task ([`crate::deliver`]), with the destination's answer as
//! the error, under `results.<destination>_refused`.

use cxrflow_common::StageError;

use crate::queue::QueueError;
use crate::sr::SrError;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The DICOM SR could not be encoded.
    #[error("{0}")]
    RenderSr(#[source] SrError),
    /// The FHIR bundle could not be serialised.
    #[error("{0}")]
    RenderFhir(#[source] serde_json::Error),
    /// Transient: the destination's queue could not be written.
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// Transient: the queue write's task was cancelled or panicked.
    #[error("{0}")]
    QueueTask(#[source] tokio::task::JoinError),
    /// The PACS refused the SR (C-STORE); the destination's answer.
    #[error("{0}")]
    DicomRefused(String),
    /// The PACS refused the SR (STOW-RS); the destination's answer.
    #[error("{0}")]
    StowRefused(String),
    /// The FHIR server refused the bundle; the destination's answer.
    #[error("{0}")]
    FhirRefused(String),
}

impl ResultsError {
    /// Every reason [`ResultsError::reason`] returns.
    pub const REASONS: &'static [&'static str] = &[
        "results.render_failed",
        "results.queue",
        "results.dicom_refused",
        "results.stow_refused",
        "results.fhir_refused",
    ];

    /// The stable reason: the dead letter's `reason` and the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ResultsError::RenderSr(_) | ResultsError::RenderFhir(_) => "results.render_failed",
            ResultsError::Queue(_) | ResultsError::QueueTask(_) => "results.queue",
            ResultsError::DicomRefused(_) => "results.dicom_refused",
            ResultsError::StowRefused(_) => "results.stow_refused",
            ResultsError::FhirRefused(_) => "results.fhir_refused",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ResultsError::Queue(_) | ResultsError::QueueTask(_))
    }
}

impl From<ResultsError> for StageError {
    fn from(e: ResultsError) -> Self {
        StageError::classified(e.reason(), e.is_transient(), e)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cxrflow_testkit::reasons::check;

    use super::*;
    use crate::destination::dicom::{DicomAddress, DicomStore};
    use crate::destination::fhir::FhirServer;
    use crate::destination::stow::StowServer;
    use crate::destination::Destination;

    async fn cancelled() -> tokio::task::JoinError {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        task.await.unwrap_err()
    }

    /// One of each variant. Adding a variant breaks the match below: add it here too.
    async fn one_of_each() -> Vec<ResultsError> {
        let all = vec![
            ResultsError::RenderSr(SrError::Write("x".into())),
            ResultsError::RenderFhir(serde_json::from_str::<u8>("x").unwrap_err()),
            ResultsError::Queue(QueueError::Io {
                path: "/x/pending".into(),
                source: std::io::Error::other("disk full"),
            }),
            ResultsError::QueueTask(cancelled().await),
            ResultsError::DicomRefused("0xA700".into()),
            ResultsError::StowRefused("409".into()),
            ResultsError::FhirRefused("400".into()),
        ];
        for e in &all {
            match e {
                ResultsError::RenderSr(_)
                | ResultsError::RenderFhir(_)
                | ResultsError::Queue(_)
                | ResultsError::QueueTask(_)
                | ResultsError::DicomRefused(_)
                | ResultsError::StowRefused(_)
                | ResultsError::FhirRefused(_) => {}
            }
        }
        all
    }

    #[tokio::test]
    async fn every_reason_is_listed_and_classified() {
        let all = one_of_each().await;
        let retried: Vec<_> = all.iter().filter(|e| e.is_transient()).collect();
        assert!(
            matches!(
                retried[..],
                [ResultsError::Queue(_), ResultsError::QueueTask(_)]
            ),
            "{retried:?}"
        );
        check(
            ResultsError::REASONS,
            all,
            ResultsError::reason,
            ResultsError::is_transient,
        );
    }

    fn refusal_reason(d: &impl Destination) -> (String, &'static str, String) {
        let e = d.refused("the answer".into());
        (
            format!("results.{}_refused", d.name()),
            e.reason(),
            e.to_string(),
        )
    }

    #[test]
    fn each_destination_refuses_under_its_name_with_its_answer() {
        let t = Duration::from_secs(1);
        let dicom = DicomStore {
            address: "PACS@localhost:104".parse::<DicomAddress>().unwrap(),
            tls: None,
            calling_ae: "CXRFLOW".into(),
            timeout: t,
        };
        let stow = StowServer::new("http://pacs/dicomweb".into(), None, t).unwrap();
        let fhir = FhirServer::new("http://ehr/fhir".into(), None, t).unwrap();
        for (want, reason, words) in [
            refusal_reason(&dicom),
            refusal_reason(&stow),
            refusal_reason(&fhir),
        ] {
            assert_eq!(reason, want);
            assert_eq!(words, "the answer");
        }
    }
}
