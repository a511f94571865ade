//! Checks a scan event before any I/O: UIDs, modality, media type, timestamps, where the image
//! is and how large it says it is. Also the checks on the image once obtained (declared size,
//! declared sha256).

use std::path::PathBuf;

use cxrflow_contracts::ScanEvent;
use url::Url;

use crate::error::{clip, redact_url, IngestError};
use crate::uid::check_uid;

/// Media types ingest accepts.
pub const MEDIA_TYPES: &[&str] = &["image/png", "image/jpeg", "application/dicom"];
/// Modalities ingest accepts: chest radiographs only.
pub const MODALITIES: &[&str] = &["CR", "DX"];
/// 1990-01-01T00:00:00Z: no digital chest radiograph in a live feed is older.
pub const EARLIEST_PLAUSIBLE_MS: i64 = 631_152_000_000;
/// How far ahead of this machine's clock a timestamp may be (clock skew, time zones gone wrong).
pub const MAX_FUTURE_SKEW_MS: i64 = 24 * 60 * 60 * 1000;

/// Size limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Any image, inline or fetched.
    pub max_image_bytes: u64,
    /// Images carried inline on Kafka.
    pub max_inline_bytes: u64,
}

/// Where the image of a scan event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Inline,
    File(PathBuf),
    Http(Url),
    S3 { bucket: String, key: String },
}

impl ImageRef {
    /// The bounded metric label of the source.
    pub fn kind(&self) -> &'static str {
        match self {
            ImageRef::Inline => "inline",
            ImageRef::File(_) => "file",
            ImageRef::Http(_) => "http",
            ImageRef::S3 { .. } => "s3",
        }
    }

    /// How the source may be shown in a log line or a dead letter.
    pub fn shown(&self) -> String {
        match self {
            ImageRef::Inline => "image_inline".to_string(),
            ImageRef::File(p) => format!("file://{}", p.display()),
            ImageRef::Http(u) => redact_url(u),
            ImageRef::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

/// Parses an `image_uri`.
pub fn parse_image_uri(uri: &str) -> Result<ImageRef, IngestError> {
    let malformed = |detail: String| IngestError::UriMalformed {
        uri: clip(uri),
        detail,
    };
    let url = Url::parse(uri).map_err(|e| malformed(e.to_string()))?;
    match url.scheme() {
        "file" => {
            if url
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err(malformed(
                    "file:// URLs must name a path on this machine (no host)".into(),
                ));
            }
            let path = url
                .to_file_path()
                .map_err(|_| malformed("not an absolute file path".into()))?;
            Ok(ImageRef::File(path))
        }
        "http" | "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(malformed("missing host".into()));
            }
            Ok(ImageRef::Http(url))
        }
        "s3" => {
            let bucket = url
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| malformed("missing bucket (use s3://bucket/key)".into()))?;
            let key = url.path().trim_start_matches('/');
            if key.is_empty() || key.ends_with('/') {
                return Err(malformed("missing object key (use s3://bucket/key)".into()));
            }
            Ok(ImageRef::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            })
        }
        other => Err(IngestError::UriUnsupported(clip(other))),
    }
}

fn check_timestamp(field: &'static str, value: i64, now_ms: i64) -> Result<(), IngestError> {
    let why = if value < EARLIEST_PLAUSIBLE_MS {
        "before 1990-01-01; check the gateway's clock and time unit (milliseconds since the Unix epoch)"
    } else if value > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        "more than a day in the future; check the gateway's clock and time unit (milliseconds since the Unix epoch)"
    } else {
        return Ok(());
    };
    Err(IngestError::TimestampAbsurd { field, value, why })
}

