//! The triage service against a real broker: predictions become decisions on `cxr.triage.v1`
//! and a critical-first `/worklist`; escalation under a simulated clock; a report closes a
//! study; a restart rebuilds the same worklist and publishes no duplicate decisions.

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cxrflow_common::blob::{BlobStore, BlobStoreArgs};
use cxrflow_common::kafka::Producer;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::*;
use cxrflow_testkit::keys::TestKeys;
use cxrflow_testkit::{eventually, read_topic, service_args, TestService};
use cxrflow_triage::clock::{Clock, ManualClock};
use cxrflow_triage::http::WorklistView;
use cxrflow_triage::worklist::{OrderingMode, Worklist};
use cxrflow_triage::{run_observed, Config, Running};

mod support;
use support::stack;

const T0: i64 = 1_700_000_000_000;

fn prediction(
    uid: &str,
    finding: &str,
    p: f64,
    critical: bool,
    hint: OrderPriority,
    blob_uri: &str,
) -> Prediction {
    use cxrflow_testkit::records::{prediction, score, study};
    Prediction {
        blob_uri: blob_uri.into(),
        findings: vec![FindingScore {
            critical,
            urgent: !critical && URGENT_FINDINGS.contains(&finding),
            ..score(finding, p)
        }],
        ..prediction(StudyContext {
            patient_age_years: Some(60),
            acquired_at: T0,
            published_at: T0,
            priority_hint: hint,
            ..study(uid)
        })
    }
}

struct Service {
    running: Running,
    service: TestService,
    /// Sends a key with every role (worklist, reports, metrics).
    http: reqwest::Client,
    _keys: TestKeys,
}

impl Service {
    async fn start(kafka: &KafkaArgs, blob_url: &str, clock: &ManualClock) -> Service {
        let keys = TestKeys::new();
        let mut svc = service_args();
        svc.auth = keys.auth_args();
        svc.drain_timeout_ms = 3_000;
        let mut cfg = Config::defaults(kafka.clone(), svc);
        cfg.blob_store = BlobStoreArgs::at(blob_url);
        cfg.tick_ms = 50;
        cfg.ordering = OrderingMode::Pooled;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let service = TestService::spawn("triage", cfg.service.http, |s| {
            run_observed(cfg, clock, s, Some(tx))
        });
        let running = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("service ready within 60 s")
            .expect("service started");
        Service {
            running,
            service,
            http: TestKeys::client(keys.all()),
            _keys: keys,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.http_addr, path)
    }

    async fn worklist(&self) -> WorklistView {
        self.view("/worklist").await
    }

