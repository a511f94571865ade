//! Load on the cxrflow pipeline: scan events published open-loop to `cxr.scan.v1` (as a PACS
//! gateway would), and an observer reading `cxr.triage.v1`, `cxr.predictions.v1` and
//! `cxr.dlq.v1` from the beginning that notes, per study, the first triage decision's time,
//! the micro-batch its prediction ran in, and dead letters. Latency is the study's
//! `published_at` to its first decision's `decided_at` (both stamped on this machine).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxrflow_common::kafka::Producer;
use cxrflow_common::time::now_millis;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{topics, Codec, DeadLetter, Prediction, TriageDecision, TriageTier};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::corpus::{Corpus, ScanImages};
use crate::load::{LoadResult, Outcome};
use crate::schedule::drive;
use crate::stats::Summary;

#[derive(Debug, Default)]
pub struct Seen {
    /// Study UID → first triage decision (epoch ms).
    pub decided: HashMap<String, i64>,
    /// Study UID → (micro-batch size, its `inference_ms`, `predicted_at`).
    pub predicted: HashMap<String, (i32, f64, i64)>,
    pub dead_letters: usize,
}

pub struct Observer {
    pub seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Observer {
    pub fn start(kafka: &KafkaArgs, codec: Arc<Codec>) -> anyhow::Result<Observer> {
        let mut cc = kafka.client_config();
        cc.set(
            "group.id",
            cxrflow_common::kafka::throwaway_group_id("bench-observer"),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
        let consumer: StreamConsumer = cc.create()?;
        let (tri, pred, dlq) = (
            kafka.topic(topics::TRIAGE),
            kafka.topic(topics::PREDICTIONS),
            kafka.topic(topics::DLQ),
        );
        consumer.subscribe(&[&tri, &pred, &dlq])?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok(m) = consumer.recv().await else {
                    continue;
                };
                let Some(p) = m.payload() else { continue };
                let mut seen = s.lock().unwrap_or_else(|e| e.into_inner());
                if m.topic() == tri {
                    // The AI's decision, not the AI_PENDING entry the scan event made.
                    if let Some(d) = codec
                        .decode::<TriageDecision>(p)
                        .ok()
                        .filter(|d| d.tier != TriageTier::AiPending)
                    {
                        let e = seen
                            .decided
                            .entry(d.study.study_instance_uid)
                            .or_insert(d.decided_at);
                        *e = (*e).min(d.decided_at);
                    }
                } else if m.topic() == pred {
                    if let Ok(d) = codec.decode::<Prediction>(p) {
                        // The first prediction, like the first decision: a prediction
                        // re-delivered after a rebalance (at-least-once) is not a new one.
                        let e = seen.predicted.entry(d.study.study_instance_uid).or_insert((
                            d.batch_size,
                            d.inference_ms,
                            d.predicted_at,
                        ));
                        if d.predicted_at < e.2 {
                            *e = (d.batch_size, d.inference_ms, d.predicted_at);
                        }
                    }
                } else if codec.decode::<DeadLetter>(p).is_ok() {
                    seen.dead_letters += 1;
                }
            }
        });
        Ok(Observer { seen, task })
    }

    fn decided(&self, uid: &str) -> Option<i64> {
        self.lock().decided.get(uid).copied()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One published study.
struct Sent {
    uid: String,
    published_at: i64,
    ok: bool,
    critical: bool,
}

/// What the inference service did during a run (from its predictions).
#[derive(Debug, Clone, Serialize)]
pub struct BatchFacts {
    pub mean_batch: Option<f64>,
    /// Mean of the predictions' `inference_ms`: submit to the batcher → result, so queueing
    /// for the session included.
    pub mean_inference_ms: Option<f64>,
    /// Scan published → prediction published (ingest, preprocess, inference and three hops).
    pub publish_to_prediction_ms: Summary,
    /// Prediction published → triage decision (triage and one hop).
    pub prediction_to_decision_ms: Summary,
}

/// What a load run on the pipeline needs: a producer, the images, and the observer.
pub struct Driver {
    pub producer: Producer,
    pub codec: Arc<Codec>,
    pub corpus: Arc<Corpus>,
    pub observer: Observer,
    pub scan_images: ScanImages,
}

impl Driver {
    /// Publishes send `i` of `phase` at `start + offsets[i]` (open loop), then waits until
    /// every published study has a triage decision, or `patience` passes without a new one,
    /// or `deadline` after the last send.
    pub async fn run(
        &self,
        phase: &str,
        offered: Option<f64>,
        offsets: &[Duration],
        patience: Duration,
        deadline: Duration,
    ) -> (LoadResult, BatchFacts) {
        let Driver {
            producer,
            codec,
            corpus,
            observer,
            scan_images,
        } = self;
        let scan_images = *scan_images;
        let start = Instant::now();
        let tasks = drive(start, offsets, |i, _due| {
            let (producer, codec, corpus, phase) = (
                producer.clone(),
                codec.clone(),
                corpus.clone(),
                phase.to_string(),
            );
            async move {
                let ev = corpus.scan_event(&phase, i, scan_images);
                let ok = producer
                    .send(&codec, &ev, &Default::default())
                    .await
                    .is_ok();
                Sent {
                    uid: ev.study.study_instance_uid,
                    published_at: ev.study.published_at,
                    ok,
                    critical: corpus.image(i).critical,
                }
            }
        })
        .await;
        let mut sent = Vec::with_capacity(tasks.len());
        for t in tasks {
            if let Ok(s) = t.await {
                sent.push(s);
            }
        }
        let sent_done = Instant::now();
        let mut waiting: HashSet<&str> = sent
            .iter()
            .filter(|s| s.ok)
            .map(|s| s.uid.as_str())
            .collect();
        let mut last_progress = Instant::now();
        while !waiting.is_empty()
            && last_progress.elapsed() < patience
            && sent_done.elapsed() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = waiting.len();
            let seen = observer.lock();
            waiting.retain(|u| !seen.decided.contains_key(*u));
            drop(seen);
            if waiting.len() < before {
                last_progress = Instant::now();
            }
        }
        let outcomes: Vec<Outcome> = sent
            .iter()
            .map(|s| {
                let decided = observer.decided(&s.uid);
                Outcome {
                    sent_ms: s.published_at as f64,
                    finished_ms: if s.ok {
                        decided.map(|d| d as f64)
                    } else {
                        Some(now_millis() as f64)
                    },
                    ok: s.ok && decided.is_some(),
                    timed_out: false,
                    critical: s.critical,
                }
            })
            .collect();
        let seen = observer.lock();
        let batches: Vec<(i32, f64, i64)> = sent
            .iter()
            .filter_map(|s| seen.predicted.get(&s.uid).copied())
            .collect();
        let mut to_prediction = Vec::new();
        let mut to_decision = Vec::new();
        for s in &sent {
            if let Some((_, _, at)) = seen.predicted.get(&s.uid) {
                to_prediction.push((at - s.published_at) as f64);
                if let Some(d) = seen.decided.get(&s.uid) {
                    to_decision.push((d - at) as f64);
                }
            }
        }
        drop(seen);
        let n = batches.len() as f64;
        let facts = BatchFacts {
            mean_batch: (n > 0.0).then(|| batches.iter().map(|b| f64::from(b.0)).sum::<f64>() / n),
            mean_inference_ms: (n > 0.0).then(|| batches.iter().map(|b| b.1).sum::<f64>() / n),
            publish_to_prediction_ms: Summary::of(&to_prediction),
            prediction_to_decision_ms: Summary::of(&to_decision),
        };
        (
            LoadResult::from_outcomes("cxrflow", phase, offered, &outcomes),
            facts,
        )
    }
}

