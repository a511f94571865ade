//! Following a control topic (`cxr.models.v1`, `cxr.drift.v1`) from its beginning with a
//! throwaway consumer group, so every replica reads every record and nothing is committed.

use std::future::Future;

use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{AvroRecord, Codec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

/// Reads `logical` from the beginning until `shutdown`, decoding each record as `T` and handing
/// it to `on_record`; undecodable records are logged and skipped (a control topic has no DLQ).
/// `group` names the throwaway group (`<group>-<random>`).
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
    let mut cc = kafka.consumer_config_for(cxrflow_common::Urgency::Background);
    cc.set("group.id", format!("{group}-{:016x}", crate::rand_id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = match cc.create() {
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
