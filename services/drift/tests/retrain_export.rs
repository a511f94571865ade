//! The retraining system's side, end to end: a RETRAIN drift alert on `cxr.drift.v1` makes
//! `retrain-trigger` export the model version's labeled examples with `cxrflow feedback export`
//! (the real binary, the real SQLite feedback store) and hand the CSV to the configured command;
//! a redelivered alert, after a restart, triggers nothing more.

use std::collections::BTreeMap;
use std::time::Duration;

use cxrflow_common::kafka::Producer;
use cxrflow_common::ServiceArgs;
use cxrflow_contracts::{
    AlertState, Codec, DriftAlert, DriftWindow, RecommendedAction, Severity, FINDINGS,
};
use cxrflow_drift::retrain_trigger::{run_retrain_trigger, TriggerConfig};
use cxrflow_drift::synthetic::{Scenario, StudyGenerator};
use cxrflow_feedback::store::{SourceRef, SqliteStore, StudyStore};
use cxrflow_testkit::{eventually, Broker, TestService};

const VERSION: &str = "1.0.0";

/// The `cxrflow` binary that runs `feedback export` (scripts/make-test-data.sh builds it and
/// sets `CXRFLOW_BIN`).
fn cxrflow_bin() -> std::path::PathBuf {
    let p = std::env::var("CXRFLOW_BIN").expect(
        "CXRFLOW_BIN is not set: run scripts/test.sh, or build `cargo build -p cxrflow` and point CXRFLOW_BIN at target/debug/cxrflow",
    );
    let p = std::path::PathBuf::from(p);
    assert!(p.exists(), "CXRFLOW_BIN={} does not exist", p.display());
    p
}

/// The group's committed position on the (one-partition-per-key) drift topic, summed.
async fn committed(kafka: &cxrflow_common::KafkaArgs, group: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let kafka = kafka.clone();
    let group = group.to_string();
    tokio::task::spawn_blocking(move || {
        let mut cc = kafka.client_config();
        cc.set("group.id", &group);
        let Ok(c) = cc.create::<BaseConsumer>() else {
            return -1;
        };
        let topic = kafka.topic(cxrflow_contracts::topics::DRIFT);
        let Ok(md) = c.fetch_metadata(Some(&topic), Duration::from_secs(5)) else {
            return -1;
        };
        let mut tpl = rdkafka::TopicPartitionList::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition(&topic, p.id());
            }
        }
        let Ok(got) = c.committed_offsets(tpl, Duration::from_secs(5)) else {
            return -1;
        };
        got.elements()
            .iter()
            .filter_map(|e| e.offset().to_raw())
            .filter(|o| *o > 0)
            .sum()
    })
    .await
    .unwrap_or(-1)
}

fn alert(window_start: i64) -> DriftAlert {
    DriftAlert {
        alert_id: "0b7e1f4e-retrain-export-test".into(),
        state: AlertState::Raised,
        channel: "PERFORMANCE".into(),
        signal: "auroc.Edema".into(),
        statistic: "AUROC_DELTA".into(),
        value: -0.12,
        p_value: None,
        threshold: -0.05,
        reference_window: DriftWindow {
            start: 0,
            end: window_start - 1,
            count: 100,
        },
        detection_window: DriftWindow {
            start: window_start,
            end: window_start + 1_000_000,
            count: 50,
        },
        site_id: None,
        model_name: "chexpert-densenet121".into(),
        model_version: VERSION.into(),
        severity: Severity::Critical,
        action: RecommendedAction::Retrain,
        details: Default::default(),
        raised_at: window_start + 1_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retrain_alert_hands_the_labeled_export_to_the_command_once() {
    let bin = cxrflow_bin();
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let dir = tempfile::tempdir().unwrap();

    // 120 labeled studies of the version (and 10 of another), labeled a minute apart.
    let db = dir.path().join("feedback.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let mut gen = StudyGenerator::new(5, Scenario::NoDrift, 0);
    let mut times = Vec::new();
    for i in 0..130 {
        let s = gen.next_study();
        let version = if i < 120 { VERSION } else { "0.9.0" };
        let ex = s.labeled("chexpert-densenet121", version);
        times.push(ex.labeled_at);
        let src = SourceRef {
            topic: "cxr.labeled.v1".into(),
            partition: 0,
            offset: i,
        };
        store.put_labeled(&ex, &src).await.unwrap();
    }
    drop(store);
    // The detection window opened at the 80th study: 40 examples are in it.
    let window_start = times[80];

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut cfg = TriggerConfig::defaults(kafka.clone(), ServiceArgs::local());
    cfg.trigger_db = dir.path().join("trigger.db");
    cfg.export_store = Some(format!("sqlite://{}", db.display()));
    cfg.export_dir = dir.path().join("exports");
    cfg.export_bin = Some(bin);
    cfg.command = Some(format!(
        "cp \"$CXRFLOW_EXPORT_CSV\" '{0}/got.csv' && echo \"$CXRFLOW_ALERT_ID $CXRFLOW_EXPORT_ROWS\" >> '{0}/runs.log'",
        out.display()
    ));
    cfg.service.drain_timeout_ms = 3_000;

    let codec = Codec::with_static_registry().unwrap();
    let producer = Producer::new(&kafka).unwrap();
    producer
        .send(&codec, &alert(window_start), &BTreeMap::new())
        .await
        .unwrap();

    let c = cfg.clone();
    let trigger = TestService::spawn("retrain_trigger", c.service.http, |s| {
        run_retrain_trigger(c, s)
    });
    let runs = out.join("runs.log");
    eventually(Duration::from_secs(60), "the trigger command ran", || {
        let runs = runs.clone();
        async move { runs.exists() }
    })
    .await;
    let log = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(log.trim(), "0b7e1f4e-retrain-export-test 40", "{log}");

    let csv = std::fs::read_to_string(out.join("got.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "Path");
    assert_eq!(&header[1..], &FINDINGS[..]);
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 40);
    for r in &rows {
        let cells: Vec<&str> = r.split(',').collect();
        assert_eq!(cells.len(), 15, "{r}");
        assert!(
            cells[1..].iter().all(|c| ["", "0", "1", "-1"].contains(c)),
            "{r}"
        );
    }

    // Restart and redeliver the same alert: recorded as acted on, nothing runs again.
    trigger.stop().await;
    producer
        .send(&codec, &alert(window_start), &BTreeMap::new())
        .await
        .unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.service = ServiceArgs::local();
    cfg2.service.drain_timeout_ms = 3_000;
    let trigger = TestService::spawn("retrain_trigger", cfg2.service.http, |s| {
        run_retrain_trigger(cfg2, s)
    });
    // Wait until the redelivered alert was consumed: the group's committed position passes it.
    eventually(
        Duration::from_secs(60),
        "redelivered alert consumed",
        || {
            let kafka = kafka.clone();
            async move { committed(&kafka, "cxrflow-retrain_trigger").await >= 2 }
        },
    )
    .await;
    trigger.stop().await;
    let log = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(log.lines().count(), 1, "triggered twice: {log}");
}
