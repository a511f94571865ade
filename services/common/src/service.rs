//! The one host every service runs on, so each service's `run()` tells the same short story:
//! [`Host::start`] prints the effective configuration, gets the codec (static or remote
//! registry), creates the producer, registers the stage metrics plus the service's own and
//! serves the HTTP endpoint; [`Host::spawn`] adds side tasks (followers, sweeps, ticks,
//! delivery workers); [`Host::serve`] runs the service's stage (or, for a service that is not a
//! Kafka stage, [`Host::serve_until`] its own work) and drains it in one order:
//!
//! 1. ready (`/readyz` then also waits for every stage to hold a partition once);
//! 2. shutdown fires → not ready at once, so probes see the drain while it runs;
//! 3. the stage stops fetching, finishes or abandons its in-flight records within the drain
//!    bound, flushes the producer and commits (the stage runtime's drain);
//! 4. the side tasks are awaited: those from [`Host::spawn`] were told to stop when the drain
//!    started (step 2), those from [`Host::spawn_until_drained`] are told now, because they
//!    finish what the stage started (results delivers what its stage queued); then the
//!    producer is flushed again for what they sent;
//! 5. the HTTP endpoint stops (last, so `/metrics` and `/readyz` answer through the drain) and
//!    is awaited, so a returned `run()` has released its port.
//!
//! A stage that fails drains the same way (from step 4) and its error is returned.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cxrflow_contracts::Codec;
use prometheus_client::registry::Registry;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::auth::{Authenticator, Routes};
use crate::config::{KafkaArgs, ServiceArgs, Urgency};
use crate::health::Health;
use crate::http::{self, Readiness};
use crate::kafka::stage::{run_stage, Processor, StageConfig, StageDeps};
use crate::kafka::Producer;
use crate::metrics::StageMetrics;
use crate::registry::codec_for;

/// How long the host's final flush waits for what the side tasks produced.
const SIDE_FLUSH: Duration = Duration::from_secs(5);

/// A started service's shared parts, and the owner of its readiness, HTTP endpoint, side tasks
/// and drain.
pub struct Host {
    pub service: &'static str,
    pub kafka: KafkaArgs,
    pub svc: ServiceArgs,
    pub deps: StageDeps,
    pub http_addr: SocketAddr,
    pub auth: Arc<Authenticator>,
    ready: Readiness,
    on_ready: Option<Box<dyn FnOnce() + Send>>,
    endpoint: Endpoint,
    side: JoinSet<()>,
    /// Cancelled when the drain starts (or the work ends first).
    drain_started: CancellationToken,
    /// Cancelled once the work (the stage) has drained.
    drained: CancellationToken,
}

/// The HTTP endpoint's task. Dropped (a start that fails after the endpoint is up, an aborted
/// `run()`), it stops serving: a port is never left served by a service that is gone.
struct Endpoint {
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// Stop it when the drain starts rather than after it ([`Host::http_is_intake`]).
    stop_at_drain: bool,
    _guard: DropGuard,
}

impl Endpoint {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

impl Host {
    /// Starts the shared parts of `service`. `register` adds the service's own metrics;
    /// `routes` are served beside `/metrics`, `/healthz` and `/readyz` until the service has
    /// drained ([`Host::serve`]) or the host is dropped.
    pub async fn start(
        service: &'static str,
        kafka: &KafkaArgs,
        svc: &ServiceArgs,
        register: impl FnOnce(&mut Registry),
        routes: Routes,
    ) -> anyhow::Result<Host> {
        // Before anything else: a service without an access rule must not come up at all.
        let tls = svc.tls.server_config()?;
        let mut auth_args = svc.auth.clone();
        // Served over HTTPS, the session cookie never travels in clear.
        auth_args.secure_cookie |= tls.is_some();
        let auth = Arc::new(Authenticator::from_args(&auth_args).await?);
        if auth.is_insecure() {
            tracing::warn!(
                service,
                "INSECURE: --insecure-no-auth: every route answers anyone"
            );
        } else {
            tracing::info!(service, auth = %auth.describe(), "access control");
        }
        tracing::info!(service, kafka = %kafka.describe(), http = %svc.http, group = %svc.group_id(service),
            max_in_flight = svc.max_in_flight, drain_timeout_ms = svc.drain_timeout_ms, "starting");
        let (codec, registry) = codec_for(kafka).await?;
        let producer = Producer::new(kafka)?;
        let mut reg = Registry::default();
        let metrics = StageMetrics::register(&mut reg, service);
        register(&mut reg);
        let ready = Readiness::default();
        let health = Health::default();
        let http_stop = CancellationToken::new();
        let (http_addr, http_task) = http::serve(
            svc.http,
            tls,
            svc.auth.metrics_http,
            Arc::new(reg),
            ready.clone(),
            health.clone(),
            auth.clone(),
            routes,
            http_stop.clone(),
        )
        .await?;
        Ok(Host {
            service,
            kafka: kafka.clone(),
            svc: svc.clone(),
            deps: StageDeps {
                producer,
                codec,
                registry,
                metrics,
                health,
            },
            http_addr,
            auth,
            ready,
            on_ready: None,
            endpoint: Endpoint {
                _guard: http_stop.clone().drop_guard(),
                stop: http_stop,
                task: http_task,
                stop_at_drain: false,
            },
            side: JoinSet::new(),
            drain_started: CancellationToken::new(),
            drained: CancellationToken::new(),
        })
    }

