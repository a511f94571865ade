//! The C-STORE SCP against real DICOM clients and a real broker: DCMTK's echoscu/storescu and
//! pynetdicom deliver CR and DX files whose scan events arrive pseudonymised (no patient name,
//! id, birth date or accession number in the record bytes) and reference an intact Part-10
//! file; a gateway stopped mid-association leaves the sender unacknowledged, and the resend
//! after a restart yields exactly one ingested image per SOP instance.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cxrflow_common::blob::{sha256_hex, BlobStore};
use cxrflow_contracts::{IngestedImage, OrderPriority};
use cxrflow_gateway::Pseudonymizer;
use cxrflow_testkit::{eventually, read_records, Broker};
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::PDataValueType;
use dicom_ul::Pdu;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn echoscu_and_storescu_deliver_cr_and_dx_as_pseudonymous_scan_events() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&kafka, dir.path());
    let blob_url = cfg.blob_store.clone().unwrap();
    let gw = Running::start(cfg).await;
    let port = gw.dicom.to_string();

    let (ok, out) = run_tool({
        let mut c = dcmtk("echoscu");
        c.args(["-aet", "MODALITY1", "-aec", AE, "127.0.0.1", &port]);
        c
    })
    .await;
    assert!(ok, "echoscu failed: {out}");

    let files = [
        (fixture(1, Kind::Cr12), IMPLICIT_LE),
        (fixture(2, Kind::Dx16), EXPLICIT_LE),
        (fixture(3, Kind::DxProcessing14), EXPLICIT_LE),
    ];
    let mut cmd = storescu(gw.dicom);
    for (f, ts) in &files {
        cmd.arg(f.write(dir.path(), ts));
    }
    let (ok, out) = run_tool(cmd).await;
    assert!(ok, "storescu failed: {out}");

    let events = scan_events(&kafka, &codec, 3, WAIT).await;
    assert_eq!(events.len(), 3, "one scan event per instance");
    let by_sop: HashMap<_, _> = events
        .iter()
        .map(|(raw, e)| (e.study.sop_instance_uid.clone(), (raw, e)))
        .collect();
    let pseudonyms = Pseudonymizer::new(KEY.as_bytes().to_vec());
    let blobs = BlobStore::open(&blob_url, &[]).unwrap();
    for (f, _) in &files {
        let (raw, e) = by_sop[&f.sop];
        assert_no_phi(f, raw.payload.as_deref().unwrap(), "the scan event");
        assert_no_phi(f, raw.key.as_deref().unwrap(), "the record key");
        for (k, v) in &raw.headers {
            assert_no_phi(f, format!("{k}{v}").as_bytes(), "a record header");
        }
        let s = &e.study;
        assert_eq!(
            raw.key.as_deref(),
            Some(f.study.as_bytes()),
            "keyed by study"
        );
        assert_eq!(s.study_instance_uid, f.study);
        assert_eq!(s.series_instance_uid, f.series);
        assert_eq!(s.modality, f.kind.modality());
        assert_eq!(s.view_position.as_deref(), Some("PA"));
        assert_eq!(s.patient_age_years, Some(66));
        assert_eq!(s.patient_sex.as_deref(), Some("F"));
        assert_eq!(s.site_id, "site-test");
        assert_eq!(s.priority_hint, OrderPriority::Routine);
        assert_eq!(s.patient_ref, pseudonyms.patient(Some(&f.patient_id)));
        assert_eq!(s.accession_number, pseudonyms.accession(Some(&f.accession)));
        assert!(
            (s.published_at - s.acquired_at).abs() < 120_000,
            "acquired now"
        );
        assert_eq!(e.media_type, "application/dicom");
        assert!(e.image_inline.is_none());
        // The stored file is the complete, intact instance: a Part-10 file whose data set is
        // exactly the bytes the modality sent, identifiers included.
        let uri = e.image_uri.as_deref().unwrap();
        assert!(uri.starts_with(&blob_url), "{uri}");
        let stored = blobs.get(uri).await.unwrap();
        assert_eq!(
            e.image_sha256.as_deref(),
            Some(sha256_hex(&stored).as_str())
        );
        assert_eq!(e.image_size_bytes, Some(stored.len() as i64));
        let part = cxrflow_gateway::instance::read_part10(&stored).unwrap();
        // storescu may transcode between the uncompressed syntaxes; the file names the one
        // that was negotiated.
        assert!(
            [EXPLICIT_LE, IMPLICIT_LE].contains(&part.transfer_syntax.as_str()),
            "{}",
            part.transfer_syntax
        );
        assert_eq!(part.media_sop_instance, f.sop);
        use dicom_dictionary_std::tags;
        let text = |obj: &dicom_object::InMemDicomObject, tag| {
            obj.element(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string()
        };
        for tag in [
            tags::PATIENT_ID,
            tags::PATIENT_NAME,
            tags::PATIENT_BIRTH_DATE,
        ] {
            assert_eq!(
                text(&part.dataset, tag),
                text(&f.dataset, tag),
                "the hospital's file keeps {tag} intact"
            );
        }
        let pixels = |obj: &dicom_object::InMemDicomObject| {
            obj.element(tags::PIXEL_DATA)
                .unwrap()
                .to_bytes()
                .unwrap()
                .into_owned()
        };
        assert_eq!(
            pixels(&part.dataset),
            pixels(&f.dataset),
            "pixel data intact"
        );
    }
    assert_eq!(
        gw.metric("cxrflow_gateway_instances_published_total{protocol=\"dimse\"}")
            .await,
        Some(3.0)
    );
    assert_eq!(
        gw.metric("cxrflow_gateway_receipt_to_ack_seconds_count{protocol=\"dimse\"}")
            .await,
        Some(3.0)
    );
    assert_eq!(
        gw.metric("cxrflow_gateway_associations_total").await,
        Some(2.0)
    );
    eventually(WAIT, "no association left open", || async {
        gw.metric("cxrflow_gateway_associations_active").await == Some(0.0)
    })
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pynetdicom_echoes_and_stores_and_its_ct_context_is_refused() {
    let python = venv_python();
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let gw = Running::start(config(&kafka, dir.path())).await;

    let cr = fixture(1, Kind::Cr12);
    let dx = fixture(2, Kind::Dx16);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pynetdicom_scu.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script)
        .args(["127.0.0.1", &gw.dicom.to_string(), AE])
        .arg(cr.write(dir.path(), EXPLICIT_LE))
        .arg(dx.write(dir.path(), IMPLICIT_LE));
    let (ok, out) = run_tool(cmd).await;
    assert!(ok, "pynetdicom SCU failed: {out}");
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    let report: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["established"], true, "{out}");
    assert_eq!(report["echo"], 0, "{out}");
    assert_eq!(report["stores"], serde_json::json!([0, 0]), "{out}");
    assert_eq!(
        report["rejected"],
        serde_json::json!([CT_IMAGE_STORAGE]),
        "{out}"
    );

    let events = scan_events(&kafka, &codec, 2, WAIT).await;
    let sops: HashSet<_> = events
        .iter()
        .map(|(_, e)| e.study.sop_instance_uid.clone())
        .collect();
    assert_eq!(sops, HashSet::from([cr.sop.clone(), dx.sop.clone()]));
    for (raw, e) in &events {
        let f = if e.study.sop_instance_uid == cr.sop {
            &cr
        } else {
            &dx
        };
        assert_no_phi(f, raw.payload.as_deref().unwrap(), "the scan event");
    }
    assert_eq!(
        gw.metric(
            "cxrflow_gateway_presentation_contexts_refused_total{reason=\"abstract_syntax_not_supported\"}"
        )
        .await,
        Some(1.0)
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_stopped_mid_association_leaves_the_sender_unacknowledged_and_the_resend_is_ingested_once(
) {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&kafka, dir.path());
    let ingest = start_ingest(&kafka, dir.path());
    let gw = Running::start(cfg.clone()).await;

    let fixtures = [
        fixture(1, Kind::Cr12),
        fixture(2, Kind::Dx16),
        fixture(3, Kind::Dx16),
    ];
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title("MODALITY1")
        .called_ae_title(AE)
        .with_presentation_context(fixtures[0].kind.sop_class(), vec![EXPLICIT_LE])
        .with_presentation_context(fixtures[1].kind.sop_class(), vec![EXPLICIT_LE])
        .establish_async(("127.0.0.1", gw.dicom))
        .await
        .expect("association");
    let (cr_pc, dx_pc) = (1, 3);
    // The first instance is stored and acknowledged...
    let status = c_store(
        &mut assoc,
        cr_pc,
        1,
        fixtures[0].kind.sop_class(),
        &fixtures[0].sop,
        &fixtures[0].dataset_bytes(EXPLICIT_LE),
    )
    .await;
    assert_eq!(status, Some(0x0000));
    let first = scan_events(&kafka, &codec, 1, WAIT).await;
    let blob = BlobStore::open(cfg.blob_store.as_deref().unwrap(), &[])
        .unwrap()
        .get(first[0].1.image_uri.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        blob.ends_with(&fixtures[0].dataset_bytes(EXPLICIT_LE)),
        "the stored file holds the data set exactly as sent"
    );
    // ...the second is half sent when the gateway goes down.
    let second = fixtures[1].dataset_bytes(EXPLICIT_LE);
    assoc
        .send(&pdata(
            dx_pc,
            PDataValueType::Command,
            true,
            c_store_rq(2, fixtures[1].kind.sop_class(), &fixtures[1].sop),
        ))
        .await
        .unwrap();
    assoc
        .send(&pdata(
            dx_pc,
            PDataValueType::Data,
            false,
            second[..second.len() / 2].to_vec(),
        ))
        .await
        .unwrap();
    gw.stop().await;
    let after = tokio::time::timeout(WAIT, assoc.receive()).await.unwrap();
    assert!(
        matches!(after, Ok(Pdu::AbortRQ { .. }) | Err(_)),
        "the sender sees an abort, not a success: {after:?}"
    );

    // The sender resends everything to the restarted gateway.
    let gw = Running::start(cfg).await;
    let mut cmd = storescu(gw.dicom);
    for f in &fixtures {
        cmd.arg(f.write(dir.path(), EXPLICIT_LE));
    }
    let (ok, out) = run_tool(cmd).await;
    assert!(ok, "storescu failed: {out}");

    let events = scan_events(&kafka, &codec, 4, WAIT).await;
    let mut per_sop: HashMap<String, usize> = HashMap::new();
    for (_, e) in &events {
        *per_sop.entry(e.study.sop_instance_uid.clone()).or_default() += 1;
    }
    assert_eq!(per_sop.len(), 3, "{per_sop:?}");
    assert_eq!(
        per_sop[&fixtures[0].sop], 2,
        "the acknowledged one was resent"
    );
    assert_eq!(
        per_sop[&fixtures[1].sop], 1,
        "the interrupted one was never published"
    );

    eventually(WAIT, "ingest skips the resent instance", || async {
        ingest.metric("cxrflow_ingest_duplicates_total").await == Some(1.0)
    })
    .await;
    let ingested: Vec<IngestedImage> =
        read_records(&kafka, &codec, 4, Duration::from_secs(2)).await;
    let sops: HashSet<_> = ingested
        .iter()
        .map(|i| i.study.sop_instance_uid.clone())
        .collect();
    assert_eq!(
        ingested.len(),
        3,
        "exactly one ingested image per SOP instance"
    );
    assert_eq!(sops.len(), 3);
    gw.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unacknowledged_event_answers_out_of_resources_and_the_resend_succeeds() {
    // The gateway starts while its broker is not there yet (the broker comes up later on the
    // same port), so the first C-STORE can never be acknowledged.
    cxrflow_testkit::init_logs();
    let port = cxrflow_testkit::free_port();
    let mut kafka = cxrflow_common::KafkaArgs::for_bootstrap(format!("127.0.0.1:{port}"));
    kafka.topic_prefix = format!("t{:08x}.", rand::random::<u32>());
    // Give up on an unacknowledged event quickly, so the sender hears about it quickly, and
    // reconnect quickly once the broker is there.
    for (k, v) in [
        ("message.timeout.ms", "2000"),
        ("reconnect.backoff.ms", "50"),
        ("reconnect.backoff.max.ms", "200"),
    ] {
        kafka.props.push((k.into(), v.into()));
    }
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let gw = Running::start(config(&kafka, dir.path())).await;
    let f = fixture(1, Kind::Dx16);
    let bytes = f.dataset_bytes(EXPLICIT_LE);
    let mut assoc = c_store_out_of_resources(&gw, &f, &bytes, "publish_failed").await;

    let broker_dir = tempfile::tempdir().unwrap();
    let _broker = cxrflow_common::broker::EmbeddedBroker::start(broker_dir.path(), port)
        .unwrap_or_else(|e| panic!("{e}"));
    cxrflow_common::kafka::admin::ensure_topics(
        &kafka,
        &cxrflow_common::kafka::admin::all_topics(),
        2,
        1,
    )
    .await
    .expect("create topics");
    // The sender resends, as a modality does, until the gateway takes it (each refusal takes
    // the message timeout, so this loop does not spin).
    let deadline = std::time::Instant::now() + WAIT;
    for message_id in 2.. {
        let s = c_store(
            &mut assoc,
            1,
            message_id,
            f.kind.sop_class(),
            &f.sop,
            &bytes,
        )
        .await;
        match s {
            Some(0x0000) => break,
            Some(0xA700) => assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for the resend to be stored"
            ),
            other => panic!("unexpected C-STORE status {other:?}"),
        }
    }
    assoc.release().await.expect("release");
    let events = scan_events(&kafka, &codec, 2, Duration::from_millis(1500)).await;
    assert!(!events.is_empty());
    assert!(events
        .iter()
        .all(|(_, e)| e.study.sop_instance_uid == f.sop));
    gw.stop().await;
}

