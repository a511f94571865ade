//! The stage runtime: consume → process → produce → store offset.
//!
//! Delivery guarantee: **at-least-once**. A record's offset is stored (and later auto-committed)
//! only after every output it produced — or its dead letter — was acknowledged by the broker
//! (acks=all, idempotent producer), and only when every earlier record of its partition is done
//! too (the ordered [`Finalizer`]). The catch: a crash after the outputs are acknowledged but
//! before the offset is committed re-delivers the record, so its outputs appear twice on the
//! output topic. Every consumer downstream is therefore idempotent by study key.
//!
//! Errors are classified by the processor: *poison* records go to `cxr.dlq.v1` with their
//! original bytes and the stage moves on; *transient* failures are retried with capped,
//! jittered exponential backoff and never committed; a processor that panics on a record has
//! the record dead-lettered (`<service>.panic`) like poison, so its partition's commits go on.
//! In-flight work is bounded by `max_in_flight` (backpressure) and librdkafka's prefetch by
//! `queued.max.messages.kbytes`. On shutdown the stage stops fetching, drains in-flight records
//! within `drain_timeout` (shorter than the session timeout, checked at start), stores what
//! finished, commits synchronously and flushes the producer. A stage that holds no partitions
//! while its topics have records nobody consumes rejoins its group ([`super::ownership`]).

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use cxrflow_contracts::{AvroRecord, Codec, CodecError};
use futures::FutureExt;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Statistics};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::finalizer::Finalizer;
use super::ownership::{probe_unowned, Recovery, Unowned, Watchdog};
use super::producer::Producer;
use crate::config::{KafkaArgs, Urgency};
use crate::health::{Health, StageProbe};
use crate::metrics::StageMetrics;
use crate::registry::{learn_schema, RestRegistry};
use crate::telemetry::{adopt_parent, outbound_traceparent, TRACEPARENT};

/// A consumed record, detached from the consumer.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Physical topic name (with the stack's prefix).
    pub topic: String,
    /// Logical topic name (`cxr.scan.v1`), what processors match on.
    pub logical: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
    pub timestamp_ms: Option<i64>,
}

impl Inbound {
    pub fn key_str(&self) -> Option<String> {
        self.key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// Decodes the payload; a tombstone or undecodable record is poison.
    pub fn decode<T: AvroRecord>(&self, codec: &Codec) -> Result<T, StageError> {
        let bytes = self.payload.as_deref().ok_or_else(|| {
            StageError::poison("codec.tombstone", "unexpected tombstone (no payload)")
        })?;
        codec.decode(bytes).map_err(StageError::from)
    }
}

/// A record to produce, on a logical topic.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub topic: String,
    pub key: String,
    pub payload: Option<Vec<u8>>,
}

impl Outbound {
    pub fn record<T: AvroRecord>(codec: &Codec, record: &T) -> Result<Self, StageError> {
        Ok(Outbound {
            topic: T::TOPIC.to_string(),
            key: record.key(),
            payload: Some(codec.encode(record).map_err(|e| StageError::Poison {
                reason: e.reason().to_string(),
                error: e.to_string(),
                study: None,
            })?),
        })
    }

    pub fn tombstone(topic: &str, key: &str) -> Self {
        Outbound {
            topic: topic.to_string(),
            key: key.to_string(),
            payload: None,
        }
    }
}

/// How a record failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StageError {
    /// Can never succeed: dead-letter it and move on.
    #[error("{reason}: {error}")]
    Poison {
        reason: String,
        error: String,
        study: Option<String>,
    },
    /// A dependency is unavailable: retry with backoff, do not commit.
    #[error("transient {kind}: {error}")]
    Transient { kind: String, error: String },
}

impl StageError {
    pub fn poison(reason: impl Into<String>, error: impl Into<String>) -> Self {
        StageError::Poison {
            reason: reason.into(),
            error: error.into(),
            study: None,
        }
    }

    pub fn transient(kind: impl Into<String>, error: impl Into<String>) -> Self {
        StageError::Transient {
            kind: kind.into(),
            error: error.into(),
        }
    }

