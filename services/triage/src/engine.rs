//! The running worklist: the pure [`Worklist`] behind a mutex, the publisher of decisions, the
//! stage processor and the periodic escalation/retention tick.
//!
//! Delivery guarantee: **at-least-once**, through the stage runtime. A decision is published
//! (acks=all) *before* the processor returns, so the input offset is stored only after its
//! decision is durable; the worklist in memory changes only after the acknowledgement. The
//! catch: a crash between the acknowledgement and the offset commit re-delivers the prediction;
//! the worklist then finds the same content and publishes nothing (idempotent by study key).
//!
//! Ordering per study: every change of a study (prediction, report, escalation, tombstone) runs
//! under that study's stripe lock from proposal to commit, so versions on `cxr.triage.v1` are
//! strictly increasing per study even with `max_in_flight` > 1 and the tick running beside.
//!
//! Scaling: one replica owns the whole worklist. Several replicas would partition it by study
//! key — the same partitioning as the input topics — and each rebuild only the
//! `cxr.triage.v1` partitions matching its assigned input partitions (on every assignment).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cxrflow_common::kafka::producer::ProduceError;
use cxrflow_common::kafka::Producer;
use cxrflow_common::telemetry::{outbound_traceparent, TRACEPARENT};
use cxrflow_common::{Inbound, Outbound, Processor, StageError};
use cxrflow_contracts::{
    topics, AvroRecord, Codec, DeadLetter, EpochMillis, IngestedImage, Prediction,
    PreprocessedImage, RadiologistReport, ScanEvent, StudyContext, TriageDecision,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::TriageError;
use crate::intake::{DeadLetterOutcome, Unrankable};
use crate::metrics::TriageMetrics;
use crate::worklist::{OrderingMode, ReportOutcome, Worklist};

const STRIPES: usize = 64;

/// A change of the worklist, for the SSE stream.
#[derive(Debug, Clone)]
pub enum WorklistEvent {
    Changed(Box<TriageDecision>),
    Removed(String),
}

/// Timings of the engine (milliseconds).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub read_retention_ms: i64,
    pub pending_feedback_ms: i64,
    /// How long a tombstoned study stays closed to late re-deliveries.
    pub closed_memory_ms: i64,
    pub ordering: OrderingMode,
    /// How long a study may stay AI_PENDING before it is NOT_ASSESSABLE ("AI result overdue").
    pub overdue_ms: i64,
    /// How long a dead letter without context waits for its study's scan event before the
    /// study goes on the worklist with what the dead letter knows.
    pub dead_letter_wait_ms: i64,
}

pub struct Engine {
    worklist: Mutex<Worklist>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    producer: Producer,
    codec: Arc<Codec>,
    clock: Arc<dyn Clock>,
    metrics: TriageMetrics,
    events: broadcast::Sender<WorklistEvent>,
    rebuilt: AtomicBool,
    /// Per study, the highest version whose send failed: the broker may have stored it (its
    /// acknowledgement lost with a broker restart), so the next decision of that study takes
    /// a higher version and never publishes a second, different record under the same one.
    in_doubt: Mutex<HashMap<String, i64>>,
    pub settings: EngineSettings,
}

impl Engine {
    pub fn new(
        worklist: Worklist,
        producer: Producer,
        codec: Arc<Codec>,
        clock: Arc<dyn Clock>,
        metrics: TriageMetrics,
        settings: EngineSettings,
    ) -> Self {
        Engine {
            worklist: Mutex::new(worklist),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            producer,
            codec,
            clock,
            metrics,
            events: broadcast::channel(1024).0,
            rebuilt: AtomicBool::new(false),
            in_doubt: Mutex::new(HashMap::new()),
            settings,
        }
    }

    pub fn now(&self) -> EpochMillis {
        self.clock.now_millis()
    }

    pub fn worklist(&self) -> MutexGuard<'_, Worklist> {
        self.worklist.lock().expect("worklist lock poisoned")
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WorklistEvent> {
        self.events.subscribe()
    }

    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn metrics(&self) -> &TriageMetrics {
        &self.metrics
    }

