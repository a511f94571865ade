//! The inference service against a real broker: predictions with version/role/provider, the
//! poison records (NaN output, wrong tensor size, profile mismatch) in the DLQ while the rest
//! of their batch flows, canary/shadow routing from `cxr.models.v1`, and the CUDA request
//! failing clearly on a CPU-only runtime.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::{config, image, produce, require_ort};
use cxrflow_contracts::*;
use cxrflow_inference::manifest::ModelDir;
use cxrflow_inference::rollout;
use cxrflow_inference::session::{Device, ModelSession, SessionOptions, CPU_PROVIDER};
use cxrflow_inference::testmodel::TestModel;
use cxrflow_testkit::{read_records, Broker, TestService};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn predictions_flow_and_poison_records_are_dead_lettered() {
    require_ort();
    let models = tempfile::tempdir().unwrap();
    let spec = TestModel {
        nan_on_black: true,
        ..TestModel::default()
    };
    spec.write_dir(models.path(), "test-nan", "1.0.0", "gray224-v1")
        .unwrap();
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Arc::new(Codec::with_static_registry().unwrap());

    let good: Vec<(String, u8)> = (0..6)
        .map(|i| (format!("1.2.3.{i}"), 20 + 40 * i as u8))
        .collect();
    let mut records: Vec<PreprocessedImage> = good.iter().map(|(u, p)| image(u, *p)).collect();
    let black = image("1.2.9.nan", 0);
    let mut wrong_size = image("1.2.9.size", 100);
    wrong_size.pixels.truncate(1000);
    let mut other_profile = image("1.2.9.profile", 100);
    other_profile.profile_id = "rgb512-v9".into();
    let mut not_assessable = image("1.2.9.lateral", 100);
    not_assessable.assessable = false;
    not_assessable.not_assessable_reason = Some("lateral view".into());
    records.insert(3, black);
    records.extend([wrong_size, other_profile, not_assessable]);
    produce(&kafka, &codec, &records).await;

    // Two sessions: batches run on either, concurrently; each caller still gets its own row.
    let mut cfg = config(kafka.clone(), models.path(), "test-nan");
    cfg.sessions = 2;
    let svc = TestService::spawn("inference", cfg.service.http, |s| {
        cxrflow_inference::run(cfg, s)
    });

    let preds: Vec<Prediction> = read_records(&kafka, &codec, 8, Duration::from_secs(60)).await;
    let dlq: Vec<DeadLetter> = read_records(&kafka, &codec, 2, Duration::from_secs(30)).await;
    svc.stop().await;

    assert_eq!(
        preds.len(),
        8,
        "six scored + one lateral + one NaN output, both not assessable: {preds:#?}"
    );
    let by_uid: HashMap<&str, &Prediction> = preds
        .iter()
        .map(|p| (p.study.study_instance_uid.as_str(), p))
        .collect();
    for (uid, pixel) in &good {
        let p = by_uid[uid.as_str()];
        assert_eq!(
            (p.model_name.as_str(), p.model_version.as_str()),
            ("test-nan", "1.0.0")
        );
        assert_eq!(p.model_role, ModelRole::Production);
        assert_eq!(p.execution_provider, CPU_PROVIDER);
        assert!(p.assessable);
        assert!(p.batch_size >= 1);
        let want = spec.expected(TestModel::pooled(*pixel));
        let names: Vec<&str> = p.findings.iter().map(|f| f.finding.as_str()).collect();
        assert_eq!(names, FINDINGS);
        for (k, f) in p.findings.iter().enumerate().skip(1) {
            assert!(
                (f.probability - want[k] as f64).abs() < 1e-4,
                "{uid} {}: {} vs {}",
                f.finding,
                f.probability,
                want[k]
            );
        }
        assert_eq!(p.embedding.as_ref().map(Vec::len), Some(16));
        // The image statistics ride along for drift (schema version 3).
        assert_eq!(p.input_stats.as_ref(), Some(&image(uid, *pixel).stats));
    }
    let lateral = by_uid["1.2.9.lateral"];
    assert!(!lateral.assessable && lateral.findings.is_empty() && lateral.embedding.is_none());
    assert_eq!(
        lateral.not_assessable_reason.as_deref(),
        Some("lateral view")
    );
    // A NaN output is a fact about the study, not a lost record: published as not assessable
    // with the reason, never with a score.
    let nan = by_uid["1.2.9.nan"];
    assert!(!nan.assessable && nan.findings.is_empty(), "{nan:#?}");
    assert_eq!(
        nan.not_assessable_code.as_deref(),
        Some("model.invalid_output")
    );
    let reasons: HashMap<&str, &DeadLetter> = dlq.iter().map(|d| (d.reason.as_str(), d)).collect();
    assert_eq!(
        reasons.keys().copied().collect::<HashSet<_>>(),
        HashSet::from(["inference.tensor_size", "inference.profile_mismatch"])
    );
    assert_eq!(
        reasons["inference.profile_mismatch"]
            .study_instance_uid
            .as_deref(),
        Some("1.2.9.profile")
    );
    assert!(
        reasons["inference.tensor_size"].payload.is_some(),
        "original bytes kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canary_and_shadow_follow_the_models_topic() {
    require_ort();
    let models = tempfile::tempdir().unwrap();
    for (i, v) in ["1.0.0", "2.0.0", "3.0.0"].iter().enumerate() {
        let m = TestModel {
            bias: [i as f32; 14],
            ..TestModel::default()
        };
        m.write_dir(models.path(), "m", v, "gray224-v1").unwrap();
    }
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    rollout::promote(&kafka, "m", "1.0.0", "ops", "initial")
        .await
        .unwrap();
    let canary = CandidateVersion {
        version: "2.0.0".into(),
        role: ModelRole::Canary,
        fraction: 0.5,
    };
    rollout::stage_candidate(&kafka, "m", canary, "ops", "try 2")
        .await
        .unwrap();
    let shadow = CandidateVersion {
        version: "3.0.0".into(),
        role: ModelRole::Shadow,
        fraction: 1.0,
    };
    let r = rollout::stage_candidate(&kafka, "m", shadow, "ops", "shadow 3")
        .await
        .unwrap();
    assert_eq!(r.revision, 3);
    assert_eq!(r.candidates.len(), 2);

    let uids: Vec<String> = (0..16).map(|i| format!("1.3.6.1.4.{i}")).collect();
    let images: Vec<PreprocessedImage> = uids.iter().map(|u| image(u, 128)).collect();
    produce(&kafka, &codec, &images).await;
    let cfg = config(kafka.clone(), models.path(), "m");
    let svc = TestService::spawn("inference", cfg.service.http, |s| {
        cxrflow_inference::run(cfg, s)
    });
    let preds: Vec<Prediction> = read_records(&kafka, &codec, 32, Duration::from_secs(60)).await;
    assert_eq!(
        preds.len(),
        32,
        "one served + one shadow prediction per study"
    );
    for uid in &uids {
        let mine: Vec<&Prediction> = preds
            .iter()
            .filter(|p| &p.study.study_instance_uid == uid)
            .collect();
        let served = mine
            .iter()
            .find(|p| p.model_role != ModelRole::Shadow)
            .unwrap();
        let shadow = mine
            .iter()
            .find(|p| p.model_role == ModelRole::Shadow)
            .unwrap();
        assert_eq!(shadow.model_version, "3.0.0");
        if rollout::in_fraction(uid, 0.5) {
            assert_eq!(
                (served.model_version.as_str(), served.model_role),
                ("2.0.0", ModelRole::Canary)
            );
        } else {
            assert_eq!(
                (served.model_version.as_str(), served.model_role),
                ("1.0.0", ModelRole::Production)
            );
        }
    }

    // Rolling the canary back while running: new studies go to production only.
    rollout::rollback(&kafka, "m", "2.0.0", "ops", "enough")
        .await
        .unwrap();
    let canary_uid = (0..1000)
        .map(|i| format!("9.9.{i}"))
        .find(|u| rollout::in_fraction(u, 0.5))
        .unwrap();
    cxrflow_testkit::eventually(
        Duration::from_secs(30),
        "a canary-bucket study served by production after rollback",
        || {
            let (kafka, codec, uid) = (kafka.clone(), codec.clone(), canary_uid.clone());
            async move {
                produce(&kafka, &codec, &[image(&uid, 10)]).await;
                let all: Vec<Prediction> =
                    read_records(&kafka, &codec, usize::MAX, Duration::from_secs(3)).await;
                all.iter().any(|p| {
                    p.study.study_instance_uid == uid
                        && p.model_role == ModelRole::Production
                        && p.model_version == "1.0.0"
                })
            }
        },
    )
    .await;
    svc.stop().await;
}

#[test]
fn cuda_request_fails_clearly_on_a_cpu_runtime_and_warns_with_the_fallback_flag() {
    require_ort();
    let models = tempfile::tempdir().unwrap();
    let dir = TestModel::default()
        .write_dir(models.path(), "m", "1.0.0", "gray224-v1")
        .unwrap();
    let opts = SessionOptions {
        device: Device::Cuda(0),
        ..SessionOptions::default()
    };
    match ModelSession::load(ModelDir::load(&dir).unwrap(), &opts, None) {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("CUDA was requested (cuda:0)") && msg.contains("--allow-cpu-fallback"),
                "{msg}"
            );
        }
        Ok(s) => {
            // A GPU machine with the CUDA build: every compute node must be proven on CUDA.
            let cuda = cxrflow_inference::session::CUDA_PROVIDER;
            assert_eq!(s.provider, cuda, "{}", s.placement.describe_off(50));
            assert!(s.placement.all_on(cuda));
            return;
        }
    }
    let fallback = SessionOptions {
        allow_cpu_fallback: true,
        ..opts
    };
    let s = ModelSession::load(ModelDir::load(&dir).unwrap(), &fallback, None).unwrap();
    assert_eq!(s.provider, CPU_PROVIDER);
    assert!(s.placement.all_on(CPU_PROVIDER));
}

