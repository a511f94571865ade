//! cxrflow gateway: DICOM in, `cxr.scan.v1` out.
//!
//! Owns cxrflow's DICOM front door for modalities, routers and PACS that push images rather
//! than publish events:
//! - a C-STORE / C-ECHO SCP on the DICOM upper layer (`--gateway-dicom-listen`, dicom-ul),
//!   accepting CR Image Storage and Digital X-Ray Image Storage (for presentation and for
//!   processing) in the uncompressed, JPEG, RLE and JPEG 2000 transfer syntaxes; other abstract
//!   syntaxes are refused at negotiation, a data set of another SOP class gets 0x0122;
//! - a DICOMweb STOW-RS endpoint, `POST /studies[/{study}]`, served on the service's own HTTP
//!   endpoint (`--http`) beside `/metrics`, `/healthz` and `/readyz` (see [`stow`]).
//!
//! Each instance is written once, as the complete Part-10 file, to the gateway's blob store
//! (`--gateway-blob-store`, the hospital's own store; content address = sha256), and a scan event
//! referencing it by URI is published. The sender is told "stored" only after the broker
//! acknowledged that event; any failure answers a failure status so the sender resends (ingest
//! deduplicates by SOP instance UID, so a resend is harmless). See [`publish`].
//!
//! Privacy: nothing identifying leaves the gateway on Kafka or in logs. The patient id and the
//! accession number become keyed pseudonyms (HMAC-SHA256 with `CXRFLOW_GATEWAY_PSEUDONYM_KEY`,
//! see [`pseudonym`]); names and birth dates are never copied (the birth date only yields an
//! age when Patient's Age is absent). The DICOM file in the blob store is kept intact,
//! identifiers included: it is the hospital's record, in the hospital's store, and only its URI
//! and hash travel.

pub mod command;
pub mod config;
pub mod dimse;
pub mod error;
pub mod instance;
pub mod metrics;
pub mod pseudonym;
pub mod publish;
pub mod scp;
pub mod stow;
pub mod values;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cxrflow_common::blob::BlobStore;
use cxrflow_common::Host;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigError};
pub use error::InstanceError;
pub use metrics::{GatewayMetrics, Protocol, Reason};
pub use pseudonym::Pseudonymizer;

/// The service name: metrics `cxrflow_gateway_…`.
pub const SERVICE: &str = "gateway";

/// Runs until `shutdown` is cancelled; returns after draining open associations.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    cfg.validate()?;
    tracing::info!(service = SERVICE, settings = %cfg.describe(), "gateway configuration");
    if cfg.pseudonym_key.as_deref().is_none_or(str::is_empty) {
        tracing::warn!(
            "using the INSECURE development pseudonym key; never use this with real patients"
        );
    }
    let blob_url = cfg.blob_store_url();
    let blobs = BlobStore::open(&blob_url, &cfg.blob_store_options)
        .with_context(|| format!("opening blob store {blob_url}"))?;
    let listener = tokio::net::TcpListener::bind(cfg.dicom_listen)
        .await
        .with_context(|| format!("binding the DICOM listener on {}", cfg.dicom_listen))?;
    let dicom_addr = listener.local_addr()?;
    let metrics = GatewayMetrics::default();
    let stow_slot = stow::StowSlot::default();
    let mut host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| metrics.register(reg),
        stow::routes(stow_slot.clone()),
    )
    .await?;
    // The HTTP endpoint is an intake here (STOW-RS): it stops taking uploads when the drain
    // starts, as the SCP stops accepting associations.
    host.http_is_intake();
    let (zone, from) = cfg.zone()?;
    tracing::info!(%zone, from, "DICOM times without an offset from UTC are read in this zone");
    let publisher = Arc::new(publish::Publisher::new(
        blobs,
        host.deps.producer.clone(),
        cfg.kafka.clone(),
        host.codec().clone(),
        Pseudonymizer::new(cfg.key()?),
        metrics,
        publish::Site {
            id: cfg.site_id.clone(),
            zone,
        },
    ));
    let slots = Arc::new(Semaphore::new(cfg.max_associations));
    stow_slot.set(stow::Stow {
        publisher: publisher.clone(),
        slots: slots.clone(),
        max_instance_bytes: cfg.max_instance_bytes,
        max_body_bytes: cfg.stow_max_body_bytes,
        idle_timeout: cfg.idle_timeout(),
    });
    let scp = Arc::new(scp::Scp::new(
        &cfg,
        cfg.dicom_tls()?,
        publisher.clone(),
        slots,
    ));
    let dicom_tls = cfg.dicom_tls_cert.is_some();
    tracing::info!(dicom = %dicom_addr, dicom_tls, ae_title = %cfg.ae_title, http = %host.http_addr, "gateway serving C-STORE and STOW-RS");
    // Not a Kafka stage: the work the host runs and drains is the SCP (its associations drain
    // within the drain bound), then what the publisher sent is flushed.
    let drain = cfg.service.drain_timeout();
    let scp_stop = shutdown.clone();
    host.serve_until(&shutdown, async move {
        scp::serve(listener, scp, scp_stop, drain).await;
        publisher.flush(Duration::from_secs(5));
        Ok(())
    })
    .await
}