    pub fn is_rebuilt(&self) -> bool {
        self.rebuilt.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_rebuilt(&self) {
        self.refresh_gauges();
        self.rebuilt.store(true, Ordering::SeqCst);
    }

    fn refresh_gauges(&self) {
        let counts = self.worklist().open_by_tier();
        self.metrics.set_open(&counts);
    }

    fn stripe(&self, uid: &str) -> &tokio::sync::Mutex<()> {
        let mut h = DefaultHasher::new();
        uid.hash(&mut h);
        &self.stripes[(h.finish() as usize) % STRIPES]
    }

    /// Proposes, publishes and commits one change of study `uid`, under its stripe lock.
    /// `propose` may also change the worklist (e.g. remember an early report).
    async fn change(
        &self,
        uid: &str,
        headers: &BTreeMap<String, String>,
        propose: impl FnOnce(
            &mut Worklist,
            EpochMillis,
        ) -> Option<(TriageDecision, Option<EpochMillis>)>,
    ) -> Result<Option<TriageDecision>, ProduceError> {
        let _study = self.stripe(uid).lock().await;
        let now = self.now();
        let Some((mut d, basis)) = propose(&mut self.worklist(), now) else {
            return Ok(None);
        };
        let doubt = self
            .in_doubt
            .lock()
            .expect("in-doubt lock")
            .get(uid)
            .copied();
        if let Some(v) = doubt.filter(|v| d.version <= *v) {
            d.version = v + 1;
        }
        if let Err(e) = self.producer.send(&self.codec, &d, headers).await {
            self.in_doubt
                .lock()
                .expect("in-doubt lock")
                .insert(uid.to_string(), d.version);
            return Err(e);
        }
        self.in_doubt.lock().expect("in-doubt lock").remove(uid);
        let (previous, waiting_since) = {
            let mut wl = self.worklist();
            let previous = wl.get(uid).map(|e| e.decision.clone());
            wl.apply(d.clone(), basis);
            (previous, wl.policy().wait_start(&d.study))
        };
        self.metrics.published(&d, previous.as_ref(), waiting_since);
        self.refresh_gauges();
        let _ = self
            .events
            .send(WorklistEvent::Changed(Box::new(d.clone())));
        Ok(Some(d))
    }

    pub async fn on_prediction(
        &self,
        p: &Prediction,
        headers: &BTreeMap<String, String>,
    ) -> Result<(), ProduceError> {
        let metrics = self.metrics.clone();
        self.change(&p.study.study_instance_uid, headers, |wl, now| {
            match wl.on_prediction(p, now) {
                Ok(d) => Some((d, Some(p.predicted_at))),
                Err(why) => {
                    metrics.ignored(why.label());
                    None
                }
            }
        })
        .await
        .map(drop)
    }

    /// A scan event: the study goes on the worklist as AI_PENDING (once).
    pub async fn on_scan(
        &self,
        scan: &ScanEvent,
        headers: &BTreeMap<String, String>,
    ) -> Result<(), ProduceError> {
        let metrics = self.metrics.clone();
        self.change(
            &scan.study.study_instance_uid,
            headers,
            |wl, now| match wl.on_scan(scan, now) {
                Ok(d) => Some((d, None)),
                Err(why) => {
                    metrics.ignored(why.label());
                    None
                }
            },
        )
        .await
        .map(drop)
    }

    /// A dead letter from the study path that names a study: the study becomes (or appears
    /// as) NOT_ASSESSABLE with the reason, unless the AI already ranked it.
    pub async fn on_dead_letter(
        &self,
        u: Unrankable,
        headers: &BTreeMap<String, String>,
    ) -> Result<(), ProduceError> {
        let uid = u.study_uid.clone();
        let metrics = self.metrics.clone();
        self.change(&uid, headers, |wl, now| match wl.on_dead_letter(&u, now) {
            DeadLetterOutcome::Decide(d) => {
                metrics.dead_letter_read("not_assessable");
                Some((*d, None))
            }
            DeadLetterOutcome::Wait => {
                metrics.dead_letter_read("waiting_for_scan");
                wl.remember_dead_letter(u, now);
                None
            }
            DeadLetterOutcome::Ignored(why) => {
                metrics.dead_letter_read(why);
                None
            }
        })
        .await
        .map(drop)
    }

    pub async fn on_report(
        &self,
        r: RadiologistReport,
        headers: &BTreeMap<String, String>,
    ) -> Result<(), ProduceError> {
        let uid = r.study_instance_uid.clone();
        self.change(&uid, headers, |wl, now| match wl.on_report(&r, now) {
            ReportOutcome::Close(d) => Some((*d, None)),
            ReportOutcome::AlreadyRead => None,
            ReportOutcome::UnknownStudy => {
                tracing::info!(
                    "report for a study not on the worklist yet: kept for the grace period"
                );
                wl.remember_report(r, now);
                None
            }
        })
        .await
        .map(drop)
    }

    /// One pass of the periodic work: escalations, tombstones after retention, forgetting
    /// unmatched reports. Failures are logged and retried on the next tick.
    pub async fn tick(&self) {
        let now = self.now();
        let (escalations, tombstones, overdue, orphans) = {
            let mut wl = self.worklist();
            let unmatched = wl.expire(
                now,
                self.settings.pending_feedback_ms,
                self.settings.closed_memory_ms,
            );
            self.metrics.unmatched_feedback(unmatched);
            (
                wl.escalations_due(now),
                wl.tombstones_due(now, self.settings.read_retention_ms),
                wl.overdue(now, self.settings.overdue_ms),
                wl.orphaned_dead_letters(now, self.settings.dead_letter_wait_ms),
            )
        };
        let none = BTreeMap::new();
        // The watchdog first: a study whose AI result never came is told apart from one that
        // is merely waiting, before anything else changes its place.
        let bound = self.settings.overdue_ms;
        for uid in overdue {
            let r = self
                .change(&uid, &none, |wl, now| {
                    wl.overdue_decision(&uid, now, bound).map(|d| (d, None))
                })
                .await;
            match r {
                Ok(Some(_)) => self.metrics.overdue(&uid, bound),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "overdue decision not published; retrying next tick")
                }
            }
        }
        let wait = self.settings.dead_letter_wait_ms;
        for d in orphans {
            let uid = d.study.study_instance_uid.clone();
            let r = self
                .change(&uid, &none, |wl, now| {
                    wl.orphan_decision(&uid, now, wait).map(|d| (d, None))
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "dead-letter study not published; retrying next tick");
            }
        }
        for d in escalations {
            let uid = d.study.study_instance_uid.clone();
            let r = self
                .change(&uid, &none, |wl, now| {
                    wl.escalation_due(&uid, now).map(|d| (d, None))
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "escalation not published; retrying next tick");
            }
        }
        for uid in tombstones {
            if let Err(e) = self.tombstone(&uid).await {
                tracing::warn!(error = %e, "tombstone not published; retrying next tick");
            }
        }
    }

    async fn tombstone(&self, uid: &str) -> Result<(), ProduceError> {
        let _study = self.stripe(uid).lock().await;
        let now = self.now();
        let still_due = self
            .worklist()
            .tombstones_due(now, self.settings.read_retention_ms)
            .iter()
            .any(|u| u == uid);
        if !still_due {
            return Ok(());
        }
        let topic = self.producer.kafka().topic(TriageDecision::TOPIC);
        self.producer
            .send_raw(&topic, uid.as_bytes(), None, &BTreeMap::new())
            .await?;
        self.worklist().remove(uid, now);
        self.metrics.tombstoned();
        self.refresh_gauges();
        let _ = self.events.send(WorklistEvent::Removed(uid.to_string()));
        Ok(())
    }

    /// Runs [`Engine::tick`] every `every` until `shutdown`.
    pub async fn run_ticks(
        self: Arc<Self>,
        every: std::time::Duration,
        shutdown: CancellationToken,
    ) {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => self.tick().await,
            }
        }
    }
}