    /// A service's classified error: transient (retried, `reason` its kind) or poison
    /// (dead-lettered with `reason`), with the error's words.
    pub fn classified(reason: &'static str, transient: bool, error: impl ToString) -> Self {
        if transient {
            StageError::transient(reason, error.to_string())
        } else {
            StageError::poison(reason, error.to_string())
        }
    }

    /// Attaches the study UID (for the dead letter's key and the log line).
    pub fn for_study(self, uid: &str) -> Self {
        match self {
            StageError::Poison { reason, error, .. } => StageError::Poison {
                reason,
                error,
                study: Some(uid.to_string()),
            },
            t => t,
        }
    }
}

impl From<CodecError> for StageError {
    fn from(e: CodecError) -> Self {
        StageError::poison(e.reason(), e.to_string())
    }
}

/// A service's per-record logic.
pub trait Processor: Send + Sync + 'static {
    fn process(
        &self,
        msg: &Inbound,
    ) -> impl Future<Output = Result<Vec<Outbound>, StageError>> + Send;
}

#[derive(Debug, Clone)]
pub struct StageConfig {
    pub service: &'static str,
    pub group_id: String,
    /// Logical topics to consume.
    pub topics: Vec<&'static str>,
    pub max_in_flight: usize,
    pub drain_timeout: Duration,
    /// How soon the stage must see a new record: its fetch wait
    /// ([`crate::config::KafkaArgs::fetch_wait`]).
    pub urgency: Urgency,
}

#[derive(Debug, thiserror::Error)]
pub enum StageRunError {
    #[error("drain timeout {drain:?} must be shorter than the consumer session timeout {session:?}, or a slow drain triggers a rebalance")]
    DrainTooLong { drain: Duration, session: Duration },
    #[error("consumer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("group {group}: held no partitions while {pending} records waited, through every recovery (rejoin, new consumer) for {waited:?}; exiting so the supervisor restarts the service")]
    Unowned {
        group: String,
        pending: i64,
        waited: Duration,
    },
    #[error("a record task of {service} panicked outside its processor: {error}")]
    TaskPanicked {
        service: &'static str,
        error: String,
    },
}

struct StageContext {
    finalizer: Arc<Mutex<Finalizer>>,
    metrics: StageMetrics,
    probe: Arc<StageProbe>,
}

impl StageContext {
    fn held(&self, consumer: &BaseConsumer<Self>) {
        let held = consumer.assignment().map(|t| t.count()).unwrap_or(0) as i64;
        self.probe.set_assigned(held);
        self.metrics.assigned_partitions().set(held);
    }
}

impl ClientContext for StageContext {
    fn stats(&self, stats: Statistics) {
        let mut lag = 0;
        for (topic, t) in stats.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.consumer_lag >= 0 {
                    lag += p.consumer_lag;
                    self.metrics
                        .consumer_lag
                        .get_or_create(&vec![
                            ("topic", topic.clone()),
                            ("partition", partition.to_string()),
                        ])
                        .set(p.consumer_lag);
                }
            }
        }
        // While nothing is held, the ownership watchdog says whether there is work.
        if self.probe.assigned() > 0 {
            self.probe.set_work(lag > 0);
        }
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut f = self.finalizer.lock().expect("finalizer lock");
            for e in tpl.elements() {
                tracing::debug!(
                    topic = e.topic(),
                    partition = e.partition(),
                    "partition revoked"
                );
                f.revoke(e.topic(), e.partition());
                self.metrics.forget_lag(e.topic(), e.partition());
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(
                service = self.metrics.service(),
                partitions = tpl.count(),
                "partitions assigned"
            );
        }
        self.held(consumer);
    }
}

