//! Ingest against a real broker: images flow inline and by file, resends are deduplicated (also
//! across a restart), and every broken input dead-letters with its own reason while good records
//! keep flowing; a hanging image server holds its record back (transient, uncommitted) until it
//! answers.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::blob::{sha256_hex, BlobStore};
use cxrflow_contracts::{topics, Codec, DeadLetter, IngestedImage};
use cxrflow_testkit::{eventually, read_records, read_topic, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn codec() -> Arc<Codec> {
    Arc::new(Codec::with_static_registry().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_flow_inline_and_by_file_and_a_resend_is_emitted_once() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&kafka, dir.path());
    let blob_url = cfg.blob_store.effective_url();
    let svc = start(cfg);

    let mut scans = Vec::new();
    let mut expected = HashMap::new();
    for n in 0..6u32 {
        let bytes = image(n, 300 + n as usize);
        let mut s = scan(n);
        if n % 2 == 0 {
            s.image_inline = Some(bytes.clone());
        } else {
            let path = dir.path().join(format!("img-{n}.png"));
            std::fs::write(&path, &bytes).unwrap();
            s.image_uri = Some(format!("file://{}", path.display()));
            s.image_size_bytes = Some(bytes.len() as i64);
        }
        if n % 3 == 0 {
            s.image_sha256 = Some(sha256_hex(&bytes));
        }
        expected.insert(s.study.sop_instance_uid.clone(), bytes);
        scans.push(s);
    }
    // Gateway resends: same SOP and content, new event ids, one inline and one by file.
    let mut resends = Vec::new();
    for i in [0usize, 1] {
        let mut r = scans[i].clone();
        r.event_id = format!("{}-resent", r.event_id);
        resends.push(r);
    }
    produce(&kafka, &codec, &scans).await;
    produce(&kafka, &codec, &resends).await;

    eventually(WAIT, "both resends counted as duplicates", || async {
        svc.metric("cxrflow_ingest_duplicates_total").await == Some(2.0)
    })
    .await;
    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 7, Duration::from_secs(5)).await;
    assert_eq!(out.len(), 6, "one record per SOP instance: {out:#?}");
    let blobs = BlobStore::open(&blob_url, &[]).unwrap();
    for img in &out {
        let want = &expected[&img.study.sop_instance_uid];
        assert_eq!(img.sha256, sha256_hex(want));
        assert_eq!(img.size_bytes, want.len() as i64);
        assert!(img.blob_uri.starts_with(&blob_url), "{}", img.blob_uri);
        assert_eq!(
            &blobs.get(&img.blob_uri).await.unwrap()[..],
            &want[..],
            "blob readable and intact"
        );
        assert!(img.event_id.starts_with("event-") && !img.event_id.ends_with("-resent"));
    }
    let sops: HashSet<_> = out
        .iter()
        .map(|i| i.study.sop_instance_uid.clone())
        .collect();
    assert_eq!(sops.len(), 6);
    assert_eq!(
        svc.metric("cxrflow_ingest_images_total{source=\"inline\"}")
            .await,
        Some(3.0)
    );
    assert_eq!(
        svc.metric("cxrflow_ingest_images_total{source=\"file\"}")
            .await,
        Some(3.0)
    );
    assert!(
        svc.metric("cxrflow_ingest_fetch_seconds_count{source=\"file\"}")
            .await
            >= Some(3.0)
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deduplication_survives_a_restart() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();

    let mut first = scan(1);
    first.image_inline = Some(image(1, 500));
    let svc = start(config(&kafka, dir.path()));
    produce(&kafka, &codec, std::slice::from_ref(&first)).await;
    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 1, WAIT).await;
    assert_eq!(out.len(), 1);
    svc.stop().await;

    // A new process on the same database: the resend is recognised, a new SOP still flows.
    let svc = start(config(&kafka, dir.path()));
    let mut resend = first.clone();
    resend.event_id = "resent-after-restart".into();
    let mut other = scan(2);
    other.image_inline = Some(image(2, 500));
    produce(&kafka, &codec, &[resend, other.clone()]).await;
    eventually(WAIT, "the resend is counted as a duplicate", || async {
        svc.metric("cxrflow_ingest_duplicates_total").await == Some(1.0)
    })
    .await;
    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 2, WAIT).await;
    let sops: Vec<_> = out
        .iter()
        .map(|i| i.study.sop_instance_uid.as_str())
        .collect();
    assert_eq!(out.len(), 2, "{sops:?}");
    assert!(sops.contains(&other.study.sop_instance_uid.as_str()));
    let again: Vec<IngestedImage> = read_records(&kafka, &codec, 3, Duration::from_secs(3)).await;
    assert_eq!(again.len(), 2, "no second record for the resent SOP");
    svc.stop().await;
}