    pub fn codec(&self) -> &Arc<Codec> {
        &self.deps.codec
    }

    /// The stage configuration for consuming `topics` on a study's way to the worklist.
    pub fn stage(&self, topics: Vec<&'static str>) -> StageConfig {
        self.stage_with(topics, Urgency::StudyPath)
    }

    /// The stage configuration for a consumer off the study path (feedback, drift): it polls
    /// the broker less often.
    pub fn background_stage(&self, topics: Vec<&'static str>) -> StageConfig {
        self.stage_with(topics, Urgency::Background)
    }

    fn stage_with(&self, topics: Vec<&'static str>, urgency: Urgency) -> StageConfig {
        StageConfig {
            service: self.service,
            group_id: self.svc.group_id(self.service),
            topics,
            max_in_flight: self.svc.max_in_flight,
            drain_timeout: self.svc.drain_timeout(),
            urgency,
        }
    }

    /// Runs `task` beside the service (a follower, a periodic sweep or tick): `task` is handed
    /// a token cancelled when the drain starts, and the drain awaits it before the HTTP
    /// endpoint stops.
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.side.spawn(task(self.drain_started.clone()));
    }

    /// [`Host::spawn`] for a task that finishes what the stage started (results' delivery
    /// workers): its token is cancelled only once the stage has drained.
    pub fn spawn_until_drained<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.side.spawn(task(self.drained.clone()));
    }

    /// Called once, right after the service reports ready (triage hands its running engine to
    /// the embedded stack and tests then).
    pub fn on_ready(&mut self, f: impl FnOnce() + Send + 'static) {
        self.on_ready = Some(Box::new(f));
    }

    /// For a service whose HTTP endpoint takes new work itself (the gateway's STOW-RS): the
    /// endpoint stops taking requests when the drain starts, as the service's other intake
    /// does, instead of after the drain; requests in progress still finish.
    pub fn http_is_intake(&mut self) {
        self.endpoint.stop_at_drain = true;
    }

    /// Reports ready, runs `processor` as the stage `stage` until `shutdown`, then drains (see
    /// the module documentation). Returns the stage's error, after the drain, if it failed.
    pub async fn serve<P: Processor>(
        self,
        stage: StageConfig,
        processor: Arc<P>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let (kafka, deps, stop) = (self.kafka.clone(), self.deps.clone(), shutdown.clone());
        self.serve_until(shutdown, async move {
            run_stage(&kafka, stage, processor, deps, stop).await?;
            Ok(())
        })
        .await
    }

    /// [`Host::serve`] for a service whose work is not one Kafka stage (the gateway's SCP):
    /// reports ready, awaits `work` (which must itself stop and drain on `shutdown`), then
    /// drains the side tasks and the HTTP endpoint the same way.
    pub async fn serve_until(
        mut self,
        shutdown: &CancellationToken,
        work: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        self.ready.set_ready(true);
        if let Some(f) = self.on_ready.take() {
            f();
        }
        tokio::pin!(work);
        let result = tokio::select! {
            r = &mut work => r,
            _ = shutdown.cancelled() => {
                self.ready.set_ready(false);
                tracing::info!(service = self.service, "draining: not ready");
                self.drain_started.cancel();
                if self.endpoint.stop_at_drain {
                    self.endpoint.stop.cancel();
                }
                work.await
            }
        };
        self.ready.set_ready(false);
        self.drain().await;
        result
    }

    async fn drain(mut self) {
        self.drain_started.cancel();
        self.drained.cancel();
        while let Some(r) = self.side.join_next().await {
            if let Err(e) = r {
                tracing::error!(service = self.service, error = %e, "a side task ended abnormally");
            }
        }
        // The stage flushed what it produced; this is for what the side tasks sent after that.
        self.deps.producer.flush(SIDE_FLUSH);
        self.endpoint.stop().await;
    }
}