/// The study context of a study-path record, if its bytes decode.
fn study_context(codec: &Codec, topic: &str, bytes: &[u8]) -> Option<StudyContext> {
    match topic {
        topics::SCAN => codec.decode::<ScanEvent>(bytes).ok().map(|r| r.study),
        topics::INGESTED => codec.decode::<IngestedImage>(bytes).ok().map(|r| r.study),
        topics::PREPROCESSED => codec
            .decode::<PreprocessedImage>(bytes)
            .ok()
            .map(|r| r.study),
        topics::PREDICTIONS => codec.decode::<Prediction>(bytes).ok().map(|r| r.study),
        _ => None,
    }
}

/// The stage processor: scan events, dead letters, predictions and reports in, decisions
/// published by the engine.
pub struct TriageProcessor {
    pub engine: Arc<Engine>,
}

fn transient(e: ProduceError) -> StageError {
    TriageError::from(e).into()
}

impl Processor for TriageProcessor {
    async fn process(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        let mut headers = BTreeMap::new();
        if let Some(tp) = outbound_traceparent(&tracing::Span::current(), &msg.headers) {
            headers.insert(TRACEPARENT.to_string(), tp);
        }
        let codec = self.engine.codec();
        match msg.logical.as_str() {
            topics::PREDICTIONS => {
                let p: Prediction = msg.decode(codec)?;
                let uid = p.study.study_instance_uid.clone();
                self.engine
                    .on_prediction(&p, &headers)
                    .await
                    .map_err(|e| transient(e).for_study(&uid))?;
            }
            topics::FEEDBACK => {
                let r: RadiologistReport = msg.decode(codec)?;
                self.engine
                    .on_report(r, &headers)
                    .await
                    .map_err(transient)?;
            }
            topics::SCAN => {
                let scan: ScanEvent = msg.decode(codec)?;
                let uid = scan.study.study_instance_uid.clone();
                self.engine
                    .on_scan(&scan, &headers)
                    .await
                    .map_err(|e| transient(e).for_study(&uid))?;
            }
            topics::DLQ => {
                // A dead letter we cannot read is counted, never dead-lettered again (that
                // would feed this very topic).
                let Some(dl) = msg
                    .payload
                    .as_deref()
                    .and_then(|p| codec.decode::<DeadLetter>(p).ok())
                else {
                    self.engine.metrics().dead_letter_read("unreadable");
                    return Ok(vec![]);
                };
                let kafka = self.engine.producer().kafka();
                let source = kafka.logical(&dl.source_topic).to_string();
                match Unrankable::from_dead_letter(&dl, &source, |topic, bytes| {
                    study_context(codec, topic, bytes)
                }) {
                    Some(u) => self
                        .engine
                        .on_dead_letter(u, &headers)
                        .await
                        .map_err(transient)?,
                    None => self.engine.metrics().dead_letter_read("not_a_study"),
                }
            }
            other => return Err(TriageError::UnexpectedTopic(other.to_string()).into()),
        }
        // Decisions were published (and acknowledged) by the engine, under the study's lock.
        Ok(vec![])
    }
}