/// Where critical studies of `phase` stand on the worklist right now: the mean position of
/// critical and of routine studies, as a percentage of the list (0 = top).
#[derive(Debug, Clone, Serialize)]
pub struct WorklistStanding {
    pub listed: usize,
    pub critical_mean_position_pct: Option<f64>,
    pub routine_mean_position_pct: Option<f64>,
}

pub async fn worklist_standing(
    triage_url: &str,
    critical_uids: &HashSet<String>,
    phase_uids: &HashSet<String>,
) -> anyhow::Result<WorklistStanding> {
    let v: serde_json::Value = reqwest::get(format!("{triage_url}/worklist"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let uids: Vec<&str> = v["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["study_uid"].as_str()).collect())
        .unwrap_or_default();
    let ours: Vec<&str> = uids
        .into_iter()
        .filter(|u| phase_uids.contains(*u))
        .collect();
    let n = ours.len();
    let mean = |crit: bool| {
        let pos: Vec<f64> = ours
            .iter()
            .enumerate()
            .filter(|(_, u)| critical_uids.contains(**u) == crit)
            .map(|(i, _)| 100.0 * i as f64 / n.max(1) as f64)
            .collect();
        (!pos.is_empty()).then(|| pos.iter().sum::<f64>() / pos.len() as f64)
    };
    Ok(WorklistStanding {
        listed: n,
        critical_mean_position_pct: mean(true),
        routine_mean_position_pct: mean(false),
    })
}
