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
pub mod deliver;
pub mod destination;
pub mod error;
pub mod fhir;
pub mod metrics;
pub mod queue;
pub mod report;
pub mod sr;
pub mod uid;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cxrflow_common::auth::Routes;
use cxrflow_common::time::now_millis;
use cxrflow_common::{Host, Inbound, KafkaArgs, Outbound, Processor, ServiceArgs, StageError};
use cxrflow_contracts::{topics, Codec, TriageDecision};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::deliver::{Retry, Worker};
use crate::destination::dicom::{DicomAddress, DicomStore};
use crate::destination::fhir::FhirServer;
use crate::destination::stow::StowServer;
use crate::error::ResultsError;
use crate::metrics::ResultsMetrics;
use crate::queue::{Delivery, Enqueued, Queue, Source};

pub const SERVICE: &str = "results";
pub const DEFAULT_STATE_DIR: &str = ".cxrflow/results";
pub const DEFAULT_IDENTIFIER_SYSTEM: &str = "urn:cxrflow:triage-result";

/// `cxrflow results` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,

    /// The PACS's Storage SCP, `AE@host:port`: each result is stored there as a DICOM
    /// Comprehensive SR with C-STORE. Unset: no DICOM delivery.
    #[arg(long = "dicom-destination", env = "CXRFLOW_RESULTS_DICOM_DESTINATION")]
    pub dicom_destination: Option<DicomAddress>,

    /// C-STORE over TLS (DICOM secure transport): trust the PACS certificate's CA in this PEM
    /// file. Unset: plain DICOM, for a trusted network segment only.
    #[arg(long = "dicom-tls-ca", env = "CXRFLOW_RESULTS_DICOM_TLS_CA")]
    pub dicom_tls_ca: Option<PathBuf>,

    /// With DICOM TLS: the client certificate (PEM) to present when the PACS requires one
    /// (mutual TLS); needs `--dicom-tls-key`.
    #[arg(
        long = "dicom-tls-cert",
        env = "CXRFLOW_RESULTS_DICOM_TLS_CERT",
        requires_all = ["dicom_tls_key", "dicom_tls_ca"]
    )]
    pub dicom_tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(
        long = "dicom-tls-key",
        env = "CXRFLOW_RESULTS_DICOM_TLS_KEY",
        requires = "dicom_tls_cert"
    )]
    pub dicom_tls_key: Option<PathBuf>,

    /// With DICOM TLS: the name the PACS certificate must carry. Default: the destination's
    /// host.
    #[arg(
        long = "dicom-tls-server-name",
        env = "CXRFLOW_RESULTS_DICOM_TLS_SERVER_NAME"
    )]
    pub dicom_tls_server_name: Option<String>,

    /// Our calling AE title towards the PACS.
    #[arg(
        long = "calling-ae",
        env = "CXRFLOW_RESULTS_CALLING_AE",
        default_value = "CXRFLOW"
    )]
    pub calling_ae: String,

    /// The PACS's DICOMweb base URL: each result is also stored there as the same SR with
    /// STOW-RS (`POST <url>/studies`). Unset: no STOW-RS delivery.
    #[arg(long = "stow-url", env = "CXRFLOW_RESULTS_STOW_URL")]
    pub stow_url: Option<String>,

    /// A file holding the DICOMweb server's bearer token (read at each delivery). Unset: no
    /// Authorization header.
    #[arg(long = "stow-token-file", env = "CXRFLOW_RESULTS_STOW_TOKEN_FILE")]
    pub stow_token_file: Option<PathBuf>,

    /// The FHIR R4 server's base URL: each result is POSTed there as a transaction Bundle
    /// (DiagnosticReport, Observations, Device). Unset: no FHIR delivery.
    #[arg(long = "fhir-url", env = "CXRFLOW_RESULTS_FHIR_URL")]
    pub fhir_url: Option<String>,

    /// A file holding the FHIR server's bearer token (read at each delivery: rotation needs
    /// no restart). Unset: no Authorization header.
    #[arg(long = "fhir-token-file", env = "CXRFLOW_RESULTS_FHIR_TOKEN_FILE")]
    pub fhir_token_file: Option<PathBuf>,

    /// `Identifier.system` of the FHIR resources (their conditional creates match on it).
    #[arg(long = "fhir-identifier-system", env = "CXRFLOW_RESULTS_FHIR_IDENTIFIER_SYSTEM", default_value = DEFAULT_IDENTIFIER_SYSTEM)]
    pub fhir_identifier_system: String,

    /// Where pending deliveries are kept (one directory per destination; survive restarts:
    /// a volume in containers).
    #[arg(long = "state-dir", env = "CXRFLOW_RESULTS_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Decisions older than this many seconds are not delivered (a first start on a long
    /// worklist topic does not flood the PACS); 0: no limit.
    #[arg(
        long = "max-age-s",
        env = "CXRFLOW_RESULTS_MAX_AGE_S",
        default_value_t = 86_400
    )]
    pub max_age_s: u64,

    /// First retry delay for an unavailable destination, in milliseconds (doubling, jittered).
    #[arg(
        long = "retry-min-ms",
        env = "CXRFLOW_RESULTS_RETRY_MIN_MS",
        default_value_t = 1_000
    )]
    pub retry_min_ms: u64,

    /// Longest retry delay, in milliseconds.
    #[arg(
        long = "retry-max-ms",
        env = "CXRFLOW_RESULTS_RETRY_MAX_MS",
        default_value_t = 300_000
    )]
    pub retry_max_ms: u64,

    /// Connect, read and write timeout towards a destination, in seconds.
    #[arg(
        long = "destination-timeout-s",
        env = "CXRFLOW_RESULTS_DESTINATION_TIMEOUT_S",
        default_value_t = 30
    )]
    pub destination_timeout_s: u64,

    /// How long a delivered result is remembered (no second delivery of a re-read decision
    /// within it), in hours.
    #[arg(
        long = "done-retention-h",
        env = "CXRFLOW_RESULTS_DONE_RETENTION_H",
        default_value_t = 168
    )]
    pub done_retention_h: u64,
}

