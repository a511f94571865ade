//! STOW-RS against a real broker: a clean upload answers 200 with every instance referenced; a
//! mixed upload answers 202 with the broken and the refused parts failed (with their Failure
//! Reason) while the others are published; request-level mistakes answer 415, 409 and 413, and
//! a stalled body 408; without the uploader role nothing is stored or published.

mod support;

use std::collections::HashSet;

use cxrflow_testkit::{eventually, Broker};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUNDARY: &str = "cxrflow-test-boundary-7f3a";

fn multipart(parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (media_type, bytes) in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: {media_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post(url: &str, body: Vec<u8>) -> (u16, Value, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .header(
            "content-type",
            format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"),
        )
        .header("accept", "application/dicom+json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        ct,
    )
}

fn sops(doc: &Value, seq: &str) -> Vec<(Option<String>, Option<u64>)> {
    doc[seq]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["00081155"]["Value"][0].as_str().map(str::to_string),
                        i["00081197"]["Value"][0].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stow_rs_stores_good_parts_and_fails_the_others_one_by_one() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&kafka, dir.path());
    cfg.stow_max_body_bytes = 1024 * 1024;
    let gw = Running::start(cfg).await;

    // A clean upload: 200, every instance referenced.
    let a = fixture(1, Kind::Cr12);
    let b = fixture(2, Kind::Dx16);
    let (code, doc, ct) = post(
        &gw.stow_url("/studies"),
        multipart(&[
            ("application/dicom", a.part10(EXPLICIT_LE)),
            ("application/dicom", b.part10(IMPLICIT_LE)),
        ]),
    )
    .await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(ct, "application/dicom+json");
    let referenced: HashSet<_> = sops(&doc, "00081199").into_iter().map(|s| s.0).collect();
    assert_eq!(
        referenced,
        HashSet::from([Some(a.sop.clone()), Some(b.sop.clone())])
    );
    assert!(doc.get("00081198").is_none(), "{doc}");
    assert_eq!(doc["00081199"]["Value"][0]["00081150"]["vr"], "UI");

    // A mixed upload: one good, one not DICOM at all, one CT, one of another study than the
    // URL's... the URL names c's study, so only c may succeed.
    let c = fixture(3, Kind::Dx16);
    let ct_image = fixture(4, Kind::Ct);
    let other_study = fixture(5, Kind::Cr12);
    let (code, doc, _) = post(
        &gw.stow_url(&format!("/studies/{}", c.study)),
        multipart(&[
            ("application/dicom", c.part10(EXPLICIT_LE)),
            ("application/dicom", b"this is not a DICOM file".to_vec()),
            ("application/dicom", ct_image.part10(EXPLICIT_LE)),
            ("application/dicom", other_study.part10(EXPLICIT_LE)),
        ]),
    )
    .await;
    assert_eq!(code, 202, "{doc}");
    assert_eq!(sops(&doc, "00081199"), vec![(Some(c.sop.clone()), None)]);
    let failed = sops(&doc, "00081198");
    assert_eq!(
        failed,
        vec![
            (None, Some(0xC000)),
            (Some(ct_image.sop.clone()), Some(0x0122)),
            (Some(other_study.sop.clone()), Some(0xC409)),
        ],
        "{doc}"
    );

    // Nothing stored: 409.
    let (code, doc, _) = post(
        &gw.stow_url("/studies"),
        multipart(&[("application/dicom", ct_image.part10(EXPLICIT_LE))]),
    )
    .await;
    assert_eq!(code, 409, "{doc}");

    // Request-level refusals.
    let resp = reqwest::Client::new()
        .post(gw.stow_url("/studies"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let big = vec![0u8; 2 * 1024 * 1024];
    let (code, _, _) = post(
        &gw.stow_url("/studies"),
        multipart(&[("application/dicom", big)]),
    )
    .await;
    assert_eq!(code, 413);

    // A body that stalls is given up on (408) instead of holding a slot forever.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", gw.http))
        .await
        .unwrap();
    let head = format!(
        "POST /studies HTTP/1.1\r\nHost: gateway\r\nContent-Type: multipart/related; \
         type=\"application/dicom\"; boundary={BOUNDARY}\r\nContent-Length: 100000\r\n\r\n\
         --{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nDICM"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let events = scan_events(&kafka, &codec, 3, WAIT).await;
    let published: HashSet<_> = events
        .iter()
        .map(|(_, e)| e.study.sop_instance_uid.clone())
        .collect();
    assert_eq!(
        published,
        HashSet::from([a.sop.clone(), b.sop.clone(), c.sop.clone()])
    );
    for (raw, e) in &events {
        let f = [&a, &b, &c]
            .into_iter()
            .find(|f| f.sop == e.study.sop_instance_uid)
            .unwrap();
        assert_no_phi(f, raw.payload.as_deref().unwrap(), "the scan event");
        assert_eq!(e.media_type, "application/dicom");
    }
    assert_eq!(
        gw.metric("cxrflow_gateway_instances_published_total{protocol=\"stow\"}")
            .await,
        Some(3.0)
    );
    assert_eq!(gw.rejected("dataset_unreadable").await, 1.0);
    assert_eq!(gw.rejected("sop_class_not_supported").await, 2.0);
    assert_eq!(gw.rejected("study_mismatch").await, 1.0);
    assert_eq!(gw.rejected("media_type_unsupported").await, 1.0);
    assert_eq!(gw.rejected("idle_timeout").await, 1.0);
    eventually(WAIT, "the oversized request is counted", || async {
        gw.rejected("request_too_large").await == 1.0
    })
    .await;
    gw.stop().await;
}

/// STOW-RS needs the uploader role: without a key (401) or with a reader's (403) nothing is
/// stored and nothing reaches Kafka; the uploader's key stores and publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stow_rs_without_the_uploader_role_stores_and_publishes_nothing() {
    use cxrflow_common::auth::Role;
    use cxrflow_testkit::keys::TestKeys;

    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let keys = TestKeys::new();
    let mut cfg = config(&kafka, dir.path());
    cfg.service.auth = keys.auth_args();
    let gw = Running::start(cfg).await;
    let send = |client: reqwest::Client, f: &Fixture| {
        client
            .post(gw.stow_url("/studies"))
            .header(
                "content-type",
                format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"),
            )
            .body(multipart(&[("application/dicom", f.part10(EXPLICIT_LE))]))
            .send()
    };
    let (a, b, c) = (
        fixture(11, Kind::Cr12),
        fixture(12, Kind::Dx16),
        fixture(13, Kind::Cr12),
    );
    let r = send(reqwest::Client::new(), &a).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = send(TestKeys::client(keys.key(Role::Reader)), &b)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(
        files_under(&dir.path().join("dicom")).len(),
        0,
        "nothing stored"
    );
    let r = send(TestKeys::client(keys.key(Role::Uploader)), &c)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // 200 means Kafka acknowledged c; a, sent earlier, would be on the topic before it.
    let events = scan_events(&kafka, &codec, 1, WAIT).await;
    let published: Vec<_> = events
        .iter()
        .map(|(_, e)| e.study.sop_instance_uid.clone())
        .collect();
    assert_eq!(published, vec![c.sop.clone()]);
    assert_eq!(files_under(&dir.path().join("dicom")).len(), 1);
    gw.stop().await;
}
