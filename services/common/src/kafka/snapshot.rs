//! Reads a topic from the beginning to its current end (the high-water marks at the start),
//! e.g. to rebuild state from a compacted topic or to summarise a run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaArgs;

/// One record of a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic {topic} not fully read within {timeout:?}")]
    Timeout { topic: String, timeout: Duration },
}

/// Every record of the logical `topic` up to its end at call time, in partition order.
/// Blocking: call from `spawn_blocking` in async code.
pub fn read_to_end(
    kafka: &KafkaArgs,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<SnapshotRecord>, SnapshotError> {
    let physical = kafka.topic(topic);
    let mut cc = kafka.consumer_config();
    cc.set("group.id", "cxrflow-snapshot")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = cc.create()?;
    let md = consumer.fetch_metadata(Some(&physical), Duration::from_secs(10))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(&physical, *p, Duration::from_secs(10))?;
        if high > low {
            ends.insert(*p, high);
            tpl.add_partition_offset(&physical, *p, Offset::Offset(low))?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(SnapshotError::Timeout {
                topic: physical,
                timeout,
            });
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        out.push(SnapshotRecord {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        });
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            ends.remove(&m.partition());
        }
    }
    Ok(out)
}
