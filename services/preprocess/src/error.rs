//! Why an ingested image could not be preprocessed. Every variant is either *poison* (the
//! record can never succeed: dead-lettered with a stable reason) or *transient* (the blob store
//! is down: retried with backoff and never committed). Decode failures keep their own type,
//! [`DecodeError`], and its `decode.*` reasons; the README lists every reason here.

use cxrflow_common::blob::BlobError;
use cxrflow_common::StageError;

use crate::decode::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// Reading the image from the blob store failed; poison unless the store is unavailable.
    #[error("{0}")]
    Blob(#[from] BlobError),
    #[error("blob {blob_uri} has sha256 {found}, the record says {expected}")]
    Checksum {
        blob_uri: String,
        expected: String,
        found: String,
    },
    #[error("{blob_uri} ({media_type}): {source}")]
    Decode {
        blob_uri: String,
        media_type: String,
        #[source]
        source: DecodeError,
    },
    /// The decode task panicked outside the guarded decoders; the text is the panic's.
    #[error("{0}")]
    Panicked(String),
    /// Transient: the decode task was cancelled (the runtime is shutting down).
    #[error("{0}")]
    DecodeTask(#[source] tokio::task::JoinError),
}

impl PreprocessError {
    /// Every reason [`PreprocessError::reason`] returns: its own and [`DecodeError`]'s.
    pub const REASONS: &'static [&'static str] = &[
        "blob.not_found",
        "blob.foreign_uri",
        "blob.config",
        "blob_store",
        "blob.sha256_mismatch",
        "decode.empty",
        "decode.not_an_image",
        "decode.too_large",
        "decode.truncated",
        "decode.corrupt_stream",
        "decode.unsupported_transfer_syntax",
        "decode.unsupported_precision",
        "decode.unsupported_image",
        "decode.missing_attribute",
        "decode.invalid_attribute",
        "decode.panic",
        "decode_task",
    ];

    /// The stable reason: the dead letter's `reason` and the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            PreprocessError::Blob(BlobError::NotFound(_)) => "blob.not_found",
            PreprocessError::Blob(BlobError::ForeignUri { .. }) => "blob.foreign_uri",
            PreprocessError::Blob(BlobError::Config { .. }) => "blob.config",
            PreprocessError::Blob(BlobError::Unavailable(_)) => "blob_store",
            PreprocessError::Checksum { .. } => "blob.sha256_mismatch",
            PreprocessError::Decode { source, .. } => source.reason(),
            PreprocessError::Panicked(_) => "decode.panic",
            PreprocessError::DecodeTask(_) => "decode_task",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            PreprocessError::Blob(e) => e.is_transient(),
            PreprocessError::DecodeTask(_) => true,
            PreprocessError::Checksum { .. }
            | PreprocessError::Decode { .. }
            | PreprocessError::Panicked(_) => false,
        }
    }
}

impl From<PreprocessError> for StageError {
    fn from(e: PreprocessError) -> Self {
        StageError::classified(e.reason(), e.is_transient(), e)
    }
}

#[cfg(test)]
mod tests {
    use cxrflow_testkit::reasons::check;

    use super::*;

    async fn cancelled() -> tokio::task::JoinError {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        task.await.unwrap_err()
    }

    /// One of each variant (and of each wrapped [`BlobError`] and [`DecodeError`]). Adding a
    /// variant breaks the matches below: add it here too.
    async fn one_of_each() -> Vec<PreprocessError> {
        let decode = |source| PreprocessError::Decode {
            blob_uri: "mem://b".into(),
            media_type: "application/dicom".into(),
            source,
        };
        let all = vec![
            PreprocessError::Blob(BlobError::NotFound("mem://b".into())),
            PreprocessError::Blob(BlobError::ForeignUri {
                uri: "s3://x/b".into(),
                base: "mem://".into(),
            }),
            PreprocessError::Blob(BlobError::Config {
                url: "x".into(),
                reason: "bad".into(),
            }),
            PreprocessError::Blob(BlobError::Unavailable("down".into())),
            PreprocessError::Checksum {
                blob_uri: "mem://b".into(),
                expected: "aa".into(),
                found: "bb".into(),
            },
            decode(DecodeError::Empty),
            decode(DecodeError::NotAnImage("x".into())),
            decode(DecodeError::TooLarge("x".into())),
            decode(DecodeError::Truncated("x".into())),
            decode(DecodeError::CorruptStream {
                codec: "JPEG",
                detail: "x".into(),
            }),
            decode(DecodeError::UnsupportedTransferSyntax {
                uid: "1.2".into(),
                name: "x".into(),
            }),
            decode(DecodeError::UnsupportedPrecision("x".into())),
            decode(DecodeError::UnsupportedImage("x".into())),
            decode(DecodeError::MissingAttribute("x".into())),
            decode(DecodeError::InvalidAttribute("x".into())),
            decode(DecodeError::Panicked("x".into())),
            PreprocessError::Panicked("x".into()),
            PreprocessError::DecodeTask(cancelled().await),
        ];
        for e in &all {
            match e {
                PreprocessError::Blob(
                    BlobError::NotFound(_)
                    | BlobError::ForeignUri { .. }
                    | BlobError::Config { .. }
                    | BlobError::Unavailable(_),
                )
                | PreprocessError::Checksum { .. }
                | PreprocessError::Panicked(_)
                | PreprocessError::DecodeTask(_) => {}
                PreprocessError::Decode { source, .. } => match source {
                    DecodeError::Empty
                    | DecodeError::NotAnImage(_)
                    | DecodeError::TooLarge(_)
                    | DecodeError::Truncated(_)
                    | DecodeError::CorruptStream { .. }
                    | DecodeError::UnsupportedTransferSyntax { .. }
                    | DecodeError::UnsupportedPrecision(_)
                    | DecodeError::UnsupportedImage(_)
                    | DecodeError::MissingAttribute(_)
                    | DecodeError::InvalidAttribute(_)
                    | DecodeError::Panicked(_) => {}
                },
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
                [
                    PreprocessError::Blob(BlobError::Unavailable(_)),
                    PreprocessError::DecodeTask(_)
                ]
            ),
            "{retried:?}"
        );
        check(
            PreprocessError::REASONS,
            all,
            PreprocessError::reason,
            PreprocessError::is_transient,
        );
    }

    #[test]
    fn the_words_are_the_dead_letters() {
        let e = PreprocessError::Decode {
            blob_uri: "mem://b".into(),
            media_type: "image/png".into(),
            source: DecodeError::Empty,
        };
        assert_eq!(
            e.to_string(),
            "mem://b (image/png): the image is empty (zero bytes)"
        );
        assert!(
            std::error::Error::source(&e).is_some(),
            "the decode error is kept"
        );
    }
}
