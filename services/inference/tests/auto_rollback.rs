//! Automatic rollback through a real broker: a drift alert on `cxr.drift.v1` naming the canary
//! version makes the service withdraw it, publish the decision on `cxr.models.v1`, and serve
//! the following studies from production only; an alert below the configured level does not.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, image, produce, require_ort, write_versions};
use cxrflow_common::kafka::Producer;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::*;
use cxrflow_inference::rollout::{self, AUTO_ROLLBACK};
use cxrflow_testkit::{eventually, read_records, read_topic, Broker, TestService};

fn drift_alert(version: &str, severity: Severity, action: RecommendedAction) -> DriftAlert {
    let w = DriftWindow {
        start: 0,
        end: 1,
        count: 50,
    };
    DriftAlert {
        alert_id: "alert-canary-1".into(),
        state: AlertState::Raised,
        channel: "OUTPUT".into(),
        signal: "p.Pneumothorax".into(),
        statistic: "KS".into(),
        value: 0.4,
        p_value: Some(1e-6),
        threshold: 0.1,
        reference_window: w.clone(),
        detection_window: w,
        site_id: None,
        model_name: "m".into(),
        model_version: version.into(),
        severity,
        action,
        details: BTreeMap::new(),
        raised_at: cxrflow_common::time::now_millis(),
    }
}

/// Served (non-shadow) predictions of `uids`, once every one of them has one.
async fn served(kafka: &KafkaArgs, codec: &Arc<Codec>, uids: &[String]) -> Vec<Prediction> {
    let want: HashSet<String> = uids.iter().cloned().collect();
    let out = Arc::new(Mutex::new(Vec::new()));
    eventually(
        Duration::from_secs(60),
        "a prediction for every study",
        || {
            let (kafka, codec, want, out) =
                (kafka.clone(), codec.clone(), want.clone(), out.clone());
            async move {
                let all: Vec<Prediction> =
                    read_records(&kafka, &codec, usize::MAX, Duration::from_secs(3)).await;
                let mine: Vec<Prediction> = all
                    .into_iter()
                    .filter(|p| {
                        want.contains(&p.study.study_instance_uid)
                            && p.model_role != ModelRole::Shadow
                    })
                    .collect();
                let got: HashSet<&str> = mine
                    .iter()
                    .map(|p| p.study.study_instance_uid.as_str())
                    .collect();
                let done = got.len() == want.len();
                *out.lock().unwrap() = mine;
                done
            }
        },
    )
    .await;
    let out = out.lock().unwrap().clone();
    out
}

async fn rollouts(kafka: &KafkaArgs, codec: &Codec) -> Vec<ModelRollout> {
    read_topic(kafka, topics::MODELS, Duration::from_secs(2), |_| false)
        .await
        .into_iter()
        .filter_map(|r| r.payload.and_then(|p| codec.decode(&p).ok()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drift_alert_naming_the_canary_rolls_it_back() {
    require_ort();
    let models = tempfile::tempdir().unwrap();
    write_versions(models.path(), "m", &["1.0.0", "2.0.0"]);
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    rollout::promote(&kafka, "m", "1.0.0", "ops", "initial")
        .await
        .unwrap();
    rollout::stage_model_dir(
        &kafka,
        &models.path().join("m").join("2.0.0"),
        rollout::CandidateRole::Canary,
        1.0,
        "ops",
        "all studies on 2.0.0",
    )
    .await
    .unwrap();

    let cfg = config(kafka.clone(), models.path(), "m");
    let svc = TestService::spawn("inference", cfg.service.http, |s| {
        cxrflow_inference::run(cfg, s)
    });
    let before: Vec<String> = (0..4).map(|i| format!("1.2.5.1.{i}")).collect();
    let imgs: Vec<PreprocessedImage> = before.iter().map(|u| image(u, 90)).collect();
    produce(&kafka, &codec, &imgs).await;
    for p in served(&kafka, &codec, &before).await {
        assert_eq!(
            (p.model_version.as_str(), p.model_role),
            ("2.0.0", ModelRole::Canary),
            "the canary serves every study before the alert"
        );
    }

    // Below the level (WARNING, INVESTIGATE with the default CRITICAL/RETRAIN rule), then the
    // same alert escalated: only the escalation withdraws the canary.
    let drift = Producer::new(&kafka).unwrap();
    let low = drift_alert("2.0.0", Severity::Warning, RecommendedAction::Investigate);
    let mut high = drift_alert("2.0.0", Severity::Critical, RecommendedAction::Retrain);
    high.state = AlertState::Updated;
    for a in [&low, &high] {
        drift.send(&codec, a, &BTreeMap::new()).await.unwrap();
    }

    eventually(
        Duration::from_secs(30),
        "an auto-rollback decision on cxr.models.v1",
        || {
            let (kafka, codec) = (kafka.clone(), codec.clone());
            async move {
                rollouts(&kafka, &codec)
                    .await
                    .iter()
                    .any(|r| r.decided_by == AUTO_ROLLBACK)
            }
        },
    )
    .await;
    let autos: Vec<ModelRollout> = rollouts(&kafka, &codec)
        .await
        .into_iter()
        .filter(|r| r.decided_by == AUTO_ROLLBACK)
        .collect();
    let d = autos[0].clone();
    assert_eq!(d.model_name, "m");
    assert_eq!(d.production_version, "1.0.0");
    assert!(d.candidates.is_empty(), "{d:?}");
    assert_eq!(d.revision, 3, "promote, stage, auto-rollback");
    assert!(
        d.reason.starts_with("drift:")
            && d.reason.contains("alert-canary-1")
            && d.reason.contains("Critical"),
        "the reason names the rule and its evidence: {}",
        d.reason
    );

    let after: Vec<String> = (0..6).map(|i| format!("1.2.5.2.{i}")).collect();
    let imgs: Vec<PreprocessedImage> = after.iter().map(|u| image(u, 90)).collect();
    produce(&kafka, &codec, &imgs).await;
    for p in served(&kafka, &codec, &after).await {
        assert_eq!(
            (p.model_version.as_str(), p.model_role),
            ("1.0.0", ModelRole::Production),
            "no canary after the rollback"
        );
    }
    let autos = rollouts(&kafka, &codec)
        .await
        .into_iter()
        .filter(|r| r.decided_by == AUTO_ROLLBACK)
        .count();
    assert_eq!(autos, 1, "one decision for the one qualifying alert");
    svc.stop().await;
}
