//! Consumer lag per service during a run: every interval, each service's consumer group's
//! committed offsets against the end offsets of the topics it consumes.
//!
//! The sampler only *reads* group offsets (OffsetFetch); it never joins a group, so it cannot
//! trigger a rebalance of the services it watches. A partition with no commit yet counts from
//! its low watermark (the services start from the earliest offset).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxrflow_common::time::now_millis;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Each service and the topics it consumes (its subscription in `services/<name>`).
pub const SERVICE_INPUTS: [(&str, &[&str]); 6] = [
    ("ingest", &[topics::SCAN]),
    ("preprocess", &[topics::INGESTED]),
    ("inference", &[topics::PREPROCESSED]),
    ("triage", &[topics::PREDICTIONS, topics::FEEDBACK]),
    ("feedback", &[topics::FEEDBACK, topics::PREDICTIONS]),
    (
        "drift",
        &[topics::PREPROCESSED, topics::PREDICTIONS, topics::LABELED],
    ),
];

/// One sample: records not yet committed, per service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagPoint {
    pub at_ms: i64,
    pub lag: BTreeMap<String, i64>,
}

impl LagPoint {
    pub fn total(&self) -> i64 {
        self.lag.values().sum()
    }
}

/// Reads group offsets and watermarks; blocking.
pub struct LagSampler {
    kafka: KafkaArgs,
    groups: Vec<(String, BaseConsumer)>,
    meta: BaseConsumer,
    timeout: Duration,
}

impl LagSampler {
    /// Watches the services' groups `<group_prefix><service>` (`cxrflow-ingest`, …).
    pub fn new(kafka: &KafkaArgs, group_prefix: &str) -> Result<Self, KafkaError> {
        let consumer = |group: &str| -> Result<BaseConsumer, KafkaError> {
            let mut cc = kafka.client_config();
            cc.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false");
            cc.create()
        };
        let groups = SERVICE_INPUTS
            .iter()
            .map(|(svc, _)| Ok((svc.to_string(), consumer(&format!("{group_prefix}{svc}"))?)))
            .collect::<Result<_, KafkaError>>()?;
        Ok(LagSampler {
            kafka: kafka.clone(),
            groups,
            meta: consumer("cxrflow-sim-lag")?,
            timeout: Duration::from_secs(5),
        })
    }

    /// One sample of every service's lag.
    pub fn sample(&self) -> Result<LagPoint, KafkaError> {
        let mut marks: HashMap<(String, i32), (i64, i64)> = HashMap::new();
        for (logical, _) in topics::SCHEMAS {
            let needed = SERVICE_INPUTS.iter().any(|(_, t)| t.contains(logical));
            if !needed {
                continue;
            }
            let physical = self.kafka.topic(logical);
            let md = self.meta.fetch_metadata(Some(&physical), self.timeout)?;
            for t in md.topics() {
                for p in t.partitions() {
                    let w = self
                        .meta
                        .fetch_watermarks(&physical, p.id(), self.timeout)?;
                    marks.insert((physical.clone(), p.id()), w);
                }
            }
        }
        let mut lag = BTreeMap::new();
        for ((svc, inputs), (_, consumer)) in SERVICE_INPUTS.iter().zip(&self.groups) {
            let mut tpl = TopicPartitionList::new();
            for t in inputs.iter() {
                let physical = self.kafka.topic(t);
                for ((topic, p), _) in marks.iter().filter(|((tp, _), _)| *tp == physical) {
                    tpl.add_partition(topic, *p);
                }
            }
            let committed = consumer.committed_offsets(tpl, self.timeout)?;
            let mut sum = 0i64;
            for e in committed.elements() {
                let Some((low, high)) = marks.get(&(e.topic().to_string(), e.partition())) else {
                    continue;
                };
                let from = match e.offset() {
                    Offset::Offset(o) => o.max(*low),
                    _ => *low,
                };
                sum += (high - from).max(0);
            }
            lag.insert(svc.to_string(), sum);
        }
        Ok(LagPoint {
            at_ms: now_millis(),
            lag,
        })
    }
}

/// The latest sample, for a live display.
pub type LatestLag = Arc<Mutex<Option<LagPoint>>>;

/// Samples every `interval` on a blocking thread until `stop`; returns every sample. Failures
/// are logged once and sampling goes on (a broker without group offsets yields no samples).
pub fn spawn_sampler(
    kafka: KafkaArgs,
    group_prefix: String,
    interval: Duration,
    stop: CancellationToken,
    latest: LatestLag,
) -> tokio::task::JoinHandle<Vec<LagPoint>> {
    tokio::task::spawn_blocking(move || {
        let sampler = match LagSampler::new(&kafka, &group_prefix) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "consumer lag: cannot create the sampler; no lag series");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let mut warned = false;
        while !stop.is_cancelled() {
            match sampler.sample() {
                Ok(p) => {
                    if let Ok(mut l) = latest.lock() {
                        *l = Some(p.clone());
                    }
                    out.push(p);
                }
                Err(e) if !warned => {
                    tracing::warn!(error = %e, "consumer lag: sample failed (will keep trying)");
                    warned = true;
                }
                Err(_) => {}
            }
            // Sleep in short steps so a stop is seen promptly.
            let mut slept = Duration::ZERO;
            while slept < interval && !stop.is_cancelled() {
                let step = Duration::from_millis(50).min(interval - slept);
                std::thread::sleep(step);
                slept += step;
            }
        }
        out
    })
}
