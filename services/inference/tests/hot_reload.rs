//! Hot reload through a real broker: while records flow, a new version is staged as shadow
//! (through [`rollout::stage_model_dir`], as `cxrflow model stage` does) and then promoted.
//! No record is dropped (each study has exactly one served prediction), the served version
//! switches once per partition (no flapping beyond the records in flight at the switch), and
//! studies produced after the switch are all on the new version.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, image, require_ort, write_versions};
use cxrflow_common::kafka::Producer;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::*;
use cxrflow_inference::rollout;
use cxrflow_testkit::{eventually, read_topic, Broker, TestService};
use tokio_util::sync::CancellationToken;

/// Served predictions by study UID, with the partition each was read from.
type Served = HashMap<String, Vec<(i32, Prediction)>>;

fn uid(i: usize) -> String {
    format!("1.2.7.{i}")
}

/// Every prediction so far, with the partition it was read from.
async fn predictions(kafka: &KafkaArgs, codec: &Codec) -> Vec<(i32, Prediction)> {
    read_topic(kafka, topics::PREDICTIONS, Duration::from_secs(3), |_| {
        false
    })
    .await
    .into_iter()
    .filter_map(|r| {
        let p = codec.decode::<Prediction>(r.payload.as_deref()?).ok()?;
        Some((r.partition, p))
    })
    .collect()
}

async fn wait_for(kafka: &KafkaArgs, codec: &Arc<Codec>, what: &str, f: fn(&Prediction) -> bool) {
    eventually(Duration::from_secs(30), what, || {
        let (kafka, codec) = (kafka.clone(), codec.clone());
        async move { predictions(&kafka, &codec).await.iter().any(|(_, p)| f(p)) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promotion_while_records_flow_drops_nothing_and_switches_once() {
    require_ort();
    let models = tempfile::tempdir().unwrap();
    write_versions(models.path(), "m", &["1.0.0", "2.0.0"]);
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    rollout::promote(&kafka, "m", "1.0.0", "ops", "initial")
        .await
        .unwrap();
    let cfg = config(kafka.clone(), models.path(), "m");
    let in_flight = cfg.service.max_in_flight;
    let svc = TestService::spawn("inference", cfg.service.http, |s| {
        cxrflow_inference::run(cfg, s)
    });

    // A steady stream of studies, one every 10 ms, until told to stop.
    let produced = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let feeder = {
        let (kafka, codec, produced, stop) =
            (kafka.clone(), codec.clone(), produced.clone(), stop.clone());
        tokio::spawn(async move {
            let p = Producer::new(&kafka).unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.is_cancelled() {
                tick.tick().await;
                let i = produced.load(Ordering::SeqCst);
                p.send(
                    &codec,
                    &image(&uid(i), (i % 200) as u8 + 20),
                    &BTreeMap::new(),
                )
                .await
                .unwrap();
                produced.store(i + 1, Ordering::SeqCst);
            }
        })
    };
    wait_for(&kafka, &codec, "production 1.0.0 serving", |p| {
        p.model_version == "1.0.0"
    })
    .await;
    rollout::stage_model_dir(
        &kafka,
        &models.path().join("m").join("2.0.0"),
        rollout::CandidateRole::Shadow,
        1.0,
        "ops",
        "shadow 2.0.0",
    )
    .await
    .unwrap();
    wait_for(&kafka, &codec, "2.0.0 scoring as shadow", |p| {
        p.model_role == ModelRole::Shadow && p.model_version == "2.0.0"
    })
    .await;
    let decision = rollout::promote(&kafka, "m", "2.0.0", "ops", "shadow looked fine")
        .await
        .unwrap();
    wait_for(&kafka, &codec, "2.0.0 serving as production", |p| {
        p.model_role == ModelRole::Production && p.model_version == "2.0.0"
    })
    .await;
    // Studies produced from now on must all be served by 2.0.0.
    let tail_from = produced.load(Ordering::SeqCst);
    eventually(Duration::from_secs(30), "20 more studies produced", || {
        let n = produced.load(Ordering::SeqCst);
        async move { n >= tail_from + 20 }
    })
    .await;
    stop.cancel();
    feeder.await.unwrap();
    let total = produced.load(Ordering::SeqCst);

    let collected: Arc<Mutex<Served>> = Arc::default();
    eventually(
        Duration::from_secs(60),
        "a served prediction for every study",
        || {
            let (kafka, codec, collected) = (kafka.clone(), codec.clone(), collected.clone());
            async move {
                let mut served = Served::new();
                for (part, p) in predictions(&kafka, &codec).await {
                    if p.model_role != ModelRole::Shadow {
                        served
                            .entry(p.study.study_instance_uid.clone())
                            .or_default()
                            .push((part, p));
                    }
                }
                let done = served.len() >= total;
                *collected.lock().unwrap() = served;
                done
            }
        },
    )
    .await;
    let served = std::mem::take(&mut *collected.lock().unwrap());
    svc.stop().await;

    // Nothing dropped, nothing doubled: exactly one served prediction per study.
    let mut per_partition: BTreeMap<i32, Vec<(usize, bool)>> = BTreeMap::new();
    for i in 0..total {
        let preds = served
            .get(&uid(i))
            .unwrap_or_else(|| panic!("study {i} dropped"));
        assert_eq!(preds.len(), 1, "study {i}: {preds:#?}");
        let (part, p) = &preds[0];
        assert_eq!(p.model_role, ModelRole::Production);
        let new = match p.model_version.as_str() {
            "1.0.0" => false,
            "2.0.0" => true,
            v => panic!("unexpected version {v}"),
        };
        if new {
            assert!(
                p.predicted_at >= decision.decided_at,
                "2.0.0 serves only after the decision"
            );
        }
        if i >= tail_from {
            assert!(
                new,
                "study {i}, produced after the switch, on {}",
                p.model_version
            );
        }
        per_partition.entry(*part).or_default().push((i, new));
    }
    let switched: usize = per_partition
        .values()
        .map(|seq| seq.iter().filter(|(_, n)| *n).count())
        .sum();
    assert!(switched >= 20, "the new version served the tail");
    // Per partition, in produced order, the version switches once: an old-version record after
    // the first new-version one is possible only among the records in flight at the switch.
    for (part, seq) in &per_partition {
        let Some(first_new) = seq.iter().position(|(_, n)| *n) else {
            continue;
        };
        let late_old = seq[first_new..].iter().filter(|(_, n)| !*n).count();
        assert!(
            late_old <= in_flight,
            "partition {part}: {late_old} records on 1.0.0 after the first on 2.0.0"
        );
        let last_old = seq.iter().rposition(|(_, n)| !*n).unwrap_or(0);
        assert!(
            last_old < first_new + in_flight,
            "partition {part}: flapping between versions"
        );
    }
}