/// DICOM dates and times are the acquiring site's local time, and most modalities send no
/// TimezoneOffsetFromUTC. A gateway in New York reads them there: a film whose times DCMTK's
/// `dcmodify` set to New York's "now" (as the system's own tzdata gives it, through `date`) is
/// acquired now, not four or five hours ago (read as UTC before, every such study had "waited"
/// hours on arrival and was escalated at once: the worklist fell back to arrival order). A film
/// that states its offset (Kolkata, +05:30) is read by it. A Kolkata film without its offset
/// (a modality whose zone is not the gateway's) arrives "acquired" hours ahead and is counted
/// for the alert that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dicom_times_without_an_offset_are_read_in_the_sites_zone() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&kafka, dir.path());
    cfg.timezone = Some("America/New_York".into());
    let gw = Running::start(cfg).await;
    let local_now = |zone: &str| {
        let out = std::process::Command::new("date")
            .env("TZ", zone)
            .arg("+%Y%m%d %H%M%S")
            .output()
            .expect("date runs");
        let text = String::from_utf8(out.stdout).unwrap();
        let (date, time) = text.trim().split_once(' ').unwrap();
        (date.to_string(), time.to_string())
    };
    let mut cmd = storescu(gw.dicom);
    for (n, zone, offset) in [
        (11, "America/New_York", None),
        (12, "Asia/Kolkata", Some("+0530")),
        (13, "Asia/Kolkata", None),
    ] {
        let path = fixture(n, Kind::Cr12).write(dir.path(), EXPLICIT_LE);
        let (date, time) = local_now(zone);
        let mut edit = dcmtk("dcmodify");
        edit.arg("-nb");
        for tag in ["(0008,0020)", "(0008,0022)"] {
            edit.args(["-i", &format!("{tag}={date}")]);
        }
        for tag in ["(0008,0030)", "(0008,0032)"] {
            edit.args(["-i", &format!("{tag}={time}")]);
        }
        if let Some(offset) = offset {
            edit.args(["-i", &format!("(0008,0201)={offset}")]);
        }
        edit.arg(&path);
        let (ok, out) = run_tool(edit).await;
        assert!(ok, "dcmodify failed: {out}");
        cmd.arg(path);
    }
    let (ok, out) = run_tool(cmd).await;
    assert!(ok, "storescu failed: {out}");
    let events = scan_events(&kafka, &codec, 3, WAIT).await;
    assert_eq!(events.len(), 3);
    for (_, e) in &events {
        let s = &e.study;
        let lag = s.published_at - s.acquired_at;
        let misread = s.sop_instance_uid.ends_with(".14");
        assert!(
            if misread {
                lag < -9 * 3_600_000
            } else {
                (-2_000..120_000).contains(&lag)
            },
            "{}: acquired {} min before it arrived",
            s.sop_instance_uid,
            lag / 60_000
        );
    }
    let off = |direction: &'static str| {
        let gw = &gw;
        async move {
            gw.metric(&format!(
                "cxrflow_gateway_acquisition_clock_off_total{{direction=\"{direction}\"}}"
            ))
            .await
            .unwrap_or(0.0)
        }
    };
    assert_eq!((off("ahead").await, off("behind").await), (1.0, 0.0));
    gw.stop().await;
}