fn detach(m: &BorrowedMessage<'_>, kafka: &KafkaArgs) -> Inbound {
    let mut headers = BTreeMap::new();
    if let Some(h) = m.headers() {
        for hdr in h.iter() {
            if let Some(v) = hdr.value {
                headers.insert(hdr.key.to_string(), String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    Inbound {
        topic: m.topic().to_string(),
        logical: kafka.logical(m.topic()).to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Backoff for transient failures: exponential with jitter, capped at 30 s, unbounded tries.
pub fn transient_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Sleeps, or returns true early when `shutdown` fires.
pub async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// What a stage needs besides its processor; built once per service by [`crate::service::Host`].
#[derive(Clone)]
pub struct StageDeps {
    pub producer: Producer,
    pub codec: Arc<Codec>,
    /// The remote schema registry, when configured (unknown ids are fetched from it).
    pub registry: Option<RestRegistry>,
    pub metrics: StageMetrics,
    /// What `/healthz` and `/readyz` read; each stage registers itself.
    pub health: Health,
}

struct Shared<P> {
    processor: Arc<P>,
    producer: Producer,
    codec: Arc<Codec>,
    registry: Option<RestRegistry>,
    metrics: StageMetrics,
    service: &'static str,
    shutdown: CancellationToken,
    probe: Arc<StageProbe>,
}

/// A processor that panicked on a record: the record is poison (it would panic again on every
/// redelivery), so it is dead-lettered with the panic message rather than lost with its task,
/// which would leave its offset unfinished and stall the partition's commits for good.
fn panicked(service: &str, msg: &Inbound, panic: &(dyn Any + Send)) -> StageError {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string());
    let err = StageError::poison(
        format!("{service}.panic"),
        format!("processor panicked: {text}"),
    );
    match msg.key_str() {
        Some(uid) => err.for_study(&uid),
        None => err,
    }
}

/// Processes one record to the end. Returns false when it was abandoned by shutdown (not done:
/// its offset must not be stored).
async fn handle<P: Processor>(s: Arc<Shared<P>>, msg: Inbound) -> bool {
    let span = tracing::info_span!("record", service = s.service, topic = %msg.logical, partition = msg.partition, offset = msg.offset, trace_id = tracing::field::Empty);
    adopt_parent(&span, &msg.headers);
    let fut = async {
        let start = Instant::now();
        let mut backoff = transient_backoff();
        let mut attempt = 0u32;
        let outputs = loop {
            if let Some(p) = msg.payload.as_deref() {
                if let Err(e) = learn_schema(&s.codec, s.registry.as_ref(), p).await {
                    attempt += 1;
                    s.probe.progress();
                    s.metrics
                        .transient("schema_registry", &e.to_string(), attempt);
                    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                    if sleep_or_cancel(delay, &s.shutdown).await {
                        return false;
                    }
                    continue;
                }
            }
            let processed = AssertUnwindSafe(s.processor.process(&msg))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(panicked(s.service, &msg, panic.as_ref())));
            match processed {
                Ok(outs) => break outs,
                Err(StageError::Poison {
                    reason,
                    error,
                    study,
                }) => {
                    s.metrics.dead_lettered(
                        &reason,
                        &error,
                        &msg.logical,
                        msg.partition,
                        msg.offset,
                        study.as_deref(),
                    );
                    let dl = crate::dlq::dead_letter(s.service, &msg, &reason, &error, study);
                    match Outbound::record(&s.codec, &dl) {
                        Ok(o) => break vec![o],
                        Err(e) => {
                            tracing::error!(error = %e, "dead letter does not encode; dropping is not an option, retrying");
                            attempt += 1;
                        }
                    }
                }
                Err(StageError::Transient { kind, error }) => {
                    attempt += 1;
                    s.probe.progress();
                    s.metrics.transient(&kind, &error, attempt);
                }
            }
            let delay = backoff.next().unwrap_or(Duration::from_secs(30));
            if sleep_or_cancel(delay, &s.shutdown).await {
                return false;
            }
        };
        let mut headers = BTreeMap::new();
        if let Some(tp) = outbound_traceparent(&tracing::Span::current(), &msg.headers) {
            headers.insert(TRACEPARENT.to_string(), tp);
        }
        for out in outputs {
            let topic = s.producer.kafka().topic(&out.topic);
            let mut backoff = transient_backoff();
            let mut attempt = 0;
            loop {
                match s
                    .producer
                    .send_raw(&topic, out.key.as_bytes(), out.payload.as_deref(), &headers)
                    .await
                {
                    Ok(_) => {
                        s.metrics.produced(&out.topic);
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        s.probe.progress();
                        s.metrics.transient("produce", &e.to_string(), attempt);
                        let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                        if sleep_or_cancel(delay, &s.shutdown).await {
                            return false;
                        }
                    }
                }
            }
        }
        s.metrics.processed(start.elapsed().as_secs_f64());
        tracing::debug!(
            elapsed_ms = start.elapsed().as_millis() as u64,
            "record processed"
        );
        true
    };
    fut.instrument(span).await
}

type StageConsumer = StreamConsumer<StageContext>;

/// A finished record: store its offset when every earlier one of its partition is done too.
fn store(
    consumer: &StageConsumer,
    finalizer: &Mutex<Finalizer>,
    metrics: &StageMetrics,
    (topic, partition, offset, done): (String, i32, i64, bool),
) {
    metrics.in_flight().dec();
    if !done {
        return;
    }
    let next = finalizer
        .lock()
        .expect("finalizer lock")
        .complete(&topic, partition, offset);
    if let Some(next) = next {
        if let Err(e) = consumer.store_offset(&topic, partition, next - 1) {
            tracing::debug!(topic, partition, error = %e, "offset not stored (partition no longer assigned)");
        }
    }
}

/// A record task ended: its outcome, or the reason the stage must stop (a panic outside the
/// processor is a bug in the runtime; its offset would never complete).
fn joined(
    service: &'static str,
    r: Result<(String, i32, i64, bool), tokio::task::JoinError>,
) -> Result<(String, i32, i64, bool), StageRunError> {
    r.map_err(|e| StageRunError::TaskPanicked {
        service,
        error: e.to_string(),
    })
}

/// Runs a stage until `shutdown`. See the module documentation for the delivery guarantee, and
/// [`super::ownership`] for what it does when it holds no partitions while records wait.
pub async fn run_stage<P: Processor>(
    kafka: &KafkaArgs,
    cfg: StageConfig,
    processor: Arc<P>,
    deps: StageDeps,
    shutdown: CancellationToken,
) -> Result<(), StageRunError> {
    let StageDeps {
        producer,
        codec,
        registry,
        metrics,
        health,
    } = deps;
    if cfg.drain_timeout >= kafka.session_timeout() {
        return Err(StageRunError::DrainTooLong {
            drain: cfg.drain_timeout,
            session: kafka.session_timeout(),
        });
    }
    let stall = kafka.consumer_stall();
    let probe = health.register(&cfg.group_id, stall * 2);
    let finalizer = Arc::new(Mutex::new(Finalizer::default()));
    let cc = kafka.consumer_config_with(cfg.urgency, |cc| {
        cc.set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("auto.commit.interval.ms", "1000")
            .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
            .set(
                "queued.max.messages.kbytes",
                kafka.max_prefetch_kib.to_string(),
            )
            .set("statistics.interval.ms", "5000");
    });
    let physical: Vec<String> = cfg.topics.iter().map(|t| kafka.topic(t)).collect();
    let refs: Vec<&str> = physical.iter().map(String::as_str).collect();
    let new_consumer = || -> Result<Arc<StageConsumer>, StageRunError> {
        let c: StageConsumer = cc.create_with_context(StageContext {
            finalizer: finalizer.clone(),
            metrics: metrics.clone(),
            probe: probe.probe(),
        })?;
        c.subscribe(&refs)?;
        Ok(Arc::new(c))
    };
    let mut consumer = new_consumer()?;
    tracing::info!(service = cfg.service, group = %cfg.group_id, topics = ?physical, max_in_flight = cfg.max_in_flight, stall_ms = stall.as_millis() as u64, "stage started");

    let shared = Arc::new(Shared {
        processor,
        producer: producer.clone(),
        codec,
        registry,
        metrics: metrics.clone(),
        service: cfg.service,
        shutdown: shutdown.clone(),
        probe: probe.probe(),
    });
    let mut tasks: JoinSet<(String, i32, i64, bool)> = JoinSet::new();
    let mut watchdog = Watchdog::new(stall);
    let mut tick = tokio::time::interval(WATCHDOG_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unowned_probe: Option<tokio::task::JoinHandle<Result<Unowned, KafkaError>>> = None;
    let mut failure: Option<StageRunError> = None;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(r) = tasks.join_next(), if !tasks.is_empty() => {
                match joined(cfg.service, r) {
                    Ok(done) => {
                        probe.progress();
                        store(&consumer, &finalizer, &metrics, done);
                    }
                    Err(e) => { failure = Some(e); break; }
                }
            }
            r = async { unowned_probe.as_mut().expect("guarded").await }, if unowned_probe.is_some() => {
                unowned_probe = None;
                let unowned = match r {
                    Ok(Ok(u)) => u,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "ownership probe failed (broker unavailable?)");
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "ownership probe task ended");
                        continue;
                    }
                };
                if held(&consumer) > 0 {
                    continue; // assigned while the probe ran
                }
                metrics.unowned_records().set(unowned.pending);
                let since = watchdog.stalled_since();
                let action = watchdog.observe(Instant::now(), &unowned);
                probe.set_work(unowned.pending > 0 && watchdog.stalled_since().is_some());
                let Some(action) = action else { continue };
                let stalled_for = since.map(|t| t.elapsed()).unwrap_or_default();
                metrics.consumer_recovery(action.label(), &cfg.group_id, unowned.pending, stalled_for, watchdog.attempts());
                match action {
                    Recovery::Rejoin => {
                        consumer.unsubscribe();
                        consumer.subscribe(&refs)?;
                    }
                    Recovery::Recreate => {
                        consumer.unsubscribe();
                        let old = std::mem::replace(&mut consumer, new_consumer()?);
                        // Closing a consumer waits on the broker: off the runtime's threads.
                        tokio::task::spawn_blocking(move || drop(old));
                    }
                    Recovery::GiveUp => {
                        failure = Some(StageRunError::Unowned {
                            group: cfg.group_id.clone(),
                            pending: unowned.pending,
                            waited: stalled_for,
                        });
                        break;
                    }
                }
            }
            _ = tick.tick() => {
                let n = held(&consumer);
                probe.set_assigned(n);
                metrics.assigned_partitions().set(n);
                if n > 0 {
                    watchdog.assigned();
                    metrics.unowned_records().set(0);
                } else if unowned_probe.is_none() {
                    let c = consumer.clone();
                    let topics = physical.clone();
                    unowned_probe = Some(tokio::task::spawn_blocking(move || {
                        probe_unowned(c.as_ref(), &topics, PROBE_TIMEOUT)
                    }));
                }
            }
            msg = consumer.recv(), if tasks.len() < cfg.max_in_flight => {
                match msg {
                    Ok(m) => {
                        let inbound = detach(&m, kafka);
                        drop(m);
                        probe.progress();
                        metrics.consumed(&inbound.logical);
                        metrics.in_flight().inc();
                        finalizer.lock().expect("finalizer lock").begin(&inbound.topic, inbound.partition, inbound.offset);
                        let s = shared.clone();
                        tasks.spawn(async move {
                            let id = (inbound.topic.clone(), inbound.partition, inbound.offset);
                            let done = handle(s, inbound).await;
                            (id.0, id.1, id.2, done)
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                        if sleep_or_cancel(Duration::from_millis(200), &shutdown).await { break; }
                    }
                }
            }
        }
    }

    // Drain: finish in-flight records within the bound; abandoned ones stay uncommitted.
    let drained = tokio::time::timeout(cfg.drain_timeout, async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(done) = joined(cfg.service, r) {
                store(&consumer, &finalizer, &metrics, done);
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            service = cfg.service,
            abandoned = tasks.len(),
            "drain timeout: abandoning in-flight records uncommitted"
        );
        tasks.abort_all();
    }
    producer.flush(Duration::from_secs(5));
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => tracing::info!(service = cfg.service, "offsets committed; stage stopped"),
        Err(e) => tracing::debug!(error = %e, "final commit (nothing to commit or no assignment)"),
    }
    consumer.unsubscribe();
    metrics.assigned_partitions().set(0);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How often the stage looks at what it holds (and, holding nothing, probes the group).
const WATCHDOG_TICK: Duration = Duration::from_secs(1);
/// Bound on each broker round trip of the ownership probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Partitions the consumer holds now (a local lookup, no broker round trip).
fn held(consumer: &StageConsumer) -> i64 {
    consumer.assignment().map(|t| t.count()).unwrap_or(0) as i64
}