    async fn view(&self, path: &str) -> WorklistView {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn uids(&self) -> Vec<String> {
        self.worklist()
            .await
            .items
            .into_iter()
            .map(|i| i.study_uid)
            .collect()
    }

    async fn stop(self) -> Running {
        self.service.stop().await;
        self.running
    }
}

async fn send<T: AvroRecord>(producer: &Producer, codec: &Codec, records: &[T]) {
    for r in records {
        producer
            .send(codec, r, &BTreeMap::new())
            .await
            .expect("produce");
    }
}

async fn decisions(
    kafka: &KafkaArgs,
    codec: &Codec,
    n: usize,
    timeout: Duration,
) -> Vec<Option<TriageDecision>> {
    read_topic(kafka, topics::TRIAGE, timeout, |r| r.len() >= n)
        .await
        .into_iter()
        .map(|r| {
            r.payload.map(|p| {
                codec
                    .decode::<TriageDecision>(&p)
                    .expect("decision decodes")
            })
        })
        .collect()
}

fn png() -> Bytes {
    let img = image::GrayImage::from_fn(320, 320, |x, y| image::Luma([((x * y) % 256) as u8]));
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn predictions_become_a_critical_first_worklist_that_escalates_and_closes() {
    let (_stack, kafka, codec, producer, blob_url) = stack().await;
    let (blob_uri, _, _) = BlobStore::open(&blob_url, &[])
        .unwrap()
        .put_content_addressed(png())
        .await
        .unwrap();
    let clock = ManualClock::at(T0 + 5 * 60_000);
    let svc = Service::start(&kafka, &blob_url, &clock).await;

    let routine = prediction(
        "1.1.routine",
        "Cardiomegaly",
        0.1,
        false,
        OrderPriority::Routine,
        &blob_uri,
    );
    let critical = prediction(
        "1.2.critical",
        "Pneumothorax",
        0.93,
        true,
        OrderPriority::Routine,
        &blob_uri,
    );
    let stat = prediction(
        "1.3.stat",
        "Cardiomegaly",
        0.1,
        false,
        OrderPriority::Stat,
        &blob_uri,
    );
    let mut shadow = prediction(
        "1.4.shadow",
        "Pneumothorax",
        0.99,
        true,
        OrderPriority::Routine,
        &blob_uri,
    );
    shadow.model_role = ModelRole::Shadow;
    send(
        &producer,
        &codec,
        &[
            routine.clone(),
            critical.clone(),
            stat.clone(),
            shadow,
            routine.clone(),
        ],
    )
    .await;

    eventually(
        Duration::from_secs(30),
        "three studies on the worklist",
        || async { svc.uids().await.len() == 3 },
    )
    .await;
    let view = svc.worklist().await;
    let order: Vec<&str> = view.items.iter().map(|i| i.study_uid.as_str()).collect();
    // Both critical ones share the deadline; the higher score reads first. Routine last.
    assert_eq!(
        order,
        ["1.2.critical", "1.3.stat", "1.1.routine"],
        "{view:?}"
    );
    assert_eq!(view.items[0].tier, TriageTier::Critical);
    assert_eq!(view.items[0].top_findings[0].finding, "Pneumothorax");
    assert_eq!(view.items[2].tier, TriageTier::Routine);
    let on_topic = decisions(&kafka, &codec, 3, Duration::from_secs(20)).await;
    assert_eq!(
        on_topic.len(),
        3,
        "one decision per study; shadow and the re-delivery produce none"
    );

    // Thumbnail from the blob store.
    let thumb = svc
        .http
        .get(svc.url("/studies/1.2.critical/thumbnail"))
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200);
    assert_eq!(thumb.headers()["content-type"], "image/png");
    let img = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert!(img.width() <= 256);

    // Six hours later the routine study has waited past its cap: escalated, published.
    clock.set(T0 + 6 * 3_600_000 + 1);
    eventually(
        Duration::from_secs(20),
        "routine study escalated",
        || async {
            let v = svc.worklist().await;
            v.items.iter().any(|i| {
                i.study_uid == "1.1.routine"
                    && i.status == WorklistStatus::Escalated
                    && i.escalations == 1
            })
        },
    )
    .await;

    // Reports: refused without a key, accepted with the reader's, and the study closes.
    let body = serde_json::json!({ "labels": [{ "finding": "Pneumothorax", "state": "PRESENT" }] });
    let denied = reqwest::Client::new()
        .post(svc.url("/studies/1.2.critical/report"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let ok = svc
        .http
        .post(svc.url("/studies/1.2.critical/report"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    eventually(
        Duration::from_secs(20),
        "reported study leaves the worklist",
        || async { !svc.uids().await.contains(&"1.2.critical".to_string()) },
    )
    .await;
    let all = decisions(&kafka, &codec, 7, Duration::from_secs(20)).await;
    let read = all
        .iter()
        .flatten()
        .find(|d| d.study.study_instance_uid == "1.2.critical" && d.status == WorklistStatus::Read)
        .expect("a READ decision on the topic");
    assert_eq!(
        (read.version, read.escalations),
        (3, 1),
        "opened, escalated, read"
    );

    // After the retention the read study is tombstoned.
    clock.set(T0 + 8 * 3_600_000);
    eventually(Duration::from_secs(20), "tombstone published", || async {
        read_topic(&kafka, topics::TRIAGE, Duration::from_secs(3), |r| {
            r.iter().any(|x| x.payload.is_none())
        })
        .await
        .iter()
        .any(|r| r.payload.is_none() && r.key.as_deref() == Some(b"1.2.critical".as_slice()))
    })
    .await;
    let metrics = svc.text("/metrics").await;
    assert!(
        metrics.contains("cxrflow_triage_escalations_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cxrflow_triage_time_in_queue_seconds"),
        "{metrics}"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_rebuilds_the_same_worklist_without_duplicates() {
    let (_stack, kafka, codec, producer, blob_url) = stack().await;
    let clock = ManualClock::at(T0 + 60_000);

    let preds: Vec<Prediction> = (0..12)
        .map(|i| {
            let (f, p, c) = match i % 3 {
                0 => ("Pneumothorax", 0.6 + i as f64 / 100.0, true),
                1 => ("Edema", 0.55 + i as f64 / 100.0, false),
                _ => ("Cardiomegaly", 0.1 + i as f64 / 100.0, false),
            };
            prediction(
                &format!("2.{i:02}"),
                f,
                p,
                c,
                OrderPriority::Routine,
                "file:///nowhere",
            )
        })
        .collect();
    let svc = Service::start(&kafka, &blob_url, &clock).await;
    send(&producer, &codec, &preds).await;
    eventually(
        Duration::from_secs(30),
        "some studies processed",
        || async { svc.uids().await.len() >= 4 },
    )
    .await;
    // Stop mid-stream; what the service held when it stopped is the reference.
    let before = svc.stop().await;
    let snapshot = |wl: &Worklist| -> Vec<(String, i64, TriageTier)> {
        wl.ordered(None, OrderingMode::Pooled)
            .into_iter()
            .map(|e| {
                (
                    e.decision.study.study_instance_uid.clone(),
                    e.decision.version,
                    e.decision.tier,
                )
            })
            .collect()
    };
    let expected = snapshot(&before.engine.worklist());
    assert!(!expected.is_empty());

    // Restart: once ready, the rebuilt worklist holds everything the old one held (more only
    // when the restarted stage already processed the rest).
    let svc = Service::start(&kafka, &blob_url, &clock).await;
    let rebuilt = snapshot(&svc.running.engine.worklist());
    let rebuilt_subset: Vec<_> = rebuilt
        .iter()
        .filter(|x| expected.contains(x))
        .cloned()
        .collect();
    assert_eq!(
        rebuilt_subset, expected,
        "same studies, same versions, same order"
    );

    eventually(Duration::from_secs(30), "every study processed", || async {
        svc.uids().await.len() == 12
    })
    .await;
    let view = svc.worklist().await;
    assert!(
        view.items.iter().all(|i| i.version == 1),
        "no study was decided twice: {view:?}"
    );
    assert_eq!(view.items[0].tier, TriageTier::Critical);
    svc.stop().await;

    // Exactly one decision per study on the topic: the re-delivered tail changed nothing.
    let all = decisions(&kafka, &codec, 13, Duration::from_secs(6)).await;
    let uids: HashSet<String> = all
        .iter()
        .flatten()
        .map(|d| d.study.study_instance_uid.clone())
        .collect();
    assert_eq!(uids.len(), 12);
    assert_eq!(all.len(), 12, "no duplicate decisions");

    // A third start rebuilds exactly the final list.
    let final_list = snapshot(&svc_final_rebuild(&kafka, &blob_url, &clock).await);
    assert_eq!(final_list.len(), 12);
}

async fn svc_final_rebuild(kafka: &KafkaArgs, blob_url: &str, clock: &ManualClock) -> Worklist {
    let svc = Service::start(kafka, blob_url, clock).await;
    let wl = svc.running.engine.worklist().clone();
    svc.stop().await;
    wl
}

fn scan_event(uid: &str, hint: OrderPriority) -> ScanEvent {
    let p = prediction(uid, "Cardiomegaly", 0.1, false, hint, "");
    ScanEvent {
        event_id: format!("event-{uid}"),
        study: p.study,
        media_type: "image/jpeg".into(),
        image_inline: None,
        image_uri: Some(format!("file:///incoming/{uid}.jpg")),
        image_sha256: None,
        image_size_bytes: None,
    }
}

/// The worklist is complete: a scan event lists its study as AI_PENDING at once, a dead letter
/// from the study path turns it NOT_ASSESSABLE with the reason (even for a study whose scan
/// event never reached triage: the dead letter's own record names it), a study whose AI result
/// never comes is marked overdue by the watchdog, and a late prediction still ranks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scans_put_studies_on_the_worklist_and_failures_leave_them_there_with_the_reason() {
    let (_stack, kafka, codec, producer, blob_url) = stack().await;
    let clock = ManualClock::at(T0 + 60_000);
    let svc = Service::start(&kafka, &blob_url, &clock).await;

    let (pending, broken, stat) = ("2.1.pending", "2.2.broken", "2.3.stat");
    send(
        &producer,
        &codec,
        &[
            scan_event(pending, OrderPriority::Routine),
            scan_event(broken, OrderPriority::Routine),
            scan_event(stat, OrderPriority::Stat),
            scan_event(pending, OrderPriority::Routine), // a resend adds nothing
        ],
    )
    .await;
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(20),
        "three AI_PENDING studies",
        || async { svc.worklist().await.counts.ai_pending == 3 },
    )
    .await;
    let listed_in = started.elapsed();
    let view = svc.worklist().await;
    let order: Vec<&str> = view.items.iter().map(|i| i.study_uid.as_str()).collect();
    assert_eq!(
        order,
        [stat, pending, broken],
        "by order priority, then acquisition"
    );
    assert!(view
        .items
        .iter()
        .all(|i| i.tier == TriageTier::AiPending && i.score == 0.0));

    // Preprocess could not decode one image; a preprocessed record the scan never announced
    // (another producer) is dead-lettered by inference.
    let dl = |uid: &str,
              stage: &str,
              topic: &str,
              reason: &str,
              error: &str,
              payload: Option<Vec<u8>>| DeadLetter {
        stage: stage.into(),
        reason: reason.into(),
        error: error.into(),
        source_topic: kafka.topic(topic),
        source_partition: 0,
        source_offset: 3,
        key: Some(uid.as_bytes().to_vec()),
        payload,
        headers: BTreeMap::new(),
        study_instance_uid: Some(uid.into()),
        failed_at: T0,
        replay_count: 0,
    };
    let mut foreign = scan_event("2.4.foreign", OrderPriority::Urgent);
    foreign.study.acquired_at = T0 - 60_000;
    let foreign_ingested = codec
        .encode(&IngestedImage {
            event_id: "x".into(),
            study: foreign.study.clone(),
            blob_uri: "file:///b".into(),
            sha256: "00".into(),
            size_bytes: 1,
            media_type: "image/jpeg".into(),
            ingested_at: T0,
        })
        .unwrap();
    send(
        &producer,
        &codec,
        &[
            dl(broken, "preprocess", topics::INGESTED, "decode.truncated",
               "file:///blobs/ab (image/jpeg): image is truncated: JPEG stream of 900 bytes ends without its end-of-image marker (FFD9): truncated JPEG", None),
            dl("2.4.foreign", "preprocess", topics::INGESTED, "decode.corrupt_stream", "bad", Some(foreign_ingested)),
            // Off the study path: a report's dead letter changes nothing.
            dl(pending, "feedback", topics::FEEDBACK, "feedback.unknown_study", "x", None),
        ],
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "two NOT_ASSESSABLE studies",
        || async { svc.worklist().await.counts.not_assessable == 2 },
    )
    .await;
    let view = svc.worklist().await;
    let item = |uid: &str| {
        view.items
            .iter()
            .find(|i| i.study_uid == uid)
            .unwrap()
            .clone()
    };
    assert_eq!(item(broken).tier, TriageTier::NotAssessable);
    assert_eq!(
        item(broken).not_assessable_reason.as_deref(),
        Some("image could not be decoded: image is truncated: JPEG stream of 900 bytes ends without its end-of-image marker (FFD9): truncated JPEG")
    );
    let foreign_item = item("2.4.foreign");
    assert_eq!(
        foreign_item.site_id, "site-a",
        "context from the dead letter's own record"
    );
    assert_eq!(foreign_item.priority_hint, OrderPriority::Urgent);
    assert_eq!(item(pending).tier, TriageTier::AiPending);
    let unranked = svc.view("/worklist?only=NOT_ASSESSABLE").await;
    assert_eq!(unranked.items.len(), 2, "the filter");

    // Five minutes without an AI result: overdue, NOT_ASSESSABLE, counted.
    clock.advance(5 * 60_000);
    eventually(
        Duration::from_secs(20),
        "the watchdog marks the pending studies",
        || async { svc.worklist().await.counts.ai_pending == 0 },
    )
    .await;
    let view = svc.worklist().await;
    let p = view.items.iter().find(|i| i.study_uid == pending).unwrap();
    assert_eq!(p.tier, TriageTier::NotAssessable);
    assert_eq!(p.not_assessable_code.as_deref(), Some("ai.overdue"));
    let metrics = svc.text("/metrics").await;
    assert!(
        metrics.contains("cxrflow_triage_ai_overdue_total 2"),
        "{metrics}"
    );

    // The prediction, late, still ranks it.
    let mut late = prediction(
        pending,
        "Pneumothorax",
        0.97,
        true,
        OrderPriority::Routine,
        "",
    );
    late.predicted_at = T0 + 7 * 60_000;
    send(&producer, &codec, &[late]).await;
    eventually(
        Duration::from_secs(20),
        "the late prediction ranks the study",
        || async {
            svc.worklist()
                .await
                .items
                .first()
                .map(|i| i.study_uid.clone())
                == Some(pending.to_string())
        },
    )
    .await;
    let first = svc.worklist().await.items[0].clone();
    assert_eq!(
        (first.tier, first.not_assessable_reason),
        (TriageTier::Critical, None)
    );
    assert_eq!(svc.worklist().await.items.len(), 4, "each study once");
    svc.stop().await;
    eprintln!("scan events to three AI_PENDING entries on /worklist: {listed_in:?}");
    assert!(
        listed_in < Duration::from_secs(2),
        "listed {listed_in:?} after the scans: a study must be on the worklist within a second or so"
    );
}

/// A prior acquired in 1997 arriving now, through the service: listed below a CRITICAL study
/// acquired just before it, not escalated on arrival, its wait and deadline counted from its
/// arrival (`waiting_since`, `waiting_ms`), with the reason in words; it escalates once it has
/// waited its cap on this worklist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prior_from_years_ago_is_listed_with_its_wait_counted_from_its_arrival() {
    let (_stack, kafka, codec, producer, blob_url) = stack().await;
    let clock = ManualClock::at(T0 + 5 * 60_000);
    let svc = Service::start(&kafka, &blob_url, &clock).await;
    let blob = "file:///blobs/x.png";
    let mut prior = prediction(
        "1.7.prior",
        "Cardiomegaly",
        0.1,
        false,
        OrderPriority::Routine,
        blob,
    );
    prior.study.acquired_at = 861_890_678_000;
    let critical = prediction(
        "1.8.critical",
        "Pneumothorax",
        0.93,
        true,
        OrderPriority::Routine,
        blob,
    );
    send(&producer, &codec, &[prior, critical]).await;
    eventually(Duration::from_secs(30), "two studies listed", || async {
        svc.uids().await.len() == 2
    })
    .await;
    let view = svc.worklist().await;
    let order: Vec<&str> = view.items.iter().map(|i| i.study_uid.as_str()).collect();
    assert_eq!(order, ["1.8.critical", "1.7.prior"], "{view:?}");
    let p = &view.items[1];
    assert_eq!(
        (p.tier, p.escalations, p.acquired_at, p.waiting_since),
        (TriageTier::Routine, 0, 861_890_678_000, T0),
        "{p:?}"
    );
    assert_eq!(p.waiting_ms, 5 * 60_000);
    assert!(
        p.reasons
            .iter()
            .any(|r| r.contains("days before it arrived")),
        "{:?}",
        p.reasons
    );
    // Past its 90-minute cap, counted from its arrival, it escalates.
    clock.set(T0 + 91 * 60_000);
    eventually(Duration::from_secs(30), "the prior escalated", || async {
        let v = svc.worklist().await;
        v.items
            .iter()
            .any(|i| i.study_uid == "1.7.prior" && i.escalations == 1)
    })
    .await;
    svc.stop().await;
}
