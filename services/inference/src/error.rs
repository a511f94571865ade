//! Why a preprocessed image could not be scored. A record made for another model (its profile
//! or tensor shape) is *poison*: dead-lettered with a stable reason. A failed model call is
//! *transient*: retried with backoff and never committed. A NaN/Inf output is neither: it is
//! published as a not-assessable prediction (`model.invalid_output`), not an error.

use cxrflow_common::StageError;

use crate::batcher::BatchError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferenceError {
    #[error(
        "record has preprocessing profile {record:?}, model {model}/{version} needs {needs:?}"
    )]
    ProfileMismatch {
        record: String,
        model: String,
        version: String,
        needs: String,
    },
    #[error(
        "tensor {width}x{height}x{channels} with {bytes} bytes, model {model}/{version} needs \
         {want_width}x{want_height}x{want_channels} = {want}"
    )]
    TensorSize {
        width: i32,
        height: i32,
        channels: i32,
        bytes: usize,
        model: String,
        version: String,
        want_width: u32,
        want_height: u32,
        want_channels: u32,
        want: usize,
    },
    /// Transient: the model call failed (the batcher stopped, the runtime or device failed).
    #[error("{0}")]
    Session(#[from] BatchError),
}

impl InferenceError {
    /// Every reason [`InferenceError::reason`] returns.
    pub const REASONS: &'static [&'static str] = &[
        "inference.profile_mismatch",
        "inference.tensor_size",
        "inference.session",
    ];

    /// The stable reason: the dead letter's `reason` and the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            InferenceError::ProfileMismatch { .. } => "inference.profile_mismatch",
            InferenceError::TensorSize { .. } => "inference.tensor_size",
            InferenceError::Session(_) => "inference.session",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, InferenceError::Session(_))
    }
}

impl From<InferenceError> for StageError {
    fn from(e: InferenceError) -> Self {
        StageError::classified(e.reason(), e.is_transient(), e)
    }
}

#[cfg(test)]
mod tests {
    use cxrflow_testkit::reasons::check;

    use super::*;

    /// One of each variant. Adding a variant breaks the match below: add it here too.
    fn one_of_each() -> Vec<InferenceError> {
        let all = vec![
            InferenceError::ProfileMismatch {
                record: "a".into(),
                model: "m".into(),
                version: "1".into(),
                needs: "b".into(),
            },
            InferenceError::TensorSize {
                width: 1,
                height: 1,
                channels: 1,
                bytes: 1,
                model: "m".into(),
                version: "1".into(),
                want_width: 2,
                want_height: 2,
                want_channels: 1,
                want: 4,
            },
            InferenceError::Session(BatchError::Closed),
        ];
        for e in &all {
            match e {
                InferenceError::ProfileMismatch { .. }
                | InferenceError::TensorSize { .. }
                | InferenceError::Session(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_reason_is_listed_and_classified() {
        let all = one_of_each();
        let retried: Vec<_> = all.iter().filter(|e| e.is_transient()).collect();
        assert!(
            matches!(retried[..], [InferenceError::Session(_)]),
            "{retried:?}"
        );
        check(
            InferenceError::REASONS,
            all,
            InferenceError::reason,
            InferenceError::is_transient,
        );
    }

    #[test]
    fn the_words_are_the_dead_letters() {
        let e = &one_of_each()[1];
        assert_eq!(
            e.to_string(),
            "tensor 1x1x1 with 1 bytes, model m/1 needs 2x2x1 = 4"
        );
    }
}
