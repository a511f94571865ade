//! What every service does at start, in one place: print the effective configuration, get the
//! codec (static or remote registry), create the producer, register the stage metrics plus the
//! service's own, and serve the HTTP endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use cxrflow_contracts::Codec;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Routes};
use crate::config::{KafkaArgs, ServiceArgs, Urgency};
use crate::health::Health;
use crate::http::{self, Readiness};
use crate::kafka::stage::{StageConfig, StageDeps};
use crate::kafka::Producer;
use crate::metrics::StageMetrics;
use crate::registry::codec_for;

/// A started service's shared parts.
pub struct Host {
    pub service: &'static str,
    pub kafka: KafkaArgs,
    pub svc: ServiceArgs,
    pub deps: StageDeps,
    pub ready: Readiness,
    pub http_addr: SocketAddr,
    pub auth: Arc<Authenticator>,
    pub http_task: tokio::task::JoinHandle<()>,
}

impl Host {
    /// Starts the shared parts of `service`. `register` adds the service's own metrics;
    /// `routes` are served beside `/metrics`, `/healthz` and `/readyz`.
    pub async fn start(
        service: &'static str,
        kafka: &KafkaArgs,
        svc: &ServiceArgs,
        register: impl FnOnce(&mut Registry),
        routes: Routes,
        shutdown: &CancellationToken,
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
        let (http_addr, http_task) = http::serve(
            svc.http,
            tls,
            svc.auth.metrics_http,
            Arc::new(reg),
            ready.clone(),
            health.clone(),
            auth.clone(),
            routes,
            shutdown.clone(),
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
            ready,
            http_addr,
            auth,
            http_task,
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
}
