//! Rebuilding the worklist from `cxr.triage.v1`, the source of truth: every partition is read
//! from its low to its high watermark (taken at start) with a plain, group-less assignment, and
//! every decision and tombstone is applied (the highest version per study wins, so the order of
//! partitions does not matter). Only then does the service process predictions and report ready.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{AvroRecord, Codec, EpochMillis, TriageDecision};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::worklist::Worklist;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("rebuild consumer for {topic}: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {0} has no partitions (is it created?)")]
    NoPartitions(String),
    #[error(
        "rebuild of {topic} did not reach the end within {timeout:?}; partitions left: {left:?}"
    )]
    Timeout {
        topic: String,
        timeout: Duration,
        left: Vec<i32>,
    },
}

/// What the rebuild read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RebuildStats {
    pub records: u64,
    pub tombstones: u64,
    pub undecodable: u64,
}

/// Reads the whole worklist topic into `wl` (blocking: run it on a blocking thread).
pub fn rebuild(
    kafka: &KafkaArgs,
    codec: &Codec,
    wl: &mut Worklist,
    now: EpochMillis,
    timeout: Duration,
) -> Result<RebuildStats, RebuildError> {
    let topic = kafka.topic(TriageDecision::TOPIC);
    let kerr = |source| RebuildError::Kafka {
        topic: topic.clone(),
        source,
    };
    let mut cc = kafka.consumer_config();
    cc.set(
        "group.id",
        format!("cxrflow-triage-rebuild-{}", uuid::Uuid::new_v4()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.partition.eof", "false")
    .set("auto.offset.reset", "earliest");
    for (k, v) in &kafka.props {
        cc.set(k, v);
    }
    let consumer: BaseConsumer = cc.create().map_err(kerr)?;
    let md = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .map_err(kerr)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(RebuildError::NoPartitions(topic));
    }
    let mut tpl = TopicPartitionList::new();
    // Partition → the high watermark still to reach.
    let mut pending: HashMap<i32, i64> = HashMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, p, Duration::from_secs(10))
            .map_err(kerr)?;
        if high > low {
            tpl.add_partition_offset(&topic, p, Offset::Offset(low))
                .map_err(kerr)?;
            pending.insert(p, high);
        }
    }
    let mut stats = RebuildStats::default();
    if pending.is_empty() {
        return Ok(stats);
    }
    consumer.assign(&tpl).map_err(kerr)?;
    let end = Instant::now() + timeout;
    while !pending.is_empty() {
        if Instant::now() > end {
            let mut left: Vec<i32> = pending.keys().copied().collect();
            left.sort();
            return Err(RebuildError::Timeout {
                topic,
                timeout,
                left,
            });
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "rebuild: consumer error");
                continue;
            }
        };
        stats.records += 1;
        match m.payload() {
            None => {
                stats.tombstones += 1;
                if let Some(k) = m.key() {
                    wl.remove(&String::from_utf8_lossy(k), now);
                }
            }
            Some(bytes) => match codec.decode::<TriageDecision>(bytes) {
                Ok(d) => {
                    wl.apply(d, None);
                }
                Err(e) => {
                    stats.undecodable += 1;
                    tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "rebuild: undecodable decision skipped");
                }
            },
        }
        if pending
            .get(&m.partition())
            .is_some_and(|high| m.offset() + 1 >= *high)
        {
            pending.remove(&m.partition());
        }
    }
    Ok(stats)
}
