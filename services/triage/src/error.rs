//! Why a triage input could not be applied. A record from a topic triage does not read is
//! *poison* (dead-lettered with a stable reason); a decision the broker did not acknowledge is
//! *transient* (retried with backoff, never committed).

use cxrflow_common::kafka::producer::ProduceError;
use cxrflow_common::StageError;

#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error("not a triage input: {0}")]
    UnexpectedTopic(String),
    /// Transient: a decision (or tombstone) was not acknowledged by the broker.
    #[error("{0}")]
    Produce(#[from] ProduceError),
}

impl TriageError {
    /// Every reason [`TriageError::reason`] returns.
    pub const REASONS: &'static [&'static str] = &["triage.unexpected_topic", "produce"];

    /// The stable reason: the dead letter's `reason` and the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            TriageError::UnexpectedTopic(_) => "triage.unexpected_topic",
            TriageError::Produce(_) => "produce",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TriageError::Produce(_))
    }
}

impl From<TriageError> for StageError {
    fn from(e: TriageError) -> Self {
        StageError::classified(e.reason(), e.is_transient(), e)
    }
}

#[cfg(test)]
mod tests {
    use cxrflow_contracts::{CodecError, SchemaId};
    use cxrflow_testkit::reasons::check;

    use super::*;

    /// One of each variant. Adding a variant breaks the match below: add it here too.
    fn one_of_each() -> Vec<TriageError> {
        let all = vec![
            TriageError::UnexpectedTopic("cxr.other.v1".into()),
            TriageError::Produce(ProduceError::Codec(CodecError::UnknownSchemaId(SchemaId(
                7,
            )))),
        ];
        for e in &all {
            match e {
                TriageError::UnexpectedTopic(_) | TriageError::Produce(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_reason_is_listed_and_classified() {
        let all = one_of_each();
        let retried: Vec<_> = all.iter().filter(|e| e.is_transient()).collect();
        assert!(
            matches!(retried[..], [TriageError::Produce(_)]),
            "{retried:?}"
        );
        assert_eq!(all[0].to_string(), "not a triage input: cxr.other.v1");
        check(
            TriageError::REASONS,
            all,
            TriageError::reason,
            TriageError::is_transient,
        );
    }
}
