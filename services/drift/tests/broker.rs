//! The drift service against a real broker: predictions whose image intensity (the input
//! statistics they carry) shifts midway produce a DriftAlert on `cxr.drift.v1`.

use std::collections::BTreeMap;
use std::time::Duration;

use cxrflow_common::kafka::Producer;
use cxrflow_common::ServiceArgs;
use cxrflow_contracts::{topics, AlertState, Codec, DriftAlert};
use cxrflow_drift::detector::ModelKey;
use cxrflow_drift::store::DriftStore;
use cxrflow_drift::synthetic::{Scenario, StudyGenerator};
use cxrflow_drift::Config;
use cxrflow_testkit::{eventually, read_topic, Broker, TestService};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn intensity_shift_midway_produces_a_drift_alert() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drift.db");
    let mut cfg = Config::defaults(kafka.clone(), ServiceArgs::local());
    cfg.drift_db = db.clone();
    cfg.reference_size = 100;
    cfg.window_size = 60;
    cfg.stride = 10;
    cfg.bootstrap = 20;
    cfg.mmd_permutations = 50;
    cfg.service.drain_timeout_ms = 3_000;
    let service = TestService::spawn("drift", cfg.service.http, |s| cxrflow_drift::run(cfg, s));

    let codec = Codec::with_static_registry().unwrap();
    let producer = Producer::new(&kafka).unwrap();
    let headers = BTreeMap::new();
    let mut gen = StudyGenerator::new(21, Scenario::NoDrift, 0);
    let send = |shift: f64, s: cxrflow_drift::synthetic::SyntheticStudy| {
        let producer = producer.clone();
        let codec = &codec;
        let headers = &headers;
        async move {
            let mut p = s.prediction("chexpert-densenet121", "1.0.0");
            let stats = p.input_stats.as_mut().unwrap();
            stats.mean += shift;
            stats.p05 += shift;
            stats.p50 += shift;
            stats.p95 += shift;
            producer.send(codec, &p, headers).await.unwrap();
        }
    };
    // Reference first, so that no shifted study can land in it whatever the partition order.
    for _ in 0..100 {
        send(0.0, gen.next_study()).await;
    }
    let key = ModelKey {
        name: "chexpert-densenet121".into(),
        version: "1.0.0".into(),
    };
    let store = DriftStore::open(&db).unwrap();
    eventually(
        Duration::from_secs(60),
        "reference window persisted",
        || {
            let n = store
                .load_reference(&key, None)
                .map(|r| r.len())
                .unwrap_or(0);
            async move { n >= 100 }
        },
    )
    .await;
    for _ in 0..60 {
        send(0.0, gen.next_study()).await;
    }
    for _ in 0..120 {
        send(40.0, gen.next_study()).await;
    }
    // The shift is in the image statistics: an alert on a channel that sees them must be
    // raised. Alerts of other channels (a sporadic output alert at p < 0.001 among 14 findings)
    // may sit on other partitions and arrive first, so the reader waits for the one it needs.
    let input_side = |a: &DriftAlert| {
        a.state == AlertState::Raised
            && ["INPUT", "REPRESENTATION", "UNIFIED"].contains(&a.channel.as_str())
    };
    let decode = |r: &cxrflow_testkit::RawRecord| {
        r.payload
            .as_deref()
            .and_then(|p| codec.decode::<DriftAlert>(p).ok())
    };
    let records = read_topic(&kafka, topics::DRIFT, Duration::from_secs(60), |rs| {
        rs.iter().filter_map(decode).any(|a| input_side(&a))
    })
    .await;
    service.stop().await;
    let alerts: Vec<DriftAlert> = records.iter().filter_map(decode).collect();
    let a = alerts
        .iter()
        .find(|a| input_side(a))
        .unwrap_or_else(|| panic!("no input-side drift alert on cxr.drift.v1: {alerts:#?}"));
    assert_eq!(a.model_name, "chexpert-densenet121");
    assert_eq!(a.model_version, "1.0.0");
    assert_eq!(a.reference_window.count, 100);
}
