//! The idempotent producer (acks=all): every send waits for the broker's acknowledgement, so a
//! caller stores its input offset only once its outputs are durable.

use std::collections::BTreeMap;
use std::time::Duration;

use cxrflow_contracts::{AvroRecord, Codec};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::config::KafkaArgs;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("producer could not be created: {0}")]
    Create(#[source] KafkaError),
    #[error("delivery to {topic} failed: {source}")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Codec(#[from] cxrflow_contracts::CodecError),
}

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    kafka: KafkaArgs,
}

impl Producer {
    pub fn new(kafka: &KafkaArgs) -> Result<Self, ProduceError> {
        let mut cfg = kafka.client_config();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            // No compression by default: the large records are already-compressed images
            // (PNG/JPEG/DICOM) and 8-bit tensors, and on the embedded broker lz4 cost CPU on
            // every side (the broker decompresses each batch) for no gain: preprocess 2.9 →
            // 1.5 CPU-ms/study, broker 8.4 → 6.7 without it (README, benchmarks). Over a slow
            // network to a Kafka cluster: `--kafka-prop compression.type=zstd`.
            .set("compression.type", "none")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000")
            .set("message.max.bytes", kafka.message_limit_bytes().to_string());
        // Pass-through properties win over our defaults.
        for (k, v) in &kafka.props {
            cfg.set(k, v);
        }
        let inner: FutureProducer = cfg.create().map_err(ProduceError::Create)?;
        Ok(Producer {
            inner,
            kafka: kafka.clone(),
        })
    }

    pub fn kafka(&self) -> &KafkaArgs {
        &self.kafka
    }

    /// Sends raw bytes to a *physical* topic and waits for the acknowledgement.
    /// `payload: None` writes a tombstone.
    pub async fn send_raw(
        &self,
        topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
        headers: &BTreeMap<String, String>,
    ) -> Result<(i32, i64), ProduceError> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key).headers(h);
        if let Some(p) = payload {
            rec = rec.payload(p);
        }
        self.inner
            .send(rec, Duration::from_secs(30))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| ProduceError::Delivery {
                topic: topic.to_string(),
                source: e,
            })
    }

    /// Encodes `record` and sends it to its topic (with this stack's prefix), keyed by its key.
    pub async fn send<T: AvroRecord>(
        &self,
        codec: &Codec,
        record: &T,
        headers: &BTreeMap<String, String>,
    ) -> Result<(i32, i64), ProduceError> {
        let bytes = codec.encode(record)?;
        self.send_raw(
            &self.kafka.topic(T::TOPIC),
            record.key().as_bytes(),
            Some(&bytes),
            headers,
        )
        .await
    }

    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.inner.flush(timeout) {
            tracing::warn!(error = %e, "producer flush did not complete");
        }
    }
}
