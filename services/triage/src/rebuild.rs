//! Rebuilding the worklist from `cxr.triage.v1`, the source of truth: the topic is read to its
//! end at start ([`cxrflow_common::kafka::read_to_end`]: low to high watermark per partition,
//! a plain, group-less assignment), and every decision and tombstone is applied (the highest
//! version per study wins, so the order of partitions does not matter). Only then does the
//! service process predictions and report ready.

use std::time::Duration;

use cxrflow_common::kafka::{read_to_end, ReadError};
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{AvroRecord, Codec, EpochMillis, TriageDecision};
use rdkafka::message::Message;

use crate::worklist::Worklist;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("rebuilding the worklist: {0}")]
    Read(#[from] ReadError),
    #[error("topic {0} has no partitions (is it created?)")]
    NoPartitions(String),
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
    let mut stats = RebuildStats::default();
    let read = read_to_end(kafka, TriageDecision::TOPIC, timeout, |m| {
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
    })?;
    if read.partitions == 0 {
        return Err(RebuildError::NoPartitions(
            kafka.topic(TriageDecision::TOPIC),
        ));
    }
    stats.records = read.records;
    Ok(stats)
}
