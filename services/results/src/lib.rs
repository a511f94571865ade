//! cxrflow results: closes the loop to where radiologists look. Consumes `cxr.triage.v1` and
//! delivers each decision version — once — to the destinations a hospital configures: the PACS
//! as a DICOM Comprehensive SR stored with C-STORE or STOW-RS ([`sr`], [`destination::dicom`],
//! [`destination::stow`]) and the EHR
//! as a FHIR R4 DiagnosticReport with one Observation per finding ([`fhir`],
//! [`destination::fhir`]). What is delivered, and what not, is [`report`]'s pure policy.
//!
//! Why only `cxr.triage.v1`: the decision record carries everything an output states (the
//! tier, the findings over their thresholds with probabilities, the model name and version,
//! the not-assessable reason, the image's UIDs); joining predictions would add state and a
//! second ordering problem for nothing. Its catch: triage lists its top three findings by
//! weighted contribution, so a fourth finding over its threshold appears only in the reasons
//! text (every critical and urgent one is named there).
//!
//! Delivery guarantee: **at-least-once to each destination, effectively once per decision
//! version**. The processor renders each output and writes it durably (fsync) to the
//! destination's queue ([`queue`]) before the stage stores the record's offset — the queue, not
//! Kafka, then owns the delivery; one task per destination ([`deliver`]) works its queue. The
//! catch: a crash between the queue write and the offset commit re-delivers the record, and a
//! crash between a destination's acknowledgement and the delivered marker delivers it again;
//! both are absorbed by the destinations' idempotency (the SR's SOP Instance UID and the FHIR
//! identifiers are derived from study UID and decision version) and by the delivered markers.

pub mod codes;
pub mod config;
pub mod deliver;
pub mod destination;
pub mod error;
pub mod fhir;
pub mod metrics;
pub mod queue;
pub mod report;
pub mod sr;
pub mod uid;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cxrflow_common::auth::Routes;
use cxrflow_common::time::now_millis;
use cxrflow_common::{Host, Inbound, Outbound, Processor, StageError};
use cxrflow_contracts::{topics, Codec, TriageDecision};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::deliver::Worker;
use crate::destination::dicom::{DicomAddress, DicomStore};
use crate::destination::fhir::FhirServer;
use crate::destination::stow::StowServer;
use crate::error::ResultsError;
use crate::metrics::ResultsMetrics;
use crate::queue::{Delivery, Enqueued, Queue, Source};

pub use config::{Config, DEFAULT_IDENTIFIER_SYSTEM, DEFAULT_STATE_DIR};

/// The service name: consumer group `cxrflow-results`, metrics `cxrflow_results_…`.
pub const SERVICE: &str = "results";

/// How a destination's output is rendered.
#[derive(Clone)]
enum Render {
    Sr,
    Fhir(fhir::Identifiers),
}

impl Render {
    fn body(&self, report: &report::ResultReport) -> Result<Vec<u8>, ResultsError> {
        match self {
            Render::Sr => sr::build(report)
                .to_file_bytes()
                .map_err(ResultsError::RenderSr),
            Render::Fhir(ids) => {
                serde_json::to_vec(&fhir::bundle(report, ids)).map_err(ResultsError::RenderFhir)
            }
        }
    }
}

#[derive(Clone)]
struct Lane {
    name: &'static str,
    render: Render,
    queue: Queue,
    wake: Arc<Notify>,
}

/// Reads decisions and queues their outputs, one per destination.
struct ResultsProcessor {
    codec: Arc<Codec>,
    lanes: Vec<Lane>,
    metrics: ResultsMetrics,
    max_age_ms: i64,
}

impl Processor for ResultsProcessor {
    async fn process(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        // A tombstone: triage forgot a read study; nothing to say.
        if msg.payload.is_none() {
            return Ok(vec![]);
        }
        let d: TriageDecision = msg.decode(&self.codec)?;
        let uid = d.study.study_instance_uid.clone();
        let report = match report::plan(&d, now_millis(), self.max_age_ms) {
            Ok(r) => r,
            Err(skip) => {
                self.metrics.decision(&format!("skipped_{}", skip.label()));
                return Ok(vec![]);
            }
        };
        if self.lanes.is_empty() {
            self.metrics.decision("no_destination");
            return Ok(vec![]);
        }
        let source = Source {
            topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            key: msg.key.clone(),
            payload: msg.payload.clone(),
            headers: msg.headers.clone(),
        };
        let mut any_queued = false;
        for lane in &self.lanes {
            let delivery = Delivery {
                key: report.key(),
                study_instance_uid: uid.clone(),
                body: lane
                    .render
                    .body(&report)
                    .map_err(|e| StageError::from(e).for_study(&uid))?,
                queued_at: now_millis(),
                source: source.clone(),
            };
            let queue = lane.queue.clone();
            let enqueued = tokio::task::spawn_blocking(move || queue.enqueue(&delivery))
                .await
                .map_err(ResultsError::QueueTask)?
                .map_err(ResultsError::Queue)?;
            match enqueued {
                Enqueued::Queued => {
                    any_queued = true;
                    lane.wake.notify_one();
                    tracing::info!(
                        study = uid,
                        version = d.version,
                        destination = lane.name,
                        tier = report.tier_words(),
                        "result queued"
                    );
                }
                Enqueued::AlreadyPending | Enqueued::AlreadyDelivered => {
                    tracing::debug!(study = uid, version = d.version, destination = lane.name, outcome = ?enqueued, "result already handled");
                }
            }
        }
        self.metrics
            .decision(if any_queued { "queued" } else { "duplicate" });
        Ok(vec![])
    }
}

