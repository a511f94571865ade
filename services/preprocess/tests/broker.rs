//! The preprocess service against a real broker and a real (local) blob store: good images flow
//! to `cxr.preprocessed.v1` with the right profile and gate flags; each broken input lands in
//! `cxr.dlq.v1` with its own reason, and records after them still flow.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use cxrflow_common::blob::BlobStore;
use cxrflow_common::kafka::Producer;
use cxrflow_contracts::*;
use cxrflow_preprocess::fixtures::{self, broken, ts, DicomSpec};
use cxrflow_preprocess::{Config, Profile};
use cxrflow_testkit::{read_records, service_args, Broker, TestService};

fn study(uid: &str, view: Option<&str>) -> StudyContext {
    StudyContext {
        view_position: view.map(str::to_string),
        acquired_at: 1,
        published_at: 2,
        ..cxrflow_testkit::records::study(uid)
    }
}

struct Case {
    uid: &'static str,
    bytes: Vec<u8>,
    media_type: &'static str,
    view: Option<&'static str>,
}

fn case(
    uid: &'static str,
    bytes: Vec<u8>,
    media_type: &'static str,
    view: Option<&'static str>,
) -> Case {
    Case {
        uid,
        bytes,
        media_type,
        view,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_flow_and_each_broken_input_is_dead_lettered_with_its_reason() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("blobs").display());
    let blobs = BlobStore::open(&url, &[]).unwrap();
    let codec = Codec::with_static_registry().unwrap();
    let producer = Producer::new(&kafka).unwrap();

    // Broken first, then good ones: the stage must keep going after every dead letter.
    let broken_cases = vec![
        (
            case("1.2.9.1", broken::zero_bytes(), "image/png", None),
            "decode.empty",
        ),
        (
            case("1.2.9.2", broken::truncated_png(), "image/png", None),
            "decode.truncated",
        ),
        (
            case("1.2.9.3", broken::wrong_magic(), "image/png", None),
            "decode.not_an_image",
        ),
        (
            case(
                "1.2.9.4",
                broken::png_claiming(60_000, 60_000),
                "image/png",
                None,
            ),
            "decode.too_large",
        ),
        (
            case(
                "1.2.9.5",
                broken::dicom_without_pixel_data(),
                "application/dicom",
                None,
            ),
            "decode.not_an_image",
        ),
        (
            case(
                "1.2.9.6",
                broken::dicom_with_transfer_syntax(ts::MPEG2_MAIN),
                "application/dicom",
                None,
            ),
            "decode.unsupported_transfer_syntax",
        ),
    ];
    let good_cases = vec![
        case(
            "1.2.1.1",
            fixtures::jpeg_gray8(320, 390),
            "image/jpeg",
            Some("PA"),
        ),
        case(
            "1.2.1.2",
            fixtures::png_gray16(270, 330),
            "image/png",
            Some("AP"),
        ),
        case(
            "1.2.1.3",
            fixtures::dicom(&DicomSpec::cr(280, 340)),
            "application/dicom",
            None,
        ),
        case(
            "1.2.1.4",
            fixtures::lateral_cr(280, 340),
            "application/dicom",
            None,
        ),
        case(
            "1.2.1.5",
            fixtures::png_gray8(340, 280),
            "image/png",
            Some("LATERAL"),
        ),
        case(
            "1.2.1.6",
            fixtures::dicom(&DicomSpec::dx(330, 330).transfer_syntax(ts::IMPLICIT_VR_LE)),
            "application/dicom",
            None,
        ),
        // Smaller than the 320² input on both sides: not scored, whatever its view.
        case(
            "1.2.1.7",
            fixtures::dicom(&DicomSpec::cr(200, 240)),
            "application/dicom",
            None,
        ),
        // A child's (the scan event's age: a PNG has no header): not scored.
        case(
            "1.2.1.8",
            fixtures::png_gray8(320, 390),
            "image/png",
            Some("PA"),
        ),
    ];
    // The scan event's patient age: a child's, none (a DICOM header without age or birth date:
    // scored, counted), else the testkit's adult.
    let age = |uid: &str| match uid {
        "1.2.1.8" => Some(7),
        "1.2.1.6" => None,
        _ => Some(61),
    };
    let headers = BTreeMap::new();
    let send = |c: &Case, uri: String, sha: String| {
        let rec = IngestedImage {
            event_id: format!("e-{}", c.uid),
            study: StudyContext {
                patient_age_years: age(c.uid),
                ..study(c.uid, c.view)
            },
            blob_uri: uri,
            sha256: sha,
            size_bytes: c.bytes.len() as i64,
            media_type: c.media_type.into(),
            ingested_at: 3,
        };
        let (p, codec, h) = (&producer, &codec, &headers);
        async move { p.send(codec, &rec, h).await.unwrap() }
    };
    for (c, _) in &broken_cases {
        let (uri, sha, _) = blobs
            .put_content_addressed(Bytes::from(c.bytes.clone()))
            .await
            .unwrap();
        send(c, uri, sha).await;
    }
    // A blob that is not in the store, and one whose content does not match its checksum.
    let missing = case("1.2.9.7", vec![], "image/png", None);
    send(
        &missing,
        format!("{url}/sha256/00/{}", "0".repeat(64)),
        "0".repeat(64),
    )
    .await;
    let tampered = case("1.2.9.8", fixtures::png_gray8(20, 20), "image/png", None);
    let (uri, _, _) = blobs
        .put_content_addressed(Bytes::from(tampered.bytes.clone()))
        .await
        .unwrap();
    send(&tampered, uri, "ab".repeat(32)).await;
    for c in &good_cases {
        let (uri, sha, _) = blobs
            .put_content_addressed(Bytes::from(c.bytes.clone()))
            .await
            .unwrap();
        send(c, uri, sha).await;
    }

    let mut cfg = Config::defaults(kafka.clone(), service_args());
    cfg.blob_store.url = Some(url.clone());
    cfg.profile = Profile::Gray320V1;
    let service = TestService::spawn("preprocess", cfg.service.http, |s| {
        cxrflow_preprocess::run(cfg, s)
    });

    let out: Vec<PreprocessedImage> =
        read_records(&kafka, &codec, good_cases.len(), Duration::from_secs(45)).await;
    let by_uid: HashMap<&str, &PreprocessedImage> = out
        .iter()
        .map(|r| (r.study.study_instance_uid.as_str(), r))
        .collect();
    assert_eq!(
        by_uid.len(),
        good_cases.len(),
        "every good image flows: got {:?}",
        by_uid.keys()
    );
    for r in out
        .iter()
        .filter(|r| !["1.2.1.7", "1.2.1.8"].contains(&r.study.study_instance_uid.as_str()))
    {
        assert_eq!(r.profile_id, "gray320-v1");
        assert_eq!((r.width, r.height, r.channels), (320, 320, 1));
        assert_eq!(r.pixels.len(), 320 * 320);
        assert_eq!(r.stats.histogram.len(), 32);
        assert!(r.preprocess_ms > 0.0);
    }
    let frontal = ["1.2.1.1", "1.2.1.2", "1.2.1.3", "1.2.1.6"];
    for uid in frontal {
        let r = by_uid[uid];
        assert!(
            r.frontal && r.assessable && r.not_assessable_reason.is_none(),
            "{uid} is assessable"
        );
    }
    for uid in ["1.2.1.4", "1.2.1.5"] {
        let r = by_uid[uid];
        assert!(!r.frontal && !r.assessable, "{uid} is lateral");
        assert_eq!(r.not_assessable_reason.as_deref(), Some("lateral view"));
    }
    assert_eq!(
        by_uid["1.2.1.3"].study.view_position.as_deref(),
        Some("PA"),
        "view filled from the DICOM file"
    );
    assert_eq!(by_uid["1.2.1.4"].study.view_position.as_deref(), Some("LL"));
    let child = by_uid["1.2.1.8"];
    assert!(!child.assessable && child.pixels.is_empty(), "a child's");
    assert_eq!(
        child.not_assessable_reason.as_deref(),
        Some("patient aged 7: the model was trained and validated on patients 18 and over")
    );
    let small = by_uid["1.2.1.7"];
    assert!(
        !small.assessable && small.pixels.is_empty(),
        "too small to score"
    );
    assert_eq!(
        small.not_assessable_code.as_deref(),
        Some("eligibility.resolution")
    );
    assert_eq!(
        small.not_assessable_reason.as_deref(),
        Some(
            "image 200×240 is smaller than the model's 320×320 input: it would be enlarged to \
             fill it, too little detail to score"
        )
    );
    assert_eq!(
        (
            by_uid["1.2.1.1"].stats.original_width,
            by_uid["1.2.1.1"].stats.original_height
        ),
        (320, 390)
    );
    assert_eq!(by_uid["1.2.1.3"].stats.photometric, "MONOCHROME1");
    assert_eq!(by_uid["1.2.1.3"].stats.bits_stored, 12);
    assert_eq!(by_uid["1.2.1.2"].stats.bits_stored, 16);

    let expected_dlq = broken_cases.len() + 2;
    let dlq: Vec<DeadLetter> =
        read_records(&kafka, &codec, expected_dlq, Duration::from_secs(30)).await;
    let reasons: HashMap<String, String> = dlq
        .iter()
        .map(|d| {
            (
                d.study_instance_uid.clone().unwrap_or_default(),
                d.reason.clone(),
            )
        })
        .collect();
    for (c, reason) in &broken_cases {
        assert_eq!(
            reasons.get(c.uid).map(String::as_str),
            Some(*reason),
            "{}: {:?}",
            c.uid,
            reasons
        );
    }
    assert_eq!(
        reasons.get("1.2.9.7").map(String::as_str),
        Some("blob.not_found")
    );
    assert_eq!(
        reasons.get("1.2.9.8").map(String::as_str),
        Some("blob.sha256_mismatch")
    );
    assert!(
        dlq.iter()
            .all(|d| d.stage == "preprocess" && d.payload.is_some()),
        "original bytes kept"
    );
    assert_eq!(dlq.len(), expected_dlq);
    for (series, want) in [
        ("cxrflow_preprocess_age_unknown_images_total", 1.0),
        (
            "cxrflow_preprocess_ineligible_images_total{reason=\"eligibility.age\"}",
            1.0,
        ),
        (
            "cxrflow_preprocess_ineligible_images_total{reason=\"eligibility.resolution\"}",
            1.0,
        ),
    ] {
        assert_eq!(service.metric(series).await, Some(want), "{series}");
    }

    service.stop().await;
}
