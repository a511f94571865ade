//! Why a scan event could not be ingested. Every variant is either *poison* (the record can
//! never succeed: dead-lettered with a stable reason) or *transient* (a dependency is down:
//! retried with backoff and never committed). The texts name the field and the value at fault
//! so a gateway operator can act, and carry no patient data beyond the pseudonymous ids.

use cxrflow_common::StageError;

use crate::uid::UidError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("event_id is empty; every scan event needs a unique id")]
    EventIdMissing,
    #[error("{field} {value:?} is not a DICOM UID: it {problem}")]
    UidMalformed {
        field: &'static str,
        value: String,
        problem: UidError,
    },
    #[error("modality {0:?} is not supported: ingest accepts only CR or DX chest radiographs")]
    ModalityUnsupported(String),
    #[error("media_type {0:?} is not supported: use image/png, image/jpeg or application/dicom")]
    MediaTypeUnsupported(String),
    #[error("the event carries neither image_inline nor image_uri; send exactly one")]
    ImageMissing,
    #[error("the event carries both image_inline and image_uri; send exactly one")]
    ImageAmbiguous,
    #[error("{field} is {value} ms since the epoch, {why}")]
    TimestampAbsurd {
        field: &'static str,
        value: i64,
        why: &'static str,
    },
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: String,
        size: String,
        limit: u64,
    },
    #[error("image_size_bytes is {0}; it must be the image's size in bytes (positive) or absent")]
    SizeInvalid(i64),
    #[error("image_size_bytes is {declared} but the image has {actual} bytes")]
    SizeMismatch { declared: i64, actual: u64 },
    #[error("image_sha256 {0:?} is not 64 hexadecimal digits")]
    Sha256Malformed(String),
    #[error("image_sha256 is {declared} but the image received has sha256 {actual}")]
    Sha256Mismatch { declared: String, actual: String },
    #[error("image_uri {uri:?} is not a valid URL: {detail}")]
    UriMalformed { uri: String, detail: String },
    #[error("image_uri scheme {0:?} is not supported: use file://, http://, https:// or s3://bucket/key")]
    UriUnsupported(String),
    #[error("image_uri {uri} is outside the directory this ingest may read ({root})")]
    UriForbidden { uri: String, root: String },
    #[error("image_uri {uri} was not found: {detail}")]
    FetchNotFound { uri: String, detail: String },
    #[error("image_uri {uri} was refused: HTTP {status}")]
    FetchRejected { uri: String, status: u16 },
    #[error("image_uri {uri} may not be fetched: {refusal}")]
    Egress {
        uri: String,
        refusal: crate::egress::Refusal,
    },
    #[error("SOP instance UID {sop} was already ingested with different content (sha256 {existing}, first event {first_event}); this event's image has sha256 {received}")]
    SopConflict {
        sop: String,
        existing: String,
        first_event: String,
        received: String,
    },
    /// Transient: the image's source is unreachable right now.
    #[error("fetching {uri} failed (will retry): {detail}")]
    FetchUnavailable { uri: String, detail: String },
    /// Poison: the image's source did not answer for the whole give-up time.
    #[error("gave up fetching {uri} after {waited_s} s of retries: {detail}")]
    SourceUnreachable {
        uri: String,
        detail: String,
        waited_s: u64,
    },
    /// Transient: the blob store is unreachable right now.
    #[error("blob store unavailable (will retry): {0}")]
    BlobStoreUnavailable(String),
    /// Transient: the SOP dedup database failed (disk full, locked).
    #[error("ingest database (will retry): {0}")]
    Ledger(String),
}

impl IngestError {
    /// Every reason [`IngestError::reason`] returns (egress refusals' included).
    pub const REASONS: &'static [&'static str] = &[
        "ingest.event_id_missing",
        "ingest.uid_malformed",
        "ingest.modality_unsupported",
        "ingest.media_type_unsupported",
        "ingest.image_missing",
        "ingest.image_ambiguous",
        "ingest.timestamp_absurd",
        "ingest.too_large",
        "ingest.size_invalid",
        "ingest.size_mismatch",
        "ingest.sha256_malformed",
        "ingest.sha256_mismatch",
        "ingest.uri_malformed",
        "ingest.uri_unsupported",
        "ingest.uri_forbidden",
        "ingest.fetch_not_found",
        "ingest.fetch_rejected",
        "ingest.uri_not_allowed",
        "ingest.address_forbidden",
        "ingest.sop_conflict",
        "ingest.source_unreachable",
        "fetch",
        "blob_store",
        "ingest_db",
    ];

    /// The stable reason: the dead letter's `reason` and the metric label.
    pub fn reason(&self) -> &'static str {
        use IngestError::*;
        match self {
            EventIdMissing => "ingest.event_id_missing",
            UidMalformed { .. } => "ingest.uid_malformed",
            ModalityUnsupported(_) => "ingest.modality_unsupported",
            MediaTypeUnsupported(_) => "ingest.media_type_unsupported",
            ImageMissing => "ingest.image_missing",
            ImageAmbiguous => "ingest.image_ambiguous",
            TimestampAbsurd { .. } => "ingest.timestamp_absurd",
            TooLarge { .. } => "ingest.too_large",
            SizeInvalid(_) => "ingest.size_invalid",
            SizeMismatch { .. } => "ingest.size_mismatch",
            Sha256Malformed(_) => "ingest.sha256_malformed",
            Sha256Mismatch { .. } => "ingest.sha256_mismatch",
            UriMalformed { .. } => "ingest.uri_malformed",
            UriUnsupported(_) => "ingest.uri_unsupported",
            UriForbidden { .. } => "ingest.uri_forbidden",
            FetchNotFound { .. } => "ingest.fetch_not_found",
            FetchRejected { .. } => "ingest.fetch_rejected",
            Egress { refusal, .. } => refusal.reason(),
            SopConflict { .. } => "ingest.sop_conflict",
            SourceUnreachable { .. } => "ingest.source_unreachable",
            FetchUnavailable { .. } => "fetch",
            BlobStoreUnavailable(_) => "blob_store",
            Ledger(_) => "ingest_db",
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IngestError::FetchUnavailable { .. }
                | IngestError::BlobStoreUnavailable(_)
                | IngestError::Ledger(_)
        )
    }
}