impl Config {
    /// All service-specific settings at their defaults (no destination).
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        Config {
            kafka,
            service,
            dicom_destination: None,
            dicom_tls_ca: None,
            dicom_tls_cert: None,
            dicom_tls_key: None,
            dicom_tls_server_name: None,
            calling_ae: "CXRFLOW".into(),
            stow_url: None,
            stow_token_file: None,
            fhir_url: None,
            fhir_token_file: None,
            fhir_identifier_system: DEFAULT_IDENTIFIER_SYSTEM.into(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            max_age_s: 86_400,
            retry_min_ms: 1_000,
            retry_max_ms: 300_000,
            destination_timeout_s: 30,
            done_retention_h: 168,
        }
    }

    fn retry(&self) -> Retry {
        Retry {
            min: Duration::from_millis(self.retry_min_ms.max(1)),
            max: Duration::from_millis(self.retry_max_ms.max(self.retry_min_ms.max(1))),
        }
    }
}

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
    let http_stop = shutdown.child_token();
    let host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| metrics.register(reg),
        routes(),
        &http_stop,
    )
    .await?;
    let workers_stop = CancellationToken::new();
    let mut workers = tokio::task::JoinSet::new();
    let mut lanes = Vec::new();
    let worker = |lane: &Lane| Worker {
        destination: (),
        queue: lane.queue.clone(),
        wake: lane.wake.clone(),
        metrics: metrics.clone(),
        producer: host.deps.producer.clone(),
        codec: host.codec().clone(),
        retry: cfg.retry(),
        done_retention: Duration::from_secs(cfg.done_retention_h.saturating_mul(3600)),
    };
    if let Some((lane, destination)) = dicom {
        workers.spawn(worker(&lane).to(destination).run(workers_stop.clone()));
        lanes.push(lane);
    }
    if let Some((lane, destination)) = stow {
        workers.spawn(worker(&lane).to(destination).run(workers_stop.clone()));
        lanes.push(lane);
    }
    if let Some((lane, destination)) = fhir {
        workers.spawn(worker(&lane).to(destination).run(workers_stop.clone()));
        lanes.push(lane);
    }
    if lanes.is_empty() {
        tracing::info!("results: no destination configured (--dicom-destination, --stow-url, --fhir-url); nothing to deliver");
    }
    let processor = Arc::new(ResultsProcessor {
        codec: host.codec().clone(),
        lanes,
        metrics,
        max_age_ms: (cfg.max_age_s as i64).saturating_mul(1000),
    });
    host.ready.set_ready(true);
    let result = cxrflow_common::run_stage(
        &cfg.kafka,
        host.background_stage(vec![topics::TRIAGE]),
        processor,
        host.deps.clone(),
        shutdown.clone(),
    )
    .await;
    // The stage has drained: everything it consumed is queued. Deliveries in flight are cut
    // short; they stay queued and go out at the next start.
    workers_stop.cancel();
    while workers.join_next().await.is_some() {}
    http_stop.cancel();
    let _ = host.http_task.await;
    result?;
    Ok(())
}

/// The C-STORE TLS settings, or `None` for plain DICOM.
fn dicom_tls(
    cfg: &Config,
    address: &DicomAddress,
) -> anyhow::Result<Option<crate::destination::dicom::DicomTls>> {
    let Some(ca) = &cfg.dicom_tls_ca else {
        return Ok(None);
    };
    let identity = match (&cfg.dicom_tls_cert, &cfg.dicom_tls_key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        (None, None) => None,
        _ => anyhow::bail!("--dicom-tls-cert and --dicom-tls-key go together"),
    };
    let config = cxrflow_common::tls::client_config(ca, identity)
        .context("DICOM TLS for the results C-STORE")?;
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
