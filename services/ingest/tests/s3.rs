//! Ingest with S3 on both ends, against a real S3-compatible server (moto) on loopback: an
//! `s3://` image reference is fetched and written to a blob store that is itself on S3, with
//! server-side encryption (SSE-KMS) requested through the blob store options; an object outside
//! `--ingest-s3-allow` is refused although it exists.
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

/// The Python of moto's environment (it has boto3): the interpreter next to `moto_server`.
fn moto_python(moto_server: &std::path::Path) -> std::path::PathBuf {
    let real = std::fs::canonicalize(moto_server).unwrap();
    real.with_file_name("python3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_reference_is_ingested_into_an_s3_blob_store() {
    let Some(moto_server) = require_tool("moto_server") else {
        return;
    };
    let port = free_port();
    let _moto = Moto(
        Command::new(&moto_server)
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
    // The same image where the allow-list does not reach: it exists, and is still not read.
    for key in ["site-a/2024/img-7.dcm", "site-b/2024/img-7.dcm"] {
        let r = http
            .put(format!("{endpoint}/scans/{key}"))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "put object: {}", r.status());
    }

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
    cfg.blob_store.url = Some("s3://cxr-blobs/blobs".into());
    // Server-side encryption of the claim checks (README, Privacy): SSE-KMS with a named key.
    let mut encrypted = options.clone();
    encrypted.push(("aws_server_side_encryption".into(), "aws:kms".into()));
    encrypted.push(("aws_sse_kms_key_id".into(), "alias/cxrflow-blobs".into()));
    cfg.blob_store.options = encrypted;
    cfg.s3_options = options.clone();
    cfg.fetch_timeout_ms = 10_000;
    cfg.s3_allow = vec!["scans/site-a/".into()];
    let svc = start(cfg);

    let mut s = scan(7);
    s.media_type = "application/dicom".into();
    s.image_uri = Some("s3://scans/site-a/2024/img-7.dcm".into());
    s.image_sha256 = Some(sha256_hex(&bytes));
    let mut missing = scan(8);
    missing.image_uri = Some("s3://scans/site-a/2024/no-such.dcm".into());
    let mut elsewhere = scan(9);
    elsewhere.image_uri = Some("s3://scans/site-b/2024/img-7.dcm".into());
    produce(
        &kafka,
        &codec,
        &[s.clone(), missing.clone(), elsewhere.clone()],
    )
    .await;

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
    // Its size without reading it (a HEAD: how ingest checks an event naming an object already
    // at its content address).
    assert_eq!(blobs.size(&img.blob_uri).await.unwrap(), bytes.len() as u64);
    // How the object is stored, asked with boto3 (a KMS-encrypted object needs a signed
    // request), from moto's own environment.
    let key = img
        .blob_uri
        .trim_start_matches("s3://cxr-blobs/")
        .to_string();
    let python = moto_python(&moto_server);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([
                "-c",
                "import sys, json, boto3\n\
                 s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
                 h = s3.head_object(Bucket='cxr-blobs', Key=sys.argv[2])\n\
                 print(json.dumps({'sse': h.get('ServerSideEncryption'), 'kms': h.get('SSEKMSKeyId')}))",
                &endpoint,
                &key,
            ])
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "head_object: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        head["sse"], "aws:kms",
        "the claim check is stored encrypted: {head}"
    );
    assert!(
        head["kms"]
            .as_str()
            .is_some_and(|k| k.contains("cxrflow-blobs")),
        "with the configured key: {head}"
    );

    let dlq: Vec<DeadLetter> = read_records(&kafka, &codec, 2, Duration::from_secs(30)).await;
    assert_eq!(dlq.len(), 2);
    let reason_of = |study: &str| {
        dlq.iter()
            .find(|d| d.study_instance_uid.as_deref() == Some(study))
            .map(|d| (d.reason.clone(), d.error.clone()))
            .expect("a dead letter for the study")
    };
    let (reason, error) = reason_of(&missing.study.study_instance_uid);
    assert_eq!(reason, "ingest.fetch_not_found", "{error}");
    let (reason, error) = reason_of(&elsewhere.study.study_instance_uid);
    assert_eq!(reason, "ingest.uri_not_allowed", "{error}");
    assert!(error.contains("--ingest-s3-allow"), "{error}");
    assert_eq!(
        svc.metric("cxrflow_ingest_images_total{source=\"s3\"}")
            .await,
        Some(1.0)
    );
    svc.stop().await;
}