impl From<IngestError> for StageError {
    fn from(e: IngestError) -> Self {
        StageError::classified(e.reason(), e.is_transient(), e)
    }
}

/// A URL as it may appear in logs and dead letters: no credentials, no query string (which may
/// hold a signature or a token).
pub fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        shown.set_query(Some("…"));
    }
    shown.set_fragment(None);
    shown.to_string()
}

/// Truncates a value from outside before it goes into an error text.
pub fn clip(s: &str) -> String {
    const MAX: usize = 96;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use cxrflow_testkit::reasons::check;

    use super::*;
    use crate::egress::Refusal;

    /// One of each variant (and of each egress [`Refusal`]). Adding a variant breaks the
    /// matches below: add it here too.
    fn one_of_each() -> Vec<IngestError> {
        use IngestError::*;
        let (s, uri) = (String::new, || "http://x/a".to_string());
        let egress = |refusal| Egress {
            uri: uri(),
            refusal,
        };
        let all = vec![
            EventIdMissing,
            UidMalformed {
                field: "study_instance_uid",
                value: s(),
                problem: UidError::Empty,
            },
            ModalityUnsupported("MR".into()),
            MediaTypeUnsupported("image/gif".into()),
            ImageMissing,
            ImageAmbiguous,
            TimestampAbsurd {
                field: "acquired_at",
                value: 0,
                why: "before 1990",
            },
            TooLarge {
                what: s(),
                size: s(),
                limit: 1,
            },
            SizeInvalid(-1),
            SizeMismatch {
                declared: 1,
                actual: 2,
            },
            Sha256Malformed(s()),
            Sha256Mismatch {
                declared: s(),
                actual: s(),
            },
            UriMalformed {
                uri: uri(),
                detail: s(),
            },
            UriUnsupported("ftp".into()),
            UriForbidden {
                uri: uri(),
                root: s(),
            },
            FetchNotFound {
                uri: uri(),
                detail: s(),
            },
            FetchRejected {
                uri: uri(),
                status: 403,
            },
            egress(Refusal::NotAllowed),
            egress(Refusal::ForbiddenAddress {
                host: "x".into(),
                addr: std::net::Ipv4Addr::LOCALHOST.into(),
            }),
            egress(Refusal::S3NotAllowed),
            SopConflict {
                sop: s(),
                existing: s(),
                first_event: s(),
                received: s(),
            },
            FetchUnavailable {
                uri: uri(),
                detail: s(),
            },
            SourceUnreachable {
                uri: uri(),
                detail: s(),
                waited_s: 1,
            },
            BlobStoreUnavailable(s()),
            Ledger(s()),
        ];
        for e in &all {
            match e {
                Egress { refusal, .. } => match refusal {
                    Refusal::NotAllowed
                    | Refusal::ForbiddenAddress { .. }
                    | Refusal::S3NotAllowed => {}
                },
                EventIdMissing
                | UidMalformed { .. }
                | ModalityUnsupported(_)
                | MediaTypeUnsupported(_)
                | ImageMissing
                | ImageAmbiguous
                | TimestampAbsurd { .. }
                | TooLarge { .. }
                | SizeInvalid(_)
                | SizeMismatch { .. }
                | Sha256Malformed(_)
                | Sha256Mismatch { .. }
                | UriMalformed { .. }
                | UriUnsupported(_)
                | UriForbidden { .. }
                | FetchNotFound { .. }
                | FetchRejected { .. }
                | SopConflict { .. }
                | FetchUnavailable { .. }
                | SourceUnreachable { .. }
                | BlobStoreUnavailable(_)
                | Ledger(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_reason_is_listed_and_classified() {
        check(
            IngestError::REASONS,
            one_of_each(),
            IngestError::reason,
            IngestError::is_transient,
        );
    }

    #[test]
    fn transient_errors_are_retried_and_the_rest_dead_lettered() {
        let t: StageError = IngestError::BlobStoreUnavailable("down".into()).into();
        assert!(matches!(t, StageError::Transient { ref kind, .. } if kind == "blob_store"));
        let p: StageError = IngestError::ImageMissing.into();
        assert!(
            matches!(p, StageError::Poison { ref reason, .. } if reason == "ingest.image_missing")
        );
    }

    #[test]
    fn urls_lose_credentials_and_queries() {
        let u = url::Url::parse("https://user:pw@pacs.example/wado/1.2?token=abc#x").unwrap();
        let shown = redact_url(&u);
        assert!(
            !shown.contains("pw") && !shown.contains("abc") && !shown.contains("user"),
            "{shown}"
        );
        assert!(
            shown.starts_with("https://pacs.example/wado/1.2"),
            "{shown}"
        );
    }
}
