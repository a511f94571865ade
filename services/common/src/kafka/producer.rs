//! The idempotent producer (acks=all): every send waits for the broker's acknowledgement, so a
//! caller stores its input offset only once its outputs are durable.
//!
//! It is rdkafka's `BaseProducer` with a delivery-report thread of our own rather than its
//! `FutureProducer`: that one's thread polls for 100 ms at a time, and rdkafka hands librdkafka
//! what remains of a poll in whole milliseconds, so the last fraction of a millisecond of every
//! poll is a loop of non-blocking polls — about 1 % of a core per producer, idle or not (seen
//! with perf on every service). Ours polls for whole milliseconds plus a margin smaller than
//! librdkafka's timed-wait overshoot, and for longer, so the loop is rare and short.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cxrflow_contracts::{AvroRecord, Codec};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tokio::sync::oneshot;

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

/// What the broker said about one record: its (partition, offset), or why it was not written.
type Ack = Result<(i32, i64), KafkaError>;

/// Hands each delivery report to the task waiting for it.
struct Acks;

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<oneshot::Sender<Ack>>;

    fn delivery(&self, report: &DeliveryResult<'_>, waiter: Self::DeliveryOpaque) {
        let ack = match report {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The sender may have stopped waiting (its task was cancelled): nobody to tell.
        let _ = waiter.send(ack);
    }
}

/// How long one poll of the delivery reports lasts: whole milliseconds plus 20 µs, so the poll
/// ends on librdkafka's timed wait (which overshoots by more than that) instead of spinning
/// through a sub-millisecond remainder. A report ends a wait early and is handled at once; the
/// remainder loop can still follow the last report of a poll, so a longer poll has fewer of them
/// (8 producers, 140 sends/s: 0.032 CPU-ms per send with rdkafka's thread, 0.031 with 100 ms
/// polls, 0.025 with 250 ms; idle: 5.9 % of a core → 0.3 %). It bounds how long dropping the
/// last handle waits for the thread.
const POLL: Duration = Duration::from_micros(250_020);

/// The client and the thread that serves its delivery reports; dropping the last handle stops
/// the thread and waits for it, so the client is gone when the drop returns.
struct Client {
    producer: Arc<BaseProducer<Acks>>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
}

impl Client {
    fn start(producer: BaseProducer<Acks>) -> std::io::Result<Client> {
        let producer = Arc::new(producer);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("kafka-acks".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(POLL);
                    }
                })?
        };
        Ok(Client {
            producer,
            stop,
            poller: Some(poller),
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.poller.take() {
            let _ = h.join();
        }
    }
}

#[derive(Clone)]
pub struct Producer {
    client: Arc<Client>,
    kafka: KafkaArgs,
}

/// How long a send retries while librdkafka's local queue is full before it fails.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(30);

impl Producer {
    pub fn new(kafka: &KafkaArgs) -> Result<Self, ProduceError> {
        // Pass-through properties win over these defaults.
        let cfg = kafka.client_config_with(|cfg| {
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
        });
        let producer: BaseProducer<Acks> = cfg
            .create_with_context(Acks)
            .map_err(ProduceError::Create)?;
        let client = Client::start(producer).map_err(|e| {
            ProduceError::Create(KafkaError::ClientCreation(format!(
                "delivery-report thread: {e}"
            )))
        })?;
        Ok(Producer {
            client: Arc::new(client),
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
        let failed = |source: KafkaError| ProduceError::Delivery {
            topic: topic.to_string(),
            source,
        };
        let (tx, rx) = oneshot::channel();
        let mut rec: BaseRecord<'_, [u8], [u8], _> =
            BaseRecord::with_opaque_to(topic, Box::new(tx))
                .key(key)
                .headers(h);
        if let Some(p) = payload {
            rec = rec.payload(p);
        }
        let started = Instant::now();
        loop {
            match self.client.producer.send(rec) {
                Ok(()) => break,
                // librdkafka's local queue is full (the broker is slow or away): wait for room,
                // as rdkafka's FutureProducer does, within a bound.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < QUEUE_FULL_TIMEOUT =>
                {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err((e, _)) => return Err(failed(e)),
            }
        }
        match rx.await {
            Ok(ack) => ack.map_err(failed),
            // The report can only be lost if the client is destroyed with the record in it,
            // and this handle keeps the client alive.
            Err(_) => Err(failed(KafkaError::Canceled)),
        }
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
        if let Err(e) = self.client.producer.flush(timeout) {
            tracing::warn!(error = %e, "producer flush did not complete");
        }
    }
}
