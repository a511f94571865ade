//! One delivery task per destination, each with its own durable queue ([`crate::queue`]), so a
//! destination that is down holds back only its own deliveries: the pipeline and the other
//! destinations go on. Deliveries go out oldest first; an unavailable destination is retried
//! with capped, jittered exponential backoff for as long as it takes; a refusal is
//! dead-lettered on `cxr.dlq.v1` (reason `results.<destination>_refused`, the destination's
//! answer as the error, the triage record's bytes and position as the source) and leaves the
//! queue.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use cxrflow_common::kafka::stage::sleep_or_cancel;
use cxrflow_common::kafka::Producer;
use cxrflow_common::time::now_millis;
use cxrflow_contracts::{Codec, DeadLetter};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::destination::{Destination, Outcome};
use crate::metrics::ResultsMetrics;
use crate::queue::{Delivery, Queue};

/// Retry timing for an unavailable destination.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub min: Duration,
    pub max: Duration,
}

impl Retry {
    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

pub struct Worker<D> {
    pub destination: D,
    pub queue: Queue,
    pub wake: Arc<Notify>,
    pub metrics: ResultsMetrics,
    pub producer: Producer,
    pub codec: Arc<Codec>,
    pub retry: Retry,
    /// How long delivered markers are kept.
    pub done_retention: Duration,
}

impl Worker<()> {
    /// The worker for `destination`.
    pub fn to<D: Destination>(self, destination: D) -> Worker<D> {
        Worker {
            destination,
            queue: self.queue,
            wake: self.wake,
            metrics: self.metrics,
            producer: self.producer,
            codec: self.codec,
            retry: self.retry,
            done_retention: self.done_retention,
        }
    }
}

/// How often the queue gauges are refreshed and old markers pruned while idle.
const IDLE_TICK: Duration = Duration::from_secs(5);

impl<D: Destination> Worker<D> {
    pub async fn run(self, shutdown: CancellationToken) {
        let name = self.destination.name();
        tracing::info!(destination = name, to = %self.destination.describe(), "results destination");
        let mut backoff = self.retry.backoff();
        let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
        while !shutdown.is_cancelled() {
            if last_prune.elapsed() > Duration::from_secs(600) {
                last_prune = std::time::Instant::now();
                match self.queue.prune_done(self.done_retention) {
                    Ok(n) if n > 0 => {
                        tracing::debug!(destination = name, n, "pruned delivered markers")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(destination = name, error = %e, "pruning delivered markers")
                    }
                }
            }
            let batch = match self.queue.pending() {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(destination = name, error = %e, "reading the results queue");
                    let delay = backoff.next().unwrap_or(self.retry.max);
                    if sleep_or_cancel(delay, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            self.gauges(&batch, 0);
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_TICK) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            for (i, d) in batch.iter().enumerate() {
                if shutdown.is_cancelled() {
                    return;
                }
                match self.destination.deliver(&d.body).await {
                    Outcome::Delivered => {
                        backoff = self.retry.backoff();
                        if let Err(e) = self.queue.delivered(&d.key) {
                            tracing::error!(destination = name, key = d.key, error = %e, "delivered, but the queue could not record it (it may be delivered again)");
                        }
                        let latency = (now_millis() - d.queued_at).max(0) as f64 / 1000.0;
                        self.metrics.delivered(name, &d.key, latency);
                    }
                    Outcome::Refused(answer) => {
                        backoff = self.retry.backoff();
                        if !self.dead_letter(d, &answer, &shutdown).await {
                            return;
                        }
                        if let Err(e) = self.queue.refused(&d.key) {
                            tracing::error!(destination = name, key = d.key, error = %e, "dead-lettered, but still queued");
                        }
                        self.metrics.refused(name, &d.key, &answer);
                    }
                    Outcome::Unavailable(why) => {
                        let delay = backoff.next().unwrap_or(self.retry.max);
                        self.metrics.retried(name, &d.key, &why, delay.as_millis());
                        self.gauges(&batch, i);
                        if sleep_or_cancel(delay, &shutdown).await {
                            return;
                        }
                        // Re-read the queue: the next round starts with this delivery again.
                        break;
                    }
                }
                self.gauges(&batch, i + 1);
            }
        }
    }

    /// Gauges from a batch of which the first `done` are no longer pending.
    fn gauges(&self, batch: &[Delivery], done: usize) {
        let rest = batch.get(done..).unwrap_or_default();
        let oldest = rest.iter().map(|d| d.queued_at).min();
        let age = oldest.map_or(0.0, |t| (now_millis() - t).max(0) as f64 / 1000.0);
        self.metrics.queue(self.destination.name(), rest.len(), age);
    }

    /// Publishes the refusal's dead letter, retrying the broker until it acknowledges; false
    /// when shutdown came first (the delivery stays queued and is tried again at the next start).
    async fn dead_letter(&self, d: &Delivery, answer: &str, shutdown: &CancellationToken) -> bool {
        let name = self.destination.name();
        let refusal = self.destination.refused(answer.to_string());
        let replay_count = d
            .source
            .headers
            .get("cxrflow-replay-count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let dl = DeadLetter {
            stage: crate::SERVICE.to_string(),
            reason: refusal.reason().to_string(),
            error: refusal.to_string(),
            source_topic: d.source.topic.clone(),
            source_partition: d.source.partition,
            source_offset: d.source.offset,
            key: d.source.key.clone(),
            payload: d.source.payload.clone(),
            headers: d.source.headers.clone(),
            study_instance_uid: Some(d.study_instance_uid.clone()),
            failed_at: now_millis(),
            replay_count,
        };
        let mut backoff = cxrflow_common::kafka::stage::transient_backoff();
        loop {
            match self
                .producer
                .send(&self.codec, &dl, &Default::default())
                .await
            {
                Ok(_) => return true,
                Err(e) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(destination = name, key = d.key, error = %e, "dead letter not acknowledged; retrying");
                    if sleep_or_cancel(delay, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}