/// Checks everything that can be checked without the image; returns where the image is.
pub fn validate(scan: &ScanEvent, limits: &Limits, now_ms: i64) -> Result<ImageRef, IngestError> {
    if scan.event_id.trim().is_empty() {
        return Err(IngestError::EventIdMissing);
    }
    let s = &scan.study;
    for (field, value) in [
        ("study_instance_uid", &s.study_instance_uid),
        ("series_instance_uid", &s.series_instance_uid),
        ("sop_instance_uid", &s.sop_instance_uid),
    ] {
        check_uid(value).map_err(|problem| IngestError::UidMalformed {
            field,
            value: clip(value),
            problem,
        })?;
    }
    if !MODALITIES.contains(&s.modality.as_str()) {
        return Err(IngestError::ModalityUnsupported(clip(&s.modality)));
    }
    if !MEDIA_TYPES.contains(&scan.media_type.as_str()) {
        return Err(IngestError::MediaTypeUnsupported(clip(&scan.media_type)));
    }
    check_timestamp("acquired_at", s.acquired_at, now_ms)?;
    check_timestamp("published_at", s.published_at, now_ms)?;
    if let Some(sha) = &scan.image_sha256 {
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IngestError::Sha256Malformed(clip(sha)));
        }
    }
    if let Some(declared) = scan.image_size_bytes {
        if declared <= 0 {
            return Err(IngestError::SizeInvalid(declared));
        }
        if declared as u64 > limits.max_image_bytes {
            return Err(IngestError::TooLarge {
                what: "image_size_bytes".into(),
                size: declared.to_string(),
                limit: limits.max_image_bytes,
            });
        }
    }
    match (&scan.image_inline, &scan.image_uri) {
        (None, None) => Err(IngestError::ImageMissing),
        (Some(_), Some(_)) => Err(IngestError::ImageAmbiguous),
        (Some(bytes), None) => {
            let limit = limits.max_inline_bytes.min(limits.max_image_bytes);
            if bytes.len() as u64 > limit {
                return Err(IngestError::TooLarge {
                    what: "image_inline".into(),
                    size: bytes.len().to_string(),
                    limit,
                });
            }
            if bytes.is_empty() {
                return Err(IngestError::ImageMissing);
            }
            Ok(ImageRef::Inline)
        }
        (None, Some(uri)) => parse_image_uri(uri),
    }
}

/// Checks the obtained image against what the event declared about it.
pub fn check_content(scan: &ScanEvent, bytes: &[u8], sha256: &str) -> Result<(), IngestError> {
    check_size(scan, bytes.len() as u64)?;
    if let Some(declared) = &scan.image_sha256 {
        if !declared.eq_ignore_ascii_case(sha256) {
            return Err(IngestError::Sha256Mismatch {
                declared: declared.to_ascii_lowercase(),
                actual: sha256.to_string(),
            });
        }
    }
    Ok(())
}

