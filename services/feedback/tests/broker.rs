//! The feedback service against a real broker: both arrival orders, duplicates, corrections,
//! bad reports and the unknown-study timeout.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::kafka::Producer;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::*;
use cxrflow_feedback::fixtures::{prediction, report};
use cxrflow_feedback::store::ReportState;
use cxrflow_feedback::{run, Config, SqliteStore, StudyStore};
use cxrflow_testkit::{eventually, read_records, read_topic, service_args, Broker, TestService};

struct Running {
    kafka: KafkaArgs,
    codec: Arc<Codec>,
    producer: Producer,
    store: SqliteStore,
    service: TestService,
    _dir: tempfile::TempDir,
}

async fn start(broker: &Broker, pending_timeout_ms: u64) -> Running {
    let kafka = broker.stack().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.db");
    let mut cfg = Config::defaults(kafka.clone(), service_args());
    cfg.store = format!("sqlite:{}", db.display()).parse().unwrap();
    cfg.pending_timeout_ms = pending_timeout_ms;
    let service = TestService::spawn("feedback", cfg.service.http, |s| run(cfg, s));
    let store = open_when_ready(&db).await;
    Running {
        producer: Producer::new(&kafka).unwrap(),
        kafka,
        codec: Arc::new(Codec::with_static_registry().unwrap()),
        store,
        service,
        _dir: dir,
    }
}

/// A second connection to the service's SQLite file (WAL lets it read beside the writer).
async fn open_when_ready(db: &Path) -> SqliteStore {
    eventually(
        Duration::from_secs(20),
        "the service created its store",
        || {
            let db = db.to_path_buf();
            async move { db.exists() }
        },
    )
    .await;
    SqliteStore::open(db).await.unwrap()
}

impl Running {
    async fn send<T: AvroRecord>(&self, r: &T) {
        self.producer
            .send(&self.codec, r, &BTreeMap::new())
            .await
            .unwrap();
    }

    async fn labeled(&self, at_least: usize) -> Vec<LabeledExample> {
        read_records(&self.kafka, &self.codec, at_least, Duration::from_secs(30)).await
    }
}

impl Running {
    async fn stop(self) {
        self.service.stop().await;
    }
}

