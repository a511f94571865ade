//! Following a control topic (`cxr.models.v1`, `cxr.drift.v1`) from its beginning, for as long
//! as the service runs.
//!
//! Delivery: every replica reads every record (each follows subscribed, under a group of its
//! own from [`throwaway_group_id`], so partitions added later are picked up too), and nothing
//! is committed: a restart reads the topic again from the beginning, so applying a record must
//! be idempotent. The catch: an undecodable record is logged and skipped, never dead-lettered
//! (a control topic has no DLQ).
//!
//! [`throwaway_group_id`]: super::read::throwaway_group_id

use std::future::Future;

use cxrflow_contracts::{AvroRecord, Codec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use super::read::reader_config;
use crate::config::{KafkaArgs, Urgency};

/// Reads `logical` from the beginning until `shutdown`, decoding each record as `T` and handing
/// it to `on_record`. `group` names the throwaway group (`<group>-<random>`). Off the study
/// path: the background fetch wait.
pub async fn follow<T, F, Fut>(
    kafka: KafkaArgs,
    codec: &Codec,
    logical: &str,
    group: &str,
    shutdown: CancellationToken,
    mut on_record: F,
) where
    T: AvroRecord,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = ()>,
{
    let consumer: StreamConsumer = match reader_config(&kafka, group, Urgency::Background).create()
    {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, topic = logical, "cannot follow the topic"),
    };
    if let Err(e) = consumer.subscribe(&[&kafka.topic(logical)]) {
        return tracing::error!(error = %e, topic = logical, "cannot subscribe to the topic");
    }
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = consumer.recv() => m,
        };
        match m {
            Ok(m) => {
                let Some(p) = m.payload() else { continue };
                match codec.decode::<T>(p) {
                    Ok(r) => on_record(r).await,
                    Err(e) => {
                        tracing::warn!(error = %e, topic = logical, "undecodable record ignored")
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, topic = logical, "control topic consumer"),
        }
    }
}