/// The image's size against the event's declared `image_size_bytes`, when it declares one.
pub fn check_size(scan: &ScanEvent, actual: u64) -> Result<(), IngestError> {
    match scan.image_size_bytes {
        Some(declared) if declared as u64 != actual => {
            Err(IngestError::SizeMismatch { declared, actual })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cxrflow_contracts::{OrderPriority, StudyContext};

    const NOW: i64 = 1_750_000_000_000;
    const LIMITS: Limits = Limits {
        max_image_bytes: 1000,
        max_inline_bytes: 100,
    };

    fn scan() -> ScanEvent {
        ScanEvent {
            event_id: "e1".into(),
            study: StudyContext {
                site_id: "site-a".into(),
                study_instance_uid: "1.2.3".into(),
                series_instance_uid: "1.2.3.4".into(),
                sop_instance_uid: "1.2.3.4.5".into(),
                accession_number: None,
                patient_ref: "p-1".into(),
                modality: "CR".into(),
                view_position: Some("PA".into()),
                patient_age_years: None,
                patient_sex: None,
                acquired_at: NOW - 60_000,
                published_at: NOW,
                priority_hint: OrderPriority::Routine,
            },
            media_type: "image/png".into(),
            image_inline: Some(vec![1, 2, 3]),
            image_uri: None,
            image_sha256: None,
            image_size_bytes: None,
        }
    }

    fn reason(s: &ScanEvent) -> &'static str {
        validate(s, &LIMITS, NOW).unwrap_err().reason()
    }

    #[test]
    fn a_good_event_passes() {
        assert_eq!(validate(&scan(), &LIMITS, NOW), Ok(ImageRef::Inline));
    }

    #[test]
    fn each_problem_has_its_own_reason_and_names_the_field() {
        let mut s = scan();
        s.study.series_instance_uid = "1.02.3".into();
        let e = validate(&s, &LIMITS, NOW).unwrap_err();
        assert_eq!(e.reason(), "ingest.uid_malformed");
        assert!(
            e.to_string().contains("series_instance_uid \"1.02.3\""),
            "{e}"
        );

        let mut s = scan();
        s.study.modality = "MR".into();
        assert_eq!(reason(&s), "ingest.modality_unsupported");

        let mut s = scan();
        s.media_type = "image/tiff".into();
        assert_eq!(reason(&s), "ingest.media_type_unsupported");

        let mut s = scan();
        s.image_inline = None;
        assert_eq!(reason(&s), "ingest.image_missing");

        let mut s = scan();
        s.image_uri = Some("file:///x.png".into());
        assert_eq!(reason(&s), "ingest.image_ambiguous");

        let mut s = scan();
        s.image_inline = Some(vec![0; 101]);
        let e = validate(&s, &LIMITS, NOW).unwrap_err();
        assert_eq!(e.reason(), "ingest.too_large");
        assert!(e.to_string().contains("image_inline is 101 bytes"), "{e}");

        let mut s = scan();
        s.image_inline = None;
        s.image_uri = Some("https://pacs/x".into());
        s.image_size_bytes = Some(1001);
        assert_eq!(reason(&s), "ingest.too_large");

        let mut s = scan();
        s.study.acquired_at = 1_000; // seconds mistaken for milliseconds, or a zeroed clock
        let e = validate(&s, &LIMITS, NOW).unwrap_err();
        assert_eq!(e.reason(), "ingest.timestamp_absurd");
        assert!(e.to_string().starts_with("acquired_at"), "{e}");

        let mut s = scan();
        s.study.published_at = NOW + 2 * MAX_FUTURE_SKEW_MS;
        assert_eq!(reason(&s), "ingest.timestamp_absurd");

        let mut s = scan();
        s.image_sha256 = Some("abc".into());
        assert_eq!(reason(&s), "ingest.sha256_malformed");

        let mut s = scan();
        s.event_id = " ".into();
        assert_eq!(reason(&s), "ingest.event_id_missing");

        let mut s = scan();
        s.image_size_bytes = Some(-1);
        assert_eq!(reason(&s), "ingest.size_invalid");
    }

    #[test]
    fn image_uris_parse_by_scheme() {
        assert_eq!(
            parse_image_uri("file:///data/a.dcm"),
            Ok(ImageRef::File("/data/a.dcm".into()))
        );
        assert_eq!(
            parse_image_uri("s3://bucket/dir/a.png"),
            Ok(ImageRef::S3 {
                bucket: "bucket".into(),
                key: "dir/a.png".into()
            })
        );
        assert_eq!(
            parse_image_uri("https://pacs.example/wado?x=1")
                .unwrap()
                .kind(),
            "http"
        );
        assert_eq!(
            parse_image_uri("ftp://x/y").unwrap_err().reason(),
            "ingest.uri_unsupported"
        );
        assert_eq!(
            parse_image_uri("not a url").unwrap_err().reason(),
            "ingest.uri_malformed"
        );
        assert_eq!(
            parse_image_uri("s3://bucket/").unwrap_err().reason(),
            "ingest.uri_malformed"
        );
        assert_eq!(
            parse_image_uri("file://otherhost/a").unwrap_err().reason(),
            "ingest.uri_malformed"
        );
    }

    #[test]
    fn content_is_checked_against_the_declaration() {
        let mut s = scan();
        let sha = cxrflow_common::blob::sha256_hex(&[1, 2, 3]);
        s.image_sha256 = Some(sha.to_uppercase());
        s.image_size_bytes = Some(3);
        assert_eq!(check_content(&s, &[1, 2, 3], &sha), Ok(()));
        s.image_size_bytes = Some(4);
        assert_eq!(
            check_content(&s, &[1, 2, 3], &sha).unwrap_err().reason(),
            "ingest.size_mismatch"
        );
        s.image_size_bytes = None;
        s.image_sha256 = Some("0".repeat(64));
        let e = check_content(&s, &[1, 2, 3], &sha).unwrap_err();
        assert_eq!(e.reason(), "ingest.sha256_mismatch");
        assert!(e.to_string().contains(&sha), "{e}");
    }
}
