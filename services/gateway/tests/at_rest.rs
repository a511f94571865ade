//! Identifiable files at rest: when the gateway and ingest share a blob store (compose, Helm and
//! `cxrflow up` configure it so), the DICOM file DCMTK's storescu sent is kept once. Ingest
//! references the gateway's object (its content address) instead of writing a second copy.

mod support;

use std::time::Duration;

use cxrflow_contracts::IngestedImage;
use cxrflow_testkit::{eventually, read_records, Broker};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_shared_store_the_received_file_is_kept_once_and_ingest_references_it() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = format!("file://{}", store_dir.display());
    let mut cfg = config(&kafka, dir.path());
    cfg.blob_store = Some(store.clone());
    let gw = Running::start(cfg).await;
    let ingest = start_ingest_with_store(&kafka, dir.path(), store);

    let fixtures = [fixture(1, Kind::Cr12), fixture(2, Kind::Dx16)];
    let files: Vec<_> = fixtures
        .iter()
        .map(|f| f.write(dir.path(), EXPLICIT_LE))
        .collect();
    let (ok, out) = run_tool({
        let mut c = storescu(gw.dicom);
        c.args(&files);
        c
    })
    .await;
    assert!(ok, "storescu failed: {out}");

    let events = scan_events(&kafka, &codec, 2, WAIT).await;
    let ingested: Vec<IngestedImage> = read_records(&kafka, &codec, 2, WAIT).await;
    assert_eq!(ingested.len(), 2);
    for image in &ingested {
        let (_, scan) = events
            .iter()
            .find(|(_, e)| e.study.sop_instance_uid == image.study.sop_instance_uid)
            .expect("a scan event per ingested image");
        assert_eq!(
            Some(&image.blob_uri),
            scan.image_uri.as_ref(),
            "ingest points at the gateway's object"
        );
        assert_eq!(Some(&image.sha256), scan.image_sha256.as_ref());
        assert_eq!(Some(image.size_bytes), scan.image_size_bytes);
    }
    let stored = files_under(&store_dir);
    assert_eq!(
        stored.len(),
        2,
        "one file per instance in the shared store, no copy: {stored:?}"
    );
    eventually(
        Duration::from_secs(10),
        "the metric says referenced",
        || async {
            ingest
                .metric("cxrflow_ingest_blobs_total{outcome=\"referenced\"}")
                .await
                == Some(2.0)
        },
    )
    .await;
    assert_eq!(
        ingest
            .metric("cxrflow_ingest_blobs_total{outcome=\"written\"}")
            .await,
        None
    );
    // Nor read: the object at its content address is checked for presence and size only
    // (preprocess hashes the bytes it decodes).
    assert_eq!(
        ingest
            .metric("cxrflow_ingest_fetch_seconds_count{source=\"file\"}")
            .await,
        None,
        "ingest read the gateway's file"
    );
    gw.stop().await;
    ingest.stop().await;
}
