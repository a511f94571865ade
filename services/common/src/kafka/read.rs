//! Reading a topic from its beginning to its current end: the high-water marks taken at the
//! start, every partition assigned directly at its low watermark (no group join, so no
//! rebalance and nothing to wait for), polled until each partition's last record has been
//! seen. Used to rebuild state from a compacted topic (the worklist, the model rollouts) and to
//! summarise a run.
//!
//! Delivery: every record below the start's high-water marks is handed to the visitor exactly
//! once, in offset order per partition (partitions interleave). Nothing is committed. The
//! catch: records produced after the start are not read, and a consumer error is logged and
//! read past (librdkafka retries on its own), so a broker that stays away ends the read in
//! [`ReadError::Timeout`] rather than at the first error.
//!
//! Every consumer here that commits nothing (these readers, [`super::follow`]) is configured by
//! [`reader_config`] under a [`throwaway_group_id`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{KafkaArgs, Urgency};

/// How long metadata and watermark requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one poll waits for a record before the deadline is checked again.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {topic}: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("{topic} not read to its end within {timeout:?}; partitions left: {left:?}")]
    Timeout {
        topic: String,
        timeout: Duration,
        left: Vec<i32>,
    },
}

/// What a read found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    /// Partitions of the topic (0: it does not exist, or has none yet).
    pub partitions: usize,
    /// Records handed to the visitor.
    pub records: u64,
}

/// A consumer group id nobody else uses: `<purpose>-<16 hex digits>`. For consumers that must
/// neither share records with another replica nor find offsets committed by one.
pub fn throwaway_group_id(purpose: &str) -> String {
    format!("{purpose}-{:016x}", rand::random::<u64>())
}

/// The config of a consumer that commits nothing, under a [`throwaway_group_id`] of `purpose`:
/// it starts at the earliest offset wherever it has no position of its own.
pub fn reader_config(kafka: &KafkaArgs, purpose: &str, urgency: Urgency) -> ClientConfig {
    kafka.consumer_config_with(urgency, |c| {
        c.set("group.id", throwaway_group_id(purpose))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest");
    })
}

/// Hands every record of the logical topic `logical`, up to its end at call time, to `visit`.
/// Blocking: call from `spawn_blocking` in async code.
pub fn read_to_end(
    kafka: &KafkaArgs,
    logical: &str,
    timeout: Duration,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<ReadSummary, ReadError> {
    let topic = kafka.topic(logical);
    let kerr = |source| ReadError::Kafka {
        topic: topic.clone(),
        source,
    };
    // The study path's fetch wait: a read to the end is a wait somebody is sitting through (a
    // start, a CLI). It reads only partitions with records left, so a broker that answers on
    // arrival (Kafka, the patched embedded tansu) never holds one of its fetches.
    let consumer: BaseConsumer = reader_config(
        kafka,
        &format!("cxrflow-read-{logical}"),
        Urgency::StudyPath,
    )
    .create()
    .map_err(kerr)?;
    let md = consumer
        .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
        .map_err(kerr)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut summary = ReadSummary {
        partitions: partitions.len(),
        records: 0,
    };
    // Partition → the high watermark still to reach.
    let mut pending: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
            .map_err(kerr)?;
        if high > low {
            tpl.add_partition_offset(&topic, p, Offset::Offset(low))
                .map_err(kerr)?;
            pending.insert(p, high);
        }
    }
    if pending.is_empty() {
        return Ok(summary);
    }
    consumer.assign(&tpl).map_err(kerr)?;
    let deadline = Instant::now() + timeout;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            let mut left: Vec<i32> = pending.keys().copied().collect();
            left.sort_unstable();
            return Err(ReadError::Timeout {
                topic,
                timeout,
                left,
            });
        }
        let m = match consumer.poll(POLL) {
            None => continue,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(topic, error = %e, "reading to the end: consumer error");
                continue;
            }
        };
        summary.records += 1;
        visit(&m);
        if pending
            .get(&m.partition())
            .is_some_and(|high| m.offset() + 1 >= *high)
        {
            pending.remove(&m.partition());
        }
    }
    Ok(summary)
}

/// One record of a [`snapshot`].
#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
}

/// Every record of the logical `topic` up to its end at call time ([`read_to_end`], copied).
/// Blocking: call from `spawn_blocking` in async code.
pub fn snapshot(
    kafka: &KafkaArgs,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<SnapshotRecord>, ReadError> {
    let mut out = Vec::new();
    read_to_end(kafka, topic, timeout, |m| {
        out.push(SnapshotRecord {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        })
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throwaway_group_ids_are_named_and_distinct() {
        let (a, b) = (throwaway_group_id("x"), throwaway_group_id("x"));
        assert_ne!(a, b);
        assert!(a.starts_with("x-") && a.len() == "x-".len() + 16, "{a}");
    }

    #[test]
    fn a_reader_commits_nothing_and_pass_through_properties_win() {
        let mut kafka = KafkaArgs::for_bootstrap("127.0.0.1:1");
        kafka.props = vec![("fetch.wait.max.ms".into(), "7".into())];
        let c = reader_config(&kafka, "p", Urgency::StudyPath);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("7"));
        assert!(c.get("group.id").is_some_and(|g| g.starts_with("p-")));
    }
}
