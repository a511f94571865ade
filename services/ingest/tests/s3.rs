//! Ingest with S3 on both ends, against a real S3-compatible server (moto) on loopback: an
//! `s3://` image reference is fetched and written to a blob store that is itself on S3.
//! Needs `moto_server` (scripts/prereqs.sh): without it the test fails under
//! `CXRFLOW_REQUIRE_TOOLS=1` and is skipped and listed otherwise ([`cxrflow_testkit::tools`]).

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::blob::{sha256_hex, BlobStore};
use cxrflow_contracts::{Codec, DeadLetter, IngestedImage};
use cxrflow_testkit::{eventually, free_port, read_records, require_tool, Broker};
use support::*;

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_reference_is_ingested_into_an_s3_blob_store() {
    let Some(moto_server) = require_tool("moto_server") else {
        return;
    };
    let port = free_port();
    let _moto = Moto(
        Command::new(moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server"),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "moto answers", || {
        let (http, endpoint) = (http.clone(), endpoint.clone());
        async move { http.get(&endpoint).send().await.is_ok() }
    })
    .await;
    for bucket in ["scans", "cxr-blobs"] {
        let r = http
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create bucket {bucket}: {}",
            r.status()
        );
    }
    let bytes = image(7, 5000);
    let r = http
        .put(format!("{endpoint}/scans/site-a/2024/img-7.dcm"))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "put object: {}", r.status());

    let options: Vec<(String, String)> = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "testing"),
        ("aws_secret_access_key", "testing"),
        ("aws_region", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&kafka, dir.path());
    cfg.blob_store = Some("s3://cxr-blobs/blobs".into());
    cfg.blob_store_options = options.clone();
    cfg.s3_options = options.clone();
    cfg.fetch_timeout_ms = 10_000;
    let svc = Running::start(cfg);

    let mut s = scan(7);
    s.media_type = "application/dicom".into();
    s.image_uri = Some("s3://scans/site-a/2024/img-7.dcm".into());
    s.image_sha256 = Some(sha256_hex(&bytes));
    let mut missing = scan(8);
    missing.image_uri = Some("s3://scans/site-a/2024/no-such.dcm".into());
    produce(&kafka, &codec, &[s.clone(), missing.clone()]).await;

    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 1, Duration::from_secs(30)).await;
    assert_eq!(out.len(), 1);
    let img = &out[0];
    assert_eq!(img.study.sop_instance_uid, s.study.sop_instance_uid);
    assert_eq!(img.sha256, sha256_hex(&bytes));
    assert_eq!(img.media_type, "application/dicom");
    assert!(
        img.blob_uri.starts_with("s3://cxr-blobs/blobs/sha256/"),
        "{}",
        img.blob_uri
    );
    let blobs = BlobStore::open("s3://cxr-blobs/blobs", &options).unwrap();
    assert_eq!(
        &blobs.get(&img.blob_uri).await.unwrap()[..],
        &bytes[..],
        "blob on S3 is intact"
    );

    let dlq: Vec<DeadLetter> = read_records(&kafka, &codec, 1, Duration::from_secs(30)).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].reason, "ingest.fetch_not_found", "{}", dlq[0].error);
    assert_eq!(
        dlq[0].study_instance_uid.as_deref(),
        Some(missing.study.study_instance_uid.as_str())
    );
    assert_eq!(
        svc.metric("cxrflow_ingest_images_total{source=\"s3\"}")
            .await,
        Some(1.0)
    );
    svc.stop().await;
}