/// The committed offset of ingest's group on a partition of the scan topic (-1: none).
fn committed(kafka: &cxrflow_common::KafkaArgs, partition: i32) -> i64 {
    let mut cc = kafka.client_config();
    cc.set("group.id", "cxrflow-ingest");
    let c: BaseConsumer = cc.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&kafka.topic(topics::SCAN), partition);
    let got = c.committed_offsets(tpl, Duration::from_secs(5)).unwrap();
    match got.elements()[0].offset() {
        Offset::Offset(o) => o,
        _ => -1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_inputs_dead_letter_with_their_reason_and_a_hanging_source_holds_its_record() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let http = HttpServer::start().await;
    let mut cfg = config(&kafka, dir.path());
    // The test server is on loopback: allowed explicitly, as an operator lists a PACS.
    cfg.http_allow = vec![format!("http://127.0.0.1:{}/", http.port)];
    cfg.max_image_bytes = 4096;
    cfg.max_inline_bytes = 1024;
    cfg.fetch_timeout_ms = 300;
    let blob_url = cfg.blob_store.effective_url();
    let svc = start(cfg);

    // The hanging source goes first on its partition so nothing after it there can commit.
    let hang = Arc::new(AtomicBool::new(true));
    let slow_bytes = image(99, 200);
    let mut slow = scan(99);
    slow.image_uri = Some(http.route("/slow.png", Route::Hang(hang.clone(), slow_bytes.clone())));
    let slow_at = produce(&kafka, &codec, std::slice::from_ref(&slow)).await[0];

    let mut broken = Vec::new();
    let mut expect = HashMap::new();
    let mut add = |mut s: cxrflow_contracts::ScanEvent,
                   reason: &str,
                   edit: &dyn Fn(&mut cxrflow_contracts::ScanEvent)| {
        edit(&mut s);
        expect.insert(s.study.study_instance_uid.clone(), reason.to_string());
        broken.push(s);
    };
    let inline = |s: &mut cxrflow_contracts::ScanEvent| s.image_inline = Some(image(0, 100));
    add(scan(10), "ingest.uid_malformed", &|s| {
        inline(s);
        s.study.sop_instance_uid = "1.2.03.4".into();
    });
    add(scan(11), "ingest.modality_unsupported", &|s| {
        inline(s);
        s.study.modality = "MR".into();
    });
    add(scan(12), "ingest.image_missing", &|_| {});
    add(scan(13), "ingest.sha256_mismatch", &|s| {
        inline(s);
        s.image_sha256 = Some(sha256_hex(b"something else"));
    });
    let missing = dir.path().join("nowhere.png");
    add(scan(14), "ingest.fetch_not_found", &|s| {
        s.image_uri = Some(format!("file://{}", missing.display()))
    });
    add(scan(15), "ingest.too_large", &|s| {
        s.image_inline = Some(vec![1; 2000])
    });
    let gone = http.route("/gone.png", Route::Status(404));
    add(scan(16), "ingest.fetch_not_found", &|s| {
        s.image_uri = Some(gone.clone())
    });
    // Events naming a content address in ingest's own store (as the gateway's do when the two
    // share a store) are not read: the object must be there, and of the declared size.
    let store = BlobStore::open(&blob_url, &[]).unwrap();
    let absent = sha256_hex(b"never stored");
    add(scan(22), "ingest.fetch_not_found", &|s| {
        s.image_uri = Some(store.content_uri(&absent));
        s.image_sha256 = Some(absent.clone());
    });
    let stored_bytes = image(23, 300);
    let (stored_uri, stored_sha, _) = store
        .put_content_addressed(stored_bytes.clone().into())
        .await
        .unwrap();
    add(scan(23), "ingest.size_mismatch", &|s| {
        s.image_uri = Some(stored_uri.clone());
        s.image_sha256 = Some(stored_sha.clone());
        s.image_size_bytes = Some(stored_bytes.len() as i64 + 1);
    });
    let endless = http.route("/endless.png", Route::Endless(1 << 20));
    add(scan(17), "ingest.too_large", &|s| {
        s.image_uri = Some(endless.clone())
    });
    add(scan(18), "ingest.uri_unsupported", &|s| {
        s.image_uri = Some("ftp://pacs/x.dcm".into())
    });
    add(scan(19), "ingest.timestamp_absurd", &|s| {
        inline(s);
        s.study.acquired_at = 42;
    });
    // The same SOP as the good record below with other content.
    let good_bytes = image(20, 256);
    let mut good = scan(20);
    good.image_uri = Some(http.route("/good.png", Route::Ok(good_bytes.clone())));
    good.image_sha256 = Some(sha256_hex(&good_bytes));
    produce(&kafka, &codec, std::slice::from_ref(&good)).await;
    produce(&kafka, &codec, &broken).await;
    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 1, WAIT).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].study.sop_instance_uid, good.study.sop_instance_uid);
    assert_eq!(out[0].sha256, sha256_hex(&good_bytes));
    let mut conflict = good.clone();
    conflict.event_id = "conflicting".into();
    conflict.image_uri = None;
    conflict.image_sha256 = None;
    conflict.image_inline = Some(image(21, 256));
    produce(&kafka, &codec, std::slice::from_ref(&conflict)).await;
    let mut after = scan(30);
    after.image_inline = Some(image(30, 400));
    produce(&kafka, &codec, std::slice::from_ref(&after)).await;

    let n_dead = broken.len() + 1;
    let dlq: Vec<DeadLetter> = read_records(&kafka, &codec, n_dead, WAIT).await;
    let got = dead_letters_by_study(&dlq);
    for (study, reason) in &expect {
        let (r, err) = got
            .get(study)
            .unwrap_or_else(|| panic!("no dead letter for {study} ({reason}): {got:#?}"));
        assert_eq!(r, reason, "{study}: {err}");
    }
    let (r, err) = &got[&good.study.study_instance_uid];
    assert_eq!(r, "ingest.sop_conflict", "{err}");
    assert!(err.contains(&sha256_hex(&good_bytes)), "{err}");
    let (_, err) = &got[&scan(10).study.study_instance_uid];
    assert!(
        err.contains("sop_instance_uid \"1.2.03.4\""),
        "operator sees field and value: {err}"
    );
    assert!(dlq
        .iter()
        .all(|d| d.payload.is_some() && d.stage == "ingest"));
    assert_eq!(dlq.len(), n_dead, "one dead letter each");

    // The good record after the broken ones still flows.
    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 2, WAIT).await;
    let sops: HashSet<_> = out
        .iter()
        .map(|i| i.study.sop_instance_uid.clone())
        .collect();
    assert!(sops.contains(&after.study.sop_instance_uid), "{sops:?}");

    // Meanwhile the hanging source is retried (transient), neither produced nor dead-lettered,
    // and its partition's committed offset stays at or before it.
    eventually(WAIT, "the hanging URL is retried", || async {
        http.hits("/slow.png") >= 3
    })
    .await;
    assert!(
        svc.metric("cxrflow_ingest_transient_errors_total{kind=\"fetch\"}")
            .await
            >= Some(2.0)
    );
    assert!(!sops.contains(&slow.study.sop_instance_uid));
    assert!(!dlq
        .iter()
        .any(|d| d.study_instance_uid.as_deref() == Some(&slow.study.study_instance_uid)));
    let (k, p) = (kafka.clone(), slow_at.0);
    let held = tokio::task::spawn_blocking(move || committed(&k, p))
        .await
        .unwrap();
    assert!(
        held <= slow_at.1,
        "committed {held} past the hanging record at {}",
        slow_at.1
    );

    // The server answers: the record flows and its partition commits past it.
    hang.store(false, Ordering::SeqCst);
    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 3, WAIT).await;
    let flowed = out
        .iter()
        .find(|i| i.study.sop_instance_uid == slow.study.sop_instance_uid);
    assert_eq!(
        flowed.map(|i| i.sha256.clone()),
        Some(sha256_hex(&slow_bytes))
    );
    let (k, p) = (kafka.clone(), slow_at.0);
    eventually(
        WAIT,
        "the offset commits past the once-hanging record",
        || {
            let k = k.clone();
            async move {
                tokio::task::spawn_blocking(move || committed(&k, p))
                    .await
                    .unwrap()
                    > slow_at.1
            }
        },
    )
    .await;
    let dlq_after = read_topic(&kafka, topics::DLQ, Duration::from_secs(2), |r| {
        r.len() > n_dead
    })
    .await;
    assert_eq!(
        dlq_after.len(),
        n_dead,
        "the hanging record never dead-lettered"
    );
    svc.stop().await;
}