#[test]
fn a_cpu_session_proves_every_node_of_its_graph_on_the_cpu() {
    require_ort();
    let models = tempfile::tempdir().unwrap();
    let dir = TestModel::default()
        .write_dir(models.path(), "m", "1.0.0", "gray224-v1")
        .unwrap();
    let s = ModelSession::load(
        ModelDir::load(&dir).unwrap(),
        &SessionOptions::default(),
        None,
    )
    .unwrap();
    // Read from the profile of the load's first batch: the graph's nodes after ONNX Runtime's
    // optimizations (pool, Gemm, Sigmoid, MatMul: some may be fused), each with its op type.
    let p = &s.placement;
    assert!(p.all_on(CPU_PROVIDER), "{p:?}");
    assert_eq!(p.nodes.len(), 1, "{p:?}");
    assert!(p.count(CPU_PROVIDER) >= 2, "{p:?}");
    assert!(p.off_requested.is_empty());
    assert_eq!(s.provider, CPU_PROVIDER);
}

#[test]
fn several_sessions_answer_concurrent_threads_like_one() {
    require_ort();
    let models = tempfile::tempdir().unwrap();
    let spec = TestModel::default();
    let dir = spec
        .write_dir(models.path(), "m", "1.0.0", "gray224-v1")
        .unwrap();
    let opts = SessionOptions {
        intra_op_threads: 1,
        sessions: 3,
        ..SessionOptions::default()
    };
    let s = Arc::new(ModelSession::load(ModelDir::load(&dir).unwrap(), &opts, None).unwrap());
    assert_eq!(s.sessions(), 3);
    assert_eq!(s.provider, CPU_PROVIDER);
    let threads: Vec<_> = (0..6u8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..10u8)
                    .map(|i| {
                        let pixel = 10 + t * 30 + i;
                        let img = vec![pixel; 224 * 224];
                        (pixel, s.run(&[img.as_slice()]).unwrap().probabilities[0])
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for (pixel, probs) in t.join().unwrap() {
            let want = spec.expected(TestModel::pooled(pixel));
            for k in 0..14 {
                assert!(
                    (probs[k] - want[k]).abs() < 1e-4,
                    "pixel {pixel}, finding {k}"
                );
            }
        }
    }
}
