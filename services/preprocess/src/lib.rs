//! cxrflow's preprocess stage (`cxr.ingested.v1` → `cxr.preprocessed.v1`): reads each ingested
//! image from the blob store, decodes it (PNG, JPEG, DICOM with MONOCHROME1, rescale and VOI),
//! gates ineligible DICOM objects (by their own header: not CR/DX, not a radiograph SOP class,
//! not chest, colour, multi-frame, derived) and lateral views as not assessable, checks the
//! stream's integrity, decodes at the smallest resolution the model needs where the codec allows
//! (JPEG 2000 levels, JPEG DCT scaling), letterboxes it into the serving model's 8-bit grayscale
//! profile and computes image statistics for drift and the out-of-distribution gate. Owns the
//! decoders' safety limits; the image fixtures (`fixtures`) that tests and benches generate
//! images with are built only for tests (feature `test-support`).

pub mod config;
pub mod decode;
pub mod eligibility;
pub mod error;
#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;
pub mod gate;
pub mod metrics;
pub mod pipeline;
pub mod processor;
pub mod profile;
pub mod stats;

use std::sync::Arc;

use anyhow::Context;
use cxrflow_common::auth::Routes;
use cxrflow_common::Host;
use cxrflow_contracts::topics;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use decode::{DecodeError, DecodeLimits, DecodedImage, SUPPORTED_TRANSFER_SYNTAXES};
pub use error::PreprocessError;
pub use metrics::PreprocessMetrics;
pub use pipeline::{prepare, Prepared};
pub use processor::Preprocessor;
pub use profile::Profile;

/// The service name: metric prefix, consumer group `cxrflow-preprocess`, dead letters' stage.
pub const SERVICE: &str = "preprocess";

/// Runs until `shutdown` is cancelled; returns after draining.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(service = SERVICE, settings = %cfg.describe(), "preprocess settings");
    let blobs = cfg
        .blob_store
        .open()
        .with_context(|| format!("opening blob store {}", cfg.blob_store.effective_url()))?;
    let metrics = PreprocessMetrics::default();
    let host = Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        |reg| metrics.register(reg),
        Routes::new(),
    )
    .await?;
    let processor = Arc::new(Preprocessor {
        codec: host.codec().clone(),
        blobs,
        profile: cfg.profile,
        limits: cfg.limits(),
        eligibility: cfg.eligibility(),
        metrics,
    });
    let stage = host.stage(vec![topics::INGESTED]);
    host.serve(stage, processor, &shutdown).await
}
