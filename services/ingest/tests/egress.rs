//! Ingest fetches images only from where it may: a scan event pointing at loopback (triage's
//! own API), the link-local metadata address, a private address, or a name resolving to one,
//! or redirecting off the allow-list, is dead-lettered with its reason and the target is never
//! contacted; a listed source or an allowed network is fetched. A source that never answers is
//! retried for the give-up time, then dead-lettered.

mod support;

use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::blob::sha256_hex;
use cxrflow_contracts::{Codec, DeadLetter, IngestedImage, ScanEvent};
use cxrflow_testkit::{read_records, Broker};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn codec() -> Arc<Codec> {
    Arc::new(Codec::with_static_registry().unwrap())
}

fn by_uri(n: u32, uri: String) -> ScanEvent {
    let mut s = scan(n);
    s.image_uri = Some(uri);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn internal_and_unlisted_sources_are_dead_lettered_and_never_contacted() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let http = HttpServer::start().await;
    let port = http.port;
    let secret = http.route("/secret.png", Route::Ok(image(1, 200)));
    let allowed = http.route("/allowed/ok.png", Route::Ok(image(2, 200)));
    http.route("/allowed/hop", Route::Redirect(secret.clone()));
    let mut cfg = config(&kafka, dir.path());
    // Only /allowed/ on the test server; 10.99.0.0/16 stands for a PACS subnet.
    cfg.http_allow = vec![
        format!("http://127.0.0.1:{port}/allowed/"),
        "pacs.invalid".into(),
    ];
    cfg.allow_networks = vec!["10.99.0.0/16".into()];
    let svc = start(cfg);
    let own_api = format!("http://127.0.0.1:{}/metrics", svc.http_port());

    let cases: Vec<(ScanEvent, &str)> = vec![
        (by_uri(40, own_api), "ingest.uri_not_allowed"),
        (by_uri(41, secret.clone()), "ingest.uri_not_allowed"),
        (
            by_uri(42, "http://169.254.169.254/latest/meta-data/".into()),
            "ingest.uri_not_allowed",
        ),
        (
            by_uri(43, format!("http://127.0.0.1:{port}/allowed/hop")),
            "ingest.uri_not_allowed",
        ),
    ];
    let mut good = by_uri(44, allowed.clone());
    good.image_sha256 = Some(sha256_hex(&image(2, 200)));
    let events: Vec<ScanEvent> = cases.iter().map(|(s, _)| s.clone()).collect();
    produce(&kafka, &codec, &events).await;
    produce(&kafka, &codec, std::slice::from_ref(&good)).await;

    let dlq: Vec<DeadLetter> = read_records(&kafka, &codec, cases.len(), WAIT).await;
    let got = dead_letters_by_study(&dlq);
    for (s, reason) in &cases {
        let (r, err) = got
            .get(&s.study.study_instance_uid)
            .unwrap_or_else(|| panic!("no dead letter for {:?}: {got:#?}", s.image_uri));
        assert_eq!(r, reason, "{:?}: {err}", s.image_uri);
    }
    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 1, WAIT).await;
    assert_eq!(out[0].study.sop_instance_uid, good.study.sop_instance_uid);
    assert_eq!(http.hits("/allowed/ok.png"), 1);
    assert_eq!(http.hits("/allowed/hop"), 1, "the redirect is asked for");
    assert_eq!(
        http.hits("/secret.png"),
        0,
        "never followed to an unlisted URL"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_an_allow_list_internal_addresses_are_refused_after_resolution() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let http = HttpServer::start().await;
    let port = http.port;
    http.route("/x.png", Route::Ok(image(3, 200)));
    let svc = start(config(&kafka, dir.path()));
    let cases: Vec<(ScanEvent, &str)> = vec![
        // An IP literal on loopback, the metadata service, a private address, IPv6 loopback.
        (
            by_uri(50, format!("http://127.0.0.1:{port}/x.png")),
            "ingest.address_forbidden",
        ),
        (
            by_uri(51, "http://169.254.169.254/latest/meta-data/".into()),
            "ingest.address_forbidden",
        ),
        (
            by_uri(52, "http://10.0.0.1/x.png".into()),
            "ingest.address_forbidden",
        ),
        (
            by_uri(53, format!("http://[::1]:{port}/x.png")),
            "ingest.address_forbidden",
        ),
        // A name: refused after DNS resolution, in the client's resolver.
        (
            by_uri(54, format!("http://localhost:{port}/x.png")),
            "ingest.address_forbidden",
        ),
    ];
    let events: Vec<ScanEvent> = cases.iter().map(|(s, _)| s.clone()).collect();
    produce(&kafka, &codec, &events).await;
    let dlq: Vec<DeadLetter> = read_records(&kafka, &codec, cases.len(), WAIT).await;
    for (s, reason) in &cases {
        let d = dlq
            .iter()
            .find(|d| d.study_instance_uid.as_deref() == Some(&s.study.study_instance_uid))
            .unwrap_or_else(|| panic!("no dead letter for {:?}", s.image_uri));
        assert_eq!(d.reason, *reason, "{:?}: {}", s.image_uri, d.error);
        assert!(d.error.contains("--ingest-allow-networks"), "{}", d.error);
    }
    assert_eq!(http.hits("/x.png"), 0, "no internal address was contacted");
    svc.stop().await;

    // The same name from an allowed network is fetched (fresh topics: nothing replayed).
    let kafka = broker.stack().await;
    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg = config(&kafka, dir2.path());
    cfg.allow_networks = vec!["127.0.0.0/8".into(), "::1".into()];
    let svc = start(cfg);
    produce(
        &kafka,
        &codec,
        &[by_uri(55, format!("http://localhost:{port}/x.png"))],
    )
    .await;
    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 1, WAIT).await;
    assert_eq!(out.len(), 1);
    assert_eq!(http.hits("/x.png"), 1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_that_never_answers_is_dead_lettered_after_the_give_up_time() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&kafka, dir.path());
    cfg.allow_networks = vec!["127.0.0.0/8".into()];
    cfg.source_give_up_ms = 2_000;
    let svc = start(cfg);
    // Nothing listens on this port: connection refused, a transient failure, again and again.
    let closed = cxrflow_testkit::free_port();
    let silent = by_uri(61, format!("http://127.0.0.1:{closed}/gone.png"));
    let mut fine = scan(62);
    fine.image_inline = Some(image(62, 300));
    let started = std::time::Instant::now();
    produce(&kafka, &codec, &[silent.clone(), fine.clone()]).await;

    let dlq: Vec<DeadLetter> = read_records(&kafka, &codec, 1, WAIT).await;
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(d.reason, "ingest.source_unreachable", "{}", d.error);
    assert_eq!(
        d.study_instance_uid.as_deref(),
        Some(silent.study.study_instance_uid.as_str()),
        "the dead letter names the study, so the worklist shows it as not assessable"
    );
    assert!(d.error.contains("gave up"), "{}", d.error);
    assert!(
        started.elapsed() >= Duration::from_millis(2_000),
        "retried for the give-up time first"
    );
    assert!(
        svc.metric("cxrflow_ingest_transient_errors_total{kind=\"fetch\"}")
            .await
            >= Some(1.0),
        "it was retried as transient before"
    );
    let out: Vec<IngestedImage> = read_records(&kafka, &codec, 1, WAIT).await;
    assert_eq!(out[0].study.sop_instance_uid, fine.study.sop_instance_uid);
    svc.stop().await;
}