fn count(v: &[LabeledExample], uid: &str) -> usize {
    v.iter()
        .filter(|e| e.study.study_instance_uid == uid)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_orders_join_once_duplicates_emit_nothing_and_corrections_supersede() {
    let broker = Broker::start();
    let s = start(&broker, 600_000).await;

    // Prediction first (plus a shadow prediction, stored but never labeled).
    s.send(&prediction("1.1", "v1", ModelRole::Production, 0.8))
        .await;
    s.send(&prediction("1.1", "v9", ModelRole::Shadow, 0.1))
        .await;
    let store = s.store.clone();
    eventually(Duration::from_secs(30), "prediction 1.1 stored", || {
        let st = store.clone();
        async move { st.predictions("1.1").await.unwrap().len() == 2 }
    })
    .await;
    s.send(&report(
        "1.1",
        "r-1",
        1_700_000_300_000,
        LabelState::Uncertain,
    ))
    .await;

    // Report first: wait until it is stored as pending, then the prediction arrives.
    s.send(&report("1.2", "r-2", 1_700_000_300_000, LabelState::Absent))
        .await;
    eventually(Duration::from_secs(30), "report 1.2 pending", || {
        let st = store.clone();
        async move {
            matches!(st.report("1.2").await.unwrap(), Some(r) if r.state == ReportState::Pending)
        }
    })
    .await;
    s.send(&prediction("1.2", "v1", ModelRole::Production, 0.3))
        .await;

    let got = s.labeled(2).await;
    assert_eq!((count(&got, "1.1"), count(&got, "1.2")), (1, 1), "{got:#?}");
    let a = got
        .iter()
        .find(|e| e.study.study_instance_uid == "1.1")
        .unwrap();
    assert_eq!(a.model_role, ModelRole::Production);
    assert_eq!(a.model_version, "v1");
    assert_eq!(
        a.labels[0].state,
        LabelState::Uncertain,
        "uncertain labels are kept as such"
    );
    assert_eq!(a.blob_uri, "file:///blobs/1.1.png");

    // The same report again: stored as a duplicate, nothing emitted.
    s.send(&report(
        "1.1",
        "r-1",
        1_700_000_300_000,
        LabelState::Uncertain,
    ))
    .await;
    eventually(
        Duration::from_secs(30),
        "duplicate report processed",
        || async {
            s.service
                .metric("cxrflow_feedback_reports_total{outcome=\"duplicate\"}")
                .await
                .unwrap_or(0.0)
                >= 1.0
        },
    )
    .await;
    // A correction (newer read end) supersedes and emits the updated example.
    s.send(&report(
        "1.1",
        "r-1b",
        1_700_000_360_000,
        LabelState::Present,
    ))
    .await;
    let got = s.labeled(3).await;
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(count(&got, "1.1"), 2);
    let last = got
        .iter()
        .rfind(|e| e.study.study_instance_uid == "1.1")
        .unwrap();
    assert_eq!(
        (last.report_id.as_str(), last.labels[0].state),
        ("r-1b", LabelState::Present)
    );
    // Nothing more arrives (the duplicate emitted nothing).
    let all = read_topic(&s.kafka, topics::LABELED, Duration::from_secs(3), |r| {
        r.len() > 3
    })
    .await;
    assert_eq!(all.len(), 3);

    // Online performance is served.
    let perf: serde_json::Value = reqwest::get(format!("{}/performance", s.service.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let windows = perf["windows"].as_array().unwrap();
    let all_sites = windows.iter().find(|w| w["site"] == "*").unwrap();
    assert_eq!(all_sites["examples"], 2);
    assert_eq!(all_sites["model_version"], "v1");
    let metrics = reqwest::get(format!("{}/metrics", s.service.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("cxrflow_feedback_auroc{"), "{metrics}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_reports_are_dead_lettered_with_reasons_and_the_next_flows() {
    let broker = Broker::start();
    let s = start(&broker, 600_000).await;
    let good = report("3.1", "r", 1_700_000_300_000, LabelState::Present);
    let mut unknown_finding = good.clone();
    unknown_finding.study_instance_uid = "3.2".into();
    unknown_finding.labels.push(FindingLabel {
        finding: "Hernia".into(),
        state: LabelState::Present,
    });
    let mut no_uid = good.clone();
    no_uid.study_instance_uid = String::new();
    let mut backwards = good.clone();
    backwards.study_instance_uid = "3.3".into();
    backwards.read_ended_at = backwards.read_started_at - 1;
    let mut no_reader = good.clone();
    no_reader.study_instance_uid = "3.4".into();
    no_reader.reader_ref = String::new();
    for r in [&unknown_finding, &no_uid, &backwards, &no_reader] {
        s.send(r).await;
    }
    s.send(&prediction("3.1", "v1", ModelRole::Production, 0.6))
        .await;
    s.send(&good).await;

    let dlq: Vec<DeadLetter> = read_records(&s.kafka, &s.codec, 4, Duration::from_secs(30)).await;
    let mut reasons: Vec<&str> = dlq.iter().map(|d| d.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "feedback.missing_reader",
            "feedback.missing_study_uid",
            "feedback.read_ended_before_start",
            "feedback.unknown_finding"
        ]
    );
    assert!(dlq
        .iter()
        .all(|d| d.stage == "feedback" && d.payload.is_some()));
    let got = s.labeled(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].study.study_instance_uid, "3.1");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_for_an_unknown_study_is_dead_lettered_after_the_bound() {
    let broker = Broker::start();
    let s = start(&broker, 1_000).await;
    let r = report("4.1", "r-4", 1_700_000_300_000, LabelState::Present);
    s.send(&r).await;
    let dlq: Vec<DeadLetter> = read_records(&s.kafka, &s.codec, 1, Duration::from_secs(30)).await;
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(d.reason, "feedback.unknown_study");
    assert_eq!(d.study_instance_uid.as_deref(), Some("4.1"));
    assert!(d.error.contains("4.1"), "{}", d.error);
    assert_eq!(
        s.codec
            .decode::<RadiologistReport>(d.payload.as_deref().unwrap())
            .unwrap(),
        r
    );
    assert_eq!(d.source_topic, s.kafka.topic(topics::FEEDBACK));
    let store = s.store.clone();
    eventually(Duration::from_secs(10), "report 4.1 marked expired", || {
        let st = store.clone();
        async move { st.report("4.1").await.unwrap().unwrap().state == ReportState::Expired }
    })
    .await;
    // Dead-lettered once, not every sweep.
    let again = read_topic(&s.kafka, topics::DLQ, Duration::from_secs(3), |r| {
        r.len() > 1
    })
    .await;
    assert_eq!(again.len(), 1);
    s.stop().await;
}