/// The service's HTTP routes: none of its own (probes and metrics are served by the host).
pub fn routes() -> Routes {
    Routes::new()
}

/// Runs until `shutdown` is cancelled; returns after draining.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(
        dicom = cfg.dicom_destination.as_ref().map(ToString::to_string).unwrap_or_else(|| "off".into()),
        stow = cfg.stow_url.as_deref().unwrap_or("off"),
        fhir = cfg.fhir_url.as_deref().unwrap_or("off"),
        fhir_token = cfg.fhir_token_file.is_some(),
        state_dir = %cfg.state_dir.display(),
        max_age_s = cfg.max_age_s,
        "results configuration"
    );
    // Queues and destinations first: a state directory that cannot be opened stops the start
    // before anything is served.
    let timeout = Duration::from_secs(cfg.destination_timeout_s.max(1));
    let open = |name: &'static str, render: Render| -> anyhow::Result<Lane> {
        Ok(Lane {
            name,
            render,
            queue: Queue::open(&cfg.state_dir, name)
                .with_context(|| format!("results queue for {name}"))?,
            wake: Arc::new(Notify::new()),
        })
    };
    let dicom = match cfg.dicom_destination.clone() {
        Some(address) => Some((
            open("dicom", Render::Sr)?,
            DicomStore {
                tls: dicom_tls(&cfg, &address)?,
                address,
                calling_ae: cfg.calling_ae.clone(),
                timeout,
            },
        )),
        None => None,
    };
    let stow = match cfg.stow_url.clone() {
        Some(url) => Some((
            open("stow", Render::Sr)?,
            StowServer::new(url, cfg.stow_token_file.clone(), timeout)?,
        )),
        None => None,
    };
    let fhir = match cfg.fhir_url.clone() {
        Some(url) => {
            let ids = fhir::Identifiers {
                system: cfg.fhir_identifier_system.clone(),
            };
            Some((
                open("fhir", Render::Fhir(ids))?,
                FhirServer::new(url, cfg.fhir_token_file.clone(), timeout)?,
            ))
        }
        None => None,
    };
    let metrics = ResultsMetrics::default();
    let mut host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| metrics.register(reg),
        routes(),
    )
    .await?;
    // One delivery worker per destination. It stops only once the stage has drained
    // (everything the stage consumed is queued by then); deliveries in flight are cut short,
    // stay queued and go out at the next start.
    let (producer, codec) = (host.deps.producer.clone(), host.codec().clone());
    let worker = |lane: &Lane| Worker {
        destination: (),
        queue: lane.queue.clone(),
        wake: lane.wake.clone(),
        metrics: metrics.clone(),
        producer: producer.clone(),
        codec: codec.clone(),
        retry: cfg.retry(),
        done_retention: Duration::from_secs(cfg.done_retention_h.saturating_mul(3600)),
    };
    let mut lanes = Vec::new();
    if let Some((lane, destination)) = dicom {
        let w = worker(&lane).to(destination);
        host.spawn_until_drained(|stop| w.run(stop));
        lanes.push(lane);
    }
    if let Some((lane, destination)) = stow {
        let w = worker(&lane).to(destination);
        host.spawn_until_drained(|stop| w.run(stop));
        lanes.push(lane);
    }
    if let Some((lane, destination)) = fhir {
        let w = worker(&lane).to(destination);
        host.spawn_until_drained(|stop| w.run(stop));
        lanes.push(lane);
    }
    if lanes.is_empty() {
        tracing::info!("results: no destination configured (--dicom-destination, --stow-url, --fhir-url); nothing to deliver");
    }
    let processor = Arc::new(ResultsProcessor {
        codec,
        lanes,
        metrics,
        max_age_ms: (cfg.max_age_s as i64).saturating_mul(1000),
    });
    let stage = host.background_stage(vec![topics::TRIAGE]);
    host.serve(stage, processor, &shutdown).await
}

/// The C-STORE TLS settings, or `None` for plain DICOM.
fn dicom_tls(
    cfg: &Config,
    address: &DicomAddress,
) -> anyhow::Result<Option<crate::destination::dicom::DicomTls>> {
    let Some(config) = cxrflow_common::tls::client_config_from(
        "dicom-tls",
        cfg.dicom_tls_ca.as_deref(),
        cfg.dicom_tls_cert.as_deref(),
        cfg.dicom_tls_key.as_deref(),
    )
    .context("DICOM TLS for the results C-STORE")?
    else {
        return Ok(None);
    };
    let server_name = match &cfg.dicom_tls_server_name {
        Some(n) => n.clone(),
        None => address
            .addr
            .rsplit_once(':')
            .map_or(address.addr.as_str(), |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    };
    Ok(Some(crate::destination::dicom::DicomTls {
        config: Arc::new(config),
        server_name,
    }))
}
